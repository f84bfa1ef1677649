//! Requester authentication end to end, over a real nats-server and a real database
//! (SQLite, or PostgreSQL when `SIGIL_TEST_DATABASE_URL` is set), with replicas that
//! refuse requests without proof (as in production). Credentials are issued by a test
//! CA and recorded through real `identity.issued` events; the issuer's trust bundle and
//! the revocation service's status are small responders on the same bus.
//!
//! What it proves, each case with the audit row it leaves:
//! - a bootstrap token is used once: allowed, then `unauthenticated` (replayed); a
//!   denied request (a name outside the token's patterns) does not burn it; a token
//!   with two uses works twice and is refused the third time;
//! - an expired token (the injected clock moved past `exp`) and a token signed by
//!   another installation's key are `unauthenticated` with a clear message, and nothing
//!   but the refusal is recorded;
//! - without proof: `unauthenticated` unless the service allows anonymous requests,
//!   then decided as `anonymous`; `evaluate` naming a principal is `bad_request`;
//! - possession proofs: an admin credential may revoke, a workload credential may not;
//!   a credential renews itself (same names, decided as `renew`) but not another
//!   identity (`sigil:renewal-names`); a proof is single use; a revoked credential is
//!   refused; a dry run (`test`) checks a proof without consuming it;
//! - `token_create`: anonymous → `unauthenticated`, a workload credential → `denied`,
//!   an admin credential → a token that works, audited without the token itself;
//! - `apply` records the authenticated admin as the author; others are refused;
//! - a malformed `apply` and a `rollback` to an unknown version are refused before the
//!   admin is authorized: the proof's nonce is not spent (the same request and proof
//!   sent again gets the same answer, not `replayed`) and nothing is audited;
//! - on `ca.bundle_changed` a replica drops its cached trust bundle: a credential of a
//!   CA that left the bundle is refused at once;
//! - `sigil-policy mint-token` mints a token from the database that the service
//!   accepts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::{TimeZone, Utc};
use sigil_bus::{Bus, Clock as _, ManualClock};
use sigil_contracts::auth::{
    AuthMethod, CarriesProof, Proof, TokenCreateRequest, TokenCreateResponse,
};
use sigil_contracts::issuer::IssueRequest;
use sigil_contracts::policy::{
    Action, ApplyRequest, AuditEntry, AuditKind, Decision, EvaluateRequest, Explanation,
    ListRequest, ListResponse, PolicyVersion, RollbackRequest, TestRequest,
};
use sigil_contracts::revocation::RevokeRequest;
use sigil_contracts::subjects::{
    ISSUER_ISSUE, Operation, POLICY_APPLY, POLICY_EVALUATE, POLICY_LIST, POLICY_ROLLBACK,
    POLICY_TEST, POLICY_TOKEN_CREATE, REVOCATION_REVOKE,
};
use sigil_contracts::types::{KeyAlgorithm, Profile, RevocationReason, Sans};
use sigil_contracts::{ErrorCode, WireError};
use sigil_policy::authn::token::TokenKeys;
use sigil_testkit::{NatsServer, TestDb};

mod common;

use common::Replica;
use common::auth::{Fakes, Issued, Pki, audit, issue_recorded, local_token, record_issued};

const TIMEOUT: Duration = Duration::from_secs(10);
const HOUR: i64 = 3600;

/// An issue request for `dns`, as the issuer forwards it (a token needs no operation
/// or digest: it is not bound to one request).
fn issue(proof: Option<&Proof>, dns: &[&str]) -> EvaluateRequest {
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
        ttl_seconds: HOUR,
        key_algorithm: KeyAlgorithm::EcdsaP256,
        kind: None,
        key_bits: None,
    }
}

/// What the issuer or the revocation service forwards for `req` sent to `op`.
fn forwarded<T: CarriesProof>(
    op: Operation,
    req: &T,
    action: Action,
    profile: Profile,
    sans: &Sans,
) -> EvaluateRequest {
    EvaluateRequest {
        principal: None,
        proof: req.proof().cloned(),
        operation: Some(op.subject()),
        request_digest: Some(req.digest()),
        action,
        profile,
        sans: sans.clone(),
        ttl_seconds: if action == Action::Issue { HOUR } else { 0 },
        key_algorithm: KeyAlgorithm::EcdsaP256,
        kind: None,
        key_bits: None,
    }
}

/// A revocation of `target` signed by `by`, as the revocation service forwards it.
fn revoke_by(by: &Issued, target: &Issued) -> EvaluateRequest {
    let mut req = RevokeRequest {
        serial: target.serial(),
        reason: RevocationReason::KeyCompromise,
        proof: None,
    };
    req.proof = Some(
        by.credential
            .proof(&REVOCATION_REVOKE.subject(), &req, Utc::now())
            .unwrap(),
    );
    forwarded(
        REVOCATION_REVOKE,
        &req,
        Action::Revoke,
        target.facts.profile,
        &target.facts.sans,
    )
}

