//! Bad input gets a clear typed error and changes nothing: malformed JSON, unknown
//! fields, non-PEM CSRs, CSRs with a broken self-signature, zero or negative TTLs,
//! oversized bodies, a request without a proof of who sends it or with a bogus token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use sigil_contracts::inventory::QueryRequest;
use sigil_contracts::subjects::{INVENTORY_QUERY, ISSUER_ISSUE, REVOCATION_REVOKE};
use sigil_contracts::{ErrorCode, Reply};
use sigil_e2e::{Cluster, WAIT, issue_request};

async fn raw(
    c: &Cluster,
    op: sigil_contracts::subjects::Operation,
    body: Vec<u8>,
) -> sigil_contracts::WireError {
    let bytes = c
        .bus
        .request_raw(op, Bytes::from(body), WAIT)
        .await
        .unwrap();
    let reply: Reply<serde_json::Value> = serde_json::from_slice(&bytes).unwrap();
    reply.into_result().expect_err("must be refused")
}

fn broken_csr() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["a.example.com".to_owned()]).unwrap();
    let mut der = params.serialize_request(&key).unwrap().der().to_vec();
    let n = der.len();
    der[n - 5] ^= 0x5a; // inside the signature
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let b64: String = b64
        .as_bytes()
        .chunks(64)
        .map(|l| format!("{}\n", std::str::from_utf8(l).unwrap()))
        .collect();
    format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}-----END CERTIFICATE REQUEST-----\n")
}

#[tokio::test]
async fn bad_requests_are_refused_with_typed_errors_and_store_nothing() {
    let c = Cluster::start().await;
    let good = serde_json::to_value(issue_request("a.example.com", 600)).unwrap();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, ErrorCode, &str)> = vec![
        (
            "malformed JSON",
            b"{\"ttl_seconds\": ".to_vec(),
            ErrorCode::BadRequest,
            "JSON",
        ),
        (
            "unknown field",
            with(&|v| v["colour"] = "blue".into()),
            ErrorCode::BadRequest,
            "colour",
        ),
        (
            "zero TTL",
            with(&|v| v["ttl_seconds"] = 0.into()),
            ErrorCode::BadRequest,
            "ttl",
        ),
        (
            "negative TTL",
            with(&|v| v["ttl_seconds"] = (-60).into()),
            ErrorCode::BadRequest,
            "ttl",
        ),
        (
            "non-PEM CSR",
            with(&|v| v["csr_pem"] = "hello, I am a CSR".into()),
            ErrorCode::BadRequest,
            "",
        ),
        (
            "broken CSR signature",
            with(&|v| v["csr_pem"] = broken_csr().into()),
            ErrorCode::BadRequest,
            "signature",
        ),
        (
            "oversized",
            with(&|v| v["idempotency_key"] = "x".repeat(70 * 1024).into()),
            ErrorCode::TooLarge,
            "",
        ),
        (
            "no names",
            with(&|v| v["sans"] = serde_json::json!({})),
            ErrorCode::BadRequest,
            "",
        ),
        (
            "no proof of who asks",
            with(&|_| {}),
            ErrorCode::Unauthenticated,
            "proof",
        ),
        (
            "a token that is not one",
            with(&|v| v["proof"] = serde_json::json!({"type": "token", "token": "not.a.jwt"})),
            ErrorCode::Unauthenticated,
            "",
        ),
    ];
    for (what, body, code, needle) in cases {
        let e = raw(&c, ISSUER_ISSUE, body).await;
        assert_eq!(e.code, code, "{what}: {e:?}");
        assert!(
            e.message.to_lowercase().contains(&needle.to_lowercase()),
            "{what}: message {:?} should mention {needle:?}",
            e.message
        );
    }
    // Revocation and inventory refuse bad input too.
    let e = raw(
        &c,
        REVOCATION_REVOKE,
        br#"{"serial":"zz-not-hex","reason":"key-compromise"}"#.to_vec(),
    )
    .await;
    assert_eq!(e.code, ErrorCode::BadRequest);
    let e = raw(
        &c,
        REVOCATION_REVOKE,
        br#"{"serial":"0a","reason":"felt-like-it"}"#.to_vec(),
    )
    .await;
    assert_eq!(e.code, ErrorCode::BadRequest);
    let e = raw(&c, INVENTORY_QUERY, br#"{"limit":0}"#.to_vec()).await;
    assert_eq!(e.code, ErrorCode::BadRequest);

    // Nothing was stored or announced anywhere.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        c.events(Some("sigil.events.v1.identity.>"))
            .await
            .is_empty(),
        "no event may be emitted for refused input"
    );
    let all = c.inventory_all(QueryRequest::default()).await;
    assert!(all.is_empty());
    c.stop().await;
}
