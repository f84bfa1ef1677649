//! Staged intermediate rotation over a real nats-server: prepare puts the next
//! intermediate in the trust bundle while the current one keeps signing; activate
//! swaps them, retires the old one until its last leaf expires, and every leaf (old
//! and new) verifies against the bundle with `sigil_pki::verify_chain`. Each slot
//! change lands one `ca.bundle_changed` event; conflicts are refused; a restart keeps
//! the slots. With an injected clock: a leaf still being signed by the old
//! intermediate at the activation instant keeps it in the bundle (its `retire_until`
//! is the intermediate's own notAfter), while finished or abandoned signings do not;
//! and a retired intermediate stays in the bundle through the instant its last leaf
//! expires (notAfter is inclusive), not a second longer. Two replicas racing: a
//! request prepared with an intermediate the other replica retired is prepared again
//! with the new one, reusing the one decision policy gave about its single-use proof,
//! or fails `unavailable` when the new CA is of another kind than policy judged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound as _, Utc};
use sea_orm::{ConnectionTrait as _, Statement};
use sigil_bus::{ManualClock, Runtime};
use sigil_telemetry::{Health, Metrics};
use tokio_util::sync::CancellationToken;

use sigil_bus::ClientError;
use sigil_contracts::auth::Proof;
use sigil_contracts::event::{CaBundleChanged, CloudEvent, EventKind};
use sigil_contracts::issuer::{
    BundleChangeReason, CaInfo, CaInitRequest, CaListRequest, CaListResponse, CaRole,
    CaRotateRequest, CaRotateResponse, CaState, IssueRequest, IssueResponse, RotateStep,
    TrustBundle, TrustBundleRequest,
};
use sigil_contracts::subjects::{
    EVENTS_STREAM, ISSUER_CA_INIT, ISSUER_CA_LIST, ISSUER_CA_ROTATE, ISSUER_ISSUE,
    ISSUER_TRUST_BUNDLE, event_subject,
};
use sigil_contracts::types::{CaKind, KeyAlgorithm, Profile, Sans};
use sigil_contracts::{ErrorCode, WireError};
use sigil_testkit::eventually;

mod common;

use common::{Base as Harness, OneUsePolicy, Running, TIMEOUT, allow_all};

impl Harness {
    async fn start() -> Harness {
        Harness::launch("rotate-test", Some(allow_all("test"))).await
    }

    async fn issuer(&self) -> Running {
        self.start_issuer(self.base_config("Sigil Rotate")).await
    }

    async fn issue(&self, name: &str, ttl_seconds: i64) -> IssueResponse {
        let req = IssueRequest {
            idempotency_key: None,
            profile: Profile::TlsServer,
            sans: Sans {
                dns: vec![name.to_owned()],
                ..Sans::default()
            },
            ttl_seconds,
            csr_pem: None,
            key_algorithm: Some(KeyAlgorithm::EcdsaP256),
            proof: None,
        };
        self.bus.request(ISSUER_ISSUE, &req, TIMEOUT).await.unwrap()
    }

    async fn rotate(&self, step: RotateStep) -> Result<CaRotateResponse, WireError> {
        self.bus
            .request::<_, CaRotateResponse>(
                ISSUER_CA_ROTATE,
                &CaRotateRequest { step, proof: None },
                TIMEOUT,
            )
            .await
            .map_err(ClientError::into_wire)
    }

    async fn bundle(&self) -> TrustBundle {
        self.bus
            .request(ISSUER_TRUST_BUNDLE, &TrustBundleRequest {}, TIMEOUT)
            .await
            .unwrap()
    }

    async fn intermediates(&self) -> Vec<CaInfo> {
        self.ca_list()
            .await
            .cas
            .into_iter()
            .filter(|c| c.role == CaRole::Intermediate)
            .collect()
    }

    /// The last `ca.bundle_changed` on the stream, once it has `version`.
    async fn bundle_event(&self, version: u64) -> CloudEvent<CaBundleChanged> {
        let subject = event_subject(EventKind::CaBundleChanged);
        eventually(TIMEOUT, "ca.bundle_changed on SIGIL_EVENTS", || async {
            let stream = self.bus.jetstream().get_stream(EVENTS_STREAM).await.ok()?;
            let message = stream
                .get_last_raw_message_by_subject(&subject)
                .await
                .ok()?;
            let event: CloudEvent<CaBundleChanged> =
                serde_json::from_slice(&message.payload).unwrap();
            (event.data.bundle.version == version).then_some(event)
        })
        .await
    }
}

fn der(pem: &str) -> Vec<u8> {
    sigil_pki::pem::decode(pem, &["CERTIFICATE"]).unwrap()
}

