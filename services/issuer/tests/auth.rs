//! The issuer passes each request's proof of who sent it to policy, and does what
//! policy says about it. The policy service (which verifies proofs) is another service
//! and not a dependency: a scripted policy on a real nats-server ([`FakePolicy`]) keeps
//! every question it is asked and names the principal after the proof it was passed.
//!
//! What these prove:
//! - `issue` forwards the proof unchanged, with the operation `sigil.issuer.v1.issue`
//!   and the request's digest, names no principal of its own, and records the
//!   decision's principal as `requested_by` (issuance row and `identity.issued` event);
//! - a proof policy refuses reaches the client as `unauthenticated` with policy's
//!   message, and leaves no intent, no issuance and no event;
//! - the idempotency fingerprint ignores the proof: a retry with a fresh proof gets the
//!   first certificate, without asking policy again;
//! - `ca_init` and `ca_rotate` are decided as action `admin` and change nothing when
//!   policy denies, refuses the proof or is absent; the hierarchy a first start creates
//!   needs no proof.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::Utc;
use sea_orm::{ConnectionTrait as _, Statement};
use sigil_bus::ClientError;
use sigil_contracts::auth::{CarriesProof as _, PossessionProof, Proof};
use sigil_contracts::issuer::{
    CaInitRequest, CaListResponse, CaRotateRequest, CaRotateResponse, IssueRequest, IssueResponse,
    RotateStep,
};
use sigil_contracts::policy::Action;
use sigil_contracts::subjects::{ISSUER_CA_INIT, ISSUER_CA_ROTATE, ISSUER_ISSUE};
use sigil_contracts::types::{CaKind, Profile, Sans};
use sigil_contracts::{ErrorCode, WireError};
use sigil_issuer::issue::REPLAY_NOTE;

mod common;

use common::{Base as Harness, FakePolicy, PROVEN_ADMIN, Running, TIMEOUT, Verdict};

struct Setup {
    h: Harness,
    policy: FakePolicy,
    issuer: Running,
}

impl Setup {
    /// nats-server, a [`FakePolicy`] answering `verdict`, and an issuer; the issuer
    /// creates its hierarchy on first start whatever policy would say.
    async fn start(verdict: Verdict) -> Setup {
        let (policy, router) = FakePolicy::new(verdict);
        let h = Harness::launch("issuer-auth-test", Some(router)).await;
        let issuer = h.start_issuer(h.base_config("Sigil Auth")).await;
        Setup { h, policy, issuer }
    }

    async fn issue(&self, req: &IssueRequest) -> Result<IssueResponse, WireError> {
        self.h
            .bus
            .request::<_, IssueResponse>(ISSUER_ISSUE, req, TIMEOUT)
            .await
            .map_err(ClientError::into_wire)
    }

    async fn ca_init(&self, req: &CaInitRequest) -> Result<CaListResponse, WireError> {
        self.h
            .bus
            .request::<_, CaListResponse>(ISSUER_CA_INIT, req, TIMEOUT)
            .await
            .map_err(ClientError::into_wire)
    }

    async fn ca_rotate(&self, req: &CaRotateRequest) -> Result<CaRotateResponse, WireError> {
        self.h
            .bus
            .request::<_, CaRotateResponse>(ISSUER_CA_ROTATE, req, TIMEOUT)
            .await
            .map_err(ClientError::into_wire)
    }

    /// One column of every row of `table`, as text.
    async fn column(&self, table: &str, column: &str) -> Vec<String> {
        let db = sigil_store::connect(self.h.db.url(), "issuer")
            .await
            .unwrap();
        db.query_all(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT {column} AS v FROM {table}"),
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.try_get::<String>("", "v").unwrap())
        .collect()
    }

    /// Rows of issuance intents, issuances and identity events in the outbox.
    async fn stored(&self) -> (usize, usize, usize) {
        (
            self.column("issuer_intent", "serial").await.len(),
            self.column("issuer_issuance", "serial").await.len(),
            self.column(
                "outbox WHERE subject LIKE 'sigil.events.v1.identity.%'",
                "subject",
            )
            .await
            .len(),
        )
    }

