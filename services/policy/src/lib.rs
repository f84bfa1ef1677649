//! `sigil-policy`: Sigil's policy decision point, on Cedar, and the place where
//! requesters are authenticated.
//!
//! Serves, on `sigil.policy.v1.*`:
//! - `evaluate` ([`POLICY_EVALUATE`]): the issuer and the revocation service forward a
//!   request's proof ([`sigil_contracts::auth::Proof`]), the operation it was sent to and
//!   its digest, with the action (issue, renew, revoke, read, admin), profile, requested
//!   names, lifetime, key algorithm and certificate kind. The service first establishes
//!   who sent it ([`authn`]: a bootstrap token, or possession of a credential Sigil
//!   issued; `anonymous` without proof, refused unless [`Config::allow_anonymous`]),
//!   then answers a [`Decision`]: allowed or not, the deciding policies and why, the
//!   constraints the caller must apply (the lifetime, clamped when a
//!   `@clamp_ttl_seconds` forbid says so), the policy version, and the authenticated
//!   principal, how it was authenticated and the action decided (an `issue` by a
//!   non-admin credential is its `renew`). Callers record that principal; a request
//!   never names its own. A refused proof is `unauthenticated`;
//! - `token_create` ([`POLICY_TOKEN_CREATE`], admins): mint a bootstrap token (a JWT
//!   signed with a key kept in this service's database). Its uses are counted across
//!   replicas in JetStream KV, and only when a decision allowed the request;
//! - `apply`, `list`, `show`, `rollback`: versioned policy sets. `apply` and `rollback`
//!   are admin actions (authenticated and decided like any request; the principal is
//!   recorded as the author). `apply` validates Cedar text against the shipped schema
//!   ([`engine::SCHEMA_TEXT`]) and stores it as a new active version; a malformed or
//!   mismatching set is a `bad_request` (with line and column) and changes nothing.
//!   `rollback N` appends a copy of version N;
//! - `test`: a dry run that explains a decision (per name: allowed, which policies
//!   decided) for a named principal or a proof (checked, nothing consumed), optionally
//!   at another time, under another version or a candidate set.
//!
//! Policies are data in the service's own database (`policy_versions`, SQLite or
//! PostgreSQL); the highest version is active. Every change enqueues `policy.changed`
//! through the outbox in the same transaction. Replicas reload on that event (a plain,
//! per-replica NATS subscription) and also poll the active version every
//! [`Config::reload_interval`], so a missed event heals within seconds. On first start
//! with no versions, version 1 is [`Config::seed_policies`] or the built-in default set
//! ([`templates::DEFAULT`]): local and private names for everyone, revocation and
//! administration for admins.
//!
//! Every decision, every refused proof, every minted token, and every issuance and
//! revocation (consumed from the events stream with the durable consumer
//! [`AUDIT_DURABLE`]) is appended to the hash-chained audit log ([`audit`]); a denial or
//! a refused proof also enqueues `policy.denied` with its row. `audit_list` and
//! `audit_verify` read and check that log. The same consumer records which principal
//! each issued credential belongs to ([`authn::possession::record_issued`]): that is how
//! a possession proof names its principal. Replicas drop their cached trust bundle on
//! `ca.bundle_changed` (a per-replica subscription), so a retired CA stops counting at
//! once.
//!
//! On a fresh installation nobody holds a credential yet: [`mint_local_token`] (used by
//! `sigil up` and `sigil-policy mint-token`) mints the first token by opening the policy
//! database directly — whoever can read that database can mint.
//!
//! The decision itself is the pure [`Compiled::explain`]; "now" comes from the
//! runtime's injected clock, so time-phased rules and token expiry are tested by moving
//! a `ManualClock`.
#![forbid(unsafe_code)]

pub mod audit;
pub mod authn;
pub mod engine;
pub mod store;
pub mod templates;

