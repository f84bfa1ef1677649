//! Sigil's revocation service (`sigil-revocation`).
//!
//! It records revocations of certificates issued by this Sigil, with RFC 5280
//! CRLReason codes, announces each one exactly once as an `identity.revoked`
//! CloudEvent, and answers whether a serial is revoked.
//!
//! - It learns which serials exist from `identity.issued` events (durable consumer
//!   `revocation`) and keeps them in its own `known_certificates` table, with the
//!   profile, names, key algorithm and CA kind policy is told about when someone asks
//!   to revoke one; a redelivered event changes nothing (`sigil_store::inbox`).
//! - It serves `sigil.revocation.v1.revoke` ([`REVOCATION_REVOKE`]). The request is
//!   checked first (serial, reason: `bad_request`, nothing asked or stored). Then the
//!   service asks policy's `evaluate` whether its sender may revoke that certificate:
//!   it never decides who is asking itself, but passes the request's proof
//!   ([`sigil_contracts::auth`]) on with the operation's subject and the request's
//!   digest, and the certificate's profile and names as the resource (no names for a
//!   serial it does not know). A denial answers `denied` with policy's reasons, a
//!   refused proof `unauthenticated` with policy's message, an unreachable policy
//!   `unavailable`; none of them stores anything. Allowed, the first revocation of a
//!   serial inserts a `revocations` row recording policy's principal as `revoked_by`
//!   and enqueues the event in the same transaction (transactional outbox); every
//!   later one, including a concurrent duplicate, answers with that first revocation
//!   and `already_revoked: true`, and emits nothing.
//! - It serves `sigil.revocation.v1.status` ([`REVOCATION_STATUS`]): revoked or not,
//!   with the reason and time. Policy asks it for every possession proof it verifies,
//!   so it is one primary-key lookup and asks nobody.
//!
//! The tables keep what CRLs and OCSP responses need (serial, issuer name, revocation
//! date, reason code, notAfter), so serving those over HTTP builds on them.
#![forbid(unsafe_code)]

pub mod entity;
pub mod migration;

pub use migration::Migrator;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, SqlErr,
    TransactionTrait,
};
use serde::Deserialize;
use sigil_bus::consumer::{self, ConsumerSpec, Delivery, HandleError};
use sigil_bus::service::Router;
use sigil_bus::{Bus, BusError, ClientError, Clock, Runtime};
use sigil_contracts::event::{IdentityIssued, IdentityRevoked, source_for};
use sigil_contracts::policy::{Action, Decision, EvaluateRequest};
use sigil_contracts::revocation::{RevokeRequest, RevokeResponse, StatusRequest, StatusResponse};
use sigil_contracts::subjects::{
    self, POLICY_EVALUATE, REVOCATION_REVOKE, REVOCATION_STATUS, Service,
};
use sigil_contracts::types::{CaKind, KeyAlgorithm, Profile, RevocationReason, Sans};
use sigil_contracts::{CloudEvent, ErrorCode, EventData, WireError, normalize_serial};
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
/// Default time to wait for policy's answer.
pub const DEFAULT_POLICY_TIMEOUT: Duration = Duration::from_secs(5);

/// Configuration of the revocation service.
///
/// ```toml
/// database_url = "postgres://sigil@db/sigil"
/// policy_timeout = "5s"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://PATH?mode=rwc` or `postgres://…` (schema `sigil_revocation`).
    pub database_url: String,
    /// How long a revocation waits for policy's decision, e.g. `"5s"`; past it the
    /// request answers `unavailable` and nothing is revoked.
    #[serde(deserialize_with = "deserialize_duration")]
    pub policy_timeout: Duration,
}

impl Config {
    /// The default SQLite database inside a Sigil data directory.
    pub fn in_data_dir(data_dir: &Path) -> Config {
        Config {
            database_url: sigil_store::sqlite_url(&data_dir.join("revocation.db")),
            policy_timeout: DEFAULT_POLICY_TIMEOUT,
        }
    }

    /// Check what can be checked without touching disk or network (`run` does too):
    /// a positive policy timeout.
    pub fn validate(&self) -> Result<(), Error> {
        if self.policy_timeout.is_zero() {
            return Err(Error::Config("policy_timeout must be positive".to_owned()));
        }
        Ok(())
    }
}

impl Default for Config {
    /// SQLite at `./.sigil/revocation.db`, policy timeout [`DEFAULT_POLICY_TIMEOUT`].
    fn default() -> Self {
        Config::in_data_dir(Path::new(".sigil"))
    }
}

