//! Shared by the issuer's integration tests (`mod common;`): a real nats-server with a
//! connected bus, a throwaway database and data directory, a policy responder on the
//! bus, and issuers started on all of that and stopped again.
//!
//! The fake policies authenticate nobody (the policy service does, and is tested on
//! its own); they name the principal after the proof they were passed
//! ([`principal_of`]), so a test can tell that the issuer forwarded the proof and
//! records the principal of the decision.
#![allow(
    dead_code,
    reason = "each test binary uses its own part of this module"
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sigil_bus::service::Router;
use sigil_bus::{Bus, Runtime};
use sigil_contracts::WireError;
use sigil_contracts::auth::{AuthMethod, Proof};
use sigil_contracts::issuer::{CaListRequest, CaListResponse, IssueResponse};
use sigil_contracts::policy::{Constraints, Decision, EvaluateRequest};
use sigil_contracts::subjects::{ISSUER_CA_LIST, ISSUER_ISSUE, POLICY_EVALUATE, Service};
use sigil_issuer::{Config, Error};
use sigil_pki::VerifyReport;
use sigil_telemetry::{Health, Metrics};
use sigil_testkit::{NatsServer, TestDb, eventually_ok};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Principal the fake policies name for a possession proof.
pub const PROVEN_ADMIN: &str = "admin:proven";

/// The principal a fake policy names for `proof`: `anonymous` without one,
/// `workload:<token>` for a token (the token's text stands for its subject),
/// [`PROVEN_ADMIN`] for a possession proof.
pub fn principal_of(proof: Option<&Proof>) -> String {
    match proof {
        None => "anonymous".to_owned(),
        Some(Proof::Token { token }) => format!("workload:{token}"),
        Some(Proof::Possession(_)) => PROVEN_ADMIN.to_owned(),
    }
}

/// A decision about `req` as the policy service shapes it: the principal from the
/// proof ([`principal_of`]), how it was authenticated, the action decided.
pub fn decision(
    req: &EvaluateRequest,
    allowed: bool,
    reasons: Vec<String>,
    ttl_seconds: i64,
    policy_version: &str,
) -> Decision {
    Decision {
        allowed,
        reasons,
        constraints: Constraints {
            ttl_seconds,
            ttl_clamped: ttl_seconds < req.ttl_seconds,
        },
        policy_version: policy_version.to_owned(),
        principal: principal_of(req.proof.as_ref()),
        authenticated_by: req.proof.as_ref().map_or(AuthMethod::None, Proof::method),
        action: Some(req.action),
    }
}

/// A policy that allows every request with the lifetime asked for, reporting
/// `version` as its policy version.
pub fn allow_all(version: &str) -> Router {
    let version = version.to_owned();
    Router::new(Service::Policy, "allow-all policy for issuer tests").route(
        POLICY_EVALUATE,
        move |req: EvaluateRequest| {
            let decided = decision(&req, true, vec![], req.ttl_seconds, &version);
            async move { Ok::<_, WireError>(decided) }
        },
    )
}

/// What a [`FakePolicy`] answers.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Allowed, with the lifetime asked for.
    Allow,
    /// Not allowed, for these reasons.
    Deny(Vec<String>),
    /// The proof is refused: an `unauthenticated` error with this message.
    Unauthenticated(String),
}

/// A policy whose answer the test sets, and which keeps every request it was asked.
#[derive(Debug, Clone)]
pub struct FakePolicy {
    verdict: Arc<Mutex<Verdict>>,
    seen: Arc<Mutex<Vec<EvaluateRequest>>>,
}

impl FakePolicy {
    /// The fake, and the router to serve it with (see [`Base::launch`]).
    pub fn new(verdict: Verdict) -> (FakePolicy, Router) {
        let fake = FakePolicy {
            verdict: Arc::new(Mutex::new(verdict)),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let served = fake.clone();
        let router = Router::new(Service::Policy, "scripted policy for issuer tests").route(
            POLICY_EVALUATE,
            move |req: EvaluateRequest| {
                served.seen.lock().unwrap().push(req.clone());
                let verdict = served.verdict.lock().unwrap().clone();
                let reply = match verdict {
                    Verdict::Allow => Ok(decision(&req, true, vec![], req.ttl_seconds, "fake")),
                    Verdict::Deny(reasons) => Ok(decision(&req, false, reasons, 0, "fake")),
                    Verdict::Unauthenticated(message) => Err(WireError::unauthenticated(message)),
                };
                async move { reply }
            },
        );
        (fake, router)
    }

    /// Answer `verdict` from now on.
    pub fn set(&self, verdict: Verdict) {
        *self.verdict.lock().unwrap() = verdict;
    }

    /// Every request evaluated so far, oldest first.
    pub fn seen(&self) -> Vec<EvaluateRequest> {
        self.seen.lock().unwrap().clone()
    }
}

/// A policy that, like the policy service, accepts each proof once: a bootstrap token
/// (single use here) or a possession proof's nonce seen before is refused as
/// `unauthenticated`, before any decision. Every other request is allowed with the
/// lifetime asked for. It counts the `evaluate` calls it answers.
#[derive(Debug, Clone, Default)]
pub struct OneUsePolicy {
    spent: Arc<Mutex<std::collections::HashSet<String>>>,
    evaluated: Arc<Mutex<Vec<EvaluateRequest>>>,
}

/// The message a [`OneUsePolicy`] refuses a spent proof with.
pub const PROOF_REPLAYED: &str = "this proof was already used";

impl OneUsePolicy {
    /// The fake, and the router to serve it with (see [`Base::launch`]).
    pub fn new() -> (OneUsePolicy, Router) {
        let fake = OneUsePolicy::default();
        let served = fake.clone();
        let router = Router::new(Service::Policy, "one-use policy for issuer tests").route(
            POLICY_EVALUATE,
            move |req: EvaluateRequest| {
                served.evaluated.lock().unwrap().push(req.clone());
                let fresh = match &req.proof {
                    None => true,
                    Some(Proof::Token { token }) => {
                        served.spent.lock().unwrap().insert(format!("t.{token}"))
                    }
                    Some(Proof::Possession(p)) => served
                        .spent
                        .lock()
                        .unwrap()
                        .insert(format!("n.{}", p.nonce)),
                };
                let reply = if fresh {
                    Ok(decision(&req, true, vec![], req.ttl_seconds, "one-use"))
                } else {
                    Err(WireError::unauthenticated(PROOF_REPLAYED))
                };
                async move { reply }
            },
        );
        (fake, router)
    }

