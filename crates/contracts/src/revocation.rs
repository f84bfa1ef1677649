//! `sigil.revocation.v1.*`: revoking credentials.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::{CarriesProof, Proof};
use crate::types::RevocationReason;

/// `sigil.revocation.v1.revoke` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Serial number, hex (case and `:` separators are ignored).
    pub serial: String,
    pub reason: RevocationReason,
    /// Who revokes ([`crate::auth`]): policy decides whether that principal may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
}

impl CarriesProof for RevokeRequest {
    fn proof(&self) -> Option<&Proof> {
        self.proof.as_ref()
    }
    fn proof_mut(&mut self) -> &mut Option<Proof> {
        &mut self.proof
    }
}

/// `sigil.revocation.v1.status` request: is this serial revoked? (Policy asks it before
/// accepting a credential as proof.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// Serial number, hex (normalised like [`RevokeRequest::serial`]).
    pub serial: String,
}

/// `sigil.revocation.v1.status` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusResponse {
    pub serial: String,
    pub revoked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RevocationReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `sigil.revocation.v1.revoke` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeResponse {
    pub serial: String,
    pub reason: RevocationReason,
    pub revoked_at: DateTime<Utc>,
    /// True when the serial was already revoked; the first revocation stands and no
    /// new event is emitted.
    pub already_revoked: bool,
}

/// Normalise a serial as typed by a person: strip `:` separators and whitespace,
/// lowercase, drop leading zero bytes. Returns `None` unless it is non-empty hex of at
/// most 20 octets (RFC 5280 §4.1.2.2).
pub fn normalize_serial(input: &str) -> Option<String> {
    let hex: String = input
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.is_empty() || hex.len() > 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = hex.trim_start_matches('0');
    let mut out = if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    };
    if out.len() % 2 == 1 {
        out.insert(0, '0');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::normalize_serial;

    #[test]
    fn serials_normalise() {
        assert_eq!(normalize_serial("0A:BC:01").as_deref(), Some("0abc01"));
        assert_eq!(normalize_serial("00ff").as_deref(), Some("ff"));
        assert_eq!(normalize_serial("abc").as_deref(), Some("0abc"));
        assert_eq!(normalize_serial("xyz"), None);
        assert_eq!(normalize_serial(""), None);
        assert_eq!(normalize_serial(&"a".repeat(41)), None);
    }
}
