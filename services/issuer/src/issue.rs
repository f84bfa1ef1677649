//! `sigil.issuer.v1.issue`: prepare, ask policy, sign, record.
//!
//! 1. **Prepare** (nothing is written): check the lifetime and the idempotency key,
//!    parse the CSR and verify its self-signature (proof of possession of the key to
//!    certify), settle the names (the request's or the CSR's; when both are given they
//!    must agree) and the key algorithm. A retry whose idempotency key is already
//!    recorded gets the recorded answer here and goes no further: the idempotency
//!    fingerprint is the request's [`CarriesProof::digest`] (its JSON without the
//!    proof), so a retry carrying a fresh proof, or the same single-use token a second
//!    time, is still the same request, and gets the certificate (never the key) back.
//! 2. **Authorize**: the issuer never decides who is asking. It passes the request's
//!    proof ([`sigil_contracts::auth`]: a bootstrap token or a possession proof), the
//!    operation's subject and the request's digest on to policy's `evaluate`, which
//!    authenticates the sender, decides and names the principal; that principal is what
//!    the issuance row and the `identity.issued` event record as `requested_by`. A
//!    denial comes back as `denied` with policy's reasons, a refused proof as
//!    `unauthenticated` with policy's message, an unreachable policy as `unavailable`.
//!    Policy's constraints (the possibly clamped lifetime) are applied; the validity
//!    starts [`BACKDATE_SECONDS`] before now to absorb clock skew between machines, and
//!    ends no later than the issuing CA.
//! 3. **Build and lint** with the active CA, by its kind: classical
//!    [`sigil_pki::prepare_leaf_cert`], hybrid [`sigil_pki::prepare_hybrid_leaf`] (the
//!    classical leaf key from the CSR or generated, plus the CSR's alternative ML-DSA
//!    key when it is a hybrid CSR), composite [`sigil_pki::prepare_composite_leaf`] and
//!    ML-DSA [`sigil_pki::prepare_mldsa_leaf`] (the CSR's composite / ML-DSA key, or a
//!    server-generated one); a CSR key of another kind than the CA's is refused
//!    (`plan_key`). Each applies the profile
//!    ([`sigil_pki::profile`]: KU, EKU, basicConstraints, AKI/SKI, SPIFFE names), the
//!    CRL distribution point `<crl_base_url>/<issuer-ca-id>.crl` and OCSP AIA
//!    `<ocsp_base_url>` when configured, fixes a random 127-bit serial and lints;
//!    nothing that fails is signed.
//! 4. **Record the intent** ([`intent`]): the serial, request hash, profile and CA kind
//!    are committed as `prepared` in their own transaction. It is refused when its
//!    intermediate was retired meanwhile (another replica's rotation); the request is
//!    then planned again with the new intermediate, reusing policy's decision, since
//!    the proof is single use and cannot be evaluated twice. When the new intermediate
//!    is of another kind or certifies another key algorithm than policy judged, the
//!    request fails `unavailable` ([`CA_CHANGED`]) and the client retries it.
//! 5. **Sign**, and validate what was signed. A generated key is returned once: PKCS#8
//!    `PRIVATE KEY` PEM for classical and ML-DSA (RFC 9881) keys, Sigil's composite key
//!    DER ([`sigil_pki::CompositeKeyPair::to_der`]) under the PEM label
//!    [`COMPOSITE_KEY_PEM_LABEL`] for composite keys.
//! 6. **Record**: one transaction inserts the issuance row, enqueues the
//!    `identity.issued` event in the outbox and marks the intent `issued`; only after
//!    the commit is the reply sent and the outbox relay woken.
//!
//! Every error before step 4 leaves no row and no event. A certificate signed for a
//! request that then fails to commit (or loses an idempotency race) is discarded
//! unseen and its intent marked `discarded`; an intent left `prepared` after a crash
//! between steps 4 and 6 stays visible for audit.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait as _, DatabaseConnection, DbErr, EntityTrait as _, QueryFilter as _,
    QuerySelect as _, Set, SqlErr,
};
use sigil_bus::{ClientError, Runtime};
use sigil_contracts::auth::CarriesProof;
use sigil_contracts::event::{IdentityIssued, source_for};
use sigil_contracts::issuer::{
    CaInitRequest, CaListRequest, CaListResponse, CaState, IssueRequest, IssueResponse,
};
use sigil_contracts::policy::{Action, Decision, EvaluateRequest};
use sigil_contracts::subjects::{
    ISSUER_CA_INIT, ISSUER_ISSUE, Operation, POLICY_EVALUATE, Service,
};
use sigil_contracts::types::{CaKind, CertificateFacts, KeyAlgorithm, Sans};
use sigil_contracts::{CloudEvent, ErrorCode, WireError};
use sigil_pki::composite::TradAlg;
use sigil_pki::mldsa::{MlDsaKeyPair, MlDsaLevel};
use sigil_pki::{
    CompositeAlg, CompositeKeyPair, CompositeLeafRequest, LeafKey, LeafOptions, LeafRequest,
    MlDsaLeafRequest, PkiError, PreparedCert,
};
use sigil_store::group::{self, GroupCommit};
use sigil_store::outbox::{self, Outbox};

use crate::ca::{self, CaSet, CaSigner, CaSpec, CreateError};
use crate::keys::KeyManager;

pub mod intent;

/// The validity of a leaf starts this many seconds before "now", so a relying party
/// whose clock is a little behind still accepts a fresh certificate.
pub const BACKDATE_SECONDS: i64 = 60;
/// Why an intent was refused: its intermediate is no longer `current`.
const CA_RETIRED: &str = "the issuing intermediate was retired while this request was prepared";
/// Why a request prepared again after [`CA_RETIRED`] is refused: the new intermediate
/// is of another kind (or certifies another key algorithm) than the one policy judged,
/// and policy cannot be asked again with the request's single-use proof.
pub const CA_CHANGED: &str = "the CA changed during the request; retry";
/// Default of [`Config::ca_recheck`](crate::Config::ca_recheck).
pub const CA_RECHECK: Duration = Duration::from_secs(1);
/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 128;
/// Note added to a reply that repeats an earlier one.
pub const REPLAY_NOTE: &str = "replayed: a request with this idempotency key was already issued";
/// Note added when the repeated reply's private key cannot be returned again.
pub const KEY_NOT_REPLAYED_NOTE: &str =
    "the private key was returned only in the first reply; the issuer does not keep it";
/// PEM label of a server-generated composite private key.
pub use sigil_pki::composite::COMPOSITE_KEY_PEM_LABEL;

