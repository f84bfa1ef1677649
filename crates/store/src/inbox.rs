//! The consumer inbox: which events a consumer has already applied.
//!
//! A consumer calls [`first_delivery`] inside the transaction that applies an event;
//! on a redelivery it returns `false` and the consumer changes nothing. The ack is
//! sent after the commit, so a crash between commit and ack is harmless.
//!
//! [`apply_batch`] applies every delivery a batched consumer
//! ([`sigil_bus::consumer::run_batched`]) received in one transaction and commits
//! once. Its handlers ([`ApplyEvent`]) call [`first_delivery`] on that transaction
//! and never commit themselves. When any handler of a batch fails, the batch is
//! rolled back and each delivery is applied again in its own transaction, so one
//! event's failure never loses or blocks the others.
//!
//! Rows are kept for [`KEEP_PROCESSED`] and then pruned by the [`batch_handler`] (at
//! its first batch and every [`PRUNE_EVERY`] after), so the table stays bounded.

use std::future::Future;
use std::pin::Pin;

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DatabaseTransaction, Set, TransactionTrait};
use sigil_bus::consumer::{Delivery, HandleError};
use tracing::Instrument as _;

/// The `inbox` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub processed_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// How long a processed event's row is kept. JetStream redelivers an event only until
/// the durable consumer's ack floor passes it: at most `ack_wait × max_deliver` after
/// the first delivery (10 minutes with the defaults of
/// [`sigil_bus::consumer::ConsumerSpec`]). A week is that with a wide margin, covering
/// a consumer that is paused or a service that is down for days.
pub const KEEP_PROCESSED: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
/// How often a [`batch_handler`] prunes its consumer's old rows.
pub const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes `consumer`'s rows processed before `before`; returns how many.
pub async fn prune_processed<C: ConnectionTrait>(
    conn: &C,
    consumer: &str,
    before: chrono::DateTime<Utc>,
) -> Result<u64, DbErr> {
    let deleted = entity::Entity::delete_many()
        .filter(entity::Column::Consumer.eq(consumer.to_owned()))
        .filter(entity::Column::ProcessedAt.lt(before))
        .exec(conn)
        .await?;
    Ok(deleted.rows_affected)
}

/// Record that `consumer` applies `event_id`; `false` if it already did.
pub async fn first_delivery<C: ConnectionTrait>(
    conn: &C,
    consumer: &str,
    event_id: &str,
) -> Result<bool, DbErr> {
    let row = entity::ActiveModel {
        consumer: Set(consumer.to_owned()),
        event_id: Set(event_id.to_owned()),
        processed_at: Set(Utc::now()),
    };
    let inserted = entity::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([entity::Column::Consumer, entity::Column::EventId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(inserted == 1)
}

/// A database error while applying an event: [`HandleError::Retry`], so the event is
/// redelivered later.
pub fn retry(e: DbErr) -> HandleError {
    HandleError::Retry(format!("database: {e}"))
}

/// Applies one event inside a transaction it does not own (see [`apply_batch`]): it
/// starts with [`first_delivery`] (returning success at once for a redelivery), makes
/// its changes on `txn` and returns; an error means "roll my changes back".
pub trait ApplyEvent: Send + Sync {
    fn apply<'a>(&'a self, txn: &'a DatabaseTransaction, delivery: &'a Delivery)
    -> EventFuture<'a>;
}

/// An [`ApplyEvent`] made of a function of the transaction, the delivery and the time
/// on `clock` when the delivery is applied (see [`with_clock`]).
pub struct WithClock<F> {
    clock: std::sync::Arc<dyn sigil_bus::Clock>,
    apply: F,
}

impl<F> std::fmt::Debug for WithClock<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithClock")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// Applies events with `apply(txn, delivery, clock.now())`.
pub fn with_clock<F>(clock: std::sync::Arc<dyn sigil_bus::Clock>, apply: F) -> WithClock<F>
where
    F: for<'a> Fn(&'a DatabaseTransaction, &'a Delivery, chrono::DateTime<Utc>) -> EventFuture<'a>
        + Send
        + Sync,
{
    WithClock { clock, apply }
}

impl<F> ApplyEvent for WithClock<F>
where
    F: for<'a> Fn(&'a DatabaseTransaction, &'a Delivery, chrono::DateTime<Utc>) -> EventFuture<'a>
        + Send
        + Sync,
{
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        delivery: &'a Delivery,
    ) -> EventFuture<'a> {
        (self.apply)(txn, delivery, self.clock.now())
    }
}

/// What [`ApplyEvent::apply`] returns.
pub type EventFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HandleError>> + Send + 'a>>;

/// What a [`batch_handler`] returns: one result per delivery.
pub type BatchFuture = Pin<Box<dyn Future<Output = Vec<Result<(), HandleError>>> + Send>>;

