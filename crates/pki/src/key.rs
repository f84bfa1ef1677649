//! Private keys, key generation and public key classification.

use std::fmt;

use rcgen::{KeyPair, PublicKeyData as _};
use sigil_contracts::types::KeyAlgorithm;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer as _;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::PkiError;
use crate::pem;

const RSA_GENERATION_UNSUPPORTED: &str =
    "server-side RSA key generation is not supported; send a CSR";

/// Secret key material: a PKCS#8 DER private key.
///
/// `Debug` prints `[redacted]`, never the bytes. The bytes are not zeroed on drop
/// (the crate forbids `unsafe` and has no zeroize dependency).
#[derive(Clone)]
pub struct SecretKey {
    pkcs8_der: Vec<u8>,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    /// Wraps PKCS#8 DER bytes. They are checked when the key is first used.
    pub fn from_pkcs8_der(pkcs8_der: Vec<u8>) -> Self {
        SecretKey { pkcs8_der }
    }

    /// Reads a PEM `PRIVATE KEY` (PKCS#8) block.
    pub fn from_pkcs8_pem(text: &str) -> Result<Self, PkiError> {
        pem::decode(text, &["PRIVATE KEY"])
            .map(SecretKey::from_pkcs8_der)
            .map_err(PkiError::Encoding)
    }

    /// The PKCS#8 DER bytes.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8_der
    }

    /// The key as a PEM `PRIVATE KEY` block.
    pub fn to_pkcs8_pem(&self) -> String {
        pem::encode("PRIVATE KEY", &self.pkcs8_der)
    }

    /// Which of the supported algorithms this key is for.
    pub fn algorithm(&self) -> Result<KeyAlgorithm, PkiError> {
        let spki = self.key_pair()?.subject_public_key_info();
        classify_spki_der(&spki)
    }

    /// Loads the key for signing.
    pub(crate) fn key_pair(&self) -> Result<KeyPair, PkiError> {
        KeyPair::try_from(self.pkcs8_der.as_slice())
            .map_err(|e| PkiError::UnsupportedKey(format!("cannot load PKCS#8 private key: {e}")))
    }
}

/// Generates a fresh private key.
///
/// RSA generation is refused with [`PkiError::UnsupportedKey`]: ring (rcgen's backend
/// here) cannot generate RSA keys. RSA subjects send a CSR instead.
pub fn generate_key(alg: KeyAlgorithm) -> Result<SecretKey, PkiError> {
    let sign_alg = match alg {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
            return Err(PkiError::UnsupportedKey(
                RSA_GENERATION_UNSUPPORTED.to_owned(),
            ));
        }
        KeyAlgorithm::MlDsa44 | KeyAlgorithm::MlDsa65 | KeyAlgorithm::MlDsa87 => {
            return Err(PkiError::UnsupportedKey(format!(
                "{} is not a classical (PKCS#8 / rcgen) key; generate it with MlDsaKeyPair",
                alg.as_str()
            )));
        }
        KeyAlgorithm::MlDsa44Ed25519Sha512
        | KeyAlgorithm::MlDsa44EcdsaP256Sha256
        | KeyAlgorithm::MlDsa65EcdsaP256Sha512
        | KeyAlgorithm::MlDsa65EcdsaP384Sha512
        | KeyAlgorithm::MlDsa65Ed25519Sha512
        | KeyAlgorithm::MlDsa87EcdsaP384Sha512 => {
            return Err(PkiError::UnsupportedKey(format!(
                "{} is not a classical (PKCS#8 / rcgen) key; generate it with CompositeKeyPair",
                alg.as_str()
            )));
        }
    };
    let key_pair =
        KeyPair::generate_for(sign_alg).map_err(|e| PkiError::crypto("key generation", e))?;
    Ok(SecretKey::from_pkcs8_der(key_pair.serialize_der()))
}

/// Classifies a DER SubjectPublicKeyInfo.
pub(crate) fn classify_spki_der(spki_der: &[u8]) -> Result<KeyAlgorithm, PkiError> {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| PkiError::Encoding(format!("bad SubjectPublicKeyInfo: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::Encoding(
            "trailing bytes after SubjectPublicKeyInfo".to_owned(),
        ));
    }
    classify_spki(&spki)
}

