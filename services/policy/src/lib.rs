//! `sigil-policy`: Sigil's policy decision point, on Cedar.
//!
//! Serves, on `sigil.policy.v1.*`:
//! - `evaluate` ([`POLICY_EVALUATE`]): given a principal (`workload:web`), an action
//!   (issue, renew, revoke, read, admin), a profile, the requested names, lifetime, key
//!   algorithm and certificate kind, answers a [`Decision`]: allowed or not, the deciding
//!   policies and why, the constraints the caller must apply (the lifetime, clamped when
//!   a `@clamp_ttl_seconds` forbid says so) and the policy version that decided;
//! - `apply`, `list`, `show`, `rollback`: versioned policy sets. `apply` validates Cedar
//!   text against the shipped schema ([`engine::SCHEMA_TEXT`]) and stores it as a new
//!   active version; a malformed or mismatching set is a `bad_request` (with line and
//!   column) and changes nothing. `rollback N` appends a copy of version N;
//! - `test`: a dry run that explains a decision (per name: allowed, which policies
//!   decided), optionally at another time, under another version or a candidate set.
//!
//! Policies are data in the service's own database (`policy_versions`, SQLite or
//! PostgreSQL); the highest version is active. Every change enqueues `policy.changed`
//! through the outbox in the same transaction. Replicas reload on that event (a plain,
//! per-replica NATS subscription) and also poll the active version every
//! [`Config::reload_interval`], so a missed event heals within seconds. On first start
//! with no versions, version 1 is [`Config::seed_policies`] or the built-in default set
//! ([`templates::DEFAULT`]), which allows what Sigil allowed before Cedar.
//!
//! Every decision, and every issuance and revocation (consumed from the events stream
//! with the durable consumer [`AUDIT_DURABLE`]), is appended to the hash-chained audit
//! log ([`audit`]); a denial also enqueues `policy.denied` with its row.
//! `audit_list` and `audit_verify` read and check that log.
//!
//! The decision itself is the pure [`Compiled::explain`]; "now" comes from the
//! runtime's injected clock, so time-phased rules are tested by moving a `ManualClock`.
#![forbid(unsafe_code)]

pub mod audit;
pub mod engine;
pub mod store;
pub mod templates;

pub use engine::{Compiled, PolicyError, Problem, RequestError};
pub use store::Migrator;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use sigil_bus::consumer::{self, ConsumerSpec, Delivery, HandleError};
use sigil_bus::service::Router;
use sigil_bus::{BusError, Clock, Runtime};
use sigil_contracts::event::{IdentityIssued, IdentityRevoked, PolicyDenied};
use sigil_contracts::policy::{
    ApplyRequest, AuditKind, AuditListRequest, AuditListResponse, AuditVerifyRequest,
    AuditVerifyResponse, Decision, EvaluateRequest, Explanation, ListRequest, ListResponse,
    PolicyDocument, PolicyOrigin, PolicyVersion, RollbackRequest, ShowRequest, TestRequest,
};
use sigil_contracts::subjects::{
    self, POLICY_APPLY, POLICY_AUDIT_LIST, POLICY_AUDIT_VERIFY, POLICY_EVALUATE, POLICY_LIST,
    POLICY_ROLLBACK, POLICY_SHOW, POLICY_TEST, Service,
};
use sigil_contracts::{EventKind, WireError};
use sigil_store::StoreError;
use sigil_store::group::GroupCommit;
use sigil_store::inbox;
use sigil_store::outbox::Outbox;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// This service, as named in subjects, logs and the database schema.
pub const SERVICE: Service = Service::Policy;
/// Name of the health component and of the service in metrics.
pub const COMPONENT: &str = "policy";
/// How often a replica checks the active version when no event arrives.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// Recorded as the author of a change that names none (authentication comes later).
pub const ANONYMOUS: &str = "anonymous";
/// Longest comment or author name stored with a version.
const MAX_LABEL: usize = 512;
/// Most versions one `list` returns.
const MAX_LIST: u32 = 1000;
/// Durable consumer of `identity.issued`/`identity.revoked` (audit rows), also the
/// inbox key.
pub const AUDIT_DURABLE: &str = "policy-audit";
/// Most audit rows one group-commit transaction appends.
const AUDIT_BATCH: usize = 256;