pub use authn::{ANONYMOUS, AuthError, Grant, Requester};
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
use sigil_contracts::auth::{
    AuthMethod, CarriesProof, Proof, TokenClaims, TokenCreateRequest, TokenCreateResponse,
};
use sigil_contracts::event::{AuditAnchored, IdentityIssued, IdentityRevoked, PolicyDenied};
use sigil_contracts::policy::{
    Action, ApplyRequest, AuditKind, AuditListRequest, AuditListResponse, AuditVerifyRequest,
    AuditVerifyResponse, Decision, EvaluateRequest, Explanation, ListRequest, ListResponse,
    PolicyDocument, PolicyOrigin, PolicyVersion, RollbackRequest, ShowRequest, TestRequest,
};
use sigil_contracts::subjects::{
    self, Operation, POLICY_APPLY, POLICY_AUDIT_LIST, POLICY_AUDIT_VERIFY, POLICY_EVALUATE,
    POLICY_LIST, POLICY_ROLLBACK, POLICY_SHOW, POLICY_TEST, POLICY_TOKEN_CREATE, Service,
};
use sigil_contracts::{CloudEvent, EventKind, WireError};
use sigil_store::StoreError;
use sigil_store::group::GroupCommit;
use sigil_store::inbox;
use sigil_store::outbox::Outbox;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::authn::ledger::UseLedger;
use crate::authn::possession::PossessionVerifier;
use crate::authn::token::TokenKeys;

/// This service, as named in subjects, logs and the database schema.
pub const SERVICE: Service = Service::Policy;
/// Name of the health component and of the service in metrics.
pub const COMPONENT: &str = "policy";
/// How often a replica checks the active version when no event arrives.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// How long authentication waits for the issuer (trust bundle) and the revocation
/// service (status) before refusing as `unavailable`.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a replica keeps the issuer's trust bundle without a `ca.bundle_changed`.
pub const BUNDLE_MAX_AGE: Duration = Duration::from_secs(60);
/// Default of [`Config::anchor_interval`].
pub const DEFAULT_ANCHOR_INTERVAL: Duration = Duration::from_secs(30);
/// Audit principal of a proof that was refused before it named anyone.
pub const UNAUTHENTICATED: &str = "unauthenticated";
/// Audit principal of a token minted by opening the policy database ([`mint_local_token`]).
pub const LOCAL_MINTER: &str = "local:policy-database";
/// Longest comment stored with a version.
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
    /// Decide requests that carry no proof, as principal `anonymous`. Off by default:
    /// such requests are refused with `unauthenticated`. For tests and throwaway
    /// development setups only — it turns authentication off (an anonymous requester may
    /// then also apply policies and mint tokens).
    pub allow_anonymous: bool,
    /// Bound on each call authentication makes to the issuer and the revocation service.
    pub auth_timeout: Duration,
    /// How often the newest audit row is anchored in the event stream
    /// (`policy.audit_anchored`), when rows were appended since the last anchor.
    pub anchor_interval: Duration,
}

