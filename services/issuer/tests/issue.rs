//! The issuer over a real nats-server, with a small but real policy endpoint served by
//! the test (the policy crate is another service and is not a dependency).
//!
//! What these prove:
//! - issued certificates chain to the issuer's root under `openssl verify`, with a
//!   server-generated key or the requester's CSR key;
//! - each issuance lands exactly one `identity.issued` CloudEvent on `SIGIL_EVENTS`;
//! - bad input, policy denial and an absent policy answer with the right error code
//!   and leave no row and no event;
//! - idempotency keys make retries (sequential or concurrent) return the first result;
//! - CA keys are sealed at rest by a KEK file of mode 0600, a restart reuses the same
//!   CA, a wrong KEK is refused, and racing first starts create one hierarchy;
//! - a new installation is hybrid (leaves pass `openssl verify` and Sigil's own
//!   verifier checks their ML-DSA alternative signatures); composite and ML-DSA CAs
//!   issue leaves whose chains verify with `sigil_pki::verify_chain`; `ca_list` shows
//!   kinds and algorithms; `ca_init` refuses to replace an active hierarchy unless
//!   forced, and a forced one takes over at once and survives restarts; an existing
//!   classical installation stays classical under the new default.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use sea_orm::{ConnectionTrait as _, DatabaseConnection, Statement};
use sigil_bus::ClientError;
use sigil_bus::service::Router;
use sigil_contracts::auth::Proof;
use sigil_contracts::event::{CloudEvent, EventKind, IdentityIssued};
use sigil_contracts::issuer::{CaInitRequest, CaListResponse, CaRole, IssueRequest, IssueResponse};
use sigil_contracts::policy::EvaluateRequest;
use sigil_contracts::subjects::{
    EVENTS_STREAM, ISSUER_CA_INIT, ISSUER_ISSUE, POLICY_EVALUATE, Service, event_subject,
};
use sigil_contracts::types::{CaKind, KeyAlgorithm, Profile, Sans};
use sigil_contracts::{ErrorCode, Reply, WireError};
use sigil_issuer::{Config, Error};
use sigil_pki::{SignatureKind, VerifyReport};
use sigil_testkit::eventually;

mod common;

use common::{Base as Harness, Running, TIMEOUT, der, sigil_verify};

const DAY: i64 = 86_400;
/// The fake policy's maximum lifetime.
const FAKE_MAX_TTL: i64 = 30 * DAY;

/// Allows everything except names containing "denied"; clamps lifetimes to 30 days.
fn fake_policy() -> Router {
    Router::new(Service::Policy, "fake policy for issuer tests").route(
        POLICY_EVALUATE,
        |req: EvaluateRequest| async move {
            let denied: Vec<String> = req
                .sans
                .values()
                .into_iter()
                .filter(|n| n.contains("denied"))
                .map(|n| format!("name {n} is denied by the test policy"))
                .collect();
            let clamped = req.ttl_seconds > FAKE_MAX_TTL;
            let ttl_seconds = req.ttl_seconds.min(FAKE_MAX_TTL);
            let allowed = denied.is_empty();
            let reasons = if !allowed {
                denied
            } else if clamped {
                vec![format!("ttl clamped to {FAKE_MAX_TTL}s")]
            } else {
                vec![]
            };
            Ok::<_, WireError>(common::decision(
                &req,
                allowed,
                reasons,
                ttl_seconds,
                "fake-1",
            ))
        },
    )
}

impl Harness {
    async fn start(with_policy: bool) -> Harness {
        Harness::launch("issuer-test", with_policy.then(fake_policy)).await
    }

    fn config(&self) -> Config {
        Config {
            kek: None,
            policy_timeout: Duration::from_secs(5),
            ..self.base_config("Sigil Test")
        }
    }

    /// Start an issuer and wait until it answers.
    async fn issuer(&self) -> Running {
        self.start_issuer(self.config()).await
    }