fn deserialize_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Why the revocation service stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid revocation configuration: {0}")]
    Config(String),
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
/// events stream exists, then consume `identity.issued`, serve `revoke` and `status`
/// and relay the outbox. On cancellation the endpoints and consumer stop first,
/// in-flight requests drain, and the relay makes a last attempt to publish before
/// returning `Ok(())`.
pub async fn run(config: Config, rt: Runtime, shutdown: CancellationToken) -> Result<(), Error> {
    rt.health.register(HEALTH_COMPONENT);
    config.validate()?;
    let db = sigil_store::open::<Migrator>(&config.database_url, SERVICE.name()).await?;
    rt.bus.ensure_stream().await?;
    let outbox = Outbox::new(db.clone());

    // Front tasks (endpoints, consumer) stop on `front`; the relay stops after them so
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
        let endpoints = Arc::new(Endpoints {
            db: db.clone(),
            outbox,
            policy: Policy {
                bus: rt.bus.clone(),
                timeout: config.policy_timeout,
            },
            clock: rt.clock.clone(),
        });
        let status_endpoints = endpoints.clone();
        let router = Router::new(
            SERVICE,
            "Sigil revocation: records, announces and answers the status of revocations",
        )
        .ready(rt.health.clone(), HEALTH_COMPONENT)
        .route_proven(REVOCATION_REVOKE, move |req: RevokeRequest, digest| {
            let endpoints = endpoints.clone();
            async move { endpoints.revoke(req, digest).await }
        })
        .route(REVOCATION_STATUS, move |req: StatusRequest| {
            let endpoints = status_endpoints.clone();
            async move { status(&endpoints.db, req).await }
        });
        let bus = rt.bus.clone();
        let metrics = rt.metrics.clone();
        let front = front.clone();
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
        "serving {} and {}",
        REVOCATION_REVOKE.subject(),
        REVOCATION_STATUS.subject()
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

/// What the endpoints work with.
#[derive(Debug)]
struct Endpoints {
    db: DatabaseConnection,
    outbox: Outbox,
    policy: Policy,
    clock: Arc<dyn Clock>,
}

impl Endpoints {
    /// Handle one `revoke` request: check it, ask policy, record.
    ///
    /// - a malformed serial or the reason `remove-from-crl` → `bad_request`, policy is
    ///   not asked;
    /// - policy denies → `denied` with its reasons; refuses the proof →
    ///   `unauthenticated`; does not answer in time → `unavailable`. Nothing is stored.
    /// - allowed: [`record_revocation`] with the principal policy authenticated.
    ///
    /// `digest` is the request's digest as received, which its proof must have signed.
    async fn revoke(
        &self,
        req: RevokeRequest,
        digest: String,
    ) -> Result<RevokeResponse, WireError> {
        let target = Target::of(&self.db, &req).await?;
        let decision = self
            .policy
            .evaluate(&target.evaluate_request(&req, digest))
            .await?;
        if !decision.allowed {
            tracing::info!(
                serial = %target.serial,
                principal = %decision.principal,
                reasons = ?decision.reasons,
                "revocation denied by policy"
            );
            return Err(WireError::denied(decision.reasons));
        }
        // The revocation time is when it is recorded, after policy's answer.
        let now = self.clock.now();
        target
            .record(&self.db, &self.outbox, now, &decision.principal)
            .await
    }
}

/// Policy's `evaluate`, asked over the bus within a timeout.
#[derive(Debug, Clone)]
struct Policy {
    bus: Bus,
    timeout: Duration,
}

impl Policy {
    async fn evaluate(&self, ask: &EvaluateRequest) -> Result<Decision, WireError> {
        self.bus
            .request(POLICY_EVALUATE, ask, self.timeout)
            .await
            .map_err(policy_error)
    }
}

/// A failed `evaluate` call as the client should see it. A refused proof is the
/// client's to fix and keeps policy's own words; anything else keeps its code (a
/// timeout or absent policy is `unavailable`) and says it came from policy.
fn policy_error(e: ClientError) -> WireError {
    let wire = e.into_wire();
    match wire.code {
        ErrorCode::Unauthenticated => wire,
        _ => WireError {
            message: format!("policy: {}", wire.message),
            ..wire
        },
    }
}

/// A checked revocation request: the normalised serial, the reason, and the
/// certificate when this service knows it.
#[derive(Debug)]
struct Target {
    serial: String,
    reason: RevocationReason,
    cert: Option<known_certificate::Model>,
}

impl Target {
    /// Check `req` (malformed serial, `remove-from-crl` → `bad_request`) and look the
    /// serial up.
    async fn of(db: &DatabaseConnection, req: &RevokeRequest) -> Result<Target, WireError> {
        let serial = parse_serial(&req.serial)?;
        if req.reason == RevocationReason::RemoveFromCrl {
            return Err(WireError::bad_request(
                "remove-from-crl is not a revocation reason: RFC 5280 reserves it for delta CRLs \
                 (to release a certificate-hold)",
            ));
        }
        let cert = known_certificate::Entity::find_by_id(serial.clone())
            .one(db)
            .await
            .map_err(db_error)?;
        Ok(Target {
            serial,
            reason: req.reason,
            cert,
        })
    }

    /// What policy is asked: action `revoke` by the sender of `req` (its proof, bound
    /// to this operation and the request's digest), on the certificate as issued
    /// (profile, names, key algorithm, CA kind). A certificate this service does not
    /// know, or recorded before it kept those facts, is described without names, with
    /// the default profile and key algorithm.
    fn evaluate_request(&self, req: &RevokeRequest, digest: String) -> EvaluateRequest {
        let cert = self.cert.as_ref();
        let profile = cert
            .and_then(|c| c.profile.as_deref())
            .and_then(profile_named)
            .unwrap_or_default();
        let key_algorithm = cert
            .and_then(|c| c.key_algorithm.as_deref())
            .and_then(KeyAlgorithm::from_name)
            .unwrap_or_default();
        let kind = cert
            .and_then(|c| c.ca_kind.as_deref())
            .and_then(CaKind::from_name);
        let sans = match cert.and_then(|c| c.sans.clone()) {
            None => Sans::default(),
            Some(json) => serde_json::from_value(json).unwrap_or_else(|e| {
                // Written by this service from the issued event; without names, a
                // name-scoped permit cannot match, so this fails towards refusing.
                tracing::warn!(serial = %self.serial, error = %e, "stored names are unreadable; asking policy without names");
                Sans::default()
            }),
        };
        EvaluateRequest {
            principal: None,
            proof: req.proof.clone(),
            operation: Some(REVOCATION_REVOKE.subject()),
            request_digest: Some(digest),
            action: Action::Revoke,
            profile,
            sans,
            // Lifetimes matter only to issue and renew decisions.
            ttl_seconds: 0,
            key_algorithm,
            kind,
            key_bits: None,
        }
    }

    /// Record the revocation (see [`record_revocation`]).
    async fn record(
        self,
        db: &DatabaseConnection,
        outbox: &Outbox,
        now: DateTime<Utc>,
        revoked_by: &str,
    ) -> Result<RevokeResponse, WireError> {
        // Databases keep microseconds at best; store and announce the same instant.
        let now = now.trunc_subsecs(6);
        let serial = self.serial;
        if let Some(first) = find_revocation(db, &serial).await? {
            return already_revoked(first);
        }
        let Some(cert) = self.cert else {
            return Err(WireError::not_found(format!(
                "serial {serial} was not issued by this Sigil (or its issued event has not arrived yet)"
            )));
        };
        let row = revocation::ActiveModel {
            serial: Set(serial.clone()),
            issuer: Set(cert.issuer),
            reason: Set(self.reason.as_str().to_owned()),
            reason_code: Set(i16::from(self.reason.code())),
            revoked_at: Set(now),
            revoked_by: Set(revoked_by.to_owned()),
            not_after: Set(cert.not_after),
        };
        let txn = db.begin().await.map_err(db_error)?;
        // The insert is the transaction's first statement, so on SQLite it takes the
        // write lock (waiting out a concurrent revoker) before reading anything.
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
                reason: self.reason,
                reason_code: self.reason.code(),
                revoked_at: now,
                revoked_by: revoked_by.to_owned(),
            },
            now,
            sigil_telemetry::current_traceparent(),
        );
        outbox::enqueue(&txn, &event).await.map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        outbox.wake();
        tracing::info!(%serial, reason = self.reason.as_str(), %revoked_by, "revoked");
        Ok(RevokeResponse {
            serial,
            reason: self.reason,
            revoked_at: now,
            already_revoked: false,
        })
    }
}

