//! The transactional outbox.
//!
//! A service writes its state change and [`enqueue`]s the event announcing it in the
//! same database transaction, then calls [`Outbox::wake`]. The [`Outbox::relay`] task
//! publishes unsent rows in order with `Nats-Msg-Id` = event id and marks them sent
//! only after the JetStream ack. A crash before the mark means the row is published
//! again, and JetStream's dedupe window drops the copy: nothing lost, nothing doubled.
//! While NATS is away the relay retries with backoff. Published rows are deleted
//! after [`KEEP_SENT`], so the table holds what is pending plus a day of history.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryOrder, QuerySelect, Set};
use sigil_bus::{Bus, OutgoingEvent};
use sigil_contracts::{CloudEvent, EventData};
use sigil_telemetry::Metrics;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Rows published per relay round.
const BATCH: u64 = 256;
/// How long published rows are kept (for inspection) before the relay deletes them:
/// well past JetStream's 2-hour dedupe window, after which a re-publish would no
/// longer be dropped anyway.
pub const KEEP_SENT: Duration = Duration::from_secs(24 * 3600);
/// How often, at most, the relay counts unsent rows for the `sigil_outbox_pending`
/// gauge (the relay also wakes at least once a second, so the gauge is never more
/// than about this old).
const COUNT_EVERY: Duration = Duration::from_secs(1);
/// How often the relay prunes published rows.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The `outbox` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub seq: i64,
        #[sea_orm(unique)]
        pub event_id: String,
        pub subject: String,
        #[sea_orm(column_type = "Text")]
        pub payload: String,
        pub traceparent: Option<String>,
        pub created_at: ChronoDateTimeUtc,
        pub sent_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Write `event` to the outbox inside the caller's transaction.
pub async fn enqueue<C: ConnectionTrait, T: EventData>(
    conn: &C,
    event: &CloudEvent<T>,
) -> Result<(), DbErr> {
    enqueue_many(conn, &[event]).await
}

/// Write `events` to the outbox inside the caller's transaction, in order, with one
/// multi-row INSERT (nothing is read back). Nothing is written for an empty slice.
pub async fn enqueue_many<C: ConnectionTrait, T: EventData>(
    conn: &C,
    events: &[&CloudEvent<T>],
) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        let payload = serde_json::to_string(event)
            .map_err(|e| DbErr::Custom(format!("cannot encode event: {e}")))?;
        rows.push(entity::ActiveModel {
            event_id: Set(event.id.clone()),
            subject: Set(event.nats_subject()),
            payload: Set(payload),
            traceparent: Set(event.traceparent.clone()),
            created_at: Set(event.time),
            sent_at: Set(None),
            ..Default::default()
        });
    }
    entity::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Deletes rows published before `before`; returns how many. Unsent rows are never
/// deleted. The relay calls it with `now - `[`KEEP_SENT`].
pub async fn prune_sent(db: &DatabaseConnection, before: DateTime<Utc>) -> Result<u64, DbErr> {
    entity::Entity::delete_many()
        .filter(entity::Column::SentAt.is_not_null())
        .filter(entity::Column::SentAt.lt(before))
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}

/// Number of events not yet acknowledged by JetStream.
pub async fn pending(db: &DatabaseConnection) -> Result<u64, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::SentAt.is_null())
        .count(db)
        .await
}

/// Handle to a service's outbox: wake the relay after a commit, run the relay.
#[derive(Clone, Debug)]
pub struct Outbox {
    db: DatabaseConnection,
    notify: Arc<Notify>,
}

impl Outbox {
    pub fn new(db: DatabaseConnection) -> Self {
        Outbox {
            db,
            notify: Arc::new(Notify::new()),
        }
    }

