//! `sigil.issuer.v1.*`: certificate issuance.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// Key algorithm for a server-generated key (ignored with a CSR). Under a composite
    /// CA it must be the composite's classical half; under an ML-DSA CA an ML-DSA level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<KeyAlgorithm>,
    /// Requesting principal (authenticated in a later version; recorded and sent to
    /// policy now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
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
}