    async fn stop(self) {
        self.issuer.stop().await;
    }
}

fn token(text: &str) -> Proof {
    Proof::Token {
        token: text.to_owned(),
    }
}

/// A possession proof's shape; the fake policy checks nothing of it.
fn possession() -> Proof {
    Proof::Possession(PossessionProof {
        chain_pem: vec!["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()],
        signed_at: Utc::now(),
        nonce: "nonce-0123456789abcdef".into(),
        signature: "c2lnbmF0dXJl".into(),
        alt_signature: None,
    })
}

fn request(name: &str, proof: Option<Proof>) -> IssueRequest {
    IssueRequest {
        idempotency_key: None,
        profile: Profile::TlsServer,
        sans: Sans {
            dns: vec![name.to_owned()],
            ..Sans::default()
        },
        ttl_seconds: 3600,
        csr_pem: None,
        key_algorithm: None,
        proof,
    }
}

#[tokio::test]
async fn the_proof_goes_to_policy_and_the_decision_names_the_requester() {
    let s = Setup::start(Verdict::Allow).await;

    let by_token = request("web.example.com", Some(token("web")));
    let issued = s.issue(&by_token).await.unwrap();
    let by_credential = request("admin.example.com", Some(possession()));
    s.issue(&by_credential).await.unwrap();

    let seen = s.policy.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    for (asked, sent) in seen.iter().zip([&by_token, &by_credential]) {
        assert_eq!(asked.principal, None, "the issuer names no principal");
        assert_eq!(asked.proof, sent.proof, "the proof is passed on unchanged");
        assert_eq!(asked.operation.as_deref(), Some("sigil.issuer.v1.issue"));
        assert_eq!(asked.request_digest, Some(sent.digest()));
        assert_eq!(asked.action, Action::Issue);
        assert_eq!(asked.sans, sent.sans);
        assert_eq!(asked.kind, Some(CaKind::Hybrid));
    }
    // The digest is the request's without its proof: what a possession proof signs.
    assert_ne!(seen[0].request_digest, seen[1].request_digest);

    let mut recorded = s.column("issuer_issuance", "requested_by").await;
    recorded.sort();
    assert_eq!(recorded, vec![PROVEN_ADMIN, "workload:web"]);
    let event = s
        .column(
            &format!(
                "outbox WHERE subject = 'sigil.events.v1.identity.issued' AND payload LIKE '%{}%'",
                issued.serial
            ),
            "payload",
        )
        .await;
    assert_eq!(event.len(), 1);
    let event: serde_json::Value = serde_json::from_str(&event[0]).unwrap();
    assert_eq!(event["data"]["requested_by"], "workload:web");
    s.stop().await;
}

#[tokio::test]
async fn a_refused_proof_reaches_the_client_as_unauthenticated() {
    let message = "the bootstrap token was already used (1 of 1 uses)";
    let s = Setup::start(Verdict::Unauthenticated(message.into())).await;

    let err = s
        .issue(&request("web.example.com", Some(token("spent"))))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthenticated, "{err:?}");
    assert_eq!(err.message, message, "policy's own words");
    // Without a proof too: policy decides what an anonymous request gets.
    let err = s
        .issue(&request("web.example.com", None))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthenticated, "{err:?}");

    assert_eq!(s.policy.seen().len(), 2);
    assert_eq!(s.stored().await, (0, 0, 0), "no intent, issuance or event");
    s.stop().await;
}