/// An issue request for `sans` signed by `by` (a renewal when `by` is not an admin).
fn renew_by(by: &Issued, sans: &Sans) -> EvaluateRequest {
    let mut req = IssueRequest {
        idempotency_key: None,
        profile: Profile::TlsClient,
        sans: sans.clone(),
        ttl_seconds: HOUR,
        csr_pem: None,
        key_algorithm: None,
        proof: None,
    };
    req.proof = Some(
        by.credential
            .proof(&ISSUER_ISSUE.subject(), &req, Utc::now())
            .unwrap(),
    );
    forwarded(ISSUER_ISSUE, &req, Action::Issue, Profile::TlsClient, sans)
}

async fn evaluate(bus: &Bus, req: &EvaluateRequest) -> Result<Decision, WireError> {
    bus.request::<_, Decision>(POLICY_EVALUATE, req, TIMEOUT)
        .await
        .map_err(|e| e.into_wire())
}

fn refused(result: Result<Decision, WireError>, failure: &str) -> WireError {
    let err = result.expect_err("refused");
    assert_eq!(err.code, ErrorCode::Unauthenticated, "{err:?}");
    assert_eq!(
        err.details.as_ref().unwrap()["auth_failure"],
        failure,
        "{err:?}"
    );
    err
}

/// (principal, action, outcome) of an audit entry.
fn row(e: &AuditEntry) -> (&str, &str, &str) {
    (e.principal.as_str(), e.action.as_str(), e.outcome.as_str())
}

/// The entries appended since `before` entries were there.
async fn new_rows(bus: &Bus, before: usize) -> Vec<AuditEntry> {
    audit(bus).await.into_iter().skip(before).collect()
}

