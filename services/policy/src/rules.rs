//! Policy rules as data, and the pure function that evaluates a request against them.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sigil_contracts::policy::{Action, Constraints, Decision, EvaluateRequest};
use sigil_contracts::types::KeyAlgorithm;

use crate::Error;

/// Longest DNS name (RFC 1035, presentation form without the trailing dot).
const MAX_DNS_NAME: usize = 253;
/// Longest DNS label.
const MAX_DNS_LABEL: usize = 63;
/// 90 days: the default maximum lifetime.
pub const DEFAULT_MAX_TTL_SECONDS: i64 = 90 * 24 * 60 * 60;
/// Version string of the built-in rules.
pub const DEFAULT_VERSION: &str = "builtin-1";

/// What to do when a request asks for a longer lifetime than `max_ttl_seconds`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TtlOverMax {
    /// Allow, with the lifetime shortened to the maximum (and a note saying so).
    #[default]
    Clamp,
    /// Refuse the request.
    Deny,
}

/// The rules policy decides by.
///
/// Deserializes from TOML; every field is optional and an omitted field keeps its
/// built-in default (see [`Rules::default`]), so a file that only sets
/// `allowed_dns_suffixes` still has the default IP ranges, URI prefixes and lifetime.
/// Write an empty list (`allowed_ip_ranges = []`) to allow none.
///
/// ```toml
/// version = "2025-01-prod"
/// allowed_dns_suffixes = ["example.com", "svc.cluster.local"]
/// allow_wildcards = false
/// allowed_ip_ranges = ["10.0.0.0/8"]
/// allowed_uri_prefixes = ["spiffe://example.org/"]
/// max_ttl_seconds = 604800
/// ttl_over_max = "deny"
/// allowed_key_algorithms = ["ecdsa-p256", "ed25519"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// Version of these rules, reported in every decision.
    pub version: String,
    /// A DNS name is allowed when it equals one of these or ends with `.` + one of these
    /// (compared case-insensitively; a trailing dot is ignored).
    pub allowed_dns_suffixes: Vec<String>,
    /// Whether wildcard names (`*.example.com`, leftmost label only) may be issued.
    pub allow_wildcards: bool,
    /// An IP SAN is allowed when one of these ranges contains it.
    pub allowed_ip_ranges: Vec<IpNet>,
    /// A URI SAN is allowed when it starts with one of these at a component boundary:
    /// the prefix `spiffe://example.org` admits `spiffe://example.org/web` but not
    /// `spiffe://example.org.evil/web`.
    pub allowed_uri_prefixes: Vec<String>,
    /// Longest lifetime allowed, in seconds.
    pub max_ttl_seconds: i64,
    /// What to do with a longer requested lifetime.
    pub ttl_over_max: TtlOverMax,
    /// Subject key algorithms allowed.
    pub allowed_key_algorithms: Vec<KeyAlgorithm>,
}

impl Default for Rules {
    /// The rules `sigil up` runs with when given no configuration: local and private
    /// names and addresses, any SPIFFE ID, at most 90 days (longer requests clamped),
    /// every key algorithm.
    fn default() -> Self {
        Rules {
            version: DEFAULT_VERSION.to_owned(),
            allowed_dns_suffixes: [
                "localhost",
                "example.com",
                "internal",
                "svc.cluster.local",
                "local",
            ]
            .into_iter()
            .map(str::to_owned)
            .collect(),
            allow_wildcards: false,
            allowed_ip_ranges: default_ip_ranges(),
            allowed_uri_prefixes: vec!["spiffe://".to_owned()],
            max_ttl_seconds: DEFAULT_MAX_TTL_SECONDS,
            ttl_over_max: TtlOverMax::Clamp,
            allowed_key_algorithms: KeyAlgorithm::ALL.to_vec(),
        }
    }
}

fn default_ip_ranges() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "192.168.0.0/16"]
        .into_iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

impl Rules {
    /// Parse rules from TOML text and [`validate`](Rules::validate) them.
    pub fn from_toml(text: &str) -> Result<Rules, Error> {
        let rules: Rules = toml::from_str(text).map_err(|e| Error::InvalidRules(e.to_string()))?;
        rules.validate()?;
        Ok(rules)
    }

