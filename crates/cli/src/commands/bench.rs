//! `sigil bench issue`: end-to-end issuance throughput and latency against a running
//! Sigil, over NATS with storage and events, at a chosen concurrency.
//!
//! Every request carries the same pre-made CSR (key generation is the client's job, as
//! with OpenBao's `pki/sign`, so both sides measure signing + storage) and its own
//! idempotency key. Reports rate, p50, p90, p99 and max latency.

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
        principal: Some("bench".to_owned()),
    }
}

pub async fn run(global: &GlobalArgs, args: BenchArgs) -> Result<(), CliError> {
    let BenchWhat::Issue(b) = args.what;
    if b.count == 0 || b.concurrency == 0 {
        return Err(CliError::Other(
            "--count and --concurrency must be positive".to_owned(),
        ));
    }
    let bus = global.connect().await?;
    let key = rcgen::KeyPair::generate().map_err(|e| CliError::Other(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec!["bench.example.com".to_owned()])
        .map_err(|e| CliError::Other(e.to_string()))?;
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| CliError::Other(e.to_string()))?;
    // The CSR names one host; requests name another, so send SANs from the CSR.
    let csr = Arc::new(csr);

    for n in 0..b.warmup {
        let mut req = request(&csr, n);
        req.sans = Sans::default();
        let _: IssueResponse = bus
            .request(ISSUER_ISSUE, &req, Duration::from_secs(30))
            .await?;
    }

    let bar = if global.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(b.count as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::with_capacity(b.count)));
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..b.concurrency {
        let (bus, csr, next, samples, errors, bar) = (
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
                let r: Result<IssueResponse, _> = bus
                    .request(ISSUER_ISSUE, &req, Duration::from_secs(30))
                    .await;
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
    if global.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| CliError::Other(e.to_string()))?
        );
    } else {
        println!(
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
        );
    }
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