/// Configuration of the policy service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `sqlite://PATH?mode=rwc` or `postgres://…` (schema `sigil_policy`).
    pub database_url: String,
    /// Cedar policies stored as version 1 when the database holds none; the built-in
    /// default set ([`templates::DEFAULT`]) when `None`. Ignored once versions exist.
    pub seed_policies: Option<String>,
    /// Entities JSON (group memberships) to go with `seed_policies`.
    pub seed_entities: Option<String>,
    /// Fallback poll of the active version (besides the `policy.changed` event).
    pub reload_interval: Duration,
}

impl Config {
    /// The default SQLite database inside a Sigil data directory.
    pub fn in_data_dir(data_dir: &Path) -> Config {
        Config {
            database_url: sigil_store::sqlite_url(&data_dir.join("policy.db")),
            seed_policies: None,
            seed_entities: None,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        }
    }
}

impl Default for Config {
    /// SQLite at `./.sigil/policy.db`, built-in default policies.
    fn default() -> Self {
        Config::in_data_dir(Path::new(".sigil"))
    }
}

/// What can stop the policy service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The seed policies do not parse or do not match the schema.
    #[error("invalid seed policies: {0}")]
    InvalidSeed(PolicyError),
    /// The active stored version no longer validates (e.g. after a schema change).
    #[error("stored policy version {version} is invalid: {source}")]
    InvalidStored { version: u64, source: PolicyError },
    /// The database could not be opened or migrated.
    #[error("policy database: {0}")]
    Store(#[from] StoreError),
    /// A query failed at start-up.
    #[error("policy database: {0}")]
    Db(#[from] DbErr),
    /// NATS failed: the events stream could not be set up or an endpoint not served.
    #[error("policy bus: {0}")]
    Bus(#[from] BusError),
    /// A task of the service panicked or was aborted.
    #[error("policy task failed: {0}")]
    Task(String),
}

/// What every handler shares.
#[derive(Debug)]
struct State {
    db: DatabaseConnection,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
    current: RwLock<Arc<Compiled>>,
    audit: GroupCommit<audit::NewEntry>,
}

impl State {
    fn current(&self) -> Arc<Compiled> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn install(&self, compiled: Compiled) {
        let compiled = Arc::new(compiled);
        match self.current.write() {
            Ok(mut c) => *c = compiled,
            Err(poisoned) => *poisoned.into_inner() = compiled,
        }
    }

    /// Load the active version if it is not the one in force. Answers whether it changed.
    async fn refresh(&self) -> Result<bool, Error> {
        let Some(active) = store::active_version(&self.db).await? else {
            return Ok(false);
        };
        if self.current().version() == active.to_string() {
            return Ok(false);
        }
        let Some(row) = store::load(&self.db, active).await? else {
            return Ok(false);
        };
        let compiled = Compiled::new(active.to_string(), &row.policies, row.entities.as_deref())
            .map_err(|source| Error::InvalidStored {
                version: active,
                source,
            })?;
        tracing::info!(
            version = active,
            policies = compiled.policy_count(),
            "policy version loaded"
        );
        self.install(compiled);
        Ok(true)
    }
}

/// Serve the policy endpoints until `shutdown` is cancelled, then drain the requests in
/// flight, make a last outbox drain and return `Ok(())`.
pub async fn run(config: Config, rt: Runtime, shutdown: CancellationToken) -> Result<(), Error> {
    let seed_text = config
        .seed_policies
        .clone()
        .unwrap_or_else(|| templates::DEFAULT.to_owned());
    let seed = Compiled::new("seed", &seed_text, config.seed_entities.as_deref())
        .map_err(Error::InvalidSeed)?;
    rt.health.register(COMPONENT);
    let db = sigil_store::open::<Migrator>(&config.database_url, SERVICE.name()).await?;
    rt.bus.ensure_stream().await?;
    let outbox = Outbox::new(db.clone());
    let seeded = store::append(
        &db,
        &store::NewVersion {
            policies: seed_text,
            entities: config.seed_entities.clone(),
            created_by: format!("service:{}", SERVICE.name()),
            comment: Some(if config.seed_policies.is_some() {
                "seed from configuration".to_owned()
            } else {
                "built-in default policy set".to_owned()
            }),
            origin: PolicyOrigin::Seeded,
            restored_from: None,
            policy_count: seed.policy_count(),
        },
        rt.now(),
        true,
    )
    .await?;
    if seeded.is_some() {
        outbox.wake();
    }
    let state = Arc::new(State {
        db: db.clone(),
        outbox: outbox.clone(),
        clock: rt.clock.clone(),
        current: RwLock::new(Arc::new(seed)),
        audit: GroupCommit::spawn(db.clone(), AUDIT_BATCH),
    });
    state.refresh().await?;

    let front = shutdown.child_token();
    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(outbox.relay(
        rt.bus.clone(),
        SERVICE.name(),
        rt.metrics.clone(),
        relay_stop.clone(),
    ));

    let mut tasks: JoinSet<Result<(), Error>> = JoinSet::new();
    {
        let router = routes(
            Router::new(SERVICE, "Sigil policy: Cedar authorization decisions")
                .ready(rt.health.clone(), COMPONENT),
            &state,
        );
        let bus = rt.bus.clone();
        let metrics = rt.metrics.clone();
        let front = front.clone();
        tasks.spawn(async move { Ok(router.serve(&bus, metrics, front).await?) });
    }
    {
        let spec = ConsumerSpec::new(
            AUDIT_DURABLE,
            [EventKind::IdentityIssued, EventKind::IdentityRevoked]
                .into_iter()
                .map(subjects::event_subject)
                .collect(),
        );
        let st = state.clone();
        let handler = inbox::batch_handler(
            db.clone(),
            AUDIT_DURABLE,
            inbox::with_clock(rt.clock.clone(), move |txn, delivery, now| {
                let st = st.clone();
                Box::pin(async move { audit_event(&st, txn, delivery, now).await })
            }),
        );
        let (bus, metrics, front) = (rt.bus.clone(), rt.metrics.clone(), front.clone());
        tasks.spawn(
            async move { Ok(consumer::run_batched(bus, spec, metrics, front, handler).await?) },
        );
    }
    {
        let state = state.clone();
        let client = rt.bus.client().clone();
        let front = front.clone();
        let every = config.reload_interval;
        tasks.spawn(async move { watch(state, client, every, front).await });
    }
    tracing::info!(
        service = SERVICE.name(),
        version = %state.current().version(),
        "serving {}",
        POLICY_EVALUATE.subject()
    );

    let mut failure =
        sigil_bus::launch::supervise("policy", &mut tasks, &front, |e| Error::Task(e.to_string()))
            .await
            .err();
    rt.health.set_ready(COMPONENT, false);
    relay_stop.cancel();
    if let Err(e) = relay.await {
        failure.get_or_insert(Error::Task(e.to_string()));
    }
    db.close().await.ok();
    failure.map_or(Ok(()), Err)
}

/// Reload on every `policy.changed` (a per-replica core subscription: every replica
/// sees every event) and every `every` as a fallback.
async fn watch(
    state: Arc<State>,
    client: async_nats::Client,
    every: Duration,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let subject = subjects::event_subject(EventKind::PolicyChanged);
    let mut events = client
        .subscribe(subject.clone())
        .await
        .map_err(|e| Error::Bus(BusError::Service(format!("subscribe {subject}: {e}"))))?;
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            msg = events.next() => {
                if msg.is_none() {
                    // The connection closed for good; keep polling.
                    tracing::warn!("policy.changed subscription ended; polling only");
                    events = client.subscribe(subject.clone()).await.map_err(|e| {
                        Error::Bus(BusError::Service(format!("subscribe {subject}: {e}")))
                    })?;
                }
            }
            _ = tick.tick() => {}
        }
        if let Err(e) = state.refresh().await {
            tracing::warn!(error = %e, "cannot reload the active policy version; keeping the current one");
        }
    }
}