    async fn issue(&self, req: &IssueRequest) -> Result<IssueResponse, WireError> {
        self.bus
            .request::<_, IssueResponse>(ISSUER_ISSUE, req, TIMEOUT)
            .await
            .map_err(ClientError::into_wire)
    }

    async fn ca_init(&self, req: &CaInitRequest) -> Result<CaListResponse, WireError> {
        self.bus
            .request::<_, CaListResponse>(ISSUER_CA_INIT, req, TIMEOUT)
            .await
            .map_err(ClientError::into_wire)
    }

    fn config_of(&self, kind: CaKind) -> Config {
        Config {
            ca_kind: kind,
            ..self.config()
        }
    }

    async fn db(&self) -> DatabaseConnection {
        sigil_store::connect(self.db.url(), "issuer").await.unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        let db = self.db().await;
        let row = db
            .query_one(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }

    async fn assert_nothing_stored(&self, what: &str) {
        assert_eq!(
            self.count("issuer_issuance").await,
            0,
            "{what}: issuance rows"
        );
        // `ca.bundle_changed` of the first start is expected; no identity event is.
        assert_eq!(
            self.count("outbox WHERE subject LIKE 'sigil.events.v1.identity.%'")
                .await,
            0,
            "{what}: outbox rows"
        );
    }

    /// `identity.*` events on the stream (the CA's `ca.bundle_changed` not counted).
    async fn events(&self) -> u64 {
        let reply = self
            .bus
            .client()
            .request(
                format!("$JS.API.STREAM.INFO.{EVENTS_STREAM}"),
                Bytes::from_static(br#"{"subjects_filter":"sigil.events.v1.identity.>"}"#),
            )
            .await
            .unwrap();
        let info: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
        info["state"]["subjects"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(|n| n.as_u64()).sum())
    }
}

fn server_key_request(dns: &[&str]) -> IssueRequest {
    IssueRequest {
        idempotency_key: None,
        profile: Profile::TlsServer,
        sans: Sans {
            dns: dns.iter().map(|s| (*s).to_owned()).collect(),
            ..Sans::default()
        },
        ttl_seconds: DAY,
        csr_pem: None,
        key_algorithm: None,
        // The fake policy names the principal `workload:web` after this token.
        proof: Some(Proof::Token {
            token: "web".into(),
        }),
    }
}

fn csr_for(names: &[&str]) -> (String, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .unwrap();
    let csr = params.serialize_request(&key).unwrap();
    (csr.pem().unwrap(), key)
}

/// The same CSR with one bit of its signature flipped.
fn tamper(csr_pem: &str) -> String {
    let b64: String = csr_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    *der.last_mut().unwrap() ^= 0x01;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        lines.join("\n")
    )
}

/// `openssl verify` the leaf against the chain in the reply.
fn openssl_verify(resp: &IssueResponse, purpose: &str) {
    assert_eq!(resp.chain_pem.len(), 2, "chain is [intermediate, root]");
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let root = write("root.pem", &resp.chain_pem[1]);
    let inter = write("inter.pem", &resp.chain_pem[0]);
    let leaf = write("leaf.pem", &resp.certificate_pem);
    let out = Command::new("openssl")
        .arg("verify")
        .args(["-x509_strict", "-purpose", purpose, "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(&inter)
        .arg(&leaf)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl verify failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn leaf_spki(cert_pem: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    cert.tbs_certificate.subject_pki.raw.to_vec()
}

fn private_key_spki(key_pem: &str) -> Vec<u8> {
    use rcgen::PublicKeyData as _;
    rcgen::KeyPair::from_pem(key_pem)
        .unwrap()
        .subject_public_key_info()
}

#[tokio::test]
async fn server_key_issuance_verifies_and_is_announced() {
    let h = Harness::start(true).await;
    let issuer = h.issuer().await;

    let resp = h
        .issue(&server_key_request(&["web.example.com", "api.example.com"]))
        .await
        .unwrap();
    openssl_verify(&resp, "sslserver");
    let key_pem = resp
        .private_key_pem
        .clone()
        .expect("server-generated key is returned");
    assert!(key_pem.contains("BEGIN PRIVATE KEY"));
    assert_eq!(leaf_spki(&resp.certificate_pem), private_key_spki(&key_pem));
    assert_eq!(resp.ttl_seconds, DAY);
    assert_eq!(
        (resp.not_after - resp.not_before).num_seconds(),
        DAY + 60,
        "60 s backdate"
    );
    assert!(resp.notes.is_empty(), "{:?}", resp.notes);
    assert!(
        resp.serial
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );

    // The event lands on the stream, with the facts and chain of the reply.
    let subject = event_subject(EventKind::IdentityIssued);
    let message = eventually(TIMEOUT, "identity.issued on SIGIL_EVENTS", || async {
        let stream = h.bus.jetstream().get_stream(EVENTS_STREAM).await.ok()?;
        stream.get_last_raw_message_by_subject(&subject).await.ok()
    })
    .await;
    let event: CloudEvent<IdentityIssued> = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(event.event_type, "io.sigil.identity.issued.v1");
    assert_eq!(event.source, "/sigil/issuer");
    assert_eq!(event.subject, resp.serial);
    assert_eq!(event.data.facts.serial, resp.serial);
    assert_eq!(
        event.data.facts.sans.dns,
        vec!["web.example.com", "api.example.com"]
    );
    assert_eq!(event.data.facts.key_algorithm, "ecdsa-p256");
    assert_eq!(event.data.certificate_pem, resp.certificate_pem);
    // The event names the signing intermediate instead of repeating the chain.
    assert!(event.data.chain_pem.is_empty());
    let inter = event.data.issuer_ca_id.as_deref().expect("issuer_ca_id");
    let cas = h.ca_list().await;
    let signer = cas.cas.iter().find(|c| c.id == inter).expect("known CA id");
    assert_eq!(signer.certificate_pem, resp.chain_pem[0]);
    assert_eq!(event.data.requested_by, "workload:web");
    assert!(
        !message.payload.windows(11).any(|w| w == b"PRIVATE KEY"),
        "no key in events"
    );

    // Other server-side algorithms, the client profile, and lifetime clamping by policy.
    let mut req = server_key_request(&["c.example.com"]);
    req.key_algorithm = Some(KeyAlgorithm::Ed25519);
    req.profile = Profile::TlsClient;
    req.ttl_seconds = 60 * DAY;
    req.proof = None;
    let resp = h.issue(&req).await.unwrap();
    openssl_verify(&resp, "sslclient");
    assert_eq!(resp.ttl_seconds, FAKE_MAX_TTL);
    assert_eq!(resp.notes, vec![format!("ttl clamped to {FAKE_MAX_TTL}s")]);

    // Exactly one event per issuance.
    eventually(TIMEOUT, "two events", || async {
        (h.events().await == 2).then_some(())
    })
    .await;
    assert_eq!(h.count("issuer_issuance").await, 2);
    issuer.stop().await;
}

#[tokio::test]
async fn csr_issuance_keeps_the_requesters_key_and_checks_names() {
    let h = Harness::start(true).await;
    let issuer = h.issuer().await;

    // Names from the CSR.
    let (csr, key) = csr_for(&["db.internal", "db.example.com"]);
    let req = IssueRequest {
        csr_pem: Some(csr.clone()),
        sans: Sans::default(),
        ..server_key_request(&[])
    };
    let resp = h.issue(&req).await.unwrap();
    openssl_verify(&resp, "sslserver");
    assert!(
        resp.private_key_pem.is_none(),
        "the CSR's key stays with the requester"
    );
    {
        use rcgen::PublicKeyData as _;
        assert_eq!(
            leaf_spki(&resp.certificate_pem),
            key.subject_public_key_info()
        );
    }

    // Request names equal to the CSR's (as a set) are fine; different ones are not.
    let same = IssueRequest {
        sans: Sans {
            dns: vec!["DB.example.com".into(), "db.internal".into()],
            ..Sans::default()
        },
        ..req.clone()
    };
    h.issue(&same).await.unwrap();
    let other = IssueRequest {
        sans: Sans {
            dns: vec!["x.example.com".into()],
            ..Sans::default()
        },
        ..req
    };
    let err = h.issue(&other).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(
        err.message.contains("differ from the CSR"),
        "{}",
        err.message
    );
    assert_eq!(h.count("issuer_issuance").await, 2);
    issuer.stop().await;
}

#[tokio::test]
async fn bad_requests_and_denials_store_nothing() {
    let h = Harness::start(true).await;
    let issuer = h.issuer().await;
    let (csr, _) = csr_for(&["web.example.com"]);
    let with_csr = |pem: String| IssueRequest {
        csr_pem: Some(pem),
        ..server_key_request(&[])
    };

    let cases: Vec<(&str, IssueRequest, &str)> = vec![
        ("broken CSR signature", with_csr(tamper(&csr)), "possession"),
        (
            "non-PEM CSR",
            with_csr("this is not a CSR".into()),
            "bad CSR",
        ),
        (
            "certificate instead of CSR",
            with_csr(csr.replace("CERTIFICATE REQUEST", "CERTIFICATE")),
            "bad CSR",
        ),
        (
            "zero ttl",
            IssueRequest {
                ttl_seconds: 0,
                ..server_key_request(&["a.example.com"])
            },
            "ttl must be positive",
        ),
        (
            "negative ttl",
            IssueRequest {
                ttl_seconds: -5,
                ..server_key_request(&["a.example.com"])
            },
            "ttl must be positive",
        ),
        (
            "no names",
            server_key_request(&[]),
            "no subject alternative names",
        ),
        (
            "server-side RSA",
            IssueRequest {
                key_algorithm: Some(KeyAlgorithm::Rsa2048),
                ..server_key_request(&["a.example.com"])
            },
            "rsa-2048",
        ),
        (
            "bad DNS name",
            server_key_request(&["bad name.example.com"]),
            "",
        ),
    ];
    for (what, req, needle) in cases {
        let err = h.issue(&req).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{what}: {err:?}");
        assert!(err.message.contains(needle), "{what}: {}", err.message);
    }

    // Unknown fields and malformed JSON, sent raw.
    for raw in [
        &br#"{"ttl_seconds": 60, "sans": {"dns": ["a.example.com"]}, "bogus": 1}"#[..],
        &br#"{"ttl_seconds": 60, "sans": {"dns": ["a.example.com"], "email": ["x@y"]}}"#[..],
        &b"{not json"[..],
    ] {
        let body = h
            .bus
            .request_raw(ISSUER_ISSUE, Bytes::copy_from_slice(raw), TIMEOUT)
            .await
            .unwrap();
        let reply: Reply<IssueResponse> = serde_json::from_slice(&body).unwrap();
        assert_eq!(reply.into_result().unwrap_err().code, ErrorCode::BadRequest);
    }

    // Policy says no: `denied` with policy's reasons.
    let err = h
        .issue(&server_key_request(&[
            "ok.example.com",
            "denied.example.com",
        ]))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Denied);
    assert_eq!(
        err.reasons(),
        vec!["name denied.example.com is denied by the test policy"]
    );

    h.assert_nothing_stored("after refusals").await;
    assert_eq!(h.events().await, 0);
    issuer.stop().await;
}

#[tokio::test]
async fn absent_policy_means_unavailable() {
    let h = Harness::start(false).await;
    let issuer = h.issuer().await;
    let err = h
        .issue(&server_key_request(&["web.example.com"]))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
    assert!(err.message.starts_with("policy: "), "{}", err.message);
    h.assert_nothing_stored("without policy").await;
    h.policy_stop.cancel();
    issuer.stop().await;
}

#[tokio::test]
async fn idempotency_key_returns_the_first_result() {
    let h = Harness::start(true).await;
    let issuer = h.issuer().await;
    let req = IssueRequest {
        idempotency_key: Some("deploy-42".into()),
        ..server_key_request(&["web.example.com"])
    };
    let first = h.issue(&req).await.unwrap();
    assert!(first.private_key_pem.is_some());
    let again = h.issue(&req).await.unwrap();
    assert_eq!(again.serial, first.serial);
    assert_eq!(again.certificate_pem, first.certificate_pem);
    assert_eq!(again.chain_pem, first.chain_pem);
    assert_eq!(again.not_after, first.not_after);
    assert!(
        again.private_key_pem.is_none(),
        "private keys are never stored"
    );
    assert!(
        again
            .notes
            .iter()
            .any(|n| n.contains("returned only in the first reply")),
        "{:?}",
        again.notes
    );

    // The same key with a different request is a conflict.
    let changed = IssueRequest {
        ttl_seconds: 2 * DAY,
        ..req.clone()
    };
    assert_eq!(
        h.issue(&changed).await.unwrap_err().code,
        ErrorCode::Conflict
    );

    // Concurrent retries of a new request: one issuance, one serial.
    let (csr, _) = csr_for(&["race.example.com"]);
    let race = IssueRequest {
        idempotency_key: Some("race-1".into()),
        csr_pem: Some(csr),
        ..server_key_request(&[])
    };
    let replies = futures_join(&h, &race, 6).await;
    let serials: std::collections::BTreeSet<_> = replies.iter().map(|r| r.serial.clone()).collect();
    assert_eq!(serials.len(), 1, "{serials:?}");

    assert_eq!(h.count("issuer_issuance").await, 2);
    eventually(TIMEOUT, "two events", || async {
        (h.events().await == 2).then_some(())
    })
    .await;
    issuer.stop().await;
}

async fn futures_join(h: &Harness, req: &IssueRequest, n: usize) -> Vec<IssueResponse> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (bus, req) = (h.bus.clone(), req.clone());
        set.spawn(async move {
            bus.request::<_, IssueResponse>(ISSUER_ISSUE, &req, TIMEOUT)
                .await
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap().unwrap());
    }
    out
}

async fn ca_rows(h: &Harness) -> Vec<(String, String, Vec<u8>)> {
    let db = h.db().await;
    db.query_all(Statement::from_string(
        db.get_database_backend(),
        "SELECT id, role, sealed_key FROM issuer_ca ORDER BY role",
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        (
            r.try_get::<String>("", "id").unwrap(),
            r.try_get::<String>("", "role").unwrap(),
            r.try_get::<Vec<u8>>("", "sealed_key").unwrap(),
        )
    })
    .collect()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn ca_keys_are_sealed_and_the_ca_survives_restarts() {
    let h = Harness::start(true).await;
    let issuer = h.issuer().await;
    let first = h
        .issue(&server_key_request(&["a.example.com"]))
        .await
        .unwrap();
    issuer.stop().await;

    // The KEK file is owner-only, and the stored keys are sealed with it.
    let kek_path = sigil_issuer::kek::kek_path(h.data_dir.path());
    assert_eq!(mode(&kek_path), 0o600);
    let kek = sigil_pki::Kek::parse(&std::fs::read_to_string(&kek_path).unwrap()).unwrap();
    let rows = ca_rows(&h).await;
    assert_eq!(
        rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        vec!["intermediate", "root"]
    );
    for (id, role, sealed) in &rows {
        let pkcs8 = kek.open(sealed, id.as_bytes()).unwrap();
        assert!(pkcs8.len() > 32);
        assert!(
            !sealed.windows(pkcs8.len()).any(|w| w == pkcs8.as_slice()),
            "{role} key stored in clear"
        );
        assert!(
            !sealed.windows(16).any(|w| w == &pkcs8[pkcs8.len() - 16..]),
            "{role} key bytes visible"
        );
        assert!(
            kek.open(sealed, b"another-ca").is_err(),
            "sealed key is bound to its row"
        );
    }

    // A restart on the same database and KEK reuses the same hierarchy.
    let issuer = h.issuer().await;
    let second = h
        .issue(&server_key_request(&["b.example.com"]))
        .await
        .unwrap();
    assert_eq!(second.chain_pem, first.chain_pem);
    openssl_verify(&second, "sslserver");
    issuer.stop().await;
    assert_eq!(ca_rows(&h).await.len(), 2);

    // The wrong KEK is refused with a clear error.
    let wrong = Config {
        kek: Some("11".repeat(32)),
        ..h.config()
    };
    let err = h.spawn(wrong).task.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::CaKey { .. }), "{err}");
    assert!(err.to_string().contains("wrong KEK"), "{err}");

    // A KEK file others can read is refused.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&kek_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = h.spawn(h.config()).task.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Kek(_)), "{err}");
    assert!(
        err.to_string().contains("accessible by group or others"),
        "{err}"
    );
}

#[tokio::test]
async fn racing_first_starts_share_one_hierarchy() {
    let h = Harness::start(true).await;
    let issuers: Vec<Running> = (0..3).map(|_| h.spawn(h.config())).collect();
    h.wait_ready().await;
    // Every instance must come up; give the slower ones time to serve too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut running = Vec::new();
    for i in issuers {
        if i.task.is_finished() {
            panic!("an issuer exited during a racing start: {:?}", i.task.await);
        }
        running.push(i);
    }
    let issuers = running;
    assert_eq!(ca_rows(&h).await.len(), 2, "one root and one intermediate");
    let mut chains = std::collections::BTreeSet::new();
    for n in 0..6 {
        let resp = h
            .issue(&server_key_request(&[&format!("n{n}.example.com")]))
            .await
            .unwrap();
        chains.insert(resp.chain_pem);
    }
    assert_eq!(chains.len(), 1);
    for i in issuers {
        i.stop().await;
    }
}

/// How many checks of `kind` passed on the path.
fn passed(report: &VerifyReport, kind: SignatureKind) -> usize {
    report
        .checks
        .iter()
        .filter(|c| c.kind == kind && c.ok)
        .count()
}

#[tokio::test]
async fn a_new_installation_is_hybrid_and_verifies_both_ways() {
    let h = Harness::start(true).await;
    let issuer = h.issuer().await;

    let resp = h
        .issue(&server_key_request(&["hybrid.example.com"]))
        .await
        .unwrap();
    assert_eq!(resp.kind, CaKind::Hybrid);
    openssl_verify(&resp, "sslserver");
    let report = sigil_verify(&resp);
    // leaf, intermediate and root self-signature: classical and alternative each.
    assert_eq!(passed(&report, SignatureKind::Classical), 3, "{report:#?}");
    assert_eq!(
        passed(&report, SignatureKind::Alternative),
        3,
        "{report:#?}"
    );

    let (csr, _key) = csr_for(&["csr.example.com"]);
    let resp = h
        .issue(&IssueRequest {
            csr_pem: Some(csr),
            ..server_key_request(&[])
        })
        .await
        .unwrap();
    openssl_verify(&resp, "sslserver");
    assert_eq!(passed(&sigil_verify(&resp), SignatureKind::Alternative), 3);

    let cas = h.ca_list().await.cas;
    assert_eq!(cas.len(), 2);
    for ca in &cas {
        assert!(ca.active);
        assert_eq!(ca.kind, CaKind::Hybrid);
        assert_eq!(ca.algorithms, ["ecdsa-p256", "ML-DSA-65"]);
    }
    let root = cas.iter().find(|c| c.role == CaRole::Root).unwrap();
    assert_eq!(root.certificate_pem, resp.chain_pem[1]);
    assert_eq!(root.subject, "CN=Sigil Test Root CA");
    issuer.stop().await;
}

#[tokio::test]
async fn composite_and_mldsa_cas_issue_verifiable_pq_leaves() {
    for (kind, check, key_label) in [
        (
            CaKind::Composite,
            SignatureKind::Composite,
            "SIGIL COMPOSITE PRIVATE KEY",
        ),
        (CaKind::Mldsa, SignatureKind::MlDsa, "PRIVATE KEY"),
    ] {
        let h = Harness::start(true).await;
        let issuer = h.spawn(h.config_of(kind));
        h.wait_ready().await;

        let resp = h
            .issue(&server_key_request(&["pq.example.com"]))
            .await
            .unwrap();
        assert_eq!(resp.kind, kind);
        let report = sigil_verify(&resp);
        assert_eq!(passed(&report, check), 3, "{kind}: {report:#?}");
        assert_eq!(passed(&report, SignatureKind::Classical), 0, "{kind}");

        // The generated key comes back once, in the documented format.
        let key_pem = resp.private_key_pem.clone().unwrap();
        let key_der = sigil_pki::pem::decode(&key_pem, &[key_label]).unwrap();
        let leaf = x509_parser::parse_x509_certificate(&der(&resp.certificate_pem))
            .unwrap()
            .1
            .public_key()
            .subject_public_key
            .data
            .to_vec();
        match kind {
            CaKind::Composite => {
                let key = sigil_pki::CompositeKeyPair::from_der(&key_der).unwrap();
                assert_eq!(key.public_key(), leaf);
                assert_eq!(key.alg().name(), "MLDSA65-ECDSA-P256-SHA512");
            }
            _ => {
                let key = sigil_pki::pqcert::mldsa_key_from_pkcs8(&key_der, None).unwrap();
                assert_eq!(key.public_key(), leaf.as_slice());
            }
        }
        let cas = h.ca_list().await.cas;
        let expected = match kind {
            CaKind::Composite => "MLDSA65-ECDSA-P256-SHA512",
            _ => "ML-DSA-65",
        };
        assert!(
            cas.iter()
                .all(|c| c.kind == kind && c.algorithms == [expected]),
            "{cas:#?}"
        );

        // No CSR path for PQ leaves yet; a classical key_algorithm does not fit.
        let (csr, _key) = csr_for(&["csr.example.com"]);
        let err = h
            .issue(&IssueRequest {
                csr_pem: Some(csr),
                ..server_key_request(&[])
            })
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.message.contains("omit --csr"), "{}", err.message);
        let err = h
            .issue(&IssueRequest {
                key_algorithm: Some(KeyAlgorithm::Ed25519),
                ..server_key_request(&["pq.example.com"])
            })
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{kind}");
        issuer.stop().await;
    }
}

