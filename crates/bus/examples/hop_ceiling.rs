//! Messaging ceiling of the issuance path: the NATS traffic one issuance causes, with
//! every service doing no work at all (no crypto, no database, no policy logic).
//!
//! A private nats-server (JetStream on, temporary store; `$SIGIL_NATS_SERVER` picks the
//! binary) is started, and the stand-in services run in this process, each on its own
//! connection as `sigil up` runs them, through the real [`Router`], [`Bus::request`],
//! [`Bus::publish_event`] and [`consumer::run_batched`], with JSON bodies sized like an
//! `IssueRequest` (~300 B), an `IssueResponse` (~1.5 KB) and an event (~2 KB). Stages,
//! each cumulative, each measured after a warm-up:
//!
//! 1. `1-hop`: client → issuer, which replies at once.
//! 2. `2-hop`: the issuer first asks policy (`evaluate`).
//! 3. `authn`: policy first asks revocation (`status`) and creates a fresh nonce key in a
//!    JetStream KV bucket configured like the policy service's nonce ledger.
//! 4. `outbox`: the issuer also publishes one event to `SIGIL_EVENTS`, awaiting the ack.
//! 5. `consumers`: four durable pull consumers ack every event meanwhile (only the
//!    request rate is measured; the backlog they leave is printed).
//!
//! Every figure is a ceiling: real services add signing, storage and policy work on top.
//! No tracing subscriber is installed, so span and log export cost nothing here.
//!
//! ```text
//! cargo run --release -p sigil-bus --example hop_ceiling -- [--count N] [--concurrency C] [--json]
//! ```

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use serde_json::{Value, json};
use sigil_bus::consumer::{self, ConsumerSpec, Delivery};
use sigil_bus::service::Router;
use sigil_bus::{Bus, BusError, ClientError};
use sigil_contracts::subjects::{
    self, ISSUER_ISSUE, POLICY_EVALUATE, REVOCATION_STATUS, Service, event_subject,
};
use sigil_contracts::{EventKind, WireError};
use sigil_telemetry::{Health, Metrics};
use sigil_testkit::NatsServer;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const STAGES: [&str; 5] = ["1-hop", "2-hop", "authn", "outbox", "consumers"];
const CONSUMERS: [&str; 4] = [
    "hop-inventory",
    "hop-rotation",
    "hop-revocation",
    "hop-policy",
];
const NONCE_BUCKET: &str = "hop-nonces";
const TIMEOUT: Duration = Duration::from_secs(30);

type AnyError = Box<dyn Error>;

/// A JSON object of about `size` bytes once encoded.
fn blob(kind: &str, size: usize) -> Value {
    let mut v = json!({
        "kind": kind, "profile": "tls_server", "ttl_seconds": 3600,
        "sans": {"dns": ["bench-1.example.com"]}, "serial": "4f1c2a9be07d3365", "pem": "",
    });
    let base = serde_json::to_vec(&v).map_or(0, |b| b.len());
    v["pem"] = Value::String("A".repeat(size.saturating_sub(base)));
    v
}

/// What the stand-in services of one stage share.
struct Shapes {
    level: usize,
    policy_req: Value,
    small_reply: Value,
    issue_reply: Value,
    event: Bytes,
    subject: String,
    /// Source of unique event ids and nonce keys, shared by every stage.
    ids: Arc<AtomicU64>,
}

/// The services of one stage, stopped by cancelling the token.
type Stage = (CancellationToken, JoinSet<Result<(), BusError>>);

