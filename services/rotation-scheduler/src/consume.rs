//! Applying identity events to the `tracked` table.
//!
//! Each event is applied inside a transaction owned by
//! [`sigil_store::inbox::apply_batch`] (one per batch of deliveries), starting with
//! [`sigil_store::inbox::first_delivery`], so a redelivered event changes nothing.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
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
    txn: &impl ConnectionTrait,
    delivery: &Delivery,
    now: DateTime<Utc>,
) -> Result<(), HandleError> {
    if delivery.is::<IdentityIssued>() {
        apply_issued(txn, &delivery.decode()?, now).await
    } else if delivery.is::<IdentityRevoked>() {
        apply_revoked(txn, &delivery.decode()?, now).await
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
    txn: &impl ConnectionTrait,
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
    if !inbox::first_delivery(txn, DURABLE, &event.id)
        .await
        .map_err(retry)?
    {
        return Ok(());
    }
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
        .exec_without_returning(txn)
        .await
        .map_err(retry)?;
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
    txn: &impl ConnectionTrait,
    event: &CloudEvent<IdentityRevoked>,
    now: DateTime<Utc>,
) -> Result<(), HandleError> {
    let serial = parse_serial(&event.data.serial)?;
    if !inbox::first_delivery(txn, DURABLE, &event.id)
        .await
        .map_err(retry)?
    {
        return Ok(());
    }
    let updated = tracked::Entity::update_many()
        .col_expr(tracked::Column::State, Expr::value(State::Revoked))
        .col_expr(tracked::Column::UpdatedAt, Expr::value(now))
        .filter(tracked::Column::Serial.eq(serial.as_str()))
        .filter(tracked::Column::State.ne(State::Revoked))
        .exec(txn)
        .await
        .map_err(retry)?;
    if updated.rows_affected == 0 {
        let known = tracked::Entity::find_by_id(serial.clone())
            .one(txn)
            .await
            .map_err(retry)?;
        if known.is_none() {
            // Dropping the transaction rolls back the inbox row too.
            return Err(HandleError::Retry(format!(
                "revoked {serial} before its issued event"
            )));
        }
    }
    Ok(())
}
