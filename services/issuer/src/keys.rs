//! CA private keys behind one [`KeyManager`] trait.
//!
//! The issuer never handles CA key bytes outside this module and [`crate::ca`]: a CA's
//! secret material ([`CaKeyMaterial`], one variant per [`CaKind`]) is handed to the key
//! manager when the CA is created, and asked back when it is loaded. A backend returns
//! a *key reference* that the issuer keeps in the CA's `issuer_ca` row
//! (`sealed_key` column) and hands back on load:
//!
//! - [`SealedKeys`] (the production backend, "file backend"): the reference is the
//!   key material itself, sealed with AES-256-GCM by the KEK (`SIGIL_KEK` or the file
//!   `<data_dir>/kek`), the CA id as associated data, so a sealed key cannot be moved to
//!   another row. The sealed blob lives in the issuer's database row; the KEK lives
//!   only in the file or the environment.
//! - [`MemoryKeys`]: keeps keys in process memory; the reference is only the CA id.
//!   For tests, and as the shape a PKCS#11 backend will have (the row keeps a label,
//!   the token keeps the key).
//!
//! Both pass the one shared suite in this module's tests, as every future backend
//! must. `Debug` of everything here prints no key bytes.
//!
//! Encodings sealed by [`SealedKeys`] (selected by the row's `kind`, never guessed):
//! classical: the PKCS#8 DER key (the format rows had before kinds existed);
//! hybrid: 4-byte big-endian length of the classical PKCS#8 DER, that DER, then the
//! ML-DSA key as RFC 9881 PKCS#8 (expanded key + public key); composite: Sigil's
//! composite key DER ([`CompositeKeyPair::to_der`]); mldsa: RFC 9881 PKCS#8.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use sigil_contracts::types::CaKind;
use sigil_pki::mldsa::MlDsaKeyPair;
use sigil_pki::pqcert::{mldsa_key_from_pkcs8, mldsa_key_to_pkcs8};
use sigil_pki::{CompositeKeyPair, Kek, PkiError, SecretKey};

/// The secret half of a CA, by kind.
pub enum CaKeyMaterial {
    /// A PKCS#8 ECDSA (or Ed25519) key.
    Classical(SecretKey),
    /// The classical key that signs certificates and the ML-DSA key that alt-signs.
    Hybrid {
        classical: SecretKey,
        alt: MlDsaKeyPair,
    },
    /// One composite ML-DSA + classical key pair (boxed: much larger than the rest).
    Composite(Box<CompositeKeyPair>),
    /// One ML-DSA key pair.
    Mldsa(MlDsaKeyPair),
}

impl fmt::Debug for CaKeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaKeyMaterial::{}([redacted])", self.kind())
    }
}

impl CaKeyMaterial {
    pub fn kind(&self) -> CaKind {
        match self {
            CaKeyMaterial::Classical(_) => CaKind::Classical,
            CaKeyMaterial::Hybrid { .. } => CaKind::Hybrid,
            CaKeyMaterial::Composite(_) => CaKind::Composite,
            CaKeyMaterial::Mldsa(_) => CaKind::Mldsa,
        }
    }

    /// The secret encoding described in the module docs. Handle as secret.
    fn encode(&self) -> Result<Vec<u8>, PkiError> {
        match self {
            CaKeyMaterial::Classical(key) => Ok(key.pkcs8_der().to_vec()),
            CaKeyMaterial::Hybrid { classical, alt } => {
                let classical = classical.pkcs8_der();
                let len = u32::try_from(classical.len())
                    .map_err(|_| PkiError::Encoding("classical key too long".to_owned()))?;
                let mut out = len.to_be_bytes().to_vec();
                out.extend_from_slice(classical);
                out.extend_from_slice(&mldsa_key_to_pkcs8(alt)?);
                Ok(out)
            }
            CaKeyMaterial::Composite(key) => key.to_der(),
            CaKeyMaterial::Mldsa(key) => mldsa_key_to_pkcs8(key),
        }
    }