fn routes(router: Router, state: &Arc<State>) -> Router {
    let s = state.clone();
    let router = router.route(POLICY_EVALUATE, move |req: EvaluateRequest| {
        let s = s.clone();
        async move { evaluate(&s, &req).await }
    });
    let s = state.clone();
    let router = router.route(POLICY_AUDIT_LIST, move |req: AuditListRequest| {
        let s = s.clone();
        async move { audit_list(&s, &req).await }
    });
    let s = state.clone();
    let router = router.route(POLICY_AUDIT_VERIFY, move |_req: AuditVerifyRequest| {
        let s = s.clone();
        async move { audit_verify(&s).await }
    });
    let s = state.clone();
    let router = router.route(POLICY_APPLY, move |req: ApplyRequest| {
        let s = s.clone();
        async move { apply(&s, req).await }
    });
    let s = state.clone();
    let router = router.route(POLICY_LIST, move |req: ListRequest| {
        let s = s.clone();
        async move { list(&s, &req).await }
    });
    let s = state.clone();
    let router = router.route(POLICY_SHOW, move |req: ShowRequest| {
        let s = s.clone();
        async move { show(&s, &req).await }
    });
    let s = state.clone();
    let router = router.route(POLICY_ROLLBACK, move |req: RollbackRequest| {
        let s = s.clone();
        async move { rollback(&s, req).await }
    });
    let s = state.clone();
    router.route(POLICY_TEST, move |req: TestRequest| {
        let s = s.clone();
        async move { test(&s, &req).await }
    })
}

