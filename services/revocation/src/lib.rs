//! Sigil's revocation service (`sigil-revocation`).
//!
//! It records revocations of certificates issued by this Sigil, with RFC 5280
//! CRLReason codes, and announces each one exactly once as an `identity.revoked`
//! CloudEvent.
//!
//! - It learns which serials exist from `identity.issued` events (durable consumer
//!   `revocation`) and keeps them in its own `known_certificates` table; a redelivered
//!   event changes nothing (`sigil_store::inbox`).
//! - It serves `sigil.revocation.v1.revoke` ([`REVOCATION_REVOKE`]): the first
//!   revocation of a serial inserts a `revocations` row and enqueues the event in the
//!   same transaction (transactional outbox); every later one, including a concurrent
//!   duplicate, answers with that first revocation and `already_revoked: true`, and
//!   emits nothing.
//!
//! The tables keep what CRLs and OCSP responses need (serial, issuer name, revocation
//! date, reason code, notAfter), so serving those over HTTP builds on them.
#![forbid(unsafe_code)]

pub mod entity;
pub mod migration;

pub use migration::Migrator;

use std::path::Path;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, SqlErr,
    TransactionTrait,
};
use serde::Deserialize;
use sigil_bus::consumer::{self, ConsumerSpec, Delivery, HandleError};
use sigil_bus::service::Router;
use sigil_bus::{BusError, Runtime};
use sigil_contracts::event::{IdentityIssued, IdentityRevoked, source_for};
use sigil_contracts::revocation::{RevokeRequest, RevokeResponse};
use sigil_contracts::subjects::{self, REVOCATION_REVOKE, Service};
use sigil_contracts::types::RevocationReason;
use sigil_contracts::{CloudEvent, EventData, WireError, normalize_serial};
use sigil_store::outbox::{self, Outbox};
use sigil_store::{StoreError, inbox};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use entity::{known_certificate, revocation};

/// This service, as named in subjects, logs and the database schema.
pub const SERVICE: Service = Service::Revocation;
/// Durable name of the `identity.issued` consumer.
pub const DURABLE: &str = "revocation";
/// Health component registered by [`run`].
pub const HEALTH_COMPONENT: &str = "revocation";
/// Principal recorded when a request names none (authentication comes later).
pub const ANONYMOUS: &str = "anonymous";
/// Longest principal name accepted, in bytes.
pub const MAX_PRINCIPAL_LEN: usize = 256;

/// Configuration of the revocation service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://PATH?mode=rwc` or `postgres://…` (schema `sigil_revocation`).
    pub database_url: String,
}

impl Config {
    /// The default SQLite database inside a Sigil data directory.
    pub fn in_data_dir(data_dir: &Path) -> Config {
        Config {
            database_url: sigil_store::sqlite_url(&data_dir.join("revocation.db")),
        }
    }
}

impl Default for Config {
    /// SQLite at `./.sigil/revocation.db`.
    fn default() -> Self {
        Config::in_data_dir(Path::new(".sigil"))
    }
}

