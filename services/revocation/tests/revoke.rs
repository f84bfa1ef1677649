//! The revocation service against a real nats-server.
//!
//! Each test starts its own nats-server (JetStream) and database, runs the service with
//! `run(...)` in a task, feeds it `identity.issued` events through the stream, and talks
//! to it over the bus like any client would. Policy is another service and not a
//! dependency: a scripted policy served on the same bus ([`FakePolicy`]) keeps every
//! question it is asked and names the principal after the token it was passed.
//! Together they prove that:
//! - a revocation is recorded once and announced exactly once, with its RFC 5280 code
//!   and the principal of policy's decision;
//! - policy is asked about the revocation (action `revoke`, the request's proof,
//!   operation and digest, the certificate's profile and names); a denial, a refused
//!   proof or an unreachable policy stores nothing and emits nothing;
//! - `status` says whether a serial is revoked, with reason and time, and asks nobody;
//! - a repeated or concurrent revocation answers with the first one and emits nothing;
//! - bad input gets a typed error and stores nothing;
//! - state survives a restart of the service;
//! - an event committed while NATS is down lands exactly once when it comes back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use bytes::Bytes;
use chrono::{SubsecRound, TimeDelta, Utc};
use futures::StreamExt;
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use sigil_bus::service::Router;
use sigil_bus::{Bus, ClientError, Runtime};
use sigil_contracts::auth::{AuthMethod, CarriesProof as _, Proof};
use sigil_contracts::event::{IdentityIssued, IdentityRevoked, source_for};
use sigil_contracts::policy::{Action, Constraints, Decision, EvaluateRequest};
use sigil_contracts::revocation::{RevokeRequest, RevokeResponse, StatusRequest, StatusResponse};
use sigil_contracts::subjects::{
    EVENTS_STREAM, POLICY_EVALUATE, REVOCATION_REVOKE, REVOCATION_STATUS, Service, event_subject,
};
use sigil_contracts::types::{
    CaKind, CertificateFacts, KeyAlgorithm, Profile, RevocationReason, Sans,
};
use sigil_contracts::{CloudEvent, ErrorCode, EventData, MAX_REQUEST_BYTES, Reply, WireError};
use sigil_revocation::entity::{known_certificate, revocation};
use sigil_revocation::{Config, Error, Migrator, record_issued, record_revocation};
use sigil_store::outbox::{self, Outbox};
use sigil_telemetry::{Health, Metrics};
use sigil_testkit::{NatsServer, TestDb, eventually, eventually_ok};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
const CALL: Duration = Duration::from_secs(5);
/// The service's wait for policy in these tests.
const POLICY_TIMEOUT: Duration = Duration::from_millis(500);
/// Who revokes in these tests: the token's text, which [`FakePolicy`] names as the
/// principal.
const OPS: &str = "admin:ops";

/// What a [`FakePolicy`] answers.
#[derive(Debug, Clone)]
enum Verdict {
    Allow,
    Deny(Vec<String>),
    /// The proof is refused: `unauthenticated` with this message.
    Unauthenticated(String),
    /// No answer within [`POLICY_TIMEOUT`].
    Slow,
}

/// A policy whose answer the test sets, and which keeps every request it was asked.
/// It names the principal after the proof: a token's text, or `anonymous`. Served
/// until stopped or dropped.
#[derive(Debug)]
struct FakePolicy {
    state: Arc<FakeState>,
    stop: CancellationToken,
}

#[derive(Debug)]
struct FakeState {
    verdict: Mutex<Verdict>,
    seen: Mutex<Vec<EvaluateRequest>>,
}

