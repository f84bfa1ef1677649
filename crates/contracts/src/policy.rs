//! `sigil.policy.v1.*`: authorization decisions and the versioned Cedar policy sets
//! they are made by.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::{AuthMethod, CarriesProof, Proof};
use crate::subjects::Operation;
use crate::types::{CaKind, KeyAlgorithm, Profile, Sans};

/// What the requester wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Issue,
    Renew,
    Revoke,
    /// Read an identity or credential (inventory look-ups).
    Read,
    /// Administer Sigil (CA operations, policy changes).
    Admin,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Issue,
        Action::Renew,
        Action::Revoke,
        Action::Read,
        Action::Admin,
    ];

    /// The action's name on the wire and in Cedar (`Sigil::Action::"issue"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Issue => "issue",
            Action::Renew => "renew",
            Action::Revoke => "revoke",
            Action::Read => "read",
            Action::Admin => "admin",
        }
    }
}

/// `sigil.policy.v1.evaluate` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// Only in a `test` dry run: decide for this principal, `type:id` with type
    /// `workload`, `agent`, `admin` or `service` (e.g. `workload:web`), or `anonymous`.
    /// `evaluate` refuses it (`bad_request`): there the principal is established from
    /// `proof`, and is `anonymous` without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The proof the caller's request carried ([`crate::auth`]), passed on unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
    /// Subject of the request being authorized (e.g. `sigil.issuer.v1.issue`); a
    /// possession proof must have been made for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Digest of the request being authorized as the forwarding service received it
    /// ([`crate::auth::received_digest`]: SHA-256 of its RFC 8785 canonical JSON without
    /// `proof`); a possession proof must sign it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<String>,
    /// What the request asks. Policy decides an `issue` request proven by a non-admin
    /// credential as `renew` (the credential renewing itself).
    pub action: Action,
    pub profile: Profile,
    pub sans: Sans,
    /// Requested lifetime in seconds.
    pub ttl_seconds: i64,
    pub key_algorithm: KeyAlgorithm,
    /// Kind of certificate to be signed (the issuing CA's kind); `classical` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<CaKind>,
    /// Size of the subject key in bits when known (e.g. an RSA CSR's modulus); derived
    /// from `key_algorithm` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_bits: Option<u32>,
}

impl EvaluateRequest {
    /// An `admin` decision for `req` sent to `operation` (CA operations, policy changes,
    /// token creation): no names, no lifetime, the default key algorithm and kind, and
    /// the request's proof, operation and digest, so policy authenticates it.
    pub fn admin<R: CarriesProof>(operation: Operation, req: &R) -> EvaluateRequest {
        EvaluateRequest::admin_with_digest(operation, req, req.digest())
    }

    /// [`EvaluateRequest::admin`] with the digest of the request as the service received
    /// it ([`crate::auth::received_digest`]), which is what its proof must have signed.
    pub fn admin_with_digest<R: CarriesProof>(
        operation: Operation,
        req: &R,
        digest: String,
    ) -> EvaluateRequest {
        EvaluateRequest {
            principal: None,
            proof: req.proof().cloned(),
            operation: Some(operation.subject()),
            request_digest: Some(digest),
            action: Action::Admin,
            profile: Profile::default(),
            sans: Sans::default(),
            // Lifetimes matter only to issue and renew decisions.
            ttl_seconds: 0,
            key_algorithm: KeyAlgorithm::default(),
            kind: None,
            key_bits: None,
        }
    }
}

/// Constraints the caller must apply when the decision allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Lifetime to issue, in seconds (the request's, or clamped to the maximum).
    pub ttl_seconds: i64,
    /// True when `ttl_seconds` is shorter than requested.
    pub ttl_clamped: bool,
}

/// `sigil.policy.v1.evaluate` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub allowed: bool,
    /// Why: for a denial every deciding policy (`<policy id>: <reason>`) or that no
    /// policy permits; for an allow, notes such as clamping.
    pub reasons: Vec<String>,
    pub constraints: Constraints,
    /// Version of the policy set that decided.
    pub policy_version: String,
    /// The authenticated principal (`type:id`, or `anonymous`): what callers record.
    #[serde(default = "anonymous")]
    pub principal: String,
    #[serde(default)]
    pub authenticated_by: AuthMethod,
    /// The action decided (`renew` for an issue request proven by the credential it
    /// renews).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

