//! `sigil.issuer.v1.*`: certificate issuance.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::{CarriesProof, Proof};
use crate::types::{CaKind, KeyAlgorithm, Profile, Sans};

/// `sigil.issuer.v1.issue` request.
///
/// Either `csr_pem` is given (the key stays with the requester; the CSR's
/// self-signature proves possession), or the issuer generates a key of
/// `key_algorithm` and returns it once in the reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// Client-chosen key: a retry with the same key returns the first result and
    /// never issues twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub profile: Profile,
    /// Names to certify. With a CSR, these must equal the CSR's SANs when both are given;
    /// when empty, the CSR's SANs are used.
    #[serde(default)]
    pub sans: Sans,
    /// Requested lifetime in seconds; must be positive.
    pub ttl_seconds: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr_pem: Option<String>,
    /// Key algorithm for a server-generated key. With a CSR it may be given and must
    /// then equal the CSR's key type (else `bad_request`). Under a composite CA it must
    /// be the composite's classical half; under an ML-DSA CA an ML-DSA level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<KeyAlgorithm>,
    /// Who sends it ([`crate::auth`]): a bootstrap token for a first identity, or a
    /// possession proof by a credential (an admin's, or the credential being renewed).
    /// Policy establishes the principal from it; without one the requester is
    /// `anonymous`, which the policy service refuses unless configured otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
}

impl CarriesProof for IssueRequest {
    fn proof(&self) -> Option<&Proof> {
        self.proof.as_ref()
    }
    fn proof_mut(&mut self) -> &mut Option<Proof> {
        &mut self.proof
    }
}

/// `sigil.issuer.v1.issue` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueResponse {
    /// Serial number, lowercase hex.
    pub serial: String,
    pub certificate_pem: String,
    /// Issuing CA certificates, PEM, root last.
    pub chain_pem: Vec<String>,
    /// Kind of the CA that signed (absent in replies of older issuers: classical).
    #[serde(default = "CaKind::classical")]
    pub kind: CaKind,
    /// Present only for server-generated keys, and only in the first reply: PKCS#8
    /// `PRIVATE KEY` PEM (RFC 9881 for ML-DSA keys), or for composite keys Sigil's own
    /// DER format under the label `SIGIL COMPOSITE PRIVATE KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<String>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Lifetime actually issued, after policy constraints.
    pub ttl_seconds: i64,
    /// Policy notes, e.g. that the lifetime was clamped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Role of a CA in the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CaRole {
    Root,
    Intermediate,
}

impl CaRole {
    pub fn as_str(self) -> &'static str {
        match self {
            CaRole::Root => "root",
            CaRole::Intermediate => "intermediate",
        }
    }

    pub fn from_name(name: &str) -> Option<CaRole> {
        [CaRole::Root, CaRole::Intermediate]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// `sigil.issuer.v1.ca_list` request: every CA the issuer knows, active or retired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaListRequest {}

/// One CA certificate and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaInfo {
    pub id: String,
    pub role: CaRole,
    pub kind: CaKind,
    /// Signature key algorithms of this CA, e.g. `["ecdsa-p256", "ML-DSA-65"]` for a
    /// hybrid CA, `["MLDSA65-ECDSA-P256-SHA512"]` for a composite one.
    pub algorithms: Vec<String>,
    /// Subject distinguished name (RFC 4514 string).
    pub subject: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// The CA currently in use for its role (retired CAs are kept, inactive).
    pub active: bool,
    pub certificate_pem: String,
    /// Slot of the CA (absent in replies of older issuers: `current` if active, else
    /// `retired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CaState>,
    /// For a retired CA: until when it is kept (for CRL signing and in the trust
    /// bundle) — the latest notAfter of the leaves it issued, or its own notAfter when
    /// it issued none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_until: Option<DateTime<Utc>>,
}

/// Slot of a CA (SPIRE-style current/next slots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CaState {
    /// Signs now (roots: the root of the current intermediate).
    Current,
    /// Prepared intermediate, already in the trust bundle, not yet signing.
    Next,
    /// No longer signs leaves; kept for CRL signing until `retire_until`.
    Retired,
}