/// The `issuer_issuance` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "issuer_issuance")]
    pub struct Model {
        /// Lowercase hex, as in the certificate facts.
        #[sea_orm(primary_key, auto_increment = false)]
        pub serial: String,
        #[sea_orm(unique)]
        pub idempotency_key: Option<String>,
        /// SHA-256 of the request JSON: a key reused for a different request is refused.
        pub request_sha256: String,
        pub profile: String,
        pub requested_by: String,
        /// `csr` or `generated`.
        pub key_source: String,
        /// The intermediate that signed.
        pub issuer_ca_id: String,
        #[sea_orm(column_type = "Text")]
        pub certificate_pem: String,
        /// Chain as replied (JSON array of PEM, intermediate first): empty in rows
        /// written since the chain is rebuilt from `issuer_ca_id` on replay; older
        /// rows carry it.
        pub chain_pem: Json,
        /// [`CertificateFacts`](sigil_contracts::types::CertificateFacts) as JSON.
        pub facts: Json,
        /// Lifetime issued, after policy constraints.
        pub ttl_seconds: i64,
        /// Notes of the first reply (JSON array of strings).
        pub notes: Json,
        pub created_at: ChronoDateTimeUtc,
        /// Kind of the CA that signed (migration m0003; older rows are `classical`).
        pub ca_kind: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

const KEY_SOURCE_CSR: &str = "csr";
const KEY_SOURCE_GENERATED: &str = "generated";

/// Everything the issuer's endpoints need.
#[derive(Debug)]
pub(crate) struct Issuer {
    pub db: DatabaseConnection,
    pub outbox: Outbox,
    /// Intents and issuance records, group-committed ([`sigil_store::group`]).
    pub writes: GroupCommit<Record>,
    /// The active hierarchy as last loaded; replaced by `ca_init`, and reloaded when
    /// another replica's `ca_init` changed the active intermediate in the database.
    pub cas: tokio::sync::RwLock<Arc<CaSet>>,
    /// When [`Issuer::current_cas`] last compared `cas` with the database.
    pub ca_checked: std::sync::Mutex<Option<std::time::Instant>>,
    /// [`Config::ca_recheck`](crate::Config::ca_recheck).
    pub ca_recheck: Duration,
    pub keys: Arc<dyn KeyManager>,
    pub ca_common_name: String,
    pub rt: Runtime,
    pub policy_timeout: Duration,
    /// CRL base URL: leaves get the distribution point `<base>/<issuer-ca-id>.crl`.
    pub crl_base_url: Option<String>,
    /// OCSP responder URL written into the leaves' authorityInfoAccess.
    pub ocsp_base_url: Option<String>,
}

/// A request after preparation: what will be asked of policy and signed.
struct Prepared {
    sans: Sans,
    key_algorithm: KeyAlgorithm,
    key: KeySource,
}

/// Policy's decision about a request, with what it judged: kept across the attempts
/// of one request ([`Issuer::issue`]), since its proof can be evaluated only once.
struct Judged {
    kind: CaKind,
    key_algorithm: KeyAlgorithm,
    decision: Decision,
}

enum KeySource {
    /// A verified CSR (boxed: it is large next to `Generate`).
    Csr(Box<sigil_pki::ParsedCsr>),
    Generate,
}

/// The leaf key to certify, settled against the signing CA's kind.
enum LeafKeyPlan {
    /// Classical and hybrid CAs: the CSR's key (with, for a hybrid CA, the CSR's
    /// alternative ML-DSA key if it has one) or a generated classical key.
    Classical(KeySource),
    /// Composite CA: the CSR's composite key of this algorithm, or a generated one.
    Composite(CompositeAlg, KeySource),
    /// ML-DSA CA: the CSR's ML-DSA key of this level, or a generated one.
    Mldsa(MlDsaLevel, KeySource),
}

impl Issuer {
    /// Handle one `issue` request. When the intermediate it prepared with was retired
    /// before its intent was recorded (another replica's rotation), it is prepared
    /// once more with the new one; nothing was signed the first time.
    ///
    /// Policy is asked once per request, not once per attempt: the request's proof is
    /// single use (a bootstrap token's use is counted, a possession proof's nonce is
    /// spent), so a second `evaluate` with it would be refused as a replay. The second
    /// attempt reuses the first decision, which holds as long as the new intermediate
    /// is of the kind, and certifies the key algorithm, that policy judged.
    ///
    /// `digest` is the request's digest as received
    /// ([`sigil_contracts::auth::received_digest`]), which its proof must have signed.
    pub async fn issue(
        &self,
        req: IssueRequest,
        digest: String,
    ) -> Result<IssueResponse, WireError> {
        let mut judged = None;
        match self.issue_once(&req, &digest, &mut judged).await {
            Err(e) if e.code == ErrorCode::Unavailable && e.message == CA_RETIRED => {
                tracing::info!("{CA_RETIRED}; preparing again with the current one");
                self.recheck_cas();
                self.issue_once(&req, &digest, &mut judged).await
            }
            other => other,
        }
    }

    /// One attempt at `req`. `judged` is policy's decision from an earlier attempt of
    /// the same request, if any; it is filled in when policy is asked here.
    async fn issue_once(
        &self,
        req: &IssueRequest,
        digest: &str,
        judged: &mut Option<Judged>,
    ) -> Result<IssueResponse, WireError> {
        let fingerprint = fingerprint(req);
        let mut prepared = prepare(req)?;
        if let Some(key) = &req.idempotency_key
            && let Some(row) = self.find_by_key(key).await?
        {
            return self.replay(&row, &fingerprint).await;
        }
        // One snapshot of the hierarchy for the whole request.
        let cas = self.current_cas().await?;
        // The key source moves into the plan; policy sees the algorithm the plan settled.
        let key = std::mem::replace(&mut prepared.key, KeySource::Generate);
        let (key_algorithm, plan) = plan_key(&cas.intermediate, req, key)?;
        prepared.key_algorithm = key_algorithm;

        let decision = match judged {
            Some(earlier) if earlier.kind == cas.kind && earlier.key_algorithm == key_algorithm => {
                earlier.decision.clone()
            }
            // Policy judged another kind of certificate, and cannot be asked again
            // with the same (spent) proof.
            Some(_) => return Err(WireError::unavailable(CA_CHANGED)),
            None => {
                let decision = self.ask_policy(req, digest, &prepared, cas.kind).await?;
                *judged = Some(Judged {
                    kind: cas.kind,
                    key_algorithm,
                    decision: decision.clone(),
                });
                decision
            }
        };
        if !decision.allowed {
            return Err(WireError::denied(decision.reasons));
        }
        // Who asked, as policy established it from the request's proof.
        let requested_by = decision.principal;
        let mut notes = decision.reasons;
        let ttl = decision.constraints.ttl_seconds;
        if ttl <= 0 {
            return Err(WireError::internal(format!(
                "policy {} returned a non-positive lifetime ({ttl}s)",
                decision.policy_version
            )));
        }

        let now = self.rt.now();
        let (not_before, not_after) = validity(&cas, now, ttl, &mut notes)?;
        let opts = self.leaf_options(&cas.intermediate_id);
        let (cert, private_key_pem, key_source) = prepare_cert(
            &cas.intermediate,
            plan,
            req,
            prepared.key_algorithm,
            prepared.sans,
            (not_before, not_after),
            &opts,
        )?;
        // Nothing reaches here without passing the lint; record the intent, then sign.
        let serial = cert.serial().to_owned();
        self.record_intent(&serial, &fingerprint, req, &cas)
            .await
            .map_err(|e| match e {
                DbErr::RecordNotInserted => WireError::unavailable(CA_RETIRED),
                e => WireError::unavailable(format!("cannot record the intent: {e}")),
            })?;
        let issued = match cert.sign() {
            Ok(issued) => issued,
            Err(e) => {
                self.mark_intent(&serial, intent::FAILED).await;
                return Err(signing_error(e));
            }
        };

        let chain_pem = cas.chain_pem();
        let ttl_seconds = (not_after - now).num_seconds();
        let facts = issued.facts;
        let row = entity::ActiveModel {
            serial: Set(facts.serial.clone()),
            idempotency_key: Set(req.idempotency_key.clone()),
            request_sha256: Set(fingerprint.clone()),
            profile: Set(req.profile.as_str().to_owned()),
            requested_by: Set(requested_by.clone()),
            key_source: Set(key_source.to_owned()),
            issuer_ca_id: Set(cas.intermediate_id.clone()),
            certificate_pem: Set(issued.cert_pem.clone()),
            // The chain is the intermediate's (and its root's); a replay rebuilds it
            // from `issuer_ca_id` rather than storing it with every certificate.
            chain_pem: Set(serde_json::Value::Array(Vec::new())),
            facts: Set(to_json(&facts)?),
            ttl_seconds: Set(ttl_seconds),
            notes: Set(to_json(&notes)?),
            created_at: Set(now),
            ca_kind: Set(cas.kind.as_str().to_owned()),
        };
        let event = CloudEvent::new(
            &source_for(Service::Issuer),
            IdentityIssued {
                facts: facts.clone(),
                certificate_pem: issued.cert_pem.clone(),
                issuer_ca_id: Some(cas.intermediate_id.clone()),
                chain_pem: Vec::new(),
                requested_by: requested_by.clone(),
                kind: cas.kind,
            },
            now,
            sigil_telemetry::current_traceparent(),
        );
        let recorded = self.record(row, event, &serial).await;
        if recorded.is_err() {
            self.mark_intent(&serial, intent::DISCARDED).await;
        }
        match recorded {
            Ok(()) => {}
            Err(e) if is_unique_violation(&e) => {
                // A concurrent retry with the same idempotency key won; answer as it did.
                if let Some(key) = &req.idempotency_key
                    && let Some(row) = self.find_by_key(key).await?
                {
                    return self.replay(&row, &fingerprint).await;
                }
                return Err(WireError::internal(format!("cannot record issuance: {e}")));
            }
            Err(e) => {
                return Err(WireError::unavailable(format!(
                    "cannot record issuance: {e}"
                )));
            }
        }
        self.outbox.wake();
        self.rt.metrics.credential_issued(req.profile.as_str());
        tracing::info!(
            serial = %facts.serial,
            profile = req.profile.as_str(),
            %requested_by,
            authenticated_by = decision.authenticated_by.as_str(),
            action = decision.action.map_or("issue", Action::as_str),
            key_source,
            ca_kind = %cas.kind,
            not_after = %facts.not_after,
            "issued certificate"
        );
        Ok(IssueResponse {
            serial: facts.serial,
            certificate_pem: issued.cert_pem,
            chain_pem,
            kind: cas.kind,
            private_key_pem,
            not_before: facts.not_before,
            not_after: facts.not_after,
            ttl_seconds,
            notes,
        })
    }

    /// `ca_list`: every CA row, active and retired.
    pub async fn ca_list(&self, _req: CaListRequest) -> Result<CaListResponse, WireError> {
        let cas = ca::list(&self.db)
            .await
            .map_err(|e| WireError::unavailable(format!("cannot list CAs: {e}")))?;
        Ok(CaListResponse { cas })
    }

    /// `ca_init` (the bus endpoint): create a root and intermediate of the requested
    /// kind and make them active, refused while a hierarchy is active unless `force`,
    /// which retires it. Only an admin may: policy authenticates the request's proof
    /// and decides action `admin` before anything changes. (The hierarchy a first start
    /// creates does not come through here: see `ca::load_or_create`.)
    pub async fn ca_init(
        &self,
        req: CaInitRequest,
        digest: String,
    ) -> Result<CaListResponse, WireError> {
        let spec =
            CaSpec::parse(req.kind, req.algorithm.as_deref()).map_err(WireError::bad_request)?;
        // Asked before taking the lock: no lock is held across a network call.
        let decision = self
            .authorize_admin(
                ISSUER_CA_INIT,
                &req,
                digest,
                spec.kind(),
                spec.leaf_key_algorithm(),
            )
            .await?;
        // Holding the write lock serializes this replica's inits and issuances.
        let mut current = self.cas.write().await;
        let active = ca::active_intermediate_id(&self.db)
            .await
            .map_err(|e| WireError::unavailable(format!("cannot read CAs: {e}")))?;
        if active.is_some() && !req.force {
            return Err(WireError::conflict(format!(
                "an active {} CA hierarchy exists; pass force to retire it and create a new {} one",
                current.kind, req.kind
            )));
        }
        let set = match ca::create(
            &self.db,
            self.keys.as_ref(),
            spec,
            &self.ca_common_name,
            self.rt.now(),
            req.force,
        )
        .await
        {
            Ok(set) => set,
            Err(CreateError::Lost) => {
                return Err(WireError::conflict(
                    "another ca_init changed the CA hierarchy at the same time; list the CAs and retry",
                ));
            }
            Err(CreateError::Other(e)) => {
                return Err(WireError::internal(format!(
                    "cannot create the CA hierarchy: {e}"
                )));
            }
        };
        tracing::warn!(
            kind = %set.kind,
            root = %set.root.subject(),
            retired = ?active,
            by = %decision.principal,
            "ca_init: a new CA hierarchy is active"
        );
        let ids = [set.root_id.clone(), set.intermediate_id.clone()];
        *current = Arc::new(set);
        drop(current);
        let cas = ca::list(&self.db)
            .await
            .map_err(|e| WireError::unavailable(format!("cannot list CAs: {e}")))?
            .into_iter()
            .filter(|c| ids.contains(&c.id))
            .collect();
        Ok(CaListResponse { cas })
    }

    /// The active hierarchy, reloaded when the database's active intermediate is no
    /// longer the one in memory (another replica ran `ca_init` or `ca_rotate`). The
    /// database is asked at most once per [`CA_RECHECK`]: a change made by another
    /// replica is picked up within that time (this replica's own changes at once).
    async fn current_cas(&self) -> Result<Arc<CaSet>, WireError> {
        let cached = self.cas.read().await.clone();
        if !self.ca_check_due() {
            return Ok(cached);
        }
        let active = ca::active_intermediate_id(&self.db)
            .await
            .map_err(|e| WireError::unavailable(format!("cannot read CAs: {e}")))?;
        if active.as_deref() == Some(cached.intermediate_id.as_str()) {
            return Ok(cached);
        }
        let mut current = self.cas.write().await;
        if active.as_deref() == Some(current.intermediate_id.as_str()) {
            return Ok(current.clone());
        }
        let loaded = ca::load_active(&self.db, self.keys.as_ref())
            .await
            .map_err(|e| WireError::internal(format!("cannot load the CA hierarchy: {e}")))?
            .ok_or_else(|| WireError::unavailable("no active CA hierarchy"))?;
        tracing::info!(kind = %loaded.kind, intermediate = %loaded.intermediate_id, "reloaded the CA hierarchy");
        *current = Arc::new(loaded);
        Ok(current.clone())
    }

    /// Makes the next [`Issuer::current_cas`] compare with the database.
    fn recheck_cas(&self) {
        *self
            .ca_checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// True (and the check timestamp moved to now) when the last look at the
    /// database's active CA is older than [`CA_RECHECK`].
    fn ca_check_due(&self) -> bool {
        let now = std::time::Instant::now();
        let mut last = self
            .ca_checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *last {
            Some(at) if now.duration_since(at) < self.ca_recheck => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// The recorded answer to `row`'s request, for a retry with its idempotency key.
    /// Rows of this version store no chain: it is rebuilt from `issuer_ca_id` (older
    /// rows carry it).
    async fn replay(
        &self,
        row: &entity::Model,
        fingerprint: &str,
    ) -> Result<IssueResponse, WireError> {
        let stored: Vec<String> = serde_json::from_value(row.chain_pem.clone()).map_err(|e| {
            WireError::internal(format!(
                "stored issuance {} has a bad chain: {e}",
                row.serial
            ))
        })?;
        let chain = if stored.is_empty() {
            ca::chain_of(&self.db, &row.issuer_ca_id)
                .await
                .map_err(|e| WireError::unavailable(format!("cannot read CAs: {e}")))?
                .ok_or_else(|| {
                    WireError::internal(format!(
                        "stored issuance {} names an unknown CA {}",
                        row.serial, row.issuer_ca_id
                    ))
                })?
        } else {
            stored
        };
        replay(row, fingerprint, chain)
    }

    async fn find_by_key(&self, key: &str) -> Result<Option<entity::Model>, WireError> {
        entity::Entity::find()
            .filter(entity::Column::IdempotencyKey.eq(key))
            .one(&self.db)
            .await
            .map_err(|e| WireError::unavailable(format!("cannot read issuances: {e}")))
    }

    /// Ask policy about an `issue` request: its proof goes along unchanged, with the
    /// operation and the request's digest a possession proof must have signed. Policy
    /// decides an issue proven by a non-admin credential as `renew`.
    async fn ask_policy(
        &self,
        req: &IssueRequest,
        digest: &str,
        prepared: &Prepared,
        kind: CaKind,
    ) -> Result<Decision, WireError> {
        // The kind of the signing hierarchy is the kind of certificate policy judges
        // (hybrid-or-PQ rules); the key size follows from the algorithm.
        let ask = EvaluateRequest {
            principal: None,
            proof: req.proof.clone(),
            operation: Some(ISSUER_ISSUE.subject()),
            request_digest: Some(digest.to_owned()),
            action: Action::Issue,
            profile: req.profile,
            sans: prepared.sans.clone(),
            ttl_seconds: req.ttl_seconds,
            key_algorithm: prepared.key_algorithm,
            kind: Some(kind),
            key_bits: None,
        };
        self.evaluate(&ask).await
    }

    /// Ask policy whether the sender of an administrative request (`ca_init`,
    /// `ca_rotate`, served at `op`) may make it: action `admin`, no names, the request's
    /// proof and digest. `kind` and `key_algorithm` describe the hierarchy concerned, so
    /// a policy can reason about it like about an issuance. Returns the allowing
    /// decision (its principal is who did it); a denial is `denied` with policy's
    /// reasons, a refused proof `unauthenticated`.
    pub(crate) async fn authorize_admin<R: CarriesProof>(
        &self,
        op: Operation,
        req: &R,
        digest: String,
        kind: CaKind,
        key_algorithm: KeyAlgorithm,
    ) -> Result<Decision, WireError> {
        let ask = EvaluateRequest {
            key_algorithm,
            kind: Some(kind),
            ..EvaluateRequest::admin_with_digest(op, req, digest)
        };
        let decision = self.evaluate(&ask).await?;
        if !decision.allowed {
            return Err(WireError::denied(decision.reasons));
        }
        Ok(decision)
    }

    /// `sigil.policy.v1.evaluate`, within [`Issuer::policy_timeout`].
    async fn evaluate(&self, ask: &EvaluateRequest) -> Result<Decision, WireError> {
        self.rt
            .bus
            .request(POLICY_EVALUATE, ask, self.policy_timeout)
            .await
            .map_err(policy_error)
    }

    /// Issuance row, `identity.issued` event and the intent's `issued` state: one
    /// transaction (shared with concurrent issuances by the group commit).
    async fn record(
        &self,
        row: entity::ActiveModel,
        event: CloudEvent<IdentityIssued>,
        serial: &str,
    ) -> Result<(), DbErr> {
        self.writes
            .write(Record::Issued {
                row: Box::new(row),
                event: Box::new(event),
                serial: serial.to_owned(),
                at: self.rt.now(),
            })
            .await
    }

    /// The `prepared` intent row, committed before signing.
    async fn record_intent(
        &self,
        serial: &str,
        fingerprint: &str,
        req: &IssueRequest,
        cas: &CaSet,
    ) -> Result<(), DbErr> {
        let now = self.rt.now();
        let intent = intent::entity::ActiveModel {
            serial: Set(serial.to_owned()),
            request_sha256: Set(fingerprint.to_owned()),
            profile: Set(req.profile.as_str().to_owned()),
            ca_kind: Set(cas.kind.as_str().to_owned()),
            issuer_ca_id: Set(cas.intermediate_id.clone()),
            state: Set(intent::PREPARED.to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        self.writes.write(Record::Intent(Box::new(intent))).await
    }

    /// Best effort: an intent that cannot be updated stays `prepared` (logged).
    async fn mark_intent(&self, serial: &str, state: &str) {
        if let Err(e) = set_intent_state(&self.db, serial, state, self.rt.now()).await {
            tracing::warn!(serial, state, error = %e, "cannot update the issuance intent; it stays prepared");
        }
    }

    /// Revocation URLs of leaves signed by the intermediate `ca_id`.
    fn leaf_options(&self, ca_id: &str) -> LeafOptions {
        LeafOptions {
            crl_url: self
                .crl_base_url
                .as_ref()
                .map(|base| format!("{}/{ca_id}.crl", base.trim_end_matches('/'))),
            ocsp_url: self.ocsp_base_url.clone(),
        }
    }
}

async fn set_intent_state(
    db: &impl sea_orm::ConnectionTrait,
    serial: &str,
    state: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    // One UPDATE (an ActiveModel update would read the row back as well).
    let updated = intent::entity::Entity::update_many()
        .col_expr(intent::entity::Column::State, Expr::value(state))
        .col_expr(intent::entity::Column::UpdatedAt, Expr::value(now))
        .filter(intent::entity::Column::Serial.eq(serial))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        return Err(DbErr::RecordNotUpdated);
    }
    Ok(())
}

/// A write of the issuer's, group-committed.
#[derive(Debug)]
pub(crate) enum Record {
    /// The `prepared` intent, before signing.
    Intent(Box<intent::entity::ActiveModel>),
    /// The issuance row, its `identity.issued` event (outbox) and the intent's
    /// `issued` state.
    Issued {
        row: Box<entity::ActiveModel>,
        event: Box<CloudEvent<IdentityIssued>>,
        serial: String,
        at: DateTime<Utc>,
    },
}

impl group::Write for Record {
    fn apply<'a>(&'a self, txn: &'a sea_orm::DatabaseTransaction) -> group::WriteFuture<'a> {
        Box::pin(async move {
            let one = [self];
            Self::apply_batch(&one, txn).await
        })
    }

    /// Every intent of the batch in one INSERT, then one read of their intermediates;
    /// every issuance in one INSERT, their events in one outbox INSERT and their
    /// intents marked `issued` in one UPDATE. All or nothing: the group commit applies
    /// the writes one by one when the batch fails, so each caller gets its own outcome.
    fn apply_batch<'a>(
        writes: &'a [&'a Self],
        txn: &'a sea_orm::DatabaseTransaction,
    ) -> group::WriteFuture<'a> {
        Box::pin(async move {
            let mut intents = Vec::new();
            let mut rows = Vec::new();
            let mut events = Vec::new();
            let mut serials = Vec::new();
            let mut issued_at = None;
            for write in writes {
                match write {
                    Record::Intent(intent) => intents.push((**intent).clone()),
                    Record::Issued {
                        row,
                        event,
                        serial,
                        at,
                    } => {
                        rows.push((**row).clone());
                        events.push(event.as_ref());
                        serials.push(serial.clone());
                        issued_at = issued_at.max(Some(*at));
                    }
                }
            }
            if !intents.is_empty() {
                record_intents(txn, intents).await?;
            }
            if let Some(at) = issued_at {
                let count = rows.len() as u64;
                entity::Entity::insert_many(rows)
                    .exec_without_returning(txn)
                    .await?;
                outbox::enqueue_many(txn, &events).await?;
                let updated = intent::entity::Entity::update_many()
                    .col_expr(intent::entity::Column::State, Expr::value(intent::ISSUED))
                    .col_expr(intent::entity::Column::UpdatedAt, Expr::value(at))
                    .filter(intent::entity::Column::Serial.is_in(serials))
                    .exec(txn)
                    .await?;
                if updated.rows_affected != count {
                    return Err(DbErr::RecordNotUpdated);
                }
            }
            Ok(())
        })
    }
}

/// Insert `prepared` intents, kept only while every intermediate they name is still
/// `current`: the insert comes first (it takes SQLite's write lock, so the check below
/// reads the latest state), then the CA rows are read under a shared row lock on
/// PostgreSQL. An activation that retires one either waits for these intents, and
/// counts them in `retire_until`, or has committed, and the transaction is rolled back
/// ([`DbErr::RecordNotInserted`]) and the request prepared again.
async fn record_intents(
    txn: &sea_orm::DatabaseTransaction,
    intents: Vec<intent::entity::ActiveModel>,
) -> Result<(), DbErr> {
    let mut ca_ids = Vec::new();
    for intent in &intents {
        let sea_orm::ActiveValue::Set(ca_id) = &intent.issuer_ca_id else {
            return Err(DbErr::RecordNotInserted);
        };
        if !ca_ids.contains(ca_id) {
            ca_ids.push(ca_id.clone());
        }
    }
    intent::entity::Entity::insert_many(intents)
        .exec_without_returning(txn)
        .await?;
    let wanted = ca_ids.len();
    let current = ca::entity::Entity::find()
        .filter(ca::entity::Column::Id.is_in(ca_ids))
        .filter(ca::entity::Column::State.eq(CaState::Current.as_str()))
        .lock_shared()
        .all(txn)
        .await?;
    if current.len() != wanted {
        return Err(DbErr::RecordNotInserted);
    }
    Ok(())
}

/// A CRL or OCSP base URL: `http://` or `https://`, printable ASCII without spaces,
/// no query or fragment, at most 1024 characters.
pub(crate) fn check_base_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || url.len() > 1024 {
        return Err("must name a host and be at most 1024 characters".to_owned());
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) || url.contains(['?', '#']) {
        return Err("printable ASCII only, without spaces, query or fragment".to_owned());
    }
    Ok(())
}

/// `[now - backdate, now + ttl]`, both kept inside the issuing CA's validity.
fn validity(
    cas: &CaSet,
    now: DateTime<Utc>,
    ttl: i64,
    notes: &mut Vec<String>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), WireError> {
    let ca = &cas.intermediate;
    if now >= ca.not_after() {
        return Err(WireError::unavailable("the issuing CA has expired"));
    }
    let not_before = (now - chrono::Duration::seconds(BACKDATE_SECONDS)).max(ca.not_before());
    let wanted = chrono::Duration::try_seconds(ttl).and_then(|d| now.checked_add_signed(d));
    let not_after = match wanted {
        Some(end) if end <= ca.not_after() => end,
        _ => {
            notes.push(format!(
                "lifetime shortened to end with the issuing CA at {}",
                ca.not_after().to_rfc3339()
            ));
            ca.not_after()
        }
    };
    Ok((not_before, not_after))
}

/// Settle the leaf key against the CA's kind; returns the key algorithm to show
/// policy and the plan.
///
/// - classical and hybrid CAs certify classical keys (a hybrid CA also the CSR's
///   alternative ML-DSA key, see [`sigil_pki::parse_csr`]); a classical CA refuses a
///   CSR that carries an alternative key, which it could not certify;
/// - a composite CA certifies composite keys: the CSR's (any of the six composite
///   algorithms) or a generated one (the CA's own algorithm, or the one
///   `key_algorithm` names; the CA's classical half, e.g. `ecdsa-p256`, is accepted as
///   the CA's own algorithm, as before composite key algorithms had names);
/// - an ML-DSA CA certifies ML-DSA keys: the CSR's or a generated one (the CA's level
///   or the one `key_algorithm` names).
///
/// Any other pairing is a `bad_request`, before anything is signed.
fn plan_key(
    signer: &CaSigner,
    req: &IssueRequest,
    key: KeySource,
) -> Result<(KeyAlgorithm, LeafKeyPlan), WireError> {
    let kind = signer.kind();
    match signer {
        CaSigner::Classical(_) | CaSigner::Hybrid(_) => {
            let alg = match &key {
                KeySource::Csr(csr) => csr.key_algorithm,
                KeySource::Generate => req.key_algorithm.unwrap_or_default(),
            };
            if mldsa_level(alg).is_some() {
                return Err(WireError::bad_request(format!(
                    "this issuer's CA is {kind}; ML-DSA leaf keys ({}) are certified only by an mldsa CA",
                    alg.as_str()
                )));
            }
            if CompositeAlg::from_key_algorithm(alg).is_some() {
                return Err(WireError::bad_request(format!(
                    "this issuer's CA is {kind}; composite leaf keys ({}) are certified only by a composite CA",
                    alg.as_str()
                )));
            }
            if let (CaSigner::Classical(_), KeySource::Csr(csr)) = (signer, &key)
                && csr.alt_public_key.is_some()
            {
                return Err(WireError::bad_request(
                    "this issuer's CA is classical; a CSR with an alternative ML-DSA key (subjectAltPublicKeyInfo) needs a hybrid CA",
                ));
            }
            Ok((alg, LeafKeyPlan::Classical(key)))
        }
        CaSigner::Composite(ca) => {
            let alg = match &key {
                KeySource::Csr(csr) => {
                    CompositeAlg::from_key_algorithm(csr.key_algorithm).ok_or_else(|| {
                        WireError::bad_request(format!(
                            "this issuer's CA is composite; the CSR's {} key cannot be certified: send a CSR for a composite ML-DSA key, or omit --csr for a server-generated {} key",
                            csr.key_algorithm.as_str(),
                            ca.alg().key_algorithm().as_str()
                        ))
                    })?
                }
                KeySource::Generate => match req.key_algorithm {
                    None => ca.alg(),
                    Some(asked) if asked == trad_key_algorithm(ca.alg().trad()) => ca.alg(),
                    Some(asked) => CompositeAlg::from_key_algorithm(asked).ok_or_else(|| {
                        WireError::bad_request(format!(
                            "this issuer's CA is composite; key_algorithm must name a composite algorithm (e.g. {}) or be omitted, not {}",
                            ca.alg().key_algorithm().as_str(),
                            asked.as_str()
                        ))
                    })?,
                },
            };
            if let KeySource::Csr(csr) = &key
                && csr.alt_public_key.is_some()
            {
                return Err(WireError::bad_request(
                    "this issuer's CA is composite; alternative-key (hybrid) CSRs need a hybrid CA",
                ));
            }
            Ok((alg.key_algorithm(), LeafKeyPlan::Composite(alg, key)))
        }
        CaSigner::Mldsa(ca) => {
            let level = match &key {
                KeySource::Csr(csr) => mldsa_level(csr.key_algorithm).ok_or_else(|| {
                    WireError::bad_request(format!(
                        "this issuer's CA is mldsa; the CSR's {} key cannot be certified: send a CSR for an ML-DSA key, or omit --csr for a server-generated {} key",
                        csr.key_algorithm.as_str(),
                        ca.level().key_algorithm().as_str()
                    ))
                })?,
                KeySource::Generate => match req.key_algorithm {
                    None => ca.level(),
                    Some(asked) => mldsa_level(asked).ok_or_else(|| {
                        WireError::bad_request(format!(
                            "this issuer's CA is mldsa; key_algorithm must be ml-dsa-44, ml-dsa-65, ml-dsa-87 or omitted, not {}",
                            asked.as_str()
                        ))
                    })?,
                },
            };
            if let KeySource::Csr(csr) = &key
                && csr.alt_public_key.is_some()
            {
                return Err(WireError::bad_request(
                    "this issuer's CA is mldsa; alternative-key (hybrid) CSRs need a hybrid CA",
                ));
            }
            Ok((level.key_algorithm(), LeafKeyPlan::Mldsa(level, key)))
        }
    }
}

/// Build and lint the leaf for `signer`; returns it ready to sign, the generated
/// private key's PEM (if the issuer generated one) and the key source.
fn prepare_cert<'a>(
    signer: &'a CaSigner,
    plan: LeafKeyPlan,
    req: &IssueRequest,
    key_algorithm: KeyAlgorithm,
    sans: Sans,
    (not_before, not_after): (DateTime<Utc>, DateTime<Utc>),
    opts: &LeafOptions,
) -> Result<(PreparedCert<'a>, Option<String>, &'static str), WireError> {
    let internal = |e: PkiError| WireError::internal(format!("key encoding failed: {e}"));
    match (signer, plan) {
        (CaSigner::Classical(_) | CaSigner::Hybrid(_), LeafKeyPlan::Classical(source)) => {
            let (leaf_key, alt_key, private_key_pem, key_source) = match source {
                KeySource::Csr(mut csr) => {
                    let alt = csr.alt_public_key.take();
                    (LeafKey::Csr(*csr), alt, None, KEY_SOURCE_CSR)
                }
                KeySource::Generate => {
                    let key = sigil_pki::generate_key(key_algorithm).map_err(|e| match e {
                        PkiError::UnsupportedKey(m) => WireError::bad_request(format!(
                            "cannot generate a {} key: {m}",
                            key_algorithm.as_str()
                        )),
                        other => WireError::internal(format!("key generation failed: {other}")),
                    })?;
                    let pem = key.to_pkcs8_pem();
                    (
                        LeafKey::Generated(key),
                        None,
                        Some(pem),
                        KEY_SOURCE_GENERATED,
                    )
                }
            };
            let leaf = LeafRequest {
                profile: req.profile,
                sans,
                common_name: None,
                not_before,
                not_after,
                key: leaf_key,
            };
            let issued = match signer {
                CaSigner::Hybrid(ca) => sigil_pki::prepare_hybrid_leaf(ca, &leaf, alt_key, opts),
                CaSigner::Classical(ca) if alt_key.is_none() => {
                    sigil_pki::prepare_leaf_cert(ca, &leaf, opts)
                }
                _ => return unreachable_plan(),
            }
            .map_err(signing_error)?;
            Ok((issued, private_key_pem, key_source))
        }
        (CaSigner::Composite(ca), LeafKeyPlan::Composite(alg, source)) => {
            let (public_key, private_key_pem, key_source) = match source {
                KeySource::Csr(csr) => (csr.public_key, None, KEY_SOURCE_CSR),
                KeySource::Generate => {
                    let key = CompositeKeyPair::generate(alg)
                        .map_err(|e| WireError::internal(format!("key generation failed: {e}")))?;
                    let pem = sigil_pki::pem::encode(
                        COMPOSITE_KEY_PEM_LABEL,
                        &key.to_der().map_err(internal)?,
                    );
                    (key.public_key(), Some(pem), KEY_SOURCE_GENERATED)
                }
            };
            let issued = sigil_pki::prepare_composite_leaf(
                ca,
                &CompositeLeafRequest {
                    profile: req.profile,
                    sans,
                    common_name: None,
                    not_before,
                    not_after,
                    alg,
                    public_key,
                },
                opts,
            )
            .map_err(signing_error)?;
            Ok((issued, private_key_pem, key_source))
        }
        (CaSigner::Mldsa(ca), LeafKeyPlan::Mldsa(level, source)) => {
            let (public_key, private_key_pem, key_source) = match source {
                KeySource::Csr(csr) => (csr.public_key, None, KEY_SOURCE_CSR),
                KeySource::Generate => {
                    let key = MlDsaKeyPair::generate(level);
                    let pkcs8 = sigil_pki::pqcert::mldsa_key_to_pkcs8(&key).map_err(internal)?;
                    (
                        key.public_key().to_vec(),
                        Some(sigil_pki::pem::encode("PRIVATE KEY", &pkcs8)),
                        KEY_SOURCE_GENERATED,
                    )
                }
            };
            let issued = sigil_pki::prepare_mldsa_leaf(
                ca,
                &MlDsaLeafRequest {
                    profile: req.profile,
                    sans,
                    common_name: None,
                    not_before,
                    not_after,
                    level,
                    public_key,
                },
                opts,
            )
            .map_err(signing_error)?;
            Ok((issued, private_key_pem, key_source))
        }
        _ => unreachable_plan(),
    }
}

