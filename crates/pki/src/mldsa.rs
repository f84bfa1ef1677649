//! ML-DSA (FIPS 204) keys, signatures and identifiers, on `pqcrypto-mldsa`.
//!
//! Signatures are FIPS 204 "pure" ML-DSA with an optional context string (empty for
//! RFC 9881 certificates; the composite label for composite signatures). pqcrypto's key
//! generation does not expose the 32-byte seed, so keys are kept in the expanded form
//! (FIPS 204 `sk`) together with the public key.

use pqcrypto_mldsa::{mldsa44, mldsa65, mldsa87};
use pqcrypto_traits::sign::{DetachedSignature as _, PublicKey as _, SecretKey as _};

use sigil_contracts::types::KeyAlgorithm;

use crate::PkiError;

/// The three ML-DSA parameter sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MlDsaLevel {
    /// ML-DSA-44 (NIST category 2).
    L44,
    /// ML-DSA-65 (NIST category 3).
    L65,
    /// ML-DSA-87 (NIST category 5).
    L87,
}

impl MlDsaLevel {
    pub const ALL: [MlDsaLevel; 3] = [MlDsaLevel::L44, MlDsaLevel::L65, MlDsaLevel::L87];

    /// RFC 9881 / NIST algorithm OID (id-ml-dsa-44/65/87), dotted.
    pub fn oid(self) -> &'static str {
        match self {
            MlDsaLevel::L44 => "2.16.840.1.101.3.4.3.17",
            MlDsaLevel::L65 => "2.16.840.1.101.3.4.3.18",
            MlDsaLevel::L87 => "2.16.840.1.101.3.4.3.19",
        }
    }

    pub fn from_oid(oid: &str) -> Option<MlDsaLevel> {
        MlDsaLevel::ALL.into_iter().find(|l| l.oid() == oid)
    }

    /// The contracts' name for a subject key of this level.
    pub fn key_algorithm(self) -> KeyAlgorithm {
        match self {
            MlDsaLevel::L44 => KeyAlgorithm::MlDsa44,
            MlDsaLevel::L65 => KeyAlgorithm::MlDsa65,
            MlDsaLevel::L87 => KeyAlgorithm::MlDsa87,
        }
    }

    /// The level of a pure ML-DSA [`KeyAlgorithm`], `None` for any other algorithm.
    pub fn from_key_algorithm(alg: KeyAlgorithm) -> Option<MlDsaLevel> {
        MlDsaLevel::ALL
            .into_iter()
            .find(|l| l.key_algorithm() == alg)
    }

    /// Name as in FIPS 204, e.g. `ML-DSA-65`.
    pub fn name(self) -> &'static str {
        match self {
            MlDsaLevel::L44 => "ML-DSA-44",
            MlDsaLevel::L65 => "ML-DSA-65",
            MlDsaLevel::L87 => "ML-DSA-87",
        }
    }

    pub fn public_key_len(self) -> usize {
        match self {
            MlDsaLevel::L44 => mldsa44::public_key_bytes(),
            MlDsaLevel::L65 => mldsa65::public_key_bytes(),
            MlDsaLevel::L87 => mldsa87::public_key_bytes(),
        }
    }

    pub fn secret_key_len(self) -> usize {
        match self {
            MlDsaLevel::L44 => mldsa44::secret_key_bytes(),
            MlDsaLevel::L65 => mldsa65::secret_key_bytes(),
            MlDsaLevel::L87 => mldsa87::secret_key_bytes(),
        }
    }

    pub fn signature_len(self) -> usize {
        match self {
            MlDsaLevel::L44 => mldsa44::signature_bytes(),
            MlDsaLevel::L65 => mldsa65::signature_bytes(),
            MlDsaLevel::L87 => mldsa87::signature_bytes(),
        }
    }
}

/// Longest context string FIPS 204 allows.
pub const MAX_CONTEXT_LEN: usize = 255;