/// Record a revocation policy has allowed: the store step of the `revoke` endpoint,
/// which needs the database but not NATS.
///
/// - a malformed serial or the reason `remove-from-crl` → `bad_request`, nothing
///   stored;
/// - a serial already revoked → the first revocation with `already_revoked: true`, and
///   no event;
/// - a serial this Sigil has not (yet) seen issued → `not_found`;
/// - otherwise one transaction inserts the `revocations` row (revoked at `now`, by
///   `revoked_by`) and enqueues the `identity.revoked` event; the relay is woken after
///   the commit.
///
/// Two concurrent revocations of one serial race on the primary key: exactly one row
/// and one event result, and the loser answers `already_revoked`.
pub async fn record_revocation(
    db: &DatabaseConnection,
    outbox: &Outbox,
    now: DateTime<Utc>,
    req: &RevokeRequest,
    revoked_by: &str,
) -> Result<RevokeResponse, WireError> {
    Target::of(db, req)
        .await?
        .record(db, outbox, now, revoked_by)
        .await
}

/// Answer `status`: whether `req.serial` is revoked, with the reason and time of its
/// revocation. A serial nobody revoked (known or not) is `revoked: false`. One
/// primary-key lookup: policy asks this for every possession proof it verifies.
pub async fn status(
    db: &DatabaseConnection,
    req: StatusRequest,
) -> Result<StatusResponse, WireError> {
    let serial = parse_serial(&req.serial)?;
    Ok(match find_revocation(db, &serial).await? {
        None => StatusResponse {
            serial,
            revoked: false,
            reason: None,
            revoked_at: None,
        },
        Some(row) => {
            let reason = stored_reason(&row)?;
            StatusResponse {
                serial: row.serial,
                revoked: true,
                reason: Some(reason),
                revoked_at: Some(row.revoked_at),
            }
        }
    })
}