impl Config {
    /// The default SQLite database inside a Sigil data directory.
    pub fn in_data_dir(data_dir: &Path) -> Config {
        Config {
            database_url: sigil_store::sqlite_url(&data_dir.join("policy.db")),
            seed_policies: None,
            seed_entities: None,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
            allow_anonymous: false,
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            anchor_interval: DEFAULT_ANCHOR_INTERVAL,
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
    /// Authentication could not be set up (token key, use ledger), or a token could not
    /// be minted ([`mint_local_token`]).
    #[error("policy authentication: {0}")]
    Auth(#[from] AuthError),
}

/// What every handler shares.
#[derive(Debug)]
struct State {
    db: DatabaseConnection,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
    current: RwLock<Arc<Compiled>>,
    audit: GroupCommit<audit::NewEntry>,
    allow_anonymous: bool,
    tokens: TokenKeys,
    ledger: Arc<UseLedger>,
    possession: PossessionVerifier,
    bus: sigil_bus::Bus,
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
    let tokens = TokenKeys::load_or_create(&db).await?;
    let ledger = Arc::new(UseLedger::open(rt.bus.jetstream()).await?);
    let possession = PossessionVerifier::new(
        rt.bus.clone(),
        db.clone(),
        ledger.clone(),
        config.auth_timeout,
    );
    if config.allow_anonymous {
        tracing::warn!(
            "allow_anonymous is on: requests without proof are decided as anonymous (never in production)"
        );
    }
    let state = Arc::new(State {
        db: db.clone(),
        outbox: outbox.clone(),
        clock: rt.clock.clone(),
        current: RwLock::new(Arc::new(seed)),
        audit: GroupCommit::spawn(db.clone(), AUDIT_BATCH),
        allow_anonymous: config.allow_anonymous,
        tokens,
        ledger,
        possession,
        bus: rt.bus.clone(),
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
    {
        let state = state.clone();
        let client = rt.bus.client().clone();
        let front = front.clone();
        tasks.spawn(async move { watch_bundle(state, client, front).await });
    }
    {
        let state = state.clone();
        let front = front.clone();
        let every = config.anchor_interval;
        tasks.spawn(async move {
            anchor(state, every, front).await;
            Ok(())
        });
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

/// Drop the cached trust bundle on every `ca.bundle_changed` (a per-replica core
/// subscription: every replica sees every event), so a CA that left the bundle stops
/// counting at once (a chain that still verifies against the cached bundle would never
/// be re-checked). A new intermediate needs no event: the verifier refetches once when a
/// chain fails. As a fallback for an event missed while disconnected, the cache is also
/// dropped every [`BUNDLE_MAX_AGE`].
async fn watch_bundle(
    state: Arc<State>,
    client: async_nats::Client,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let subject = subjects::event_subject(EventKind::CaBundleChanged);
    let mut events = subscribe(&client, &subject).await?;
    let mut tick = tokio::time::interval(BUNDLE_MAX_AGE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            msg = events.next() => match msg {
                Some(_) => {
                    tracing::info!("trust bundle changed; dropping the cached bundle");
                    state.possession.invalidate_bundle();
                }
                None => {
                    tracing::warn!("ca.bundle_changed subscription ended; subscribing again");
                    state.possession.invalidate_bundle();
                    events = subscribe(&client, &subject).await?;
                }
            },
            _ = tick.tick() => state.possession.invalidate_bundle(),
        }
    }
}

/// Every `every`, anchor the newest audit row in the event stream when rows were
/// appended since the newest anchor (read from the stream at start, so a restarted
/// replica never anchors a log that lost rows; replicas may anchor the same row, which
/// is harmless). A log that no longer holds the newest anchor's row is not anchored
/// again but reported at every tick. Failures are logged and retried at the next tick.
async fn anchor(state: Arc<State>, every: Duration, shutdown: CancellationToken) {
    let mut previous: Option<Option<AuditAnchored>> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let prev = match previous.take() {
            Some(p) => p,
            None => match latest_anchor(&state.bus).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e.message, "cannot read the newest audit anchor");
                    continue;
                }
            },
        };
        match audit::anchor_tail(&state.db, prev.as_ref()).await {
            Ok(audit::AnchorOutcome::Anchored(a)) => {
                tracing::debug!(seq = a.seq, "audit log anchored");
                state.outbox.wake();
                previous = Some(Some(a));
            }
            Ok(audit::AnchorOutcome::Nothing) => previous = Some(prev),
            Ok(audit::AnchorOutcome::Mismatch(why)) => {
                tracing::error!(%why, "the audit log does not hold its newest anchor; not anchoring it");
                previous = Some(prev);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot anchor the audit log");
                previous = Some(prev);
            }
        }
    }
}

/// The newest `policy.audit_anchored` event in the stream, if any.
async fn latest_anchor(bus: &sigil_bus::Bus) -> Result<Option<AuditAnchored>, WireError> {
    let unavailable =
        |e: String| WireError::unavailable(format!("cannot read the audit anchor: {e}"));
    let stream = bus
        .jetstream()
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let subject = subjects::event_subject(EventKind::AuditAnchored);
    match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(msg) => {
            let event: CloudEvent<AuditAnchored> = serde_json::from_slice(&msg.payload)
                .map_err(|e| WireError::internal(format!("undecodable audit anchor: {e}")))?;
            Ok(Some(event.data))
        }
        Err(e)
            if e.kind()
                == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
        {
            Ok(None)
        }
        Err(e) => Err(unavailable(e.to_string())),
    }
}

async fn subscribe(
    client: &async_nats::Client,
    subject: &str,
) -> Result<async_nats::Subscriber, Error> {
    client
        .subscribe(subject.to_owned())
        .await
        .map_err(|e| Error::Bus(BusError::Service(format!("subscribe {subject}: {e}"))))
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
    let router = router.route_proven(POLICY_APPLY, move |req: ApplyRequest, digest| {
        let s = s.clone();
        async move { apply(&s, req, digest).await }
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
    let router = router.route_proven(POLICY_ROLLBACK, move |req: RollbackRequest, digest| {
        let s = s.clone();
        async move { rollback(&s, req, digest).await }
    });
    let s = state.clone();
    let router = router.route_proven(
        POLICY_TOKEN_CREATE,
        move |req: TokenCreateRequest, digest| {
            let s = s.clone();
            async move { token_create(&s, &req, digest).await }
        },
    );
    let s = state.clone();
    router.route(POLICY_TEST, move |req: TestRequest| {
        let s = s.clone();
        async move { test(&s, &req).await }
    })
}

/// What a request says about who sent it: its proof, the endpoint it was sent to and
/// its digest (what a possession proof must sign).
#[derive(Debug, Clone, Copy)]
struct Claim<'a> {
    proof: Option<&'a Proof>,
    operation: Option<&'a str>,
    digest: Option<&'a str>,
}

impl<'a> Claim<'a> {
    /// The claim of a request forwarded to `evaluate` (or dry-run by `test`).
    fn forwarded(req: &'a EvaluateRequest) -> Claim<'a> {
        Claim {
            proof: req.proof.as_ref(),
            operation: req.operation.as_deref(),
            digest: req.request_digest.as_deref(),
        }
    }
}

/// Establish who sent a request from its proof: anonymous without one; a token's
/// subject (its use is not counted here, only once a decision allows); the principal a
/// credential was issued to. `consume = false` (dry runs) records no nonce.
async fn authenticate(
    state: &State,
    claim: Claim<'_>,
    now: DateTime<Utc>,
    consume: bool,
) -> Result<Requester, AuthError> {
    match claim.proof {
        None => Ok(Requester::anonymous()),
        Some(Proof::Token { token }) => {
            let claims = state.tokens.verify(token, now)?;
            Ok(Requester {
                principal: claims.sub,
                method: AuthMethod::Token,
                grant: Grant::Token {
                    jti: claims.jti,
                    names: claims.sigil_for,
                    uses: claims.sigil_uses,
                },
            })
        }
        Some(Proof::Possession(proof)) => {
            let (Some(operation), Some(digest)) = (claim.operation, claim.digest) else {
                return Err(AuthError::WrongRequest(
                    "a possession proof is checked against the operation and request digest it was made for, and the caller sent none".into(),
                ));
            };
            state
                .possession
                .verify(proof, operation, digest, now, consume)
                .await
        }
    }
}

/// Authenticate `claim`, decide `req` for the requester, count a token's use when
/// allowed, and append the outcome to the audit log (a denial or a refused proof with
/// its `policy.denied`). Answers only once that row is committed: a decision that cannot
/// be recorded is not given (`unavailable`). A refused proof is `unauthenticated`, and so
/// is a request without proof unless [`Config::allow_anonymous`].
async fn authorize(
    state: &State,
    claim: Claim<'_>,
    req: &EvaluateRequest,
) -> Result<(Requester, Decision), WireError> {
    let now = state.clock.now();
    let compiled = state.current();
    if claim.proof.is_none() && !state.allow_anonymous {
        return Err(refuse(state, &compiled, req, claim, None, Refusal::NoProof, now).await);
    }
    let requester = match authenticate(state, claim, now, true).await {
        Ok(r) => r,
        Err(e) => {
            return Err(refuse(state, &compiled, req, claim, None, Refusal::Auth(&e), now).await);
        }
    };
    let decision = compiled
        .decide(req, &requester, now)
        .map_err(|e| request_error(&e))?;
    if decision.allowed {
        if let Grant::Token { jti, uses, .. } = &requester.grant {
            if let Err(e) = state.ledger.use_token(jti, *uses).await {
                let refusal = Refusal::Auth(&e);
                return Err(
                    refuse(state, &compiled, req, claim, Some(&requester), refusal, now).await,
                );
            }
        }
    }
    record_decision(state, req, &requester, &decision, now).await?;
    Ok((requester, decision))
}

/// Audit a decision (a denial with its `policy.denied`), then log it.
async fn record_decision(
    state: &State,
    req: &EvaluateRequest,
    requester: &Requester,
    decision: &Decision,
    now: DateTime<Utc>,
) -> Result<(), WireError> {
    let action = decision.action.unwrap_or(req.action).as_str().to_owned();
    let denied = (!decision.allowed).then(|| PolicyDenied {
        audit_seq: 0,
        principal: requester.principal.clone(),
        action: action.clone(),
        profile: req.profile.as_str().to_owned(),
        sans: sans_list(&req.sans),
        reasons: decision.reasons.clone(),
        policy_version: decision.policy_version.clone(),
    });
    let entry = audit::NewEntry {
        at: now,
        kind: AuditKind::Decision,
        principal: requester.principal.clone(),
        action,
        resource: decision_resource(req, requester.method).to_string(),
        outcome: if decision.allowed { "allow" } else { "deny" }.to_owned(),
        reasons: decision.reasons.clone(),
        policy_version: decision.policy_version.clone(),
        denied,
    };
    append_audit(state, entry).await?;
    tracing::info!(
        principal = %requester.principal,
        authenticated_by = requester.method.as_str(),
        action = ?decision.action,
        allowed = decision.allowed,
        version = %decision.policy_version,
        reasons = ?decision.reasons,
        "policy decision"
    );
    Ok(())
}

/// Why a request was refused before any policy decided it.
#[derive(Debug, Clone, Copy)]
enum Refusal<'a> {
    /// No proof, and anonymous requests are not allowed.
    NoProof,
    /// The proof was refused (or a dependency of its check failed).
    Auth(&'a AuthError),
}

/// The message of [`Refusal::NoProof`].
const NO_PROOF: &str = "this request carries no proof of who sent it";

/// A refused request: audit it (outcome `unauthenticated`, with its `policy.denied`) and
/// answer the error. `requester` is who the proof named when that much was established
/// (a valid token whose uses are spent). A dependency failure (`unavailable`) is no
/// verdict on the proof: it is logged, not audited.
async fn refuse(
    state: &State,
    compiled: &Compiled,
    req: &EvaluateRequest,
    claim: Claim<'_>,
    requester: Option<&Requester>,
    refusal: Refusal<'_>,
    now: DateTime<Utc>,
) -> WireError {
    let (wire, reason) = match refusal {
        Refusal::NoProof => (WireError::unauthenticated(NO_PROOF), NO_PROOF.to_owned()),
        Refusal::Auth(e @ AuthError::Unavailable(_)) => {
            tracing::warn!(error = %e, "cannot authenticate a request");
            return e.to_wire();
        }
        Refusal::Auth(e) => (e.to_wire(), e.reason()),
    };
    let principal = match (requester, claim.proof) {
        (Some(r), _) => r.principal.clone(),
        (None, None) => ANONYMOUS.to_owned(),
        (None, Some(_)) => UNAUTHENTICATED.to_owned(),
    };
    let method = claim.proof.map_or(AuthMethod::None, Proof::method);
    let reasons = vec![reason];
    let version = compiled.version().to_owned();
    let entry = audit::NewEntry {
        at: now,
        kind: AuditKind::Decision,
        principal: principal.clone(),
        action: req.action.as_str().to_owned(),
        resource: decision_resource(req, method).to_string(),
        outcome: "unauthenticated".to_owned(),
        reasons: reasons.clone(),
        policy_version: version.clone(),
        denied: Some(PolicyDenied {
            audit_seq: 0,
            principal: principal.clone(),
            action: req.action.as_str().to_owned(),
            profile: req.profile.as_str().to_owned(),
            sans: sans_list(&req.sans),
            reasons: reasons.clone(),
            policy_version: version,
        }),
    };
    if let Err(audit_err) = append_audit(state, entry).await {
        return audit_err;
    }
    tracing::info!(
        principal = %principal,
        authenticated_by = method.as_str(),
        action = ?req.action,
        reasons = ?reasons,
        "request refused: unauthenticated"
    );
    wire
}

/// The audit row's resource of a decision: what was asked, how the requester was
/// authenticated, and the endpoint the request was sent to when the caller said.
fn decision_resource(req: &EvaluateRequest, method: AuthMethod) -> serde_json::Value {
    let mut resource = serde_json::json!({
        "profile": req.profile.as_str(),
        "sans": sans_list(&req.sans),
        "authenticated_by": method.as_str(),
    });
    if let (Some(op), Some(fields)) = (&req.operation, resource.as_object_mut()) {
        fields.insert("operation".to_owned(), serde_json::json!(op));
    }
    resource
}

/// Append one row; a row carrying a `policy.denied` wakes the outbox relay.
async fn append_audit(state: &State, entry: audit::NewEntry) -> Result<(), WireError> {
    let wake = entry.denied.is_some();
    audit::append(&state.audit, entry)
        .await
        .map_err(|e| WireError::unavailable(format!("cannot record the decision: {e}")))?;
    if wake {
        state.outbox.wake();
    }
    Ok(())
}

/// `evaluate`: authenticate the forwarded proof, decide, audit, answer the decision.
async fn evaluate(state: &State, req: &EvaluateRequest) -> Result<Decision, WireError> {
    if req.principal.is_some() {
        return Err(WireError::bad_request(
            "the principal is established by the proof; name one only in policy test",
        ));
    }
    authorize(state, Claim::forwarded(req), req)
        .await
        .map(|(_, decision)| decision)
}

/// Authenticate and authorize an administrative request (policy changes, tokens) sent
/// to `op`: decided as action `admin` without names, audited like every decision. An
/// anonymous requester is let through without a decision only when
/// [`Config::allow_anonymous`] (audited as such). `digest` is the request's digest as
/// received, which its proof must have signed. Answers who it was.
async fn authorize_admin<R: CarriesProof>(
    state: &State,
    op: Operation,
    req: &R,
    digest: String,
) -> Result<Requester, WireError> {
    let operation = op.subject();
    let claim = Claim {
        proof: req.proof(),
        operation: Some(&operation),
        digest: Some(&digest),
    };
    let ask = EvaluateRequest {
        proof: None,
        ..EvaluateRequest::admin_with_digest(op, req, digest.clone())
    };
    if claim.proof.is_none() && state.allow_anonymous {
        let requester = Requester::anonymous();
        let decision = Decision {
            allowed: true,
            reasons: vec![
                "anonymous requests are allowed on this service (allow_anonymous)".to_owned(),
            ],
            constraints: Default::default(),
            policy_version: state.current().version().to_owned(),
            principal: requester.principal.clone(),
            authenticated_by: AuthMethod::None,
            action: Some(Action::Admin),
        };
        record_decision(state, &ask, &requester, &decision, state.clock.now()).await?;
        return Ok(requester);
    }
    let (requester, decision) = authorize(state, claim, &ask).await?;
    if decision.allowed {
        Ok(requester)
    } else {
        Err(WireError::denied(decision.reasons))
    }
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
    let mut issued = None;
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
        issued = Some(event.data);
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
    if let Some(issued) = &issued {
        // Who the credential belongs to: what a possession proof by it authenticates.
        authn::possession::record_issued(txn, issued)
            .await
            .map_err(inbox::retry)?;
    }
    Ok(())
}

async fn audit_list(state: &State, req: &AuditListRequest) -> Result<AuditListResponse, WireError> {
    audit::list(&state.db, req).await.map_err(db_error)
}

async fn audit_verify(state: &State) -> Result<AuditVerifyResponse, WireError> {
    let anchor = latest_anchor(&state.bus).await?;
    let reply = audit::verify(&state.db, anchor.as_ref())
        .await
        .map_err(db_error)?;
    if let Some(b) = &reply.broken {
        tracing::warn!(seq = b.seq, reason = ?b.reason, "audit chain is broken");
    }
    Ok(reply)
}

/// `apply`: an admin stores a new active version (authenticated, decided as `admin`;
/// the principal is recorded as its author). The candidate is compiled, and the comment
/// checked, before the requester is authorized: a request that cannot succeed spends no
/// token use or proof nonce and leaves no `allowed` decision in the audit log.
async fn apply(
    state: &State,
    req: ApplyRequest,
    digest: String,
) -> Result<PolicyVersion, WireError> {
    let compiled = Compiled::new("candidate", &req.policies, req.entities.as_deref())
        .map_err(|e| policy_error(&e))?;
    let comment = label("comment", req.comment.clone())?;
    let requester = authorize_admin(state, POLICY_APPLY, &req, digest).await?;
    let new = store::NewVersion {
        policies: req.policies,
        entities: req.entities.filter(|e| !e.trim().is_empty()),
        created_by: requester.principal,
        comment,
        origin: PolicyOrigin::Applied,
        restored_from: None,
        policy_count: compiled.policy_count(),
    };
    append(state, &new).await
}

/// `rollback`: an admin makes an earlier version's text active again. The version is
/// looked up and compiled, and the comment checked, before the requester is authorized
/// (as in [`apply`]); which versions exist is no secret (`list` shows them).
async fn rollback(
    state: &State,
    req: RollbackRequest,
    digest: String,
) -> Result<PolicyVersion, WireError> {
    let row = store::load(&state.db, req.version)
        .await
        .map_err(db_error)?
        .ok_or_else(|| WireError::not_found(format!("no policy version {}", req.version)))?;
    let compiled = Compiled::new("candidate", &row.policies, row.entities.as_deref())
        .map_err(|e| policy_error(&e))?;
    let comment = label("comment", req.comment.clone())?
        .or_else(|| Some(format!("rollback to version {}", req.version)));
    let requester = authorize_admin(state, POLICY_ROLLBACK, &req, digest).await?;
    let new = store::NewVersion {
        policies: row.policies,
        entities: row.entities,
        created_by: requester.principal,
        comment,
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
    let requester = match (&req.request.principal, &req.request.proof) {
        (Some(_), Some(_)) => {
            return Err(WireError::bad_request(
                "name a principal or give a proof, not both",
            ));
        }
        (named, None) => Requester {
            principal: named.clone().unwrap_or_else(|| ANONYMOUS.to_owned()),
            method: AuthMethod::None,
            grant: Grant::Named,
        },
        // Checked like a real request, at the service's clock, consuming nothing.
        (None, Some(_)) => authenticate(
            state,
            Claim::forwarded(&req.request),
            state.clock.now(),
            false,
        )
        .await
        .map_err(|e| e.to_wire())?,
    };
    compiled
        .explain(&req.request, &requester, at)
        .map_err(|e| request_error(&e))
}

/// `token_create`: an admin mints a bootstrap token. The inputs are checked first (by
/// minting, which has no side effect), then the requester is authorized as `admin`,
/// then the token is audited (its id, principal, patterns, uses and expiry; never the
/// token itself) and returned.
async fn token_create(
    state: &State,
    req: &TokenCreateRequest,
    digest: String,
) -> Result<TokenCreateResponse, WireError> {
    let now = state.clock.now();
    let (token, claims) = state
        .tokens
        .mint(&req.principal, &req.names, req.ttl_seconds, req.uses, now)
        .map_err(|e| match e {
            AuthError::Malformed(m) => WireError::bad_request(m),
            other => other.to_wire(),
        })?;
    let requester = authorize_admin(state, POLICY_TOKEN_CREATE, req, digest).await?;
    let response = token_response(token, &claims)?;
    append_audit(
        state,
        token_audit_entry(
            &requester.principal,
            &response,
            state.current().version(),
            Vec::new(),
            now,
        ),
    )
    .await?;
    tracing::info!(
        by = %requester.principal,
        id = %response.id,
        principal = %response.principal,
        names = ?response.names,
        uses = response.uses,
        expires_at = %response.expires_at,
        "bootstrap token minted"
    );
    Ok(response)
}

/// The reply of a minted token.
fn token_response(token: String, claims: &TokenClaims) -> Result<TokenCreateResponse, WireError> {
    let expires_at = DateTime::from_timestamp(claims.exp, 0).ok_or_else(|| {
        WireError::internal(format!("token expiry {} is out of range", claims.exp))
    })?;
    Ok(TokenCreateResponse {
        token,
        id: claims.jti.clone(),
        principal: claims.sub.clone(),
        names: claims.sigil_for.clone(),
        uses: claims.sigil_uses,
        expires_at,
    })
}

/// The audit row of a token minted by `by`: everything about it but the token.
fn token_audit_entry(
    by: &str,
    token: &TokenCreateResponse,
    policy_version: &str,
    reasons: Vec<String>,
    now: DateTime<Utc>,
) -> audit::NewEntry {
    audit::NewEntry {
        at: now,
        kind: AuditKind::TokenCreated,
        principal: by.to_owned(),
        action: "token_create".to_owned(),
        resource: serde_json::json!({
            "jti": token.id,
            "principal": token.principal,
            "names": token.names,
            "uses": token.uses,
            "expires_at": token.expires_at,
        })
        .to_string(),
        outcome: "created".to_owned(),
        reasons,
        policy_version: policy_version.to_owned(),
        denied: None,
    }
}

/// Mint a bootstrap token without the bus: open the policy database at
/// `config.database_url` (running its migrations), load or create the token key, mint,
/// and append a `token_created` row to the audit log (principal [`LOCAL_MINTER`]).
///
/// This is how the first admin credential comes to be (`sigil up`, and `sigil-policy
/// mint-token` in a policy pod): nobody holds a credential yet, so no request could be
/// authenticated. It needs nothing but the database, so whoever can open the policy
/// database can mint — protect it like the issuer's CA keys. A service running on the
/// same database verifies the token at once (the key is shared through the database).
pub async fn mint_local_token(
    config: &Config,
    principal: &str,
    names: &[String],
    ttl_seconds: i64,
    uses: u32,
    now: DateTime<Utc>,
) -> Result<TokenCreateResponse, Error> {
    let db = sigil_store::open::<Migrator>(&config.database_url, SERVICE.name()).await?;
    let result = mint_locally(&db, principal, names, ttl_seconds, uses, now).await;
    db.close().await.ok();
    result
}

async fn mint_locally(
    db: &DatabaseConnection,
    principal: &str,
    names: &[String],
    ttl_seconds: i64,
    uses: u32,
    now: DateTime<Utc>,
) -> Result<TokenCreateResponse, Error> {
    let keys = TokenKeys::load_or_create(db).await?;
    let (token, claims) = keys.mint(principal, names, ttl_seconds, uses, now)?;
    let response =
        token_response(token, &claims).map_err(|e| Error::Auth(AuthError::Malformed(e.message)))?;
    let version = store::active_version(db)
        .await?
        .map_or_else(|| "-".to_owned(), |v| v.to_string());
    let writer = GroupCommit::spawn(db.clone(), 1);
    audit::append(
        &writer,
        token_audit_entry(
            LOCAL_MINTER,
            &response,
            &version,
            vec!["minted locally by opening the policy database".to_owned()],
            now,
        ),
    )
    .await?;
    Ok(response)
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