/// `plan_key` pairs every plan with its signer's kind; anything else is our bug.
fn unreachable_plan<T>() -> Result<T, WireError> {
    Err(WireError::internal(
        "leaf key plan does not match the CA kind",
    ))
}

fn mldsa_level(alg: KeyAlgorithm) -> Option<MlDsaLevel> {
    MlDsaLevel::from_key_algorithm(alg)
}

fn trad_key_algorithm(trad: TradAlg) -> KeyAlgorithm {
    match trad {
        TradAlg::EcdsaP256 => KeyAlgorithm::EcdsaP256,
        TradAlg::EcdsaP384 => KeyAlgorithm::EcdsaP384,
        TradAlg::Ed25519 => KeyAlgorithm::Ed25519,
    }
}

/// Check everything that needs neither policy nor the database.
fn prepare(req: &IssueRequest) -> Result<Prepared, WireError> {
    if req.ttl_seconds <= 0 {
        return Err(WireError::bad_request(format!(
            "ttl must be positive (got ttl_seconds = {})",
            req.ttl_seconds
        )));
    }
    if let Some(key) = &req.idempotency_key
        && (key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY
            || key.chars().any(|c| c.is_control() || c.is_whitespace()))
    {
        return Err(WireError::bad_request(format!(
            "idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} characters without spaces or control characters"
        )));
    }
    let (sans, key_algorithm, key) = match &req.csr_pem {
        Some(pem) => {
            if pem.len() > sigil_pki::MAX_CSR_BYTES {
                return Err(WireError::new(
                    ErrorCode::TooLarge,
                    format!(
                        "CSR of {} bytes is larger than the {} bytes accepted",
                        pem.len(),
                        sigil_pki::MAX_CSR_BYTES
                    ),
                ));
            }
            let csr = sigil_pki::parse_csr(pem).map_err(csr_error)?;
            if let Some(asked) = req.key_algorithm
                && asked != csr.key_algorithm
            {
                return Err(WireError::bad_request(format!(
                    "key_algorithm is {} but the CSR's key is {}; omit key_algorithm or send a matching CSR",
                    asked.as_str(),
                    csr.key_algorithm.as_str()
                )));
            }
            sigil_pki::profile::check_csr_request(req.profile, &csr.requested)
                .map_err(csr_error)?;
            let sans = match (req.sans.is_empty(), csr.sans.is_empty()) {
                (true, _) => csr.sans.clone(),
                (false, true) => req.sans.clone(),
                (false, false) if same_names(&req.sans, &csr.sans) => req.sans.clone(),
                (false, false) => {
                    return Err(WireError::bad_request(format!(
                        "the requested SANs [{}] differ from the CSR's SANs [{}]; send matching names or leave sans empty to use the CSR's",
                        req.sans.values().join(", "),
                        csr.sans.values().join(", ")
                    )));
                }
            };
            (sans, csr.key_algorithm, KeySource::Csr(Box::new(csr)))
        }
        None => (
            req.sans.clone(),
            req.key_algorithm.unwrap_or_default(),
            KeySource::Generate,
        ),
    };
    if sans.is_empty() {
        return Err(WireError::bad_request(
            "no subject alternative names: give sans, or a CSR that requests them",
        ));
    }
    Ok(Prepared {
        sans,
        key_algorithm,
        key,
    })
}

