//! `sigil bench issue`: end-to-end issuance throughput and latency against a running
//! Sigil, over NATS with storage and events, at a chosen concurrency.
//!
//! Every request carries the same pre-made CSR (key generation is the client's job, as
//! with OpenBao's `pki/sign`, so both sides measure signing + storage), its own
//! idempotency key and its own possession proof by the admin credential, made just
//! before it is sent (so the measured latency includes the policy service verifying
//! it). Reports rate, p50, p90, p99 and max latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sigil_contracts::issuer::{IssueRequest, IssueResponse};
use sigil_contracts::subjects::ISSUER_ISSUE;
use sigil_contracts::types::{Profile, Sans};
use tokio::sync::Mutex;

use crate::context::GlobalArgs;
use crate::error::CliError;

/// Benchmarks against a running Sigil.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// End-to-end issuance: request → policy → sign → store + outbox → reply
    Issue(IssueBench),
    /// Raw in-process signing, the baseline for `issue`: build, lint, sign and
    /// re-verify a leaf from a pre-parsed P-256 CSR on one thread (no NATS, no storage,
    /// no policy). Needs no running Sigil.
    Sign(SignBench),
}

#[derive(Debug, Args)]
pub struct SignBench {
    /// Kind of the in-memory CA that signs (the kinds `bench issue` can drive with a
    /// CSR)
    #[arg(long, value_enum, default_value_t = SignKind::Hybrid)]
    pub kind: SignKind,
    /// Certificates to sign
    #[arg(long, default_value_t = 2000)]
    pub count: usize,
}

/// CA kinds for `bench sign`: each with the same CA algorithms as `sigil up`'s default
/// for that kind (P-256; hybrid adds ML-DSA-65).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SignKind {
    Classical,
    Hybrid,
}

/// Results of a `bench sign` run.
#[derive(Debug, Serialize)]
pub struct SignReport {
    pub kind: &'static str,
    pub count: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub mean_us: f64,
}

#[derive(Debug, Args)]
pub struct IssueBench {
    /// Certificates to issue
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Requests in flight at once
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Requests before measuring starts
    #[arg(long, default_value_t = 50)]
    pub warmup: usize,
}

