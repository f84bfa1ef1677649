//! A policy service replica for the over-NATS tests: started against a real
//! nats-server and a test database, ready (answering requests) when `start` returns.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use sigil_bus::{Bus, ManualClock, Runtime};
use sigil_contracts::policy::{ListRequest, ListResponse};
use sigil_contracts::subjects::POLICY_LIST;
use sigil_policy::Config;
use sigil_telemetry::{Health, Metrics};
use sigil_testkit::{NatsServer, TestDb, eventually, eventually_ok};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
const TIMEOUT: Duration = Duration::from_secs(5);

pub struct Replica {
    health: Health,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), sigil_policy::Error>>,
}

impl Replica {
    /// Starts a replica on `db`, with `clock` when given.
    pub async fn start(nats: &NatsServer, db: &TestDb, clock: Option<ManualClock>) -> Replica {
        let bus = Bus::connect(&nats.url(), "policy-replica").await.unwrap();
        let health = Health::new();
        let mut rt = Runtime::new(bus, Metrics::new(), health.clone());
        if let Some(c) = clock {
            rt = rt.with_clock(Arc::new(c));
        }
        let config = Config {
            database_url: db.url().to_owned(),
            // Long enough that the tests see the event path, not the poll.
            reload_interval: Duration::from_secs(30),
            ..Config::default()
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sigil_policy::run(config, rt, shutdown.clone()));
        eventually(WAIT, "policy replica ready", || {
            // Ready only counts once the service registered its component.
            let report = health.report();
            async move { (report.components.len() == 1 && report.ready).then_some(()) }
        })
        .await;
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