impl FakePolicy {
    /// Serve a fake answering `verdict` on `bus`.
    fn serve(bus: &Bus, verdict: Verdict) -> FakePolicy {
        let fake = FakePolicy {
            state: Arc::new(FakeState {
                verdict: Mutex::new(verdict),
                seen: Mutex::new(Vec::new()),
            }),
            stop: CancellationToken::new(),
        };
        let served = fake.state.clone();
        let router = Router::new(Service::Policy, "scripted policy for revocation tests").route(
            POLICY_EVALUATE,
            move |req: EvaluateRequest| {
                served.seen.lock().unwrap().push(req.clone());
                let verdict = served.verdict.lock().unwrap().clone();
                async move {
                    let allowed = match verdict {
                        Verdict::Allow => true,
                        Verdict::Deny(_) => false,
                        Verdict::Unauthenticated(message) => {
                            return Err(WireError::unauthenticated(message));
                        }
                        Verdict::Slow => {
                            tokio::time::sleep(POLICY_TIMEOUT * 4).await;
                            true
                        }
                    };
                    let reasons = match verdict {
                        Verdict::Deny(reasons) => reasons,
                        _ => vec![],
                    };
                    let principal = match &req.proof {
                        Some(Proof::Token { token }) => token.clone(),
                        Some(Proof::Possession(_)) => "admin:proven".to_owned(),
                        None => "anonymous".to_owned(),
                    };
                    Ok(Decision {
                        allowed,
                        reasons,
                        constraints: Constraints::default(),
                        policy_version: "fake".into(),
                        principal,
                        authenticated_by: req
                            .proof
                            .as_ref()
                            .map_or(AuthMethod::None, Proof::method),
                        action: Some(req.action),
                    })
                }
            },
        );
        let (bus, stop) = (bus.clone(), fake.stop.clone());
        tokio::spawn(async move { router.serve(&bus, Metrics::new(), stop).await });
        fake
    }

    fn set(&self, verdict: Verdict) {
        *self.state.verdict.lock().unwrap() = verdict;
    }

    /// Every request evaluated so far, oldest first.
    fn seen(&self) -> Vec<EvaluateRequest> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Stop answering (requests then find no responders).
    fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for FakePolicy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A running revocation service.
struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), Error>>,
}

impl Running {
    fn start(bus: &Bus, database_url: &str) -> Running {
        let rt = Runtime::new(bus.clone(), Metrics::new(), Health::new());
        let shutdown = CancellationToken::new();
        let config = Config {
            database_url: database_url.to_owned(),
            policy_timeout: POLICY_TIMEOUT,
        };
        let task = tokio::spawn(sigil_revocation::run(config, rt, shutdown.clone()));
        Running { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("service stops in time")
            .expect("service task joins")
            .expect("service exits cleanly");
    }
}

async fn connect(nats: &NatsServer) -> Bus {
    Bus::connect(&nats.url(), "revocation-test")
        .await
        .expect("connect to nats")
}

async fn open_db(url: &str) -> DatabaseConnection {
    sigil_store::open::<Migrator>(url, Service::Revocation.name())
        .await
        .expect("open db")
}

/// A random 18-octet serial that normalises to itself.
fn new_serial() -> String {
    format!("7f{}", uuid::Uuid::new_v4().simple())
}

/// A realistic `identity.issued` event as the issuer would publish it.
fn issued(serial: &str) -> CloudEvent<IdentityIssued> {
    let now = Utc::now();
    let pem = |label: &str| {
        format!("-----BEGIN CERTIFICATE-----\nMIIB{label}AAAA\n-----END CERTIFICATE-----\n")
    };
    CloudEvent::new(
        &source_for(Service::Issuer),
        IdentityIssued {
            facts: CertificateFacts {
                serial: serial.to_owned(),
                subject: "CN=api.example.com".to_owned(),
                sans: Sans {
                    dns: vec!["api.example.com".to_owned()],
                    ..Sans::default()
                },
                issuer: "CN=Sigil Issuing CA,O=Sigil".to_owned(),
                not_before: now - TimeDelta::minutes(1),
                not_after: now + TimeDelta::hours(24),
                key_algorithm: "ecdsa-p256".to_owned(),
                signature_algorithm: "ecdsa-with-SHA256".to_owned(),
                profile: Profile::TlsServer,
                fingerprint_sha256: "ab".repeat(32),
            },
            certificate_pem: pem("leaf"),
            issuer_ca_id: Some("issuing".to_owned()),
            chain_pem: vec![pem("issuing"), pem("root")],
            requested_by: "anonymous".to_owned(),
            kind: sigil_contracts::types::CaKind::Classical,
        },
        now,
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()),
    )
}

