//! Sigil rotation scheduler: remembers time for every live credential.
//!
//! It consumes `identity.issued` and `identity.revoked` (durable consumer
//! `rotation-scheduler`) into its own `tracked` table, computing each credential's
//! renewal time with the pure [`schedule::renew_at`] (two thirds into the lifetime,
//! minus a per-serial jitter of up to 5% of it). A ticker ([`ticker::tick`], every
//! [`Config::tick_interval`]) announces, through the transactional outbox:
//!
//! - `identity.renewal_due` once per credential when its renewal time passes;
//! - `identity.expired` once per credential when its `not_after` passes.
//!
//! A revoked credential gets neither. Replicas may share one database: every
//! announcement is a conditional state change, so each happens at most once (see
//! [`ticker`]), and the outbox relay publishes with `Nats-Msg-Id` = event id, so a row
//! relayed by two replicas lands on the stream once.
#![forbid(unsafe_code)]

pub mod consume;
pub mod entity;
pub mod migration;
pub mod schedule;
pub mod ticker;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use sigil_bus::Runtime;
use sigil_bus::consumer::{self, ConsumerSpec};
use sigil_contracts::EventKind;
use sigil_contracts::subjects::event_subject;
use sigil_store::inbox;
use sigil_store::outbox::Outbox;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use migration::Migrator;
pub use ticker::{TickReport, tick};

/// Service name: health component, database schema, outbox metrics, logs.
pub const SERVICE: &str = "rotation-scheduler";

/// Scheduler configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://…?mode=rwc` or `postgres://…`.
    pub database_url: String,
    /// Time between scans, e.g. `"10s"` or a number of seconds (default 10 s).
    #[serde(deserialize_with = "duration")]
    pub tick_interval: Duration,
    /// Rows looked at per scan and kind (default 500).
    pub batch_size: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: sigil_store::sqlite_url(Path::new(".sigil/rotation-scheduler.db")),
            tick_interval: Duration::from_secs(10),
            batch_size: 500,
        }
    }
}

/// Accept `"1500ms"`/`"10s"` (humantime) or a plain number of seconds.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => humantime::parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable (e.g. a zero tick interval or batch size).
    #[error("rotation-scheduler config: {0}")]
    Config(String),
    /// The database could not be opened or migrated.
    #[error("rotation-scheduler database: {0}")]
    Store(#[from] sigil_store::StoreError),
    /// NATS failed: stream setup or the consumer.
    #[error("rotation-scheduler NATS: {0}")]
    Bus(#[from] sigil_bus::BusError),
    /// A task of the service ended abnormally (panicked or was aborted).
    #[error("rotation-scheduler task failed: {0}")]
    Task(String),
}

/// Run the scheduler until `shutdown` is cancelled; in-flight work drains first.
pub async fn run(config: Config, rt: Runtime, shutdown: CancellationToken) -> Result<(), Error> {
    if config.tick_interval.is_zero() {
        return Err(Error::Config("tick_interval must be positive".to_owned()));
    }
    if config.batch_size == 0 {
        return Err(Error::Config("batch_size must be positive".to_owned()));
    }
    rt.health.register(SERVICE);
    let db = sigil_store::open::<Migrator>(&config.database_url, SERVICE).await?;
    rt.bus.ensure_stream().await?;

    // Cancelled on shutdown, or when one task fails so the others stop too.
    let stop = shutdown.child_token();
    let mut tasks: JoinSet<Result<(), Error>> = JoinSet::new();
    let outbox = Outbox::new(db.clone());

    let spec = ConsumerSpec::new(
        consume::DURABLE,
        [EventKind::IdentityIssued, EventKind::IdentityRevoked]
            .into_iter()
            .map(event_subject)
            .collect(),
    );
    {
        let handler = inbox::batch_handler(
            db.clone(),
            consume::DURABLE,
            inbox::with_clock(rt.clock.clone(), |txn, delivery, now| {
                Box::pin(consume::handle(txn, delivery, now))
            }),
        );
        let (bus, metrics, stop) = (rt.bus.clone(), rt.metrics.clone(), stop.clone());
        tasks.spawn(
            async move { Ok(consumer::run_batched(bus, spec, metrics, stop, handler).await?) },
        );
    }
    {
        let (bus, metrics, stop, outbox) = (
            rt.bus.clone(),
            rt.metrics.clone(),
            stop.clone(),
            outbox.clone(),
        );
        tasks.spawn(async move {
            outbox.relay(bus, SERVICE, metrics, stop).await;
            Ok(())
        });
    }
    {
        let (db, clock, stop) = (db.clone(), rt.clock.clone(), stop.clone());
        let (interval, batch) = (config.tick_interval, config.batch_size);
        tasks.spawn(async move {
            ticker::run_loop(db, outbox, clock, interval, batch, stop).await;
            Ok(())
        });
    }

    rt.health.set_ready(SERVICE, true);
    tracing::info!(tick_interval = ?config.tick_interval, "rotation-scheduler running");
    let result = sigil_bus::launch::supervise("rotation-scheduler", &mut tasks, &stop, |e| {
        Error::Task(e.to_string())
    })
    .await;
    rt.health.set_ready(SERVICE, false);
    db.close().await.ok();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_durations_both_ways() {
        let c: Config = serde_json::from_str(r#"{"tick_interval":"1500ms"}"#).unwrap();
        assert_eq!(c.tick_interval, Duration::from_millis(1500));
        assert_eq!(c.batch_size, 500);
        let c: Config = serde_json::from_str(r#"{"tick_interval":3}"#).unwrap();
        assert_eq!(c.tick_interval, Duration::from_secs(3));
        assert!(serde_json::from_str::<Config>(r#"{"tick_interval":"soon"}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"bogus":1}"#).is_err());
        assert_eq!(Config::default().tick_interval, Duration::from_secs(10));
    }
}
