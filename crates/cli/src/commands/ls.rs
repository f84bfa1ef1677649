//! `sigil ls`: list credentials from the inventory.

use std::time::Duration;

use clap::Args;
use sigil_bus::Bus;
use sigil_contracts::inventory::{MAX_PAGE, QueryRequest, QueryResponse};
use sigil_contracts::subjects::INVENTORY_QUERY;
use sigil_contracts::types::{CredentialRecord, CredentialStatus};

use crate::commands::{REQUEST_TIMEOUT, parse_duration, seconds, wire_enum};
use crate::context::GlobalArgs;
use crate::error::CliError;
use crate::output;

/// SANs shown per row before the rest is summarised as `+N`.
const SANS_SHOWN: usize = 3;

/// List certificates.
#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Only certificates that expire within this time, e.g. 7d
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub expiring: Option<Duration>,

    /// Only certificates with this status
    #[arg(
        long,
        value_parser = wire_enum::<CredentialStatus>(
            [CredentialStatus::Active, CredentialStatus::Revoked, CredentialStatus::Expired]
                .iter()
                .map(|s| s.as_str())
                .collect()
        )
    )]
    pub status: Option<CredentialStatus>,

    /// Only certificates with this SAN, or matching a `*.example.com` pattern
    #[arg(long, value_name = "PATTERN")]
    pub san: Option<String>,

    /// Page size (1-500)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PAGE)))]
    pub limit: Option<u32>,

    /// Follow cursors and list every match, not just the first page
    #[arg(long)]
    pub all: bool,
}

pub async fn run(global: &GlobalArgs, args: LsArgs) -> Result<(), CliError> {
    let bus = global.connect().await?;
    let (items, more) = fetch(&bus, &args).await?;
    let text = if global.json {
        output::json(&items)?
    } else if items.is_empty() {
        String::new()
    } else {
        table(&items)
    };
    output::print(&text)?;
    if !global.json && items.is_empty() {
        eprintln!("no certificates match");
    }
    if more {
        eprintln!("more certificates match: use --all to list them all");
    }
    Ok(())
}

/// The query for one page.
pub fn query(args: &LsArgs, cursor: Option<String>) -> QueryRequest {
    QueryRequest {
        status: args.status,
        expiring_within_seconds: args.expiring.map(seconds),
        san: args.san.clone(),
        limit: args.limit,
        cursor,
    }
}

/// The matching records, and whether more pages were left unread.
async fn fetch(bus: &Bus, args: &LsArgs) -> Result<(Vec<CredentialRecord>, bool), CliError> {
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let page: QueryResponse = bus
            .request(
                INVENTORY_QUERY,
                &query(args, cursor.clone()),
                REQUEST_TIMEOUT,
            )
            .await?;
        items.extend(page.items);
        match page.next_cursor {
            None => return Ok((items, false)),
            Some(_) if !args.all => return Ok((items, true)),
            Some(next) if Some(&next) == cursor.as_ref() => {
                return Err(CliError::Other(format!(
                    "inventory returned the same cursor twice ({next}); stopping"
                )));
            }
            Some(next) => cursor = Some(next),
        }
    }
}

/// SERIAL | STATUS | NOT AFTER | SANS | KEY, aligned, without borders.
pub fn table(items: &[CredentialRecord]) -> String {
    output::plain_table(
        ["SERIAL", "STATUS", "NOT AFTER", "SANS", "KEY"],
        items.iter().map(|r| {
            [
                r.facts.serial.clone(),
                r.status.as_str().to_owned(),
                output::time(r.facts.not_after),
                sans_cell(&r.facts.sans.values()),
                r.facts.key_algorithm.clone(),
            ]
        }),
    )
}

