//! The rotation scheduler end to end over a real nats-server, with time driven by a
//! `ManualClock` (ticks run for real every 100 ms, but "now" only moves when the test
//! says so).
//!
//! - `announces_renewal_then_expiry_once`: a 5-second certificate gets exactly one
//!   `identity.renewal_due` once its renewal time passes and exactly one
//!   `identity.expired` after its notAfter; a duplicate delivery of its issued event
//!   changes nothing; a revoked certificate gets neither event.
//! - `replicas_sharing_a_database_announce_once`: two scheduler instances on one
//!   database announce each renewal and expiry exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use bytes::Bytes;
use chrono::{DateTime, DurationRound, Utc};
use futures::StreamExt;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use sigil_bus::{Bus, Clock, ManualClock, Runtime};
use sigil_contracts::CloudEvent;
use sigil_contracts::event::{
    EventData, EventKind, IdentityExpired, IdentityIssued, IdentityRenewalDue, IdentityRevoked,
};
use sigil_contracts::subjects::{EVENTS_STREAM, event_subject};
use sigil_contracts::types::{CertificateFacts, Profile, RevocationReason, Sans};
use sigil_rotation_scheduler::entity::tracked::{self, State};
use sigil_rotation_scheduler::{Config, Migrator, SERVICE};
use sigil_telemetry::{Health, Metrics};
use sigil_testkit::{NatsServer, TestDb, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

type Task = JoinHandle<Result<(), sigil_rotation_scheduler::Error>>;

/// Start one scheduler instance on `db_url` and wait until it is ready.
async fn start_scheduler(
    nats: &NatsServer,
    db_url: &str,
    clock: &ManualClock,
    shutdown: &CancellationToken,
) -> Task {
    let bus = Bus::connect(&nats.url(), "scheduler-test").await.unwrap();
    let health = Health::new();
    let rt = Runtime::new(bus, Metrics::new(), health.clone()).with_clock(Arc::new(clock.clone()));
    let config = Config {
        database_url: db_url.to_owned(),
        tick_interval: Duration::from_millis(100),
        ..Config::default()
    };
    let task = tokio::spawn(sigil_rotation_scheduler::run(config, rt, shutdown.clone()));
    eventually(WAIT, "scheduler ready", || {
        let health = health.clone();
        async move { (health.report().components.get(SERVICE) == Some(&true)).then_some(()) }
    })
    .await;
    task
}

async fn stop(shutdown: CancellationToken, tasks: Vec<Task>) {
    shutdown.cancel();
    for task in tasks {
        tokio::time::timeout(WAIT, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

async fn publish_as<T: EventData>(bus: &Bus, event: &CloudEvent<T>, msg_id: &str) {
    let payload = Bytes::from(serde_json::to_vec(event).unwrap());
    bus.publish_event(&event.nats_subject(), msg_id, payload, None)
        .await
        .unwrap();
}

async fn publish<T: EventData>(bus: &Bus, event: &CloudEvent<T>) {
    publish_as(bus, event, &event.id).await;
}

fn issued(
    serial: &str,
    not_before: DateTime<Utc>,
    lifetime_secs: i64,
) -> CloudEvent<IdentityIssued> {
    CloudEvent::new(
        "/sigil/issuer",
        IdentityIssued {
            facts: CertificateFacts {
                serial: serial.to_owned(),
                subject: "CN=svc".to_owned(),
                sans: Sans {
                    dns: vec!["svc.example.com".to_owned()],
                    ..Sans::default()
                },
                issuer: "CN=Sigil Test CA".to_owned(),
                not_before,
                not_after: not_before + chrono::Duration::seconds(lifetime_secs),
                key_algorithm: "ecdsa-p256".to_owned(),
                signature_algorithm: "ecdsa-with-SHA256".to_owned(),
                profile: Profile::TlsServer,
                fingerprint_sha256: "cd".repeat(32),
            },
            certificate_pem: String::new(),
            issuer_ca_id: None,
            chain_pem: vec![],
            requested_by: "test".to_owned(),
            kind: sigil_contracts::types::CaKind::Classical,
        },
        not_before,
        None,
    )
}

fn revoked(serial: &str, at: DateTime<Utc>) -> CloudEvent<IdentityRevoked> {
    let reason = RevocationReason::KeyCompromise;
    CloudEvent::new(
        "/sigil/revocation",
        IdentityRevoked {
            serial: serial.to_owned(),
            reason,
            reason_code: reason.code(),
            revoked_at: at,
            revoked_by: "admin".to_owned(),
        },
        at,
        None,
    )
}

/// Every event of `kind` on the stream, by CloudEvents subject (the serial).
async fn events_by_serial(bus: &Bus, kind: EventKind) -> BTreeMap<String, Vec<serde_json::Value>> {
    let stream = bus.jetstream().get_stream(EVENTS_STREAM).await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: event_subject(kind),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(5),
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = consumer.cached_info().num_pending as usize;
    let mut out: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    if pending == 0 {
        return out;
    }
    let mut messages = consumer
        .fetch()
        .max_messages(pending)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    while let Some(msg) = messages.next().await {
        let event: serde_json::Value = serde_json::from_slice(&msg.unwrap().payload).unwrap();
        let serial = event["subject"].as_str().unwrap().to_owned();
        out.entry(serial).or_default().push(event);
    }
    out
}

async fn state_of(db: &DatabaseConnection, serial: &str) -> Option<State> {
    tracked::Entity::find_by_id(serial.to_owned())
        .one(db)
        .await
        .unwrap()
        .map(|r| r.state)
}

async fn wait_for_state(db: &DatabaseConnection, serial: &str, want: State) {
    eventually(WAIT, &format!("{serial} in state {want:?}"), || async {
        (state_of(db, serial).await == Some(want)).then_some(())
    })
    .await;
}

/// A whole-second "now" so the test's arithmetic is exact.
fn start_time() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(chrono::Duration::seconds(1))
        .unwrap()
}

#[tokio::test]
async fn announces_renewal_then_expiry_once() {
    let nats = NatsServer::start().await;
    let test_db = TestDb::from_env_or_sqlite().await;
    let t0 = start_time();
    let clock = ManualClock::new(t0);
    let shutdown = CancellationToken::new();
    let task = start_scheduler(&nats, test_db.url(), &clock, &shutdown).await;
    let bus = Bus::connect(&nats.url(), "scheduler-test-client")
        .await
        .unwrap();
    let db = sigil_store::open::<Migrator>(test_db.url(), SERVICE)
        .await
        .unwrap();

    // A: 5-second certificate. C: issued then revoked.
    let a = issued("0a01", t0, 5);
    publish(&bus, &a).await;
    publish(&bus, &issued("0c01", t0, 5)).await;
    publish(&bus, &revoked("0c01", t0)).await;
    wait_for_state(&db, "0a01", State::Tracking).await;
    wait_for_state(&db, "0c01", State::Revoked).await;
    let row = tracked::Entity::find_by_id("0a01".to_owned())
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let renew_in = (row.renew_at - t0).num_milliseconds();
    assert!(
        (3083..=3334).contains(&renew_in),
        "renew_at {renew_in} ms after not_before"
    );

    // Before renew_at: nothing, however many ticks pass.
    clock.set(t0 + chrono::Duration::seconds(3));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        events_by_serial(&bus, EventKind::IdentityRenewalDue)
            .await
            .is_empty()
    );

    clock.set(t0 + chrono::Duration::seconds(4));
    let renewals = eventually(WAIT, "renewal_due for 0a01", || async {
        let e = events_by_serial(&bus, EventKind::IdentityRenewalDue).await;
        e.get("0a01").cloned()
    })
    .await;
    assert_eq!(renewals.len(), 1);
    let due: CloudEvent<IdentityRenewalDue> = serde_json::from_value(renewals[0].clone()).unwrap();
    assert_eq!(due.data.renew_at, row.renew_at);
    assert_eq!(due.data.not_after, t0 + chrono::Duration::seconds(5));
    assert_eq!(due.source, "/sigil/rotation-scheduler");
    assert_eq!(state_of(&db, "0a01").await, Some(State::RenewalAnnounced));

    // A duplicate delivery of A's issued event (new Nats-Msg-Id, same event) and a
    // fresh issued event for the same serial must not reset it to `tracking`. B marks
    // the point where both have been consumed.
    publish_as(&bus, &a, "redelivered-a").await;
    publish(&bus, &issued("0a01", t0, 5)).await;
    publish(&bus, &issued("0b01", t0, 3600)).await;
    wait_for_state(&db, "0b01", State::Tracking).await;
    assert_eq!(state_of(&db, "0a01").await, Some(State::RenewalAnnounced));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let renewals = events_by_serial(&bus, EventKind::IdentityRenewalDue).await;
    assert_eq!(renewals.get("0a01").map(Vec::len), Some(1));

    clock.set(t0 + chrono::Duration::seconds(6));
    let expiries = eventually(WAIT, "expired for 0a01", || async {
        events_by_serial(&bus, EventKind::IdentityExpired)
            .await
            .get("0a01")
            .cloned()
    })
    .await;
    let expired: CloudEvent<IdentityExpired> = serde_json::from_value(expiries[0].clone()).unwrap();
    assert_eq!(expired.data.not_after, t0 + chrono::Duration::seconds(5));
    tokio::time::sleep(Duration::from_millis(400)).await;

    let renewals = events_by_serial(&bus, EventKind::IdentityRenewalDue).await;
    let expiries = events_by_serial(&bus, EventKind::IdentityExpired).await;
    assert_eq!(
        renewals.keys().collect::<Vec<_>>(),
        vec!["0a01"],
        "only A renews"
    );
    assert_eq!(
        expiries.keys().collect::<Vec<_>>(),
        vec!["0a01"],
        "only A expires"
    );
    assert_eq!(renewals["0a01"].len(), 1);
    assert_eq!(expiries["0a01"].len(), 1);
    assert_eq!(state_of(&db, "0a01").await, Some(State::Expired));
    assert_eq!(state_of(&db, "0c01").await, Some(State::Revoked));

    db.close().await.unwrap();
    stop(shutdown, vec![task]).await;
}

#[tokio::test]
async fn replicas_sharing_a_database_announce_once() {
    const N: usize = 30;
    let nats = NatsServer::start().await;
    let test_db = TestDb::from_env_or_sqlite().await;
    let t0 = start_time();
    let clock = ManualClock::new(t0);
    let shutdown = CancellationToken::new();
    let first = start_scheduler(&nats, test_db.url(), &clock, &shutdown).await;
    let second = start_scheduler(&nats, test_db.url(), &clock, &shutdown).await;
    let bus = Bus::connect(&nats.url(), "scheduler-test-client")
        .await
        .unwrap();
    let db = sigil_store::open::<Migrator>(test_db.url(), SERVICE)
        .await
        .unwrap();

    for i in 0..N {
        publish(&bus, &issued(&format!("{:04x}", 0x1000 + i), t0, 5)).await;
    }
    eventually(WAIT, "all tracked", || async {
        (tracked::Entity::find().count(&db).await.unwrap() == N as u64).then_some(())
    })
    .await;

    // Also race a third "replica": the test itself ticking on the same database.
    clock.set(t0 + chrono::Duration::seconds(4));
    let mine = sigil_rotation_scheduler::tick(&db, clock.now(), 500)
        .await
        .unwrap();
    eventually(WAIT, "every renewal announced", || async {
        let n = tracked::Entity::find()
            .filter(tracked::Column::State.eq(State::RenewalAnnounced))
            .count(&db)
            .await
            .unwrap();
        (n == N as u64).then_some(())
    })
    .await;
    let renewals = eventually(WAIT, "every renewal on the stream", || async {
        let e = events_by_serial(&bus, EventKind::IdentityRenewalDue).await;
        (e.len() == N).then_some(e)
    })
    .await;
    assert!(mine.renewals_announced <= N as u64);

    clock.set(t0 + chrono::Duration::seconds(6));
    let expiries = eventually(WAIT, "every expiry on the stream", || async {
        let e = events_by_serial(&bus, EventKind::IdentityExpired).await;
        (e.len() == N).then_some(e)
    })
    .await;
    // Let both replicas tick (and relay) a few more times, then count again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let renewals_after = events_by_serial(&bus, EventKind::IdentityRenewalDue).await;
    let expiries_after = events_by_serial(&bus, EventKind::IdentityExpired).await;
    assert_eq!(renewals_after.len(), renewals.len());
    assert_eq!(expiries_after.len(), expiries.len());
    for (serial, events) in renewals_after.iter().chain(expiries_after.iter()) {
        assert_eq!(events.len(), 1, "{serial} announced {} times", events.len());
    }
    // One outbox row per announcement: the at-most-once is in the database, not
    // merely JetStream's dedupe of the relays.
    let rows = sigil_store::outbox::entity::Entity::find()
        .count(&db)
        .await
        .unwrap();
    assert_eq!(rows, 2 * N as u64);

    db.close().await.unwrap();
    stop(shutdown, vec![first, second]).await;
}