fn anonymous() -> String {
    "anonymous".to_owned()
}

/// `sigil.policy.v1.apply` request: validate a Cedar policy set against Sigil's schema
/// and, when valid, store it as a new version and make it active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// Cedar policies (text).
    pub policies: String,
    /// Cedar entities JSON: principal group memberships (`Sigil::Group` parents of
    /// `Sigil::Workload` and the other principal types). None: no groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// An admin's possession proof ([`crate::auth`]); the authenticated principal is
    /// recorded as the author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
}

impl CarriesProof for ApplyRequest {
    fn proof(&self) -> Option<&Proof> {
        self.proof.as_ref()
    }
    fn proof_mut(&mut self) -> &mut Option<Proof> {
        &mut self.proof
    }
}

/// How a policy version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyOrigin {
    /// Written on first start from the built-in default set or the configured seed.
    Seeded,
    /// `apply`.
    Applied,
    /// `rollback`: a copy of an earlier version.
    RolledBack,
}

impl PolicyOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyOrigin::Seeded => "seeded",
            PolicyOrigin::Applied => "applied",
            PolicyOrigin::RolledBack => "rolled_back",
        }
    }

    pub fn from_name(name: &str) -> Option<PolicyOrigin> {
        [
            PolicyOrigin::Seeded,
            PolicyOrigin::Applied,
            PolicyOrigin::RolledBack,
        ]
        .into_iter()
        .find(|o| o.as_str() == name)
    }
}

/// One stored version of the policy set (without its text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyVersion {
    /// 1, 2, 3…; the highest is active.
    pub version: u64,
    /// SHA-256 (hex) of the policies text followed by the entities JSON.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub origin: PolicyOrigin,
    /// For a rollback: the version whose text this one restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<u64>,
    /// Number of policies in the set.
    pub policy_count: u32,
    /// True for the version in force.
    pub active: bool,
}

/// A stored version with its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    #[serde(flatten)]
    pub version: PolicyVersion,
    pub policies: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<String>,
}

/// `sigil.policy.v1.list` request: every stored version, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    /// At most this many (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `sigil.policy.v1.list` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListResponse {
    /// The active version (the highest).
    pub active: u64,
    pub versions: Vec<PolicyVersion>,
}

/// `sigil.policy.v1.show` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShowRequest {
    /// The version to show; the active one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// `sigil.policy.v1.rollback` request: make an earlier version's text active again,
/// as a new version (history only grows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// An admin's possession proof ([`crate::auth`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
}

impl CarriesProof for RollbackRequest {
    fn proof(&self) -> Option<&Proof> {
        self.proof.as_ref()
    }
    fn proof_mut(&mut self) -> &mut Option<Proof> {
        &mut self.proof
    }
}

/// `sigil.policy.v1.test` request: a dry run that explains a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    pub request: EvaluateRequest,
    /// Decide as if it were this time (time-phased rules); the service's clock when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// A stored version to decide by; the active one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// A candidate policy set (Cedar text) to decide by instead of a stored version;
    /// validated like `apply`, stored nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<String>,
    /// Entities JSON to go with `policies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<String>,
}

impl TestRequest {
    /// A dry run of `request` now, under the active version.
    pub fn now(request: EvaluateRequest) -> TestRequest {
        TestRequest {
            request,
            at: None,
            version: None,
            policies: None,
            entities: None,
        }
    }
}

/// Effect of a Cedar policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Permit,
    Forbid,
}

/// A policy that took part in a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyHit {
    /// The policy's `@id` annotation (or Cedar's positional id `policyN`).
    pub id: String,
    pub effect: Effect,
    /// The policy's `@reason` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The policy's `@clamp_ttl_seconds` annotation: a forbid that clamps instead of denying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clamp_ttl_seconds: Option<i64>,
}

