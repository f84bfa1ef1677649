//! `sigil audit` through the real binary against `sigil up` on a private nats-server:
//! the log starts with the admin credential's own making (a minted token, its allowed
//! issuance, the issuance); after one more allowed and one denied issuance, `audit ls
//! --json` lists them in order with the authenticated principals and `audit verify`
//! reports an intact chain (exit 0); after the denied row's reasons are altered in the
//! database, `audit verify` exits 6 and names that row.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sigil_contracts::policy::{AuditEntry, AuditKind, AuditListResponse};
use sigil_testkit::NatsServer;

mod common;

use common::{err, out, sigil};

fn entries(d: &std::path::Path, url: &str) -> Vec<AuditEntry> {
    let o = sigil(d, url, &["audit", "ls", "--json"]);
    assert!(o.status.success(), "{}", err(&o));
    let page: AuditListResponse = serde_json::from_str(&out(&o)).unwrap();
    page.entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_ls_and_verify_through_the_cli() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let (_up, _) = common::start_up(d, &url, &[]);

    // `sigil up` made the admin credential: a token minted locally, a decision allowing
    // its use, the issuance.
    let first = entries(d, &url);
    let kinds: Vec<AuditKind> = first.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.first(), Some(&AuditKind::TokenCreated), "{first:#?}");
    assert!(
        first.iter().any(|e| e.kind == AuditKind::Decision
            && e.outcome == "allow"
            && e.principal == "admin:admin"),
        "{first:#?}"
    );

    // One allowed issuance (the admin's) and one denied (a workload's, by token).
    let o = sigil(
        d,
        &url,
        &[
            "issue",
            "--dns",
            "web.internal",
            "--out",
            d.join("web").to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let o = sigil(
        d,
        &url,
        &[
            "token",
            "create",
            "--principal",
            "workload:web",
            "--for",
            "*.*.test",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let token = out(&o).trim().to_owned();
    let o = sigil(
        d,
        &url,
        &[
            "issue",
            "--dns",
            "www.evil.test",
            "--token",
            &token,
            "--out",
            d.join("evil").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));

    let all = entries(d, &url);
    let decisions: Vec<(&str, &str)> = all
        .iter()
        .filter(|e| e.kind == AuditKind::Decision)
        .map(|e| (e.principal.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        &decisions[decisions.len() - 2..],
        [("admin:admin", "allow"), ("workload:web", "deny")],
        "{all:#?}"
    );
    for pair in all.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "chained");
    }
    let denied = all
        .iter()
        .rev()
        .find(|e| e.outcome == "deny")
        .unwrap()
        .clone();
    assert!(!denied.reasons.is_empty());

    let o = sigil(
        d,
        &url,
        &[
            "audit",
            "ls",
            "--principal",
            "workload:web",
            "--since",
            "1h",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("deny"), "{}", out(&o));

    let o = sigil(d, &url, &["audit", "verify", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["checked"].as_u64().unwrap() >= all.len() as u64, "{v}");

    // Alter the deny row's reasons behind the service's back.
    use sigil_store::sea_orm::ConnectionTrait;
    let conn = sigil_store::open::<sigil_policy::Migrator>(
        &sigil_store::sqlite_url(&d.join("policy.db")),
        "policy",
    )
    .await
    .unwrap();
    conn.execute_unprepared(&format!(
        "UPDATE audit SET reasons = '[]' WHERE seq = {}",
        denied.seq
    ))
    .await
    .unwrap();
    conn.close().await.unwrap();
    let o = sigil(d, &url, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(6), "{}", err(&o));
    assert!(
        out(&o).contains(&format!("BROKEN at seq {}", denied.seq)),
        "{}",
        out(&o)
    );
}
