//! Policy evaluation latency.
//!
//! `cargo bench -p sigil-policy --bench evaluate`:
//! - criterion: one decision against a set of 1,000 policies (1,000 group-scoped DNS
//!   permits with 1,000 groups, plus the default forbids), for a request with one and
//!   with three DNS names;
//! - then a plain loop of 20,000 decisions of the one-name request, printing p50, p99
//!   and max (criterion reports means and medians, the target is a p99);
//! - then the same request over the bus: a real nats-server (`SIGIL_NATS_SERVER` or
//!   `scripts/ensure-nats.sh`'s), one policy service in process on SQLite with the
//!   1,000-policy set applied, 5,000 sequential `sigil.policy.v1.evaluate` calls,
//!   p50/p99/max. Each call is authenticated by a bootstrap token (minted from the
//!   service's database with 10,000 uses), so it includes verifying the JWT and counting
//!   the use in JetStream KV. Skipped when `SIGIL_BENCH_BUS=0`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, criterion_group};
use sigil_contracts::auth::AuthMethod;
use sigil_contracts::policy::{Action, EvaluateRequest};
use sigil_contracts::types::{CaKind, KeyAlgorithm, Profile, Sans};
use sigil_policy::{Compiled, Grant, Requester, templates};

const POLICIES: usize = 1000;

/// 1,000 policies: permits per group and suffix, and the default set's forbids.
fn policy_set() -> (String, String) {
    let mut text = String::new();
    let mut entities = Vec::new();
    for i in 0..POLICIES - 2 {
        text.push_str(&format!(
            "@id(\"team-{i}\")\n@reason(\"team {i} may have names under team{i}.example.com\")\n\
             permit (principal in Sigil::Group::\"team-{i}\", action, resource)\n\
             when {{ resource has dns_name && (resource.dns_name == \"team{i}.example.com\" || resource.dns_name like \"*.team{i}.example.com\") }};\n"
        ));
        entities.push(format!(
            "{{\"uid\":{{\"type\":\"Sigil::Group\",\"id\":\"team-{i}\"}},\"attrs\":{{}},\"parents\":[]}}"
        ));
    }
    // The default set's two forbids (wildcards, 90-day clamp).
    text.push_str(
        "@id(\"no-wildcards\")\nforbid (principal, action, resource) when { resource.wildcard } unless { principal in Sigil::Group::\"wildcard\" };\n\
         @id(\"max-lifetime\")\n@clamp_ttl_seconds(\"7776000\")\nforbid (principal, action in [Sigil::Action::\"issue\", Sigil::Action::\"renew\"], resource) when { context.ttl_seconds > 7776000 };\n",
    );
    entities.push(
        "{\"uid\":{\"type\":\"Sigil::Workload\",\"id\":\"web\"},\"attrs\":{},\"parents\":[{\"type\":\"Sigil::Group\",\"id\":\"team-500\"}]}".to_owned(),
    );
    (text, format!("[{}]", entities.join(",")))
}

/// 1,000 policies that all apply to every principal (DNS-suffix permits without a
/// principal scope, and the two forbids).
fn unscoped_set() -> String {
    let mut text = String::new();
    for i in 0..POLICIES - 2 {
        text.push_str(&format!(
            "@id(\"suffix-{i}\")\npermit (principal, action, resource)\n\
             when {{ resource has dns_name && (resource.dns_name == \"team{i}.example.com\" || resource.dns_name like \"*.team{i}.example.com\") }};\n"
        ));
    }
    text.push_str(
        "@id(\"no-wildcards\")\nforbid (principal, action, resource) when { resource.wildcard } unless { principal in Sigil::Group::\"wildcard\" };\n\
         @id(\"max-lifetime\")\n@clamp_ttl_seconds(\"7776000\")\nforbid (principal, action in [Sigil::Action::\"issue\", Sigil::Action::\"renew\"], resource) when { context.ttl_seconds > 7776000 };\n",
    );
    text
}

fn request(names: &[&str]) -> EvaluateRequest {
    EvaluateRequest {
        principal: None,
        proof: None,
        operation: None,
        request_digest: None,
        action: Action::Issue,
        profile: Profile::TlsServer,
        sans: Sans {
            dns: names.iter().map(|s| (*s).to_owned()).collect(),
            ..Sans::default()
        },
        ttl_seconds: 86_400,
        key_algorithm: KeyAlgorithm::EcdsaP256,
        kind: Some(CaKind::Hybrid),
        key_bits: None,
    }
}

/// The requester of the in-process decisions.
fn web() -> Requester {
    Requester {
        principal: "workload:web".into(),
        method: AuthMethod::Token,
        grant: Grant::Token {
            jti: "bench".into(),
            // DNS patterns: `*` is one label.
            names: vec![
                "*.team500.example.com".into(),
                "team500.example.com".into(),
                "*.com".into(),
                "*.example.com".into(),
            ],
            uses: 1,
        },
    }
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{label}: n={} p50={:?} p99={:?} max={:?}",
        samples.len(),
        at(0.50),
        at(0.99),
        samples[samples.len() - 1]
    );
}

