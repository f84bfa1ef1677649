//! A possession proof made outside Rust is accepted: `py/sigil_proof.py` (pyca
//! `cryptography` and Trail of Bits' `rfc8785`, nothing of Sigil's) signs requests with
//! an admin credential read from its PEM bundle, and writes them with Python's own
//! `json` — its key order, its spacing, optional fields left out — and the services
//! take them as sent. The digest a proof signs is RFC 8785 canonical JSON of the request
//! as received without its `proof`, so no client has to reproduce serde's bytes.
//!
//! What this proves, on a real nats-server with the five services (classical P-256 CA,
//! so the admin credential has one ECDSA key):
//! - `issue` with only `sans`/`csr_pem`/`ttl_seconds` (no `profile`, no
//!   `idempotency_key`, no `key_algorithm`) and `revoke`, each signed by Python, succeed;
//! - the same body sent again is `unauthenticated` (its nonce was used);
//! - a copy with one field changed after signing is `unauthenticated` (the digest no
//!   longer matches), and it burns no nonce: the unchanged body is accepted after it.
//!
//! The Python is `$SIGIL_PYTHON`, else the tools venv (`~/.cache/sigil/tools/venv`) that
//! `scripts/ensure-nats.sh --with-crypto` sets up; without `cryptography` and `rfc8785`
//! the test fails, naming that command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bytes::Bytes;
use sigil_bus::Bus;
use sigil_contracts::auth::received_digest;
use sigil_contracts::issuer::IssueResponse;
use sigil_contracts::revocation::{RevokeResponse, StatusRequest, StatusResponse};
use sigil_contracts::subjects::{ISSUER_ISSUE, Operation, REVOCATION_REVOKE, REVOCATION_STATUS};
use sigil_contracts::types::{CaKind, RevocationReason};
use sigil_contracts::{ErrorCode, Reply, WireError};
use sigil_e2e::{Cluster, Options, WAIT};

const HINT: &str = "run `scripts/ensure-nats.sh --with-crypto` (pip-installs cryptography and \
                    rfc8785 into ~/.cache/sigil/tools/venv), or point $SIGIL_PYTHON at a \
                    Python with both";

