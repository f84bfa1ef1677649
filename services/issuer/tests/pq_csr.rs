//! Post-quantum CSRs through the issuer over a real nats-server.
//!
//! What these prove:
//! - an ML-DSA CA certifies the ML-DSA key of a CSR made by pyca/cryptography (an
//!   independent ML-DSA implementation), and a composite CA the composite key of a
//!   CSR made by `sigil_pki::build_pq_csr` (of another composite algorithm than the
//!   CA's); the leaf carries exactly the CSR's key, no private key comes back, policy
//!   is asked about the CSR's algorithm, and the chain passes
//!   `sigil_pki::verify_chain` with every ML-DSA / composite signature checked;
//! - a hybrid CA certifies both keys of a hybrid CSR (a classical key plus an
//!   alternative ML-DSA key, Bouncy Castle's attribute form, made by
//!   `sigil_pki::build_hybrid_csr`): the leaf's subjectAltPublicKeyInfo (2.5.29.72) is
//!   the CSR's ML-DSA key and every classical and alternative signature verifies; a
//!   classical CA refuses such a CSR, which it could not honour;
//! - a CSR whose key kind does not fit the CA (classical key to an ML-DSA or
//!   composite CA, ML-DSA key to a composite or hybrid CA, composite key to an ML-DSA
//!   CA), a `key_algorithm` that contradicts the CSR, and a tampered PQ CSR are
//!   `bad_request`s that sign nothing: no intent, no issuance, no event.
//!
//! pyca runs in the Python at `$SIGIL_PYTHON`, else the tools venv
//! (`~/.cache/sigil/tools/venv`) that `scripts/ensure-nats.sh --with-crypto` sets up.
//! When it is missing the test fails (it does not skip).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::sync::{Arc, Mutex};

use sea_orm::{ConnectionTrait as _, Statement};
use sigil_bus::ClientError;
use sigil_bus::service::Router;
use sigil_contracts::issuer::{IssueRequest, IssueResponse};
use sigil_contracts::policy::EvaluateRequest;
use sigil_contracts::subjects::{ISSUER_ISSUE, POLICY_EVALUATE, Service};
use sigil_contracts::types::{CaKind, KeyAlgorithm, Profile, Sans};
use sigil_contracts::{ErrorCode, WireError};
use sigil_pki::mldsa::{MlDsaKeyPair, MlDsaLevel};
use sigil_pki::{CompositeAlg, CompositeKeyPair, SignatureKind, VerifyReport};

mod common;

use common::{Base as Harness, Running, TIMEOUT, der, sigil_verify};

const HINT: &str = "run `scripts/ensure-nats.sh --with-crypto` (installs pyca/cryptography \
                    >= 49 into ~/.cache/sigil/tools/venv), or point $SIGIL_PYTHON at a \
                    Python with cryptography >= 49";

/// Allows everything with the lifetime asked for and records the key algorithm of
/// every request it evaluates.
fn recording_policy(seen: Arc<Mutex<Vec<KeyAlgorithm>>>) -> Router {
    Router::new(Service::Policy, "recording policy for PQ CSR tests").route(
        POLICY_EVALUATE,
        move |req: EvaluateRequest| {
            seen.lock().unwrap().push(req.key_algorithm);
            let decided = common::decision(&req, true, vec![], req.ttl_seconds, "recording-1");
            async move { Ok::<_, WireError>(decided) }
        },
    )
}

struct Setup {
    h: Harness,
    issuer: Running,
    seen: Arc<Mutex<Vec<KeyAlgorithm>>>,
}

impl Setup {
    async fn start(kind: CaKind, algorithm: Option<&str>) -> Setup {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let h = Harness::launch("pq-csr-test", Some(recording_policy(seen.clone()))).await;
        let issuer = h
            .start_issuer(sigil_issuer::Config {
                ca_kind: kind,
                ca_algorithm: algorithm.map(str::to_owned),
                ..h.base_config("Sigil PQ CSR")
            })
            .await;
        Setup { h, issuer, seen }
    }