/// The leaf verifies against the bundle alone (not the chain it came with).
fn verifies_against(leaf: &IssueResponse, bundle: &TrustBundle) {
    let intermediates: Vec<Vec<u8>> = bundle.intermediates.iter().map(|p| der(p)).collect();
    let roots: Vec<Vec<u8>> = bundle.roots.iter().map(|p| der(p)).collect();
    let report = sigil_pki::verify_chain(
        &der(&leaf.certificate_pem),
        &intermediates,
        &roots,
        chrono::Utc::now(),
    );
    assert!(report.ok, "{report:#?}");
}

#[tokio::test]
async fn prepare_then_activate_rotates_the_intermediate() {
    let h = Harness::start().await;
    let issuer = h.issuer().await;

    // First start: version 1, announced with reason init.
    let initial = h.bundle().await;
    assert_eq!(initial.version, 1);
    assert_eq!((initial.roots.len(), initial.intermediates.len()), (1, 1));
    let event = h.bundle_event(1).await;
    assert_eq!(event.event_type, "io.sigil.ca.bundle_changed.v1");
    assert_eq!(event.source, "/sigil/issuer");
    assert_eq!(event.subject, "trust-bundle/v1");
    assert_eq!(event.data.reason, BundleChangeReason::Init);
    assert_eq!(event.data.bundle, initial);
    let old = initial.intermediates[0].clone();
    let before = h.issue("before.example.com", 3600).await;
    assert_eq!(before.chain_pem[0], old);

    // Activate without a prepared next intermediate: conflict, nothing changes.
    let err = h.rotate(RotateStep::Activate).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "{}", err.message);
    assert_eq!(h.bundle().await, initial);

    // Prepare: both intermediates in the bundle, the old one still signs.
    let prepared = h.rotate(RotateStep::Prepare).await.unwrap();
    let next = prepared.next.clone().expect("a next intermediate");
    assert_eq!(next.state, Some(CaState::Next));
    assert!(!next.active);
    assert_eq!(prepared.current.certificate_pem, old);
    assert!(prepared.retired.is_none());
    assert_eq!(prepared.bundle.version, 2);
    assert_eq!(
        prepared.bundle.intermediates,
        vec![old.clone(), next.certificate_pem.clone()]
    );
    assert_eq!(prepared.bundle.roots, initial.roots, "same root");
    assert_eq!(h.bundle().await, prepared.bundle);
    let event = h.bundle_event(2).await;
    assert_eq!(event.data.reason, BundleChangeReason::Prepare);
    assert_eq!(event.data.bundle, prepared.bundle);
    let during = h.issue("during.example.com", 7200).await;
    assert_eq!(
        during.chain_pem[0], old,
        "the current intermediate still signs"
    );
    verifies_against(&during, &prepared.bundle);

    // A second prepare while a next intermediate waits: conflict.
    let err = h.rotate(RotateStep::Prepare).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "{}", err.message);

    // Activate: the next one signs, the old one is retired until its last leaf expires.
    let activated = h.rotate(RotateStep::Activate).await.unwrap();
    assert_eq!(activated.current.id, next.id);
    assert_eq!(activated.current.state, Some(CaState::Current));
    assert!(activated.next.is_none());
    let retired = activated.retired.clone().expect("the old intermediate");
    assert_eq!(retired.certificate_pem, old);
    assert_eq!(retired.state, Some(CaState::Retired));
    assert!(!retired.active);
    let last_leaf = before.not_after.max(during.not_after);
    assert_eq!(retired.retire_until, Some(last_leaf));
    let bundle = activated.bundle.clone();
    assert_eq!(bundle.version, 3);
    assert_eq!(
        bundle.intermediates,
        vec![next.certificate_pem.clone(), old.clone()]
    );
    let event = h.bundle_event(3).await;
    assert_eq!(event.data.reason, BundleChangeReason::Activate);
    assert_eq!(event.data.bundle, bundle);

    let after = h.issue("after.example.com", 3600).await;
    assert_eq!(after.chain_pem[0], next.certificate_pem);
    assert_eq!(after.chain_pem[1], bundle.roots[0]);
    verifies_against(&after, &bundle);
    verifies_against(&before, &bundle);
    verifies_against(&during, &bundle);
    let err = h.rotate(RotateStep::Activate).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "{}", err.message);

    // A restart keeps the slots, the bundle and the signer.
    issuer.stop().await;
    let issuer = h.issuer().await;
    assert_eq!(h.bundle().await, bundle);
    let slots: Vec<(String, Option<CaState>)> = h
        .intermediates()
        .await
        .into_iter()
        .map(|c| (c.id, c.state))
        .collect();
    assert_eq!(
        slots,
        vec![
            (retired.id.clone(), Some(CaState::Retired)),
            (next.id.clone(), Some(CaState::Current)),
        ]
    );
    let restarted = h.issue("restarted.example.com", 3600).await;
    assert_eq!(restarted.chain_pem[0], next.certificate_pem);

    // Auto: prepare and activate in one call (two versions, two events).
    let auto = h.rotate(RotateStep::Auto).await.unwrap();
    assert_eq!(auto.bundle.version, 5);
    assert_eq!(
        auto.retired.as_ref().map(|r| r.id.as_str()),
        Some(next.id.as_str())
    );
    assert_eq!(
        auto.retired.as_ref().and_then(|r| r.retire_until),
        Some(after.not_after.max(restarted.not_after))
    );
    assert_eq!(auto.bundle.intermediates.len(), 3);
    assert_eq!(
        h.bundle_event(5).await.data.reason,
        BundleChangeReason::Activate
    );
    let newest = h.issue("newest.example.com", 3600).await;
    assert_eq!(newest.chain_pem[0], auto.current.certificate_pem);
    for leaf in [&before, &during, &after, &restarted, &newest] {
        verifies_against(leaf, &auto.bundle);
    }
    issuer.stop().await;
}

