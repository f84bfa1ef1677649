//! The typed request a proven endpoint acts on is exactly what its proof's digest
//! covers (possession proofs sign RFC 8785 canonical JSON of the request as received).
//!
//! The digest is `SHA-256(JCS(Value(body) - top-level "proof"))`; the handler acts on
//! `parse_request::<T>(body)`. Both come from the same serde_json tokenizer, so they
//! could disagree only where (a) the typed parse accepts something the Value folds
//! (duplicate keys, unknown members, escapes), or (b) JCS maps two different values to
//! one text. (a): every proven type and every nested type refuses duplicates and
//! unknown members. (b): RFC 8785 writes numbers as doubles, so integers beyond
//! ±(2^53 - 1) would share a digest; `request_digest` refuses them (`bad_request`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Debug;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use sigil_bus::Bus;
use sigil_bus::service::Router;
use sigil_contracts::auth::{CarriesProof, TokenCreateRequest, received_digest};
use sigil_contracts::error::parse_request;
use sigil_contracts::issuer::{CaInitRequest, CaRotateRequest, IssueRequest};
use sigil_contracts::policy::{ApplyRequest, RollbackRequest};
use sigil_contracts::revocation::RevokeRequest;
use sigil_contracts::subjects::{ISSUER_ISSUE, Service};
use sigil_contracts::{ErrorCode, MAX_REQUEST_BYTES};
use sigil_telemetry::Metrics;
use sigil_testkit::{NatsServer, eventually};
use tokio_util::sync::CancellationToken;

/// What a proven endpoint gets from `body`: the typed request and the digest a proof
/// must have signed; `None` when the body is refused (as `route_proven` refuses it).
fn proven<T: DeserializeOwned>(body: &str) -> Option<(T, String)> {
    let req = parse_request::<T>(body.as_bytes()).ok()?;
    let digest = received_digest(body.as_bytes()).ok()?;
    Some((req, digest))
}

/// Two bodies a proven endpoint accepts that act differently (different typed values)
/// under one digest: a proof signed for `signed` also authorizes `sent`.
fn collision<T: DeserializeOwned + PartialEq + Debug>(signed: &str, sent: &str) -> Option<String> {
    let (a, da) = proven::<T>(signed)?;
    let (b, db) = proven::<T>(sent)?;
    (a != b && da == db).then(|| format!("{signed}  ~  {sent}  (digest {da})"))
}

// ---------------------------------------------------------------------------------
// Integers beyond 2^53 would share a digest: they are refused.