    async fn issue(
        &self,
        csr_pem: &str,
        key_algorithm: Option<KeyAlgorithm>,
    ) -> Result<IssueResponse, WireError> {
        let req = IssueRequest {
            idempotency_key: None,
            profile: Profile::TlsServer,
            sans: Sans::default(),
            ttl_seconds: 3600,
            csr_pem: Some(csr_pem.to_owned()),
            key_algorithm,
            proof: None,
        };
        self.h
            .bus
            .request::<_, IssueResponse>(ISSUER_ISSUE, &req, TIMEOUT)
            .await
            .map_err(ClientError::into_wire)
    }

    /// Rows in the issuer's intent and issuance tables and in its outbox.
    async fn rows(&self) -> (i64, i64, i64) {
        let db = sigil_store::connect(self.h.db.url(), "issuer")
            .await
            .unwrap();
        let mut counts = Vec::new();
        for table in ["issuer_intent", "issuer_issuance", "outbox"] {
            let row = db
                .query_one(Statement::from_string(
                    db.get_database_backend(),
                    format!("SELECT COUNT(*) AS n FROM {table}"),
                ))
                .await
                .unwrap()
                .unwrap();
            counts.push(row.try_get::<i64>("", "n").unwrap());
        }
        (counts[0], counts[1], counts[2])
    }

    /// `csr_pem` (with `key_algorithm`) is a bad request that changes no table.
    async fn refused(&self, csr_pem: &str, key_algorithm: Option<KeyAlgorithm>, needle: &str) {
        let before = self.rows().await;
        let err = self.issue(csr_pem, key_algorithm).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{}", err.message);
        assert!(
            err.message.contains(needle),
            "{needle:?} in {}",
            err.message
        );
        assert_eq!(
            self.rows().await,
            before,
            "nothing recorded for: {}",
            err.message
        );
    }
}

fn passed(report: &VerifyReport, kind: SignatureKind) -> usize {
    report
        .checks
        .iter()
        .filter(|c| c.kind == kind && c.ok)
        .count()
}

/// The leaf's raw subjectPublicKey.
fn leaf_key(resp: &IssueResponse) -> Vec<u8> {
    x509_parser::parse_x509_certificate(&der(&resp.certificate_pem))
        .unwrap()
        .1
        .public_key()
        .subject_public_key
        .data
        .to_vec()
}

/// An ML-DSA-44 CSR made by pyca/cryptography for `name`, and its raw public key.
fn pyca_mldsa44_csr(name: &str) -> (String, Vec<u8>) {
    let python = sigil_testkit::pki::python();
    assert!(python.exists(), "no Python at {}: {HINT}", python.display());
    let script = r#"
import json, sys
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.hazmat.primitives import serialization
key = mldsa.MLDSA44PrivateKey.generate()
csr = (x509.CertificateSigningRequestBuilder()
    .subject_name(x509.Name([]))
    .add_extension(x509.SubjectAlternativeName([x509.DNSName(sys.argv[1])]), critical=False)
    .sign(key, None))
print(json.dumps({"csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
                  "pk": key.public_key().public_bytes_raw().hex()}))
"#;
    let out = Command::new(&python)
        .args(["-c", script, name])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {HINT}", python.display()));
    assert!(
        out.status.success(),
        "pyca could not make an ML-DSA CSR: {}\n{HINT}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["csr"].as_str().unwrap().to_owned(),
        hex::decode(v["pk"].as_str().unwrap()).unwrap(),
    )
}

fn sans(name: &str) -> Sans {
    Sans {
        dns: vec![name.to_owned()],
        ..Sans::default()
    }
}

/// A classical (rcgen, ECDSA P-256) CSR for `name`.
fn classical_csr(name: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
}

/// `csr_pem` with one byte of its signature flipped.
fn tampered(csr_pem: &str) -> String {
    let mut der = sigil_pki::pem::decode(csr_pem, &["CERTIFICATE REQUEST"]).unwrap();
    let at = der.len() - 40;
    der[at] ^= 0x01;
    sigil_pki::pem::encode("CERTIFICATE REQUEST", &der)
}