/// Decide, append the decision to the audit log (a denial with its `policy.denied`)
/// and answer once that row is committed. A decision that cannot be recorded is not
/// given: the reply is `unavailable`.
async fn evaluate(state: &State, req: &EvaluateRequest) -> Result<Decision, WireError> {
    let now = state.clock.now();
    let decision = state
        .current()
        .decide(req, now)
        .map_err(|e| request_error(&e))?;
    let sans = sans_list(&req.sans);
    let resource = serde_json::json!({ "profile": req.profile.as_str(), "sans": sans });
    let denied = (!decision.allowed).then(|| PolicyDenied {
        audit_seq: 0,
        principal: req.principal.clone(),
        action: req.action.as_str().to_owned(),
        profile: req.profile.as_str().to_owned(),
        sans: sans.clone(),
        reasons: decision.reasons.clone(),
        policy_version: decision.policy_version.clone(),
    });
    let entry = audit::NewEntry {
        at: now,
        kind: AuditKind::Decision,
        principal: req.principal.clone(),
        action: req.action.as_str().to_owned(),
        resource: resource.to_string(),
        outcome: if decision.allowed { "allow" } else { "deny" }.to_owned(),
        reasons: decision.reasons.clone(),
        policy_version: decision.policy_version.clone(),
        denied,
    };
    let is_denial = entry.denied.is_some();
    audit::append(&state.audit, entry)
        .await
        .map_err(|e| WireError::unavailable(format!("cannot record the decision: {e}")))?;
    if is_denial {
        state.outbox.wake();
    }
    tracing::info!(
        principal = %req.principal,
        action = ?req.action,
        allowed = decision.allowed,
        version = %decision.policy_version,
        reasons = ?decision.reasons,
        "policy decision"
    );
    Ok(decision)
}

/// Every requested name as text (DNS, then IP, then URI).
fn sans_list(sans: &sigil_contracts::types::Sans) -> Vec<String> {
    sans.dns
        .iter()
        .cloned()
        .chain(sans.ip.iter().map(ToString::to_string))
        .chain(sans.uri.iter().cloned())
        .collect()
}

