//! The cross-service test harness: a real nats-server (free port, temp store) and all
//! five Sigil services running in this process, each with its own NATS connection and
//! its own database: a SQLite file per service, or, when `SIGIL_TEST_DATABASE_URL` is
//! set, one fresh PostgreSQL database with a schema per service.
#![forbid(unsafe_code)]
// Test-support code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use sigil_bus::{Bus, Runtime};
use sigil_contracts::inventory::{QueryRequest, QueryResponse};
use sigil_contracts::issuer::{IssueRequest, IssueResponse};
use sigil_contracts::subjects::{EVENTS_STREAM, INVENTORY_QUERY, ISSUER_ISSUE};
use sigil_contracts::types::{Profile, Sans};
use sigil_telemetry::{Health, Metrics};
use sigil_testkit::{NatsServer, TestDb, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Default timeout for waits in scenarios.
pub const WAIT: Duration = Duration::from_secs(20);

/// Knobs a scenario may turn.
#[derive(Debug, Clone)]
pub struct Options {
    /// Cedar policies seeded as version 1; the built-in default set when `None`.
    pub policies: Option<String>,
    pub tick_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policies: None,
            tick_interval: Duration::from_millis(200),
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

    async fn spawn_all(&mut self, opts: &Options) {
        let sd = self.shutdown.clone();

        let rt = self.runtime("sigil-policy").await;
        let cfg = sigil_policy::Config {
            database_url: self.database_url("policy"),
            seed_policies: opts.policies.clone(),
            ..sigil_policy::Config::in_data_dir(self.data_dir.path())
        };
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

    /// Issue a certificate for `dns` with a server-side key.
    pub async fn issue(&self, dns: &str, ttl_seconds: i64) -> IssueResponse {
        self.bus
            .request(ISSUER_ISSUE, &issue_request(dns, ttl_seconds), WAIT)
            .await
            .unwrap_or_else(|e| panic!("issue {dns}: {e}"))
    }

    /// Every credential inventory knows, following cursors.
    pub async fn inventory_all(
        &self,
        mut q: QueryRequest,
    ) -> Vec<sigil_contracts::types::CredentialRecord> {
        let mut out = Vec::new();
        q.limit = Some(500);
        loop {
            let page: QueryResponse = self.bus.request(INVENTORY_QUERY, &q, WAIT).await.unwrap();
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return out,
            }
        }
    }

    /// Every event on the stream so far, as JSON, optionally only one subject.
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
                    out.push(serde_json::from_slice(&m.payload).unwrap());
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

/// An issue request for one DNS name with a server-generated P-256 key.
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
        principal: Some("e2e".to_owned()),
    }
}