#[tokio::test]
async fn an_mldsa_ca_certifies_a_pyca_mldsa_csr() {
    let s = Setup::start(CaKind::Mldsa, None).await;
    let (csr, public) = pyca_mldsa44_csr("pyca.example.com");

    let resp = s.issue(&csr, None).await.unwrap();
    assert_eq!(resp.kind, CaKind::Mldsa);
    assert!(
        resp.private_key_pem.is_none(),
        "the requester keeps the key"
    );
    assert_eq!(leaf_key(&resp), public);
    let report = sigil_verify(&resp);
    assert_eq!(passed(&report, SignatureKind::MlDsa), 3, "{report:#?}");
    let facts =
        sigil_pki::certificate_facts(&der(&resp.certificate_pem), Profile::TlsServer).unwrap();
    assert_eq!(facts.sans.dns, ["pyca.example.com"]);
    assert_eq!(s.seen.lock().unwrap().last(), Some(&KeyAlgorithm::MlDsa44));
    // The same key algorithm named in the request is fine too.
    let (csr, _) = pyca_mldsa44_csr("again.example.com");
    s.issue(&csr, Some(KeyAlgorithm::MlDsa44)).await.unwrap();

    // Mismatches and forgeries sign nothing.
    let (csr, _) = pyca_mldsa44_csr("mismatch.example.com");
    s.refused(&csr, Some(KeyAlgorithm::MlDsa65), "key_algorithm")
        .await;
    s.refused(&tampered(&csr), None, "possession").await;
    s.refused(&classical_csr("classical.example.com"), None, "omit --csr")
        .await;
    let composite = CompositeKeyPair::generate(CompositeAlg::MlDsa65EcdsaP256Sha512).unwrap();
    let csr = sigil_pki::build_pq_csr(&composite, None, &sans("c.example.com")).unwrap();
    s.refused(&csr, None, "send a CSR for an ML-DSA key").await;
    s.issuer.stop().await;
}

#[tokio::test]
async fn a_composite_ca_certifies_a_composite_csr() {
    let s = Setup::start(CaKind::Composite, None).await;
    // Another algorithm than the CA's own (MLDSA65-ECDSA-P256-SHA512 by default).
    let alg = CompositeAlg::MlDsa44Ed25519Sha512;
    let key = CompositeKeyPair::generate(alg).unwrap();
    let csr = sigil_pki::build_pq_csr(&key, None, &sans("composite.example.com")).unwrap();

    let resp = s.issue(&csr, None).await.unwrap();
    assert_eq!(resp.kind, CaKind::Composite);
    assert!(resp.private_key_pem.is_none());
    assert_eq!(leaf_key(&resp), key.public_key());
    let report = sigil_verify(&resp);
    assert_eq!(passed(&report, SignatureKind::Composite), 3, "{report:#?}");
    assert_eq!(
        s.seen.lock().unwrap().last(),
        Some(&KeyAlgorithm::MlDsa44Ed25519Sha512)
    );
    let leaf = x509_parser::parse_x509_certificate(&der(&resp.certificate_pem))
        .unwrap()
        .1
        .public_key()
        .algorithm
        .algorithm
        .to_id_string();
    assert_eq!(leaf, alg.oid());

    // A generated composite key is named by its composite algorithm.
    let req = IssueRequest {
        idempotency_key: None,
        profile: Profile::TlsServer,
        sans: sans("generated.example.com"),
        ttl_seconds: 3600,
        csr_pem: None,
        key_algorithm: Some(KeyAlgorithm::MlDsa87EcdsaP384Sha512),
        proof: None,
    };
    let generated: IssueResponse = s.h.bus.request(ISSUER_ISSUE, &req, TIMEOUT).await.unwrap();
    let pem = generated.private_key_pem.clone().unwrap();
    let der_key = sigil_pki::pem::decode(&pem, &["SIGIL COMPOSITE PRIVATE KEY"]).unwrap();
    assert_eq!(
        CompositeKeyPair::from_der(&der_key).unwrap().alg(),
        CompositeAlg::MlDsa87EcdsaP384Sha512
    );
    sigil_verify(&generated);

    let other = CompositeKeyPair::generate(alg).unwrap();
    let csr = sigil_pki::build_pq_csr(&other, None, &sans("other.example.com")).unwrap();
    s.refused(
        &csr,
        Some(KeyAlgorithm::MlDsa65EcdsaP256Sha512),
        "key_algorithm",
    )
    .await;
    s.refused(&tampered(&csr), None, "possession").await;
    s.refused(&classical_csr("classical.example.com"), None, "omit --csr")
        .await;
    let mldsa = MlDsaKeyPair::generate(MlDsaLevel::L65);
    let csr = sigil_pki::build_pq_csr(&mldsa, None, &sans("m.example.com")).unwrap();
    s.refused(&csr, None, "send a CSR for a composite ML-DSA key")
        .await;
    s.issuer.stop().await;
}

