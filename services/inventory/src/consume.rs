//! Applying identity events to the `credentials` table.
//!
//! Each event is applied inside a transaction owned by
//! [`sigil_store::inbox::apply_batch`] (one per batch of deliveries), starting with
//! [`sigil_store::inbox::first_delivery`], so a redelivered event changes nothing.
//! `identity.revoked` or `identity.expired` for a serial we have not recorded yet
//! returns [`HandleError::Retry`]: its `identity.issued` may still be on its way, and
//! the rolled-back transaction leaves no inbox row behind.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use sigil_bus::consumer::{Delivery, HandleError, parse_serial};
use sigil_contracts::CloudEvent;
use sigil_contracts::event::{IdentityExpired, IdentityIssued, IdentityRevoked};
use sigil_contracts::types::CredentialStatus;
use sigil_store::inbox::{self, retry};

use crate::entity::{credential, credential_san};
use crate::query::san_index_values;

/// Durable consumer name, also the inbox key.
pub const DURABLE: &str = "inventory";

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
    } else if delivery.is::<IdentityExpired>() {
        apply_expired(txn, &delivery.decode()?, now).await
    } else {
        Err(HandleError::Poison(format!(
            "unexpected subject {}",
            delivery.subject
        )))
    }
}

/// Record a newly issued credential. A serial already recorded is left as it is.
pub async fn apply_issued(
    txn: &impl ConnectionTrait,
    event: &CloudEvent<IdentityIssued>,
    now: DateTime<Utc>,
) -> Result<(), HandleError> {
    let facts = &event.data.facts;
    let serial = parse_serial(&facts.serial)?;
    let sans = serde_json::to_value(&facts.sans)
        .map_err(|e| HandleError::Poison(format!("cannot encode sans: {e}")))?;
    if !inbox::first_delivery(txn, DURABLE, &event.id)
        .await
        .map_err(retry)?
    {
        return Ok(());
    }
    let row = credential::ActiveModel {
        serial: Set(serial.clone()),
        subject: Set(facts.subject.clone()),
        sans: Set(sans),
        issuer: Set(facts.issuer.clone()),
        not_before: Set(facts.not_before),
        not_after: Set(facts.not_after),
        key_algorithm: Set(facts.key_algorithm.clone()),
        signature_algorithm: Set(facts.signature_algorithm.clone()),
        profile: Set(facts.profile.as_str().to_owned()),
        fingerprint: Set(facts.fingerprint_sha256.clone()),
        status: Set(CredentialStatus::Active.as_str().to_owned()),
        revoked_at: Set(None),
        revocation_reason: Set(None),
        labels: Set(serde_json::json!({})),
        certificate_pem: Set(event.data.certificate_pem.clone()),
        updated_at: Set(now),
    };
    let inserted = credential::Entity::insert(row)
        .on_conflict(
            OnConflict::column(credential::Column::Serial)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await
        .map_err(retry)?;
    if inserted == 1 {
        let keys = san_index_values(&facts.sans);
        if !keys.is_empty() {
            let rows = keys.into_iter().map(|value| credential_san::ActiveModel {
                serial: Set(serial.clone()),
                value: Set(value),
            });
            credential_san::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([
                        credential_san::Column::Serial,
                        credential_san::Column::Value,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(txn)
                .await
                .map_err(retry)?;
        }
    } else {
        tracing::debug!(%serial, "credential already recorded; issued event ignored");
    }
    Ok(())
}

/// Mark a credential revoked. The first revocation stands.
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
    let Some(row) = credential::Entity::find_by_id(serial.clone())
        .one(txn)
        .await
        .map_err(retry)?
    else {
        // Dropping the transaction rolls back the inbox row too.
        return Err(HandleError::Retry(format!(
            "revoked {serial} before its issued event"
        )));
    };
    if row.status != CredentialStatus::Revoked.as_str() {
        credential::Entity::update_many()
            .col_expr(
                credential::Column::Status,
                Expr::value(CredentialStatus::Revoked.as_str()),
            )
            .col_expr(
                credential::Column::RevokedAt,
                Expr::value(event.data.revoked_at),
            )
            .col_expr(
                credential::Column::RevocationReason,
                Expr::value(event.data.reason.as_str()),
            )
            .col_expr(credential::Column::UpdatedAt, Expr::value(now))
            .filter(credential::Column::Serial.eq(serial.as_str()))
            .filter(credential::Column::Status.ne(CredentialStatus::Revoked.as_str()))
            .exec(txn)
            .await
            .map_err(retry)?;
    }
    Ok(())
}

/// Mark a credential expired, unless it was revoked.
pub async fn apply_expired(
    txn: &impl ConnectionTrait,
    event: &CloudEvent<IdentityExpired>,
    now: DateTime<Utc>,
) -> Result<(), HandleError> {
    let serial = parse_serial(&event.data.serial)?;
    if !inbox::first_delivery(txn, DURABLE, &event.id)
        .await
        .map_err(retry)?
    {
        return Ok(());
    }
    let exists = credential::Entity::find_by_id(serial.clone())
        .one(txn)
        .await
        .map_err(retry)?;
    if exists.is_none() {
        return Err(HandleError::Retry(format!(
            "expired {serial} before its issued event"
        )));
    }
    credential::Entity::update_many()
        .col_expr(
            credential::Column::Status,
            Expr::value(CredentialStatus::Expired.as_str()),
        )
        .col_expr(credential::Column::UpdatedAt, Expr::value(now))
        .filter(credential::Column::Serial.eq(serial.as_str()))
        .filter(credential::Column::Status.eq(CredentialStatus::Active.as_str()))
        .exec(txn)
        .await
        .map_err(retry)?;
    Ok(())
}
