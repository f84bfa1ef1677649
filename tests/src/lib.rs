//! The cross-service test harness: a real nats-server (free port, temp store) and all
//! five Sigil services running in this process, each with its own NATS connection and
//! its own database: a SQLite file per service, or, when `SIGIL_TEST_DATABASE_URL` is
//! set, one fresh PostgreSQL database with a schema per service.
//!
//! Requests are authenticated as in production (the policy service refuses anonymous
//! ones): on start the harness gets an admin credential the way `sigil up` does — a
//! one-use token minted from the policy database, a certificate issued with it — writes
//! it to `<data-dir>/admin.cred`, loads it back with
//! [`Credential::from_pem_bundle`], and signs the scenarios' requests with it
//! ([`Cluster::prove`]).
#![forbid(unsafe_code)]
// Test-support code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use sigil_bus::{Bus, Runtime};
use sigil_contracts::auth::{CarriesProof, Proof, TokenCreateRequest, TokenCreateResponse};
use sigil_contracts::inventory::{QueryRequest, QueryResponse};
use sigil_contracts::issuer::{IssueRequest, IssueResponse};
use sigil_contracts::policy::{EvaluateRequest, Explanation, TestRequest};
use sigil_contracts::subjects::{
    EVENTS_STREAM, INVENTORY_QUERY, ISSUER_ISSUE, Operation, POLICY_TEST, POLICY_TOKEN_CREATE,
};
use sigil_contracts::types::{CaKind, Profile, Sans};
use sigil_pki::proof::Credential;
use sigil_telemetry::{Health, Metrics};
use sigil_testkit::{NatsServer, TestDb, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Default timeout for waits in scenarios.
pub const WAIT: Duration = Duration::from_secs(20);
/// Principal of the harness's admin credential.
pub const ADMIN_PRINCIPAL: &str = "admin:e2e";
/// Its one name.
pub const ADMIN_NAME: &str = "spiffe://sigil.admin/admin/e2e";

/// Knobs a scenario may turn.
#[derive(Debug, Clone)]
pub struct Options {
    /// Cedar policies seeded as version 1; the built-in default set when `None`.
    pub policies: Option<String>,
    pub tick_interval: Duration,
    /// Kind of the CA hierarchy the issuer creates (the issuer's default, hybrid, unless
    /// a scenario needs another), and its algorithm within that kind.
    pub ca_kind: CaKind,
    pub ca_algorithm: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        let issuer = sigil_issuer::Config::default();
        Options {
            policies: None,
            tick_interval: Duration::from_millis(200),
            ca_kind: issuer.ca_kind,
            ca_algorithm: issuer.ca_algorithm,
        }
    }
}