#[tokio::test]
async fn a_token_is_used_once_and_a_denial_does_not_burn_it() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    let bus = Bus::connect(&nats.url(), "auth-test").await.unwrap();
    let replica = Replica::start_authenticated(&nats, &db, None).await;
    let token = local_token(
        &db,
        "workload:web",
        &["*.web.internal"],
        HOUR,
        1,
        Utc::now(),
    )
    .await;
    let before = audit(&bus).await;
    assert_eq!(before.last().unwrap().kind, AuditKind::TokenCreated);

    // A name outside the token's patterns: denied before any policy, use not counted.
    let d = evaluate(
        &bus,
        &issue(Some(&token), &["a.web.internal", "db.internal"]),
    )
    .await
    .unwrap();
    assert!(!d.allowed);
    assert_eq!(
        d.reasons,
        vec![
            "sigil:token-names: the token allows only *.web.internal; dns name db.internal is outside them"
        ]
    );
    // Inside: allowed, for the token's principal.
    let d = evaluate(&bus, &issue(Some(&token), &["a.web.internal"]))
        .await
        .unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.principal, "workload:web");
    assert_eq!(d.authenticated_by, AuthMethod::Token);
    assert_eq!(d.action, Some(Action::Issue));
    // Again: the one use is spent.
    let err = refused(
        evaluate(&bus, &issue(Some(&token), &["a.web.internal"])).await,
        "replayed",
    );
    assert!(err.message.contains("already used"), "{err:?}");

    let rows = new_rows(&bus, before.len()).await;
    let summary: Vec<_> = rows.iter().map(row).collect();
    assert_eq!(
        summary,
        [
            ("workload:web", "issue", "deny"),
            ("workload:web", "issue", "allow"),
            ("workload:web", "issue", "unauthenticated"),
        ]
    );
    assert!(rows[0].reasons[0].starts_with("sigil:token-names"));
    assert!(rows[1].resource.contains("\"authenticated_by\":\"token\""));
    assert!(rows[2].reasons[0].contains("already used"), "{:?}", rows[2]);

    // Two uses: twice, then refused.
    let two = local_token(
        &db,
        "workload:api",
        &["*.api.internal"],
        HOUR,
        2,
        Utc::now(),
    )
    .await;
    for _ in 0..2 {
        let d = evaluate(&bus, &issue(Some(&two), &["x.api.internal"]))
            .await
            .unwrap();
        assert!(d.allowed && d.principal == "workload:api", "{d:?}");
    }
    let err = refused(
        evaluate(&bus, &issue(Some(&two), &["x.api.internal"])).await,
        "replayed",
    );
    assert!(err.message.contains("2 of 2"), "{err:?}");
    let last = audit(&bus).await.pop().unwrap();
    assert_eq!(row(&last), ("workload:api", "issue", "unauthenticated"));

    replica.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn expired_and_foreign_tokens_are_refused_and_change_nothing() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    let bus = Bus::connect(&nats.url(), "auth-test").await.unwrap();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2027, 5, 1, 12, 0, 0).unwrap());
    let replica = Replica::start_authenticated(&nats, &db, Some(clock.clone())).await;
    let versions: ListResponse = bus
        .request(POLICY_LIST, &ListRequest::default(), TIMEOUT)
        .await
        .unwrap();

    // Expired: minted at the service's time with a minute to live; the clock moves on.
    let token = local_token(&db, "workload:web", &["*.internal"], 60, 1, clock.now()).await;
    let before = audit(&bus).await.len();
    clock.advance(chrono::Duration::seconds(61));
    let err = refused(
        evaluate(&bus, &issue(Some(&token), &["web.internal"])).await,
        "expired",
    );
    assert!(err.message.contains("expired at"), "{err:?}");

    // Another installation's token: its key id is unknown here…
    let names = vec!["*.internal".to_owned()];
    let foreign = TokenKeys::from_secrets(vec![("other-install".into(), [7u8; 32])]).unwrap();
    let (other, _) = foreign
        .mint("admin:root", &names, HOUR, 1, clock.now())
        .unwrap();
    let err = refused(
        evaluate(
            &bus,
            &issue(Some(&Proof::Token { token: other }), &["web.internal"]),
        )
        .await,
        "bad_signature",
    );
    assert!(err.message.contains("not minted here"), "{err:?}");
    // …or it reuses our key id with another secret.
    let conn = sigil_store::open::<sigil_policy::Migrator>(db.url(), "policy")
        .await
        .unwrap();
    let ours = TokenKeys::load_or_create(&conn).await.unwrap();
    conn.close().await.unwrap();
    let forged = TokenKeys::from_secrets(vec![(ours.current_kid().to_owned(), [9u8; 32])])
        .unwrap()
        .mint("admin:root", &names, HOUR, 1, clock.now())
        .unwrap()
        .0;
    refused(
        evaluate(
            &bus,
            &issue(Some(&Proof::Token { token: forged }), &["web.internal"]),
        )
        .await,
        "bad_signature",
    );
    // Garbage.
    refused(
        evaluate(
            &bus,
            &issue(
                Some(&Proof::Token {
                    token: "not.a.jwt".into(),
                }),
                &["web.internal"],
            ),
        )
        .await,
        "malformed",
    );

    // Nothing but the refusals was recorded, and nothing else changed.
    let rows = new_rows(&bus, before).await;
    let summary: Vec<_> = rows.iter().map(row).collect();
    assert_eq!(
        summary,
        [("unauthenticated", "issue", "unauthenticated"); 4],
        "{rows:?}"
    );
    assert!(rows[0].reasons[0].contains("expired"), "{:?}", rows[0]);
    assert!(
        rows[1].reasons[0].contains("bad signature"),
        "{:?}",
        rows[1]
    );
    let after: ListResponse = bus
        .request(POLICY_LIST, &ListRequest::default(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(after, versions);

    replica.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn requests_without_proof_and_named_principals() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    let bus = Bus::connect(&nats.url(), "auth-test").await.unwrap();
    let strict = Replica::start_authenticated(&nats, &db, None).await;

    let err = evaluate(&bus, &issue(None, &["web.internal"]))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthenticated);
    assert_eq!(err.message, "this request carries no proof of who sent it");
    let rows = audit(&bus).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(row(&rows[0]), ("anonymous", "issue", "unauthenticated"));
    assert_eq!(
        rows[0].reasons,
        ["this request carries no proof of who sent it"]
    );

    // Naming a principal is for dry runs only; nothing is recorded.
    let named = EvaluateRequest {
        principal: Some("admin:root".into()),
        ..issue(None, &["web.internal"])
    };
    let err = evaluate(&bus, &named).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("established by the proof"), "{err:?}");
    assert_eq!(audit(&bus).await.len(), 1);
    // A dry run decides for the principal it names.
    let e: Explanation = bus
        .request(
            POLICY_TEST,
            &TestRequest {
                request: named.clone(),
                at: None,
                version: None,
                policies: None,
                entities: None,
            },
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(e.decision.principal, "admin:root");
    assert_eq!(e.principal, r#"Sigil::Admin::"root""#);
    strict.stop().await;

    // A service that allows anonymous requests decides them.
    let lenient = Replica::start(&nats, &db, None).await;
    let d = evaluate(&bus, &issue(None, &["web.internal"]))
        .await
        .unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(
        (d.principal.as_str(), d.authenticated_by),
        ("anonymous", AuthMethod::None)
    );
    let last = audit(&bus).await.pop().unwrap();
    assert_eq!(row(&last), ("anonymous", "issue", "allow"));
    lenient.stop().await;
    db.cleanup().await;
}

/// A live replica that authenticates, fake issuer and revocation endpoints serving
/// `pki`'s trust bundle, and three recorded credentials: `admin:alice` (its admin URI),
/// `workload:web` and `workload:api`.
struct World {
    /// Kept alive for the test (dropping it stops the server).
    _nats: NatsServer,
    db: TestDb,
    bus: Bus,
    pki: Pki,
    fakes: Fakes,
    replica: Replica,
    admin: Issued,
    web: Issued,
    api: Issued,
}

impl World {
    async fn start(ca_name: &str, client: &str) -> World {
        let nats = NatsServer::start().await;
        let db = TestDb::from_env_or_sqlite().await;
        let bus = Bus::connect(&nats.url(), client).await.unwrap();
        let pki = Pki::new(ca_name, Utc::now());
        let fakes = Fakes::serve(&bus, pki.bundle()).await;
        let replica = Replica::start_authenticated(&nats, &db, None).await;
        let admin = issue_recorded(
            &bus,
            &db,
            &pki,
            &["uri:spiffe://sigil.admin/admin/alice"],
            10,
            "admin:alice",
        )
        .await;
        let web = issue_recorded(&bus, &db, &pki, &["dns:web.internal"], 1, "workload:web").await;
        let api = issue_recorded(&bus, &db, &pki, &["dns:api.internal"], 1, "workload:api").await;
        World {
            _nats: nats,
            db,
            bus,
            pki,
            fakes,
            replica,
            admin,
            web,
            api,
        }
    }
}

#[tokio::test]
async fn possession_proofs_authenticate_admins_and_renewals() {
    let World {
        _nats,
        db,
        bus,
        pki: _,
        fakes,
        replica,
        admin,
        web,
        api,
    } = World::start("Auth Test", "auth-test").await;
    let before = audit(&bus).await.len();

    // An admin credential may revoke.
    let d = evaluate(&bus, &revoke_by(&admin, &api)).await.unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.principal, "admin:alice");
    assert_eq!(d.authenticated_by, AuthMethod::Credential);
    assert_eq!(d.action, Some(Action::Revoke));
    // A workload credential may not, not even its own certificate.
    let d = evaluate(&bus, &revoke_by(&web, &web)).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(
        d.reasons,
        ["no policy permits revoke of dns name web.internal for workload:web"]
    );
    // A credential renews itself: an issue decided as renew.
    let same = renew_by(&web, &web.facts.sans);
    let d = evaluate(&bus, &same).await.unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.action, Some(Action::Renew));
    assert_eq!(d.principal, "workload:web");
    // The same proof again: single use.
    let err = refused(evaluate(&bus, &same).await, "replayed");
    assert!(err.message.contains("already used"), "{err:?}");
    // Not another identity.
    let d = evaluate(&bus, &renew_by(&web, &api.facts.sans))
        .await
        .unwrap();
    assert!(!d.allowed);
    assert_eq!(d.action, Some(Action::Renew));
    assert!(
        d.reasons[0].starts_with("sigil:renewal-names: renewal must keep the credential's names"),
        "{:?}",
        d.reasons
    );
    // A proof made for another request is refused.
    let mut moved = renew_by(&web, &web.facts.sans);
    moved.request_digest = Some(renew_by(&web, &api.facts.sans).request_digest.unwrap());
    refused(evaluate(&bus, &moved).await, "bad_signature");
    // A dry run checks a proof without consuming it.
    let fresh = renew_by(&web, &web.facts.sans);
    let e: Explanation = bus
        .request(
            POLICY_TEST,
            &TestRequest {
                request: fresh.clone(),
                at: None,
                version: None,
                policies: None,
                entities: None,
            },
            TIMEOUT,
        )
        .await
        .unwrap();
    assert!(e.decision.allowed && e.decision.principal == "workload:web");
    assert!(evaluate(&bus, &fresh).await.unwrap().allowed);
    // Revoked: refused from then on.
    fakes.revoke(&web.serial());
    let err = refused(
        evaluate(&bus, &renew_by(&web, &web.facts.sans)).await,
        "revoked",
    );
    assert!(err.message.contains(&web.serial()), "{err:?}");

    let rows = new_rows(&bus, before).await;
    let summary: Vec<_> = rows.iter().map(row).collect();
    assert_eq!(
        summary,
        [
            ("admin:alice", "revoke", "allow"),
            ("workload:web", "revoke", "deny"),
            ("workload:web", "renew", "allow"),
            ("unauthenticated", "issue", "unauthenticated"),
            ("workload:web", "renew", "deny"),
            ("unauthenticated", "issue", "unauthenticated"),
            ("workload:web", "renew", "allow"),
            ("unauthenticated", "issue", "unauthenticated"),
        ]
    );
    assert!(
        rows[0]
            .resource
            .contains("\"authenticated_by\":\"credential\"")
    );
    assert!(rows[0].resource.contains("api.internal"));
    assert!(rows[3].reasons[0].contains("replayed"), "{:?}", rows[3]);
    assert!(rows[4].reasons[0].starts_with("sigil:renewal-names"));
    assert!(rows[7].reasons[0].contains("revoked"), "{:?}", rows[7]);

    replica.stop().await;
    drop(fakes);
    db.cleanup().await;
}