async fn publish<T: EventData>(bus: &Bus, event: &CloudEvent<T>) {
    bus.ensure_stream().await.expect("stream");
    let payload = serde_json::to_vec(event).unwrap();
    bus.publish_event(&event.nats_subject(), &event.id, payload.into(), None)
        .await
        .expect("publish event");
}

/// A revocation by [`OPS`].
fn request(serial: &str, reason: RevocationReason) -> RevokeRequest {
    RevokeRequest {
        serial: serial.to_owned(),
        reason,
        proof: Some(Proof::Token {
            token: OPS.to_owned(),
        }),
    }
}

async fn call(bus: &Bus, req: &RevokeRequest) -> Result<RevokeResponse, ClientError> {
    bus.request(REVOCATION_REVOKE, req, CALL).await
}

async fn call_raw(bus: &Bus, body: impl Into<Bytes>) -> Reply<RevokeResponse> {
    let reply = bus
        .request_raw(REVOCATION_REVOKE, body.into(), CALL)
        .await
        .expect("reply");
    serde_json::from_slice(&reply).expect("reply decodes")
}

fn wire(result: Result<RevokeResponse, ClientError>) -> WireError {
    match result {
        Err(ClientError::Wire(e)) => e,
        other => panic!("expected a wire error, got {other:?}"),
    }
}

/// Revoke once the service is up and has consumed the serial's issued event.
async fn revoke_when_known(bus: &Bus, req: &RevokeRequest) -> RevokeResponse {
    eventually_ok(WAIT, "the revoke endpoint to know the serial", || {
        call(bus, req)
    })
    .await
}

/// Wait until the endpoint answers at all (with anything but "nobody is listening").
/// The probe's malformed serial is refused before policy is asked.
async fn wait_serving(bus: &Bus) {
    let probe = request("not-a-serial", RevocationReason::Unspecified);
    eventually(WAIT, "the revoke endpoint to answer", || async {
        match call(bus, &probe).await {
            Err(ClientError::NoResponders { .. } | ClientError::TimedOut { .. }) => None,
            _ => Some(()),
        }
    })
    .await;
}

/// Every `identity.revoked` event currently in the stream.
async fn revoked_events(bus: &Bus) -> Vec<CloudEvent<IdentityRevoked>> {
    try_revoked_events(bus).await.expect("read the stream")
}

