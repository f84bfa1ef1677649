//! `sigil policy`: Cedar policy sets as versioned data — apply, list, show, roll back,
//! dry-run a request with an explanation, and print the built-in templates.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand};
use sigil_bus::ClientError;
use sigil_contracts::WireError;
use sigil_contracts::policy::{
    ApplyRequest, EvaluateRequest, Explanation, ListRequest, ListResponse, PolicyDocument,
    PolicyVersion, RollbackRequest, ShowRequest, TestRequest,
};
use sigil_contracts::subjects::{
    POLICY_APPLY, POLICY_LIST, POLICY_ROLLBACK, POLICY_SHOW, POLICY_TEST,
};

use crate::commands::REQUEST_TIMEOUT;
use crate::context::GlobalArgs;
use crate::error::CliError;
use crate::output;

/// Manage the Cedar policies the policy service decides by.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a Cedar policy file against Sigil's schema and make it the active version
    Apply(ApplyArgs),
    /// List stored versions, newest (active) first
    Ls(LsArgs),
    /// Print a version's policies (the active one by default)
    Show(ShowArgs),
    /// Make an earlier version's policies active again (as a new version)
    Rollback(RollbackArgs),
    /// Dry-run a request (JSON of sigil.policy.v1.evaluate) and explain the decision;
    /// exits 3 when it would be denied
    Test(TestArgs),
    /// List the built-in templates, or print one to adapt
    Templates(TemplatesArgs),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Cedar policies
    pub file: PathBuf,
    /// Cedar entities JSON: group memberships of principals
    #[arg(long, value_name = "FILE")]
    pub entities: Option<PathBuf>,
    /// Why this change (stored with the version; the author recorded is the admin
    /// whose credential signs the request)
    #[arg(long)]
    pub comment: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// At most this many versions
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Version number [default: the active one]
    #[arg(value_name = "VERSION")]
    pub number: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The version whose policies become active again
    #[arg(value_name = "VERSION")]
    pub number: u64,
    /// Why (stored with the new version)
    #[arg(long)]
    pub comment: Option<String>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The request: JSON of an evaluate request ({"principal": "workload:web", "action":
    /// "issue", "profile": "tls-server", "sans": {"dns": [...]}, "ttl_seconds": ...,
    /// "key_algorithm": "ecdsa-p256", "kind": "hybrid"}), or of a whole test request
    pub request: PathBuf,
    /// Decide as if it were this time (RFC 3339 or YYYY-MM-DD) [default: now]
    #[arg(long, value_parser = parse_at)]
    pub at: Option<DateTime<Utc>>,
    /// Decide by this stored version [default: the active one]
    #[arg(long = "policy-version", value_name = "VERSION")]
    pub number: Option<u64>,
    /// Decide by this candidate Cedar file instead (stored nowhere)
    #[arg(long, value_name = "FILE", conflicts_with = "number")]
    pub policies: Option<PathBuf>,
    /// Entities JSON to go with --policies
    #[arg(long, value_name = "FILE", requires = "policies")]
    pub entities: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TemplatesArgs {
    /// Print this template's Cedar text
    pub name: Option<String>,
}

pub async fn run(global: &GlobalArgs, args: PolicyArgs) -> Result<(), CliError> {
    if let PolicyCommand::Templates(a) = &args.command {
        return templates(a.name.as_deref());
    }
    // Changing policy is an admin action: read the credential before connecting.
    let admin = match &args.command {
        PolicyCommand::Apply(_) | PolicyCommand::Rollback(_) => Some(global.admin()?),
        _ => None,
    };
    let bus = global.connect().await?;
    let text = match args.command {
        PolicyCommand::Apply(a) => {
            let mut req = ApplyRequest {
                policies: read(&a.file)?,
                entities: a.entities.as_deref().map(read).transpose()?,
                comment: a.comment,
                proof: None,
            };
            if let Some(admin) = &admin {
                admin.prove(POLICY_APPLY, &mut req)?;
            }
            let v: PolicyVersion = bus
                .request(POLICY_APPLY, &req, REQUEST_TIMEOUT)
                .await
                .map_err(|e| located(e, &a.file))?;
            if global.json {
                output::json(&v)?
            } else {
                format!(
                    "applied {} as version {} ({} policies, sha256 {})\n",
                    a.file.display(),
                    v.version,
                    v.policy_count,
                    short(&v.sha256)
                )
            }
        }
        PolicyCommand::Ls(a) => {
            let list: ListResponse = bus
                .request(
                    POLICY_LIST,
                    &ListRequest {
                        limit: Some(a.limit),
                    },
                    REQUEST_TIMEOUT,
                )
                .await?;
            if global.json {
                output::json(&list)?
            } else {
                table(&list.versions)
            }
        }
        PolicyCommand::Show(a) => {
            let doc: PolicyDocument = bus
                .request(
                    POLICY_SHOW,
                    &ShowRequest { version: a.number },
                    REQUEST_TIMEOUT,
                )
                .await?;
            if global.json {
                output::json(&doc)?
            } else {
                show(&doc)
            }
        }
        PolicyCommand::Rollback(a) => {
            let mut req = RollbackRequest {
                version: a.number,
                comment: a.comment,
                proof: None,
            };
            if let Some(admin) = &admin {
                admin.prove(POLICY_ROLLBACK, &mut req)?;
            }
            let v: PolicyVersion = bus.request(POLICY_ROLLBACK, &req, REQUEST_TIMEOUT).await?;
            if global.json {
                output::json(&v)?
            } else {
                format!(
                    "version {} restores version {} and is now active\n",
                    v.version, a.number
                )
            }
        }
        PolicyCommand::Test(a) => {
            let req = test_request(&a)?;
            let e: Explanation = bus
                .request(POLICY_TEST, &req, REQUEST_TIMEOUT)
                .await
                .map_err(|e| match &a.policies {
                    Some(p) => located(e, p),
                    None => CliError::from(e),
                })?;
            let text = if global.json {
                output::json(&e)?
            } else {
                explain(&e)
            };
            output::print(&text)?;
            if !e.decision.allowed {
                return Err(CliError::Client(ClientError::Wire(WireError::denied(
                    e.decision.reasons,
                ))));
            }
            return Ok(());
        }
        PolicyCommand::Templates(_) => String::new(),
    };
    output::print(&text)
}

/// The built-in templates: a list, or one's text.
fn templates(name: Option<&str>) -> Result<(), CliError> {
    match name {
        None => output::print(&output::plain_table(
            ["NAME", "WHAT"],
            sigil_policy::templates::ALL
                .iter()
                .map(|t| [t.name.to_owned(), t.summary.to_owned()]),
        )),
        Some(n) => match sigil_policy::templates::find(n) {
            Some(t) => output::print(t.text),
            None => Err(CliError::Usage(format!(
                "no template {n:?}; `sigil policy templates` lists them"
            ))),
        },
    }
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))
}