    /// Read rules from a TOML file (as named by `SIGIL_POLICY_FILE`).
    pub fn from_toml_file(path: &Path) -> Result<Rules, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::RulesFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Rules::from_toml(&text).map_err(|e| Error::RulesFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Refuse rules that cannot mean what their author intended.
    pub fn validate(&self) -> Result<(), Error> {
        let mut problems = Vec::new();
        if self.version.trim().is_empty() {
            problems.push("version must not be empty".to_owned());
        }
        if self.max_ttl_seconds <= 0 {
            problems.push(format!(
                "max_ttl_seconds must be positive (got {})",
                self.max_ttl_seconds
            ));
        }
        for suffix in &self.allowed_dns_suffixes {
            let normalized = normalize_dns(suffix);
            if normalized.starts_with('*') || !is_valid_dns_name(&normalized) {
                problems.push(format!(
                    "allowed_dns_suffixes: {suffix:?} is not a DNS name (write \"example.com\", not \"*.example.com\" or \".example.com\")"
                ));
            }
        }
        for prefix in &self.allowed_uri_prefixes {
            if !prefix.contains(':') || prefix.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                problems.push(format!(
                    "allowed_uri_prefixes: {prefix:?} must start with a scheme such as \"spiffe://\""
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidRules(problems.join("; ")))
        }
    }
}

/// Decide `req` under `rules`.
///
/// Pure: the same rules and request always give the same decision. Every failing rule
/// adds a reason, so a denial lists all of them, not just the first. An allowed
/// decision carries notes instead (e.g. that the lifetime was clamped) and the
/// [`Constraints`] the caller must apply.
///
/// Lifetime rules apply to `issue` and `renew`; a `revoke` is judged on its names and
/// key algorithm only and its `ttl_seconds` is passed through untouched.
pub fn evaluate(rules: &Rules, req: &EvaluateRequest) -> Decision {
    let mut failures = Vec::new();
    let mut notes = Vec::new();

    if req.sans.is_empty() {
        failures.push("no subject alternative names were requested".to_owned());
    }
    for name in &req.sans.dns {
        if let Err(reason) = check_dns(rules, name) {
            failures.push(reason);
        }
    }
    for ip in &req.sans.ip {
        if !ip_allowed(rules, *ip) {
            failures.push(format!(
                "ip address {ip} is outside allowed ranges [{}]",
                list(&rules.allowed_ip_ranges)
            ));
        }
    }
    for uri in &req.sans.uri {
        if let Err(reason) = check_uri(rules, uri) {
            failures.push(reason);
        }
    }
    if !rules.allowed_key_algorithms.contains(&req.key_algorithm) {
        failures.push(format!(
            "key algorithm {} is not allowed (allowed: [{}])",
            req.key_algorithm.as_str(),
            rules
                .allowed_key_algorithms
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    let mut constraints = Constraints {
        ttl_seconds: req.ttl_seconds,
        ttl_clamped: false,
    };
    if req.action != Action::Revoke {
        if req.ttl_seconds <= 0 {
            failures.push(format!(
                "ttl_seconds must be positive (got {})",
                req.ttl_seconds
            ));
        } else if req.ttl_seconds > rules.max_ttl_seconds {
            match rules.ttl_over_max {
                TtlOverMax::Clamp => {
                    constraints = Constraints {
                        ttl_seconds: rules.max_ttl_seconds,
                        ttl_clamped: true,
                    };
                    notes.push(format!(
                        "requested ttl of {}s exceeds the maximum of {}s; clamped to {}s",
                        req.ttl_seconds, rules.max_ttl_seconds, rules.max_ttl_seconds
                    ));
                }
                TtlOverMax::Deny => failures.push(format!(
                    "requested ttl of {}s exceeds the maximum of {}s",
                    req.ttl_seconds, rules.max_ttl_seconds
                )),
            }
        }
    }

    let allowed = failures.is_empty();
    Decision {
        allowed,
        reasons: if allowed { notes } else { failures },
        constraints,
        policy_version: rules.version.clone(),
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lowercase, without a trailing dot.
fn normalize_dns(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// LDH syntax (RFC 1035/1123), with `*` allowed as a whole leftmost label only.
fn is_valid_dns_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_DNS_NAME || name == "*" {
        return false;
    }
    name.split('.').enumerate().all(|(i, label)| {
        if i == 0 && label == "*" {
            return true;
        }
        !label.is_empty()
            && label.len() <= MAX_DNS_LABEL
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

fn check_dns(rules: &Rules, name: &str) -> Result<(), String> {
    let normalized = normalize_dns(name);
    if !is_valid_dns_name(&normalized) {
        return Err(format!("dns name {name:?} is not a valid DNS name"));
    }
    if let Some(base) = normalized.strip_prefix("*.") {
        if !rules.allow_wildcards {
            return Err(format!(
                "dns name {name} is a wildcard and wildcards are not allowed"
            ));
        }
        // `*.example.com` stands for names under example.com: allowed when those are.
        if !rules
            .allowed_dns_suffixes
            .iter()
            .any(|s| dns_within(base, s))
        {
            return Err(outside_suffixes(rules, name));
        }
        return Ok(());
    }
    if rules
        .allowed_dns_suffixes
        .iter()
        .any(|s| dns_within(&normalized, s))
    {
        Ok(())
    } else {
        Err(outside_suffixes(rules, name))
    }
}

/// `name` equals `suffix` or is below it.
fn dns_within(name: &str, suffix: &str) -> bool {
    let suffix = normalize_dns(suffix);
    name == suffix
        || name
            .strip_suffix(suffix.as_str())
            .is_some_and(|rest| rest.ends_with('.'))
}

fn outside_suffixes(rules: &Rules, name: &str) -> String {
    format!(
        "dns name {name} is outside allowed suffixes [{}]",
        rules.allowed_dns_suffixes.join(", ")
    )
}

fn ip_allowed(rules: &Rules, ip: IpAddr) -> bool {
    // `::ffff:10.0.0.1` is 10.0.0.1 to every TLS stack; judge it as such.
    let ip = ip.to_canonical();
    rules.allowed_ip_ranges.iter().any(|net| net.contains(&ip))
}

fn check_uri(rules: &Rules, uri: &str) -> Result<(), String> {
    if uri.is_empty() || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("uri {uri:?} is not a valid URI"));
    }
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!("uri {uri} contains a dot path segment"));
    }
    if rules
        .allowed_uri_prefixes
        .iter()
        .any(|p| uri_within(uri, p))
    {
        Ok(())
    } else {
        Err(format!(
            "uri {uri} is outside allowed prefixes [{}]",
            rules.allowed_uri_prefixes.join(", ")
        ))
    }
}

/// `uri` starts with `prefix`, and the match ends at a component boundary.
fn uri_within(uri: &str, prefix: &str) -> bool {
    let Some(rest) = uri.strip_prefix(prefix) else {
        return false;
    };
    prefix.ends_with(['/', ':']) || rest.is_empty() || rest.starts_with(['/', '?', '#'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_contracts::types::{Profile, Sans};

    fn req(dns: &[&str], ip: &[&str], uri: &[&str], ttl: i64) -> EvaluateRequest {
        EvaluateRequest {
            principal: "tester".into(),
            action: Action::Issue,
            profile: Profile::TlsServer,
            sans: Sans {
                dns: dns.iter().map(|s| (*s).to_owned()).collect(),
                ip: ip.iter().map(|s| s.parse().unwrap()).collect(),
                uri: uri.iter().map(|s| (*s).to_owned()).collect(),
            },
            ttl_seconds: ttl,
            key_algorithm: KeyAlgorithm::EcdsaP256,
        }
    }

    const DAY: i64 = 86_400;

    /// (dns, ip, uri, ttl, allowed)
    type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], i64, bool);

    #[test]
    fn default_rules_table() {
        let rules = Rules::default();
        let cases: &[Case] = &[
            (&["localhost"], &[], &[], DAY, true),
            (&["web.example.com"], &[], &[], DAY, true),
            (&["example.com"], &[], &[], DAY, true),
            (&["WEB.Example.COM."], &[], &[], DAY, true),
            (&["a.b.svc.cluster.local"], &[], &[], DAY, true),
            (&["db.internal"], &[], &[], DAY, true),
            (&["evil.com"], &[], &[], DAY, false),
            (&["notexample.com"], &[], &[], DAY, false),
            (&["example.com.evil.net"], &[], &[], DAY, false),
            (&["*.example.com"], &[], &[], DAY, false),
            (&["bad_name.example.com"], &[], &[], DAY, false),
            (&["a..example.com"], &[], &[], DAY, false),
            (&["-a.example.com"], &[], &[], DAY, false),
            (&[""], &[], &[], DAY, false),
            (&[], &["127.0.0.1"], &[], DAY, true),
            (&[], &["::1"], &[], DAY, true),
            (&[], &["10.1.2.3"], &[], DAY, true),
            (&[], &["192.168.0.9"], &[], DAY, true),
            (&[], &["::ffff:10.0.0.1"], &[], DAY, true),
            (&[], &["8.8.8.8"], &[], DAY, false),
            (&[], &["172.16.0.1"], &[], DAY, false),
            (&[], &["2001:db8::1"], &[], DAY, false),
            (&[], &[], &["spiffe://example.org/web"], DAY, true),
            (&[], &[], &["https://example.org/"], DAY, false),
            (&[], &[], &["spiffe://example.org/a/../b"], DAY, false),
            (&[], &[], &["spiffe://example.org/a b"], DAY, false),
            (
                &["web.example.com"],
                &["10.0.0.1"],
                &["spiffe://x/y"],
                DAY,
                true,
            ),
            (&["web.example.com"], &[], &[], 0, false),
            (&["web.example.com"], &[], &[], -5, false),
            (&["web.example.com"], &[], &[], 90 * DAY, true),
            (&["web.example.com"], &[], &[], 365 * DAY, true),
            (&[], &[], &[], DAY, false),
        ];
        for (dns, ip, uri, ttl, allowed) in cases {
            let d = evaluate(&rules, &req(dns, ip, uri, *ttl));
            assert_eq!(
                d.allowed, *allowed,
                "dns={dns:?} ip={ip:?} uri={uri:?} ttl={ttl}: {d:?}"
            );
            assert_eq!(d.policy_version, DEFAULT_VERSION);
            if !allowed {
                assert!(!d.reasons.is_empty(), "a denial says why: {d:?}");
            }
        }
    }

    #[test]
    fn every_failing_reason_is_collected() {
        let rules = Rules {
            ttl_over_max: TtlOverMax::Deny,
            ..Rules::default()
        };
        let mut r = req(
            &["evil.com", "ok.example.com", "worse.org"],
            &["8.8.8.8"],
            &["https://x/"],
            400 * DAY,
        );
        r.key_algorithm = KeyAlgorithm::Rsa2048;
        let rules = Rules {
            allowed_key_algorithms: vec![KeyAlgorithm::EcdsaP256],
            ..rules
        };
        let d = evaluate(&rules, &r);
        assert!(!d.allowed);
        assert_eq!(d.reasons.len(), 6, "{:#?}", d.reasons);
        assert!(
            d.reasons[0].starts_with(
                "dns name evil.com is outside allowed suffixes [localhost, example.com"
            )
        );
        assert!(d.reasons[1].starts_with("dns name worse.org"));
        assert!(
            d.reasons[2].starts_with("ip address 8.8.8.8 is outside allowed ranges [127.0.0.0/8")
        );
        assert!(d.reasons[3].starts_with("uri https://x/ is outside allowed prefixes [spiffe://]"));
        assert!(d.reasons[4].starts_with("key algorithm rsa-2048 is not allowed"));
        assert!(d.reasons[5].contains("exceeds the maximum"));
    }

    #[test]
    fn ttl_clamp_and_deny() {
        let max = Rules::default().max_ttl_seconds;
        let d = evaluate(&Rules::default(), &req(&["a.local"], &[], &[], max + 1));
        assert!(d.allowed);
        assert_eq!(
            d.constraints,
            Constraints {
                ttl_seconds: max,
                ttl_clamped: true
            }
        );
        assert_eq!(d.reasons.len(), 1);
        assert!(d.reasons[0].contains("clamped"), "{:?}", d.reasons);

        let d = evaluate(&Rules::default(), &req(&["a.local"], &[], &[], max));
        assert_eq!(
            d.constraints,
            Constraints {
                ttl_seconds: max,
                ttl_clamped: false
            }
        );
        assert!(d.reasons.is_empty());

        let deny = Rules {
            ttl_over_max: TtlOverMax::Deny,
            ..Rules::default()
        };
        let d = evaluate(&deny, &req(&["a.local"], &[], &[], max + 1));
        assert!(!d.allowed);
        assert_eq!(
            d.reasons,
            vec![format!(
                "requested ttl of {}s exceeds the maximum of {max}s",
                max + 1
            )]
        );

        for ttl in [0, -1, i64::MIN] {
            let d = evaluate(&Rules::default(), &req(&["a.local"], &[], &[], ttl));
            assert!(!d.allowed);
            assert_eq!(
                d.reasons,
                vec![format!("ttl_seconds must be positive (got {ttl})")]
            );
        }
    }

    #[test]
    fn clamp_note_is_dropped_on_denial() {
        let d = evaluate(&Rules::default(), &req(&["evil.com"], &[], &[], 1000 * DAY));
        assert!(!d.allowed);
        assert_eq!(d.reasons.len(), 1, "{:?}", d.reasons);
        assert!(d.constraints.ttl_clamped);
    }

    #[test]
    fn revoke_ignores_lifetime() {
        let mut r = req(&["a.example.com"], &[], &[], 0);
        r.action = Action::Revoke;
        let d = evaluate(&Rules::default(), &r);
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.constraints.ttl_seconds, 0);
        r.action = Action::Renew;
        assert!(!evaluate(&Rules::default(), &r).allowed);
    }

    #[test]
    fn wildcards_table() {
        let rules = Rules {
            allow_wildcards: true,
            ..Rules::default()
        };
        let cases = [
            ("*.example.com", true),
            ("*.web.example.com", true),
            ("*.com", false),
            ("*.evil.com", false),
            ("a.*.example.com", false),
            ("*a.example.com", false),
            ("**.example.com", false),
            ("*", false),
        ];
        for (name, allowed) in cases {
            let d = evaluate(&rules, &req(&[name], &[], &[], DAY));
            assert_eq!(d.allowed, allowed, "{name}: {d:?}");
        }
        let d = evaluate(&Rules::default(), &req(&["*.example.com"], &[], &[], DAY));
        assert_eq!(
            d.reasons,
            vec!["dns name *.example.com is a wildcard and wildcards are not allowed"]
        );
    }

    #[test]
    fn uri_prefix_matches_at_a_boundary() {
        let rules = Rules {
            allowed_uri_prefixes: vec![
                "spiffe://example.org".into(),
                "spiffe://corp.test/ns/".into(),
            ],
            ..Rules::default()
        };
        let cases = [
            ("spiffe://example.org", true),
            ("spiffe://example.org/web", true),
            ("spiffe://example.org.evil/web", false),
            ("spiffe://example.organic/web", false),
            ("spiffe://corp.test/ns/prod/sa/web", true),
            ("spiffe://corp.test/other", false),
            ("spiffe://corp.test/ns/../other", false),
        ];
        for (uri, allowed) in cases {
            let d = evaluate(&rules, &req(&[], &[], &[uri], DAY));
            assert_eq!(d.allowed, allowed, "{uri}: {d:?}");
        }
    }

    #[test]
    fn suffixes_compare_case_insensitively_and_by_label() {
        let rules = Rules {
            allowed_dns_suffixes: vec!["Example.COM.".into()],
            ..Rules::default()
        };
        assert!(rules.validate().is_ok());
        assert!(evaluate(&rules, &req(&["a.example.com"], &[], &[], DAY)).allowed);
        assert!(!evaluate(&rules, &req(&["aexample.com"], &[], &[], DAY)).allowed);
        let none = Rules {
            allowed_dns_suffixes: vec![],
            ..Rules::default()
        };
        assert!(!evaluate(&none, &req(&["localhost"], &[], &[], DAY)).allowed);
    }

    #[test]
    fn key_algorithms_are_checked() {
        let rules = Rules {
            allowed_key_algorithms: vec![KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519],
            ..Rules::default()
        };
        for alg in KeyAlgorithm::ALL {
            let mut r = req(&["a.local"], &[], &[], DAY);
            r.key_algorithm = alg;
            let expected = matches!(alg, KeyAlgorithm::EcdsaP256 | KeyAlgorithm::Ed25519);
            assert_eq!(evaluate(&rules, &r).allowed, expected, "{alg:?}");
        }
    }

    #[test]
    fn rules_load_from_toml_with_defaults_for_omitted_fields() {
        let rules = Rules::from_toml(
            r#"
            version = "prod-7"
            allowed_dns_suffixes = ["example.com", "svc.cluster.local"]
            allowed_ip_ranges = ["10.0.0.0/8", "fd00::/8"]
            allowed_uri_prefixes = ["spiffe://example.org/"]
            max_ttl_seconds = 3600
            ttl_over_max = "deny"
            allowed_key_algorithms = ["ecdsa-p256", "ed25519"]
            "#,
        )
        .unwrap();
        assert_eq!(rules.version, "prod-7");
        assert_eq!(rules.allowed_ip_ranges.len(), 2);
        assert_eq!(rules.ttl_over_max, TtlOverMax::Deny);
        assert_eq!(
            rules.allowed_key_algorithms,
            vec![KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519]
        );
        assert!(!rules.allow_wildcards);

        let partial = Rules::from_toml("max_ttl_seconds = 60").unwrap();
        assert_eq!(
            partial,
            Rules {
                max_ttl_seconds: 60,
                ..Rules::default()
            }
        );
        assert_eq!(Rules::from_toml("").unwrap(), Rules::default());
    }

    #[test]
    fn bad_rules_are_refused_with_every_problem() {
        let cases = [
            ("allowed_dns_sufixes = []", "unknown field"),
            ("max_ttl_seconds = 0", "max_ttl_seconds must be positive"),
            ("allowed_ip_ranges = [\"10.0.0.0/33\"]", "invalid"),
            ("ttl_over_max = \"truncate\"", "unknown variant"),
            ("allowed_key_algorithms = [\"dsa-1024\"]", "unknown variant"),
            (
                "allowed_dns_suffixes = [\"*.example.com\"]",
                "is not a DNS name",
            ),
            (
                "allowed_dns_suffixes = [\".example.com\"]",
                "is not a DNS name",
            ),
            ("allowed_dns_suffixes = [\"\"]", "is not a DNS name"),
            (
                "allowed_uri_prefixes = [\"example.org\"]",
                "must start with a scheme",
            ),
            ("version = \" \"", "version must not be empty"),
        ];
        for (text, needle) in cases {
            let err = Rules::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let err = Rules::from_toml("max_ttl_seconds = -1\nversion = \"\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_ttl_seconds") && err.contains("version"),
            "{err}"
        );
    }

    #[test]
    fn default_rules_are_valid_and_as_documented() {
        let rules = Rules::default();
        rules.validate().unwrap();
        assert_eq!(rules.allowed_ip_ranges.len(), 4);
        assert_eq!(rules.max_ttl_seconds, 90 * DAY);
        assert_eq!(rules.allowed_key_algorithms.len(), KeyAlgorithm::ALL.len());
    }

    #[test]
    fn rules_file_errors_name_the_file() {
        let err = Rules::from_toml_file(Path::new("/nonexistent/policy.toml")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/policy.toml"),
            "{err}"
        );
    }
}