/// Same set of names, ignoring order, duplicates and DNS letter case.
fn same_names(a: &Sans, b: &Sans) -> bool {
    fn canonical(s: &Sans) -> (Vec<String>, Vec<std::net::IpAddr>, Vec<String>) {
        let mut dns: Vec<String> = s
            .dns
            .iter()
            .map(|d| d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase())
            .collect();
        let mut ip = s.ip.clone();
        let mut uri = s.uri.clone();
        dns.sort();
        dns.dedup();
        ip.sort();
        ip.dedup();
        uri.sort();
        uri.dedup();
        (dns, ip, uri)
    }
    canonical(a) == canonical(b)
}

fn csr_error(e: PkiError) -> WireError {
    match e {
        PkiError::CsrSignatureInvalid => WireError::bad_request(
            "CSR signature does not verify: the requester did not prove possession of the private key",
        ),
        PkiError::BadCsr(m) => WireError::bad_request(format!("bad CSR: {m}")),
        PkiError::WeakKey(m) => WireError::bad_request(format!("CSR key is too weak: {m}")),
        PkiError::UnsupportedKey(m) => {
            WireError::bad_request(format!("CSR key is not supported: {m}"))
        }
        other => WireError::bad_request(format!("CSR refused: {other}")),
    }
}

/// Errors from signing: the requester's fault when they are about names or keys,
/// ours otherwise.
fn signing_error(e: PkiError) -> WireError {
    match e {
        PkiError::InvalidSan(_)
        | PkiError::WeakKey(_)
        | PkiError::UnsupportedKey(_)
        | PkiError::BadCsr(_) => WireError::bad_request(e.to_string()),
        other => WireError::internal(format!("signing failed: {other}")),
    }
}

