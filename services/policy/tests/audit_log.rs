//! The hash-chained audit log over a real nats-server and a real database (SQLite, or
//! PostgreSQL when `SIGIL_TEST_DATABASE_URL` is set):
//! - decisions (allow and deny) and consumed `identity.issued`/`identity.revoked`
//!   events are appended in order with a valid chain; a redelivered event appends
//!   nothing; a denial emits `policy.denied` on the stream;
//! - 50 concurrent evaluations on two replicas sharing one database leave one
//!   unbroken chain without duplicate or missing `seq`;
//! - altering a row's reasons, or deleting a middle row, makes `audit_verify` report
//!   exactly that `seq`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use sigil_bus::Bus;
use sigil_contracts::CloudEvent;
use sigil_contracts::event::{IdentityIssued, IdentityRevoked};
use sigil_contracts::policy::{
    Action, AuditKind, AuditListRequest, AuditListResponse, AuditVerifyRequest,
    AuditVerifyResponse, BrokenReason, Decision, EvaluateRequest,
};
use sigil_contracts::subjects::{
    EVENTS_STREAM, POLICY_AUDIT_LIST, POLICY_AUDIT_VERIFY, POLICY_EVALUATE, event_subject,
};
use sigil_contracts::types::{
    CaKind, CertificateFacts, KeyAlgorithm, Profile, RevocationReason, Sans,
};
use sigil_contracts::{EventData, EventKind};
use sigil_policy::Migrator;
use sigil_policy::audit::entity;
use sigil_testkit::{NatsServer, TestDb, eventually, eventually_ok};

mod common;

use common::Replica;

const TIMEOUT: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(20);

/// An anonymous issue request (the replicas here allow them).
fn request(dns: &str) -> EvaluateRequest {
    EvaluateRequest {
        principal: None,
        proof: None,
        operation: None,
        request_digest: None,
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

async fn entries(bus: &Bus) -> Vec<sigil_contracts::policy::AuditEntry> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page: AuditListResponse = bus
            .request(
                POLICY_AUDIT_LIST,
                &AuditListRequest {
                    after_seq: after,
                    limit: Some(40),
                    ..AuditListRequest::default()
                },
                TIMEOUT,
            )
            .await
            .unwrap();
        all.extend(page.entries);
        match page.next_cursor {
            Some(c) => after = Some(c),
            None => return all,
        }
    }
}

async fn verify(bus: &Bus) -> AuditVerifyResponse {
    bus.request(POLICY_AUDIT_VERIFY, &AuditVerifyRequest {}, TIMEOUT)
        .await
        .unwrap()
}

fn issued(serial: &str) -> CloudEvent<IdentityIssued> {
    let now = Utc::now();
    CloudEvent::new(
        "/sigil/issuer",
        IdentityIssued {
            facts: CertificateFacts {
                serial: serial.to_owned(),
                subject: "CN=web.internal".to_owned(),
                sans: Sans {
                    dns: vec!["web.internal".to_owned()],
                    ..Sans::default()
                },
                issuer: "CN=Sigil Test CA".to_owned(),
                not_before: now,
                not_after: now + chrono::Duration::hours(1),
                key_algorithm: "ecdsa-p256".to_owned(),
                signature_algorithm: "ecdsa-with-SHA256".to_owned(),
                profile: Profile::TlsServer,
                fingerprint_sha256: "ab".repeat(32),
            },
            certificate_pem: String::new(),
            issuer_ca_id: None,
            chain_pem: vec![],
            requested_by: "workload:web".to_owned(),
            kind: CaKind::Classical,
        },
        now,
        None,
    )
}

