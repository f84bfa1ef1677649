//! `sigil show`: one credential in detail.

use chrono::{DateTime, Utc};
use clap::Args;
use sigil_contracts::inventory::GetRequest;
use sigil_contracts::subjects::INVENTORY_GET;
use sigil_contracts::types::CredentialRecord;

use crate::commands::REQUEST_TIMEOUT;
use crate::context::GlobalArgs;
use crate::error::CliError;
use crate::output;

/// Show one certificate.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// Serial number in hex (case and ':' separators are ignored)
    pub serial: String,
}

pub async fn run(global: &GlobalArgs, args: ShowArgs) -> Result<(), CliError> {
    let bus = global.connect().await?;
    let record: CredentialRecord = bus
        .request(
            INVENTORY_GET,
            &GetRequest {
                serial: args.serial,
            },
            REQUEST_TIMEOUT,
        )
        .await?;
    let text = if global.json {
        output::json(&record)?
    } else {
        details(&record, Utc::now())
    };
    output::print(&text)
}

/// The key/value view (everything but the PEM, which --json carries).
pub fn details(r: &CredentialRecord, now: DateTime<Utc>) -> String {
    let f = &r.facts;
    let join = |v: Vec<String>| v.join(", ");
    let mut rows = vec![
        ("serial", f.serial.clone()),
        ("status", r.status.as_str().to_owned()),
        ("subject", f.subject.clone()),
        ("issuer", f.issuer.clone()),
        ("dns", join(f.sans.dns.clone())),
        (
            "ip",
            join(f.sans.ip.iter().map(ToString::to_string).collect()),
        ),
        ("uri", join(f.sans.uri.clone())),
        ("profile", f.profile.as_str().to_owned()),
        ("not before", output::time(f.not_before)),
        (
            "not after",
            format!(
                "{} ({})",
                output::time(f.not_after),
                output::relative(f.not_after, now)
            ),
        ),
        ("key", f.key_algorithm.clone()),
        ("signature", f.signature_algorithm.clone()),
        ("sha256", f.fingerprint_sha256.clone()),
        (
            "revoked at",
            r.revoked_at.map(output::time).unwrap_or_default(),
        ),
        (
            "reason",
            r.revocation_reason
                .map(|x| x.as_str().to_owned())
                .unwrap_or_default(),
        ),
    ];
    let labels: Vec<(String, String)> = r
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    rows.push((
        "labels",
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
    ));
    output::key_values(&rows)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};
    use clap::Parser;
    use sigil_contracts::types::{CredentialStatus, RevocationReason};

    use super::*;
    use crate::commands::ls::tests::record;
    use crate::{Cli, Command};

    #[test]
    fn serial_is_positional_and_json_is_global() {
        let cli = Cli::try_parse_from(["sigil", "show", "7F:01", "--json"]).unwrap();
        assert!(cli.global.json);
        match cli.command {
            Command::Show(a) => assert_eq!(a.serial, "7F:01"),
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(
            Cli::try_parse_from(["sigil", "show"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn details_list_facts_and_revocation() {
        let mut r = record("7f01", CredentialStatus::Revoked, &["api.example.com"]);
        r.revoked_at = Some(Utc.with_ymd_and_hms(2025, 6, 1, 13, 0, 0).unwrap());
        r.revocation_reason = Some(RevocationReason::KeyCompromise);
        r.labels.insert("team".into(), "payments".into());
        let now = r.facts.not_after - TimeDelta::hours(3);
        let text = details(&r, now);
        let expected = "\
serial      7f01
status      revoked
subject     CN=api.example.com
issuer      CN=Sigil Issuing CA
dns         api.example.com
profile     tls-server
not before  2025-06-01T12:00:00Z
not after   2025-06-02T12:00:00Z (in 3h)
key         ecdsa-p256
signature   ecdsa-with-SHA256
sha256      abababababababababababababababababababababababababababababababab
revoked at  2025-06-01T13:00:00Z
reason      key-compromise
labels      team=payments
";
        assert_eq!(text, expected);
    }
}
