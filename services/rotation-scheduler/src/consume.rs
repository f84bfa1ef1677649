//! Applying identity events to the `tracked` table.
//!
//! Each event is applied in one transaction that starts with
//! [`sigil_store::inbox::begin_first`], so a redelivered event commits nothing.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use sigil_bus::consumer::{Delivery, HandleError, parse_serial};
use sigil_contracts::CloudEvent;
use sigil_contracts::event::{IdentityIssued, IdentityRevoked};
use sigil_store::inbox::{self, retry};

use crate::entity::tracked::{self, State};
use crate::schedule;

/// Durable consumer name, also the inbox key.
pub const DURABLE: &str = "rotation-scheduler";

/// Dispatch one delivery to its handler.
pub async fn handle(
    db: &DatabaseConnection,
    delivery: &Delivery,
    now: DateTime<Utc>,
) -> Result<(), HandleError> {
    if delivery.is::<IdentityIssued>() {
        apply_issued(db, &delivery.decode()?, now).await
    } else if delivery.is::<IdentityRevoked>() {
        apply_revoked(db, &delivery.decode()?, now).await
    } else {
        Err(HandleError::Poison(format!(
            "unexpected subject {}",
            delivery.subject
        )))
    }
}

/// Start tracking a newly issued credential. A serial already tracked is left as it
/// is (its state, in particular, is never reset to `tracking`).
pub async fn apply_issued(
    db: &DatabaseConnection,
    event: &CloudEvent<IdentityIssued>,
    now: DateTime<Utc>,
) -> Result<(), HandleError> {
    let facts = &event.data.facts;
    let serial = parse_serial(&facts.serial)?;
    let renew_at = schedule::renew_at(
        facts.not_before,
        facts.not_after,
        schedule::jitter_fraction(&serial),
    );
    let Some(txn) = inbox::begin_first(db, DURABLE, &event.id)
        .await
        .map_err(retry)?
    else {
        return Ok(());
    };
    let row = tracked::ActiveModel {
        serial: Set(serial.clone()),
        not_before: Set(facts.not_before),
        not_after: Set(facts.not_after),
        renew_at: Set(renew_at),
        state: Set(State::Tracking),
        updated_at: Set(now),
    };
    let inserted = tracked::Entity::insert(row)
        .on_conflict(
            OnConflict::column(tracked::Column::Serial)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await
        .map_err(retry)?;
    txn.commit().await.map_err(retry)?;
    if inserted == 1 {
        tracing::debug!(%serial, %renew_at, not_after = %facts.not_after, "tracking credential");
    }
    Ok(())
}

/// Stop tracking a revoked credential: no renewal or expiry event follows.
///
/// A revocation for a serial we have not seen yet is retried: its `identity.issued`
/// may still be on its way, and tracking it afterwards would announce a renewal.
pub async fn apply_revoked(
    db: &DatabaseConnection,
    event: &CloudEvent<IdentityRevoked>,
    now: DateTime<Utc>,
) -> Result<(), HandleError> {
    let serial = parse_serial(&event.data.serial)?;
    let Some(txn) = inbox::begin_first(db, DURABLE, &event.id)
        .await
        .map_err(retry)?
    else {
        return Ok(());
    };
    let updated = tracked::Entity::update_many()
        .col_expr(tracked::Column::State, Expr::value(State::Revoked))
        .col_expr(tracked::Column::UpdatedAt, Expr::value(now))
        .filter(tracked::Column::Serial.eq(serial.as_str()))
        .filter(tracked::Column::State.ne(State::Revoked))
        .exec(&txn)
        .await
        .map_err(retry)?;
    if updated.rows_affected == 0 {
        let known = tracked::Entity::find_by_id(serial.clone())
            .one(&txn)
            .await
            .map_err(retry)?;
        if known.is_none() {
            // Dropping the transaction rolls back the inbox row too.
            return Err(HandleError::Retry(format!(
                "revoked {serial} before its issued event"
            )));
        }
    }
    txn.commit().await.map_err(retry)
}