/// The handler for [`sigil_bus::consumer::run_batched`] that applies each batch with
/// [`apply_batch`] on `db`. After its first batch, and then every [`PRUNE_EVERY`], it
/// deletes the consumer's inbox rows older than [`KEEP_PROCESSED`] (a failure is
/// logged and retried at the next prune; it never fails a batch).
pub fn batch_handler<A: ApplyEvent + 'static>(
    db: sea_orm::DatabaseConnection,
    consumer: &'static str,
    apply: A,
) -> impl Fn(Vec<Delivery>) -> BatchFuture + Send + Sync {
    let apply = std::sync::Arc::new(apply);
    let pruned_at = std::sync::Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    move |batch: Vec<Delivery>| {
        let (db, apply, pruned_at) = (db.clone(), apply.clone(), pruned_at.clone());
        Box::pin(async move {
            let results = apply_batch(&db, consumer, apply.as_ref(), &batch).await;
            if prune_due(&pruned_at) {
                let keep =
                    chrono::Duration::from_std(KEEP_PROCESSED).unwrap_or(chrono::Duration::days(7));
                match prune_processed(&db, consumer, Utc::now() - keep).await {
                    Ok(n) => tracing::debug!(consumer, rows = n, "pruned old inbox rows"),
                    Err(e) => tracing::warn!(consumer, error = %e, "cannot prune the inbox"),
                }
            }
            results
        })
    }
}

/// True (and the mark moved to now) when no prune ran yet or the last one is
/// [`PRUNE_EVERY`] old.
fn prune_due(pruned_at: &std::sync::Mutex<Option<std::time::Instant>>) -> bool {
    let Ok(mut last) = pruned_at.lock() else {
        return false;
    };
    if last.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
        return false;
    }
    *last = Some(std::time::Instant::now());
    true
}

/// Applies `batch` in order inside one transaction of `db` and commits once; returns
/// one result per delivery, in order.
///
/// When a handler fails, the whole transaction is rolled back and every delivery is
/// applied again in a transaction of its own (committed on success, rolled back on
/// error), so each gets its own outcome. When a transaction cannot begin or commit,
/// its deliveries get [`HandleError::Retry`]: nothing of them was applied, and the
/// redelivered events are applied afresh (their inbox rows were rolled back too).
pub async fn apply_batch<C, A>(
    db: &C,
    consumer: &str,
    handler: &A,
    batch: &[Delivery],
) -> Vec<Result<(), HandleError>>
where
    C: TransactionTrait,
    A: ApplyEvent + ?Sized,
{
    if batch.len() > 1 {
        match apply_together(db, consumer, handler, batch).await {
            Ok(results) => return results,
            Err(why) => {
                tracing::debug!(consumer, events = batch.len(), %why, "applying the batch's events one by one")
            }
        }
    }
    let mut results = Vec::with_capacity(batch.len());
    for delivery in batch {
        results.push(apply_alone(db, consumer, handler, delivery).await);
    }
    results
}

/// Every delivery in one transaction; `Err` (rolled back) when any handler failed or
/// the transaction could not begin or commit.
async fn apply_together<C, A>(
    db: &C,
    consumer: &str,
    handler: &A,
    batch: &[Delivery],
) -> Result<Vec<Result<(), HandleError>>, String>
where
    C: TransactionTrait,
    A: ApplyEvent + ?Sized,
{
    let txn = db.begin().await.map_err(|e| e.to_string())?;
    for delivery in batch {
        let span = delivery.span(consumer);
        handler
            .apply(&txn, delivery)
            .instrument(span)
            .await
            .map_err(|e| e.to_string())?;
    }
    txn.commit().await.map_err(|e| e.to_string())?;
    Ok(batch.iter().map(|_| Ok(())).collect())
}

async fn apply_alone<C, A>(
    db: &C,
    consumer: &str,
    handler: &A,
    delivery: &Delivery,
) -> Result<(), HandleError>
where
    C: TransactionTrait,
    A: ApplyEvent + ?Sized,
{
    let txn = db.begin().await.map_err(retry)?;
    let span = delivery.span(consumer);
    handler.apply(&txn, delivery).instrument(span).await?;
    txn.commit().await.map_err(retry)
}

pub use migration::Migration;

mod migration {
    use sea_orm_migration::prelude::*;

    /// Migration creating the `inbox` table; every consuming service includes it.
    #[derive(Debug, DeriveMigrationName)]
    pub struct Migration;

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table(Alias::new("inbox"))
                        .if_not_exists()
                        .col(ColumnDef::new(Alias::new("consumer")).string().not_null())
                        .col(ColumnDef::new(Alias::new("event_id")).string().not_null())
                        .col(
                            ColumnDef::new(Alias::new("processed_at"))
                                .timestamp_with_time_zone()
                                .not_null(),
                        )
                        .primary_key(
                            Index::create()
                                .col(Alias::new("consumer"))
                                .col(Alias::new("event_id")),
                        )
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table(Alias::new("inbox")).to_owned())
                .await
        }
    }
}
