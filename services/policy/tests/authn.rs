//! Authentication mechanics of the policy service (`sigil_policy::authn`), on their own:
//! bootstrap tokens (mint, verify, refuse), the token key every replica shares, the
//! single-use ledger in JetStream KV (against a real nats-server, with replicas racing),
//! and possession proofs verified against a fake issuer (trust bundle) and a fake
//! revocation service (status) served on the real bus. Certificates are real, made
//! with sigil_pki; proofs are made with `sigil_pki::Credential`, as the CLI makes them.
//!
//! The endpoints that use all this (evaluate, token_create, apply…) are tested in
//! `auth_over_nats.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration as Span, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use sigil_bus::Bus;
use sigil_bus::service::Router;
use sigil_contracts::WireError;
use sigil_contracts::auth::{
    AuthMethod, CarriesProof, PossessionProof, Proof, TOKEN_AUDIENCE, TOKEN_ISSUER, TokenClaims,
    TokenCreateRequest,
};
use sigil_contracts::event::IdentityIssued;
use sigil_contracts::issuer::{TrustBundle, TrustBundleRequest};
use sigil_contracts::revocation::{StatusRequest, StatusResponse};
use sigil_contracts::subjects::{
    ISSUER_ISSUE, ISSUER_TRUST_BUNDLE, REVOCATION_REVOKE, REVOCATION_STATUS, Service,
};
use sigil_contracts::types::{CaKind, KeyAlgorithm, Profile, RevocationReason, Sans};
use sigil_pki::{
    CaMaterial, Credential, LeafKey, LeafRequest, create_intermediate, create_root, generate_key,
    issue_leaf,
};
use sigil_policy::authn::ledger::{
    BUCKET, MAX_AGE, MAX_BYTES, NONCE_BUCKET, NONCE_MAX_AGE, UseLedger,
};
use sigil_policy::authn::possession::{
    CreateCredentials, PossessionVerifier, record_issued, recorded_principal,
};
use sigil_policy::authn::token::{SECRET_LEN, TokenKeys};
use sigil_policy::authn::{AuthError, Grant, Requester};
use sigil_telemetry::Metrics;
use sigil_testkit::{NatsServer, TestDb, eventually_ok};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(20);

/// The time every test runs at (certificates, proofs and tokens are all judged at an
/// injected time, never the system clock).
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T15:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Only this module's tables, so these tests stand apart from the rest of the service.
#[derive(Debug)]
struct AuthnTables;

impl MigratorTrait for AuthnTables {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateCredentials)]
    }
}

async fn open(db: &TestDb) -> DatabaseConnection {
    sigil_store::open::<AuthnTables>(db.url(), "policy")
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------
// Bootstrap tokens.

fn keys(kid: &str, byte: u8) -> TokenKeys {
    TokenKeys::from_secrets(vec![(kid.to_owned(), [byte; SECRET_LEN])]).unwrap()
}

fn web_names() -> Vec<String> {
    vec![
        "*.web.internal".to_owned(),
        "spiffe://prod/ns/web/*".to_owned(),
    ]
}

/// Signs `claims` as a token with key `kid` = `secret` under `alg`, bypassing `mint`.
fn forge(claims: &TokenClaims, kid: &str, secret: &[u8], alg: Algorithm) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

#[test]
fn a_minted_token_verifies_within_its_lifetime() {
    let k = keys("k1", 1);
    let (jwt, claims) = k.mint("workload:web", &web_names(), 600, 2, t0()).unwrap();
    assert_eq!(claims.iss, TOKEN_ISSUER);
    assert_eq!(claims.aud, TOKEN_AUDIENCE);
    assert_eq!(claims.sub, "workload:web");
    assert_eq!(claims.sigil_for, web_names());
    assert_eq!(claims.sigil_uses, 2);
    assert_eq!(
        (claims.iat, claims.nbf),
        (t0().timestamp(), t0().timestamp())
    );
    assert_eq!(claims.exp - claims.nbf, 600);

    let header = jsonwebtoken::decode_header(&jwt).unwrap();
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(header.kid.as_deref(), Some("k1"));
    assert_eq!(k.verify(&jwt, t0()).unwrap(), claims);
    assert_eq!(k.verify(&jwt, t0() + Span::seconds(599)).unwrap(), claims);

    let (_, again) = k.mint("workload:web", &web_names(), 600, 2, t0()).unwrap();
    assert_ne!(again.jti, claims.jti, "every token has its own id");
}

#[test]
fn a_token_is_refused_outside_its_lifetime() {
    let k = keys("k1", 1);
    let (jwt, _) = k.mint("workload:web", &web_names(), 600, 1, t0()).unwrap();
    let at_exp = k.verify(&jwt, t0() + Span::seconds(600));
    assert!(
        matches!(&at_exp, Err(AuthError::Expired(m)) if m.contains("expired at")),
        "{at_exp:?}"
    );
    assert!(matches!(
        k.verify(&jwt, t0() + Span::days(2)),
        Err(AuthError::Expired(_))
    ));
    let early = k.verify(&jwt, t0() - Span::seconds(1));
    assert!(
        matches!(&early, Err(AuthError::Expired(m)) if m.contains("not valid before")),
        "{early:?}"
    );
}

#[test]
fn a_token_signed_with_another_secret_is_refused() {
    let ours = keys("k1", 1);
    // Same key id, another secret: a forgery.
    let (forged, _) = keys("k1", 2)
        .mint("admin:mallory", &web_names(), 600, 1, t0())
        .unwrap();
    let e = ours.verify(&forged, t0());
    assert!(matches!(e, Err(AuthError::BadSignature(_))), "{e:?}");
    // Another service's key id: not minted here.
    let (foreign, _) = keys("elsewhere", 1)
        .mint("admin:mallory", &web_names(), 600, 1, t0())
        .unwrap();
    let e = ours.verify(&foreign, t0());
    assert!(
        matches!(&e, Err(AuthError::BadSignature(m)) if m.contains("does not hold")),
        "{e:?}"
    );
    assert_eq!(
        e.unwrap_err().to_wire().code,
        sigil_contracts::ErrorCode::Unauthenticated
    );
}

#[test]
fn alg_none_other_algorithms_and_tampered_tokens_are_refused() {
    let k = keys("k1", 1);
    let (jwt, claims) = k.mint("workload:web", &web_names(), 600, 1, t0()).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);

    // "alg": "none" with the real payload and no signature.
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
    let none = format!("{none_header}.{}.", parts[1]);
    let e = k.verify(&none, t0());
    assert!(
        matches!(e, Err(AuthError::Malformed(_) | AuthError::BadSignature(_))),
        "{e:?}"
    );

    // The payload changed (another principal), the signature kept.
    let mut evil = claims.clone();
    evil.sub = "admin:root".to_owned();
    let evil_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&evil).unwrap());
    let tampered = format!("{}.{evil_payload}.{}", parts[0], parts[2]);
    let e = k.verify(&tampered, t0());
    assert!(matches!(e, Err(AuthError::BadSignature(_))), "{e:?}");

    // The right secret under another HMAC: still refused (HS256 only).
    let hs384 = forge(&claims, "k1", &[1; SECRET_LEN], Algorithm::HS384);
    let e = k.verify(&hs384, t0());
    assert!(matches!(e, Err(AuthError::BadSignature(_))), "{e:?}");

    // No kid at all.
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&[1; SECRET_LEN]),
    )
    .unwrap();
    assert!(matches!(
        k.verify(&no_kid, t0()),
        Err(AuthError::BadSignature(_))
    ));

    for junk in ["", "a.b", "not a token", &"x".repeat(10_000)] {
        let e = k.verify(junk, t0());
        assert!(
            matches!(e, Err(AuthError::Malformed(_))),
            "{junk:.20}: {e:?}"
        );
    }
}