/// The idempotency fingerprint: SHA-256 (hex) of the parsed request's JSON without its
/// proof. A retry carries a fresh proof (a new nonce and time), or the single-use token
/// already spent; it is still the same request. It is taken over the parsed request,
/// defaults filled in, so two spellings of one request are one request. (Not the
/// proof's digest, [`sigil_contracts::auth::received_digest`], which covers the bytes
/// as sent; the fingerprint is stored with each issuance, so its form stays as it was.)
fn fingerprint(req: &IssueRequest) -> String {
    let mut bare = req.clone();
    bare.proof = None;
    // Serializing a contract type cannot fail (no maps with non-string keys).
    let json = serde_json::to_vec(&bare).unwrap_or_default();
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&json))
}

/// A failed `evaluate` call as the client should see it. A refused proof is the
/// client's to fix and keeps policy's own words (what was wrong with it); anything else
/// keeps its code (a timeout or absent policy is `unavailable`) and says it came from
/// policy.
pub(crate) fn policy_error(e: ClientError) -> WireError {
    let wire = e.into_wire();
    match wire.code {
        ErrorCode::Unauthenticated => wire,
        _ => WireError {
            message: format!("policy: {}", wire.message),
            ..wire
        },
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, WireError> {
    serde_json::to_value(value).map_err(|e| WireError::internal(format!("cannot encode: {e}")))
}

fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// The reply recorded for an earlier request with the same idempotency key.
fn replay(
    row: &entity::Model,
    fingerprint: &str,
    chain_pem: Vec<String>,
) -> Result<IssueResponse, WireError> {
    if row.request_sha256 != fingerprint {
        return Err(WireError::conflict(
            "idempotency_key was already used for a different request",
        ));
    }
    let corrupt = |what: &str, e: serde_json::Error| {
        WireError::internal(format!(
            "stored issuance {} has a bad {what}: {e}",
            row.serial
        ))
    };
    let facts: CertificateFacts =
        serde_json::from_value(row.facts.clone()).map_err(|e| corrupt("facts", e))?;
    let mut notes: Vec<String> =
        serde_json::from_value(row.notes.clone()).map_err(|e| corrupt("notes", e))?;
    notes.push(REPLAY_NOTE.to_owned());
    if row.key_source == KEY_SOURCE_GENERATED {
        notes.push(KEY_NOT_REPLAYED_NOTE.to_owned());
    }
    let kind = CaKind::from_name(&row.ca_kind).ok_or_else(|| {
        WireError::internal(format!(
            "stored issuance {} has an unknown CA kind {:?}",
            row.serial, row.ca_kind
        ))
    })?;
    Ok(IssueResponse {
        serial: row.serial.clone(),
        certificate_pem: row.certificate_pem.clone(),
        chain_pem,
        kind,
        private_key_pem: None,
        not_before: facts.not_before,
        not_after: facts.not_after,
        ttl_seconds: row.ttl_seconds,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_contracts::ErrorCode;
    use sigil_contracts::auth::Proof;

    fn request() -> IssueRequest {
        IssueRequest {
            idempotency_key: None,
            profile: sigil_contracts::types::Profile::TlsServer,
            sans: Sans {
                dns: vec!["web.example.com".into()],
                ..Sans::default()
            },
            ttl_seconds: 3600,
            csr_pem: None,
            key_algorithm: None,
            proof: None,
        }
    }

    #[test]
    fn prepare_checks_lifetime_names_and_keys() {
        let ok = prepare(&request()).unwrap();
        assert_eq!(ok.key_algorithm, KeyAlgorithm::EcdsaP256);

        let cases: Vec<(IssueRequest, &str)> = vec![
            (
                IssueRequest {
                    ttl_seconds: 0,
                    ..request()
                },
                "ttl must be positive",
            ),
            (
                IssueRequest {
                    ttl_seconds: -1,
                    ..request()
                },
                "ttl must be positive",
            ),
            (
                IssueRequest {
                    sans: Sans::default(),
                    ..request()
                },
                "no subject alternative names",
            ),
            (
                IssueRequest {
                    idempotency_key: Some(String::new()),
                    ..request()
                },
                "idempotency_key",
            ),
            (
                IssueRequest {
                    idempotency_key: Some("a b".into()),
                    ..request()
                },
                "idempotency_key",
            ),
            (
                IssueRequest {
                    idempotency_key: Some("k".repeat(129)),
                    ..request()
                },
                "idempotency_key",
            ),
            (
                IssueRequest {
                    csr_pem: Some("hello".into()),
                    ..request()
                },
                "bad CSR",
            ),
        ];
        for (req, needle) in cases {
            let err = prepare(&req).err().unwrap();
            assert_eq!(err.code, ErrorCode::BadRequest, "{req:?}");
            assert!(err.message.contains(needle), "{needle}: {}", err.message);
        }
    }

    #[test]
    fn names_compare_as_sets() {
        let a = Sans {
            dns: vec!["B.example.com".into(), "a.example.com.".into()],
            ip: vec!["10.0.0.1".parse().unwrap()],
            uri: vec![],
        };
        let b = Sans {
            dns: vec![
                "a.example.com".into(),
                "b.example.com".into(),
                "a.example.com".into(),
            ],
            ip: vec!["10.0.0.1".parse().unwrap()],
            uri: vec![],
        };
        assert!(same_names(&a, &b));
        let c = Sans {
            ip: vec![],
            ..b.clone()
        };
        assert!(!same_names(&a, &c));
    }

    #[test]
    fn fingerprint_depends_on_the_request_but_not_its_proof() {
        let a = fingerprint(&request());
        assert_eq!(a, fingerprint(&request()));
        assert_ne!(
            a,
            fingerprint(&IssueRequest {
                ttl_seconds: 7200,
                ..request()
            })
        );
        assert_eq!(a.len(), 64);
        // A retry with a fresh proof is the same request.
        let token = |t: &str| IssueRequest {
            proof: Some(Proof::Token { token: t.into() }),
            ..request()
        };
        assert_eq!(fingerprint(&token("first")), a);
        assert_eq!(fingerprint(&token("second")), a);
    }

    #[test]
    fn policy_errors_keep_their_code_and_refused_proofs_their_message() {
        let refused = policy_error(ClientError::Wire(WireError::unauthenticated(
            "the token was already used",
        )));
        assert_eq!(refused.code, ErrorCode::Unauthenticated);
        assert_eq!(refused.message, "the token was already used");
        let absent = policy_error(ClientError::NoResponders {
            subject: POLICY_EVALUATE.subject(),
        });
        assert_eq!(absent.code, ErrorCode::Unavailable);
        assert!(absent.message.starts_with("policy: "), "{}", absent.message);
        let broken = policy_error(ClientError::Wire(WireError::internal("boom")));
        assert_eq!(broken.code, ErrorCode::Internal);
        assert_eq!(broken.message, "policy: boom");
    }

    #[test]
    fn pki_errors_map_to_clear_wire_errors() {
        assert!(
            csr_error(PkiError::CsrSignatureInvalid)
                .message
                .contains("proof")
                || csr_error(PkiError::CsrSignatureInvalid)
                    .message
                    .contains("possession")
        );
        assert_eq!(
            csr_error(PkiError::WeakKey("rsa 1024".into())).code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            signing_error(PkiError::Crypto("x".into())).code,
            ErrorCode::Internal
        );
        assert_eq!(
            signing_error(PkiError::InvalidSan("x".into())).code,
            ErrorCode::BadRequest
        );
    }
}
