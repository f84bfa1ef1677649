//! `sigil.policy.v1.*`: authorization decisions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{KeyAlgorithm, Profile, Sans};

/// What the requester wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Issue,
    Renew,
    Revoke,
}

/// `sigil.policy.v1.evaluate` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// The requesting principal, e.g. `admin` or `workload:web`.
    pub principal: String,
    pub action: Action,
    pub profile: Profile,
    pub sans: Sans,
    /// Requested lifetime in seconds.
    pub ttl_seconds: i64,
    pub key_algorithm: KeyAlgorithm,
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
    /// Why: for a denial every rule that failed; for an allow, notes such as clamping.
    pub reasons: Vec<String>,
    pub constraints: Constraints,
    /// Version of the rules that decided.
    pub policy_version: String,
}
