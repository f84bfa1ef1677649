//! A policy service replica for the over-NATS tests: started against a real
//! nats-server and a test database, ready (answering requests) when `start` returns.
//! [`Replica::start`] lets requests without proof through as `anonymous` (tests of
//! other features); [`Replica::start_authenticated`] refuses them, as in production.
//! [`auth`] has what the authentication tests need besides: certificates, fake issuer
//! and revocation responders, tokens.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod auth;

use std::sync::Arc;
use std::time::Duration;

use sigil_bus::{Bus, ManualClock, Runtime};
use sigil_contracts::policy::{ListRequest, ListResponse};
use sigil_contracts::subjects::POLICY_LIST;
use sigil_policy::Config;
use sigil_telemetry::{Health, Metrics};
use sigil_testkit::{NatsServer, TestDb, eventually_ok};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
const TIMEOUT: Duration = Duration::from_secs(5);

pub struct Replica {
    health: Health,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), sigil_policy::Error>>,
}

/// The configuration replicas run with on `db`: anonymous requests refused.
pub fn config(db: &TestDb) -> Config {
    Config {
        database_url: db.url().to_owned(),
        // Long enough that the tests see the event path, not the poll.
        reload_interval: Duration::from_secs(30),
        auth_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

impl Replica {
    /// Starts a replica on `db`, with `clock` when given, that decides requests without
    /// proof as `anonymous` (for tests of everything but authentication).
    pub async fn start(nats: &NatsServer, db: &TestDb, clock: Option<ManualClock>) -> Replica {
        let config = Config {
            allow_anonymous: true,
            ..config(db)
        };
        Replica::start_with(nats, config, clock).await
    }

    /// Starts a replica on `db` that refuses requests without proof.
    pub async fn start_authenticated(
        nats: &NatsServer,
        db: &TestDb,
        clock: Option<ManualClock>,
    ) -> Replica {
        Replica::start_with(nats, config(db), clock).await
    }

    /// Starts a replica with `config`.
    pub async fn start_with(
        nats: &NatsServer,
        config: Config,
        clock: Option<ManualClock>,
    ) -> Replica {
        let bus = Bus::connect(&nats.url(), "policy-replica").await.unwrap();
        let health = Health::new();
        let mut rt = Runtime::new(bus, Metrics::new(), health.clone());
        if let Some(c) = clock {
            rt = rt.with_clock(Arc::new(c));
        }
        let shutdown = CancellationToken::new();
        let mut task = tokio::spawn(sigil_policy::run(config, rt, shutdown.clone()));
        let ready = tokio::time::timeout(WAIT, async {
            loop {
                // Ready only counts once the service registered its component.
                let report = health.report();
                if report.components.len() == 1 && report.ready {
                    return;
                }
                if task.is_finished() {
                    panic!(
                        "the policy replica stopped while starting: {:?}",
                        (&mut task).await
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            ready.is_ok(),
            "timed out after {WAIT:?} waiting for: policy replica ready"
        );
        // Ready means subscribed, but a client on another connection may still get
        // "no responders" for a moment: wait until a request is answered.
        let probe = Bus::connect(&nats.url(), "policy-probe").await.unwrap();
        let all = ListRequest::default();
        let _: ListResponse = eventually_ok(WAIT, "policy answers", || {
            probe.request(POLICY_LIST, &all, TIMEOUT)
        })
        .await;
        Replica {
            health,
            shutdown,
            task,
        }
    }

    /// Stops it and checks it shut down cleanly and reports not ready.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(!self.health.is_ready());
    }
}