#[tokio::test]
async fn a_bundle_change_drops_the_cached_trust() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    let bus = Bus::connect(&nats.url(), "auth-test").await.unwrap();
    let old = Pki::new("Old", Utc::now());
    let new = Pki::new("New", Utc::now());
    let fakes = Fakes::serve(&bus, old.bundle()).await;
    let replica = Replica::start_authenticated(&nats, &db, None).await;
    let web = old.issue(&["dns:web.internal"], Utc::now(), 1);
    record_issued(&bus, &db, &web, "workload:web").await;
    // Trusted, and the bundle is now cached.
    assert!(
        evaluate(&bus, &renew_by(&web, &web.facts.sans))
            .await
            .unwrap()
            .allowed
    );
    // The old CA leaves the bundle: without the event, the cached bundle would still
    // trust it (a chain that verifies is never re-checked against a fresh one).
    fakes
        .set_bundle(
            &bus,
            sigil_contracts::issuer::TrustBundle {
                version: 2,
                ..new.bundle()
            },
        )
        .await;
    let err = sigil_testkit::eventually(Duration::from_secs(10), "old CA refused", || async {
        evaluate(&bus, &renew_by(&web, &web.facts.sans)).await.err()
    })
    .await;
    assert_eq!(err.code, ErrorCode::Unauthenticated, "{err:?}");
    assert_eq!(err.details.unwrap()["auth_failure"], "untrusted_chain");
    // A credential of the new CA is trusted.
    let api = new.issue(&["dns:api.internal"], Utc::now(), 1);
    record_issued(&bus, &db, &api, "workload:api").await;
    let d = evaluate(&bus, &renew_by(&api, &api.facts.sans))
        .await
        .unwrap();
    assert!(d.allowed && d.principal == "workload:api", "{d:?}");

    replica.stop().await;
    drop(fakes);
    db.cleanup().await;
}