/// One audit row per `identity.issued` / `identity.revoked`, in the consumer's
/// transaction after its inbox row, so a redelivery appends nothing.
async fn audit_event(
    state: &State,
    txn: &DatabaseTransaction,
    delivery: &Delivery,
    now: DateTime<Utc>,
) -> Result<(), HandleError> {
    let version = state.current().version().to_owned();
    let (id, entry) = if delivery.is::<IdentityIssued>() {
        let event = delivery.decode::<IdentityIssued>()?;
        let facts = &event.data.facts;
        let resource = serde_json::json!({
            "serial": facts.serial,
            "profile": facts.profile.as_str(),
            "sans": sans_list(&facts.sans),
        });
        let entry = audit::NewEntry {
            at: now,
            kind: AuditKind::Issued,
            principal: event.data.requested_by.clone(),
            action: "issued".to_owned(),
            resource: resource.to_string(),
            outcome: "issued".to_owned(),
            reasons: Vec::new(),
            policy_version: version,
            denied: None,
        };
        (event.id, entry)
    } else if delivery.is::<IdentityRevoked>() {
        let event = delivery.decode::<IdentityRevoked>()?;
        let resource = serde_json::json!({ "serial": event.data.serial, "sans": [] });
        let entry = audit::NewEntry {
            at: now,
            kind: AuditKind::Revoked,
            principal: event.data.revoked_by.clone(),
            action: "revoked".to_owned(),
            resource: resource.to_string(),
            outcome: "revoked".to_owned(),
            reasons: vec![event.data.reason.as_str().to_owned()],
            policy_version: version,
            denied: None,
        };
        (event.id, entry)
    } else {
        return Err(HandleError::Poison(format!(
            "unexpected subject {}",
            delivery.subject
        )));
    };
    if !inbox::first_delivery(txn, AUDIT_DURABLE, &id)
        .await
        .map_err(inbox::retry)?
    {
        return Ok(());
    }
    audit::insert(txn, &entry).await.map_err(inbox::retry)?;
    Ok(())
}

async fn audit_list(state: &State, req: &AuditListRequest) -> Result<AuditListResponse, WireError> {
    audit::list(&state.db, req).await.map_err(db_error)
}

async fn audit_verify(state: &State) -> Result<AuditVerifyResponse, WireError> {
    let reply = audit::verify(&state.db).await.map_err(db_error)?;
    if let Some(b) = &reply.broken {
        tracing::warn!(seq = b.seq, reason = ?b.reason, "audit chain is broken");
    }
    Ok(reply)
}

async fn apply(state: &State, req: ApplyRequest) -> Result<PolicyVersion, WireError> {
    let compiled = Compiled::new("candidate", &req.policies, req.entities.as_deref())
        .map_err(|e| policy_error(&e))?;
    let new = store::NewVersion {
        policies: req.policies,
        entities: req.entities.filter(|e| !e.trim().is_empty()),
        created_by: label("applied_by", req.applied_by)?.unwrap_or_else(|| ANONYMOUS.to_owned()),
        comment: label("comment", req.comment)?,
        origin: PolicyOrigin::Applied,
        restored_from: None,
        policy_count: compiled.policy_count(),
    };
    append(state, &new).await
}

async fn rollback(state: &State, req: RollbackRequest) -> Result<PolicyVersion, WireError> {
    let row = store::load(&state.db, req.version)
        .await
        .map_err(db_error)?
        .ok_or_else(|| WireError::not_found(format!("no policy version {}", req.version)))?;
    let compiled = Compiled::new("candidate", &row.policies, row.entities.as_deref())
        .map_err(|e| policy_error(&e))?;
    let new = store::NewVersion {
        policies: row.policies,
        entities: row.entities,
        created_by: label("applied_by", req.applied_by)?.unwrap_or_else(|| ANONYMOUS.to_owned()),
        comment: label("comment", req.comment)?
            .or_else(|| Some(format!("rollback to version {}", req.version))),
        origin: PolicyOrigin::RolledBack,
        restored_from: Some(req.version),
        policy_count: compiled.policy_count(),
    };
    append(state, &new).await
}