/// A refused policy file: name the file before the service's "line L, column C: …".
fn located(e: ClientError, path: &Path) -> CliError {
    match e {
        ClientError::Wire(w) if w.code == sigil_contracts::ErrorCode::BadRequest => {
            CliError::bad_input(path, w.message)
        }
        other => CliError::from(other),
    }
}

fn test_request(a: &TestArgs) -> Result<TestRequest, CliError> {
    let text = read(&a.request)?;
    let mut req = match serde_json::from_str::<EvaluateRequest>(&text) {
        Ok(request) => TestRequest {
            request,
            at: None,
            version: None,
            policies: None,
            entities: None,
        },
        Err(first) => serde_json::from_str::<TestRequest>(&text)
            .map_err(|_| CliError::bad_input(&a.request, first.to_string()))?,
    };
    if a.at.is_some() {
        req.at = a.at;
    }
    if a.number.is_some() {
        req.version = a.number;
    }
    if let Some(p) = &a.policies {
        req.policies = Some(read(p)?);
        req.entities = a.entities.as_deref().map(read).transpose()?;
    }
    Ok(req)
}

/// `2029-03-15` or `2029-03-15T00:00:00Z`.
fn parse_at(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| "use RFC 3339 (2029-03-15T00:00:00Z) or YYYY-MM-DD".to_owned())
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// One row per version; the active one marked with `*`.
pub fn table(versions: &[PolicyVersion]) -> String {
    output::plain_table(
        [
            "", "VERSION", "CREATED", "BY", "ORIGIN", "POLICIES", "SHA256", "COMMENT",
        ],
        versions.iter().map(|v| {
            [
                if v.active { "*" } else { "" }.to_owned(),
                v.version.to_string(),
                output::time(v.created_at),
                v.created_by.clone(),
                match v.restored_from {
                    Some(from) => format!("{} v{from}", v.origin.as_str()),
                    None => v.origin.as_str().to_owned(),
                },
                v.policy_count.to_string(),
                short(&v.sha256).to_owned(),
                v.comment.clone().unwrap_or_default(),
            ]
        }),
    )
}

