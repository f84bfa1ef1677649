//! Sigil inventory: the system of record of every credential.
//!
//! Inventory consumes `identity.issued`, `identity.revoked` and `identity.expired`
//! (durable consumer `inventory`) into its own `credentials` table and answers:
//!
//! - `sigil.inventory.v1.query` ([`QueryRequest`] → [`QueryResponse`]): filter by
//!   status, "expires within N seconds" (`now < not_after <= now + N`) and SAN (exact
//!   or a `*.example.com` suffix pattern), ordered by serial, paginated with an opaque
//!   cursor; `limit` is 1..=500 (default 100).
//! - `sigil.inventory.v1.get` ([`GetRequest`] → [`CredentialRecord`]).
//!
//! Event handling is idempotent (consumer inbox) and tolerates order: a revocation that
//! overtakes its issuance is retried until the issuance is recorded. An active
//! credential past its `not_after` is reported `expired` even before the scheduler's
//! `identity.expired` event arrives (see [`query`]). Every per-request query is an
//! index lookup, so requests stay fast at a million credentials.
//!
//! [`QueryRequest`]: sigil_contracts::inventory::QueryRequest
//! [`QueryResponse`]: sigil_contracts::inventory::QueryResponse
//! [`GetRequest`]: sigil_contracts::inventory::GetRequest
//! [`CredentialRecord`]: sigil_contracts::types::CredentialRecord
#![forbid(unsafe_code)]

pub mod consume;
pub mod entity;
pub mod migration;
pub mod query;

use std::path::Path;

use serde::Deserialize;
use sigil_bus::Runtime;
use sigil_bus::consumer::{self, ConsumerSpec};
use sigil_bus::service::Router;
use sigil_contracts::EventKind;
use sigil_contracts::inventory::{GetRequest, QueryRequest};
use sigil_contracts::subjects::{INVENTORY_GET, INVENTORY_QUERY, Service, event_subject};
use sigil_store::inbox;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use migration::Migrator;

/// Service name: health component, database schema, logs.
pub const SERVICE: &str = "inventory";

/// Inventory configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://…?mode=rwc` or `postgres://…`.
    pub database_url: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: sigil_store::sqlite_url(Path::new(".sigil/inventory.db")),
        }
    }
}

/// Why inventory stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database could not be opened or migrated.
    #[error("inventory database: {0}")]
    Store(#[from] sigil_store::StoreError),
    /// NATS failed: stream setup, the consumer or the endpoints.
    #[error("inventory NATS: {0}")]
    Bus(#[from] sigil_bus::BusError),
    /// A task of the service ended abnormally (panicked or was aborted).
    #[error("inventory task failed: {0}")]
    Task(String),
}

/// Run inventory until `shutdown` is cancelled; in-flight work drains first.
pub async fn run(config: Config, rt: Runtime, shutdown: CancellationToken) -> Result<(), Error> {
    rt.health.register(SERVICE);
    let db = sigil_store::open::<Migrator>(&config.database_url, SERVICE).await?;
    rt.bus.ensure_stream().await?;

    // Cancelled on shutdown, or when one task fails so the others stop too.
    let stop = shutdown.child_token();
    let mut tasks: JoinSet<Result<(), Error>> = JoinSet::new();

    let spec = ConsumerSpec::new(
        consume::DURABLE,
        [
            EventKind::IdentityIssued,
            EventKind::IdentityRevoked,
            EventKind::IdentityExpired,
        ]
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

    let router = {
        let (qdb, qclock) = (db.clone(), rt.clock.clone());
        let (gdb, gclock) = (db.clone(), rt.clock.clone());
        Router::new(
            Service::Inventory,
            "Sigil inventory: the system of record of credentials",
        )
        .ready(rt.health.clone(), SERVICE)
        .route(INVENTORY_QUERY, move |req: QueryRequest| {
            let (db, clock) = (qdb.clone(), qclock.clone());
            async move {
                let parsed = query::ParsedQuery::parse(&req)?;
                query::run_query(&db, &parsed, clock.now()).await
            }
        })
        .route(INVENTORY_GET, move |req: GetRequest| {
            let (db, clock) = (gdb.clone(), gclock.clone());
            async move { query::get(&db, &req.serial, clock.now()).await }
        })
    };
    {
        let (bus, metrics, stop) = (rt.bus.clone(), rt.metrics.clone(), stop.clone());
        tasks.spawn(async move { Ok(router.serve(&bus, metrics, stop).await?) });
    }

    tracing::info!("inventory serving");
    let result = sigil_bus::launch::supervise("inventory", &mut tasks, &stop, |e| {
        Error::Task(e.to_string())
    })
    .await;
    rt.health.set_ready(SERVICE, false);
    db.close().await.ok();
    result
}