impl CaState {
    pub const ALL: [CaState; 3] = [CaState::Current, CaState::Next, CaState::Retired];

    pub fn as_str(self) -> &'static str {
        match self {
            CaState::Current => "current",
            CaState::Next => "next",
            CaState::Retired => "retired",
        }
    }

    pub fn from_name(name: &str) -> Option<CaState> {
        CaState::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// `sigil.issuer.v1.ca_list` reply, and `ca_init`'s (the new root and intermediate).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaListResponse {
    pub cas: Vec<CaInfo>,
}

/// `sigil.issuer.v1.ca_init` request: create a new root and intermediate of `kind`.
///
/// Refused with `conflict` while an active hierarchy exists, unless `force`: then the
/// active pair is retired (kept, inactive) and the new pair becomes active at once.
/// This is not a staged rotation; certificates issued under the old pair stay valid
/// but their chain is no longer served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaInitRequest {
    pub kind: CaKind,
    /// Algorithm within the kind: `p256` / `p384` (classical), `p256+mldsa65` (hybrid:
    /// classical + ML-DSA level), a composite name such as `MLDSA65-ECDSA-P256-SHA512`,
    /// `mldsa44` / `mldsa65` / `mldsa87`. Absent: the kind's default (P-256, ML-DSA-65).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    #[serde(default)]
    pub force: bool,
    /// An admin's possession proof ([`crate::auth`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
}

impl CarriesProof for CaInitRequest {
    fn proof(&self) -> Option<&Proof> {
        self.proof.as_ref()
    }
    fn proof_mut(&mut self) -> &mut Option<Proof> {
        &mut self.proof
    }
}

/// Step of a staged intermediate rotation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RotateStep {
    /// Create the next intermediate under the current root and publish the bundle
    /// with both intermediates; the current one keeps signing.
    Prepare,
    /// The next intermediate becomes current; the current one is retired.
    Activate,
    /// Prepare, then activate.
    #[default]
    Auto,
}

impl RotateStep {
    pub const ALL: [RotateStep; 3] = [RotateStep::Prepare, RotateStep::Activate, RotateStep::Auto];

    pub fn as_str(self) -> &'static str {
        match self {
            RotateStep::Prepare => "prepare",
            RotateStep::Activate => "activate",
            RotateStep::Auto => "auto",
        }
    }
}

/// `sigil.issuer.v1.ca_rotate` request: rotate the intermediate through the
/// current/next slots. `prepare` while a next intermediate exists and `activate`
/// without one are refused with `conflict`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaRotateRequest {
    #[serde(default)]
    pub step: RotateStep,
    /// An admin's possession proof ([`crate::auth`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
}

impl CarriesProof for CaRotateRequest {
    fn proof(&self) -> Option<&Proof> {
        self.proof.as_ref()
    }
    fn proof_mut(&mut self) -> &mut Option<Proof> {
        &mut self.proof
    }
}

/// `sigil.issuer.v1.ca_rotate` reply: the slots after the step and the bundle published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaRotateResponse {
    /// The intermediate that signs now.
    pub current: CaInfo,
    /// The prepared intermediate, if one waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<CaInfo>,
    /// The intermediate this call retired (activate, auto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<CaInfo>,
    pub bundle: TrustBundle,
}

/// `sigil.issuer.v1.trust_bundle` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustBundleRequest {}

/// What relying parties should trust: `sigil.issuer.v1.trust_bundle` reply, and the
/// payload of `ca.bundle_changed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustBundle {
    /// Grows with every slot change (init, prepare, activate); never goes back.
    /// Retired CAs leaving the bundle when their `retire_until` passes do not bump it.
    pub version: u64,
    /// Kind of the current hierarchy.
    pub kind: CaKind,
    /// Root certificates, PEM: the current root, then roots of retired CAs still kept.
    pub roots: Vec<String>,
    /// Intermediate certificates, PEM: current, next, then retired ones still kept.
    pub intermediates: Vec<String>,
}

/// Why the trust bundle changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BundleChangeReason {
    /// A new hierarchy was created (first start or `ca_init`).
    Init,
    /// A next intermediate was prepared.
    Prepare,
    /// The next intermediate became current.
    Activate,
}