fn in_process(c: &mut Criterion) {
    let (text, entities) = policy_set();
    let engine = Compiled::new("bench", &text, Some(&entities)).unwrap();
    assert_eq!(engine.policy_count(), POLICIES);
    let now = Utc::now();
    let who = web();
    let one = request(&["api.team500.example.com"]);
    let three = request(&[
        "api.team500.example.com",
        "www.team500.example.com",
        "team500.example.com",
    ]);
    assert!(engine.decide(&one, &who, now).unwrap().allowed);
    assert!(engine.decide(&three, &who, now).unwrap().allowed);
    let denied = request(&["evil.com"]);
    assert!(!engine.decide(&denied, &who, now).unwrap().allowed);
    let mut group = c.benchmark_group("policy_1000");
    group.bench_function("decide_1_name", |b| {
        b.iter(|| engine.decide(black_box(&one), &who, now).unwrap())
    });
    group.bench_function("decide_3_names", |b| {
        b.iter(|| engine.decide(black_box(&three), &who, now).unwrap())
    });
    group.bench_function("decide_denied", |b| {
        b.iter(|| engine.decide(black_box(&denied), &who, now).unwrap())
    });
    group.bench_function("compile", |b| {
        b.iter(|| Compiled::new("bench", black_box(&text), Some(&entities)).unwrap())
    });
    group.finish();

    let mut samples = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let t = Instant::now();
        black_box(engine.decide(black_box(&one), &who, now).unwrap());
        samples.push(t.elapsed());
    }
    percentiles(
        "in-process decide, 1,000 group-scoped policies, 1 name",
        samples,
    );

    // Worst case for slicing: 1,000 policies that name no principal, so every one is
    // evaluated for every name.
    let engine = Compiled::new("bench", &unscoped_set(), None).unwrap();
    assert_eq!(engine.policy_count(), POLICIES);
    let req = request(&["api.team500.example.com"]);
    assert!(engine.decide(&req, &who, now).unwrap().allowed);
    c.bench_function("policy_1000_unscoped/decide_1_name", |b| {
        b.iter(|| engine.decide(black_box(&req), &who, now).unwrap())
    });
    let mut samples = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let t = Instant::now();
        black_box(engine.decide(black_box(&req), &who, now).unwrap());
        samples.push(t.elapsed());
    }
    percentiles(
        "in-process decide, 1,000 unscoped policies, 1 name",
        samples,
    );
    let default = Compiled::new("1", templates::DEFAULT, None).unwrap();
    let mut samples = Vec::with_capacity(20_000);
    let web = request(&["web.example.com"]);
    for _ in 0..20_000 {
        let t = Instant::now();
        black_box(default.decide(black_box(&web), &who, now).unwrap());
        samples.push(t.elapsed());
    }
    percentiles(
        "in-process decide, default set (5 policies), 1 name",
        samples,
    );
}

fn over_the_bus() {
    if std::env::var("SIGIL_BENCH_BUS").as_deref() == Ok("0") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sigil_bus::{Bus, Runtime};
        use sigil_contracts::policy::Decision;
        use sigil_contracts::subjects::POLICY_EVALUATE;
        use sigil_telemetry::{Health, Metrics};

        let nats = sigil_testkit::NatsServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let bus = Bus::connect(&nats.url(), "policy-bench").await.unwrap();
        let service_bus = Bus::connect(&nats.url(), "sigil-policy").await.unwrap();
        let health = Health::new();
        let shutdown = tokio_util::sync::CancellationToken::new();
        // The whole 1,000-policy set is the seed (version 1): applying it over the bus
        // would need an admin credential and more than the 64 KiB request cap.
        let (text, _) = policy_set();
        let entities = "[{\"uid\":{\"type\":\"Sigil::Workload\",\"id\":\"web\"},\"attrs\":{},\"parents\":[{\"type\":\"Sigil::Group\",\"id\":\"team-5\"}]}]";
        let count = text.matches("@id(").count();
        let config = sigil_policy::Config {
            seed_policies: Some(text.clone()),
            seed_entities: Some(entities.to_owned()),
            ..sigil_policy::Config::in_data_dir(dir.path())
        };
        let workload = sigil_contracts::auth::Proof::Token {
            token: sigil_policy::mint_local_token(
                &config,
                "workload:web",
                &["*.team5.example.com".to_owned()],
                3600,
                10_000,
                Utc::now(),
            )
            .await
            .unwrap()
            .token,
        };
        let task = tokio::spawn(sigil_policy::run(
            config,
            Runtime::new(service_bus, Metrics::new(), health.clone()),
            shutdown.clone(),
        ));
        sigil_testkit::eventually(Duration::from_secs(20), "policy ready", || {
            let r = health.report();
            async move { (r.components.len() == 1 && r.ready).then_some(()) }
        })
        .await;
        let req = EvaluateRequest {
            proof: Some(workload),
            ..request(&["api.team5.example.com"])
        };
        let d: Decision = bus.request(POLICY_EVALUATE, &req, Duration::from_secs(5)).await.unwrap();
        assert!(d.allowed, "{d:?}");
        let mut samples = Vec::with_capacity(5_000);
        for _ in 0..5_000 {
            let t = Instant::now();
            let d: Decision = bus
                .request(POLICY_EVALUATE, &req, Duration::from_secs(5))
                .await
                .unwrap();
            samples.push(t.elapsed());
            black_box(d);
        }
        percentiles(
            &format!(
                "over the bus (request/reply, sequential, token-authenticated), {count} policies, 1 name"
            ),
            samples,
        );
        shutdown.cancel();
        let _ = task.await;
    });
}

criterion_group!(benches, in_process);

fn main() {
    benches();
    over_the_bus();
    Criterion::default().configure_from_args().final_summary();
}