/// Results of one run.
#[derive(Debug, Serialize)]
pub struct IssueReport {
    pub count: usize,
    pub concurrency: usize,
    pub errors: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The `q`-quantile (0..=1) of sorted samples, nearest-rank.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn request(csr: &str, n: usize) -> IssueRequest {
    IssueRequest {
        idempotency_key: Some(uuid::Uuid::new_v4().to_string()),
        profile: Profile::TlsServer,
        sans: Sans {
            dns: vec![format!("bench-{n}.example.com")],
            ..Default::default()
        },
        ttl_seconds: 3600,
        csr_pem: Some(csr.to_owned()),
        key_algorithm: None,
        proof: None,
    }
}

pub async fn run(global: &GlobalArgs, args: BenchArgs) -> Result<(), CliError> {
    match args.what {
        BenchWhat::Issue(b) => run_issue(global, b).await,
        BenchWhat::Sign(b) => run_sign(global, &b),
    }
}

fn run_sign(global: &GlobalArgs, b: &SignBench) -> Result<(), CliError> {
    use sigil_contracts::types::KeyAlgorithm;
    use sigil_pki::mldsa::MlDsaLevel;
    use sigil_pki::{LeafKey, LeafOptions, LeafRequest};

    if b.count == 0 {
        return Err(CliError::Other("--count must be positive".to_owned()));
    }
    let pki = |e: sigil_pki::PkiError| CliError::Other(format!("bench sign: {e}"));
    let (csr, _) = bench_csr()?;
    let now = chrono::Utc::now();
    let ca_end = now + chrono::Duration::days(2);
    let req = LeafRequest {
        profile: Profile::TlsServer,
        sans: Sans {
            dns: vec!["bench.example.com".to_owned()],
            ..Sans::default()
        },
        common_name: None,
        not_before: now,
        not_after: now + chrono::Duration::days(1),
        key: LeafKey::Csr(sigil_pki::parse_csr(&csr).map_err(pki)?),
    };
    let opts = LeafOptions::default();
    let p256 = KeyAlgorithm::EcdsaP256;
    let bar = bar(global, b.count);
    let started;
    match b.kind {
        SignKind::Classical => {
            let root = sigil_pki::create_root("Bench Root", p256, now, ca_end).map_err(pki)?;
            let ca = sigil_pki::create_intermediate(&root, "Bench CA", p256, now, ca_end)
                .map_err(pki)?;
            started = Instant::now();
            for _ in 0..b.count {
                sigil_pki::prepare_leaf_cert(&ca, &req, &opts)
                    .and_then(sigil_pki::PreparedCert::sign)
                    .map_err(pki)?;
                bar.inc(1);
            }
        }
        SignKind::Hybrid => {
            let level = MlDsaLevel::L65;
            let root = sigil_pki::create_hybrid_root("Bench Root", p256, level, now, ca_end)
                .map_err(pki)?;
            let ca =
                sigil_pki::create_hybrid_intermediate(&root, "Bench CA", p256, level, now, ca_end)
                    .map_err(pki)?;
            started = Instant::now();
            for _ in 0..b.count {
                sigil_pki::prepare_hybrid_leaf(&ca, &req, None, &opts)
                    .and_then(sigil_pki::PreparedCert::sign)
                    .map_err(pki)?;
                bar.inc(1);
            }
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let report = SignReport {
        kind: match b.kind {
            SignKind::Classical => "classical",
            SignKind::Hybrid => "hybrid",
        },
        count: b.count,
        seconds: elapsed.as_secs_f64(),
        per_second: b.count as f64 / elapsed.as_secs_f64(),
        mean_us: elapsed.as_secs_f64() * 1e6 / b.count as f64,
    };
    print_report(global, &report, || {
        format!(
            "signed {} {} leaves on one thread in {:.2}s: {:.0}/s · {:.1} µs each",
            report.count, report.kind, report.seconds, report.per_second, report.mean_us
        )
    })
}

/// Prints `report` as one JSON line under `--json`, else the line `text` makes.
fn print_report<T: Serialize>(
    global: &GlobalArgs,
    report: &T,
    text: impl FnOnce() -> String,
) -> Result<(), CliError> {
    if global.json {
        let json = serde_json::to_string(report).map_err(|e| CliError::Other(e.to_string()))?;
        println!("{json}");
    } else {
        println!("{}", text());
    }
    Ok(())
}

/// A P-256 CSR (PEM) for `bench.example.com`, and its key.
fn bench_csr() -> Result<(String, rcgen::KeyPair), CliError> {
    let key = rcgen::KeyPair::generate().map_err(|e| CliError::Other(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec!["bench.example.com".to_owned()])
        .map_err(|e| CliError::Other(e.to_string()))?;
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| CliError::Other(e.to_string()))?;
    Ok((csr, key))
}

/// A progress bar for `count` items, hidden under `--json`.
fn bar(global: &GlobalArgs, count: usize) -> ProgressBar {
    let bar = if global.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(count as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

async fn run_issue(global: &GlobalArgs, b: IssueBench) -> Result<(), CliError> {
    if b.count == 0 || b.concurrency == 0 {
        return Err(CliError::Other(
            "--count and --concurrency must be positive".to_owned(),
        ));
    }
    let admin = Arc::new(global.admin()?);
    let bus = global.connect().await?;
    let (csr, _key) = bench_csr()?;
    // The CSR names one host; requests name another, so send SANs from the CSR.
    let csr = Arc::new(csr);

    for n in 0..b.warmup {
        let mut req = request(&csr, n);
        req.sans = Sans::default();
        admin.prove(ISSUER_ISSUE, &mut req)?;
        let _: IssueResponse = bus
            .request(ISSUER_ISSUE, &req, Duration::from_secs(30))
            .await?;
    }

    let bar = bar(global, b.count);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::with_capacity(b.count)));
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..b.concurrency {
        let (admin, bus, csr, next, samples, errors, bar) = (
            admin.clone(),
            bus.clone(),
            csr.clone(),
            next.clone(),
            samples.clone(),
            errors.clone(),
            bar.clone(),
        );
        let count = b.count;
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= count {
                    return;
                }
                let mut req = request(&csr, n);
                req.sans = Sans::default();
                let t = Instant::now();
                let r: Result<IssueResponse, CliError> = match admin.prove(ISSUER_ISSUE, &mut req) {
                    Ok(()) => bus
                        .request(ISSUER_ISSUE, &req, Duration::from_secs(30))
                        .await
                        .map_err(CliError::from),
                    Err(e) => Err(e),
                };
                let elapsed = t.elapsed();
                match r {
                    Ok(_) => samples.lock().await.push(elapsed),
                    Err(_) => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                bar.inc(1);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let total = started.elapsed();
    bar.finish_and_clear();
    let mut s = samples.lock().await.clone();
    s.sort();
    let report = IssueReport {
        count: b.count,
        concurrency: b.concurrency,
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        seconds: total.as_secs_f64(),
        per_second: s.len() as f64 / total.as_secs_f64(),
        p50_ms: ms(quantile(&s, 0.50)),
        p90_ms: ms(quantile(&s, 0.90)),
        p99_ms: ms(quantile(&s, 0.99)),
        max_ms: ms(s.last().copied().unwrap_or_default()),
    };
    print_report(global, &report, || {
        format!(
            "issued {} (errors {}) at concurrency {} in {:.2}s: {:.0}/s · p50 {:.2} ms · p90 {:.2} ms · p99 {:.2} ms · max {:.2} ms",
            report.count - report.errors,
            report.errors,
            report.concurrency,
            report.seconds,
            report.per_second,
            report.p50_ms,
            report.p90_ms,
            report.p99_ms,
            report.max_ms
        )
    })?;
    if report.errors > 0 {
        return Err(CliError::Other(format!(
            "{} requests failed",
            report.errors
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&s, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&s, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&s, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
        assert_eq!(quantile(&s[..1], 0.99), Duration::from_millis(1));
    }
}