/// A version's header as `// key: value` comments, then its Cedar text (so the output
/// can be saved and applied again).
pub fn show(doc: &PolicyDocument) -> String {
    let v = &doc.version;
    let mut out = format!(
        "// version {}{} · {} by {} · {} · sha256 {}\n",
        v.version,
        if v.active { " (active)" } else { "" },
        output::time(v.created_at),
        v.created_by,
        v.origin.as_str(),
        v.sha256
    );
    if let Some(c) = &v.comment {
        out.push_str(&format!("// {c}\n"));
    }
    out.push_str(&doc.policies);
    if !doc.policies.ends_with('\n') {
        out.push('\n');
    }
    if let Some(e) = &doc.entities {
        out.push_str("// entities:\n");
        for line in e.lines() {
            out.push_str(&format!("// {line}\n"));
        }
    }
    out
}

/// The decision, then one block per name with the policies that decided it.
pub fn explain(e: &Explanation) -> String {
    let d = &e.decision;
    let mut out = format!(
        "{} by policy version {} for {} at {}\n",
        if d.allowed { "ALLOW" } else { "DENY" },
        d.policy_version,
        e.principal,
        output::time(e.at)
    );
    if d.allowed {
        out.push_str(&format!(
            "lifetime {}s{}\n",
            d.constraints.ttl_seconds,
            if d.constraints.ttl_clamped {
                " (clamped)"
            } else {
                ""
            }
        ));
    }
    for r in &d.reasons {
        out.push_str(&format!("  reason: {r}\n"));
    }
    for ev in &e.evaluations {
        out.push_str(&format!(
            "{} {}\n",
            if ev.allowed { "allow" } else { "deny " },
            ev.name
        ));
        if ev.determining.is_empty() {
            out.push_str("    no policy matched (default deny)\n");
        }
        for hit in &ev.determining {
            let effect = match hit.effect {
                sigil_contracts::policy::Effect::Permit => "permit",
                sigil_contracts::policy::Effect::Forbid => "forbid",
            };
            out.push_str(&format!("    {effect} {}", hit.id));
            if let Some(r) = &hit.reason {
                out.push_str(&format!(": {r}"));
            }
            out.push('\n');
        }
        for err in &ev.errors {
            out.push_str(&format!("    error: {err}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_dates_or_rfc3339() {
        assert_eq!(
            parse_at("2029-03-15").unwrap().to_rfc3339(),
            "2029-03-15T00:00:00+00:00"
        );
        assert_eq!(
            parse_at("2029-03-15T12:00:00+02:00").unwrap().to_rfc3339(),
            "2029-03-15T10:00:00+00:00"
        );
        assert!(parse_at("next tuesday").is_err());
    }

    #[test]
    fn every_template_is_listed_and_printable() {
        for t in sigil_policy::templates::ALL {
            assert!(sigil_policy::templates::find(t.name).is_some());
        }
        assert!(templates(Some("nope")).is_err());
    }
}
