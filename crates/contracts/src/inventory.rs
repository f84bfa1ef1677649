//! `sigil.inventory.v1.*`: the system of record.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{CredentialRecord, CredentialStatus};

/// Largest page a query returns.
pub const MAX_PAGE: u32 = 500;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 100;

/// `sigil.inventory.v1.query` request. All filters are ANDed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CredentialStatus>,
    /// Only credentials whose notAfter is within this many seconds from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiring_within_seconds: Option<i64>,
    /// Only credentials with a SAN equal to this value, or matching it as a `*.` suffix
    /// pattern (e.g. `*.example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub san: Option<String>,
    /// Page size, 1..=500 (default 100). A page may hold fewer items when they would
    /// make the reply too large for NATS; follow `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `sigil.inventory.v1.query` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryResponse {
    pub items: Vec<CredentialRecord>,
    /// Present when more results follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `sigil.inventory.v1.get` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetRequest {
    /// Serial number, hex (case and `:` separators are ignored).
    pub serial: String,
}