/// Like [`revoked_events`], but `None` while JetStream is not answering.
async fn try_revoked_events(bus: &Bus) -> Option<Vec<CloudEvent<IdentityRevoked>>> {
    let stream = bus.jetstream().get_stream(EVENTS_STREAM).await.ok()?;
    let mut consumer = stream
        .create_consumer(pull::Config {
            filter_subject: event_subject(IdentityRevoked::KIND),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .ok()?;
    let pending = consumer.info().await.ok()?.num_pending as usize;
    let mut events = Vec::new();
    if pending == 0 {
        return Some(events);
    }
    let mut messages = consumer
        .batch()
        .max_messages(pending)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .ok()?;
    while let Some(msg) = messages.next().await {
        let msg = msg.ok()?;
        events.push(serde_json::from_slice(&msg.payload).expect("revoked event decodes"));
        if events.len() == pending {
            break;
        }
    }
    (events.len() == pending).then_some(events)
}

/// Wait until the service has recorded `serial` from its issued event.
async fn wait_known(conn: &DatabaseConnection, serial: &str) {
    eventually(WAIT, "the issued event to be consumed", || async {
        known_certificate::Entity::find_by_id(serial.to_owned())
            .one(conn)
            .await
            .unwrap()
    })
    .await;
}

async fn revocation_rows(db: &DatabaseConnection) -> u64 {
    revocation::Entity::find().count(db).await.unwrap()
}

async fn outbox_rows(db: &DatabaseConnection) -> u64 {
    outbox::entity::Entity::find().count(db).await.unwrap()
}

/// Give the relay time to publish anything it (wrongly) had, before asserting absence.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn revoke_is_recorded_once_and_announced_once() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    // Migrated before the service starts, so the two never migrate at once.
    let conn = open_db(db.url()).await;
    let bus = connect(&nats).await;
    let _policy = FakePolicy::serve(&bus, Verdict::Allow);
    let service = Running::start(&bus, db.url());

    let serial = new_serial();
    publish(&bus, &issued(&serial)).await;

    // Typed as a person would: upper case with colon separators.
    let typed = serial
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let first = revoke_when_known(&bus, &request(&typed, RevocationReason::KeyCompromise)).await;
    assert_eq!(first.serial, serial);
    assert_eq!(first.reason, RevocationReason::KeyCompromise);
    assert!(!first.already_revoked);

    let events = eventually(WAIT, "the identity.revoked event", || async {
        let events = revoked_events(&bus).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.event_type, "io.sigil.identity.revoked.v1");
    assert_eq!(event.source, "/sigil/revocation");
    assert_eq!(event.subject, serial);
    assert_eq!(event.data.serial, serial);
    assert_eq!(event.data.reason, RevocationReason::KeyCompromise);
    assert_eq!(event.data.reason_code, 1);
    assert_eq!(event.data.revoked_at, first.revoked_at);
    assert_eq!(
        event.data.revoked_by, OPS,
        "the principal of policy's decision"
    );

    // Again, with another reason by another admin: the first revocation stands.
    let again = call(
        &bus,
        &RevokeRequest {
            serial: serial.clone(),
            reason: RevocationReason::Superseded,
            proof: Some(Proof::Token {
                token: "admin:other".to_owned(),
            }),
        },
    )
    .await
    .unwrap();
    assert!(again.already_revoked);
    assert_eq!(again.reason, RevocationReason::KeyCompromise);
    assert_eq!(again.revoked_at, first.revoked_at);
    assert_eq!(again.serial, serial);

    settle().await;
    assert_eq!(
        revoked_events(&bus).await.len(),
        1,
        "still exactly one revoked event"
    );
    service.stop().await;

    let row = revocation::Entity::find_by_id(serial.clone())
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.reason, "key-compromise");
    assert_eq!(row.reason_code, 1);
    assert_eq!(row.revoked_at, first.revoked_at);
    assert_eq!(row.revoked_by, OPS);
    assert_eq!(row.issuer, "CN=Sigil Issuing CA,O=Sigil");
    assert_eq!(revocation_rows(&conn).await, 1);
    assert_eq!(outbox_rows(&conn).await, 1);
    conn.close().await.ok();
    db.cleanup().await;
}

#[tokio::test]
async fn bad_requests_get_typed_errors_and_store_nothing() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    // Migrated before the service starts, so the two never migrate at once.
    let conn = open_db(db.url()).await;
    let bus = connect(&nats).await;
    let policy = FakePolicy::serve(&bus, Verdict::Allow);
    let service = Running::start(&bus, db.url());
    let serial = new_serial();
    publish(&bus, &issued(&serial)).await;
    wait_serving(&bus).await;
    wait_known(&conn, &serial).await;

    // Unknown serial: policy allows (the resource has no names), then not_found.
    let unknown = new_serial();
    let e = wire(call(&bus, &request(&unknown, RevocationReason::KeyCompromise)).await);
    assert_eq!(e.code, ErrorCode::NotFound, "{e:?}");
    assert_eq!(
        e.message,
        format!(
            "serial {unknown} was not issued by this Sigil (or its issued event has not arrived yet)"
        )
    );

    // Malformed serials.
    for bad in ["xyz", "", "12-34", &"ab".repeat(21)] {
        let e = wire(call(&bus, &request(bad, RevocationReason::KeyCompromise)).await);
        assert_eq!(e.code, ErrorCode::BadRequest, "{bad:?}: {e:?}");
    }

    // remove-from-crl is only for delta CRLs (the serial is known, so this is about the
    // reason).
    let e = wire(call(&bus, &request(&serial, RevocationReason::RemoveFromCrl)).await);
    assert_eq!(e.code, ErrorCode::BadRequest, "{e:?}");
    assert!(e.message.contains("remove-from-crl"), "{e:?}");

    // Unknown reason, unknown field, not JSON.
    let bodies = [
        format!(r#"{{"serial":"{serial}","reason":"bored"}}"#),
        format!(r#"{{"serial":"{serial}","reason":"key-compromise","force":true}}"#),
        format!(r#"{{"serial":"{serial}"}}"#),
        "not json".to_owned(),
    ];
    for body in bodies {
        match call_raw(&bus, body.clone()).await {
            Reply::Error(e) => assert_eq!(e.code, ErrorCode::BadRequest, "{body}: {e:?}"),
            Reply::Ok(r) => panic!("{body} was accepted: {r:?}"),
        }
    }

    // Oversized body, even if it would otherwise be valid.
    let padding = " ".repeat(MAX_REQUEST_BYTES);
    let big = format!(r#"{{"serial":"{serial}",{padding}"reason":"key-compromise"}}"#);
    match call_raw(&bus, big).await {
        Reply::Error(e) => assert_eq!(e.code, ErrorCode::TooLarge, "{e:?}"),
        Reply::Ok(r) => panic!("oversized body accepted: {r:?}"),
    }

    // Only the unknown serial reached policy: bad input is refused before asking.
    let asked = policy.seen();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert!(asked[0].sans.is_empty(), "an unknown serial has no names");

    settle().await;
    assert!(revoked_events(&bus).await.is_empty());
    service.stop().await;
    assert_eq!(revocation_rows(&conn).await, 0);
    assert_eq!(outbox_rows(&conn).await, 0);
    assert!(
        known_certificate::Entity::find_by_id(unknown)
            .one(&conn)
            .await
            .unwrap()
            .is_none(),
        "an unknown serial is not recorded"
    );
    conn.close().await.ok();
    db.cleanup().await;
}

#[tokio::test]
async fn concurrent_revocations_yield_one_row_and_one_event() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    // Migrated before the service starts, so the two never migrate at once.
    let conn = open_db(db.url()).await;
    let bus = connect(&nats).await;
    let _policy = FakePolicy::serve(&bus, Verdict::Allow);
    let service = Running::start(&bus, db.url());
    let serial = new_serial();
    publish(&bus, &issued(&serial)).await;
    wait_known(&conn, &serial).await;
    wait_serving(&bus).await;

    let reasons = [
        RevocationReason::KeyCompromise,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::AffiliationChanged,
    ];
    let calls = (0..8).map(|i| {
        let bus = bus.clone();
        let req = request(&serial, reasons[i % reasons.len()]);
        tokio::spawn(async move { call(&bus, &req).await.expect("revoke succeeds") })
    });
    let replies: Vec<RevokeResponse> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let winners: Vec<_> = replies.iter().filter(|r| !r.already_revoked).collect();
    assert_eq!(winners.len(), 1, "exactly one call revokes: {replies:?}");
    let winner = winners[0];
    for r in &replies {
        assert_eq!(r.reason, winner.reason);
        assert_eq!(r.revoked_at, winner.revoked_at);
    }

    let events = eventually(WAIT, "the identity.revoked event", || async {
        let events = revoked_events(&bus).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    settle().await;
    let events_after = revoked_events(&bus).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events_after.len(), 1);
    assert_eq!(events_after[0].data.reason, winner.reason);
    assert_eq!(revocation_rows(&conn).await, 1);
    assert_eq!(outbox_rows(&conn).await, 1);
    service.stop().await;
    conn.close().await.ok();
    db.cleanup().await;
}

#[tokio::test]
async fn state_survives_a_restart_of_the_service() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    // Migrated before the service starts, so the two never migrate at once.
    let conn = open_db(db.url()).await;
    let bus = connect(&nats).await;
    let _policy = FakePolicy::serve(&bus, Verdict::Allow);

    let revoked = new_serial();
    let kept = new_serial();
    let service = Running::start(&bus, db.url());
    publish(&bus, &issued(&revoked)).await;
    publish(&bus, &issued(&kept)).await;
    let first = revoke_when_known(&bus, &request(&revoked, RevocationReason::Superseded)).await;
    assert!(!first.already_revoked);
    wait_known(&conn, &kept).await;
    service.stop().await;

    let service = Running::start(&bus, db.url());
    let again = revoke_when_known(&bus, &request(&revoked, RevocationReason::KeyCompromise)).await;
    assert!(again.already_revoked);
    assert_eq!(again.reason, RevocationReason::Superseded);
    assert_eq!(again.revoked_at, first.revoked_at);
    // Known before the restart, revocable after it (no new issued event needed).
    let second = call(
        &bus,
        &request(&kept, RevocationReason::CessationOfOperation),
    )
    .await
    .unwrap();
    assert!(!second.already_revoked);

    let events = eventually(WAIT, "both revoked events", || async {
        let events = revoked_events(&bus).await;
        (events.len() >= 2).then_some(events)
    })
    .await;
    settle().await;
    assert_eq!(events.len(), 2);
    assert_eq!(revoked_events(&bus).await.len(), 2);
    assert_eq!(events[1].data.reason_code, 5);
    service.stop().await;
    assert_eq!(revocation_rows(&conn).await, 2);
    conn.close().await.ok();
    db.cleanup().await;
}

#[tokio::test]
async fn an_event_committed_while_nats_is_down_lands_exactly_once() {
    let mut nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    // Migrated before the service starts, so the two never migrate at once.
    let conn = open_db(db.url()).await;
    let bus = connect(&nats).await;
    let service = Running::start(&bus, db.url());
    let serial = new_serial();
    publish(&bus, &issued(&serial)).await;
    wait_known(&conn, &serial).await;

    nats.stop();
    // The request path needs NATS (and policy); the store step after policy's
    // decision does not.
    let outbox_handle = Outbox::new(conn.clone());
    let reply = record_revocation(
        &conn,
        &outbox_handle,
        Utc::now(),
        &request(&serial, RevocationReason::KeyCompromise),
        OPS,
    )
    .await
    .expect("revoke while NATS is down");
    assert!(!reply.already_revoked);
    assert_eq!(
        outbox::pending(&conn).await.unwrap(),
        1,
        "the event waits in the outbox"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        outbox::pending(&conn).await.unwrap(),
        1,
        "nothing can publish it yet"
    );

    nats.start_again().await;
    let events = eventually(
        Duration::from_secs(40),
        "the revoked event after NATS returns",
        || async {
            try_revoked_events(&bus)
                .await
                .filter(|events| !events.is_empty())
        },
    )
    .await;
    eventually(WAIT, "the outbox to be drained", || async {
        (outbox::pending(&conn).await.unwrap() == 0).then_some(())
    })
    .await;
    settle().await;
    assert_eq!(events.len(), 1);
    assert_eq!(revoked_events(&bus).await.len(), 1, "exactly once");
    assert_eq!(events[0].data.serial, serial);
    assert_eq!(events[0].data.revoked_at, reply.revoked_at);
    assert_eq!(events[0].data.revoked_by, OPS);
    service.stop().await;
    conn.close().await.ok();
    db.cleanup().await;
}

#[tokio::test]
async fn a_redelivered_issued_event_changes_nothing() {
    let db = TestDb::from_env_or_sqlite().await;
    // Migrated before the service starts, so the two never migrate at once.
    let conn = open_db(db.url()).await;
    let serial = new_serial();
    let event = issued(&serial);
    assert!(record_issued(&conn, &event, Utc::now()).await.unwrap());
    let before = known_certificate::Entity::find_by_id(serial.clone())
        .one(&conn)
        .await
        .unwrap();
    assert!(
        !record_issued(&conn, &event, Utc::now() + TimeDelta::hours(1))
            .await
            .unwrap()
    );
    let after = known_certificate::Entity::find_by_id(serial.clone())
        .one(&conn)
        .await
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(
        before.unwrap().not_after,
        event.data.facts.not_after.trunc_subsecs(6)
    );

    // A second issued event for the same serial (new id) keeps the first record.
    let mut dup = issued(&serial);
    dup.data.facts.issuer = "CN=Other".to_owned();
    assert!(record_issued(&conn, &dup, Utc::now()).await.unwrap());
    let kept = known_certificate::Entity::find_by_id(serial)
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.issuer, "CN=Sigil Issuing CA,O=Sigil");
    // What policy is told about the certificate when someone asks to revoke it.
    assert_eq!(kept.profile.as_deref(), Some("tls-server"));
    assert_eq!(kept.key_algorithm.as_deref(), Some("ecdsa-p256"));
    assert_eq!(kept.ca_kind.as_deref(), Some("classical"));
    let sans: Sans = serde_json::from_value(kept.sans.unwrap()).unwrap();
    assert_eq!(sans.dns, vec!["api.example.com"]);
    conn.close().await.ok();
    db.cleanup().await;
}

async fn status(bus: &Bus, serial: &str) -> Result<StatusResponse, WireError> {
    bus.request(
        REVOCATION_STATUS,
        &StatusRequest {
            serial: serial.to_owned(),
        },
        CALL,
    )
    .await
    .map_err(ClientError::into_wire)
}

#[tokio::test]
async fn policy_decides_and_a_refusal_stores_nothing() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    // Migrated before the service starts, so the two never migrate at once.
    let conn = open_db(db.url()).await;
    let bus = connect(&nats).await;
    let reason = "admins: only admins may revoke".to_owned();
    let policy = FakePolicy::serve(&bus, Verdict::Deny(vec![reason.clone()]));
    let service = Running::start(&bus, db.url());
    let serial = new_serial();
    publish(&bus, &issued(&serial)).await;
    wait_serving(&bus).await;
    wait_known(&conn, &serial).await;

    // Denied: `denied` with policy's reasons.
    let by_workload = RevokeRequest {
        proof: Some(Proof::Token {
            token: "workload:web".to_owned(),
        }),
        ..request(&serial, RevocationReason::KeyCompromise)
    };
    let e = wire(call(&bus, &by_workload).await);
    assert_eq!(e.code, ErrorCode::Denied, "{e:?}");
    assert_eq!(e.reasons(), vec![reason]);

    // What policy was asked: action revoke by the request's proof, bound to this
    // operation and request, about the certificate as issued.
    let asked = policy.seen();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    let asked = &asked[0];
    assert_eq!(asked.action, Action::Revoke);
    assert_eq!(asked.principal, None, "the service names no principal");
    assert_eq!(asked.proof, by_workload.proof);
    assert_eq!(
        asked.operation.as_deref(),
        Some("sigil.revocation.v1.revoke")
    );
    assert_eq!(asked.request_digest, Some(by_workload.digest()));
    assert_eq!(asked.profile, Profile::TlsServer);
    assert_eq!(asked.sans.dns, vec!["api.example.com"]);
    assert_eq!(asked.key_algorithm, KeyAlgorithm::EcdsaP256);
    assert_eq!(asked.kind, Some(CaKind::Classical));

    // A refused proof: `unauthenticated` with policy's message.
    let refusal = "the credential's chain does not verify to the current trust bundle";
    policy.set(Verdict::Unauthenticated(refusal.to_owned()));
    let e = wire(call(&bus, &request(&serial, RevocationReason::KeyCompromise)).await);
    assert_eq!(e.code, ErrorCode::Unauthenticated, "{e:?}");
    assert_eq!(e.message, refusal);

    // Neither stored or announced anything; the serial is not revoked.
    settle().await;
    assert!(revoked_events(&bus).await.is_empty());
    assert_eq!(revocation_rows(&conn).await, 0);
    assert_eq!(outbox_rows(&conn).await, 0);
    assert!(!status(&bus, &serial).await.unwrap().revoked);

    // Allowed: recorded with the decision's principal.
    policy.set(Verdict::Allow);
    let done = call(&bus, &request(&serial, RevocationReason::KeyCompromise))
        .await
        .unwrap();
    assert!(!done.already_revoked);
    let row = revocation::Entity::find_by_id(serial.clone())
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.revoked_by, OPS);
    service.stop().await;
    conn.close().await.ok();
    db.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_policy_means_unavailable_and_nothing_stored() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    // Migrated before the service starts, so the two never migrate at once.
    let conn = open_db(db.url()).await;
    let bus = connect(&nats).await;
    let service = Running::start(&bus, db.url());
    let serial = new_serial();
    publish(&bus, &issued(&serial)).await;
    wait_serving(&bus).await;
    wait_known(&conn, &serial).await;
    let req = request(&serial, RevocationReason::KeyCompromise);

    // No policy service at all.
    let e = wire(call(&bus, &req).await);
    assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
    assert!(e.message.starts_with("policy: "), "{}", e.message);

    // A policy that answers too late (after the service's policy_timeout).
    let policy = FakePolicy::serve(&bus, Verdict::Slow);
    let e = eventually(WAIT, "the slow policy to be asked", || async {
        let e = wire(call(&bus, &req).await);
        (!policy.seen().is_empty()).then_some(e)
    })
    .await;
    assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
    assert!(e.message.contains("no reply within"), "{}", e.message);

    // Even once the late answer (an allow) arrives, nothing was stored.
    tokio::time::sleep(POLICY_TIMEOUT * 5).await;
    settle().await;
    assert!(revoked_events(&bus).await.is_empty());
    assert_eq!(revocation_rows(&conn).await, 0);
    assert_eq!(outbox_rows(&conn).await, 0);
    assert!(!status(&bus, &serial).await.unwrap().revoked);
    policy.stop();
    service.stop().await;
    conn.close().await.ok();
    db.cleanup().await;
}