#[test]
fn a_token_for_another_audience_or_issuer_is_refused() {
    let k = keys("k1", 1);
    let (_, claims) = k.mint("workload:web", &web_names(), 600, 1, t0()).unwrap();
    let mut other_aud = claims.clone();
    other_aud.aud = "vault".to_owned();
    let e = k.verify(
        &forge(&other_aud, "k1", &[1; SECRET_LEN], Algorithm::HS256),
        t0(),
    );
    assert!(
        matches!(&e, Err(AuthError::Malformed(m)) if m.contains("audience")),
        "{e:?}"
    );
    let mut other_iss = claims.clone();
    other_iss.iss = "someone-else".to_owned();
    let e = k.verify(
        &forge(&other_iss, "k1", &[1; SECRET_LEN], Algorithm::HS256),
        t0(),
    );
    assert!(
        matches!(&e, Err(AuthError::Malformed(m)) if m.contains("issuer")),
        "{e:?}"
    );
    // The same claims signed properly do verify: the refusals above are about aud/iss.
    assert!(
        k.verify(
            &forge(&claims, "k1", &[1; SECRET_LEN], Algorithm::HS256),
            t0()
        )
        .is_ok()
    );
}

#[tokio::test]
async fn replicas_creating_the_token_key_together_end_with_one_key() {
    let db = TestDb::from_env_or_sqlite().await;
    // One connection pool per replica, as separate processes would have.
    let mut replicas = Vec::new();
    for _ in 0..4 {
        replicas.push(open(&db).await);
    }
    let loaded = futures::future::join_all(replicas.iter().map(TokenKeys::load_or_create)).await;
    let loaded: Vec<TokenKeys> = loaded.into_iter().map(Result::unwrap).collect();
    let kid = loaded[0].current_kid().to_owned();
    assert!(!kid.is_empty());
    for k in &loaded {
        assert_eq!(k.current_kid(), kid);
    }
    let rows = sigil_policy::authn::token::entity::Entity::find()
        .count(&replicas[0])
        .await
        .unwrap();
    assert_eq!(rows, 1, "exactly one key is stored");

    // A token minted by one replica verifies at another, and after a restart.
    let (jwt, claims) = loaded[1]
        .mint("agent:ci", &web_names(), 60, 1, t0())
        .unwrap();
    assert_eq!(loaded[3].verify(&jwt, t0()).unwrap(), claims);
    let restarted = TokenKeys::load_or_create(&open(&db).await).await.unwrap();
    assert_eq!(restarted.current_kid(), kid);
    assert_eq!(restarted.verify(&jwt, t0()).unwrap(), claims);
    // Debug never shows the secret.
    assert!(format!("{restarted:?}").contains("redacted"));

    for r in replicas {
        r.close().await.unwrap();
    }
    db.cleanup().await;
}

