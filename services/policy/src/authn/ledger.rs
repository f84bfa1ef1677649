//! Single use across replicas: token uses in the JetStream KV bucket [`BUCKET`],
//! possession-proof nonces in [`NONCE_BUCKET`].
//!
//! Every replica of the policy service shares one NATS, so a KV write that only succeeds
//! when the key is absent ("create") or still at the revision that was read ("update",
//! compare-and-set) gives an exactly-once answer without a shared database lock: of two
//! replicas racing to use a single-use token, JetStream accepts exactly one write.
//!
//! - `t.<jti>` in [`BUCKET`]: how many times token `jti` was used (decimal). Created
//!   with `1` on first use; later uses CAS-increment it while it is below the token's
//!   `sigil_uses`. Kept [`MAX_AGE`], longer than any token lives.
//! - `n.<hex sha256(serial ‖ 0x00 ‖ nonce)>` in [`NONCE_BUCKET`]: a nonce seen with
//!   credential `serial`. Hashing keeps keys short and within KV's key alphabet whatever
//!   the inputs. Kept [`NONCE_MAX_AGE`] only: a proof is accepted while its `signed_at`
//!   is within [`MAX_PROOF_SKEW_SECONDS`] of the verifier's clock, so its nonce must be
//!   remembered for that whole window, not for a token's lifetime. Nonces are the
//!   high-volume entries (one per renewal or admin request); their own short-lived
//!   bucket keeps them from piling up for a month next to the token uses.
//!
//! Entries never disappear while their token or proof could still be accepted. Both
//! buckets are capped at [`MAX_BYTES`] and refuse new entries when full (JetStream's
//! `discard: new`, which KV buckets use): a full bucket makes authentication fail
//! closed (`unavailable`) instead of dropping records, which would let a spent token or
//! nonce be used again.
//!
//! [`UseLedger::open`] creates the buckets, or checks existing ones: a bucket keeping
//! entries shorter than required has its `max_age` raised (a replay window otherwise),
//! and one without a byte limit gets [`MAX_BYTES`] while it holds less than that
//! (lowering the limit below what a stream holds would make JetStream delete its oldest
//! entries). When the update is refused the service does not start.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use sigil_contracts::auth::{MAX_PROOF_SKEW_SECONDS, MAX_TOKEN_TTL_SECONDS};

use super::AuthError;

/// Name of the KV bucket of token uses.
pub const BUCKET: &str = "sigil-auth-uses";
/// Name of the KV bucket of possession-proof nonces.
pub const NONCE_BUCKET: &str = "sigil-auth-nonces";
/// How long a token use is kept: the longest token lifetime plus twice the proof skew.
pub const MAX_AGE: Duration =
    Duration::from_secs((MAX_TOKEN_TTL_SECONDS + 2 * MAX_PROOF_SKEW_SECONDS).unsigned_abs());
/// How long a nonce is kept: the window in which a proof's `signed_at` is accepted
/// (twice the skew), plus five minutes for the replicas' clocks to differ from the NATS
/// server's, which times the expiry.
pub const NONCE_MAX_AGE: Duration =
    Duration::from_secs((2 * MAX_PROOF_SKEW_SECONDS + 300).unsigned_abs());
/// Size limit of each bucket (256 MiB): about 1.5 million nonce entries, far more than
/// [`NONCE_MAX_AGE`] at a sustained thousand proofs a second.
pub const MAX_BYTES: i64 = 256 * 1024 * 1024;
/// Largest message stored: a decimal use count or the nonce marker `1`, plus the
/// headers of a create/update (JetStream counts them in the message size).
const MAX_VALUE_SIZE: i32 = 1024;
/// Attempts at a compare-and-set increment when other replicas keep winning the race.
const CAS_ATTEMPTS: usize = 32;

/// The shared use ledger (handles on the KV buckets; cheap to clone).
#[derive(Debug, Clone)]
pub struct UseLedger {
    uses: kv::Store,
    nonces: kv::Store,
}

/// What one of the ledger's buckets must be.
struct BucketSpec {
    name: &'static str,
    description: &'static str,
    max_age: Duration,
}

const USES_SPEC: BucketSpec = BucketSpec {
    name: BUCKET,
    description: "Sigil policy: bootstrap-token uses",
    max_age: MAX_AGE,
};

const NONCES_SPEC: BucketSpec = BucketSpec {
    name: NONCE_BUCKET,
    description: "Sigil policy: possession-proof nonces",
    max_age: NONCE_MAX_AGE,
};