    /// Reads what [`CaKeyMaterial::encode`] wrote for a CA of `kind`.
    fn decode(kind: CaKind, bytes: &[u8]) -> Result<CaKeyMaterial, PkiError> {
        Ok(match kind {
            CaKind::Classical => {
                CaKeyMaterial::Classical(SecretKey::from_pkcs8_der(bytes.to_vec()))
            }
            CaKind::Hybrid => {
                let bad = || PkiError::Encoding("hybrid CA key is truncated".to_owned());
                let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(bad)?;
                let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| bad())?;
                if rest.len() < len {
                    return Err(bad());
                }
                let (classical, alt) = rest.split_at(len);
                CaKeyMaterial::Hybrid {
                    classical: SecretKey::from_pkcs8_der(classical.to_vec()),
                    alt: mldsa_key_from_pkcs8(alt, None)?,
                }
            }
            CaKind::Composite => {
                CaKeyMaterial::Composite(Box::new(CompositeKeyPair::from_der(bytes)?))
            }
            CaKind::Mldsa => CaKeyMaterial::Mldsa(mldsa_key_from_pkcs8(bytes, None)?),
        })
    }

    /// A copy (composite key pairs are not `Clone`: they go through their encoding).
    pub fn try_clone(&self) -> Result<CaKeyMaterial, PkiError> {
        Ok(match self {
            CaKeyMaterial::Classical(key) => CaKeyMaterial::Classical(key.clone()),
            CaKeyMaterial::Hybrid { classical, alt } => CaKeyMaterial::Hybrid {
                classical: classical.clone(),
                alt: alt.clone(),
            },
            CaKeyMaterial::Composite(key) => {
                CaKeyMaterial::Composite(Box::new(CompositeKeyPair::from_der(&key.to_der()?)?))
            }
            CaKeyMaterial::Mldsa(key) => CaKeyMaterial::Mldsa(key.clone()),
        })
    }
}

/// Why a key manager could not store or load a key. Never carries key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The stored reference does not open for this CA id: wrong KEK, or a reference
    /// copied from another row.
    #[error(
        "cannot unseal the private key: wrong KEK (SIGIL_KEK or the kek file) for this database?"
    )]
    Unseal,
    /// The backend holds no key for this CA.
    #[error("no key stored for this CA")]
    NotFound,
    /// The key opened but is not a key of the expected kind.
    #[error("stored key is not a valid {kind} CA key: {reason}")]
    Malformed { kind: CaKind, reason: String },
    /// Sealing or the backend itself failed.
    #[error("key backend: {0}")]
    Backend(String),
}

/// Custody of CA private keys. `store` and `load` are the only way CA keys enter or
/// leave the issuer's storage. See the module docs for what a key reference is.
pub trait KeyManager: Send + Sync + fmt::Debug {
    /// Takes custody of `material` for the CA `id`; returns the key reference to keep
    /// in the CA's row. The reference must not reveal the key.
    fn store(&self, id: &str, material: &CaKeyMaterial) -> Result<Vec<u8>, KeyError>;

    /// The key of the CA `id` (of `kind`), from the reference [`KeyManager::store`]
    /// returned for that id.
    fn load(&self, id: &str, kind: CaKind, reference: &[u8]) -> Result<CaKeyMaterial, KeyError>;
}

/// Keys sealed by the KEK; the sealed blob is the reference (kept in the DB row).
#[derive(Debug, Clone)]
pub struct SealedKeys {
    kek: Kek,
}

impl SealedKeys {
    pub fn new(kek: Kek) -> SealedKeys {
        SealedKeys { kek }
    }
}

impl KeyManager for SealedKeys {
    fn store(&self, id: &str, material: &CaKeyMaterial) -> Result<Vec<u8>, KeyError> {
        let plain = material
            .encode()
            .map_err(|e| KeyError::Backend(format!("encoding the key: {e}")))?;
        self.kek
            .seal(&plain, id.as_bytes())
            .map_err(|e| KeyError::Backend(format!("sealing the key: {e}")))
    }

    fn load(&self, id: &str, kind: CaKind, reference: &[u8]) -> Result<CaKeyMaterial, KeyError> {
        let plain = self
            .kek
            .open(reference, id.as_bytes())
            .map_err(|_| KeyError::Unseal)?;
        CaKeyMaterial::decode(kind, &plain).map_err(|e| KeyError::Malformed {
            kind,
            reason: e.to_string(),
        })
    }
}

/// Keys held in process memory (lost on restart); the reference is the CA id.
#[derive(Default)]
pub struct MemoryKeys {
    keys: Mutex<HashMap<String, (CaKind, Vec<u8>)>>,
}

impl fmt::Debug for MemoryKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryKeys").finish_non_exhaustive()
    }
}