// ---------------------------------------------------------------------------------
// The use ledger (JetStream KV).

async fn ledger(nats: &NatsServer, name: &str) -> UseLedger {
    let bus = Bus::connect(&nats.url(), name).await.unwrap();
    UseLedger::open(bus.jetstream()).await.unwrap()
}

#[tokio::test]
async fn a_single_use_token_is_used_once_across_replicas() {
    let nats = NatsServer::start().await;
    let a = ledger(&nats, "replica-a").await;
    let b = ledger(&nats, "replica-b").await;
    assert_eq!(a.use_token("jti-single", 1).await.unwrap(), 1);
    let again = a.use_token("jti-single", 1).await;
    assert!(matches!(again, Err(AuthError::Replayed(_))), "{again:?}");
    let elsewhere = b.use_token("jti-single", 1).await;
    assert!(
        matches!(elsewhere, Err(AuthError::Replayed(_))),
        "{elsewhere:?}"
    );
    // Another token is unaffected.
    assert_eq!(b.use_token("jti-other", 1).await.unwrap(), 1);
}

#[tokio::test]
async fn a_token_with_three_uses_allows_exactly_three() {
    let nats = NatsServer::start().await;
    let a = ledger(&nats, "replica-a").await;
    let b = ledger(&nats, "replica-b").await;
    assert_eq!(a.use_token("jti-3", 3).await.unwrap(), 1);
    assert_eq!(b.use_token("jti-3", 3).await.unwrap(), 2);
    assert_eq!(a.use_token("jti-3", 3).await.unwrap(), 3);
    let fourth = b.use_token("jti-3", 3).await;
    assert!(
        matches!(&fourth, Err(AuthError::Replayed(m)) if m.contains("3 of 3")),
        "{fourth:?}"
    );
}

#[tokio::test]
async fn racing_replicas_never_overspend_a_token() {
    let nats = NatsServer::start().await;
    let replicas = [
        Arc::new(ledger(&nats, "replica-a").await),
        Arc::new(ledger(&nats, "replica-b").await),
    ];
    for (jti, uses, racers) in [
        ("race-1", 1u32, 2usize),
        ("race-1b", 1, 8),
        ("race-3", 3, 12),
    ] {
        let mut tasks = Vec::new();
        for i in 0..racers {
            let l = replicas[i % 2].clone();
            tasks.push(tokio::spawn(async move { l.use_token(jti, uses).await }));
        }
        let mut granted = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(n) => granted.push(n),
                Err(AuthError::Replayed(_)) => {}
                Err(e) => panic!("{jti}: unexpected {e:?}"),
            }
        }
        granted.sort_unstable();
        assert_eq!(
            granted,
            (1..=uses).collect::<Vec<_>>(),
            "{jti}: exactly {uses} of {racers} racers may use it"
        );
    }
}

#[tokio::test]
async fn a_nonce_is_accepted_once_per_credential() {
    let nats = NatsServer::start().await;
    let a = ledger(&nats, "replica-a").await;
    let b = ledger(&nats, "replica-b").await;
    a.consume_nonce("0abc", "nonce-0123456789ab").await.unwrap();
    let again = b.consume_nonce("0abc", "nonce-0123456789ab").await;
    assert!(matches!(again, Err(AuthError::Replayed(_))), "{again:?}");
    // The same nonce with another credential is another entry.
    b.consume_nonce("0abd", "nonce-0123456789ab").await.unwrap();
}

/// The stream behind KV bucket `bucket`, as the server has it now.
async fn bucket_stream(bus: &Bus, bucket: &str) -> async_nats::jetstream::stream::Info {
    bus.jetstream()
        .get_stream(format!("KV_{bucket}"))
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone()
}

#[tokio::test]
async fn nonces_and_token_uses_are_kept_in_their_own_limited_buckets() {
    let nats = NatsServer::start().await;
    let bus = Bus::connect(&nats.url(), "ledger-buckets").await.unwrap();
    let ledger = UseLedger::open(bus.jetstream()).await.unwrap();
    ledger.use_token("jti-bucket", 1).await.unwrap();
    ledger
        .consume_nonce("0abc", "nonce-0123456789ab")
        .await
        .unwrap();
    ledger
        .consume_nonce("0abc", "nonce-0123456789ac")
        .await
        .unwrap();

    let uses = bucket_stream(&bus, BUCKET).await;
    let nonces = bucket_stream(&bus, NONCE_BUCKET).await;
    assert_eq!(NONCE_BUCKET, "sigil-auth-nonces");
    assert_eq!((uses.state.messages, nonces.state.messages), (1, 2));
    assert_eq!(uses.config.max_age, MAX_AGE);
    assert_eq!(nonces.config.max_age, NONCE_MAX_AGE);
    assert_eq!(nonces.config.max_age, Duration::from_secs(2 * 300 + 300));
    for stream in [&uses, &nonces] {
        assert_eq!(stream.config.max_bytes, MAX_BYTES);
        assert_eq!(stream.config.max_messages_per_subject, 1);
        assert_eq!(
            stream.config.discard,
            async_nats::jetstream::stream::DiscardPolicy::New,
            "a full bucket refuses new entries rather than forgetting spent ones"
        );
    }
    // Opening again (another replica, a restart) changes nothing.
    let again = UseLedger::open(bus.jetstream()).await.unwrap();
    let replay = again.consume_nonce("0abc", "nonce-0123456789ab").await;
    assert!(matches!(replay, Err(AuthError::Replayed(_))), "{replay:?}");
    assert_eq!(
        bucket_stream(&bus, NONCE_BUCKET).await.config,
        nonces.config
    );
}

