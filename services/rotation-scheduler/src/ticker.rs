//! The periodic scan that turns due rows into events.
//!
//! Each tick, with the injected clock's `now`:
//! 1. rows in a live state with `not_after <= now` become `expired` and announce
//!    `identity.expired`;
//! 2. rows still `tracking` with `renew_at <= now` (and not expired) become
//!    `renewal_announced` and announce `identity.renewal_due`.
//!
//! Expiry goes first so a scheduler that was down past a credential's end does not
//! announce a pointless renewal. Each row changes in its own transaction whose first
//! statement is a conditional `UPDATE … WHERE serial = ? AND state IN (…)`; the event
//! is enqueued only when that update touched the row. Replicas sharing one database
//! therefore announce each credential at most once: the loser of a race updates
//! nothing and enqueues nothing. Starting with the write (rather than a read) also
//! lets SQLite's busy timeout serialise the replicas instead of failing them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use sigil_bus::Clock;
use sigil_contracts::event::{IdentityExpired, IdentityRenewalDue, source_for};
use sigil_contracts::subjects::Service;
use sigil_contracts::{CloudEvent, EventData};
use sigil_store::outbox::{self, Outbox};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::entity::tracked::{self, State};

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// `identity.renewal_due` events enqueued by this tick.
    pub renewals_announced: u64,
    /// `identity.expired` events enqueued by this tick.
    pub expirations_announced: u64,
    /// A scan returned a full batch: more rows may be due right now.
    pub more: bool,
}

impl TickReport {
    /// Whether the tick enqueued any event.
    pub fn enqueued(&self) -> bool {
        self.renewals_announced + self.expirations_announced > 0
    }
}

/// Run one scan at `now`, looking at up to `batch` rows per kind.
pub async fn tick(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    batch: u64,
) -> Result<TickReport, DbErr> {
    let mut report = TickReport::default();
    let source = source_for(Service::RotationScheduler);

    let expiring = tracked::Entity::find()
        .filter(tracked::Column::State.is_in(State::LIVE))
        .filter(tracked::Column::NotAfter.lte(now))
        .order_by_asc(tracked::Column::NotAfter)
        .limit(batch)
        .all(db)
        .await?;
    report.more |= expiring.len() as u64 == batch;
    for row in expiring {
        let event = IdentityExpired {
            serial: row.serial.clone(),
            not_after: row.not_after,
        };
        if transition(
            db,
            &row.serial,
            &State::LIVE,
            State::Expired,
            &source,
            event,
            now,
        )
        .await?
        {
            report.expirations_announced += 1;
        }
    }

    let renewing = tracked::Entity::find()
        .filter(tracked::Column::State.eq(State::Tracking))
        .filter(tracked::Column::RenewAt.lte(now))
        .filter(tracked::Column::NotAfter.gt(now))
        .order_by_asc(tracked::Column::RenewAt)
        .limit(batch)
        .all(db)
        .await?;
    report.more |= renewing.len() as u64 == batch;
    for row in renewing {
        let event = IdentityRenewalDue {
            serial: row.serial.clone(),
            renew_at: row.renew_at,
            not_after: row.not_after,
        };
        let from = [State::Tracking];
        if transition(
            db,
            &row.serial,
            &from,
            State::RenewalAnnounced,
            &source,
            event,
            now,
        )
        .await?
        {
            report.renewals_announced += 1;
        }
    }
    Ok(report)
}

/// Move `serial` from one of `from` to `to` and enqueue `data`, in one transaction;
/// `false` (and nothing written) when the row was no longer in `from`.
async fn transition<T: EventData>(
    db: &DatabaseConnection,
    serial: &str,
    from: &[State],
    to: State,
    source: &str,
    data: T,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let span = tracing::info_span!("announce", %serial, event = T::KIND.event_type());
    async move {
        let txn = db.begin().await?;
        let updated = tracked::Entity::update_many()
            .col_expr(tracked::Column::State, Expr::value(to))
            .col_expr(tracked::Column::UpdatedAt, Expr::value(now))
            .filter(tracked::Column::Serial.eq(serial))
            .filter(tracked::Column::State.is_in(from.iter().copied()))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            // Another replica got there first (or the row was revoked meanwhile).
            txn.rollback().await?;
            return Ok(false);
        }
        let event = CloudEvent::new(source, data, now, sigil_telemetry::current_traceparent());
        outbox::enqueue(&txn, &event).await?;
        txn.commit().await?;
        tracing::info!(event_id = %event.id, "announced");
        Ok(true)
    }
    .instrument(span)
    .await
}

/// Tick every `interval` until `shutdown`, the first time after a random delay of at
/// most `interval` so restarted replicas do not stampede. A tick that hit a full
/// batch is followed at once by another.
pub async fn run_loop(
    db: DatabaseConnection,
    outbox: Outbox,
    clock: std::sync::Arc<dyn Clock>,
    interval: Duration,
    batch: u64,
    shutdown: CancellationToken,
) {
    let first = rand::thread_rng().gen_range(Duration::ZERO..=interval);
    let mut delay = first;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = interval;
        match tick(&db, clock.now(), batch).await {
            Ok(report) => {
                if report.enqueued() {
                    outbox.wake();
                    tracing::debug!(?report, "tick");
                }
                if report.more && report.enqueued() {
                    delay = Duration::ZERO;
                }
            }
            Err(e) => tracing::warn!(error = %e, "scheduler tick failed; retrying next tick"),
        }
    }
}
