//! Policy over a real nats-server and a real database (SQLite, or PostgreSQL when
//! `SIGIL_TEST_DATABASE_URL` is set). Replicas here decide requests without proof as
//! `anonymous` (`allow_anonymous`); requests by a workload or an admin carry a token
//! minted from the replica's database. Authentication itself is tested in
//! `auth_over_nats.rs`.
//! - the built-in default set is seeded as version 1 and decides `evaluate`;
//! - `apply` (by an admin, recorded as the author) → `evaluate` uses the new version at
//!   once; `list`/`show` read history;
//! - two replicas on one nats-server and one database both see a rollback within seconds;
//! - bad input (malformed policy with line/column, schema mismatch, a principal named in
//!   `evaluate`, an unknown principal type in a dry run, rollback to a missing version)
//!   is a typed `bad_request`/`not_found` and changes nothing;
//! - a time-phased rule takes effect when the injected clock passes its date;
//! - `policy.changed` events are published through the outbox.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use sigil_bus::{Bus, ClientError, ManualClock};
use sigil_contracts::auth::{AuthMethod, Proof};
use sigil_contracts::policy::{
    Action, ApplyRequest, Decision, EvaluateRequest, Explanation, ListRequest, ListResponse,
    PolicyDocument, PolicyOrigin, PolicyVersion, RollbackRequest, ShowRequest, TestRequest,
};
use sigil_contracts::subjects::{
    POLICY_APPLY, POLICY_EVALUATE, POLICY_LIST, POLICY_ROLLBACK, POLICY_SHOW, POLICY_TEST,
};
use sigil_contracts::types::{CaKind, KeyAlgorithm, Profile, Sans};
use sigil_contracts::{ErrorCode, Reply, WireError};
use sigil_testkit::{NatsServer, TestDb, eventually, eventually_ok};

mod common;

use common::Replica;
use common::auth::local_token;
use common::auth::{Fakes, Pki, record_issued};

const TIMEOUT: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(15);
const DAY: i64 = 86_400;

/// An issue request for `dns`, sent with `proof` (anonymous when `None`).
fn request(proof: Option<&Proof>, dns: &[&str], ttl_seconds: i64) -> EvaluateRequest {
    EvaluateRequest {
        principal: None,
        proof: proof.cloned(),
        operation: None,
        request_digest: None,
        action: Action::Issue,
        profile: Profile::TlsServer,
        sans: Sans {
            dns: dns.iter().map(|s| (*s).to_owned()).collect(),
            ..Sans::default()
        },
        ttl_seconds,
        key_algorithm: KeyAlgorithm::EcdsaP256,
        kind: Some(CaKind::Hybrid),
        key_bits: None,
    }
}

async fn raw_error(
    bus: &Bus,
    op: sigil_contracts::subjects::Operation,
    body: Vec<u8>,
) -> WireError {
    let reply = bus
        .request_raw(op, Bytes::from(body), TIMEOUT)
        .await
        .unwrap();
    let reply: Reply<serde_json::Value> = serde_json::from_slice(&reply).unwrap();
    reply.into_result().unwrap_err()
}

async fn versions(bus: &Bus) -> ListResponse {
    bus.request(POLICY_LIST, &ListRequest::default(), TIMEOUT)
        .await
        .unwrap()
}