#[tokio::test]
async fn a_retry_with_a_fresh_proof_is_the_same_request() {
    let s = Setup::start(Verdict::Allow).await;
    let first_try = IssueRequest {
        idempotency_key: Some("deploy-7".into()),
        ..request("web.example.com", Some(token("web")))
    };
    let first = s.issue(&first_try).await.unwrap();
    assert!(first.private_key_pem.is_some());

    // The retry carries another proof (a single-use token would be spent by now; a
    // possession proof has a new nonce): policy is not asked again, and would refuse.
    s.policy.set(Verdict::Unauthenticated(
        "the token was already used".into(),
    ));
    let retry = IssueRequest {
        proof: Some(possession()),
        ..first_try.clone()
    };
    let again = s.issue(&retry).await.unwrap();
    assert_eq!(again.serial, first.serial);
    assert_eq!(again.certificate_pem, first.certificate_pem);
    assert!(again.private_key_pem.is_none(), "the key is never replayed");
    assert!(
        again.notes.iter().any(|n| n == REPLAY_NOTE),
        "{:?}",
        again.notes
    );
    assert_eq!(s.policy.seen().len(), 1, "the replay did not ask policy");

    // A different request under the same key is still a conflict, whatever its proof.
    let changed = IssueRequest {
        ttl_seconds: 7200,
        ..first_try
    };
    assert_eq!(
        s.issue(&changed).await.unwrap_err().code,
        ErrorCode::Conflict
    );
    assert_eq!(s.column("issuer_issuance", "serial").await.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn ca_init_and_ca_rotate_are_admin_decisions() {
    // The first start creates the hierarchy though policy denies everything.
    let s = Setup::start(Verdict::Deny(vec!["admins: only admins may".into()])).await;
    let before = s.h.ca_list().await.cas;
    assert_eq!(before.len(), 2);
    assert!(s.policy.seen().is_empty(), "starting asked policy nothing");

    let init = CaInitRequest {
        kind: CaKind::Composite,
        algorithm: None,
        force: true,
        proof: Some(token("web")),
    };
    let rotate = CaRotateRequest {
        step: RotateStep::Prepare,
        proof: Some(token("web")),
    };

    // Denied: `denied` with policy's reasons, nothing changes.
    let err = s.ca_init(&init).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Denied, "{err:?}");
    assert_eq!(err.reasons(), vec!["admins: only admins may"]);
    let err = s.ca_rotate(&rotate).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Denied, "{err:?}");

    // A refused proof: `unauthenticated`, nothing changes.
    s.policy.set(Verdict::Unauthenticated(
        "the proof is not signed by a Sigil credential".into(),
    ));
    let err = s.ca_init(&init).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthenticated, "{err:?}");
    assert_eq!(err.message, "the proof is not signed by a Sigil credential");
    let err = s.ca_rotate(&rotate).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthenticated, "{err:?}");
    assert_eq!(s.h.ca_list().await.cas, before, "refusals change nothing");

    // What was asked: action admin about the hierarchy concerned, bound to the request.
    let seen = s.policy.seen();
    assert_eq!(seen.len(), 4);
    for (asked, (operation, digest, kind)) in seen.iter().zip([
        ("sigil.issuer.v1.ca_init", init.digest(), CaKind::Composite),
        ("sigil.issuer.v1.ca_rotate", rotate.digest(), CaKind::Hybrid),
        ("sigil.issuer.v1.ca_init", init.digest(), CaKind::Composite),
        ("sigil.issuer.v1.ca_rotate", rotate.digest(), CaKind::Hybrid),
    ]) {
        assert_eq!(asked.action, Action::Admin);
        assert_eq!(asked.principal, None);
        assert_eq!(asked.proof, Some(token("web")));
        assert_eq!(asked.operation.as_deref(), Some(operation));
        assert_eq!(asked.request_digest.as_deref(), Some(digest.as_str()));
        assert_eq!(asked.kind, Some(kind));
        assert!(asked.sans.is_empty(), "{:?}", asked.sans);
    }

    // Allowed: the rotation step runs.
    s.policy.set(Verdict::Allow);
    let prepared = s
        .ca_rotate(&CaRotateRequest {
            proof: Some(possession()),
            ..rotate
        })
        .await
        .unwrap();
    assert!(prepared.next.is_some());
    assert_eq!(s.h.ca_list().await.cas.len(), 3);

    // Policy absent: `unavailable`, nothing changes.
    s.h.policy_stop.cancel();
    let err = s
        .ca_rotate(&CaRotateRequest {
            step: RotateStep::Activate,
            proof: Some(possession()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
    let err = s.ca_init(&init).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
    let after = s.h.ca_list().await.cas;
    assert_eq!(after.len(), 3);
    assert!(after.iter().all(|c| c.kind == CaKind::Hybrid));
    s.stop().await;
}
