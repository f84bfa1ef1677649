//! `sigil-policy`: Sigil's policy decision point.
//!
//! Serves `sigil.policy.v1.evaluate` ([`POLICY_EVALUATE`]): given a principal, an action
//! (issue, renew, revoke), a profile, the requested names, lifetime and key algorithm,
//! it answers a [`Decision`]: allowed or not, every
//! reason a rule failed (not just the first), the constraints the caller must apply (the
//! lifetime, clamped to the maximum when the rules say so) and the version of the rules
//! that decided.
//!
//! Policies are data: [`Rules`] deserialize from TOML, are validated before the service
//! starts, and are judged by the pure function [`evaluate`], which is what the unit
//! tests exercise. With no configuration ([`Rules::default`]) policy allows local and
//! private names (`localhost`, `example.com`, `internal`, `svc.cluster.local`, `local`),
//! loopback and private IP ranges, any SPIFFE ID, and lifetimes up to 90 days (longer
//! requests are clamped).
//!
//! The service is stateless: it owns no tables and publishes no events, so it needs
//! neither a database nor the events stream, and any number of replicas share the load
//! through the micro-service queue group.
#![forbid(unsafe_code)]

mod rules;

pub use rules::{DEFAULT_MAX_TTL_SECONDS, DEFAULT_VERSION, Rules, TtlOverMax, evaluate};

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use sigil_bus::service::Router;
use sigil_bus::{BusError, Runtime};
use sigil_contracts::WireError;
use sigil_contracts::policy::{Decision, EvaluateRequest};
use sigil_contracts::subjects::{POLICY_EVALUATE, Service};
use tokio_util::sync::CancellationToken;

/// Name of the health component and of the service in metrics.
pub const COMPONENT: &str = "policy";

/// Configuration of the policy service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The rules to decide by; the built-in defaults when omitted.
    pub rules: Rules,
}

/// What can stop the policy service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The rules are malformed or self-contradictory; the message lists every problem.
    #[error("invalid policy rules: {0}")]
    InvalidRules(String),
    /// A rules file could not be read or parsed.
    #[error("policy file {path}: {reason}")]
    RulesFile { path: PathBuf, reason: String },
    /// The NATS micro service could not be started.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Serve `sigil.policy.v1.evaluate` until `shutdown` is cancelled, then drain the
/// requests in flight and return `Ok(())`.
pub async fn run(config: Config, rt: Runtime, shutdown: CancellationToken) -> Result<(), Error> {
    config.rules.validate()?;
    rt.health.register(COMPONENT);
    let rules = Arc::new(config.rules);
    tracing::info!(
        version = %rules.version,
        dns_suffixes = rules.allowed_dns_suffixes.len(),
        ip_ranges = rules.allowed_ip_ranges.len(),
        uri_prefixes = rules.allowed_uri_prefixes.len(),
        max_ttl_seconds = rules.max_ttl_seconds,
        "policy rules loaded"
    );
    let router = Router::new(Service::Policy, "Sigil policy: authorization decisions")
        .ready(rt.health.clone(), COMPONENT)
        .route(POLICY_EVALUATE, move |req: EvaluateRequest| {
            let rules = rules.clone();
            async move { Ok::<Decision, WireError>(decide(&rules, &req)) }
        });
    let serving = tokio::spawn({
        let bus = rt.bus.clone();
        let metrics = rt.metrics.clone();
        let shutdown = shutdown.clone();
        async move { router.serve(&bus, metrics, shutdown).await }
    });
    let result = serving.await;
    rt.health.set_ready(COMPONENT, false);
    match result {
        Ok(served) => served.map_err(Error::from),
        Err(join) => Err(Error::Bus(BusError::Service(format!(
            "policy endpoint task failed: {join}"
        )))),
    }
}

/// Evaluate and log the outcome (names and reasons only; nothing secret is in a request).
fn decide(rules: &Rules, req: &EvaluateRequest) -> Decision {
    let decision = evaluate(rules, req);
    tracing::info!(
        principal = %req.principal,
        action = ?req.action,
        allowed = decision.allowed,
        reasons = ?decision.reasons,
        "policy decision"
    );
    decision
}