#[tokio::test]
async fn status_says_whether_a_serial_is_revoked_without_asking_policy() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    // Migrated before the service starts, so the two never migrate at once.
    let conn = open_db(db.url()).await;
    let bus = connect(&nats).await;
    let policy = FakePolicy::serve(&bus, Verdict::Allow);
    let service = Running::start(&bus, db.url());
    let (revoked, kept) = (new_serial(), new_serial());
    publish(&bus, &issued(&revoked)).await;
    publish(&bus, &issued(&kept)).await;
    let done = revoke_when_known(&bus, &request(&revoked, RevocationReason::KeyCompromise)).await;
    wait_known(&conn, &kept).await;
    let asked = policy.seen().len();

    // Policy gone: status does not need it.
    policy.stop();
    let typed = revoked.to_uppercase();
    let answer = status(&bus, &typed).await.unwrap();
    assert_eq!(
        answer,
        StatusResponse {
            serial: revoked.clone(),
            revoked: true,
            reason: Some(RevocationReason::KeyCompromise),
            revoked_at: Some(done.revoked_at),
        }
    );
    // Known but not revoked, and never heard of: not revoked.
    for serial in [kept.clone(), new_serial()] {
        let answer = status(&bus, &serial).await.unwrap();
        assert_eq!(
            answer,
            StatusResponse {
                serial,
                revoked: false,
                reason: None,
                revoked_at: None,
            }
        );
    }
    // Malformed serials, and unknown fields.
    for bad in ["xyz", "", &"ab".repeat(21)] {
        let e = status(&bus, bad).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{bad:?}: {e:?}");
    }
    let body = bus
        .request_raw(
            REVOCATION_STATUS,
            Bytes::from(format!(r#"{{"serial":"{kept}","verbose":true}}"#)),
            CALL,
        )
        .await
        .unwrap();
    match serde_json::from_slice::<Reply<StatusResponse>>(&body).unwrap() {
        Reply::Error(e) => assert_eq!(e.code, ErrorCode::BadRequest, "{e:?}"),
        Reply::Ok(r) => panic!("unknown field accepted: {r:?}"),
    }
    assert_eq!(policy.seen().len(), asked, "status asked policy nothing");
    service.stop().await;
    conn.close().await.ok();
    db.cleanup().await;
}
