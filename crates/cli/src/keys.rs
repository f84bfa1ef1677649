//! Keys and certificate signing requests made on this machine, so private keys never
//! travel: `sigil csr`, `sigil renew` (a CSR signed by the key being kept, or by a new
//! one) and the admin credential `sigil up` makes share this one implementation.
//!
//! Classical keys (ECDSA P-256/P-384, Ed25519; RSA only when kept) give a plain CSR
//! (rcgen); ML-DSA keys an RFC 9881 CSR and composite keys a draft -19 composite CSR
//! ([`sigil_pki::build_pq_csr`]); a classical key plus an ML-DSA alternative key a
//! hybrid CSR in Bouncy Castle's attribute form ([`sigil_pki::build_hybrid_csr`]), whose
//! ML-DSA key a hybrid CA puts into the leaf's subjectAltPublicKeyInfo (2.5.29.72).

use sigil_contracts::types::{CaKind, KeyAlgorithm, Sans};
use sigil_pki::composite::COMPOSITE_KEY_PEM_LABEL;
use sigil_pki::mldsa::{MlDsaKeyPair, MlDsaLevel};
use sigil_pki::{CompositeAlg, CompositeKeyPair, PkiError, SecretKey};

/// Label of PKCS#8 private keys (classical and ML-DSA).
const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";

/// A request's PEM, its private key's PEM and the alternative (ML-DSA) key's PEM, if
/// any. The keys are secrets: write them with mode 0600.
pub struct Made {
    pub csr: String,
    pub key: String,
    pub alt_key: Option<String>,
}