    /// Every `evaluate` answered so far (refused ones included), oldest first.
    pub fn evaluated(&self) -> Vec<EvaluateRequest> {
        self.evaluated.lock().unwrap().clone()
    }
}

/// What every issuer test runs on: nats-server, a bus client, a database and a data
/// directory for the issuer. Each test file adds its own methods (`impl Base`, under
/// the name `Harness`).
pub struct Base {
    _nats: NatsServer,
    pub bus: Bus,
    pub db: TestDb,
    pub data_dir: TempDir,
    /// Stops the policy responder; cancelled on drop.
    pub policy_stop: CancellationToken,
}

impl Drop for Base {
    fn drop(&mut self) {
        self.policy_stop.cancel();
    }
}

impl Base {
    /// Starts nats-server, connects as `client`, and serves `policy` (when given) on
    /// the bus until [`Base::policy_stop`] is cancelled.
    pub async fn launch(client: &str, policy: Option<Router>) -> Base {
        let nats = NatsServer::start().await;
        let bus = Bus::connect(&nats.url(), client).await.unwrap();
        let policy_stop = CancellationToken::new();
        if let Some(policy) = policy {
            let (bus, stop) = (bus.clone(), policy_stop.clone());
            tokio::spawn(async move { policy.serve(&bus, Metrics::new(), stop).await });
        }
        Base {
            _nats: nats,
            bus,
            db: TestDb::from_env_or_sqlite().await,
            data_dir: tempfile::tempdir().unwrap(),
            policy_stop,
        }
    }

    /// An issuer configuration on this database and data directory.
    pub fn base_config(&self, ca_common_name: &str) -> Config {
        Config {
            database_url: self.db.url().to_owned(),
            data_dir: self.data_dir.path().to_owned(),
            ca_common_name: ca_common_name.into(),
            ..Config::default()
        }
    }

    /// Runs an issuer with `config` until it is stopped; does not wait for it.
    pub fn spawn(&self, config: Config) -> Running {
        self.spawn_until(config, CancellationToken::new())
    }

    /// [`Base::spawn`], stopped when `stop` is cancelled.
    pub fn spawn_until(&self, config: Config, stop: CancellationToken) -> Running {
        let rt = Runtime::new(self.bus.clone(), Metrics::new(), Health::new());
        let task = tokio::spawn(sigil_issuer::run(config, rt, stop.clone()));
        Running { stop, task }
    }

    /// Waits until an issuer answers on the bus.
    pub async fn wait_ready(&self) {
        let probe = Bytes::from_static(b"{}");
        eventually_ok(Duration::from_secs(20), "issuer answers", || {
            self.bus.request_raw(ISSUER_ISSUE, probe.clone(), TIMEOUT)
        })
        .await;
    }

    /// Every CA the issuer knows.
    pub async fn ca_list(&self) -> CaListResponse {
        self.bus
            .request(ISSUER_CA_LIST, &CaListRequest {}, TIMEOUT)
            .await
            .unwrap()
    }

    /// [`Base::spawn`], then [`Base::wait_ready`].
    pub async fn start_issuer(&self, config: Config) -> Running {
        let issuer = self.spawn(config);
        self.wait_ready().await;
        issuer
    }
}

/// A running issuer.
pub struct Running {
    pub stop: CancellationToken,
    pub task: JoinHandle<Result<(), Error>>,
}

impl Running {
    /// Cancels the issuer and checks that it shut down cleanly.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// The DER of a PEM certificate.
pub fn der(pem: &str) -> Vec<u8> {
    sigil_pki::pem::decode(pem, &["CERTIFICATE"]).unwrap()
}

/// Sigil's own verifier over the reply's chain; every check must pass.
pub fn sigil_verify(resp: &IssueResponse) -> VerifyReport {
    let report = sigil_pki::verify_chain(
        &der(&resp.certificate_pem),
        &[der(&resp.chain_pem[0])],
        &[der(&resp.chain_pem[1])],
        chrono::Utc::now(),
    );
    assert!(report.ok, "{report:#?}");
    report
}