/// Why the revocation service stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database could not be opened or migrated.
    #[error("revocation database: {0}")]
    Store(#[from] StoreError),
    /// NATS failed: the events stream could not be set up or the endpoint not served.
    #[error("revocation bus: {0}")]
    Bus(#[from] BusError),
    /// A task of the service panicked or was aborted.
    #[error("revocation task failed: {0}")]
    Task(String),
}

/// Run the service until `shutdown` is cancelled: migrate the database, make sure the
/// events stream exists, then consume `identity.issued`, serve `revoke` and relay the
/// outbox. On cancellation the endpoint and consumer stop first, in-flight requests
/// drain, and the relay makes a last attempt to publish before returning `Ok(())`.
pub async fn run(config: Config, rt: Runtime, shutdown: CancellationToken) -> Result<(), Error> {
    rt.health.register(HEALTH_COMPONENT);
    let db = sigil_store::open::<Migrator>(&config.database_url, SERVICE.name()).await?;
    rt.bus.ensure_stream().await?;
    let outbox = Outbox::new(db.clone());

    // Front tasks (endpoint, consumer) stop on `front`; the relay stops after them so
    // events committed by draining requests still go out.
    let front = shutdown.child_token();
    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(outbox.clone().relay(
        rt.bus.clone(),
        SERVICE.name(),
        rt.metrics.clone(),
        relay_stop.clone(),
    ));

    let mut tasks: JoinSet<Result<(), Error>> = JoinSet::new();
    {
        let clock = rt.clock.clone();
        let db = db.clone();
        let front = front.clone();
        let router = Router::new(
            SERVICE,
            "Sigil revocation: records and announces revocations",
        )
        .ready(rt.health.clone(), HEALTH_COMPONENT)
        .route(REVOCATION_REVOKE, move |req: RevokeRequest| {
            let db = db.clone();
            let outbox = outbox.clone();
            let now = clock.now();
            async move { revoke(&db, &outbox, now, req).await }
        });
        let bus = rt.bus.clone();
        let metrics = rt.metrics.clone();
        tasks.spawn(async move { Ok(router.serve(&bus, metrics, front).await?) });
    }
    {
        let spec = ConsumerSpec::new(DURABLE, vec![subjects::event_subject(IdentityIssued::KIND)]);
        let handler = inbox::batch_handler(
            db.clone(),
            DURABLE,
            inbox::with_clock(rt.clock.clone(), |txn, delivery, now| {
                Box::pin(handle_delivery(txn, delivery, now))
            }),
        );
        let bus = rt.bus.clone();
        let metrics = rt.metrics.clone();
        let front = front.clone();
        tasks.spawn(
            async move { Ok(consumer::run_batched(bus, spec, metrics, front, handler).await?) },
        );
    }
    tracing::info!(
        service = SERVICE.name(),
        "serving {}",
        REVOCATION_REVOKE.subject()
    );

    let mut failure = sigil_bus::launch::supervise("revocation", &mut tasks, &front, |e| {
        Error::Task(e.to_string())
    })
    .await
    .err();
    rt.health.set_ready(HEALTH_COMPONENT, false);
    relay_stop.cancel();
    if let Err(e) = relay.await {
        failure.get_or_insert(Error::Task(e.to_string()));
    }
    db.close().await.ok();
    failure.map_or(Ok(()), Err)
}

/// Revoke a certificate: the core of the `revoke` endpoint.
///
/// - a malformed serial, the reason `remove-from-crl`, or an over-long principal →
///   `bad_request`, nothing stored;
/// - a serial this Sigil has not (yet) seen issued → `not_found`;
/// - a serial already revoked → the first revocation with `already_revoked: true`, and
///   no event;
/// - otherwise one transaction inserts the `revocations` row (revoked at `now`) and
///   enqueues the `identity.revoked` event; the relay is woken after the commit.
///
/// Two concurrent revocations of one serial race on the primary key: exactly one row
/// and one event result, and the loser answers `already_revoked`.
pub async fn revoke(
    db: &DatabaseConnection,
    outbox: &Outbox,
    now: DateTime<Utc>,
    req: RevokeRequest,
) -> Result<RevokeResponse, WireError> {
    let serial = normalize_serial(&req.serial).ok_or_else(|| {
        WireError::bad_request(format!(
            "{:?} is not a certificate serial number: expected 1 to 20 octets of hex \
             (case and ':' separators are ignored)",
            excerpt(&req.serial)
        ))
    })?;
    if req.reason == RevocationReason::RemoveFromCrl {
        return Err(WireError::bad_request(
            "remove-from-crl is not a revocation reason: RFC 5280 reserves it for delta CRLs \
             (to release a certificate-hold)",
        ));
    }
    let principal = principal_of(req.principal.as_deref())?;
    // Databases keep microseconds at best; store and announce the same instant.
    let now = now.trunc_subsecs(6);

    if let Some(first) = find_revocation(db, &serial).await? {
        return already_revoked(first);
    }
    let Some(cert) = known_certificate::Entity::find_by_id(serial.clone())
        .one(db)
        .await
        .map_err(db_error)?
    else {
        return Err(WireError::not_found(format!(
            "serial {serial} was not issued by this Sigil (or its issued event has not arrived yet)"
        )));
    };

    let row = revocation::ActiveModel {
        serial: Set(serial.clone()),
        issuer: Set(cert.issuer),
        reason: Set(req.reason.as_str().to_owned()),
        reason_code: Set(i16::from(req.reason.code())),
        revoked_at: Set(now),
        revoked_by: Set(principal.clone()),
        not_after: Set(cert.not_after),
    };
    let txn = db.begin().await.map_err(db_error)?;
    // The insert is the transaction's first statement, so on SQLite it takes the write
    // lock (waiting out a concurrent revoker) before reading anything.
    let inserted = match revocation::Entity::insert(row)
        .on_conflict(
            OnConflict::column(revocation::Column::Serial)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await
    {
        Ok(n) => n,
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => 0,
        Err(e) => return Err(db_error(e)),
    };
    if inserted == 0 {
        txn.rollback().await.ok();
        return match find_revocation(db, &serial).await? {
            Some(first) => already_revoked(first),
            None => Err(WireError::internal(format!(
                "revocation of {serial} conflicted but cannot be read back"
            ))),
        };
    }
    let event = CloudEvent::new(
        &source_for(SERVICE),
        IdentityRevoked {
            serial: serial.clone(),
            reason: req.reason,
            reason_code: req.reason.code(),
            revoked_at: now,
            revoked_by: principal.clone(),
        },
        now,
        sigil_telemetry::current_traceparent(),
    );
    outbox::enqueue(&txn, &event).await.map_err(db_error)?;
    txn.commit().await.map_err(db_error)?;
    outbox.wake();
    tracing::info!(%serial, reason = req.reason.as_str(), revoked_by = %principal, "revoked");
    Ok(RevokeResponse {
        serial,
        reason: req.reason,
        revoked_at: now,
        already_revoked: false,
    })
}

/// Record the serial of an `identity.issued` event in `known_certificates`.
///
/// Returns `false` when this consumer had already applied the event (redelivery): then
/// nothing changes. A serial seen again under a new event id keeps its first record.
pub async fn record_issued(
    txn: &impl ConnectionTrait,
    event: &CloudEvent<IdentityIssued>,
    now: DateTime<Utc>,
) -> Result<bool, HandleError> {
    let facts = &event.data.facts;
    let serial = normalize_serial(&facts.serial).ok_or_else(|| {
        HandleError::Poison(format!(
            "event {} carries a malformed serial {:?}",
            event.id,
            excerpt(&facts.serial)
        ))
    })?;
    let retry = |e: DbErr| HandleError::Retry(format!("revocation database: {e}"));
    if !inbox::first_delivery(txn, DURABLE, &event.id)
        .await
        .map_err(retry)?
    {
        return Ok(false);
    }
    let row = known_certificate::ActiveModel {
        serial: Set(serial),
        issuer: Set(facts.issuer.clone()),
        not_after: Set(facts.not_after.trunc_subsecs(6)),
        recorded_at: Set(now.trunc_subsecs(6)),
    };
    known_certificate::Entity::insert(row)
        .on_conflict(
            OnConflict::column(known_certificate::Column::Serial)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await
        .map_err(retry)?;
    Ok(true)
}

async fn handle_delivery(
    txn: &impl ConnectionTrait,
    delivery: &Delivery,
    now: DateTime<Utc>,
) -> Result<(), HandleError> {
    if !delivery.is::<IdentityIssued>() {
        return Ok(());
    }
    let event = delivery.decode::<IdentityIssued>()?;
    if record_issued(txn, &event, now).await? {
        tracing::debug!(serial = %event.data.facts.serial, "known certificate recorded");
    }
    Ok(())
}

async fn find_revocation(
    db: &DatabaseConnection,
    serial: &str,
) -> Result<Option<revocation::Model>, WireError> {
    revocation::Entity::find_by_id(serial.to_owned())
        .one(db)
        .await
        .map_err(db_error)
}

fn already_revoked(first: revocation::Model) -> Result<RevokeResponse, WireError> {
    let reason = RevocationReason::from_name(&first.reason).ok_or_else(|| {
        WireError::internal(format!(
            "stored revocation of {} has unknown reason {:?}",
            first.serial, first.reason
        ))
    })?;
    Ok(RevokeResponse {
        serial: first.serial,
        reason,
        revoked_at: first.revoked_at,
        already_revoked: true,
    })
}

/// The principal to record: the given one trimmed, or [`ANONYMOUS`].
fn principal_of(given: Option<&str>) -> Result<String, WireError> {
    let principal = given
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .unwrap_or(ANONYMOUS);
    if principal.len() > MAX_PRINCIPAL_LEN {
        return Err(WireError::bad_request(format!(
            "principal is {} bytes; the limit is {MAX_PRINCIPAL_LEN}",
            principal.len()
        )));
    }
    if principal.chars().any(char::is_control) {
        return Err(WireError::bad_request(
            "principal contains control characters",
        ));
    }
    Ok(principal.to_owned())
}

fn db_error(e: DbErr) -> WireError {
    tracing::error!(error = %e, "revocation database error");
    WireError::unavailable(format!("revocation database unavailable: {e}"))
}

/// At most 64 characters of untrusted input, for error messages.
fn excerpt(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_defaults_to_anonymous_and_is_bounded() {
        assert_eq!(principal_of(None).unwrap(), ANONYMOUS);
        assert_eq!(principal_of(Some("  ")).unwrap(), ANONYMOUS);
        assert_eq!(principal_of(Some(" admin ")).unwrap(), "admin");
        assert!(principal_of(Some(&"a".repeat(MAX_PRINCIPAL_LEN + 1))).is_err());
        assert!(principal_of(Some("a\nb")).is_err());
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt("abc"), "abc");
        let long = "é".repeat(100);
        assert_eq!(excerpt(&long).chars().count(), 65);
    }

    #[test]
    fn default_config_is_sqlite_in_dot_sigil() {
        let c = Config::default();
        assert!(
            c.database_url.starts_with("sqlite://"),
            "{}",
            c.database_url
        );
        assert!(
            c.database_url.contains(".sigil/revocation.db"),
            "{}",
            c.database_url
        );
    }
}