#[tokio::test]
async fn ca_init_needs_force_and_then_takes_over() {
    let h = Harness::start(true).await;
    let issuer = h.issuer().await;
    let before = h
        .issue(&server_key_request(&["a.example.com"]))
        .await
        .unwrap();

    let composite = |force: bool| CaInitRequest {
        kind: CaKind::Composite,
        algorithm: Some("MLDSA87-ECDSA-P384-SHA512".into()),
        force,
        proof: None,
    };
    let err = h.ca_init(&composite(false)).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "{}", err.message);
    let err = h
        .ca_init(&CaInitRequest {
            kind: CaKind::Hybrid,
            algorithm: Some("rsa+mldsa65".into()),
            force: true,
            proof: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest, "{}", err.message);
    assert_eq!(h.ca_list().await.cas.len(), 2, "refusals change nothing");

    let new = h.ca_init(&composite(true)).await.unwrap().cas;
    assert_eq!(new.len(), 2);
    assert!(new.iter().all(|c| c.active && c.kind == CaKind::Composite));
    assert!(
        new.iter()
            .all(|c| c.algorithms == ["MLDSA87-ECDSA-P384-SHA512"])
    );
    let all = h.ca_list().await.cas;
    assert_eq!(all.len(), 4);
    let retired: Vec<_> = all.iter().filter(|c| !c.active).collect();
    assert_eq!(retired.len(), 2);
    assert!(retired.iter().all(|c| c.kind == CaKind::Hybrid));
    assert!(
        retired
            .iter()
            .any(|c| c.certificate_pem == before.chain_pem[1])
    );

    let new_root = new.iter().find(|c| c.role == CaRole::Root).unwrap();
    let after = h
        .issue(&server_key_request(&["b.example.com"]))
        .await
        .unwrap();
    assert_eq!(after.kind, CaKind::Composite);
    assert_eq!(after.chain_pem[1], new_root.certificate_pem);
    assert_eq!(passed(&sigil_verify(&after), SignatureKind::Composite), 3);
    // The old leaf still verifies under its own (retired) chain.
    sigil_verify(&before);

    // A restart (default config: hybrid) keeps the stored kind.
    issuer.stop().await;
    let issuer = h.issuer().await;
    let again = h
        .issue(&server_key_request(&["c.example.com"]))
        .await
        .unwrap();
    assert_eq!(again.kind, CaKind::Composite);
    assert_eq!(again.chain_pem, after.chain_pem);
    issuer.stop().await;
}