/// Buckets made by an earlier version or by hand: one whose entries expire too soon
/// would reopen the replay window, so open raises its max_age; one without a byte limit
/// gets one. What they hold is kept.
#[tokio::test]
async fn existing_buckets_with_short_ages_or_no_byte_limit_are_raised_at_open() {
    use async_nats::jetstream::kv;
    let nats = NatsServer::start().await;
    let bus = Bus::connect(&nats.url(), "ledger-upgrade").await.unwrap();
    let js = bus.jetstream();
    for (bucket, max_age) in [
        (NONCE_BUCKET, Duration::from_secs(60)),
        (BUCKET, Duration::from_secs(3600)),
    ] {
        js.create_key_value(kv::Config {
            bucket: bucket.to_owned(),
            history: 1,
            max_age,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let old = js.get_key_value(BUCKET).await.unwrap();
    old.create("t.jti-before", bytes::Bytes::from_static(b"1"))
        .await
        .unwrap();

    let ledger = UseLedger::open(js).await.unwrap();
    let uses = bucket_stream(&bus, BUCKET).await;
    let nonces = bucket_stream(&bus, NONCE_BUCKET).await;
    assert_eq!(uses.config.max_age, MAX_AGE);
    assert_eq!(nonces.config.max_age, NONCE_MAX_AGE);
    assert_eq!(uses.config.max_bytes, MAX_BYTES);
    assert_eq!(nonces.config.max_bytes, MAX_BYTES);
    let spent = ledger.use_token("jti-before", 1).await;
    assert!(matches!(spent, Err(AuthError::Replayed(_))), "{spent:?}");

    // A longer age and an operator's own byte limit are left alone.
    js.update_stream(async_nats::jetstream::stream::Config {
        max_age: MAX_AGE,
        max_bytes: 1 << 20,
        ..nonces.config.clone()
    })
    .await
    .unwrap();
    UseLedger::open(js).await.unwrap();
    let kept = bucket_stream(&bus, NONCE_BUCKET).await;
    assert_eq!(
        (kept.config.max_age, kept.config.max_bytes),
        (MAX_AGE, 1 << 20)
    );
}

// ---------------------------------------------------------------------------------
// Possession proofs.

/// A CA hierarchy: root and intermediate (ECDSA P-256), valid around [`t0`].
struct Pki {
    root: CaMaterial,
    inter: CaMaterial,
    id: String,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let root = create_root(
            &format!("{name} Root"),
            KeyAlgorithm::EcdsaP256,
            t0() - Span::days(1),
            t0() + Span::days(365),
        )
        .unwrap();
        let inter = create_intermediate(
            &root,
            &format!("{name} Intermediate"),
            KeyAlgorithm::EcdsaP256,
            t0() - Span::days(1),
            t0() + Span::days(180),
        )
        .unwrap();
        Pki {
            root,
            inter,
            id: format!("{name}-ca"),
        }
    }

    fn bundle(&self, version: u64) -> TrustBundle {
        TrustBundle {
            version,
            kind: CaKind::Classical,
            roots: vec![self.root.cert_pem.clone()],
            intermediates: vec![self.inter.cert_pem.clone()],
        }
    }

    /// A credential (chain: leaf, intermediate) for `sans` with a fresh key of `alg`,
    /// valid one hour either side of [`t0`], and its `identity.issued` for `principal`.
    fn credential(
        &self,
        sans: Sans,
        alg: KeyAlgorithm,
        principal: &str,
    ) -> (Credential, IdentityIssued) {
        self.credential_valid(
            sans,
            alg,
            principal,
            t0() - Span::hours(1),
            t0() + Span::hours(1),
        )
    }

    fn credential_valid(
        &self,
        sans: Sans,
        alg: KeyAlgorithm,
        principal: &str,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> (Credential, IdentityIssued) {
        let key = generate_key(alg).unwrap();
        let issued = issue_leaf(
            &self.inter,
            &LeafRequest {
                profile: Profile::TlsClient,
                sans,
                common_name: None,
                not_before,
                not_after,
                key: LeafKey::Generated(key.clone()),
            },
        )
        .unwrap();
        let credential = Credential::from_parts(
            vec![issued.cert_pem.clone(), self.inter.cert_pem.clone()],
            &key.to_pkcs8_pem(),
            None,
        )
        .unwrap();
        let event = IdentityIssued {
            facts: issued.facts,
            certificate_pem: issued.cert_pem,
            issuer_ca_id: Some(self.id.clone()),
            chain_pem: vec![],
            requested_by: principal.to_owned(),
            kind: CaKind::Classical,
        };
        (credential, event)
    }
}

fn dns(name: &str) -> Sans {
    Sans {
        dns: vec![name.to_owned()],
        ..Sans::default()
    }
}

/// A request to prove (any request type carrying a proof will do).
fn request(n: u32) -> TokenCreateRequest {
    TokenCreateRequest {
        principal: "workload:web".to_owned(),
        names: vec![format!("n{n}.web.internal")],
        ttl_seconds: 60,
        uses: 1,
        proof: None,
    }
}

fn possession(proof: Proof) -> PossessionProof {
    match proof {
        Proof::Possession(p) => p,
        Proof::Token { .. } => panic!("a credential makes possession proofs"),
    }
}

/// A proof by `credential` for `req` to the issuer's `issue`, signed at `at`.
fn prove(credential: &Credential, req: &TokenCreateRequest, at: DateTime<Utc>) -> PossessionProof {
    possession(credential.proof(&ISSUER_ISSUE.subject(), req, at).unwrap())
}

/// nats-server, a fake issuer (trust bundle) and a fake revocation service (status) on
/// it, the credentials table, the ledger, and the verifier under test.
struct World {
    _nats: NatsServer,
    bus: Bus,
    _db: TestDb,
    conn: DatabaseConnection,
    verifier: PossessionVerifier,
    bundle: Arc<Mutex<TrustBundle>>,
    bundle_requests: Arc<AtomicUsize>,
    revoked: Arc<Mutex<HashSet<String>>>,
    stop: CancellationToken,
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl World {
    /// Everything up, serving `pki`'s bundle; the revocation service only when
    /// `revocation` (see [`World::serve_revocation`]).
    async fn start(pki: &Pki, revocation: bool) -> World {
        let nats = NatsServer::start().await;
        let bus = Bus::connect(&nats.url(), "authn-test").await.unwrap();
        let bundle = Arc::new(Mutex::new(pki.bundle(1)));
        let bundle_requests = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let issuer = {
            let (bundle, count) = (bundle.clone(), bundle_requests.clone());
            Router::new(Service::Issuer, "fake issuer: trust bundle").route(
                ISSUER_TRUST_BUNDLE,
                move |_: TrustBundleRequest| {
                    count.fetch_add(1, Ordering::SeqCst);
                    let b = bundle.lock().unwrap().clone();
                    async move { Ok::<_, WireError>(b) }
                },
            )
        };
        {
            let (bus, stop) = (bus.clone(), stop.clone());
            tokio::spawn(async move { issuer.serve(&bus, Metrics::new(), stop).await });
        }
        let db = TestDb::from_env_or_sqlite().await;
        let conn = open(&db).await;
        let ledger = Arc::new(UseLedger::open(bus.jetstream()).await.unwrap());
        let verifier = PossessionVerifier::new(bus.clone(), conn.clone(), ledger, TIMEOUT);
        let world = World {
            _nats: nats,
            bus,
            _db: db,
            conn,
            verifier,
            bundle,
            bundle_requests,
            revoked: Arc::new(Mutex::new(HashSet::new())),
            stop,
        };
        let _: TrustBundle = eventually_ok(WAIT, "fake issuer answers", || {
            world
                .bus
                .request(ISSUER_TRUST_BUNDLE, &TrustBundleRequest {}, TIMEOUT)
        })
        .await;
        world.bundle_requests.store(0, Ordering::SeqCst);
        if revocation {
            world.serve_revocation().await;
        }
        world
    }

    /// Serve `revocation.status` from [`World::revoked`].
    async fn serve_revocation(&self) {
        let revoked = self.revoked.clone();
        let router = Router::new(Service::Revocation, "fake revocation: status").route(
            REVOCATION_STATUS,
            move |req: StatusRequest| {
                let is_revoked = revoked.lock().unwrap().contains(&req.serial);
                async move {
                    Ok::<_, WireError>(StatusResponse {
                        serial: req.serial,
                        revoked: is_revoked,
                        reason: is_revoked.then_some(RevocationReason::KeyCompromise),
                        revoked_at: is_revoked.then(t0),
                    })
                }
            },
        );
        let (bus, stop) = (self.bus.clone(), self.stop.clone());
        tokio::spawn(async move { router.serve(&bus, Metrics::new(), stop).await });
        let probe = StatusRequest {
            serial: "01".to_owned(),
        };
        let _: StatusResponse = eventually_ok(WAIT, "fake revocation answers", || {
            self.bus.request(REVOCATION_STATUS, &probe, TIMEOUT)
        })
        .await;
    }

    /// What the audit consumer does with an `identity.issued`.
    async fn record(&self, event: &IdentityIssued) {
        let txn = self.conn.begin().await.unwrap();
        record_issued(&txn, event).await.unwrap();
        txn.commit().await.unwrap();
    }

    /// Verify `proof` for `req` sent to the issuer's `issue`, at `now`.
    async fn verify(
        &self,
        proof: &PossessionProof,
        req: &TokenCreateRequest,
        now: DateTime<Utc>,
    ) -> Result<Requester, AuthError> {
        self.verifier
            .verify(proof, &ISSUER_ISSUE.subject(), &req.digest(), now, true)
            .await
    }
}

/// A certificate an admin had issued for a workload is not an admin credential: only
/// a credential issued to `admin:<id>` that names exactly
/// `spiffe://sigil.admin/admin/<id>` proves an admin.
#[tokio::test]
async fn only_the_admin_uri_makes_an_admin_credential() {
    let pki = Pki::new("Sigil");
    let w = World::start(&pki, true).await;
    let req = request(1);
    let cases: [(Sans, &str, &str, bool); 4] = [
        (
            dns("web.internal"),
            "admin:alice",
            "workload:web.internal",
            false,
        ),
        (
            Sans {
                uri: vec!["spiffe://sigil.admin/admin/bob".to_owned()],
                ..Sans::default()
            },
            "admin:alice",
            "workload:spiffe://sigil.admin/admin/bob",
            false,
        ),
        (
            Sans {
                uri: vec!["spiffe://sigil.admin/admin/alice".to_owned()],
                dns: vec!["extra.internal".to_owned()],
                ..Sans::default()
            },
            "admin:alice",
            "workload:spiffe://sigil.admin/admin/alice",
            false,
        ),
        (
            Sans {
                uri: vec!["spiffe://sigil.admin/admin/alice".to_owned()],
                ..Sans::default()
            },
            "admin:alice",
            "admin:alice",
            true,
        ),
    ];
    for (sans, recorded, principal, admin) in cases {
        let (cred, issued) = pki.credential(sans, KeyAlgorithm::EcdsaP256, recorded);
        w.record(&issued).await;
        let who = w
            .verify(&prove(&cred, &req, t0()), &req, t0())
            .await
            .unwrap();
        assert_eq!(who.principal, principal);
        assert!(
            matches!(who.grant, Grant::Credential { admin: a, .. } if a == admin),
            "{who:?}"
        );
    }
}

/// A leaf is the very certificate recorded under its serial: a certificate that
/// carries a recorded serial but is not the recorded certificate (say, one signed with
/// the key of a CA still in the bundle after a compromise) proves nothing.
#[tokio::test]
async fn a_certificate_that_is_not_the_recorded_one_is_refused() {
    let pki = Pki::new("Sigil");
    let w = World::start(&pki, true).await;
    let (real, issued) =
        pki.credential(dns("web.internal"), KeyAlgorithm::EcdsaP256, "workload:web");
    let (_other, other) =
        pki.credential(dns("web.internal"), KeyAlgorithm::EcdsaP256, "workload:web");
    // The record under the real serial is of another certificate.
    let mut recorded = issued.clone();
    recorded.certificate_pem = other.certificate_pem.clone();
    w.record(&recorded).await;
    let req = request(1);
    let e = w.verify(&prove(&real, &req, t0()), &req, t0()).await;
    assert!(
        matches!(&e, Err(AuthError::UntrustedChain(m)) if m.contains("not the one Sigil issued")),
        "{e:?}"
    );
    // Nothing was fetched for it: the record check comes before any signature.
    assert_eq!(w.bundle_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_valid_proof_names_the_principal_the_credential_was_issued_to() {
    let pki = Pki::new("Sigil");
    let w = World::start(&pki, true).await;
    let sans = Sans {
        dns: vec!["web.internal".to_owned()],
        ip: vec!["10.0.0.7".parse().unwrap()],
        uri: vec!["spiffe://prod/ns/web/sa/frontend".to_owned()],
    };
    let (web, issued) = pki.credential(sans, KeyAlgorithm::EcdsaP256, "workload:web");
    w.record(&issued).await;
    let req = request(1);
    let who = w
        .verify(&prove(&web, &req, t0()), &req, t0())
        .await
        .unwrap();
    assert_eq!(
        who,
        Requester {
            principal: "workload:web".to_owned(),
            method: AuthMethod::Credential,
            grant: Grant::Credential {
                serial: issued.facts.serial.clone(),
                sans: Sans {
                    dns: vec!["web.internal".to_owned()],
                    ip: vec!["10.0.0.7".parse().unwrap()],
                    uri: vec!["spiffe://prod/ns/web/sa/frontend".to_owned()],
                },
                profile: Some(Profile::TlsClient),
                admin: false,
            },
        }
    );

    // An admin credential (Ed25519), with the root attached to its chain as well.
    let admin_sans = Sans {
        uri: vec!["spiffe://sigil.admin/admin/alice".to_owned()],
        ..Sans::default()
    };
    let (admin, admin_issued) = pki.credential(admin_sans, KeyAlgorithm::Ed25519, "admin:alice");
    w.record(&admin_issued).await;
    let mut proof = prove(&admin, &req, t0());
    proof.chain_pem.push(pki.root.cert_pem.clone());
    let who = w.verify(&proof, &req, t0()).await.unwrap();
    assert_eq!(who.principal, "admin:alice");
    assert!(matches!(who.grant, Grant::Credential { admin: true, .. }));

    // The bundle was fetched once and then served from the cache.
    assert_eq!(w.bundle_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_replayed_proof_is_refused_but_a_dry_run_does_not_burn_it() {
    let pki = Pki::new("Sigil");
    let w = World::start(&pki, true).await;
    let (web, issued) =
        pki.credential(dns("web.internal"), KeyAlgorithm::EcdsaP256, "workload:web");
    w.record(&issued).await;
    let req = request(1);
    let proof = prove(&web, &req, t0());
    let op = ISSUER_ISSUE.subject();
    for _ in 0..2 {
        w.verifier
            .verify(&proof, &op, &req.digest(), t0(), false)
            .await
            .unwrap();
    }
    w.verify(&proof, &req, t0()).await.unwrap();
    let replay = w.verify(&proof, &req, t0() + Span::seconds(5)).await;
    assert!(matches!(replay, Err(AuthError::Replayed(_))), "{replay:?}");
    // A fresh proof of the same request is fine.
    w.verify(&prove(&web, &req, t0()), &req, t0())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_proof_made_for_another_request_or_operation_is_refused() {
    let pki = Pki::new("Sigil");
    let w = World::start(&pki, true).await;
    let (web, issued) =
        pki.credential(dns("web.internal"), KeyAlgorithm::EcdsaP256, "workload:web");
    w.record(&issued).await;
    let (req, other) = (request(1), request(2));
    let proof = prove(&web, &req, t0());

    let e = w.verify(&proof, &other, t0()).await;
    assert!(
        matches!(e, Err(AuthError::BadSignature(_))),
        "another body: {e:?}"
    );
    let e = w
        .verifier
        .verify(
            &proof,
            &REVOCATION_REVOKE.subject(),
            &req.digest(),
            t0(),
            true,
        )
        .await;
    assert!(
        matches!(e, Err(AuthError::BadSignature(_))),
        "another operation: {e:?}"
    );
    for (op, digest) in [
        ("", req.digest()),
        (ISSUER_ISSUE.subject().as_str(), String::new()),
    ] {
        let e = w.verifier.verify(&proof, op, &digest, t0(), true).await;
        assert!(matches!(e, Err(AuthError::WrongRequest(_))), "{e:?}");
    }
    // Nothing above used the nonce: the proof still works for its own request.
    w.verify(&proof, &req, t0()).await.unwrap();
}

#[tokio::test]
async fn a_proof_signed_too_long_ago_or_ahead_is_refused() {
    let pki = Pki::new("Sigil");
    let w = World::start(&pki, true).await;
    let (web, issued) =
        pki.credential(dns("web.internal"), KeyAlgorithm::EcdsaP256, "workload:web");
    w.record(&issued).await;
    let req = request(1);
    let old = prove(&web, &req, t0() - Span::minutes(10));
    let e = w.verify(&old, &req, t0()).await;
    assert!(
        matches!(&e, Err(AuthError::Expired(m)) if m.contains("behind")),
        "{e:?}"
    );
    let ahead = prove(&web, &req, t0() + Span::minutes(10));
    let e = w.verify(&ahead, &req, t0()).await;
    assert!(
        matches!(&e, Err(AuthError::Expired(m)) if m.contains("ahead")),
        "{e:?}"
    );
    // Within the allowed skew it passes.
    let recent = prove(&web, &req, t0() - Span::seconds(290));
    w.verify(&recent, &req, t0()).await.unwrap();
}

#[tokio::test]
async fn a_revoked_credential_is_refused() {
    let pki = Pki::new("Sigil");
    let w = World::start(&pki, true).await;
    let (web, issued) =
        pki.credential(dns("web.internal"), KeyAlgorithm::EcdsaP256, "workload:web");
    w.record(&issued).await;
    let req = request(1);
    w.verify(&prove(&web, &req, t0()), &req, t0())
        .await
        .unwrap();
    w.revoked
        .lock()
        .unwrap()
        .insert(issued.facts.serial.clone());
    let e = w.verify(&prove(&web, &req, t0()), &req, t0()).await;
    assert!(
        matches!(&e, Err(AuthError::Revoked(m)) if m.contains("key-compromise")),
        "{e:?}"
    );
    assert_eq!(
        e.unwrap_err().to_wire().code,
        sigil_contracts::ErrorCode::Unauthenticated
    );
}

#[tokio::test]
async fn an_unrecorded_credential_is_refused_until_its_issuance_arrives() {
    let pki = Pki::new("Sigil");
    let w = World::start(&pki, true).await;
    let (web, issued) =
        pki.credential(dns("web.internal"), KeyAlgorithm::EcdsaP256, "workload:web");
    let req = request(1);
    let e = w.verify(&prove(&web, &req, t0()), &req, t0()).await;
    assert!(
        matches!(&e, Err(AuthError::UnknownCredential(m)) if m.contains("retry")),
        "{e:?}"
    );
    w.record(&issued).await;
    // A redelivered event changes nothing, even if it claimed another principal.
    let mut again = issued.clone();
    again.requested_by = "admin:mallory".to_owned();
    w.record(&again).await;
    assert_eq!(
        recorded_principal(&w.conn, &issued.facts.serial)
            .await
            .unwrap()
            .map(|(p, _)| p)
            .as_deref(),
        Some("workload:web")
    );
    let who = w
        .verify(&prove(&web, &req, t0()), &req, t0())
        .await
        .unwrap();
    assert_eq!(who.principal, "workload:web");
}

#[tokio::test]
async fn a_credential_from_a_foreign_ca_is_refused() {
    let pki = Pki::new("Sigil");
    let foreign = Pki::new("Sigil"); // same names, other keys: a look-alike CA
    let w = World::start(&pki, true).await;
    let (cred, issued) = foreign.credential(
        dns("web.internal"),
        KeyAlgorithm::EcdsaP256,
        "admin:mallory",
    );
    // Even a recorded serial does not help: trust comes from the chain.
    w.record(&issued).await;
    let req = request(1);
    let e = w.verify(&prove(&cred, &req, t0()), &req, t0()).await;
    assert!(
        matches!(&e, Err(AuthError::UntrustedChain(m)) if m.contains("failed")),
        "{e:?}"
    );
    // Attaching its own root does not make it trusted either.
    let mut with_root = prove(&cred, &req, t0());
    with_root.chain_pem.push(foreign.root.cert_pem.clone());
    let e = w.verify(&with_root, &req, t0()).await;
    assert!(matches!(e, Err(AuthError::UntrustedChain(_))), "{e:?}");
}

#[tokio::test]
async fn an_expired_credential_is_refused() {
    let pki = Pki::new("Sigil");
    let w = World::start(&pki, true).await;
    let (web, issued) = pki.credential_valid(
        dns("web.internal"),
        KeyAlgorithm::EcdsaP256,
        "workload:web",
        t0() - Span::hours(2),
        t0() + Span::hours(1),
    );
    w.record(&issued).await;
    let req = request(1);
    w.verify(&prove(&web, &req, t0()), &req, t0())
        .await
        .unwrap();
    let later = t0() + Span::hours(2);
    let e = w.verify(&prove(&web, &req, later), &req, later).await;
    assert!(
        matches!(&e, Err(AuthError::Expired(m)) if m.contains("validity")),
        "{e:?}"
    );
    // An expired leaf is not a sign of rotation: the bundle was not fetched again.
    assert_eq!(w.bundle_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn after_a_ca_rotation_only_the_current_bundle_is_trusted() {
    let old = Pki::new("Sigil");
    let new = Pki::new("Sigil next");
    let w = World::start(&old, true).await;
    let (old_cred, old_issued) =
        old.credential(dns("web.internal"), KeyAlgorithm::EcdsaP256, "workload:web");
    let (new_cred, new_issued) =
        new.credential(dns("api.internal"), KeyAlgorithm::EcdsaP256, "workload:api");
    w.record(&old_issued).await;
    w.record(&new_issued).await;
    let req = request(1);
    w.verify(&prove(&old_cred, &req, t0()), &req, t0())
        .await
        .unwrap();
    assert_eq!(w.bundle_requests.load(Ordering::SeqCst), 1);

    // The issuer moves to a new hierarchy; this replica has not heard yet. A credential
    // of the new CA fails against the cached bundle, so the bundle is fetched again.
    *w.bundle.lock().unwrap() = new.bundle(2);
    let who = w
        .verify(&prove(&new_cred, &req, t0()), &req, t0())
        .await
        .unwrap();
    assert_eq!(who.principal, "workload:api");
    assert_eq!(w.bundle_requests.load(Ordering::SeqCst), 2);
    // The old hierarchy is no longer trusted.
    let e = w.verify(&prove(&old_cred, &req, t0()), &req, t0()).await;
    assert!(matches!(e, Err(AuthError::UntrustedChain(_))), "{e:?}");

    // ca.bundle_changed: the cache is dropped and the next proof fetches the bundle.
    let before = w.bundle_requests.load(Ordering::SeqCst);
    w.verifier.invalidate_bundle();
    w.verify(&prove(&new_cred, &req, t0()), &req, t0())
        .await
        .unwrap();
    assert_eq!(w.bundle_requests.load(Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn authentication_fails_closed_when_revocation_does_not_answer() {
    let pki = Pki::new("Sigil");
    let w = World::start(&pki, false).await;
    let (web, issued) =
        pki.credential(dns("web.internal"), KeyAlgorithm::EcdsaP256, "workload:web");
    w.record(&issued).await;
    let req = request(1);
    let proof = prove(&web, &req, t0());
    let e = w.verify(&proof, &req, t0()).await;
    assert!(matches!(e, Err(AuthError::Unavailable(_))), "{e:?}");
    assert_eq!(
        e.unwrap_err().to_wire().code,
        sigil_contracts::ErrorCode::Unavailable
    );
    // The refusal did not use the nonce: once revocation answers, the proof passes.
    w.serve_revocation().await;
    w.verify(&proof, &req, t0()).await.unwrap();
}

#[tokio::test]
async fn malformed_proofs_and_foreign_signatures_are_refused() {
    let pki = Pki::new("Sigil");
    let w = World::start(&pki, true).await;
    let (web, issued) =
        pki.credential(dns("web.internal"), KeyAlgorithm::EcdsaP256, "workload:web");
    let (api, api_issued) =
        pki.credential(dns("api.internal"), KeyAlgorithm::EcdsaP256, "workload:api");
    w.record(&issued).await;
    w.record(&api_issued).await;
    let req = request(1);
    let good = prove(&web, &req, t0());

    let mut bad_nonce = good.clone();
    bad_nonce.nonce = "short".to_owned();
    let mut bad_b64 = good.clone();
    bad_b64.signature = "not base64!".to_owned();
    let mut no_chain = good.clone();
    no_chain.chain_pem.clear();
    let mut junk_chain = good.clone();
    junk_chain.chain_pem[0] =
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned();
    for (what, p) in [
        ("nonce", bad_nonce),
        ("base64", bad_b64),
        ("empty chain", no_chain),
        ("junk chain", junk_chain),
    ] {
        let e = w.verify(&p, &req, t0()).await;
        assert!(matches!(e, Err(AuthError::Malformed(_))), "{what}: {e:?}");
    }

    // api's key signing a proof that presents web's certificate.
    let mut stolen_chain = prove(&api, &req, t0());
    stolen_chain.chain_pem = good.chain_pem.clone();
    let e = w.verify(&stolen_chain, &req, t0()).await;
    assert!(matches!(e, Err(AuthError::BadSignature(_))), "{e:?}");

    w.verify(&good, &req, t0()).await.unwrap();
}
