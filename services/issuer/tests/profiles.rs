//! Profiles, revocation URLs, prepare-then-sign and bad input, over a real nats-server.
//!
//! What these prove:
//! - `spiffe-x509-svid` leaves carry exactly the one SPIFFE URI SAN, no subject CN,
//!   keyUsage digitalSignature and EKU serverAuth + clientAuth, and pass
//!   `openssl verify -purpose sslclient`; `code-signing` leaves carry EKU codeSigning
//!   and no serverAuth; both under the default (hybrid) CA and an ML-DSA CA;
//! - with `crl_base_url` / `ocsp_base_url` set, leaves carry the CRL distribution point
//!   `<base>/<issuer-ca-id>.crl` and the OCSP AIA (read with `openssl x509 -text`);
//! - every issuance leaves an `issuer_intent` row, `issued`, with the leaf's serial;
//! - bad input (unknown algorithm, CSR key type other than requested, RSA-1024, CA:true,
//!   extensions the profile does not allow, an oversized CSR, a SVID without SPIFFE ID)
//!   gets a typed error and leaves no issuance, no intent and no identity event.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use sea_orm::{ConnectionTrait as _, Statement};
use sigil_bus::ClientError;
use sigil_contracts::issuer::{CaRole, IssueRequest, IssueResponse};
use sigil_contracts::subjects::ISSUER_ISSUE;
use sigil_contracts::types::{CaKind, KeyAlgorithm, Profile, Sans};
use sigil_contracts::{ErrorCode, WireError};
use sigil_issuer::Config;

mod common;

use common::{Base as Harness, TIMEOUT, allow_all, sigil_verify};

const SVID: &str = "spiffe://example.org/ns/prod/sa/web";

impl Harness {
    async fn start(kind: CaKind) -> Harness {
        let base = Harness::launch("profiles-test", Some(allow_all("allow-all"))).await;
        let config = Config {
            ca_kind: kind,
            crl_base_url: Some("http://sigil.example/crl/".into()),
            ocsp_base_url: Some("http://sigil.example/ocsp".into()),
            ..base.base_config("Sigil Profiles")
        };
        // Stopped with the policy when the harness is dropped.
        base.spawn_until(config, base.policy_stop.clone());
        base.wait_ready().await;
        base
    }

    async fn issue(&self, req: &IssueRequest) -> Result<IssueResponse, WireError> {
        self.issue_json(&serde_json::to_value(req).unwrap()).await
    }

    async fn issue_json(&self, req: &serde_json::Value) -> Result<IssueResponse, WireError> {
        self.bus
            .request::<_, IssueResponse>(ISSUER_ISSUE, req, TIMEOUT)
            .await
            .map_err(ClientError::into_wire)
    }

    async fn intermediate_id(&self) -> String {
        self.ca_list()
            .await
            .cas
            .into_iter()
            .find(|c| c.active && c.role == CaRole::Intermediate)
            .unwrap()
            .id
    }