/// An ML-DSA key pair (expanded secret key + public key). `Debug` never shows the
/// secret key.
#[derive(Clone)]
pub struct MlDsaKeyPair {
    level: MlDsaLevel,
    public: Vec<u8>,
    secret: Vec<u8>,
}

impl std::fmt::Debug for MlDsaKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlDsaKeyPair")
            .field("level", &self.level)
            .field("public", &format_args!("{} bytes", self.public.len()))
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl MlDsaKeyPair {
    /// Generate a fresh key pair.
    pub fn generate(level: MlDsaLevel) -> MlDsaKeyPair {
        let (public, secret) = match level {
            MlDsaLevel::L44 => {
                let (p, s) = mldsa44::keypair();
                (p.as_bytes().to_vec(), s.as_bytes().to_vec())
            }
            MlDsaLevel::L65 => {
                let (p, s) = mldsa65::keypair();
                (p.as_bytes().to_vec(), s.as_bytes().to_vec())
            }
            MlDsaLevel::L87 => {
                let (p, s) = mldsa87::keypair();
                (p.as_bytes().to_vec(), s.as_bytes().to_vec())
            }
        };
        MlDsaKeyPair {
            level,
            public,
            secret,
        }
    }

    /// Rebuild a key pair from its public key and expanded secret key. The pair is
    /// checked by signing and verifying a probe message.
    pub fn from_parts(level: MlDsaLevel, public: &[u8], secret: &[u8]) -> Result<Self, PkiError> {
        if public.len() != level.public_key_len() || secret.len() != level.secret_key_len() {
            return Err(PkiError::Encoding(format!(
                "{}: expected a {}-byte public key and a {}-byte expanded secret key, got {} and {}",
                level.name(),
                level.public_key_len(),
                level.secret_key_len(),
                public.len(),
                secret.len()
            )));
        }
        let pair = MlDsaKeyPair {
            level,
            public: public.to_vec(),
            secret: secret.to_vec(),
        };
        let probe = b"sigil key-pair consistency probe";
        let sig = pair.sign(probe, &[])?;
        verify(level, &pair.public, probe, &[], &sig).map_err(|_| {
            PkiError::KeyMismatch(format!(
                "{} secret key does not match the public key",
                level.name()
            ))
        })?;
        Ok(pair)
    }

    pub fn level(&self) -> MlDsaLevel {
        self.level
    }

    /// The raw public key (FIPS 204 `pk`), as carried in an RFC 9881 SPKI.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The expanded secret key (FIPS 204 `sk`). Handle as secret.
    pub fn secret_key(&self) -> &[u8] {
        &self.secret
    }

    /// Sign `msg` with context `ctx` (≤ 255 bytes; empty for RFC 9881 certificates).
    pub fn sign(&self, msg: &[u8], ctx: &[u8]) -> Result<Vec<u8>, PkiError> {
        if ctx.len() > MAX_CONTEXT_LEN {
            return Err(PkiError::Crypto(format!(
                "ML-DSA context is {} bytes; at most 255",
                ctx.len()
            )));
        }
        let bad_key =
            |_| PkiError::Crypto(format!("{} secret key is malformed", self.level.name()));
        Ok(match self.level {
            MlDsaLevel::L44 => {
                let sk = mldsa44::SecretKey::from_bytes(&self.secret).map_err(bad_key)?;
                mldsa44::detached_sign_ctx(msg, ctx, &sk)
                    .as_bytes()
                    .to_vec()
            }
            MlDsaLevel::L65 => {
                let sk = mldsa65::SecretKey::from_bytes(&self.secret).map_err(bad_key)?;
                mldsa65::detached_sign_ctx(msg, ctx, &sk)
                    .as_bytes()
                    .to_vec()
            }
            MlDsaLevel::L87 => {
                let sk = mldsa87::SecretKey::from_bytes(&self.secret).map_err(bad_key)?;
                mldsa87::detached_sign_ctx(msg, ctx, &sk)
                    .as_bytes()
                    .to_vec()
            }
        })
    }
}

