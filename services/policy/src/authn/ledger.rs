//! Single use across replicas: token uses and possession-proof nonces, recorded in the
//! JetStream KV bucket [`BUCKET`].
//!
//! Every replica of the policy service shares one NATS, so a KV write that only succeeds
//! when the key is absent ("create") or still at the revision that was read ("update",
//! compare-and-set) gives an exactly-once answer without a shared database lock: of two
//! replicas racing to use a single-use token, JetStream accepts exactly one write.
//!
//! - `t.<jti>`: how many times token `jti` was used (decimal). Created with `1` on first
//!   use; later uses CAS-increment it while it is below the token's `sigil_uses`.
//! - `n.<hex sha256(serial ‖ 0x00 ‖ nonce)>`: a nonce seen with credential `serial`.
//!   Hashing keeps keys short and within KV's key alphabet whatever the inputs.
//!
//! Entries expire after [`MAX_AGE`], longer than any token lives and than a proof's
//! signing time may be off, so an entry never disappears while its token or proof could
//! still be accepted.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use sigil_contracts::auth::{MAX_PROOF_SKEW_SECONDS, MAX_TOKEN_TTL_SECONDS};

use super::AuthError;

/// Name of the KV bucket.
pub const BUCKET: &str = "sigil-auth-uses";
/// How long an entry is kept: the longest token lifetime plus twice the proof skew.
pub const MAX_AGE: Duration =
    Duration::from_secs((MAX_TOKEN_TTL_SECONDS + 2 * MAX_PROOF_SKEW_SECONDS).unsigned_abs());
/// Attempts at a compare-and-set increment when other replicas keep winning the race.
const CAS_ATTEMPTS: usize = 32;

/// The shared use ledger (a handle on the KV bucket; cheap to clone).
#[derive(Debug, Clone)]
pub struct UseLedger {
    kv: kv::Store,
}

impl UseLedger {
    /// Create the bucket (file storage, history 1, [`MAX_AGE`]) or open it when it exists.
    pub async fn open(js: &jetstream::Context) -> Result<UseLedger, AuthError> {
        let config = kv::Config {
            bucket: BUCKET.to_owned(),
            description: "Sigil policy: bootstrap-token uses and possession-proof nonces"
                .to_owned(),
            history: 1,
            max_age: MAX_AGE,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        match js.create_key_value(config).await {
            Ok(kv) => Ok(UseLedger { kv }),
            // It exists (perhaps with settings of another version): use it as it is.
            Err(create) => match js.get_key_value(BUCKET).await {
                Ok(kv) => Ok(UseLedger { kv }),
                Err(get) => Err(AuthError::Unavailable(format!(
                    "KV bucket {BUCKET}: cannot create ({create}) nor open ({get})"
                ))),
            },
        }
    }

    /// Record one use of token `jti`, which may be used `uses` times. Answers the number
    /// of this use (1 for the first); [`AuthError::Replayed`] when it was used up.
    pub async fn use_token(&self, jti: &str, uses: u32) -> Result<u32, AuthError> {
        if jti.is_empty()
            || !jti
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AuthError::Malformed(format!(
                "token id {jti:?} is not valid"
            )));
        }
        if uses == 0 {
            return Err(AuthError::Replayed(format!("token {jti} allows no use")));
        }
        let key = format!("t.{jti}");
        for _ in 0..CAS_ATTEMPTS {
            match self.kv.create(&key, Bytes::from_static(b"1")).await {
                Ok(_) => return Ok(1),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(kv_unavailable(&e)),
            }
            let Some(entry) = self.kv.entry(&key).await.map_err(|e| kv_unavailable(&e))? else {
                // Gone between our create and read (expired): create again.
                continue;
            };
            let used = std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| {
                    AuthError::Unavailable(format!("use count of token {jti} is unreadable"))
                })?;
            if used >= uses {
                return Err(AuthError::Replayed(if uses == 1 {
                    format!("token {jti} was already used")
                } else {
                    format!("token {jti} was already used {used} of {uses} times")
                }));
            }
            let next = used + 1;
            match self
                .kv
                .update(&key, Bytes::from(next.to_string()), entry.revision)
                .await
            {
                Ok(_) => return Ok(next),
                // Another replica counted a use in between: read again.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(e) => return Err(kv_unavailable(&e)),
            }
        }
        Err(AuthError::Unavailable(format!(
            "token {jti}: too many concurrent uses, try again"
        )))
    }

    /// Record a possession-proof `nonce` of credential `serial`; [`AuthError::Replayed`]
    /// when it was seen before.
    pub async fn consume_nonce(&self, serial: &str, nonce: &str) -> Result<(), AuthError> {
        match self
            .kv
            .create(nonce_key(serial, nonce), Bytes::from_static(b"1"))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(AuthError::Replayed(
                format!("nonce {nonce:?} was already used"),
            )),
            Err(e) => Err(kv_unavailable(&e)),
        }
    }
}

/// `n.<hex sha256(serial ‖ 0x00 ‖ nonce)>`.
fn nonce_key(serial: &str, nonce: &str) -> String {
    let mut h = Sha256::new();
    h.update(serial.as_bytes());
    h.update([0u8]);
    h.update(nonce.as_bytes());
    format!("n.{}", hex::encode(h.finalize()))
}

fn kv_unavailable(e: &dyn std::fmt::Display) -> AuthError {
    AuthError::Unavailable(format!("KV bucket {BUCKET}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_keys_separate_serial_and_nonce() {
        assert_ne!(nonce_key("ab", "cdef"), nonce_key("abc", "def"));
        let k = nonce_key("01", "0123456789abcdef");
        assert!(k.starts_with("n.") && k.len() == 2 + 64);
    }

    #[test]
    fn entries_outlive_tokens_and_proofs() {
        assert!(MAX_AGE.as_secs() > MAX_TOKEN_TTL_SECONDS.unsigned_abs());
    }
}