#[tokio::test]
async fn only_admins_create_tokens_and_apply_policies() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    let bus = Bus::connect(&nats.url(), "auth-test").await.unwrap();
    let pki = Pki::new("Admin Test", Utc::now());
    let _fakes = Fakes::serve(&bus, pki.bundle()).await;
    let replica = Replica::start_authenticated(&nats, &db, None).await;
    let admin = pki.issue(&["uri:spiffe://sigil.admin/admin/alice"], Utc::now(), 10);
    let web = pki.issue(&["dns:web.internal"], Utc::now(), 1);
    record_issued(&bus, &db, &admin, "admin:alice").await;
    record_issued(&bus, &db, &web, "workload:web").await;
    let before = audit(&bus).await.len();

    let create = |by: Option<&Issued>| {
        let mut req = TokenCreateRequest {
            principal: "workload:api".into(),
            names: vec!["*.api.internal".into()],
            ttl_seconds: HOUR,
            uses: 1,
            proof: None,
        };
        req.proof = by.map(|c| {
            c.credential
                .proof(&POLICY_TOKEN_CREATE.subject(), &req, Utc::now())
                .unwrap()
        });
        req
    };
    let token_create = |req: TokenCreateRequest| {
        let bus = bus.clone();
        async move {
            bus.request::<_, TokenCreateResponse>(POLICY_TOKEN_CREATE, &req, TIMEOUT)
                .await
                .map_err(|e| e.into_wire())
        }
    };
    let err = token_create(create(None)).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthenticated, "{err:?}");
    let err = token_create(create(Some(&web))).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Denied, "{err:?}");
    assert!(
        err.reasons()[0].contains("no policy permits admin"),
        "{err:?}"
    );
    // Bad input is refused before anything is decided or recorded.
    let mut bad = create(Some(&admin));
    bad.ttl_seconds = 0;
    let err = token_create(bad).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest, "{err:?}");
    let minted = token_create(create(Some(&admin))).await.unwrap();
    assert_eq!(minted.principal, "workload:api");
    assert_eq!(minted.names, ["*.api.internal"]);
    assert_eq!(minted.uses, 1);
    // The token works, for its principal.
    let d = evaluate(
        &bus,
        &issue(
            Some(&Proof::Token {
                token: minted.token.clone(),
            }),
            &["a.api.internal"],
        ),
    )
    .await
    .unwrap();
    assert!(d.allowed && d.principal == "workload:api", "{d:?}");

    // apply: the admin is recorded as the author; a workload is denied; without proof,
    // unauthenticated. Only the admin's version is stored.
    let apply = |by: Option<&Issued>| {
        let mut req = ApplyRequest {
            policies: sigil_policy::templates::DEFAULT.to_owned(),
            entities: None,
            comment: Some("same again".into()),
            proof: None,
        };
        req.proof = by.map(|c| {
            c.credential
                .proof(&POLICY_APPLY.subject(), &req, Utc::now())
                .unwrap()
        });
        req
    };
    let applied: PolicyVersion = bus
        .request(POLICY_APPLY, &apply(Some(&admin)), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        (applied.version, applied.created_by.as_str()),
        (2, "admin:alice")
    );
    let err = bus
        .request::<_, PolicyVersion>(POLICY_APPLY, &apply(Some(&web)), TIMEOUT)
        .await
        .unwrap_err()
        .into_wire();
    assert_eq!(err.code, ErrorCode::Denied, "{err:?}");
    let err = bus
        .request::<_, PolicyVersion>(POLICY_APPLY, &apply(None), TIMEOUT)
        .await
        .unwrap_err()
        .into_wire();
    assert_eq!(err.code, ErrorCode::Unauthenticated, "{err:?}");
    let list: ListResponse = bus
        .request(POLICY_LIST, &ListRequest::default(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(list.active, 2);

    let rows = new_rows(&bus, before).await;
    let summary: Vec<_> = rows
        .iter()
        .map(|e| {
            (
                e.kind,
                e.principal.as_str(),
                e.action.as_str(),
                e.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (AuditKind::Decision, "anonymous", "admin", "unauthenticated"),
            (AuditKind::Decision, "workload:web", "admin", "deny"),
            (AuditKind::Decision, "admin:alice", "admin", "allow"),
            (
                AuditKind::TokenCreated,
                "admin:alice",
                "token_create",
                "created"
            ),
            (AuditKind::Decision, "workload:api", "issue", "allow"),
            (AuditKind::Decision, "admin:alice", "admin", "allow"),
            (AuditKind::Decision, "workload:web", "admin", "deny"),
            (AuditKind::Decision, "anonymous", "admin", "unauthenticated"),
        ]
    );
    let created: serde_json::Value = serde_json::from_str(&rows[3].resource).unwrap();
    assert_eq!(created["jti"], minted.id.as_str());
    assert_eq!(created["principal"], "workload:api");
    assert_eq!(created["uses"], 1);
    assert!(
        !rows.iter().any(|r| r.resource.contains(&minted.token)),
        "the token itself is never recorded"
    );

    replica.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn the_mint_token_command_gives_a_token_the_service_accepts() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    let bus = Bus::connect(&nats.url(), "auth-test").await.unwrap();
    let replica = Replica::start_authenticated(&nats, &db, None).await;
    let exe = env!("CARGO_BIN_EXE_sigil-policy");
    let run = |args: &[&str]| {
        std::process::Command::new(exe)
            .args(args)
            .env("SIGIL_DATABASE_URL", db.url())
            .env_remove("SIGIL_POLICY_FILE")
            .env_remove("SIGIL_POLICY_ENTITIES")
            .output()
            .unwrap()
    };
    let out = run(&["mint-token", "--principal", "admin:ops"]);
    assert_eq!(out.status.code(), Some(64), "no --name is a usage error");
    let out = run(&[
        "mint-token",
        "--principal",
        "admin:ops",
        "--name",
        "spiffe://sigil.admin/admin/*",
        "--ttl",
        "10m",
    ]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let proof = Proof::Token {
        token: token.clone(),
    };
    // A token authorizes only issue, even for an `admin:` principal: it cannot apply
    // policies…
    let req = ApplyRequest {
        policies: sigil_policy::templates::DEFAULT.to_owned(),
        entities: None,
        comment: None,
        proof: Some(proof.clone()),
    };
    let err = bus
        .request::<_, PolicyVersion>(POLICY_APPLY, &req, TIMEOUT)
        .await
        .unwrap_err()
        .into_wire();
    assert_eq!(err.code, ErrorCode::Denied, "{err:?}");
    assert!(
        err.reasons()
            .iter()
            .any(|r| r.starts_with("sigil:token-action")),
        "{err:?}"
    );
    // …but it gets the admin its credential, once (the refusal above used nothing).
    let mut want = issue(Some(&proof), &[]);
    want.profile = Profile::TlsClient;
    want.sans.uri = vec!["spiffe://sigil.admin/admin/ops".to_owned()];
    let d = evaluate(&bus, &want).await.unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.principal, "admin:ops");
    refused(evaluate(&bus, &want).await, "replayed");
    let rows = audit(&bus).await;
    assert_eq!(rows[0].kind, AuditKind::TokenCreated);
    assert_eq!(rows[0].principal, sigil_policy::LOCAL_MINTER);
    assert!(rows[0].resource.contains("admin:ops"));
    assert!(!rows[0].resource.contains(&token));

    replica.stop().await;
    db.cleanup().await;
}

/// Validation comes before authorization: an `apply` whose policy text does not
/// compile, or a `rollback` to a version that does not exist, cannot succeed, so it
/// must not spend the admin's single-use proof nor leave an `allow` in the audit log.
/// (A bootstrap token cannot apply policies at all, see above; the single-use proof of
/// an admin is a possession proof's nonce.)
#[tokio::test]
async fn a_request_that_cannot_succeed_is_refused_before_the_admin_is_authorized() {
    let nats = NatsServer::start().await;
    let db = TestDb::from_env_or_sqlite().await;
    let bus = Bus::connect(&nats.url(), "auth-test").await.unwrap();
    let pki = Pki::new("Validate First", Utc::now());
    let _fakes = Fakes::serve(&bus, pki.bundle()).await;
    let replica = Replica::start_authenticated(&nats, &db, None).await;
    let admin = pki.issue(&["uri:spiffe://sigil.admin/admin/alice"], Utc::now(), 10);
    record_issued(&bus, &db, &admin, "admin:alice").await;
    let before = audit(&bus).await.len();

    let apply = |policies: &str| {
        let mut req = ApplyRequest {
            policies: policies.to_owned(),
            entities: None,
            comment: None,
            proof: None,
        };
        req.proof = Some(
            admin
                .credential
                .proof(&POLICY_APPLY.subject(), &req, Utc::now())
                .unwrap(),
        );
        req
    };
    let send_apply = |req: &ApplyRequest| {
        let (bus, req) = (bus.clone(), req.clone());
        async move {
            bus.request::<_, PolicyVersion>(POLICY_APPLY, &req, TIMEOUT)
                .await
                .map_err(|e| e.into_wire())
        }
    };
    // The same malformed request and proof twice: bad_request both times. Had the
    // first spent the nonce, the second would be unauthenticated (replayed).
    let malformed = apply("permit(principal, action, resource) when {");
    for _ in 0..2 {
        let err = send_apply(&malformed).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{err:?}");
    }

    let mut rollback = RollbackRequest {
        version: 99,
        comment: None,
        proof: None,
    };
    rollback.proof = Some(
        admin
            .credential
            .proof(&POLICY_ROLLBACK.subject(), &rollback, Utc::now())
            .unwrap(),
    );
    for _ in 0..2 {
        let err = bus
            .request::<_, PolicyVersion>(POLICY_ROLLBACK, &rollback, TIMEOUT)
            .await
            .unwrap_err()
            .into_wire();
        assert_eq!(err.code, ErrorCode::NotFound, "{err:?}");
    }
    assert!(
        new_rows(&bus, before).await.is_empty(),
        "nothing was decided, so nothing is audited"
    );

    // The admin's credential does work here: a valid apply is authorized, audited once,
    // and its proof then spent.
    let valid = apply(sigil_policy::templates::DEFAULT);
    let applied = send_apply(&valid).await.unwrap();
    assert_eq!(applied.created_by, "admin:alice");
    let err = send_apply(&valid).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthenticated, "{err:?}");
    let rows = new_rows(&bus, before).await;
    assert_eq!(
        rows.iter().map(row).collect::<Vec<_>>(),
        [
            ("admin:alice", "admin", "allow"),
            ("unauthenticated", "admin", "unauthenticated"),
        ]
    );

    replica.stop().await;
    db.cleanup().await;
}

/// What a row of [`the_authentication_table`] expects.
enum Outcome {
    /// Allowed, decided as this action, for this principal.
    Allow(Action, &'static str),
    /// Denied; some reason contains this.
    Deny(&'static str),
    /// Refused as `unauthenticated` with this `details.auth_failure` (any, when empty).
    Refused(&'static str),
}

/// The authentication cases as one table, against a live replica (each row is sent in
/// order; a row may depend on the ones before it, as a replay does): tokens used, used
/// again, expired, foreign or outside their patterns; admin and workload credentials
/// revoking; renewals of the same and of another identity; a revoked credential
/// renewing; no proof at all. Every row also leaves exactly one audit row.
#[tokio::test]
async fn the_authentication_table() {
    let World {
        _nats,
        db,
        bus,
        pki,
        fakes,
        replica,
        admin,
        web,
        api,
    } = World::start("Auth Table", "auth-table").await;
    let gone = issue_recorded(&bus, &db, &pki, &["dns:gone.internal"], 1, "workload:gone").await;
    // An admin had it issued for a workload: it proves that workload, not the admin.
    let by_admin = issue_recorded(&bus, &db, &pki, &["dns:svc.internal"], 1, "admin:alice").await;
    fakes.revoke(&gone.serial());

    let now = Utc::now();
    let token = local_token(&db, "workload:web", &["*.web.internal"], HOUR, 1, now).await;
    let expired = local_token(
        &db,
        "workload:web",
        &["*.web.internal"],
        60,
        1,
        now - chrono::Duration::hours(1),
    )
    .await;
    let admin_token = local_token(
        &db,
        "admin:ops",
        &["spiffe://sigil.admin/admin/ops"],
        HOUR,
        5,
        now,
    )
    .await;
    let (foreign, _) = TokenKeys::from_secrets(vec![("elsewhere".into(), [3u8; 32])])
        .unwrap()
        .mint("workload:web", &["*.web.internal".to_owned()], HOUR, 1, now)
        .unwrap();
    let foreign = Proof::Token { token: foreign };
    let mut admin_token_revoke = issue(Some(&admin_token), &[]);
    admin_token_revoke.action = Action::Revoke;

    use Outcome::*;
    let table: Vec<(&str, EvaluateRequest, Outcome)> = vec![
        (
            "a token inside its pattern",
            issue(Some(&token), &["a.web.internal"]),
            Allow(Action::Issue, "workload:web"),
        ),
        (
            "the same token replayed",
            issue(Some(&token), &["b.web.internal"]),
            Refused("replayed"),
        ),
        (
            "an expired token",
            issue(Some(&expired), &["a.web.internal"]),
            Refused("expired"),
        ),
        (
            "a token signed by another installation",
            issue(Some(&foreign), &["a.web.internal"]),
            Refused("bad_signature"),
        ),
        (
            "a token outside its pattern",
            issue(Some(&admin_token), &["evil.test"]),
            Deny("sigil:token-names"),
        ),
        (
            "an admin token revoking",
            admin_token_revoke,
            Deny("sigil:token-action"),
        ),
        (
            "an admin credential revoking",
            revoke_by(&admin, &api),
            Allow(Action::Revoke, "admin:alice"),
        ),
        (
            "a non-admin revoke",
            revoke_by(&web, &api),
            Deny("no policy permits revoke"),
        ),
        (
            "a credential an admin had issued revoking",
            revoke_by(&by_admin, &api),
            Deny("no policy permits revoke"),
        ),
        (
            "a credential renewing itself",
            renew_by(&web, &web.facts.sans),
            Allow(Action::Renew, "workload:web"),
        ),
        (
            "a renewal for another identity",
            renew_by(&web, &api.facts.sans),
            Deny("sigil:renewal-names"),
        ),
        (
            "a revoked credential renewing",
            renew_by(&gone, &gone.facts.sans),
            Refused("revoked"),
        ),
        (
            "no proof at all",
            issue(None, &["a.web.internal"]),
            Refused(""),
        ),
    ];
    let mut rows = audit(&bus).await.len();
    for (what, req, expect) in table {
        let got = evaluate(&bus, &req).await;
        match (&expect, &got) {
            (Allow(action, principal), Ok(d)) => {
                assert!(d.allowed, "{what}: {d:?}");
                assert_eq!(d.action, Some(*action), "{what}");
                assert_eq!(d.principal, *principal, "{what}");
            }
            (Deny(needle), Ok(d)) => {
                assert!(!d.allowed, "{what}: {d:?}");
                assert!(
                    d.reasons.iter().any(|r| r.contains(needle)),
                    "{what}: {:?}",
                    d.reasons
                );
            }
            (Refused(""), Err(e)) => {
                assert_eq!(e.code, ErrorCode::Unauthenticated, "{what}: {e:?}");
            }
            (Refused(failure), Err(e)) => {
                assert_eq!(e.code, ErrorCode::Unauthenticated, "{what}: {e:?}");
                assert_eq!(
                    e.details.as_ref().map(|d| d["auth_failure"].clone()),
                    Some(serde_json::Value::from(*failure)),
                    "{what}: {e:?}"
                );
            }
            _ => panic!("{what}: unexpected {got:?}"),
        }
        let now_rows = audit(&bus).await.len();
        assert_eq!(now_rows, rows + 1, "{what}: one audit row per request");
        rows = now_rows;
    }
    drop(fakes);
    replica.stop().await;
    db.cleanup().await;
}