impl Harness {
    /// An issuer whose clock is `clock`.
    async fn issuer_at(&self, clock: &ManualClock) -> Running {
        let rt = Runtime::new(self.bus.clone(), Metrics::new(), Health::new())
            .with_clock(Arc::new(clock.clone()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(sigil_issuer::run(
            self.base_config("Sigil Rotate"),
            rt,
            stop.clone(),
        ));
        self.wait_ready().await;
        Running { stop, task }
    }

    /// Records an `issuer_intent` row for `ca_id` in `state`, as the issuer does after
    /// linting a leaf and before signing it (`prepared`) or after giving up on it.
    async fn intent(&self, serial: &str, ca_id: &str, state: &str, at: DateTime<Utc>) {
        let db = sigil_store::connect(self.db.url(), "issuer").await.unwrap();
        let backend = db.get_database_backend();
        let at = at.to_rfc3339();
        db.execute(Statement::from_sql_and_values(
            backend,
            match backend {
                sea_orm::DatabaseBackend::Postgres => {
                    "INSERT INTO issuer_intent (serial, request_sha256, profile, ca_kind, \
                     issuer_ca_id, state, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7::timestamptz, $7::timestamptz)"
                }
                _ => {
                    "INSERT INTO issuer_intent (serial, request_sha256, profile, ca_kind, \
                     issuer_ca_id, state, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                }
            },
            match backend {
                sea_orm::DatabaseBackend::Postgres => vec![
                    serial.into(),
                    "0".repeat(64).into(),
                    "tls-server".into(),
                    "hybrid".into(),
                    ca_id.into(),
                    state.into(),
                    at.into(),
                ],
                _ => vec![
                    serial.into(),
                    "0".repeat(64).into(),
                    "tls-server".into(),
                    "hybrid".into(),
                    ca_id.into(),
                    state.into(),
                    at.clone().into(),
                    at.into(),
                ],
            },
        ))
        .await
        .unwrap();
    }

    async fn current_intermediate(&self) -> CaInfo {
        self.intermediates()
            .await
            .into_iter()
            .find(|c| c.state == Some(CaState::Current))
            .unwrap()
    }
}

#[tokio::test]
async fn a_leaf_signing_at_the_activation_instant_keeps_the_old_intermediate() {
    let h = Harness::start().await;
    let t0 = Utc::now().trunc_subsecs(0);
    let clock = ManualClock::new(t0);
    let issuer = h.issuer_at(&clock).await;

    // Intermediate 1 issued one leaf, and a second one is being signed right now: its
    // intent is recorded (`prepared`), its issuance is not. Activation, at the same
    // instant, must keep intermediate 1 until the in-flight leaf can expire, i.e.
    // until intermediate 1's own notAfter, not just until the recorded leaf's.
    let first = h.current_intermediate().await;
    let recorded = h.issue("recorded.example.com", 3600).await;
    h.intent("00aa01", &first.id, "prepared", t0).await;
    let rotated = h.rotate(RotateStep::Auto).await.unwrap();
    let retired = rotated.retired.clone().unwrap();
    assert_eq!(retired.id, first.id);
    assert_ne!(first.not_after, recorded.not_after);
    assert_eq!(
        retired.retire_until,
        Some(first.not_after),
        "the in-flight leaf was not counted"
    );

    // Intermediate 2: one recorded leaf and signings that ended without a certificate
    // (failed, discarded) or were recorded (issued): only the recorded leaf counts.
    let second = rotated.current.clone();
    let leaf = h.issue("second.example.com", 7200).await;
    assert_eq!(leaf.chain_pem[0], second.certificate_pem);
    for (serial, state) in [
        ("00bb01", "failed"),
        ("00bb02", "discarded"),
        ("00bb03", "issued"),
    ] {
        h.intent(serial, &second.id, state, t0).await;
    }
    let rotated = h.rotate(RotateStep::Auto).await.unwrap();
    let retired = rotated.retired.clone().unwrap();
    assert_eq!(retired.id, second.id);
    assert_eq!(retired.retire_until, Some(leaf.not_after));

    // The bundle keeps intermediate 2 through the instant its last leaf expires
    // (notAfter is inclusive) and drops it one second later.
    clock.set(leaf.not_after);
    let bundle = h.bundle().await;
    assert!(bundle.intermediates.contains(&second.certificate_pem));
    assert!(bundle.intermediates.contains(&first.certificate_pem));
    clock.set(leaf.not_after + Duration::seconds(1));
    let bundle = h.bundle().await;
    assert!(!bundle.intermediates.contains(&second.certificate_pem));
    assert!(bundle.intermediates.contains(&first.certificate_pem));
    assert!(
        bundle
            .intermediates
            .contains(&rotated.current.certificate_pem)
    );
    issuer.stop().await;
}

/// Replica B of the race tests: it shares the database of the harness's issuer
/// (replica A) but not its NATS server, so only B sees B's CA changes and only A sees
/// the issuances. B's admin requests are decided by an allow-all policy of its own.
struct ReplicaB {
    _nats: sigil_testkit::NatsServer,
    bus: sigil_bus::Bus,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), sigil_issuer::Error>>,
}

impl ReplicaB {
    async fn start(h: &Harness) -> ReplicaB {
        let nats = sigil_testkit::NatsServer::start().await;
        let bus = sigil_bus::Bus::connect(&nats.url(), "replica-b")
            .await
            .unwrap();
        let stop = CancellationToken::new();
        tokio::spawn({
            let (bus, stop) = (bus.clone(), stop.clone());
            async move { allow_all("test").serve(&bus, Metrics::new(), stop).await }
        });
        let task = tokio::spawn(sigil_issuer::run(
            h.base_config("Sigil Rotate"),
            Runtime::new(bus.clone(), Metrics::new(), Health::new()),
            stop.clone(),
        ));
        sigil_testkit::eventually_ok(TIMEOUT, "replica B answers", || {
            bus.request::<_, CaListResponse>(ISSUER_CA_LIST, &CaListRequest {}, TIMEOUT)
        })
        .await;
        ReplicaB {
            _nats: nats,
            bus,
            stop,
            task,
        }
    }

    async fn rotate(&self, step: RotateStep) -> CaRotateResponse {
        self.bus
            .request(
                ISSUER_CA_ROTATE,
                &CaRotateRequest { step, proof: None },
                TIMEOUT,
            )
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

impl Harness {
    /// nats-server with a [`OneUsePolicy`], and an issuer (replica A) whose in-memory
    /// CA hierarchy goes stale: it compares it with the database once an hour only.
    async fn start_one_use() -> (Harness, OneUsePolicy, Running) {
        let (policy, router) = OneUsePolicy::new();
        let h = Harness::launch("rotate-race-test", Some(router)).await;
        let stale = h
            .start_issuer(sigil_issuer::Config {
                ca_recheck: std::time::Duration::from_secs(3600),
                ..h.base_config("Sigil Rotate")
            })
            .await;
        (h, policy, stale)
    }

    /// An issuance of `name` carrying the single-use bootstrap token `token`.
    async fn issue_with_token(&self, name: &str, token: &str) -> Result<IssueResponse, WireError> {
        let req = IssueRequest {
            idempotency_key: None,
            profile: Profile::TlsServer,
            sans: Sans {
                dns: vec![name.to_owned()],
                ..Sans::default()
            },
            ttl_seconds: 3600,
            csr_pem: None,
            key_algorithm: Some(KeyAlgorithm::EcdsaP256),
            proof: Some(Proof::Token {
                token: token.to_owned(),
            }),
        };
        self.bus
            .request::<_, IssueResponse>(ISSUER_ISSUE, &req, TIMEOUT)
            .await
            .map_err(ClientError::into_wire)
    }
}

/// How many `evaluate` calls carried the bootstrap token `token`.
fn evaluations_of(policy: &OneUsePolicy, token: &str) -> usize {
    policy
        .evaluated()
        .iter()
        .filter(|e| matches!(&e.proof, Some(Proof::Token { token: t }) if t == token))
        .count()
}

/// A replica whose in-memory CA hierarchy is stale prepares a request with the
/// intermediate another replica has just retired: its intent is refused, nothing is
/// signed with the retired intermediate, and the request is prepared again with the new
/// one. Policy accepts each proof once (as the policy service does), so the second
/// attempt must reuse the first decision: exactly one `evaluate` for the request, and
/// the certificate records the principal that decision named.
#[tokio::test]
async fn a_request_prepared_with_an_intermediate_another_replica_retired_is_prepared_again() {
    let (h, policy, stale) = Harness::start_one_use().await;
    let first = h
        .issue_with_token("first.example.com", "first-token")
        .await
        .unwrap();
    let old = first.chain_pem[0].clone();

    let replica_b = ReplicaB::start(&h).await;
    replica_b.rotate(RotateStep::Prepare).await;
    let activated = replica_b.rotate(RotateStep::Activate).await;
    let new = activated.current.certificate_pem.clone();
    assert_ne!(new, old);

    let after = h
        .issue_with_token("after.example.com", "after-token")
        .await
        .expect("prepared again with the decision policy already gave");
    assert_eq!(
        after.chain_pem[0], new,
        "prepared again with the new intermediate"
    );
    common::sigil_verify(&after);
    assert_eq!(
        evaluations_of(&policy, "after-token"),
        1,
        "the single-use proof went to policy once"
    );
    assert_eq!(policy.evaluated().len(), 2);
    let db = sigil_store::connect(h.db.url(), "issuer").await.unwrap();
    let backend = db.get_database_backend();
    let requested_by = db
        .query_one(Statement::from_sql_and_values(
            backend,
            match backend {
                sea_orm::DatabaseBackend::Postgres => {
                    "SELECT requested_by FROM issuer_issuance WHERE serial = $1"
                }
                _ => "SELECT requested_by FROM issuer_issuance WHERE serial = ?",
            },
            [after.serial.clone().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "requested_by")
        .unwrap();
    assert_eq!(requested_by, "workload:after-token");

    // The refused attempt left no intent behind: the old intermediate has one, the
    // first leaf's, and its retire_until is that leaf's notAfter.
    let retired = activated.retired.expect("the old intermediate is retired");
    assert_eq!(retired.certificate_pem, old);
    assert_eq!(retired.retire_until, Some(first.not_after));
    let count = db
        .query_one(Statement::from_sql_and_values(
            backend,
            match backend {
                sea_orm::DatabaseBackend::Postgres => {
                    "SELECT COUNT(*) AS n FROM issuer_intent WHERE issuer_ca_id = $1"
                }
                _ => "SELECT COUNT(*) AS n FROM issuer_intent WHERE issuer_ca_id = ?",
            },
            [retired.id.clone().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(count, 1);

    replica_b.stop().await;
    stale.stop().await;
}

/// The same race, but another replica's `ca_init --force` replaced the hybrid
/// hierarchy with a classical one: policy judged a hybrid certificate and cannot be
/// asked again with the spent proof, so the request fails `unavailable` (the CA
/// changed; retry) without a second `evaluate` and without signing; a retry with a
/// fresh proof gets a classical certificate.
#[tokio::test]
async fn a_request_whose_ca_changed_kind_meanwhile_is_refused_as_unavailable() {
    let (h, policy, stale) = Harness::start_one_use().await;
    let first = h
        .issue_with_token("first.example.com", "first-token")
        .await
        .unwrap();
    assert_eq!(first.kind, CaKind::Hybrid);

    let replica_b = ReplicaB::start(&h).await;
    let init = CaInitRequest {
        kind: CaKind::Classical,
        algorithm: None,
        force: true,
        proof: None,
    };
    let _: CaListResponse = replica_b
        .bus
        .request(ISSUER_CA_INIT, &init, TIMEOUT)
        .await
        .unwrap();

    let err = h
        .issue_with_token("raced.example.com", "raced-token")
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable, "{}", err.message);
    assert_eq!(err.message, sigil_issuer::issue::CA_CHANGED);
    assert_eq!(evaluations_of(&policy, "raced-token"), 1);

    let retried = h
        .issue_with_token("raced.example.com", "fresh-token")
        .await
        .unwrap();
    assert_eq!(retried.kind, CaKind::Classical);
    common::sigil_verify(&retried);
    assert_eq!(policy.evaluated().len(), 3);

    replica_b.stop().await;
    stale.stop().await;
}
