//! Policy over a real nats-server: the service answers `sigil.policy.v1.evaluate` with
//! allow (plus clamp notes), deny (with every reason) and `bad_request` for malformed
//! input, and shuts down cleanly when cancelled.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use sigil_bus::{Bus, ClientError, Runtime};
use sigil_contracts::policy::{Action, Decision, EvaluateRequest};
use sigil_contracts::subjects::POLICY_EVALUATE;
use sigil_contracts::types::{KeyAlgorithm, Profile, Sans};
use sigil_contracts::{ErrorCode, Reply};
use sigil_policy::{Config, Rules, TtlOverMax};
use sigil_telemetry::{Health, Metrics};
use sigil_testkit::{NatsServer, eventually, eventually_ok};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(5);

fn request(dns: &[&str], ttl_seconds: i64) -> EvaluateRequest {
    EvaluateRequest {
        principal: "workload:web".into(),
        action: Action::Issue,
        profile: Profile::TlsServer,
        sans: Sans {
            dns: dns.iter().map(|s| (*s).to_owned()).collect(),
            ..Sans::default()
        },
        ttl_seconds,
        key_algorithm: KeyAlgorithm::EcdsaP256,
    }
}

#[tokio::test]
async fn policy_decides_over_nats() {
    let nats = NatsServer::start().await;
    let bus = Bus::connect(&nats.url(), "policy-test").await.unwrap();
    let health = Health::new();
    let rt = Runtime::new(bus.clone(), Metrics::new(), health.clone());
    let rules = Rules {
        version: "test-3".into(),
        max_ttl_seconds: 3600,
        ttl_over_max: TtlOverMax::Clamp,
        ..Rules::default()
    };
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(sigil_policy::run(Config { rules }, rt, shutdown.clone()));

    // Allowed, with the lifetime clamped and a note saying so.
    let clamp_me = request(&["web.example.com"], 7200);
    let decision: Decision = eventually_ok(Duration::from_secs(10), "policy answers", || {
        bus.request(POLICY_EVALUATE, &clamp_me, TIMEOUT)
    })
    .await;
    assert!(decision.allowed, "{decision:?}");
    assert_eq!(decision.policy_version, "test-3");
    assert_eq!(decision.constraints.ttl_seconds, 3600);
    assert!(decision.constraints.ttl_clamped);
    assert!(
        decision.reasons[0].contains("clamped"),
        "{:?}",
        decision.reasons
    );
    eventually(Duration::from_secs(5), "policy is ready", || {
        let ready = health.is_ready();
        async move { ready.then_some(()) }
    })
    .await;

    // Denied: a decision (not an error) listing every failing rule.
    let decision: Decision = bus
        .request(
            POLICY_EVALUATE,
            &request(&["evil.com", "worse.org"], 0),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert!(!decision.allowed);
    assert_eq!(decision.reasons.len(), 3, "{:?}", decision.reasons);
    assert!(decision.reasons[0].starts_with("dns name evil.com is outside allowed suffixes"));

    // Unknown fields and garbage are refused with bad_request.
    let mut body = serde_json::to_value(request(&["a.local"], 60)).unwrap();
    body["surprise"] = serde_json::json!(true);
    for raw in [
        Bytes::from(serde_json::to_vec(&body).unwrap()),
        Bytes::from_static(b"not json"),
    ] {
        let reply = bus
            .request_raw(POLICY_EVALUATE, raw, TIMEOUT)
            .await
            .unwrap();
        let reply: Reply<Decision> = serde_json::from_slice(&reply).unwrap();
        let err = reply.into_result().unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{err:?}");
    }

    // Cancellation is a clean exit; afterwards nobody answers.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), service)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!health.is_ready());
    let after = bus
        .request::<_, Decision>(
            POLICY_EVALUATE,
            &request(&["a.local"], 60),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            after,
            ClientError::NoResponders { .. } | ClientError::TimedOut { .. }
        ),
        "{after:?}"
    );
}

#[tokio::test]
async fn invalid_rules_refuse_to_start() {
    let nats = NatsServer::start().await;
    let bus = Bus::connect(&nats.url(), "policy-test").await.unwrap();
    let rt = Runtime::new(bus, Metrics::new(), Health::new());
    let rules = Rules {
        max_ttl_seconds: 0,
        ..Rules::default()
    };
    let err = sigil_policy::run(Config { rules }, rt, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("max_ttl_seconds must be positive"),
        "{err}"
    );
}