#[tokio::test]
async fn an_existing_classical_installation_stays_classical() {
    let h = Harness::start(true).await;
    let issuer = h.spawn(h.config_of(CaKind::Classical));
    h.wait_ready().await;
    let first = h
        .issue(&server_key_request(&["old.example.com"]))
        .await
        .unwrap();
    assert_eq!(first.kind, CaKind::Classical);
    openssl_verify(&first, "sslserver");
    assert_eq!(passed(&sigil_verify(&first), SignatureKind::Alternative), 0);
    issuer.stop().await;

    // Upgrading to the default configuration (hybrid) changes nothing stored.
    let issuer = h.issuer().await;
    let second = h
        .issue(&server_key_request(&["new.example.com"]))
        .await
        .unwrap();
    assert_eq!(second.kind, CaKind::Classical);
    assert_eq!(second.chain_pem, first.chain_pem);
    openssl_verify(&second, "sslserver");
    let cas = h.ca_list().await.cas;
    assert!(
        cas.iter()
            .all(|c| c.kind == CaKind::Classical && c.algorithms == ["ecdsa-p256"])
    );
    issuer.stop().await;
}

/// Concurrent issuances share group-committed transactions (multi-row inserts of
/// intents, issuances and outbox events): every one of them is recorded, its intent
/// marked `issued`, and announced once.
#[tokio::test]
async fn concurrent_issuances_are_each_recorded_marked_and_announced() {
    const N: usize = 40;
    let h = Harness::start(true).await;
    let issuer = h.issuer().await;
    let mut set = tokio::task::JoinSet::new();
    for n in 0..N {
        let bus = h.bus.clone();
        let req = server_key_request(&[&format!("batch-{n}.example.com")]);
        set.spawn(async move {
            bus.request::<_, IssueResponse>(ISSUER_ISSUE, &req, TIMEOUT)
                .await
        });
    }
    let mut serials = std::collections::BTreeSet::new();
    while let Some(r) = set.join_next().await {
        serials.insert(r.unwrap().unwrap().serial);
    }
    assert_eq!(serials.len(), N);
    assert_eq!(h.count("issuer_issuance").await, N as i64);
    assert_eq!(
        h.count("issuer_intent WHERE state = 'issued'").await,
        N as i64
    );
    assert_eq!(
        h.count("outbox WHERE subject LIKE 'sigil.events.v1.identity.%'")
            .await,
        N as i64
    );
    eventually(TIMEOUT, "every event on the stream", || async {
        (h.events().await == N as u64).then_some(())
    })
    .await;
    issuer.stop().await;
}
