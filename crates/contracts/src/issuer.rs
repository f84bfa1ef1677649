//! `sigil.issuer.v1.*`: certificate issuance.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{KeyAlgorithm, Profile, Sans};

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
    /// Key algorithm for a server-generated key (ignored with a CSR).
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
    /// Present only for server-generated keys, and only in the first reply.
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