impl UseLedger {
    /// Create the buckets (file storage, history 1, [`MAX_AGE`] / [`NONCE_MAX_AGE`],
    /// [`MAX_BYTES`]) or open them when they exist, raising an existing bucket's
    /// `max_age` when it is shorter than required and giving it the byte limit when it
    /// has none (see the module documentation).
    pub async fn open(js: &jetstream::Context) -> Result<UseLedger, AuthError> {
        Ok(UseLedger {
            uses: open_bucket(js, &USES_SPEC).await?,
            nonces: open_bucket(js, &NONCES_SPEC).await?,
        })
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
            match self.uses.create(&key, Bytes::from_static(b"1")).await {
                Ok(_) => return Ok(1),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(kv_unavailable(BUCKET, &e)),
            }
            let Some(entry) = self
                .uses
                .entry(&key)
                .await
                .map_err(|e| kv_unavailable(BUCKET, &e))?
            else {
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
                .uses
                .update(&key, Bytes::from(next.to_string()), entry.revision)
                .await
            {
                Ok(_) => return Ok(next),
                // Another replica counted a use in between: read again.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(e) => return Err(kv_unavailable(BUCKET, &e)),
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
            .nonces
            .create(nonce_key(serial, nonce), Bytes::from_static(b"1"))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(AuthError::Replayed(
                format!("nonce {nonce:?} was already used"),
            )),
            Err(e) => Err(kv_unavailable(NONCE_BUCKET, &e)),
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

/// Create the bucket `spec` describes, or open it and bring its limits up to `spec`.
async fn open_bucket(js: &jetstream::Context, spec: &BucketSpec) -> Result<kv::Store, AuthError> {
    let name = spec.name;
    let config = kv::Config {
        bucket: name.to_owned(),
        description: spec.description.to_owned(),
        history: 1,
        max_age: spec.max_age,
        max_bytes: MAX_BYTES,
        max_value_size: MAX_VALUE_SIZE,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    let create = match js.create_key_value(config).await {
        Ok(kv) => return Ok(kv),
        // It exists with other settings (another version's, or an operator's).
        Err(create) => create,
    };
    let stream_name = format!("KV_{name}");
    let stream = js.get_stream(&stream_name).await.map_err(|get| {
        AuthError::Unavailable(format!(
            "KV bucket {name}: cannot create ({create}) nor open ({get})"
        ))
    })?;
    let info = stream.cached_info();
    if let Some(config) = raised_limits(spec, &info.config, info.state.bytes) {
        js.update_stream(&config).await.map_err(|e| {
            AuthError::Unavailable(format!(
                "KV bucket {name} has max_age {}s and max_bytes {}; it needs max_age {}s and \
                 max_bytes {}, and updating it failed ({e}): set them on stream KV_{name}, \
                 or grant the policy service $JS.API.STREAM.UPDATE.KV_{name}",
                info.config.max_age.as_secs(),
                info.config.max_bytes,
                config.max_age.as_secs(),
                config.max_bytes,
            ))
        })?;
        tracing::warn!(
            bucket = name,
            max_age_s = config.max_age.as_secs(),
            max_bytes = config.max_bytes,
            "raised the limits of an existing KV bucket"
        );
    }
    js.get_key_value(name)
        .await
        .map_err(|e| AuthError::Unavailable(format!("KV bucket {name}: cannot open ({e})")))
}

/// The stream configuration an existing bucket needs, or `None` when it is fine: a
/// `max_age` shorter than `spec`'s is raised (zero means forever, which is long
/// enough); a missing byte limit is set to [`MAX_BYTES`] when the bucket holds less
/// (`stored` bytes), since a lower limit would make JetStream drop its oldest entries.
/// Longer ages and an operator's own byte limit are kept.
fn raised_limits(
    spec: &BucketSpec,
    current: &jetstream::stream::Config,
    stored: u64,
) -> Option<jetstream::stream::Config> {
    let mut config = current.clone();
    let mut changed = false;
    if !config.max_age.is_zero() && config.max_age < spec.max_age {
        config.max_age = spec.max_age;
        changed = true;
    }
    if config.max_bytes <= 0 && stored < MAX_BYTES.unsigned_abs() {
        config.max_bytes = MAX_BYTES;
        changed = true;
    }
    changed.then_some(config)
}

fn kv_unavailable(bucket: &str, e: &dyn std::fmt::Display) -> AuthError {
    AuthError::Unavailable(format!("KV bucket {bucket}: {e}"))
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
        // A nonce is accepted from skew before to skew after its signing time.
        assert!(NONCE_MAX_AGE.as_secs() > 2 * MAX_PROOF_SKEW_SECONDS.unsigned_abs());
        assert!(NONCE_MAX_AGE < MAX_AGE);
    }

    fn stream(max_age: Duration, max_bytes: i64) -> jetstream::stream::Config {
        jetstream::stream::Config {
            name: format!("KV_{NONCE_BUCKET}"),
            max_age,
            max_bytes,
            ..Default::default()
        }
    }

    #[test]
    fn existing_buckets_get_long_enough_ages_and_a_byte_limit() {
        // Right already: nothing to do.
        assert!(raised_limits(&NONCES_SPEC, &stream(NONCE_MAX_AGE, MAX_BYTES), 0).is_none());
        // Longer ages, forever, and an operator's own byte limit are kept.
        assert!(raised_limits(&NONCES_SPEC, &stream(MAX_AGE, 1024), 0).is_none());
        assert!(raised_limits(&NONCES_SPEC, &stream(Duration::ZERO, 1024), 0).is_none());
        // Too short: raised, the rest kept.
        let raised =
            raised_limits(&NONCES_SPEC, &stream(Duration::from_secs(60), 1024), 0).expect("raised");
        assert_eq!(raised.max_age, NONCE_MAX_AGE);
        assert_eq!(raised.max_bytes, 1024);
        assert_eq!(raised.name, format!("KV_{NONCE_BUCKET}"));
        // No byte limit: MAX_BYTES, unless the bucket already holds more.
        let limited = raised_limits(&USES_SPEC, &stream(MAX_AGE, -1), 10).expect("limited");
        assert_eq!(limited.max_bytes, MAX_BYTES);
        assert_eq!(limited.max_age, MAX_AGE);
        assert!(
            raised_limits(&USES_SPEC, &stream(MAX_AGE, -1), MAX_BYTES.unsigned_abs()).is_none()
        );
    }
}