/// Maps a public key onto [`KeyAlgorithm`]: P-256, P-384, Ed25519, or RSA with a
/// 2048/3072/4096-bit modulus. RSA under 2048 bits is [`PkiError::WeakKey`]; anything
/// else is [`PkiError::UnsupportedKey`].
pub(crate) fn classify_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyAlgorithm, PkiError> {
    match KeyKind::of(spki) {
        KeyKind::Known(alg) => Ok(alg),
        KeyKind::Rsa(bits) if bits < 2048 => Err(PkiError::WeakKey(format!(
            "RSA key of {bits} bits; at least 2048 bits are required"
        ))),
        KeyKind::Rsa(bits) => Err(PkiError::UnsupportedKey(format!(
            "RSA key of {bits} bits; only 2048, 3072 and 4096 bits are supported"
        ))),
        KeyKind::EcCurve(curve) => Err(PkiError::UnsupportedKey(format!(
            "elliptic curve {curve}; only P-256 and P-384 are supported"
        ))),
        KeyKind::Other(oid) => Err(PkiError::UnsupportedKey(format!(
            "public key algorithm {oid}"
        ))),
    }
}

/// A readable name for any public key: [`KeyAlgorithm::as_str`] when supported,
/// otherwise `rsa-<bits>`, `ec-<curve oid>` or the algorithm OID.
pub(crate) fn describe_spki(spki: &SubjectPublicKeyInfo<'_>) -> String {
    match KeyKind::of(spki) {
        KeyKind::Known(alg) => alg.as_str().to_owned(),
        KeyKind::Rsa(bits) => format!("rsa-{bits}"),
        KeyKind::EcCurve(curve) => format!("ec-{curve}"),
        KeyKind::Other(oid) => pq_algorithm_name(&oid).map_or(oid, str::to_owned),
    }
}

/// `ML-DSA-65`, `MLDSA65-ECDSA-P256-SHA512`, … for a post-quantum key or signature
/// algorithm OID (they share OIDs), `None` for anything else.
pub(crate) fn pq_algorithm_name(oid: &str) -> Option<&'static str> {
    crate::mldsa::MlDsaLevel::from_oid(oid)
        .map(crate::mldsa::MlDsaLevel::name)
        .or_else(|| crate::composite::CompositeAlg::from_oid(oid).map(|a| a.name()))
}

enum KeyKind {
    Known(KeyAlgorithm),
    /// RSA of an unsupported size (bits).
    Rsa(usize),
    /// EC on an unsupported or unnamed curve.
    EcCurve(String),
    /// Some other public key algorithm (dotted OID).
    Other(String),
}

impl KeyKind {
    fn of(spki: &SubjectPublicKeyInfo<'_>) -> KeyKind {
        let oid = &spki.algorithm.algorithm;
        if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            match curve {
                Some(c) if c == OID_EC_P256 => KeyKind::Known(KeyAlgorithm::EcdsaP256),
                Some(c) if c == OID_NIST_EC_P384 => KeyKind::Known(KeyAlgorithm::EcdsaP384),
                Some(c) => KeyKind::EcCurve(c.to_id_string()),
                None => KeyKind::EcCurve("unnamed".to_owned()),
            }
        } else if *oid == OID_SIG_ED25519 {
            KeyKind::Known(KeyAlgorithm::Ed25519)
        } else if *oid == OID_PKCS1_RSAENCRYPTION {
            match rsa_modulus_bits(spki) {
                2048 => KeyKind::Known(KeyAlgorithm::Rsa2048),
                3072 => KeyKind::Known(KeyAlgorithm::Rsa3072),
                4096 => KeyKind::Known(KeyAlgorithm::Rsa4096),
                bits => KeyKind::Rsa(bits),
            }
        } else {
            KeyKind::Other(oid.to_id_string())
        }
    }
}

/// Exact bit length of an RSA modulus (0 when the key does not parse).
fn rsa_modulus_bits(spki: &SubjectPublicKeyInfo<'_>) -> usize {
    let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
        return 0;
    };
    let modulus = rsa.modulus;
    let start = modulus
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(modulus.len());
    let Some(first) = modulus.get(start) else {
        return 0;
    };
    (modulus.len() - start - 1) * 8 + (8 - first.leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_supported_keys_and_refuses_rsa() {
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
        ] {
            let key = generate_key(alg).unwrap();
            assert_eq!(key.algorithm().unwrap(), alg);
            let again = SecretKey::from_pkcs8_pem(&key.to_pkcs8_pem()).unwrap();
            assert_eq!(again.pkcs8_der(), key.pkcs8_der());
        }
        for alg in [
            KeyAlgorithm::Rsa2048,
            KeyAlgorithm::Rsa3072,
            KeyAlgorithm::Rsa4096,
        ] {
            assert!(matches!(
                generate_key(alg),
                Err(PkiError::UnsupportedKey(_))
            ));
        }
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let debug = format!("{key:?}");
        assert_eq!(debug, "SecretKey([redacted])");
        let hex = hex::encode(key.pkcs8_der());
        assert!(!debug.contains(&hex[hex.len() - 16..]));
    }

    #[test]
    fn garbage_key_is_refused() {
        let key = SecretKey::from_pkcs8_der(vec![1, 2, 3]);
        assert!(matches!(key.algorithm(), Err(PkiError::UnsupportedKey(_))));
    }
}