async fn append(state: &State, new: &store::NewVersion) -> Result<PolicyVersion, WireError> {
    let model = store::append(&state.db, new, state.clock.now(), false)
        .await
        .map_err(db_error)?
        .ok_or_else(|| WireError::internal("policy version was not stored"))?;
    state.outbox.wake();
    if let Err(e) = state.refresh().await {
        tracing::warn!(error = %e, "cannot load the version just stored");
    }
    let version = store::summary(&model, u64::try_from(model.version).ok());
    tracing::info!(
        version = version.version,
        origin = version.origin.as_str(),
        by = %version.created_by,
        "policy version stored"
    );
    Ok(version)
}

async fn list(state: &State, req: &ListRequest) -> Result<ListResponse, WireError> {
    let limit = req.limit.unwrap_or(100).clamp(1, MAX_LIST);
    let rows = store::list(&state.db, u64::from(limit))
        .await
        .map_err(db_error)?;
    let active = rows.first().and_then(|r| u64::try_from(r.version).ok());
    Ok(ListResponse {
        active: active.unwrap_or(0),
        versions: rows.iter().map(|r| store::summary(r, active)).collect(),
    })
}

async fn show(state: &State, req: &ShowRequest) -> Result<PolicyDocument, WireError> {
    let active = store::active_version(&state.db).await.map_err(db_error)?;
    let wanted = req
        .version
        .or(active)
        .ok_or_else(|| WireError::not_found("no policy version is stored"))?;
    let row = store::load(&state.db, wanted)
        .await
        .map_err(db_error)?
        .ok_or_else(|| WireError::not_found(format!("no policy version {wanted}")))?;
    Ok(store::document(&row, active))
}

async fn test(state: &State, req: &TestRequest) -> Result<Explanation, WireError> {
    let compiled = match (&req.policies, req.version) {
        (Some(text), _) => Arc::new(
            Compiled::new("candidate", text, req.entities.as_deref())
                .map_err(|e| policy_error(&e))?,
        ),
        (None, Some(v)) => {
            let row = store::load(&state.db, v)
                .await
                .map_err(db_error)?
                .ok_or_else(|| WireError::not_found(format!("no policy version {v}")))?;
            Arc::new(
                Compiled::new(v.to_string(), &row.policies, row.entities.as_deref())
                    .map_err(|e| policy_error(&e))?,
            )
        }
        (None, None) => state.current(),
    };
    let at = req.at.unwrap_or_else(|| state.clock.now());
    compiled
        .explain(&req.request, at)
        .map_err(|e| request_error(&e))
}

/// An optional free-text field, capped and without control characters.
fn label(field: &str, value: Option<String>) -> Result<Option<String>, WireError> {
    match value {
        Some(v) if v.len() > MAX_LABEL || v.chars().any(char::is_control) => {
            Err(WireError::bad_request(format!(
                "{field} must be at most {MAX_LABEL} bytes without control characters"
            )))
        }
        Some(v) if v.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// A refused policy set: `bad_request` with every problem (line and column) in details.
pub fn policy_error(e: &PolicyError) -> WireError {
    let kind = match e {
        PolicyError::Parse(_) => "parse",
        PolicyError::Schema(_) => "schema",
        PolicyError::Entities(_) => "entities",
        PolicyError::Annotation(_) => "annotation",
        PolicyError::Empty => "empty",
        PolicyError::Template => "template",
        _ => "internal",
    };
    if kind == "internal" {
        return WireError::internal(e.to_string());
    }
    WireError::bad_request(e.to_string())
        .with_details(serde_json::json!({ "kind": kind, "problems": e.problems() }))
}

/// A request that cannot be decided: `bad_request` (unknown principal type…).
pub fn request_error(e: &RequestError) -> WireError {
    match e {
        RequestError::Internal(_) => WireError::internal(e.to_string()),
        _ => WireError::bad_request(e.to_string()),
    }
}

fn db_error(e: DbErr) -> WireError {
    WireError::unavailable(format!("policy database: {e}"))
}