async fn publish<T: EventData>(bus: &Bus, event: &CloudEvent<T>, msg_id: &str) {
    bus.publish_event(
        &event_subject(T::KIND),
        msg_id,
        Bytes::from(serde_json::to_vec(event).unwrap()),
        None,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn decisions_and_identity_events_form_one_verifiable_chain() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    let bus = Bus::connect(&nats.url(), "audit-test").await.unwrap();
    let replica = Replica::start(&nats, &db, None).await;

    let allowed: Decision = bus
        .request(POLICY_EVALUATE, &request("web.internal"), TIMEOUT)
        .await
        .unwrap();
    assert!(allowed.allowed);
    let denied: Decision = bus
        .request(POLICY_EVALUATE, &request("www.evil.test"), TIMEOUT)
        .await
        .unwrap();
    assert!(!denied.allowed);

    // A denial is on the stream as policy.denied.
    eventually_ok(WAIT, "policy.denied on the stream", || async {
        let stream = bus
            .jetstream()
            .get_stream(EVENTS_STREAM)
            .await
            .map_err(|e| e.to_string())?;
        let msg = stream
            .get_last_raw_message_by_subject(&event_subject(EventKind::PolicyDenied))
            .await
            .map_err(|e| e.to_string())?;
        let event: serde_json::Value =
            serde_json::from_slice(&msg.payload).map_err(|e| e.to_string())?;
        if event["data"]["audit_seq"] == 2 {
            Ok(())
        } else {
            Err(format!("{event}"))
        }
    })
    .await;

    // identity.issued, delivered twice (same event id), then identity.revoked.
    let event = issued("0a1b2c");
    publish(&bus, &event, "first").await;
    publish(&bus, &event, "second-copy").await;
    let revoked = CloudEvent::new(
        "/sigil/revocation",
        IdentityRevoked {
            serial: "0a1b2c".to_owned(),
            reason: RevocationReason::KeyCompromise,
            reason_code: 1,
            revoked_at: Utc::now(),
            revoked_by: "admin:alice".to_owned(),
        },
        Utc::now(),
        None,
    );
    publish(&bus, &revoked, "revoked").await;
    let all = eventually(WAIT, "4 audit entries", || async {
        let all = entries(&bus).await;
        (all.len() >= 4).then_some(all)
    })
    .await;
    // Give a duplicate append a chance to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = if entries(&bus).await.len() == all.len() {
        all
    } else {
        entries(&bus).await
    };
    let kinds: Vec<_> = all.iter().map(|e| (e.kind, e.outcome.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (AuditKind::Decision, "allow"),
            (AuditKind::Decision, "deny"),
            (AuditKind::Issued, "issued"),
            (AuditKind::Revoked, "revoked"),
        ]
    );
    assert_eq!(all[2].principal, "workload:web");
    assert!(all[2].resource.contains("0a1b2c"));
    assert_eq!(all[3].principal, "admin:alice");
    assert_eq!(all[1].reasons, denied.reasons);
    assert_eq!(all[1].policy_version, "1");
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(all[0].prev_hash, sigil_policy::audit::GENESIS);
    for pair in all.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    let v = verify(&bus).await;
    assert!(v.ok, "{v:?}");
    assert_eq!(v.checked, 4);

    // Filters: by principal.
    let mine: AuditListResponse = bus
        .request(
            POLICY_AUDIT_LIST,
            &AuditListRequest {
                principal: Some("admin:alice".into()),
                ..AuditListRequest::default()
            },
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(mine.entries.len(), 1);

    replica.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn concurrent_decisions_on_two_replicas_keep_one_chain_and_tampering_is_found() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    let bus = Bus::connect(&nats.url(), "audit-test").await.unwrap();
    let a = Replica::start(&nats, &db, None).await;
    let b = Replica::start(&nats, &db, None).await;

    let mut calls = tokio::task::JoinSet::new();
    for i in 0..50 {
        let bus = bus.clone();
        calls.spawn(async move {
            let dns = if i % 5 == 0 {
                format!("x{i}.evil.test")
            } else {
                format!("w{i}.internal")
            };
            let d: Decision = bus
                .request(POLICY_EVALUATE, &request(&dns), TIMEOUT)
                .await
                .unwrap();
            d
        });
    }
    while let Some(r) = calls.join_next().await {
        r.unwrap();
    }
    let all = entries(&bus).await;
    assert_eq!(all.len(), 50);
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    let v = verify(&bus).await;
    assert!(v.ok, "{v:?}");
    assert_eq!(v.checked, 50);

    // Alter row 17's reasons directly in the database.
    let conn = sigil_store::open::<Migrator>(db.url(), "policy")
        .await
        .unwrap();
    let row = entity::Entity::find_by_id(17i64)
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    let mut active: entity::ActiveModel = row.clone().into();
    active.reasons = Set("[\"nothing to see\"]".to_owned());
    active.update(&conn).await.unwrap();
    let v = verify(&bus).await;
    assert!(!v.ok);
    let broken = v.broken.unwrap();
    assert_eq!(
        (broken.seq, broken.reason),
        (17, BrokenReason::HashMismatch)
    );
    // Put it back; then delete row 30.
    let original = row.reasons.clone();
    let mut back: entity::ActiveModel = row.into();
    back.reasons = Set(original);
    back.update(&conn).await.unwrap();
    assert!(verify(&bus).await.ok);
    entity::Entity::delete_by_id(30i64)
        .exec(&conn)
        .await
        .unwrap();
    let v = verify(&bus).await;
    let broken = v.broken.unwrap();
    assert_eq!((broken.seq, broken.reason), (30, BrokenReason::MissingSeq));
    conn.close().await.unwrap();

    a.stop().await;
    b.stop().await;
    db.cleanup().await;
}

/// The newest row is anchored in the event stream (`policy.audit_anchored`); removing
/// the newest rows keeps the chain intact but breaks the anchor, and `audit_verify`
/// says so.
#[tokio::test]
async fn removing_the_newest_rows_is_caught_by_the_anchor_in_the_stream() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    let bus = Bus::connect(&nats.url(), "audit-anchor-test")
        .await
        .unwrap();
    let config = sigil_policy::Config {
        allow_anonymous: true,
        anchor_interval: Duration::from_millis(100),
        ..common::config(&db)
    };
    let replica = Replica::start_with(&nats, config, None).await;

    // No rows, no anchor.
    let v = verify(&bus).await;
    assert!(v.ok && v.anchor.is_none(), "{v:?}");
    for i in 0..5 {
        let _: Decision = bus
            .request(
                POLICY_EVALUATE,
                &request(&format!("a{i}.internal")),
                TIMEOUT,
            )
            .await
            .unwrap();
    }
    // The anchor of row 5 reaches the stream.
    let anchored = eventually_ok(WAIT, "the anchor of row 5", || async {
        let v = verify(&bus).await;
        match &v.anchor {
            Some(a) if a.seq == 5 && a.ok => Ok(v),
            other => Err(format!("anchor not at seq 5 yet: {other:?}")),
        }
    })
    .await;
    assert!(anchored.ok);
    replica.stop().await;

    // Someone with database access removes the two newest rows: the chain of rows 1-3
    // is intact, but the anchor names seq 5.
    let conn = sigil_store::open::<Migrator>(db.url(), "policy")
        .await
        .unwrap();
    for seq in [5i64, 4] {
        entity::Entity::delete_by_id(seq).exec(&conn).await.unwrap();
    }
    let replica = Replica::start(&nats, &db, None).await;
    let v = verify(&bus).await;
    assert!(!v.ok, "{v:?}");
    assert_eq!(v.checked, 3);
    let broken = v.broken.clone().unwrap();
    assert_eq!(
        (broken.seq, broken.reason),
        (5, BrokenReason::AnchorMismatch)
    );
    assert!(broken.detail.contains("ends at seq 3"), "{}", broken.detail);
    assert!(!v.anchor.unwrap().ok);

    // Rewriting rows 4 and 5 (a valid chain again) does not fool the anchor either.
    for i in 0..2 {
        let _: Decision = bus
            .request(
                POLICY_EVALUATE,
                &request(&format!("b{i}.internal")),
                TIMEOUT,
            )
            .await
            .unwrap();
    }
    let v = verify(&bus).await;
    assert_eq!(v.checked, 5);
    let broken = v.broken.unwrap();
    assert_eq!(
        (broken.seq, broken.reason),
        (5, BrokenReason::AnchorMismatch)
    );
    assert!(broken.detail.contains("hash differs"), "{}", broken.detail);
    conn.close().await.unwrap();
    replica.stop().await;
    db.cleanup().await;
}