/// Record the serial of an `identity.issued` event in `known_certificates`, with the
/// certificate's issuer and notAfter (for CRLs) and its profile, names, key algorithm
/// and CA kind (what policy is told when someone asks to revoke it).
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
    let sans = serde_json::to_value(&facts.sans).map_err(|e| {
        HandleError::Poison(format!("event {}: cannot encode its names: {e}", event.id))
    })?;
    let row = known_certificate::ActiveModel {
        serial: Set(serial),
        issuer: Set(facts.issuer.clone()),
        not_after: Set(facts.not_after.trunc_subsecs(6)),
        recorded_at: Set(now.trunc_subsecs(6)),
        profile: Set(Some(facts.profile.as_str().to_owned())),
        sans: Set(Some(sans)),
        key_algorithm: Set(Some(facts.key_algorithm.clone())),
        ca_kind: Set(Some(event.data.kind.as_str().to_owned())),
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
    let reason = stored_reason(&first)?;
    Ok(RevokeResponse {
        serial: first.serial,
        reason,
        revoked_at: first.revoked_at,
        already_revoked: true,
    })
}

/// The reason of a stored revocation.
fn stored_reason(row: &revocation::Model) -> Result<RevocationReason, WireError> {
    RevocationReason::from_name(&row.reason).ok_or_else(|| {
        WireError::internal(format!(
            "stored revocation of {} has unknown reason {:?}",
            row.serial, row.reason
        ))
    })
}

/// A serial as typed by a person, normalised ([`normalize_serial`]), or `bad_request`.
fn parse_serial(input: &str) -> Result<String, WireError> {
    normalize_serial(input).ok_or_else(|| {
        WireError::bad_request(format!(
            "{:?} is not a certificate serial number: expected 1 to 20 octets of hex \
             (case and ':' separators are ignored)",
            excerpt(input)
        ))
    })
}

/// The profile named `name` on the wire (`tls-server`, …).
fn profile_named(name: &str) -> Option<Profile> {
    Profile::ALL.into_iter().find(|p| p.as_str() == name)
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
    fn profiles_parse_by_their_wire_names() {
        for p in Profile::ALL {
            assert_eq!(profile_named(p.as_str()), Some(p));
        }
        assert_eq!(profile_named("server"), None);
    }

    #[test]
    fn policy_errors_keep_their_code_and_refused_proofs_their_message() {
        let refused = policy_error(ClientError::Wire(WireError::unauthenticated(
            "the credential is revoked",
        )));
        assert_eq!(refused.code, ErrorCode::Unauthenticated);
        assert_eq!(refused.message, "the credential is revoked");
        let absent = policy_error(ClientError::NoResponders {
            subject: POLICY_EVALUATE.subject(),
        });
        assert_eq!(absent.code, ErrorCode::Unavailable);
        assert!(absent.message.starts_with("policy: "), "{}", absent.message);
    }

    #[test]
    fn config_parses_and_validates_the_policy_timeout() {
        let c: Config = serde_json::from_str(
            r#"{"database_url": "sqlite::memory:", "policy_timeout": "250ms"}"#,
        )
        .unwrap();
        assert_eq!(c.policy_timeout, Duration::from_millis(250));
        c.validate().unwrap();
        let zero = Config {
            policy_timeout: Duration::ZERO,
            ..Config::default()
        };
        assert!(matches!(zero.validate(), Err(Error::Config(_))));
        assert!(serde_json::from_str::<Config>(r#"{"policy_timeout": "soon"}"#).is_err());
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
        assert_eq!(c.policy_timeout, DEFAULT_POLICY_TIMEOUT);
    }
}
