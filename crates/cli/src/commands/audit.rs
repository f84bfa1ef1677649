//! `sigil audit`: the policy service's hash-chained audit log — list entries, and
//! verify that the chain is intact and holds its newest anchor from the event stream
//! (exit 6 with the first broken link when it is not).

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use sigil_contracts::policy::{
    AuditListRequest, AuditListResponse, AuditVerifyRequest, AuditVerifyResponse,
};
use sigil_contracts::subjects::{POLICY_AUDIT_LIST, POLICY_AUDIT_VERIFY};

use crate::commands::{REQUEST_TIMEOUT, parse_duration};
use crate::context::GlobalArgs;
use crate::error::CliError;
use crate::output;

/// Read and verify the tamper-evident audit log of decisions, issuances and revocations.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List entries, oldest first
    Ls(LsArgs),
    /// Recompute the hash chain; exits 6 and names the first broken link when it is not intact
    Verify,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only this principal's entries, e.g. workload:web
    #[arg(long)]
    pub principal: Option<String>,
    /// Only entries since this time (RFC 3339) or this long ago (24h, 7d)
    #[arg(long, value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// At most this many entries
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Start after this sequence number (the cursor a previous page printed)
    #[arg(long, value_name = "SEQ")]
    pub after: Option<u64>,
}

pub async fn run(global: &GlobalArgs, args: AuditArgs) -> Result<(), CliError> {
    let bus = global.connect().await?;
    match args.command {
        AuditCommand::Ls(a) => {
            let req = AuditListRequest {
                principal: a.principal,
                since: a.since,
                after_seq: a.after,
                limit: Some(a.limit),
            };
            let page: AuditListResponse = bus
                .request(POLICY_AUDIT_LIST, &req, REQUEST_TIMEOUT)
                .await?;
            let text = if global.json {
                output::json(&page)?
            } else {
                table(&page)
            };
            output::print(&text)
        }
        AuditCommand::Verify => {
            let reply: AuditVerifyResponse = bus
                .request(POLICY_AUDIT_VERIFY, &AuditVerifyRequest {}, REQUEST_TIMEOUT)
                .await?;
            let text = if global.json {
                output::json(&reply)?
            } else {
                let mut text = match &reply.broken {
                    None => format!("audit chain intact: {} entries checked\n", reply.checked),
                    Some(b) => format!(
                        "audit chain BROKEN at seq {}: {} ({}); {} entries checked\n",
                        b.seq,
                        serde_json::to_value(b.reason)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        b.detail,
                        reply.checked
                    ),
                };
                text.push_str(&match &reply.anchor {
                    None => "anchor: none published yet\n".to_owned(),
                    Some(a) if a.ok => format!(
                        "anchor: seq {} of {} matches (newest anchor in the event stream)\n",
                        a.seq,
                        a.row_at.to_rfc3339()
                    ),
                    Some(a) => format!("anchor: seq {} does NOT match\n", a.seq),
                });
                text
            };
            output::print(&text)?;
            if reply.ok {
                Ok(())
            } else {
                let checked = usize::try_from(reply.checked).unwrap_or(usize::MAX);
                Err(CliError::VerifyFailed {
                    failed: 1,
                    total: checked,
                })
            }
        }
    }
}

fn table(page: &AuditListResponse) -> String {
    let mut text = output::plain_table(
        [
            "SEQ",
            "AT",
            "KIND",
            "PRINCIPAL",
            "ACTION",
            "OUTCOME",
            "RESOURCE",
            "REASONS",
        ],
        page.entries.iter().map(|e| {
            [
                e.seq.to_string(),
                output::time(e.at),
                e.kind.as_str().to_owned(),
                e.principal.clone(),
                e.action.clone(),
                e.outcome.clone(),
                e.resource.clone(),
                e.reasons.join("; "),
            ]
        }),
    );
    if let Some(next) = page.next_cursor {
        text.push_str(&format!("more: sigil audit ls --after {next}\n"));
    }
    text
}

/// RFC 3339, or a duration meaning "that long ago".
fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = parse_duration(s).map_err(|e| format!("not RFC 3339 nor a duration: {e}"))?;
    let d = chrono::TimeDelta::from_std(d).map_err(|e| e.to_string())?;
    Ok(Utc::now() - d)
}