/// Decisions and consumed identity events append to the same table from two writers
/// (the decision group commit and the event consumer): under load every decision is
/// still recorded and answered, and the chain holds every entry once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_and_events_appending_at_once_all_land() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    let bus = Bus::connect(&nats.url(), "audit-load-test").await.unwrap();
    let _replica = Replica::start(&nats, &db, None).await;
    bus.ensure_stream().await.unwrap();

    const EVENTS: usize = 150;
    const DECISIONS: usize = 150;
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 0..EVENTS {
                let serial = format!("{:04x}", 0x1000 + i);
                publish(&bus, &issued(&serial), &format!("load-{i}")).await;
            }
        })
    };
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..DECISIONS {
        let bus = bus.clone();
        calls.spawn(async move {
            bus.request::<_, Decision>(
                POLICY_EVALUATE,
                &request(&format!("w{i}.internal")),
                TIMEOUT,
            )
            .await
        });
    }
    while let Some(answer) = calls.join_next().await {
        answer
            .unwrap()
            .expect("every decision is recorded and answered");
    }
    publisher.await.unwrap();
    let total = sigil_testkit::eventually(TIMEOUT, "every event appended", || {
        let bus = bus.clone();
        async move {
            let n = entries(&bus).await.len();
            (n == EVENTS + DECISIONS).then_some(n)
        }
    })
    .await;
    assert_eq!(total, EVENTS + DECISIONS);
    let v = verify(&bus).await;
    assert!(v.ok, "{v:?}");
}