#[tokio::test]
async fn a_hybrid_ca_refuses_pq_csr_keys() {
    let s = Setup::start(CaKind::Hybrid, None).await;
    let mldsa = MlDsaKeyPair::generate(MlDsaLevel::L65);
    let csr = sigil_pki::build_pq_csr(&mldsa, None, &sans("m.example.com")).unwrap();
    s.refused(&csr, None, "certified only by an mldsa CA").await;
    let composite = CompositeKeyPair::generate(CompositeAlg::MlDsa65Ed25519Sha512).unwrap();
    let csr = sigil_pki::build_pq_csr(&composite, None, &sans("c.example.com")).unwrap();
    s.refused(&csr, None, "certified only by a composite CA")
        .await;
    // A classical CSR still works.
    let resp = s
        .issue(&classical_csr("ok.example.com"), None)
        .await
        .unwrap();
    assert_eq!(resp.kind, CaKind::Hybrid);
    s.issuer.stop().await;
}

/// The raw key in `resp`'s leaf extension subjectAltPublicKeyInfo (2.5.29.72).
fn leaf_alt_key(resp: &IssueResponse) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer as _;
    let cert_der = der(&resp.certificate_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "2.5.29.72")?;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(ext.value).unwrap();
    Some(spki.subject_public_key.data.to_vec())
}

#[tokio::test]
async fn a_hybrid_ca_certifies_both_keys_of_a_hybrid_csr() {
    let s = Setup::start(CaKind::Hybrid, None).await;
    let classical = sigil_pki::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let alt = MlDsaKeyPair::generate(MlDsaLevel::L44);
    let csr =
        sigil_pki::build_hybrid_csr(&classical, &alt, None, &sans("hybrid.example.com")).unwrap();

    let resp = s.issue(&csr, None).await.unwrap();
    assert_eq!(resp.kind, CaKind::Hybrid);
    assert!(resp.private_key_pem.is_none());
    assert_eq!(leaf_alt_key(&resp), Some(alt.public_key().to_vec()));
    assert_eq!(
        sigil_pki::hybrid::subject_alt_key_level(&der(&resp.certificate_pem)).unwrap(),
        Some(MlDsaLevel::L44)
    );
    let report = sigil_verify(&resp);
    assert_eq!(
        passed(&report, SignatureKind::Alternative),
        3,
        "{report:#?}"
    );
    assert_eq!(passed(&report, SignatureKind::Classical), 3, "{report:#?}");
    assert_eq!(
        s.seen.lock().unwrap().last(),
        Some(&KeyAlgorithm::EcdsaP256)
    );

    // A plain classical CSR still gives a leaf without a subject ML-DSA key.
    let plain = s
        .issue(&classical_csr("plain.example.com"), None)
        .await
        .unwrap();
    assert_eq!(leaf_alt_key(&plain), None);
    // A changed byte anywhere is caught (here by the classical signature).
    s.refused(&tampered(&csr), None, "possession").await;
    s.issuer.stop().await;

    let s = Setup::start(CaKind::Classical, None).await;
    s.refused(&csr, None, "needs a hybrid CA").await;
    s.issuer.stop().await;
}