async fn start_stage(url: &str, shapes: Arc<Shapes>) -> Result<Stage, AnyError> {
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let health = Health::new();
    let level = shapes.level;
    let revocation = Bus::connect(url, "hop-revocation").await?;
    let policy = Bus::connect(url, "hop-policy").await?;
    let issuer = Bus::connect(url, "hop-issuer").await?;
    let nonces = policy.jetstream().get_key_value(NONCE_BUCKET).await?;

    let s = shapes.clone();
    let router = Router::new(Service::Revocation, "hop: revocation")
        .ready(health.clone(), "revocation")
        .route(REVOCATION_STATUS, move |_: Value| {
            let reply = s.small_reply.clone();
            async move { Ok::<_, WireError>(reply) }
        });
    let (bus, stop) = (revocation.clone(), shutdown.clone());
    tasks.spawn(async move { router.serve(&bus, Metrics::new(), stop).await });

    let (s, bus) = (shapes.clone(), policy.clone());
    let router = Router::new(Service::Policy, "hop: policy")
        .ready(health.clone(), "policy")
        .route(POLICY_EVALUATE, move |_: Value| {
            let (s, bus, nonces) = (s.clone(), bus.clone(), nonces.clone());
            async move {
                if s.level >= 3 {
                    let _: Value = bus
                        .request(REVOCATION_STATUS, &s.policy_req, TIMEOUT)
                        .await
                        .map_err(ClientError::into_wire)?;
                    // Shaped like the ledger's `n.<hex sha256>` nonce keys.
                    let key = format!("n.{:064x}", s.ids.fetch_add(1, Ordering::Relaxed));
                    nonces
                        .create(key, Bytes::from_static(b"1"))
                        .await
                        .map_err(|e| WireError::unavailable(e.to_string()))?;
                }
                Ok(s.small_reply.clone())
            }
        });
    let (bus, stop) = (policy.clone(), shutdown.clone());
    tasks.spawn(async move { router.serve(&bus, Metrics::new(), stop).await });

    let (s, bus) = (shapes.clone(), issuer.clone());
    let router = Router::new(Service::Issuer, "hop: issuer")
        .ready(health.clone(), "issuer")
        .route(ISSUER_ISSUE, move |_: Value| {
            let (s, bus) = (s.clone(), bus.clone());
            async move {
                if s.level >= 2 {
                    let _: Value = bus
                        .request(POLICY_EVALUATE, &s.policy_req, TIMEOUT)
                        .await
                        .map_err(ClientError::into_wire)?;
                }
                if s.level >= 4 {
                    let id = format!("hop-{}", s.ids.fetch_add(1, Ordering::Relaxed));
                    bus.publish_event(&s.subject, &id, s.event.clone(), None)
                        .await
                        .map_err(|e| WireError::unavailable(e.to_string()))?;
                }
                Ok(s.issue_reply.clone())
            }
        });
    let (bus, stop) = (issuer.clone(), shutdown.clone());
    tasks.spawn(async move { router.serve(&bus, Metrics::new(), stop).await });

    if level >= 5 {
        let inventory = Bus::connect(url, "hop-inventory").await?;
        let rotation = Bus::connect(url, "hop-rotation").await?;
        let owners = [inventory, rotation, revocation.clone(), policy.clone()];
        for (name, bus) in CONSUMERS.into_iter().zip(owners) {
            let spec = ConsumerSpec::new(name, vec![shapes.subject.clone()]);
            tasks.spawn(consumer::run_batched(
                bus,
                spec,
                Metrics::new(),
                shutdown.clone(),
                |batch: Vec<Delivery>| async move { batch.iter().map(|_| Ok(())).collect() },
            ));
        }
    }

    // Wait until every endpoint (and consumer) is bound.
    let events = issuer
        .jetstream()
        .get_stream(subjects::EVENTS_STREAM)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut ready = health.is_ready();
        for name in CONSUMERS.iter().take(if level >= 5 { 4 } else { 0 }) {
            ready &= events.consumer_info(name).await.is_ok();
        }
        if ready {
            return Ok((shutdown, tasks));
        }
        if Instant::now() > deadline {
            return Err(format!("stage {} did not come up within 10s", STAGES[level - 1]).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `count` requests from `concurrency` workers; answers the wall time and the latencies.
async fn measure(
    client: &Bus,
    count: usize,
    concurrency: usize,
    req: Arc<Value>,
) -> Result<(Duration, Vec<Duration>), AnyError> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (client, next, req) = (client.clone(), next.clone(), req.clone());
        workers.spawn(async move {
            let mut samples = Vec::with_capacity(count / concurrency + 1);
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let t = Instant::now();
                let _: Value = client.request(ISSUER_ISSUE, &*req, TIMEOUT).await?;
                samples.push(t.elapsed());
            }
            Ok::<_, ClientError>(samples)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = workers.join_next().await {
        all.extend(joined??);
    }
    let elapsed = started.elapsed();
    all.sort();
    Ok((elapsed, all))
}

/// Nearest-rank quantile in milliseconds, as `sigil bench` reports it.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

/// `(count, concurrency, json)` from `--count N --concurrency C --json`.
fn parse_args() -> Result<(usize, usize, bool), AnyError> {
    let (mut count, mut concurrency, mut json) = (20_000, 16, false);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--count" => count = it.next().ok_or("--count needs a value")?.parse()?,
            "--concurrency" => concurrency = it.next().ok_or("--concurrency needs N")?.parse()?,
            "--json" => json = true,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if count == 0 || concurrency == 0 {
        return Err("--count and --concurrency must be positive".into());
    }
    Ok((count, concurrency, json))
}

#[tokio::main]
async fn main() -> Result<(), AnyError> {
    let (count, concurrency, json_lines) = parse_args()?;
    let nats = NatsServer::start().await;
    let client = Bus::connect(&nats.url(), "hop-client").await?;
    let events = client.ensure_stream().await?;
    // As the policy service's nonce bucket: file storage, history 1, capped.
    client
        .jetstream()
        .create_key_value(kv::Config {
            bucket: NONCE_BUCKET.to_owned(),
            history: 1,
            max_age: Duration::from_secs(900),
            max_bytes: 256 * 1024 * 1024,
            max_value_size: 1024,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let request = Arc::new(blob("issue-request", 300));
    let warmup = (count / 10).clamp(concurrency, 2_000);
    let url = nats.url();
    println!(
        "hop ceiling: {count} requests at concurrency {concurrency} per stage (warm-up {warmup}), {url}"
    );
    let ids = Arc::new(AtomicU64::new(0));
    for (i, name) in STAGES.into_iter().enumerate() {
        let level = i + 1;
        // Consumers start from an empty stream, not the previous stage's events.
        events.purge().await?;
        let shapes = Arc::new(Shapes {
            level,
            policy_req: blob("evaluate-request", 400),
            small_reply: blob("decision", 200),
            issue_reply: blob("issue-response", 1_500),
            event: Bytes::from(serde_json::to_vec(&blob("identity.issued", 2_000))?),
            subject: event_subject(EventKind::IdentityIssued),
            ids: ids.clone(),
        });
        let (shutdown, mut tasks) = start_stage(&url, shapes).await?;
        measure(&client, warmup, concurrency, request.clone()).await?;
        let (elapsed, samples) = measure(&client, count, concurrency, request.clone()).await?;
        let mut backlog = None;
        if level >= 5 {
            let mut most = 0;
            for c in CONSUMERS {
                let info = events.consumer_info(c).await?;
                most = most.max(info.num_pending + info.num_ack_pending as u64);
            }
            backlog = Some(most);
        }
        shutdown.cancel();
        while let Some(joined) = tasks.join_next().await {
            joined??;
        }
        let per_second = samples.len() as f64 / elapsed.as_secs_f64();
        let (p50, p99) = (quantile_ms(&samples, 0.50), quantile_ms(&samples, 0.99));
        let tail = backlog.map_or(String::new(), |b| {
            format!("  (consumer backlog at end {b})")
        });
        println!("{name:<10} {per_second:>8.0} req/s  p50 {p50:>6.2} ms  p99 {p99:>6.2} ms{tail}");
        if json_lines {
            let line = json!({
                "stage": name, "count": samples.len(), "concurrency": concurrency,
                "seconds": elapsed.as_secs_f64(), "per_second": per_second,
                "p50_ms": p50, "p99_ms": p99, "consumer_backlog": backlog,
            });
            println!("{line}");
        }
    }
    drop(client);
    drop(nats);
    Ok(())
}