fn sans_cell(sans: &[String]) -> String {
    if sans.len() <= SANS_SHOWN {
        sans.join(", ")
    } else {
        format!(
            "{}, +{}",
            sans[..SANS_SHOWN].join(", "),
            sans.len() - SANS_SHOWN
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::{TimeZone, Utc};
    use clap::Parser;
    use sigil_contracts::types::{CertificateFacts, Profile, Sans};

    use super::*;
    use crate::{Cli, Command};

    fn parse(args: &[&str]) -> Result<(GlobalArgs, LsArgs), clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("sigil").chain(args.iter().copied()))?;
        match cli.command {
            Command::Ls(a) => Ok((cli.global, a)),
            other => panic!("parsed as {other:?}"),
        }
    }

    pub(crate) fn record(serial: &str, status: CredentialStatus, dns: &[&str]) -> CredentialRecord {
        let t = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
        CredentialRecord {
            facts: CertificateFacts {
                serial: serial.into(),
                subject: format!("CN={}", dns.first().unwrap_or(&"x")),
                sans: Sans {
                    dns: dns.iter().map(|d| (*d).to_owned()).collect(),
                    ..Sans::default()
                },
                issuer: "CN=Sigil Issuing CA".into(),
                not_before: t,
                not_after: t + chrono::TimeDelta::days(1),
                key_algorithm: "ecdsa-p256".into(),
                signature_algorithm: "ecdsa-with-SHA256".into(),
                profile: Profile::TlsServer,
                fingerprint_sha256: "ab".repeat(32),
            },
            status,
            revoked_at: None,
            revocation_reason: None,
            labels: Default::default(),
            certificate_pem: "PEM".into(),
        }
    }

    #[test]
    fn filters_parse_into_a_query() {
        let (global, args) = parse(&[
            "ls",
            "--expiring",
            "7d",
            "--status",
            "revoked",
            "--san",
            "*.example.com",
            "--limit",
            "50",
            "--all",
            "--json",
        ])
        .unwrap();
        assert!(global.json);
        assert!(args.all);
        let q = query(&args, Some("c1".into()));
        assert_eq!(q.expiring_within_seconds, Some(7 * 86_400));
        assert_eq!(q.status, Some(CredentialStatus::Revoked));
        assert_eq!(q.san.as_deref(), Some("*.example.com"));
        assert_eq!(q.limit, Some(50));
        assert_eq!(q.cursor.as_deref(), Some("c1"));

        let (global, args) = parse(&["ls"]).unwrap();
        assert!(!global.json);
        assert_eq!(query(&args, None), QueryRequest::default());
    }

    #[test]
    fn bad_filters_are_usage_errors() {
        for bad in [
            vec!["ls", "--status", "lost"],
            vec!["ls", "--limit", "0"],
            vec!["ls", "--limit", "501"],
            vec!["ls", "--expiring", "a while"],
        ] {
            assert_eq!(parse(&bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn table_is_aligned_with_one_row_per_certificate() {
        let items = [
            record("7f01", CredentialStatus::Active, &["api.example.com"]),
            record(
                "0a",
                CredentialStatus::Revoked,
                &[
                    "a.example.com",
                    "b.example.com",
                    "c.example.com",
                    "d.example.com",
                ],
            ),
        ];
        let text = table(&items);
        assert_eq!(
            text,
            "SERIAL  STATUS   NOT AFTER             SANS                                             KEY\n\
             7f01    active   2025-06-02T12:00:00Z  api.example.com                                  ecdsa-p256\n\
             0a      revoked  2025-06-02T12:00:00Z  a.example.com, b.example.com, c.example.com, +1  ecdsa-p256\n"
        );
    }

    #[test]
    fn json_is_an_array_of_records() {
        let items = vec![record(
            "7f01",
            CredentialStatus::Active,
            &["api.example.com"],
        )];
        let v: serde_json::Value = serde_json::from_str(&output::json(&items).unwrap()).unwrap();
        assert_eq!(v[0]["serial"], "7f01");
        assert_eq!(v[0]["status"], "active");
    }
}