impl std::fmt::Debug for Made {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Made")
            .field("csr", &self.csr)
            .field("key", &"[redacted]")
            .field("alt_key", &self.alt_key.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// The kind of key (and alternative key) a CA of `kind` certifies from a CSR, given
/// the algorithm of its issuing intermediate's own key (`ca_key`, when known): P-256
/// for classical CAs, P-256 plus an ML-DSA-65 alternative key for hybrid CAs, the CA's
/// own ML-DSA level or composite algorithm for the post-quantum kinds.
pub fn key_kind_for_ca(
    kind: CaKind,
    ca_key: Option<KeyAlgorithm>,
) -> (KeyAlgorithm, Option<KeyAlgorithm>) {
    match kind {
        CaKind::Classical => (KeyAlgorithm::EcdsaP256, None),
        CaKind::Hybrid => (KeyAlgorithm::EcdsaP256, Some(KeyAlgorithm::MlDsa65)),
        CaKind::Mldsa => (
            ca_key
                .filter(|a| MlDsaLevel::from_key_algorithm(*a).is_some())
                .unwrap_or(KeyAlgorithm::MlDsa65),
            None,
        ),
        CaKind::Composite => (
            ca_key
                .filter(|a| CompositeAlg::from_key_algorithm(*a).is_some())
                .unwrap_or(KeyAlgorithm::MlDsa65EcdsaP256Sha512),
            None,
        ),
    }
}

/// A new key of `alg` (plus an ML-DSA key of `alt` for a hybrid CSR) and a CSR for
/// `sans` signed by it (them).
pub fn generate(
    alg: KeyAlgorithm,
    alt: Option<KeyAlgorithm>,
    sans: &Sans,
) -> Result<Made, PkiError> {
    let cn = common_name(sans);
    if let Some(level) = MlDsaLevel::from_key_algorithm(alg) {
        refuse_alt(alt, alg)?;
        let key = MlDsaKeyPair::generate(level);
        return Ok(Made {
            csr: sigil_pki::build_pq_csr(&key, cn, sans)?,
            key: mldsa_pem(&key)?,
            alt_key: None,
        });
    }
    if let Some(composite) = CompositeAlg::from_key_algorithm(alg) {
        refuse_alt(alt, alg)?;
        let key = CompositeKeyPair::generate(composite)?;
        return Ok(Made {
            csr: sigil_pki::build_pq_csr(&key, cn, sans)?,
            key: sigil_pki::pem::encode(COMPOSITE_KEY_PEM_LABEL, &key.to_der()?),
            alt_key: None,
        });
    }
    let key = sigil_pki::generate_key(alg)?;
    match alt.map(|a| MlDsaLevel::from_key_algorithm(a).ok_or(a)) {
        None => Ok(Made {
            csr: classical_csr(&key, sans)?,
            key: key.to_pkcs8_pem(),
            alt_key: None,
        }),
        Some(Ok(level)) => {
            let alt_key = MlDsaKeyPair::generate(level);
            Ok(Made {
                csr: sigil_pki::build_hybrid_csr(&key, &alt_key, cn, sans)?,
                key: key.to_pkcs8_pem(),
                alt_key: Some(mldsa_pem(&alt_key)?),
            })
        }
        Some(Err(a)) => Err(PkiError::UnsupportedKey(format!(
            "--alt must be an ML-DSA algorithm, not {}",
            a.as_str()
        ))),
    }
}

/// A CSR for `sans` signed by the existing key `key_pem` (and, for a hybrid CSR, the
/// existing ML-DSA key `alt_key_pem`): renewal that keeps the key. The key kinds are
/// the ones Sigil writes: PKCS#8 `PRIVATE KEY` (classical or ML-DSA) and
/// `SIGIL COMPOSITE PRIVATE KEY`.
pub fn csr_for_key(
    key_pem: &str,
    alt_key_pem: Option<&str>,
    sans: &Sans,
) -> Result<String, PkiError> {
    let cn = common_name(sans);
    if key_pem.contains(&format!("-----BEGIN {COMPOSITE_KEY_PEM_LABEL}-----")) {
        refuse_alt_pem(alt_key_pem, "a composite key")?;
        let der = sigil_pki::pem::decode(key_pem, &[COMPOSITE_KEY_PEM_LABEL])
            .map_err(PkiError::Encoding)?;
        let key = CompositeKeyPair::from_der(&der)?;
        return sigil_pki::build_pq_csr(&key, cn, sans);
    }
    let der = sigil_pki::pem::decode(key_pem, &[PRIVATE_KEY_LABEL]).map_err(PkiError::Encoding)?;
    let classical = SecretKey::from_pkcs8_der(der.clone());
    if classical.algorithm().is_err() {
        // Not a key rcgen can load: an ML-DSA key (RFC 9881), or nothing usable.
        refuse_alt_pem(alt_key_pem, "an ML-DSA key")?;
        let key = sigil_pki::pqcert::mldsa_key_from_pkcs8(&der, None)?;
        return sigil_pki::build_pq_csr(&key, cn, sans);
    }
    match alt_key_pem {
        None => classical_csr(&classical, sans),
        Some(alt) => {
            let alt_der =
                sigil_pki::pem::decode(alt, &[PRIVATE_KEY_LABEL]).map_err(PkiError::Encoding)?;
            let alt_key = sigil_pki::pqcert::mldsa_key_from_pkcs8(&alt_der, None)?;
            sigil_pki::build_hybrid_csr(&classical, &alt_key, cn, sans)
        }
    }
}

/// The CN a CSR carries: the first DNS name (the issuer sets the certificate's own).
fn common_name(sans: &Sans) -> Option<&str> {
    sans.dns.first().map(String::as_str)
}

fn mldsa_pem(key: &MlDsaKeyPair) -> Result<String, PkiError> {
    let pkcs8 = sigil_pki::pqcert::mldsa_key_to_pkcs8(key)?;
    Ok(sigil_pki::pem::encode(PRIVATE_KEY_LABEL, &pkcs8))
}

fn refuse_alt(alt: Option<KeyAlgorithm>, alg: KeyAlgorithm) -> Result<(), PkiError> {
    match alt {
        Some(_) => Err(PkiError::UnsupportedKey(format!(
            "--alt adds an ML-DSA key to a classical key; {} is not classical",
            alg.as_str()
        ))),
        None => Ok(()),
    }
}

fn refuse_alt_pem(alt: Option<&str>, what: &str) -> Result<(), PkiError> {
    match alt {
        Some(_) => Err(PkiError::UnsupportedKey(format!(
            "an alternative ML-DSA key goes with a classical key, not with {what}"
        ))),
        None => Ok(()),
    }
}

/// A classical CSR (rcgen) for `key`, naming `sans`, CN = the first DNS name.
fn classical_csr(key: &SecretKey, sans: &Sans) -> Result<String, PkiError> {
    let bad = |e: rcgen::Error| PkiError::Encoding(format!("classical CSR: {e}"));
    let key_pair = rcgen::KeyPair::try_from(key.pkcs8_der()).map_err(bad)?;
    let mut params = rcgen::CertificateParams::default();
    if let Some(cn) = sans.dns.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn.clone());
    }
    for dns in &sans.dns {
        let name = rcgen::string::Ia5String::try_from(dns.as_str()).map_err(bad)?;
        params.subject_alt_names.push(rcgen::SanType::DnsName(name));
    }
    for ip in &sans.ip {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(*ip));
    }
    for uri in &sans.uri {
        let name = rcgen::string::Ia5String::try_from(uri.as_str()).map_err(bad)?;
        params.subject_alt_names.push(rcgen::SanType::URI(name));
    }
    params
        .serialize_request(&key_pair)
        .and_then(|r| r.pem())
        .map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sans() -> Sans {
        Sans {
            dns: vec!["web.example.com".into()],
            ..Sans::default()
        }
    }

    /// A CSR made for an existing key carries that key: the issuer's parser verifies
    /// it and finds the same public key as a CSR made with the key at first.
    #[test]
    fn kept_keys_sign_csrs_for_the_same_public_key() {
        for (alg, alt) in [
            (KeyAlgorithm::EcdsaP256, None),
            (KeyAlgorithm::Ed25519, None),
            (KeyAlgorithm::MlDsa44, None),
            (KeyAlgorithm::MlDsa44Ed25519Sha512, None),
            (KeyAlgorithm::EcdsaP256, Some(KeyAlgorithm::MlDsa44)),
        ] {
            let made = generate(alg, alt, &sans()).unwrap();
            let first = sigil_pki::parse_csr(&made.csr).unwrap();
            let again = csr_for_key(&made.key, made.alt_key.as_deref(), &sans()).unwrap();
            let parsed = sigil_pki::parse_csr(&again).unwrap();
            assert_eq!(parsed.spki_der, first.spki_der, "{alg:?}");
            assert_eq!(parsed.alt_public_key, first.alt_public_key, "{alg:?}");
            assert_eq!(parsed.sans, sans());
            let other = generate(alg, alt, &sans()).unwrap();
            assert_ne!(
                sigil_pki::parse_csr(&other.csr).unwrap().spki_der,
                first.spki_der
            );
        }
    }

    #[test]
    fn alternative_keys_only_go_with_classical_keys() {
        assert!(generate(KeyAlgorithm::MlDsa65, Some(KeyAlgorithm::MlDsa65), &sans()).is_err());
        assert!(
            generate(
                KeyAlgorithm::EcdsaP256,
                Some(KeyAlgorithm::Ed25519),
                &sans()
            )
            .is_err()
        );
        let pq = generate(KeyAlgorithm::MlDsa44, None, &sans()).unwrap();
        assert!(csr_for_key(&pq.key, Some(&pq.key), &sans()).is_err());
        assert!(csr_for_key("not a key", None, &sans()).is_err());
    }

    #[test]
    fn each_ca_kind_gets_a_key_it_certifies() {
        assert_eq!(
            key_kind_for_ca(CaKind::Hybrid, Some(KeyAlgorithm::EcdsaP256)),
            (KeyAlgorithm::EcdsaP256, Some(KeyAlgorithm::MlDsa65))
        );
        assert_eq!(
            key_kind_for_ca(CaKind::Classical, Some(KeyAlgorithm::EcdsaP384)),
            (KeyAlgorithm::EcdsaP256, None)
        );
        assert_eq!(
            key_kind_for_ca(CaKind::Mldsa, Some(KeyAlgorithm::MlDsa87)),
            (KeyAlgorithm::MlDsa87, None)
        );
        assert_eq!(
            key_kind_for_ca(CaKind::Mldsa, None),
            (KeyAlgorithm::MlDsa65, None)
        );
        assert_eq!(
            key_kind_for_ca(
                CaKind::Composite,
                Some(KeyAlgorithm::MlDsa87EcdsaP384Sha512)
            ),
            (KeyAlgorithm::MlDsa87EcdsaP384Sha512, None)
        );
    }
}