/// Verify an ML-DSA signature over `msg` with context `ctx`.
pub fn verify(
    level: MlDsaLevel,
    public: &[u8],
    msg: &[u8],
    ctx: &[u8],
    sig: &[u8],
) -> Result<(), PkiError> {
    let bad = || PkiError::Crypto(format!("{} signature does not verify", level.name()));
    if ctx.len() > MAX_CONTEXT_LEN
        || public.len() != level.public_key_len()
        || sig.len() != level.signature_len()
    {
        return Err(bad());
    }
    let ok = match level {
        MlDsaLevel::L44 => match (
            mldsa44::PublicKey::from_bytes(public),
            mldsa44::DetachedSignature::from_bytes(sig),
        ) {
            (Ok(pk), Ok(s)) => mldsa44::verify_detached_signature_ctx(&s, msg, ctx, &pk).is_ok(),
            _ => false,
        },
        MlDsaLevel::L65 => match (
            mldsa65::PublicKey::from_bytes(public),
            mldsa65::DetachedSignature::from_bytes(sig),
        ) {
            (Ok(pk), Ok(s)) => mldsa65::verify_detached_signature_ctx(&s, msg, ctx, &pk).is_ok(),
            _ => false,
        },
        MlDsaLevel::L87 => match (
            mldsa87::PublicKey::from_bytes(public),
            mldsa87::DetachedSignature::from_bytes(sig),
        ) {
            (Ok(pk), Ok(s)) => mldsa87::verify_detached_signature_ctx(&s, msg, ctx, &pk).is_ok(),
            _ => false,
        },
    };
    if ok { Ok(()) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_round_trip_with_and_without_context() {
        for level in MlDsaLevel::ALL {
            let kp = MlDsaKeyPair::generate(level);
            assert_eq!(kp.public_key().len(), level.public_key_len());
            let sig = kp.sign(b"message", b"").unwrap();
            assert_eq!(sig.len(), level.signature_len());
            verify(level, kp.public_key(), b"message", b"", &sig).unwrap();
            assert!(verify(level, kp.public_key(), b"messagE", b"", &sig).is_err());
            let sig_ctx = kp.sign(b"message", b"COMPSIG-label").unwrap();
            verify(
                level,
                kp.public_key(),
                b"message",
                b"COMPSIG-label",
                &sig_ctx,
            )
            .unwrap();
            assert!(
                verify(level, kp.public_key(), b"message", b"", &sig_ctx).is_err(),
                "context binds"
            );
            let mut bad = sig.clone();
            bad[10] ^= 1;
            assert!(verify(level, kp.public_key(), b"message", b"", &bad).is_err());
            assert!(kp.sign(b"m", &[0u8; 256]).is_err());
        }
    }

    #[test]
    fn key_pairs_rebuild_and_mismatches_are_caught() {
        let a = MlDsaKeyPair::generate(MlDsaLevel::L65);
        let b = MlDsaKeyPair::generate(MlDsaLevel::L65);
        let again =
            MlDsaKeyPair::from_parts(MlDsaLevel::L65, a.public_key(), a.secret_key()).unwrap();
        assert_eq!(again.public_key(), a.public_key());
        assert!(matches!(
            MlDsaKeyPair::from_parts(MlDsaLevel::L65, b.public_key(), a.secret_key()),
            Err(PkiError::KeyMismatch(_))
        ));
        assert!(MlDsaKeyPair::from_parts(MlDsaLevel::L44, a.public_key(), a.secret_key()).is_err());
        let dbg = format!("{a:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains(&format!("{:?}", &a.secret_key()[..4])));
    }

    #[test]
    fn oids_are_rfc9881() {
        assert_eq!(
            MlDsaLevel::from_oid("2.16.840.1.101.3.4.3.18"),
            Some(MlDsaLevel::L65)
        );
        assert_eq!(MlDsaLevel::L87.oid(), "2.16.840.1.101.3.4.3.19");
        assert_eq!(MlDsaLevel::from_oid("1.2.3"), None);
    }
}