/// How one authorization (one subject name, or the whole request when it names none)
/// was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NameEvaluation {
    /// `dns:web.example.com`, `ip:10.0.0.1`, `uri:spiffe://…`, or `-` for none.
    pub name: String,
    pub allowed: bool,
    /// The lifetime it was decided with (after any clamping).
    pub ttl_seconds: i64,
    /// Policies that were satisfied and decided (permits on allow, forbids on deny).
    pub determining: Vec<PolicyHit>,
    /// Policies that could not be evaluated (treated as not satisfied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// `sigil.policy.v1.test` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Explanation {
    pub decision: Decision,
    /// The principal as Cedar saw it, e.g. `Sigil::Workload::"web"`.
    pub principal: String,
    /// The time the decision was made for.
    pub at: DateTime<Utc>,
    /// One entry per subject name, in request order.
    pub evaluations: Vec<NameEvaluation>,
}

/// What an audit-log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// An `evaluate` decision (allow or deny).
    Decision,
    /// A certificate was issued (`identity.issued`).
    Issued,
    /// A certificate was revoked (`identity.revoked`).
    Revoked,
    /// A bootstrap token was minted (`token_create`, or locally by whoever can open the
    /// policy database). The row names the token's id, principal, name patterns, uses and
    /// expiry, never the token itself.
    TokenCreated,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Decision => "decision",
            AuditKind::Issued => "issued",
            AuditKind::Revoked => "revoked",
            AuditKind::TokenCreated => "token_created",
        }
    }

    pub fn from_name(name: &str) -> Option<AuditKind> {
        [
            AuditKind::Decision,
            AuditKind::Issued,
            AuditKind::Revoked,
            AuditKind::TokenCreated,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// One row of the hash-chained audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// 1, 2, 3… without gaps.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub kind: AuditKind,
    pub principal: String,
    /// `issue`, `renew`, `revoke`, `read` or `admin` (decisions: the action decided);
    /// `issued`/`revoked`; `token_create`.
    pub action: String,
    /// JSON: `{"profile", "sans", "authenticated_by", "operation"?}` for a decision,
    /// `{"serial", "sans"}` for an issuance or revocation, `{"jti", "principal",
    /// "names", "uses", "expires_at"}` for a minted token.
    pub resource: String,
    /// `allow`, `deny`, `unauthenticated` (the request's proof was refused), `issued`,
    /// `revoked` or `created`.
    pub outcome: String,
    pub reasons: Vec<String>,
    pub policy_version: String,
    /// Hex SHA-256 of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 of this entry's canonical encoding.
    pub hash: String,
}

/// `sigil.policy.v1.audit_list` request: entries in `seq` order, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditListRequest {
    /// Only this principal's entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Only entries at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Only entries with `seq` greater than this (the previous page's `next_cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
    /// At most this many (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `sigil.policy.v1.audit_list` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditListResponse {
    pub entries: Vec<AuditEntry>,
    /// Pass as `after_seq` for the next page; absent when this page was the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<u64>,
}

/// `sigil.policy.v1.audit_verify` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditVerifyRequest {}

/// Why a link of the chain is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BrokenReason {
    /// The row's stored hash is not the hash of its content: the row was altered.
    HashMismatch,
    /// The row's `prev_hash` is not the previous row's hash.
    PrevHashMismatch,
    /// A sequence number is missing: a row was removed.
    MissingSeq,
    /// The newest anchor names a row the log no longer holds, or holds with another
    /// hash: the newest rows were removed (or removed and rewritten).
    AnchorMismatch,
}

/// The first broken link of the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BrokenLink {
    /// The first sequence number at which the chain does not hold.
    pub seq: u64,
    pub reason: BrokenReason,
    pub detail: String,
}

/// `sigil.policy.v1.audit_verify` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditVerifyResponse {
    /// The whole chain is intact.
    pub ok: bool,
    /// Entries checked (up to and including the broken one).
    pub checked: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<BrokenLink>,
    /// The check against the newest `policy.audit_anchored` event in the event stream;
    /// absent when no anchor has been published yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<AnchorCheck>,
}

/// How the log compares with its newest anchor (`policy.audit_anchored`), which lives
/// in the event stream, outside the policy database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnchorCheck {
    /// The anchored row.
    pub seq: u64,
    pub hash: String,
    pub row_at: DateTime<Utc>,
    /// The log still holds that row with that hash.
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