#[tokio::test]
async fn seed_apply_evaluate_and_bad_input_changes_nothing() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    let bus = Bus::connect(&nats.url(), "policy-test").await.unwrap();
    let replica = Replica::start(&nats, &db, None).await;
    let web = local_token(
        &db,
        "workload:web",
        &["*.example.com", "*.com", "*.corp.test"],
        3600,
        100,
        Utc::now(),
    )
    .await;
    // The admin proves itself with its credential (a token authorizes only issue).
    let pki = Pki::new("Evaluate Test", Utc::now());
    let _fakes = Fakes::serve(&bus, pki.bundle()).await;
    let admin = pki.issue(&["uri:spiffe://sigil.admin/admin/root"], Utc::now(), 1);
    record_issued(&bus, &db, &admin, "admin:root").await;

    // Version 1 is the built-in default set.
    let list = versions(&bus).await;
    assert_eq!(list.active, 1);
    assert_eq!(list.versions[0].origin, PolicyOrigin::Seeded);
    let d: Decision = bus
        .request(
            POLICY_EVALUATE,
            &request(None, &["web.example.com"], 365 * DAY),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.policy_version, "1");
    assert_eq!(
        (d.principal.as_str(), d.authenticated_by),
        ("anonymous", AuthMethod::None)
    );
    assert_eq!(d.constraints.ttl_seconds, 90 * DAY);
    assert!(d.constraints.ttl_clamped);
    let d: Decision = bus
        .request(
            POLICY_EVALUATE,
            &request(Some(&web), &["evil.com"], DAY),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert!(!d.allowed);
    assert_eq!(
        (d.principal.as_str(), d.authenticated_by),
        ("workload:web", AuthMethod::Token)
    );
    assert_eq!(
        d.reasons,
        vec!["no policy permits issue of dns name evil.com for workload:web"]
    );

    // An admin applies a new set (recorded as its author): evaluate uses it at once.
    let v2: PolicyVersion = bus
        .request(
            POLICY_APPLY,
            &{
                let mut apply = ApplyRequest {
                    policies: "@id(\"only-corp\")\npermit (principal is Sigil::Workload, action, resource)\n  when { resource has dns_name && resource.dns_name like \"*.corp.test\" };\n".into(),
                    entities: None,
                    comment: Some("corp only".into()),
                    proof: None,
                };
                apply.proof = Some(
                    admin
                        .credential
                        .proof(&POLICY_APPLY.subject(), &apply, Utc::now())
                        .unwrap(),
                );
                apply
            },
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert!(v2.active);
    assert_eq!(v2.policy_count, 1);
    assert_eq!(v2.created_by, "admin:root");
    let d: Decision = bus
        .request(
            POLICY_EVALUATE,
            &request(Some(&web), &["a.corp.test"], DAY),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.policy_version, "2");
    let d: Decision = bus
        .request(
            POLICY_EVALUATE,
            &request(Some(&web), &["web.example.com"], DAY),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert!(!d.allowed, "{d:?}");

    // show: the active version and an older one, with their text.
    let shown: PolicyDocument = bus
        .request(POLICY_SHOW, &ShowRequest::default(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(shown.version.version, 2);
    assert!(shown.policies.contains("only-corp"));
    let shown: PolicyDocument = bus
        .request(POLICY_SHOW, &ShowRequest { version: Some(1) }, TIMEOUT)
        .await
        .unwrap();
    assert!(!shown.version.active);
    assert!(shown.policies.contains("default-dns-names"));

    // test: a dry run explains, at another time, against a candidate set.
    let explained: Explanation = bus
        .request(
            POLICY_TEST,
            &TestRequest {
                request: EvaluateRequest {
                    principal: Some("workload:web".into()),
                    ..request(None, &["b.corp.test"], DAY)
                },
                at: Some(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()),
                version: None,
                policies: None,
                entities: None,
            },
            TIMEOUT,
        )
        .await
        .unwrap();
    assert!(explained.decision.allowed);
    assert_eq!(explained.evaluations[0].determining[0].id, "only-corp");

    // Bad input: typed errors, nothing stored.
    let before = versions(&bus).await;
    let malformed = ApplyRequest {
        policies: "permit (principal, action, resource);\nforbid (principal, action resource);\n"
            .into(),
        entities: None,
        comment: None,
        proof: None,
    };
    let err = bus
        .request::<_, PolicyVersion>(POLICY_APPLY, &malformed, TIMEOUT)
        .await
        .unwrap_err()
        .into_wire();
    assert_eq!(err.code, ErrorCode::BadRequest, "{err:?}");
    let details = err.details.clone().unwrap();
    assert_eq!(details["kind"], "parse");
    assert_eq!(details["problems"][0]["line"], 2, "{details}");
    assert!(
        details["problems"][0]["column"].as_u64().is_some(),
        "{details}"
    );
    let mismatch = ApplyRequest {
        policies: "permit (principal, action, resource) when { resource.owner == \"me\" };".into(),
        ..malformed.clone()
    };
    let err = bus
        .request::<_, PolicyVersion>(POLICY_APPLY, &mismatch, TIMEOUT)
        .await
        .unwrap_err()
        .into_wire();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert_eq!(err.details.unwrap()["kind"], "schema");
    let named = EvaluateRequest {
        principal: Some("workload:web".into()),
        ..request(None, &["a.corp.test"], DAY)
    };
    let err = bus
        .request::<_, Decision>(POLICY_EVALUATE, &named, TIMEOUT)
        .await
        .unwrap_err()
        .into_wire();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("established by the proof"), "{err:?}");
    let err = bus
        .request::<_, Explanation>(
            POLICY_TEST,
            &TestRequest {
                request: EvaluateRequest {
                    principal: Some("robot:r2".into()),
                    ..request(None, &["a.corp.test"], DAY)
                },
                at: None,
                version: None,
                policies: None,
                entities: None,
            },
            TIMEOUT,
        )
        .await
        .unwrap_err()
        .into_wire();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(
        err.message.contains("unknown principal type \"robot\""),
        "{err:?}"
    );
    let err = bus
        .request::<_, PolicyVersion>(
            POLICY_ROLLBACK,
            &RollbackRequest {
                version: 99,
                comment: None,
                proof: None,
            },
            TIMEOUT,
        )
        .await
        .unwrap_err()
        .into_wire();
    assert_eq!(err.code, ErrorCode::NotFound);
    let mut body = serde_json::to_value(request(None, &["a.corp.test"], 60)).unwrap();
    body["surprise"] = serde_json::json!(true);
    assert_eq!(
        raw_error(&bus, POLICY_EVALUATE, serde_json::to_vec(&body).unwrap())
            .await
            .code,
        ErrorCode::BadRequest
    );
    assert_eq!(
        raw_error(&bus, POLICY_APPLY, b"not json".to_vec())
            .await
            .code,
        ErrorCode::BadRequest
    );
    assert_eq!(versions(&bus).await, before, "bad input changed nothing");
    let d: Decision = bus
        .request(
            POLICY_EVALUATE,
            &request(Some(&web), &["a.corp.test"], DAY),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(d.policy_version, "2");

    // Old requests (without kind / key_bits) still parse.
    let mut old = serde_json::to_value(request(None, &["localhost"], 60)).unwrap();
    old.as_object_mut().unwrap().remove("kind");
    let reply = bus
        .request_raw(
            POLICY_EVALUATE,
            Bytes::from(serde_json::to_vec(&old).unwrap()),
            TIMEOUT,
        )
        .await
        .unwrap();
    let reply: Reply<Decision> = serde_json::from_slice(&reply).unwrap();
    assert!(reply.into_result().is_ok());

    replica.stop().await;
    let after = bus
        .request::<_, Decision>(
            POLICY_EVALUATE,
            &request(None, &["localhost"], 60),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            after,
            ClientError::NoResponders { .. } | ClientError::TimedOut { .. }
        ),
        "{after:?}"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn rollback_is_visible_on_two_replicas() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    let bus = Bus::connect(&nats.url(), "policy-test").await.unwrap();
    let a = Replica::start(&nats, &db, None).await;
    let b = Replica::start(&nats, &db, None).await;

    let v2: PolicyVersion = bus
        .request(
            POLICY_APPLY,
            &ApplyRequest {
                policies: "@id(\"nothing-but-corp\")\npermit (principal, action, resource)\n  when { resource has dns_name && resource.dns_name like \"*.corp.test\" };\n".into(),
                entities: None,
                comment: None,
                proof: None,
            },
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.created_by, "anonymous");
    // Ask each replica directly: their micro-service instances share a queue group, so
    // query until both have answered with the expected version (requests spread over
    // both) — and then, stronger, every one of many consecutive answers agrees.
    async fn all_answer(bus: &Bus, version: &str, allowed: bool) {
        eventually(
            WAIT,
            &format!("every replica decides by version {version}"),
            || async {
                for _ in 0..20 {
                    let d: Decision = bus
                        .request(
                            POLICY_EVALUATE,
                            &request(None, &["web.example.com"], DAY),
                            TIMEOUT,
                        )
                        .await
                        .ok()?;
                    if d.policy_version != version || d.allowed != allowed {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
    }
    all_answer(&bus, "2", false).await;

    let v3: PolicyVersion = bus
        .request(
            POLICY_ROLLBACK,
            &RollbackRequest {
                version: 1,
                comment: None,
                proof: None,
            },
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(v3.version, 3);
    assert_eq!(v3.origin, PolicyOrigin::RolledBack);
    assert_eq!(v3.restored_from, Some(1));
    // The rollback restores version 1's text: same fingerprint.
    let list = versions(&bus).await;
    assert_eq!(list.active, 3);
    assert_eq!(list.versions[0].sha256, list.versions[2].sha256);
    // Both replicas (the one that stored it and the other, through the event) decide
    // by version 3 within seconds.
    let started = std::time::Instant::now();
    all_answer(&bus, "3", true).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The changes went out as events through the outbox.
    let events = eventually_ok(WAIT, "policy.changed events", || async {
        let stream = bus
            .jetstream()
            .get_stream("SIGIL_EVENTS")
            .await
            .map_err(|e| e.to_string())?;
        let mut s = stream.clone();
        let n = s.info().await.map_err(|e| e.to_string())?.state.messages;
        if n >= 3 {
            Ok(n)
        } else {
            Err(format!("{n} events"))
        }
    })
    .await;
    assert!(events >= 3);

    a.stop().await;
    b.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_time_phased_rule_follows_the_injected_clock() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    let bus = Bus::connect(&nats.url(), "policy-test").await.unwrap();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2029, 3, 14, 12, 0, 0).unwrap());
    let replica = Replica::start(&nats, &db, Some(clock.clone())).await;
    let sc081 = sigil_policy::templates::find("sc081").unwrap().text;
    let policies = format!(
        "{sc081}\n@id(\"corp\")\npermit (principal, action, resource) when {{ resource has dns_name }};\n"
    );
    let _: PolicyVersion = bus
        .request(
            POLICY_APPLY,
            &ApplyRequest {
                policies,
                entities: None,
                comment: None,
                proof: None,
            },
            TIMEOUT,
        )
        .await
        .unwrap();
    let r = request(None, &["web.corp.test"], 60 * DAY);
    let before: Decision = bus.request(POLICY_EVALUATE, &r, TIMEOUT).await.unwrap();
    assert!(
        before.allowed && !before.constraints.ttl_clamped,
        "{before:?}"
    );
    clock.advance(chrono::Duration::days(2));
    let after: Decision = bus.request(POLICY_EVALUATE, &r, TIMEOUT).await.unwrap();
    assert!(after.allowed, "{after:?}");
    assert!(after.constraints.ttl_clamped);
    assert_eq!(after.constraints.ttl_seconds, 47 * DAY);
    assert!(
        after.reasons[0].contains("sc081-47-days"),
        "{:?}",
        after.reasons
    );
    replica.stop().await;
    db.cleanup().await;
}
