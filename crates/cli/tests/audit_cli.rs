//! `sigil audit` through the real binary against `sigil serve policy` on a private
//! nats-server: an empty log verifies; after one allowed and one denied decision,
//! `audit ls --json` lists both in order and `audit verify` reports an intact chain
//! (exit 0); after a row's reasons are altered in the database, `audit verify` exits 6
//! and names that row.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use sigil_bus::Bus;
use sigil_contracts::policy::{Action, AuditListResponse, Decision, EvaluateRequest};
use sigil_contracts::subjects::POLICY_EVALUATE;
use sigil_contracts::types::{KeyAlgorithm, Profile, Sans};
use sigil_testkit::NatsServer;

mod common;

use common::{err, out, sigil};

fn request(dns: &str) -> EvaluateRequest {
    EvaluateRequest {
        principal: "workload:web".into(),
        action: Action::Issue,
        profile: Profile::TlsServer,
        sans: Sans {
            dns: vec![dns.to_owned()],
            ..Sans::default()
        },
        ttl_seconds: 3600,
        key_algorithm: KeyAlgorithm::EcdsaP256,
        kind: None,
        key_bits: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_ls_and_verify_through_the_cli() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let _served = common::spawn(d, &url, &["serve", "policy"]);
    let o = common::until_ok(d, &url, &["audit", "verify"]);
    assert!(out(&o).contains("intact: 0 entries"), "{}", out(&o));

    let bus = Bus::connect(&url, "audit-cli-test").await.unwrap();
    let timeout = Duration::from_secs(5);
    let d1: Decision = bus
        .request(POLICY_EVALUATE, &request("web.internal"), timeout)
        .await
        .unwrap();
    assert!(d1.allowed);
    let d2: Decision = bus
        .request(POLICY_EVALUATE, &request("www.evil.test"), timeout)
        .await
        .unwrap();
    assert!(!d2.allowed);

    let o = sigil(d, &url, &["audit", "ls", "--json"]);
    assert!(o.status.success(), "{}", err(&o));
    let page: AuditListResponse = serde_json::from_str(&out(&o)).unwrap();
    let outcomes: Vec<_> = page.entries.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["allow", "deny"]);
    assert_eq!(page.entries[1].prev_hash, page.entries[0].hash);

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
    assert_eq!(v["checked"], 2);

    // Alter the deny row's reasons behind the service's back.
    use sigil_store::sea_orm::ConnectionTrait;
    let conn = sigil_store::open::<sigil_policy::Migrator>(
        &sigil_store::sqlite_url(&d.join("policy.db")),
        "policy",
    )
    .await
    .unwrap();
    conn.execute_unprepared("UPDATE audit SET reasons = '[]' WHERE seq = 2")
        .await
        .unwrap();
    conn.close().await.unwrap();
    let o = sigil(d, &url, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(6), "{}", err(&o));
    assert!(out(&o).contains("BROKEN at seq 2"), "{}", out(&o));
}