/// All five services on one real nats-server.
pub struct Cluster {
    pub nats: NatsServer,
    /// A client connection for the test itself.
    pub bus: Bus,
    pub data_dir: tempfile::TempDir,
    pub metrics: Metrics,
    pub health: Health,
    /// The admin credential every scenario request is signed with ([`Cluster::prove`]).
    admin: Option<Arc<Credential>>,
    /// Serial of the admin credential, left out of [`Cluster::events`] and
    /// [`Cluster::inventory_all`] (it is the harness's, not the scenario's).
    admin_serial: String,
    pg: Option<TestDb>,
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nats", &self.nats.url())
            .finish()
    }
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Cluster {
        let _ = sigil_telemetry::init("sigil-e2e").map(std::mem::forget);
        let nats = NatsServer::start().await;
        let data_dir = tempfile::tempdir().unwrap();
        let pg = match std::env::var("SIGIL_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(TestDb::postgres(&url).await),
            _ => None,
        };
        let bus = Bus::connect(&nats.url(), "sigil-e2e").await.unwrap();
        let mut cluster = Cluster {
            nats,
            bus,
            data_dir,
            metrics: Metrics::new(),
            health: Health::new(),
            admin: None,
            admin_serial: String::new(),
            pg,
            shutdown: CancellationToken::new(),
            tasks: Vec::new(),
        };
        cluster.spawn_all(&opts).await;
        eventually(WAIT, "all services ready", || async {
            let report = cluster.health.report();
            (report.components.len() == 5 && report.ready).then_some(())
        })
        .await;
        let (admin, serial) = cluster.admin_credential(&opts).await;
        cluster.admin = Some(Arc::new(admin));
        cluster.admin_serial = serial;
        cluster
    }

    /// Database URL for `service`: its own SQLite file, or the shared PostgreSQL test
    /// database (the store puts each service in its own schema).
    pub fn database_url(&self, service: &str) -> String {
        match &self.pg {
            Some(db) => db.url().to_owned(),
            None => sigil_store_url(self.data_dir.path().join(format!("{service}.db"))),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    async fn runtime(&self, name: &str) -> Runtime {
        let bus = Bus::connect(&self.nats.url(), name).await.unwrap();
        Runtime::new(bus, self.metrics.clone(), self.health.clone())
    }

    fn policy_config(&self, opts: &Options) -> sigil_policy::Config {
        sigil_policy::Config {
            database_url: self.database_url("policy"),
            seed_policies: opts.policies.clone(),
            ..sigil_policy::Config::in_data_dir(self.data_dir.path())
        }
    }

    /// Gets the admin credential as `sigil up` does (a one-use token minted from the
    /// policy database; the issuer generates the key here, which is fine for a test),
    /// writes it to `<data-dir>/admin.cred`, reads it back, and waits until the policy
    /// service knows its principal (from the `identity.issued` event).
    async fn admin_credential(&self, opts: &Options) -> (Credential, String) {
        let names = [ADMIN_NAME.to_owned()];
        let token = sigil_policy::mint_local_token(
            &self.policy_config(opts),
            ADMIN_PRINCIPAL,
            &names,
            600,
            1,
            chrono::Utc::now(),
        )
        .await
        .expect("mint the admin bootstrap token");
        let req = IssueRequest {
            idempotency_key: Some(uuid::Uuid::new_v4().to_string()),
            profile: Profile::TlsClient,
            sans: Sans {
                uri: names.to_vec(),
                ..Sans::default()
            },
            ttl_seconds: 3600,
            csr_pem: None,
            key_algorithm: None,
            proof: Some(Proof::Token { token: token.token }),
        };
        let resp: IssueResponse = self
            .bus
            .request(ISSUER_ISSUE, &req, WAIT)
            .await
            .expect("issue the admin credential");
        let mut chain = vec![resp.certificate_pem.clone()];
        // The root stays out: the verifier has it in the trust bundle.
        chain.extend(
            resp.chain_pem
                .iter()
                .take(resp.chain_pem.len().saturating_sub(1))
                .cloned(),
        );
        let key = resp.private_key_pem.expect("a generated key");
        let written = Credential::from_parts(chain, &key, None).expect("the key is the leaf's");
        let path = self.admin_bundle_path();
        std::fs::write(&path, written.to_pem_bundle()).unwrap();
        let admin = Credential::from_pem_bundle(&std::fs::read_to_string(&path).unwrap())
            .expect("admin.cred reads back");
        eventually(WAIT, "policy knows the admin credential", || async {
            let principal = self.authenticated_principal(&admin).await?;
            (principal == ADMIN_PRINCIPAL).then_some(())
        })
        .await;
        (admin, resp.serial)
    }

    /// The principal the policy service establishes from a proof by `credential` (a
    /// `test` dry run: no nonce is recorded).
    pub async fn authenticated_principal(&self, credential: &Credential) -> Option<String> {
        let probe = TokenCreateRequest {
            principal: ADMIN_PRINCIPAL.to_owned(),
            names: vec![ADMIN_NAME.to_owned()],
            ttl_seconds: 60,
            uses: 1,
            proof: None,
        };
        let operation = POLICY_TOKEN_CREATE.subject();
        let proof = credential
            .proof(&operation, &probe, chrono::Utc::now())
            .unwrap();
        let req = TestRequest::now(EvaluateRequest {
            proof: Some(proof),
            ..EvaluateRequest::admin(POLICY_TOKEN_CREATE, &probe)
        });
        let e: Explanation = self.bus.request(POLICY_TEST, &req, WAIT).await.ok()?;
        Some(e.decision.principal)
    }

    /// The admin credential's PEM bundle (chain and key), as `sigil up` writes it.
    pub fn admin_bundle_path(&self) -> std::path::PathBuf {
        self.data_dir.path().join("admin.cred")
    }

    /// The admin credential.
    pub fn admin(&self) -> &Arc<Credential> {
        self.admin
            .as_ref()
            .expect("the cluster has its admin credential")
    }

    /// Signs `req` for `op` with the admin credential: a fresh proof (its nonce is
    /// single use), so call it again before every send, retries included.
    pub fn prove<T: CarriesProof>(&self, op: Operation, req: &mut T) {
        prove(self.admin(), op, req);
    }

    /// A bootstrap token from `sigil.policy.v1.token_create`, asked as the admin.
    pub async fn token(&self, principal: &str, patterns: &[&str], uses: u32) -> String {
        let mut req = TokenCreateRequest {
            principal: principal.to_owned(),
            names: patterns.iter().map(|p| (*p).to_owned()).collect(),
            ttl_seconds: 600,
            uses,
            proof: None,
        };
        self.prove(POLICY_TOKEN_CREATE, &mut req);
        let resp: TokenCreateResponse = self
            .bus
            .request(POLICY_TOKEN_CREATE, &req, WAIT)
            .await
            .unwrap_or_else(|e| panic!("token_create: {e}"));
        resp.token
    }

    async fn spawn_all(&mut self, opts: &Options) {
        let sd = self.shutdown.clone();

        let rt = self.runtime("sigil-policy").await;
        let cfg = self.policy_config(opts);
        let s = sd.clone();
        self.tasks.push((
            "policy",
            tokio::spawn(async move {
                sigil_policy::run(cfg, rt, s)
                    .await
                    .map_err(|e| e.to_string())
            }),
        ));

        let rt = self.runtime("sigil-issuer").await;
        let cfg = sigil_issuer::Config {
            database_url: self.database_url("issuer"),
            data_dir: self.data_dir.path().to_path_buf(),
            ca_kind: opts.ca_kind,
            ca_algorithm: opts.ca_algorithm.clone(),
            ..Default::default()
        };
        let s = sd.clone();
        self.tasks.push((
            "issuer",
            tokio::spawn(async move {
                sigil_issuer::run(cfg, rt, s)
                    .await
                    .map_err(|e| e.to_string())
            }),
        ));

        let rt = self.runtime("sigil-inventory").await;
        let cfg = sigil_inventory::Config {
            database_url: self.database_url("inventory"),
        };
        let s = sd.clone();
        self.tasks.push((
            "inventory",
            tokio::spawn(async move {
                sigil_inventory::run(cfg, rt, s)
                    .await
                    .map_err(|e| e.to_string())
            }),
        ));

        let rt = self.runtime("sigil-rotation-scheduler").await;
        let cfg = sigil_rotation_scheduler::Config {
            database_url: self.database_url("rotation-scheduler"),
            tick_interval: opts.tick_interval,
            ..Default::default()
        };
        let s = sd.clone();
        self.tasks.push((
            "rotation-scheduler",
            tokio::spawn(async move {
                sigil_rotation_scheduler::run(cfg, rt, s)
                    .await
                    .map_err(|e| e.to_string())
            }),
        ));

        let rt = self.runtime("sigil-revocation").await;
        let cfg = sigil_revocation::Config {
            database_url: self.database_url("revocation"),
            ..Default::default()
        };
        let s = sd.clone();
        self.tasks.push((
            "revocation",
            tokio::spawn(async move {
                sigil_revocation::run(cfg, rt, s)
                    .await
                    .map_err(|e| e.to_string())
            }),
        ));
    }

    /// Stop every service (clean shutdown) and check none failed.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for (name, task) in self.tasks.drain(..) {
            let r = tokio::time::timeout(WAIT, task).await;
            match r {
                Ok(Ok(Ok(()))) => {}
                other => panic!("{name} did not stop cleanly: {other:?}"),
            }
        }
        if let Some(db) = self.pg.take() {
            db.cleanup().await;
        }
    }

    /// Issue a certificate for `dns` with a server-side key, as the admin.
    pub async fn issue(&self, dns: &str, ttl_seconds: i64) -> IssueResponse {
        let mut req = issue_request(dns, ttl_seconds);
        self.prove(ISSUER_ISSUE, &mut req);
        self.bus
            .request(ISSUER_ISSUE, &req, WAIT)
            .await
            .unwrap_or_else(|e| panic!("issue {dns}: {e}"))
    }

    /// Every credential inventory knows but the harness's admin credential, following
    /// cursors.
    pub async fn inventory_all(
        &self,
        mut q: QueryRequest,
    ) -> Vec<sigil_contracts::types::CredentialRecord> {
        let mut out = Vec::new();
        q.limit = Some(500);
        loop {
            let page: QueryResponse = self.bus.request(INVENTORY_QUERY, &q, WAIT).await.unwrap();
            out.extend(
                page.items
                    .into_iter()
                    .filter(|r| r.facts.serial != self.admin_serial),
            );
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return out,
            }
        }
    }

    /// Every event on the stream so far, as JSON, optionally only one subject; events
    /// about the harness's admin credential are left out.
    pub async fn events(&self, subject: Option<&str>) -> Vec<serde_json::Value> {
        let stream = self
            .bus
            .jetstream()
            .get_stream(EVENTS_STREAM)
            .await
            .unwrap();
        let mut info = stream.clone();
        let total = info.info().await.unwrap().state.messages;
        if total == 0 {
            return Vec::new();
        }
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::All,
                filter_subject: subject.unwrap_or("").to_owned(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap();
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_millis(500), messages.next()).await {
                Ok(Some(Ok(m))) => {
                    let event: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                    if event["subject"] != self.admin_serial.as_str() {
                        out.push(event);
                    }
                    if m.info().map(|i| i.pending).unwrap_or(0) == 0 {
                        return out;
                    }
                }
                _ => return out,
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn sigil_store_url(path: PathBuf) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Sets `req.proof` to a fresh possession proof by `credential` for `op`.
pub fn prove<T: CarriesProof>(credential: &Credential, op: Operation, req: &mut T) {
    try_prove(credential, op, req).expect("sign a proof");
}

/// [`prove`], answering the error of a request that cannot be signed (e.g. one with an
/// integer RFC 8785 cannot represent).
pub fn try_prove<T: CarriesProof>(
    credential: &Credential,
    op: Operation,
    req: &mut T,
) -> Result<(), sigil_pki::PkiError> {
    *req.proof_mut() = None;
    let proof = credential.proof(&op.subject(), req, chrono::Utc::now())?;
    *req.proof_mut() = Some(proof);
    Ok(())
}

/// An issue request (without a proof) for one DNS name with a server-generated key.
pub fn issue_request(dns: &str, ttl_seconds: i64) -> IssueRequest {
    IssueRequest {
        idempotency_key: Some(uuid::Uuid::new_v4().to_string()),
        profile: Profile::TlsServer,
        sans: Sans {
            dns: vec![dns.to_owned()],
            ..Default::default()
        },
        ttl_seconds,
        csr_pem: None,
        key_algorithm: None,
        proof: None,
    }
}