    async fn query(&self, sql: &str) -> Vec<sea_orm::QueryResult> {
        let db = sigil_store::connect(self.db.url(), "issuer").await.unwrap();
        db.query_all(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
    }

    async fn count(&self, from: &str) -> i64 {
        let rows = self
            .query(&format!("SELECT COUNT(*) AS n FROM {from}"))
            .await;
        rows[0].try_get::<i64>("", "n").unwrap()
    }

    async fn assert_nothing_stored(&self, what: &str) {
        assert_eq!(self.count("issuer_issuance").await, 0, "{what}: issuances");
        assert_eq!(self.count("issuer_intent").await, 0, "{what}: intents");
        assert_eq!(
            self.count("outbox WHERE subject LIKE 'sigil.events.v1.identity.%'")
                .await,
            0,
            "{what}: identity events"
        );
    }

    async fn intent_state(&self, serial: &str) -> String {
        let rows = self
            .query(&format!(
                "SELECT state FROM issuer_intent WHERE serial = '{serial}'"
            ))
            .await;
        assert_eq!(rows.len(), 1, "one intent for {serial}");
        rows[0].try_get::<String>("", "state").unwrap()
    }
}

fn request(profile: Profile, sans: Sans) -> IssueRequest {
    IssueRequest {
        idempotency_key: None,
        profile,
        sans,
        ttl_seconds: 3600,
        csr_pem: None,
        key_algorithm: None,
        proof: None,
    }
}

fn svid_sans() -> Sans {
    Sans {
        dns: vec!["web.example.com".into()],
        uri: vec![SVID.into()],
        ..Sans::default()
    }
}

fn dns(name: &str) -> Sans {
    Sans {
        dns: vec![name.into()],
        ..Sans::default()
    }
}

/// `openssl x509 -text` of the leaf; with `purpose`, `openssl verify` of the chain too.
fn openssl_text(resp: &IssueResponse, purpose: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("root.pem"), &resp.chain_pem[1]).unwrap();
    std::fs::write(path("inter.pem"), &resp.chain_pem[0]).unwrap();
    std::fs::write(path("leaf.pem"), &resp.certificate_pem).unwrap();
    if let Some(purpose) = purpose {
        let out = Command::new("openssl")
            .args(["verify", "-x509_strict", "-purpose", purpose, "-CAfile"])
            .arg(path("root.pem"))
            .arg("-untrusted")
            .arg(path("inter.pem"))
            .arg(path("leaf.pem"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains(": OK"), "{text}");
    }
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(path("leaf.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn assert_has(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

async fn check_profiles(h: &Harness, openssl_verifies: bool) {
    let ca_id = h.intermediate_id().await;
    let crl = format!("URI:http://sigil.example/crl/{ca_id}.crl");
    let purpose = |p: &'static str| openssl_verifies.then_some(p);

    let svid = h
        .issue(&request(Profile::SpiffeX509Svid, svid_sans()))
        .await
        .unwrap();
    let text = openssl_text(&svid, purpose("sslclient"));
    if openssl_verifies {
        openssl_text(&svid, purpose("sslserver"));
    } else {
        sigil_verify(&svid);
    }
    assert_has(
        &text,
        &[
            "X509v3 Key Usage: critical\n                Digital Signature\n",
            "X509v3 Extended Key Usage: \n                TLS Web Server Authentication, TLS Web Client Authentication\n",
            "X509v3 Basic Constraints: critical\n                CA:FALSE",
            "X509v3 Subject Alternative Name: critical\n                DNS:web.example.com, URI:spiffe://example.org/ns/prod/sa/web\n",
            "X509v3 Authority Key Identifier",
            "X509v3 Subject Key Identifier",
            &crl,
            "OCSP - URI:http://sigil.example/ocsp",
        ],
    );
    assert_eq!(text.matches("URI:spiffe://").count(), 1, "{text}");
    assert!(!text.contains("Subject: CN"), "{text}");
    assert_eq!(h.intent_state(&svid.serial).await, "issued");
    let cert = sigil_pki::pem::decode(&svid.certificate_pem, &["CERTIFICATE"]).unwrap();
    assert!(cert.len() > 100);

    let signing = h
        .issue(&request(Profile::CodeSigning, dns("signer.example.com")))
        .await
        .unwrap();
    let text = openssl_text(&signing, purpose("any"));
    assert_has(
        &text,
        &[
            "X509v3 Extended Key Usage: \n                Code Signing\n",
            "X509v3 Key Usage: critical\n                Digital Signature\n",
            &crl,
        ],
    );
    assert!(!text.contains("TLS Web Server"), "{text}");
    assert_eq!(h.intent_state(&signing.serial).await, "issued");
    assert_eq!(h.count("issuer_intent WHERE state = 'issued'").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn profiles_under_the_default_hybrid_ca() {
    let h = Harness::start(CaKind::Hybrid).await;
    check_profiles(&h, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn profiles_under_an_mldsa_ca() {
    let h = Harness::start(CaKind::Mldsa).await;
    check_profiles(&h, false).await;
}

fn rcgen_csr(
    alg: &'static rcgen::SignatureAlgorithm,
    edit: impl FnOnce(&mut rcgen::CertificateParams),
) -> String {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["csr.example.com".to_owned()]).unwrap();
    edit(&mut params);
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn openssl_csr(newkey: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("openssl")
        .args(["req", "-new", "-nodes", "-subj", "/CN=csr", "-newkey"])
        .args(newkey)
        .args(["-addext", "subjectAltName=DNS:csr.example.com", "-keyout"])
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(dir.path().join("csr.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::read_to_string(dir.path().join("csr.pem")).unwrap()
}

fn custom(oid: &[u64], der: Vec<u8>) -> rcgen::CustomExtension {
    rcgen::CustomExtension::from_oid_content(oid, der)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_signs_nothing() {
    let h = Harness::start(CaKind::Hybrid).await;
    let csr_request = |profile: Profile, pem: String, key_algorithm: Option<KeyAlgorithm>| {
        let mut req = request(profile, Sans::default());
        req.csr_pem = Some(pem);
        req.key_algorithm = key_algorithm;
        serde_json::to_value(req).unwrap()
    };
    let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
    let huge = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        "A".repeat(sigil_pki::MAX_CSR_BYTES)
    );
    let cases: Vec<(&str, serde_json::Value, ErrorCode, &str)> = vec![
        (
            "unknown algorithm",
            serde_json::json!({
                "sans": {"dns": ["a.example.com"]},
                "ttl_seconds": 3600,
                "key_algorithm": "dsa-1024",
            }),
            ErrorCode::BadRequest,
            "dsa-1024",
        ),
        (
            "CSR key type differs from the request",
            csr_request(
                Profile::TlsServer,
                rcgen_csr(p256, |_| {}),
                Some(KeyAlgorithm::Ed25519),
            ),
            ErrorCode::BadRequest,
            "CSR's key is ecdsa-p256",
        ),
        (
            "RSA-1024 CSR",
            csr_request(Profile::TlsServer, openssl_csr(&["rsa:1024"]), None),
            ErrorCode::BadRequest,
            "weak",
        ),
        (
            "CSR asks for CA:true",
            csr_request(
                Profile::TlsServer,
                rcgen_csr(p256, |p| {
                    p.custom_extensions
                        .push(custom(&[2, 5, 29, 19], vec![0x30, 3, 1, 1, 0xff]));
                }),
                None,
            ),
            ErrorCode::BadRequest,
            "CA:true",
        ),
        (
            "CSR asks for keyCertSign",
            csr_request(
                Profile::TlsServer,
                rcgen_csr(p256, |p| {
                    p.key_usages = vec![
                        rcgen::KeyUsagePurpose::DigitalSignature,
                        rcgen::KeyUsagePurpose::KeyCertSign,
                    ];
                }),
                None,
            ),
            ErrorCode::BadRequest,
            "keyUsage keyCertSign",
        ),
        (
            "CSR asks for codeSigning under tls-server",
            csr_request(
                Profile::TlsServer,
                rcgen_csr(p256, |p| {
                    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
                }),
                None,
            ),
            ErrorCode::BadRequest,
            "extendedKeyUsage codeSigning",
        ),
        (
            "CSR asks for nameConstraints",
            csr_request(
                Profile::TlsClient,
                rcgen_csr(p256, |p| {
                    // permittedSubtrees: dNSName example.com
                    let mut der = vec![0x30, 0x11, 0xa0, 0x0f, 0x30, 0x0d, 0x82, 0x0b];
                    der.extend_from_slice(b"example.com");
                    p.custom_extensions.push(custom(&[2, 5, 29, 30], der));
                }),
                None,
            ),
            ErrorCode::BadRequest,
            "nameConstraints",
        ),
        (
            "oversized CSR",
            csr_request(Profile::TlsServer, huge, None),
            // The bus refuses it before the issuer parses it (its own check is the same).
            ErrorCode::TooLarge,
            "bytes",
        ),
        (
            "SVID without a SPIFFE ID",
            serde_json::to_value(request(Profile::SpiffeX509Svid, dns("web.example.com"))).unwrap(),
            ErrorCode::BadRequest,
            "exactly one URI SAN",
        ),
        (
            "SVID with a malformed SPIFFE ID",
            serde_json::to_value(request(
                Profile::SpiffeX509Svid,
                Sans {
                    uri: vec!["spiffe://example.org/a/../b".into()],
                    ..Sans::default()
                },
            ))
            .unwrap(),
            ErrorCode::BadRequest,
            "SPIFFE ID",
        ),
    ];
    for (what, req, code, needle) in cases {
        let err = h.issue_json(&req).await.unwrap_err();
        assert_eq!(err.code, code, "{what}: {err:?}");
        assert!(err.message.contains(needle), "{what}: {}", err.message);
        h.assert_nothing_stored(what).await;
    }

    // The same CSR without the offending extension is fine, and key_algorithm may
    // name the CSR's own key type.
    let ok = csr_request(
        Profile::TlsServer,
        rcgen_csr(p256, |_| {}),
        Some(KeyAlgorithm::EcdsaP256),
    );
    let resp = h.issue_json(&ok).await.unwrap();
    assert_eq!(h.intent_state(&resp.serial).await, "issued");
}