/// The Python with `cryptography` and `rfc8785`. Panics, naming the install command,
/// when there is none: this test must not pass without running the independent client.
fn python() -> PathBuf {
    let path = sigil_testkit::pki::python();
    assert!(path.exists(), "no Python at {}: {HINT}", path.display());
    let out = Command::new(&path)
        .args(["-c", "import cryptography, rfc8785"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {HINT}", path.display()));
    assert!(
        out.status.success(),
        "cryptography or rfc8785 is not importable in {}: {}\n{HINT}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// `py/sigil_proof.py`, beside this file.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/py/sigil_proof.py")
}

/// The body Python signs for `op` with the credential at `bundle`, from `request` (JSON
/// text without a proof). Checks that the digest it signed is the one a service
/// computes from that body ([`received_digest`]).
fn python_signs(python: &Path, bundle: &Path, op: Operation, request: &str) -> Vec<u8> {
    let mut child = Command::new(python)
        .arg(script())
        .arg(bundle)
        .arg(op.subject())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sigil_proof.py failed: {stderr}");
    let python_digest = stderr
        .lines()
        .find_map(|l| l.strip_prefix("digest "))
        .unwrap_or_else(|| panic!("sigil_proof.py printed no digest: {stderr}"));
    let service_digest = received_digest(&out.stdout).expect("Python's body is a JSON object");
    assert_eq!(
        python_digest,
        service_digest,
        "rfc8785 (Python) and the services disagree on the digest of {}",
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

/// `body` sent as is to `op`, and its reply (JSON).
async fn send(bus: &Bus, op: Operation, body: &[u8]) -> Result<serde_json::Value, WireError> {
    let reply = bus
        .request_raw(op, Bytes::copy_from_slice(body), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", op.subject()));
    serde_json::from_slice::<Reply<serde_json::Value>>(&reply)
        .unwrap_or_else(|e| panic!("{} reply: {e}: {reply:?}", op.subject()))
        .into_result()
}

/// `body` with `field` set to `value`: a change made after signing.
fn tampered(body: &[u8], field: &str, value: serde_json::Value) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert!(v.get(field).is_some(), "the body has no {field}");
    v[field] = value;
    serde_json::to_vec(&v).unwrap()
}

fn assert_unauthenticated(what: &str, r: Result<serde_json::Value, WireError>, needle: &str) {
    let e = r.expect_err(&format!("{what} must be refused"));
    assert_eq!(e.code, ErrorCode::Unauthenticated, "{what}: {e:?}");
    assert!(
        e.message.contains(needle),
        "{what}: message {:?} should mention {needle:?}",
        e.message
    );
}

/// A CSR for `dns` (P-256 key, kept here).
fn csr(dns: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![dns.to_owned()]).unwrap();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

#[tokio::test]
async fn proofs_made_by_python_with_rfc8785_are_accepted_once() {
    let python = python();
    let s = Cluster::start_with(Options {
        ca_kind: CaKind::Classical,
        ca_algorithm: Some("p256".to_owned()),
        ..Options::default()
    })
    .await;
    let bundle = s.admin_bundle_path();

    // Issue: members in an order Rust does not declare, defaults left out.
    let dns = "interop.example.com";
    let request = format!(
        r#"{{"ttl_seconds": 600, "csr_pem": {}, "sans": {{"dns": [{dns:?}]}}}}"#,
        serde_json::to_string(&csr(dns)).unwrap()
    );
    let body = python_signs(&python, &bundle, ISSUER_ISSUE, &request);
    let text = String::from_utf8(body.clone()).unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for absent in ["profile", "idempotency_key", "key_algorithm"] {
        assert!(sent.get(absent).is_none(), "Python sent {absent}: {text}");
    }
    assert!(sent["proof"].get("alt_signature").is_none(), "{text}");

    let moved = tampered(&body, "ttl_seconds", 601.into());
    assert_unauthenticated(
        "issue with ttl_seconds changed after signing",
        send(&s.bus, ISSUER_ISSUE, &moved).await,
        "does not verify",
    );
    let issued = send(&s.bus, ISSUER_ISSUE, &body)
        .await
        .unwrap_or_else(|e| panic!("Python's issue request was refused: {e:?}\n{text}"));
    let issued: IssueResponse = serde_json::from_value(issued).unwrap();
    assert!(issued.certificate_pem.contains("BEGIN CERTIFICATE"));
    assert_eq!(issued.kind, CaKind::Classical);
    assert!(issued.private_key_pem.is_none(), "the CSR's key stays here");
    assert_unauthenticated(
        "the same issue body again",
        send(&s.bus, ISSUER_ISSUE, &body).await,
        "already used",
    );

    // Revoke what was issued, the same way.
    let request = format!(
        r#"{{"reason": "superseded", "serial": {:?}}}"#,
        issued.serial
    );
    let body = python_signs(&python, &bundle, REVOCATION_REVOKE, &request);
    let moved = tampered(&body, "reason", "key-compromise".into());
    assert_unauthenticated(
        "revoke with reason changed after signing",
        send(&s.bus, REVOCATION_REVOKE, &moved).await,
        "does not verify",
    );
    let revoked = send(&s.bus, REVOCATION_REVOKE, &body)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Python's revoke request was refused: {e:?}\n{}",
                String::from_utf8_lossy(&body)
            )
        });
    let revoked: RevokeResponse = serde_json::from_value(revoked).unwrap();
    assert_eq!(revoked.serial, issued.serial);
    assert_eq!(revoked.reason, RevocationReason::Superseded);
    assert!(!revoked.already_revoked);
    assert_unauthenticated(
        "the same revoke body again",
        send(&s.bus, REVOCATION_REVOKE, &body).await,
        "already used",
    );
    let status: StatusResponse = s
        .bus
        .request(
            REVOCATION_STATUS,
            &StatusRequest {
                serial: issued.serial.clone(),
            },
            WAIT,
        )
        .await
        .unwrap();
    assert!(status.revoked);
    assert_eq!(status.reason, Some(RevocationReason::Superseded));

    s.stop().await;
}

/// Review of 43d236a: RFC 8785 writes numbers as IEEE-754 doubles, so integers beyond
/// 2^53 lose precision in the canonical form: `ttl_seconds` 2^53 and 2^53 + 1 have one
/// digest. A proof the admin signed for 2^53 must not authorize 2^53 + 1, as it does not
/// authorize 2^53 + 2 (representable, so another digest). FAILS on 43d236a: the body
/// changed after signing is issued. (Refusing such numbers as `bad_request` also passes.)
#[tokio::test]
async fn a_proof_does_not_carry_over_to_an_integer_it_did_not_sign() {
    let s = Cluster::start_with(Options {
        ca_kind: CaKind::Classical,
        ca_algorithm: Some("p256".to_owned()),
        ..Options::default()
    })
    .await;
    // A client cannot sign an integer beyond 2^53 - 1: RFC 8785 would write it as a
    // double, which 2^53 and 2^53 + 1 share.
    let mut big = sigil_e2e::issue_request("collide.example.com", 1 << 53);
    big.idempotency_key = None;
    assert!(
        sigil_e2e::try_prove(s.admin(), ISSUER_ISSUE, &mut big).is_err(),
        "a proof over an integer RFC 8785 cannot represent"
    );

    // Nor does a service take one under a proof made for another value: such a body
    // has no digest and is refused before anything is asked or signed.
    let mut req = sigil_e2e::issue_request("collide.example.com", 3600);
    req.idempotency_key = None;
    s.prove(ISSUER_ISSUE, &mut req);
    let body = String::from_utf8(serde_json::to_vec(&req).unwrap()).unwrap();
    assert!(body.contains("\"ttl_seconds\":3600"), "{body}");
    for big in ["9007199254740992", "9007199254740993"] {
        let moved = body.replace("\"ttl_seconds\":3600", &format!("\"ttl_seconds\":{big}"));
        refused(
            &format!("issue with ttl_seconds {big} under a proof for 3600"),
            send(&s.bus, ISSUER_ISSUE, moved.as_bytes()).await,
        );
    }
    // A changed value within range is not what was signed.
    let moved = body.replace("\"ttl_seconds\":3600", "\"ttl_seconds\":3601");
    refused(
        "issue with ttl_seconds 3601 under a proof for 3600",
        send(&s.bus, ISSUER_ISSUE, moved.as_bytes()).await,
    );
    // The proof was not spent by the refusals: the signed body is accepted.
    send(&s.bus, ISSUER_ISSUE, body.as_bytes())
        .await
        .expect("the signed body");
    s.stop().await;
}

/// Refused as not signed for (`unauthenticated`), or as a number RFC 8785 cannot
/// represent (`bad_request`).
fn refused(what: &str, r: Result<serde_json::Value, WireError>) {
    let e = r.expect_err(&format!("{what} must be refused"));
    match e.code {
        ErrorCode::Unauthenticated => {
            assert!(e.message.contains("does not verify"), "{what}: {e:?}")
        }
        ErrorCode::BadRequest => {}
        _ => panic!("{what}: {e:?}"),
    }
}
