//! Staged intermediate rotation over a real nats-server: prepare puts the next
//! intermediate in the trust bundle while the current one keeps signing; activate
//! swaps them, retires the old one until its last leaf expires, and every leaf (old
//! and new) verifies against the bundle with `sigil_pki::verify_chain`. Each slot
//! change lands one `ca.bundle_changed` event; conflicts are refused; a restart keeps
//! the slots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sigil_bus::ClientError;
use sigil_contracts::event::{CaBundleChanged, CloudEvent, EventKind};
use sigil_contracts::issuer::{
    BundleChangeReason, CaInfo, CaRole, CaRotateRequest, CaRotateResponse, CaState, IssueRequest,
    IssueResponse, RotateStep, TrustBundle, TrustBundleRequest,
};
use sigil_contracts::subjects::{
    EVENTS_STREAM, ISSUER_CA_ROTATE, ISSUER_ISSUE, ISSUER_TRUST_BUNDLE, event_subject,
};
use sigil_contracts::types::{KeyAlgorithm, Profile, Sans};
use sigil_contracts::{ErrorCode, WireError};
use sigil_testkit::eventually;

mod common;

use common::{Base as Harness, Running, TIMEOUT, allow_all};

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
            principal: Some("workload:rotate".into()),
        };
        self.bus.request(ISSUER_ISSUE, &req, TIMEOUT).await.unwrap()
    }

    async fn rotate(&self, step: RotateStep) -> Result<CaRotateResponse, WireError> {
        self.bus
            .request::<_, CaRotateResponse>(ISSUER_CA_ROTATE, &CaRotateRequest { step }, TIMEOUT)
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