    /// Tell the relay that new rows were committed.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Publish unsent events until `shutdown`; then make one last attempt to drain.
    pub async fn relay(
        self,
        bus: Bus,
        service: &'static str,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(50);
        let mut pruned_at = tokio::time::Instant::now();
        let mut counted_at = None;
        loop {
            if pruned_at.elapsed() >= PRUNE_EVERY {
                pruned_at = tokio::time::Instant::now();
                self.prune(service).await;
            }
            let published = self.publish_batch(&bus, service, &metrics).await;
            self.count_pending(service, &metrics, &mut counted_at).await;
            match published {
                Ok(n) if n as u64 == BATCH => continue,
                Ok(_) => {
                    backoff = Duration::from_millis(50);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.notify.notified() => {}
                        // Safety net for rows committed without a wake (e.g. by a
                        // replica or before a restart).
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(service, error = %e, ?backoff, "outbox relay cannot publish; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Drain what we can on the way out; whatever is left is sent after restart.
        if let Err(e) = self.publish_batch(&bus, service, &metrics).await {
            tracing::info!(service, error = %e, "outbox not drained at shutdown; will resume");
        }
    }

    /// Deletes rows published more than [`KEEP_SENT`] ago (logged on failure; the
    /// next round tries again).
    async fn prune(&self, service: &'static str) {
        let keep = chrono::Duration::from_std(KEEP_SENT).unwrap_or(chrono::Duration::days(1));
        let before = Utc::now() - keep;
        match prune_sent(&self.db, before).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(service, rows = n, "pruned published outbox rows"),
            Err(e) => tracing::warn!(service, error = %e, "cannot prune the outbox"),
        }
    }

    /// Sets the pending-events gauge, counting at most once per [`COUNT_EVERY`]
    /// (`counted_at` is when it last did): a count per published batch would be one
    /// more query per issuance under load.
    async fn count_pending(
        &self,
        service: &'static str,
        metrics: &Metrics,
        counted_at: &mut Option<tokio::time::Instant>,
    ) {
        if counted_at.is_some_and(|t| t.elapsed() < COUNT_EVERY) {
            return;
        }
        *counted_at = Some(tokio::time::Instant::now());
        if let Ok(n) = pending(&self.db).await {
            metrics.set_outbox_pending(service, n);
        }
    }

    /// Publish one batch in order; returns how many rows were sent.
    async fn publish_batch(
        &self,
        bus: &Bus,
        service: &'static str,
        metrics: &Metrics,
    ) -> Result<usize, String> {
        let rows = entity::Entity::find()
            .filter(entity::Column::SentAt.is_null())
            .order_by_asc(entity::Column::Seq)
            .limit(BATCH)
            .all(&self.db)
            .await
            .map_err(|e| e.to_string())?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Pipelined: send the whole batch, then collect acks in order.
        let events: Vec<OutgoingEvent> = rows
            .iter()
            .map(|row| OutgoingEvent {
                subject: row.subject.clone(),
                id: row.event_id.clone(),
                payload: row.payload.clone().into(),
                traceparent: row.traceparent.clone(),
            })
            .collect();
        let (result, acked) = bus.publish_events(&events).await;
        if acked > 0 {
            // One UPDATE marks every acknowledged row (a prefix of the batch).
            let now: DateTime<Utc> = Utc::now();
            let seqs: Vec<i64> = rows[..acked].iter().map(|r| r.seq).collect();
            entity::Entity::update_many()
                .col_expr(entity::Column::SentAt, Expr::value(now))
                .filter(entity::Column::Seq.is_in(seqs))
                .exec(&self.db)
                .await
                .map_err(|e| e.to_string())?;
            for _ in 0..acked {
                metrics.event_published(service);
            }
        }
        result.map_err(|e| e.to_string())?;
        let sent = acked;
        Ok(sent)
    }
}

pub use migration::Migration;

mod migration {
    use sea_orm_migration::prelude::*;

    /// Migration creating the `outbox` table; every service with events includes it.
    #[derive(Debug, DeriveMigrationName)]
    pub struct Migration;

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table(Alias::new("outbox"))
                        .if_not_exists()
                        .col(
                            ColumnDef::new(Alias::new("seq"))
                                .big_integer()
                                .not_null()
                                .auto_increment()
                                .primary_key(),
                        )
                        .col(
                            ColumnDef::new(Alias::new("event_id"))
                                .string()
                                .not_null()
                                .unique_key(),
                        )
                        .col(ColumnDef::new(Alias::new("subject")).string().not_null())
                        .col(ColumnDef::new(Alias::new("payload")).text().not_null())
                        .col(ColumnDef::new(Alias::new("traceparent")).string().null())
                        .col(
                            ColumnDef::new(Alias::new("created_at"))
                                .timestamp_with_time_zone()
                                .not_null(),
                        )
                        .col(
                            ColumnDef::new(Alias::new("sent_at"))
                                .timestamp_with_time_zone()
                                .null(),
                        )
                        .to_owned(),
                )
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name("idx_outbox_unsent")
                        .table(Alias::new("outbox"))
                        .col(Alias::new("sent_at"))
                        .col(Alias::new("seq"))
                        .if_not_exists()
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table(Alias::new("outbox")).to_owned())
                .await
        }
    }
}