impl KeyManager for MemoryKeys {
    fn store(&self, id: &str, material: &CaKeyMaterial) -> Result<Vec<u8>, KeyError> {
        let plain = material
            .encode()
            .map_err(|e| KeyError::Backend(format!("encoding the key: {e}")))?;
        self.keys
            .lock()
            .map_err(|_| KeyError::Backend("key store lock poisoned".to_owned()))?
            .insert(id.to_owned(), (material.kind(), plain));
        Ok(id.as_bytes().to_vec())
    }

    fn load(&self, id: &str, kind: CaKind, reference: &[u8]) -> Result<CaKeyMaterial, KeyError> {
        if reference != id.as_bytes() {
            return Err(KeyError::Unseal);
        }
        let keys = self
            .keys
            .lock()
            .map_err(|_| KeyError::Backend("key store lock poisoned".to_owned()))?;
        let (stored_kind, plain) = keys.get(id).ok_or(KeyError::NotFound)?;
        if *stored_kind != kind {
            return Err(KeyError::Malformed {
                kind,
                reason: format!("a {stored_kind} key is stored"),
            });
        }
        CaKeyMaterial::decode(kind, plain).map_err(|e| KeyError::Malformed {
            kind,
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
pub(crate) mod suite {
    //! The suite every [`KeyManager`] backend must pass.
    use sigil_contracts::types::KeyAlgorithm;
    use sigil_pki::mldsa::MlDsaLevel;
    use sigil_pki::{CompositeAlg, generate_key};

    use super::*;

    fn samples() -> Vec<CaKeyMaterial> {
        vec![
            CaKeyMaterial::Classical(generate_key(KeyAlgorithm::EcdsaP256).unwrap()),
            CaKeyMaterial::Hybrid {
                classical: generate_key(KeyAlgorithm::EcdsaP384).unwrap(),
                alt: MlDsaKeyPair::generate(MlDsaLevel::L65),
            },
            CaKeyMaterial::Composite(Box::new(
                CompositeKeyPair::generate(CompositeAlg::MlDsa65EcdsaP256Sha512).unwrap(),
            )),
            CaKeyMaterial::Mldsa(MlDsaKeyPair::generate(MlDsaLevel::L87)),
        ]
    }

    /// Run every check against `km`.
    pub(crate) fn key_manager_suite(km: &dyn KeyManager) {
        for (n, material) in samples().iter().enumerate() {
            let kind = material.kind();
            let id = format!("ca-{n}");
            let secret = material.encode().unwrap();
            let reference = km.store(&id, material).unwrap();

            // Round trip, for every kind.
            let loaded = km.load(&id, kind, &reference).unwrap();
            assert_eq!(loaded.kind(), kind);
            assert_eq!(loaded.encode().unwrap(), secret, "{kind}: round trip");
            assert_eq!(
                material.try_clone().unwrap().encode().unwrap(),
                secret,
                "{kind}: clone"
            );

            // The reference kept in the database never holds the key in the clear.
            assert!(
                !secret
                    .chunks_exact(32)
                    .any(|c| reference.windows(32).any(|w| w == c)),
                "{kind}: reference reveals key bytes"
            );

            // A reference is bound to its CA id and its kind.
            assert!(
                km.load("another-ca", kind, &reference).is_err(),
                "{kind}: id"
            );
            let other_kind = if kind == CaKind::Mldsa {
                CaKind::Composite
            } else {
                CaKind::Mldsa
            };
            assert!(
                km.load(&id, other_kind, &reference).is_err(),
                "{kind}: loaded as {other_kind}"
            );

            // Debug never prints key bytes.
            for shown in [format!("{material:?}"), format!("{km:?}")] {
                assert!(!shown.contains(&hex::encode(&secret[..16])), "{shown}");
                assert!(shown.len() < 200, "{kind}: Debug is suspiciously long");
            }
        }
    }

    #[test]
    fn sealed_keys_pass_the_suite() {
        key_manager_suite(&SealedKeys::new(Kek::generate()));
    }

    #[test]
    fn memory_keys_pass_the_suite() {
        key_manager_suite(&MemoryKeys::default());
    }

    #[test]
    fn sealed_keys_need_the_same_kek() {
        let material = &samples()[0];
        let reference = SealedKeys::new(Kek::generate())
            .store("ca", material)
            .unwrap();
        assert!(matches!(
            SealedKeys::new(Kek::generate()).load("ca", CaKind::Classical, &reference),
            Err(KeyError::Unseal)
        ));
    }
}