/// A group-committed batch is chained in memory from one read of the tail: appended
/// after existing rows, in order, with each denial's `policy.denied` carrying its own
/// row's `seq`, and the whole log still verifies.
#[tokio::test]
async fn a_batch_appends_in_order_after_the_tail_with_each_denials_seq() {
    use sea_orm::{QueryOrder, TransactionTrait};
    use sigil_contracts::event::PolicyDenied;
    use sigil_policy::audit::{self, NewEntry};

    let db = TestDb::from_env_or_sqlite().await;
    let conn = sigil_store::open::<Migrator>(db.url(), "policy")
        .await
        .unwrap();
    let entry = |principal: &str, deny: bool| NewEntry {
        at: Utc::now(),
        kind: AuditKind::Decision,
        principal: principal.to_owned(),
        action: "issue".to_owned(),
        resource: "{}".to_owned(),
        outcome: if deny { "deny" } else { "allow" }.to_owned(),
        reasons: if deny {
            vec!["no".to_owned()]
        } else {
            Vec::new()
        },
        policy_version: "1".to_owned(),
        denied: deny.then(|| PolicyDenied {
            audit_seq: 0,
            principal: principal.to_owned(),
            action: "issue".to_owned(),
            profile: "tls-server".to_owned(),
            sans: Vec::new(),
            reasons: vec!["no".to_owned()],
            policy_version: "1".to_owned(),
        }),
    };
    // One row first, so the batch must continue an existing chain.
    let txn = conn.begin().await.unwrap();
    audit::insert(&txn, &entry("workload:first", false))
        .await
        .unwrap();
    txn.commit().await.unwrap();

    let batch = [
        entry("workload:a", false),
        entry("workload:b", true),
        entry("workload:c", false),
        entry("workload:d", true),
    ];
    let refs: Vec<&NewEntry> = batch.iter().collect();
    let txn = conn.begin().await.unwrap();
    let rows = audit::insert_all(&txn, &refs).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![2, 3, 4, 5]
    );
    for pair in rows.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }

    let stored = entity::Entity::find().all(&conn).await.unwrap();
    assert_eq!(stored.len(), 5);
    assert_eq!(stored[1].prev_hash, stored[0].hash);
    let verified = audit::verify(&conn, None).await.unwrap();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.checked, 5);

    // The two denials' events, in the outbox, name their own rows.
    let outbox = sigil_store::outbox::entity::Entity::find()
        .order_by_asc(sigil_store::outbox::entity::Column::Seq)
        .all(&conn)
        .await
        .unwrap();
    let seqs: Vec<u64> = outbox
        .iter()
        .map(|row| {
            let event: CloudEvent<PolicyDenied> = serde_json::from_str(&row.payload).unwrap();
            (event.data.principal.clone(), event.data.audit_seq)
        })
        .map(|(principal, seq)| {
            assert!(principal == "workload:b" || principal == "workload:d");
            seq
        })
        .collect();
    assert_eq!(seqs, vec![3, 5]);
    db.cleanup().await;
}