/// RFC 8785 numbers are IEEE-754 doubles; `serde_json_canonicalizer` formats an
/// integer as `value as f64`, silently rounding. Every integer field of a proven request
/// (`ttl_seconds: i64` of issue and token_create, `version: u64` of rollback) therefore
/// would have different typed values with one digest. Before `request_digest` refused
/// such integers, this failed.
#[test]
fn large_integers_do_not_share_a_digest() {
    let mut found = Vec::new();
    // issue: 2^53 vs 2^53 + 1, and near i64::MAX (ULP 1024 there).
    found.extend(collision::<IssueRequest>(
        r#"{"ttl_seconds":9007199254740992}"#,
        r#"{"ttl_seconds":9007199254740993}"#,
    ));
    found.extend(collision::<IssueRequest>(
        r#"{"ttl_seconds":9223372036854775807}"#,
        r#"{"ttl_seconds":9223372036854775800}"#,
    ));
    // token_create (refused later by mint's range check, but the digest collides).
    found.extend(collision::<TokenCreateRequest>(
        r#"{"principal":"workload:web","names":["web.internal"],"ttl_seconds":9007199254740992}"#,
        r#"{"principal":"workload:web","names":["web.internal"],"ttl_seconds":9007199254740993}"#,
    ));
    // rollback: u64.
    found.extend(collision::<RollbackRequest>(
        r#"{"version":18446744073709551615}"#,
        r#"{"version":18446744073709551000}"#,
    ));
    // The Rust client's own digest refuses such a request rather than colliding.
    let a = IssueRequest {
        ttl_seconds: 1 << 53,
        ..serde_json::from_str(r#"{"ttl_seconds":1}"#).unwrap()
    };
    if let Ok(d) = a.try_digest() {
        found.push(format!(
            "CarriesProof::try_digest gave ttl {} the digest {d}",
            a.ttl_seconds
        ));
    }
    assert!(
        found.is_empty(),
        "a proof signed for one request authorizes a different one:\n{}",
        found.join("\n")
    );
}

/// The same collision through a real `route_proven` endpoint: the handler is handed
/// one digest for two bodies whose typed `ttl_seconds` differ (it did, before such
/// integers were refused).
#[tokio::test]
async fn a_proven_endpoint_gets_distinct_digests_for_distinct_requests() {
    let nats = NatsServer::start().await;
    let bus = Bus::connect(&nats.url(), "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let router = Router::new(Service::Issuer, "digest test").route_proven(
        ISSUER_ISSUE,
        |req: IssueRequest, digest: String| async move {
            Ok(serde_json::json!({ "ttl": req.ttl_seconds, "digest": digest }))
        },
    );
    let server = bus.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move { router.serve(&server, Metrics::new(), stop).await.unwrap() });
    let t = Duration::from_secs(5);
    let ask = |body: &'static str| {
        let bus = bus.clone();
        async move {
            let raw = bus
                .request_raw(ISSUER_ISSUE, Bytes::from_static(body.as_bytes()), t)
                .await
                .ok()?;
            serde_json::from_slice::<serde_json::Value>(&raw).ok()
        }
    };
    // Refusing a number RFC 8785 cannot represent exactly (bad_request) is a fix too.
    let a = eventually(t, "endpoint up", || {
        ask(r#"{"ttl_seconds":9007199254740992}"#)
    })
    .await;
    let b = ask(r#"{"ttl_seconds":9007199254740993}"#).await.unwrap();
    let refused = |r: &serde_json::Value| r["error"]["code"] == "bad_request";
    if !refused(&a) && !refused(&b) {
        assert_eq!(a["ok"]["ttl"], 9_007_199_254_740_992_i64, "{a}");
        assert_eq!(b["ok"]["ttl"], 9_007_199_254_740_993_i64, "{b}");
    }

    // The cap applies before either parse: 64 KiB + 1 is too_large, with no digest.
    let big = format!(
        r#"{{"ttl_seconds":60,"csr_pem":"{}"}}"#,
        "a".repeat(MAX_REQUEST_BYTES)
    );
    let raw = bus
        .request_raw(ISSUER_ISSUE, Bytes::from(big.into_bytes()), t)
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(reply["error"]["code"], "too_large", "{reply}");

    shutdown.cancel();
    if refused(&a) || refused(&b) {
        return;
    }
    assert_ne!(
        a["ok"]["digest"], b["ok"]["digest"],
        "ttl_seconds 2^53 and 2^53+1 were handed the same digest: {a} / {b}"
    );
}

// ---------------------------------------------------------------------------------
// Duplicates, unknown members, nested `proof`, number and string spellings, null vs
// absent, size and cost.

/// `serde_json::Value` keeps the last of duplicate keys; the typed parse must refuse
/// them, at every level of every proven request, or the handler could act on one copy
/// while the digest covers the other.
#[test]
fn duplicate_keys_are_refused_at_every_level_of_every_proven_request() {
    fn refused<T: DeserializeOwned>(body: &str) {
        let e = parse_request::<T>(body.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("accepted a duplicate key: {body}"));
        assert_eq!(e.code, ErrorCode::BadRequest, "{body}");
        assert!(e.message.contains("duplicate"), "{body}: {}", e.message);
    }
    let poss = r#"{"type":"possession","chain_pem":[],"signed_at":"2026-01-01T00:00:00Z","nonce":"nonce-0123456789ab","signature":"c2ln"}"#;
    // issue: top level, spelled with an escape, nested in sans, Option fields, the proof,
    // the proof's tag, the possession proof's fields.
    refused::<IssueRequest>(r#"{"ttl_seconds":60,"ttl_seconds":61}"#);
    refused::<IssueRequest>(r#"{"ttl_seconds":60,"ttl\u005fseconds":61}"#);
    refused::<IssueRequest>(
        r#"{"ttl_seconds":60,"profile":"tls-server","profile":"code-signing"}"#,
    );
    refused::<IssueRequest>(r#"{"ttl_seconds":60,"sans":{"dns":["a.x"],"dns":["b.x"]}}"#);
    refused::<IssueRequest>(r#"{"ttl_seconds":60,"sans":{"dns":["a.x"]},"sans":{"dns":["b.x"]}}"#);
    refused::<IssueRequest>(r#"{"ttl_seconds":60,"csr_pem":null,"csr_pem":"x"}"#);
    refused::<IssueRequest>(r#"{"ttl_seconds":60,"idempotency_key":"a","idempotency_key":"b"}"#);
    refused::<IssueRequest>(
        r#"{"ttl_seconds":60,"key_algorithm":"ed25519","key_algorithm":"rsa-2048"}"#,
    );
    refused::<IssueRequest>(&format!(
        r#"{{"ttl_seconds":60,"proof":{poss},"proof":null}}"#
    ));
    refused::<IssueRequest>(
        r#"{"ttl_seconds":60,"proof":{"type":"token","type":"token","token":"t"}}"#,
    );
    refused::<IssueRequest>(
        r#"{"ttl_seconds":60,"proof":{"type":"token","token":"a","token":"b"}}"#,
    );
    refused::<IssueRequest>(&format!(
        r#"{{"ttl_seconds":60,"proof":{}}}"#,
        poss.replace(r#""nonce":"#, r#""nonce":"nonce-xxxxxxxxxxxxxx","nonce":"#)
    ));
    // The others.
    refused::<RevokeRequest>(r#"{"serial":"0a","serial":"0b","reason":"superseded"}"#);
    refused::<RevokeRequest>(r#"{"serial":"0a","reason":"superseded","reason":"key-compromise"}"#);
    refused::<ApplyRequest>(r#"{"policies":"a","policies":"b"}"#);
    refused::<ApplyRequest>(r#"{"policies":"a","entities":"[]","entities":null}"#);
    refused::<ApplyRequest>(r#"{"policies":"a","comment":"x","comment":"y"}"#);
    refused::<RollbackRequest>(r#"{"version":1,"version":2}"#);
    refused::<TokenCreateRequest>(
        r#"{"principal":"workload:a","principal":"admin:a","names":["x"],"ttl_seconds":60}"#,
    );
    refused::<TokenCreateRequest>(
        r#"{"principal":"workload:a","names":["x"],"names":["*"],"ttl_seconds":60}"#,
    );
    refused::<TokenCreateRequest>(
        r#"{"principal":"workload:a","names":["x"],"ttl_seconds":60,"uses":1,"uses":9}"#,
    );
    refused::<CaInitRequest>(r#"{"kind":"classical","kind":"mldsa"}"#);
    refused::<CaInitRequest>(r#"{"kind":"classical","force":false,"force":true}"#);
    refused::<CaInitRequest>(r#"{"kind":"classical","algorithm":"p256","algorithm":"p384"}"#);
    refused::<CaRotateRequest>(r#"{"step":"prepare","step":"activate"}"#);
}

/// Only the top-level `proof` is left out of the digest; a `proof` (or any unknown
/// member) anywhere else is refused by the typed parse, so nothing can hide there.
#[test]
fn unknown_and_nested_members_are_refused() {
    for body in [
        r#"{"ttl_seconds":60,"sans":{"proof":{"type":"token","token":"t"}}}"#,
        r#"{"ttl_seconds":60,"sans":{"dns":["a.x"],"DNS":["b.x"]}}"#,
        r#"{"ttl_seconds":60,"Proof":{"type":"token","token":"t"}}"#,
        r#"{"ttl_seconds":60,"proof":{"type":"token","token":"t","extra":1}}"#,
        r#"{"ttl_seconds":60,"proof":{"type":"possession","chain_pem":[],"signed_at":"2026-01-01T00:00:00Z","nonce":"n","signature":"s","x":1}}"#,
        r#"{"ttl_seconds":60,"ttl":61}"#,
    ] {
        assert!(
            parse_request::<IssueRequest>(body.as_bytes()).is_err(),
            "accepted {body}"
        );
    }
    assert!(
        parse_request::<RevokeRequest>(br#"{"serial":"0a","reason":"superseded","x":0}"#).is_err()
    );
    assert!(parse_request::<CaRotateRequest>(br#"{"steps":"activate"}"#).is_err());
}

/// Number spellings JCS folds into one (`6e1`, `60.0`, `0.6e2` are `60`) are refused by
/// the typed parse of an integer field, so they cannot smuggle another value; `-0` too.
#[test]
fn number_spellings_that_share_a_digest_do_not_parse_as_other_integers() {
    let sixty = received_digest(br#"{"ttl_seconds":60}"#).unwrap();
    for body in [
        r#"{"ttl_seconds":6e1}"#,
        r#"{"ttl_seconds":60.0}"#,
        r#"{"ttl_seconds":0.6e2}"#,
        r#"{"ttl_seconds":60.000000000000001}"#,
    ] {
        assert_eq!(received_digest(body.as_bytes()).unwrap(), sixty, "{body}");
        assert!(
            parse_request::<IssueRequest>(body.as_bytes()).is_err(),
            "{body}"
        );
    }
    assert!(parse_request::<IssueRequest>(br#"{"ttl_seconds":-0}"#).is_err());
    assert!(parse_request::<RollbackRequest>(br#"{"version":1.0}"#).is_err());
    assert!(
        parse_request::<TokenCreateRequest>(
            br#"{"principal":"a:b","names":["x"],"ttl_seconds":60,"uses":1e0}"#
        )
        .is_err()
    );
    // Below 2^53 distinct integers keep distinct digests.
    assert_ne!(
        received_digest(br#"{"ttl_seconds":9007199254740991}"#).unwrap(),
        received_digest(br#"{"ttl_seconds":9007199254740990}"#).unwrap()
    );
}

/// Strings: both sides use serde_json's string parser, and JCS writes the parsed
/// string back unchanged (no normalization), so one digest is one string.
#[test]
fn string_spellings_agree_between_digest_and_typed_parse() {
    // Escapes of the same text: same digest, same typed value.
    let a = proven::<RevokeRequest>(r#"{"serial":"0a/b","reason":"superseded"}"#).unwrap();
    let b =
        proven::<RevokeRequest>(r#"{"serial":"\u0030a\/b","reason":"super\u0073eded"}"#).unwrap();
    assert_eq!(a, b);
    // Lone surrogates are refused by both parses.
    for body in [
        br#"{"serial":"\ud800","reason":"superseded"}"#.as_slice(),
        br#"{"serial":"\udc00\ud800","reason":"superseded"}"#,
    ] {
        assert!(parse_request::<RevokeRequest>(body).is_err());
        assert!(received_digest(body).is_err());
    }
    // Invalid UTF-8 is refused by both.
    let bad = b"{\"serial\":\"\xff\",\"reason\":\"superseded\"}";
    assert!(parse_request::<RevokeRequest>(bad).is_err());
    assert!(received_digest(bad).is_err());
    // NUL, U+2028, NFC vs NFD: distinct strings keep distinct digests.
    let d = |s: &str| {
        proven::<ApplyRequest>(&format!(
            r#"{{"policies":{}}}"#,
            serde_json::to_string(s).unwrap()
        ))
        .unwrap()
        .1
    };
    let texts = ["a", "a\u{0}", "a\u{2028}", "\u{e9}", "e\u{301}", "a\u{0}b"];
    for (i, x) in texts.iter().enumerate() {
        for y in &texts[i + 1..] {
            assert_ne!(d(x), d(y), "{x:?} / {y:?}");
        }
    }
    // A surrogate pair is the one character it encodes.
    let pair = proven::<ApplyRequest>(r#"{"policies":"\ud83d\ude00"}"#).unwrap();
    assert_eq!(pair.0.policies, "\u{1f600}");
    assert_eq!(pair.1, d("\u{1f600}"));
}

/// `null` and absent are one typed value but two digests. That is fail-closed (a proof
/// signed over one is refused for the other), not a way to authorize another request.
#[test]
fn null_and_absent_are_one_request_but_two_digests() {
    let absent = proven::<IssueRequest>(r#"{"ttl_seconds":60}"#).unwrap();
    let null = proven::<IssueRequest>(r#"{"ttl_seconds":60,"csr_pem":null}"#).unwrap();
    let defaulted =
        proven::<IssueRequest>(r#"{"ttl_seconds":60,"profile":"tls-server","sans":{}}"#).unwrap();
    assert_eq!(absent.0, null.0);
    assert_eq!(absent.0, defaulted.0);
    assert_ne!(absent.1, null.1);
    assert_ne!(absent.1, defaulted.1);
    // A `"proof": null` is left out like any proof.
    let proof_null = proven::<IssueRequest>(r#"{"ttl_seconds":60,"proof":null}"#).unwrap();
    assert_eq!(proof_null, absent);
}

/// Parsing twice is cheap at the cap: the largest body a proven endpoint accepts, made of
/// as many tiny strings as fit (the costliest shape for both parses and JCS).
#[test]
fn parsing_twice_at_the_cap_is_cheap() {
    let mut body = String::from(r#"{"ttl_seconds":60,"sans":{"dns":["#);
    while body.len() + 8 < MAX_REQUEST_BYTES {
        body.push_str(r#""a","#);
    }
    body.push_str(r#""a"]}}"#);
    assert!(body.len() <= MAX_REQUEST_BYTES);
    let started = Instant::now();
    for _ in 0..10 {
        proven::<IssueRequest>(&body).unwrap();
    }
    let each = started.elapsed() / 10;
    eprintln!(
        "64 KiB, {} strings: {each:?} per typed parse + digest",
        body.len() / 4
    );
    assert!(each < Duration::from_millis(100), "{each:?}");
}
