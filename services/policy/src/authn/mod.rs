//! Requester authentication: who sent a request, established from the proof it carries.
//!
//! A request names no principal of its own (see [`sigil_contracts::auth`]); the policy
//! service establishes it here, from one of two proofs:
//!
//! - a bootstrap token ([`token`]): a JWT (HS256) this service minted with a secret kept
//!   in its own database (`token_keys`). It names the principal and the name patterns it
//!   may ask for. Its uses are counted across replicas in the JetStream KV bucket
//!   [`ledger::BUCKET`] ([`ledger::UseLedger::use_token`]), only once a decision allowed
//!   the request, so a denied request does not burn the token;
//! - a possession proof ([`possession`]): the request signed by the private key of a
//!   credential Sigil issued, with its chain. The chain must verify to the issuer's
//!   *current* trust bundle, the credential must not be revoked (asked of the revocation
//!   service), the nonce must be fresh (single use through the same KV bucket) and the
//!   signing time within [`MAX_PROOF_SKEW_SECONDS`] of our clock. The principal is the
//!   one the credential was issued to, as recorded from `identity.issued` in the
//!   `credentials` table ([`possession::record_issued`]).
//!
//! Every failure is an [`AuthError`]; all of them but [`AuthError::Unavailable`] reach the
//! caller as `unauthenticated`. When a dependency (issuer, revocation, NATS KV, the
//! database) cannot answer, authentication fails closed as `unavailable`.
//!
//! [`MAX_PROOF_SKEW_SECONDS`]: sigil_contracts::auth::MAX_PROOF_SKEW_SECONDS

pub mod ledger;
mod migration;
pub mod possession;
pub mod token;

use sigil_contracts::WireError;
use sigil_contracts::auth::AuthMethod;
use sigil_contracts::types::{Profile, Sans};

/// Why a request could not be authenticated.
///
/// Each variant carries a message for the requester (and the audit log). None of them
/// ever contains a secret: not the token, not the token key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The proof cannot be read: an unparseable token or certificate, a bad nonce, bad
    /// base64, or a token mint input out of range.
    #[error("malformed proof: {0}")]
    Malformed(String),
    /// A signature does not verify: the token's (including a token signed by a key this
    /// service does not hold, or with another algorithm than HS256) or the possession
    /// proof's.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// Outside its time: token `exp`/`nbf`, the credential's notAfter, or a possession
    /// proof signed more than `MAX_PROOF_SKEW_SECONDS` from now.
    #[error("expired: {0}")]
    Expired(String),
    /// Seen before: a token whose uses are exhausted, or a nonce already used.
    #[error("replayed: {0}")]
    Replayed(String),
    /// The credential is revoked.
    #[error("credential revoked: {0}")]
    Revoked(String),
    /// The chain does not verify to the issuer's current trust bundle; the message lists
    /// the failed checks.
    #[error("untrusted credential: {0}")]
    UntrustedChain(String),
    /// The credential chains to our CA but its issuance has not been recorded (yet):
    /// `identity.issued` reaches this service asynchronously.
    #[error("unknown credential: {0}")]
    UnknownCredential(String),
    /// The proof does not belong to this request: operation or digest missing, or the
    /// proof was made for another operation or another request body.
    #[error("proof is not for this request: {0}")]
    WrongRequest(String),
    /// A dependency needed to authenticate (issuer, revocation, NATS KV, database) did
    /// not answer; the request is refused rather than let through.
    #[error("cannot authenticate now: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// A stable name of the failure, in the wire error's `details.auth_failure`.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::Malformed(_) => "malformed",
            AuthError::BadSignature(_) => "bad_signature",
            AuthError::Expired(_) => "expired",
            AuthError::Replayed(_) => "replayed",
            AuthError::Revoked(_) => "revoked",
            AuthError::UntrustedChain(_) => "untrusted_chain",
            AuthError::UnknownCredential(_) => "unknown_credential",
            AuthError::WrongRequest(_) => "wrong_request",
            AuthError::Unavailable(_) => "unavailable",
        }
    }

    /// The reply: `unavailable` when a dependency failed (the caller may retry),
    /// `unauthenticated` otherwise, with `details: {"auth_failure": <kind>}`.
    pub fn to_wire(&self) -> WireError {
        let wire = match self {
            AuthError::Unavailable(_) => WireError::unavailable(self.to_string()),
            _ => WireError::unauthenticated(self.to_string()),
        };
        wire.with_details(serde_json::json!({ "auth_failure": self.kind() }))
    }

    /// The reason recorded in the audit row of the refusal.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// Who a proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// `type:id`, e.g. `workload:web`, `admin:alice`, or `anonymous`.
    pub principal: String,
    /// How: none, token or credential.
    pub method: AuthMethod,
    /// What the proof itself allows, checked before policy.
    pub grant: Grant,
}

impl Requester {
    /// The requester of a request without proof.
    pub fn anonymous() -> Requester {
        Requester {
            principal: ANONYMOUS.to_owned(),
            method: AuthMethod::None,
            grant: Grant::None,
        }
    }
}

/// Principal of a request that carries no proof.
pub const ANONYMOUS: &str = "anonymous";

/// What the proof grants on its own, besides naming the principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// No proof: anonymous.
    None,
    /// A bootstrap token: the request may ask only names matching `names` (the token's
    /// `sigil_for` patterns). Its use is recorded (`jti`, at most `uses`) once allowed.
    Token {
        jti: String,
        names: Vec<String>,
        uses: u32,
    },
    /// Possession of credential `serial`, whose names are `sans` (DNS lower-case) and
    /// whose profile (from its extendedKeyUsage) is `profile`. `admin` only for an
    /// admin's credential: issued to `admin:<id>` and naming exactly
    /// `spiffe://sigil.admin/admin/<id>` ([`sigil_contracts::auth::ADMIN_URI_PREFIX`]).
    /// Any other credential may only renew itself: the same names and profile.
    Credential {
        serial: String,
        sans: Sans,
        profile: Option<Profile>,
        admin: bool,
    },
    /// A dry run (`policy test`) naming its principal; nothing was proven.
    Named,
}

pub use migration::CreateCredentials;
pub use possession::record_issued;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_failures_are_unavailable_everything_else_unauthenticated() {
        use sigil_contracts::ErrorCode;
        let down = AuthError::Unavailable("revocation: no reply".into()).to_wire();
        assert_eq!(down.code, ErrorCode::Unavailable);
        for e in [
            AuthError::Malformed("x".into()),
            AuthError::BadSignature("x".into()),
            AuthError::Expired("x".into()),
            AuthError::Replayed("x".into()),
            AuthError::Revoked("x".into()),
            AuthError::UntrustedChain("x".into()),
            AuthError::UnknownCredential("x".into()),
            AuthError::WrongRequest("x".into()),
        ] {
            let wire = e.to_wire();
            assert_eq!(wire.code, ErrorCode::Unauthenticated, "{e}");
            assert_eq!(
                wire.details
                    .as_ref()
                    .and_then(|d| d.get("auth_failure"))
                    .and_then(|k| k.as_str()),
                Some(e.kind())
            );
            assert!(e.reason().contains('x'));
        }
    }
}
