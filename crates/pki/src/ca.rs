//! Root and intermediate CAs.

use std::fmt;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData as _, SerialNumber, SigningKey,
};
use sigil_contracts::types::KeyAlgorithm;
use x509_parser::certificate::X509Certificate;

use crate::error::PkiError;
use crate::facts::{from_asn1_time, parse_certificate, random_serial, validity};
use crate::key::{SecretKey, generate_key};
use crate::pem;

/// Longest common name X.509 allows (ub-common-name, RFC 5280).
pub(crate) const MAX_COMMON_NAME: usize = 64;

/// A CA certificate with its private key.
///
/// The issuer loads and stores these; this crate never touches disk. Build one with
/// [`create_root`], [`create_intermediate`] or [`CaMaterial::from_parts`], which check
/// that the certificate is a CA and that the key belongs to it, and keep the loaded
/// key for signing. The fields are public for reading; signing refuses material whose
/// certificate or key was edited after it was built ([`PkiError::KeyMismatch`]), and
/// every issued certificate is verified against `cert_der`, so editing them cannot
/// produce a mis-signed certificate.
/// `Debug` never prints key bytes.
#[derive(Clone)]
pub struct CaMaterial {
    /// The certificate as PEM (one `CERTIFICATE` block, re-encoded from `cert_der`).
    pub cert_pem: String,
    /// The certificate as DER.
    pub cert_der: Vec<u8>,
    /// The CA's private key.
    pub key: SecretKey,
    subject: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    /// The checked signing key, loaded on first use (shared by clones).
    signing: Arc<OnceLock<LoadedKey>>,
}

/// A CA's signing key as loaded and checked against the certificate, with the bytes
/// it was loaded from.
struct LoadedKey {
    cert_der: Vec<u8>,
    pkcs8_der: Vec<u8>,
    key_pair: KeyPair,
}

impl fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        CaCertInfo::debug_fields(
            f,
            "CaMaterial",
            &self.subject,
            &self.not_before,
            &self.not_after,
            &self.key,
        )
    }
}

/// What every CA-material type keeps from its certificate besides the DER: the PEM
/// re-encoding, the subject and the validity.
pub(crate) struct CaCertInfo {
    pub(crate) cert_pem: String,
    pub(crate) subject: String,
    pub(crate) not_before: DateTime<Utc>,
    pub(crate) not_after: DateTime<Utc>,
}

impl CaCertInfo {
    /// Parses `cert_der`, runs `check` on it (CA and key checks), then reads the
    /// subject and validity and re-encodes the certificate as PEM.
    pub(crate) fn read(
        cert_der: &[u8],
        check: impl FnOnce(&X509Certificate<'_>) -> Result<(), PkiError>,
    ) -> Result<CaCertInfo, PkiError> {
        let cert = parse_certificate(cert_der)?;
        check(&cert)?;
        let subject = cert.subject().to_string();
        let not_before = from_asn1_time(&cert.validity().not_before)?;
        let not_after = from_asn1_time(&cert.validity().not_after)?;
        drop(cert);
        Ok(CaCertInfo {
            cert_pem: pem::encode("CERTIFICATE", cert_der),
            subject,
            not_before,
            not_after,
        })
    }

    /// Decodes one PEM `CERTIFICATE` to DER.
    pub(crate) fn decode_pem(cert_pem: &str) -> Result<Vec<u8>, PkiError> {
        pem::decode(cert_pem, &["CERTIFICATE"]).map_err(PkiError::Encoding)
    }

    /// The `Debug` form shared by the CA-material types: subject, validity and the
    /// key's own (redacting) `Debug`, never key bytes.
    pub(crate) fn debug_fields(
        f: &mut fmt::Formatter<'_>,
        name: &str,
        subject: &str,
        not_before: &DateTime<Utc>,
        not_after: &DateTime<Utc>,
        key: &dyn fmt::Debug,
    ) -> fmt::Result {
        f.debug_struct(name)
            .field("subject", &subject)
            .field("not_before", not_before)
            .field("not_after", not_after)
            .field("key", key)
            .finish_non_exhaustive()
    }
}

impl CaMaterial {
    /// Pairs a PEM CA certificate with its key. Fails when the PEM holds no single
    /// certificate ([`PkiError::Encoding`]), the certificate is not a CA allowed to
    /// sign certificates ([`PkiError::Lint`]) or the key is not the certificate's
    /// ([`PkiError::KeyMismatch`]).
    pub fn from_parts(cert_pem: &str, key: SecretKey) -> Result<Self, PkiError> {
        CaMaterial::from_der(CaCertInfo::decode_pem(cert_pem)?, key)
    }

    /// As [`CaMaterial::from_parts`], from DER.
    pub fn from_der(cert_der: Vec<u8>, key: SecretKey) -> Result<Self, PkiError> {
        let mut key_pair = None;
        let info = CaCertInfo::read(&cert_der, |cert| {
            check_is_ca(cert)?;
            let loaded = key.key_pair()?;
            check_key_matches(cert, &loaded)?;
            key_pair = Some(loaded);
            Ok(())
        })?;
        let signing = OnceLock::new();
        if let Some(key_pair) = key_pair {
            let _ = signing.set(LoadedKey {
                cert_der: cert_der.clone(),
                pkcs8_der: key.pkcs8_der().to_vec(),
                key_pair,
            });
        }
        Ok(CaMaterial {
            cert_pem: info.cert_pem,
            cert_der,
            key,
            subject: info.subject,
            not_before: info.not_before,
            not_after: info.not_after,
            signing: Arc::new(signing),
        })
    }

    /// Subject distinguished name (RFC 4514-style string).
    pub fn subject(&self) -> String {
        self.subject.clone()
    }

    /// Start of the CA certificate's validity.
    pub fn not_before(&self) -> DateTime<Utc> {
        self.not_before
    }

    /// End of the CA certificate's validity; nothing it signs may outlive it.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// The signing key and an rcgen issuer built from the certificate (subject, key
    /// identifier).
    pub(crate) fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, PkiError> {
        self.issuer_with(|key_pair| key_pair)
    }

    /// As [`CaMaterial::issuer`], with the (checked) key pair wrapped by `wrap`, e.g.
    /// in a signer that records what it signs (see `hybrid`).
    pub(crate) fn issuer_with<'s, S: SigningKey>(
        &'s self,
        wrap: impl FnOnce(&'s KeyPair) -> S,
    ) -> Result<Issuer<'static, S>, PkiError> {
        let key_pair = self.signing_key()?;
        Issuer::from_ca_cert_der(&self.cert_der.as_slice().into(), wrap(key_pair))
            .map_err(|e| PkiError::Encoding(format!("CA certificate unusable as issuer: {e}")))
    }

    /// The loaded signing key. The first call loads it and checks that the
    /// certificate is a CA and the key is its key; later calls reuse that (loading a
    /// PKCS#8 key costs a scalar multiplication), after checking that neither the
    /// certificate nor the key was changed since ([`PkiError::KeyMismatch`] if so:
    /// build a new `CaMaterial` instead).
    fn signing_key(&self) -> Result<&KeyPair, PkiError> {
        let loaded = match self.signing.get() {
            Some(loaded) => loaded,
            None => {
                let key_pair = self.key.key_pair()?;
                let cert = parse_certificate(&self.cert_der)?;
                check_is_ca(&cert)?;
                check_key_matches(&cert, &key_pair)?;
                // A concurrent first call may have won; both loaded the same key.
                self.signing.get_or_init(|| LoadedKey {
                    cert_der: self.cert_der.clone(),
                    pkcs8_der: self.key.pkcs8_der().to_vec(),
                    key_pair,
                })
            }
        };
        if loaded.cert_der != self.cert_der || loaded.pkcs8_der != self.key.pkcs8_der() {
            return Err(PkiError::KeyMismatch(
                "the CA certificate or key changed after first use; build a new CaMaterial"
                    .to_owned(),
            ));
        }
        Ok(&loaded.key_pair)
    }
}

/// Creates a self-signed root CA with a fresh key of `alg`.
///
/// The certificate has a random serial, `CN=<common_name>`, basicConstraints
/// `CA:true` (critical, no path length limit), keyUsage keyCertSign + cRLSign
/// (critical) and a subjectKeyIdentifier.
pub fn create_root(
    common_name: &str,
    alg: KeyAlgorithm,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CaMaterial, PkiError> {
    create_root_with_key(common_name, generate_key(alg)?, not_before, not_after)
}

/// As [`create_root`], with a key supplied by the caller (e.g. an imported RSA key).
pub fn create_root_with_key(
    common_name: &str,
    key: SecretKey,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CaMaterial, PkiError> {
    let params = root_params(common_name, not_before, not_after)?;
    key.algorithm()?;
    let key_pair = key.key_pair()?;
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| PkiError::crypto("signing root certificate", e))?;
    CaMaterial::from_der(cert.der().to_vec(), key)
}

/// Creates an intermediate CA with a fresh key of `alg`, signed by `parent`.
///
/// Like a root, plus `pathLenConstraint 0` (it may only sign leaves) and an
/// authorityKeyIdentifier equal to the parent's subjectKeyIdentifier. The validity
/// must end no later than the parent's ([`PkiError::InvalidValidity`]).
pub fn create_intermediate(
    parent: &CaMaterial,
    common_name: &str,
    alg: KeyAlgorithm,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CaMaterial, PkiError> {
    create_intermediate_with_key(
        parent,
        common_name,
        generate_key(alg)?,
        not_before,
        not_after,
    )
}

/// As [`create_intermediate`], with a key supplied by the caller.
pub fn create_intermediate_with_key(
    parent: &CaMaterial,
    common_name: &str,
    key: SecretKey,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CaMaterial, PkiError> {
    let (params, key_pair) = intermediate_params(parent, common_name, &key, not_before, not_after)?;
    let issuer = parent.issuer()?;
    let cert = params
        .signed_by(&key_pair, &issuer)
        .map_err(|e| PkiError::crypto("signing intermediate certificate", e))?;
    CaMaterial::from_der(cert.der().to_vec(), key)
}

/// Parameters of a root CA certificate (see [`create_root`]); no
/// authorityKeyIdentifier.
pub(crate) fn root_params(
    common_name: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CertificateParams, PkiError> {
    let mut params = ca_params(
        common_name,
        not_before,
        not_after,
        BasicConstraints::Unconstrained,
    )?;
    params.use_authority_key_identifier_extension = false;
    Ok(params)
}

/// Checks an intermediate against its parent and returns its parameters and loaded
/// key pair (see [`create_intermediate`]); signs nothing.
pub(crate) fn intermediate_params(
    parent: &CaMaterial,
    common_name: &str,
    key: &SecretKey,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<(CertificateParams, KeyPair), PkiError> {
    let params = ca_params(
        common_name,
        not_before,
        not_after,
        BasicConstraints::Constrained(0),
    )?;
    if not_after.timestamp() > parent.not_after().timestamp() {
        return Err(PkiError::InvalidValidity(format!(
            "not_after {not_after} is beyond the parent CA's not_after {}",
            parent.not_after()
        )));
    }
    {
        let parent_cert = parse_certificate(&parent.cert_der)?;
        let parent_path_len = parent_cert
            .basic_constraints()
            .ok()
            .flatten()
            .and_then(|bc| bc.value.path_len_constraint);
        if parent_path_len == Some(0) {
            return Err(PkiError::Lint(
                "parent CA has pathLenConstraint 0 and cannot sign another CA".to_owned(),
            ));
        }
        if parent_cert.subject().to_string() == format!("CN={common_name}") {
            return Err(PkiError::Lint(
                "intermediate must not have the same subject as its parent".to_owned(),
            ));
        }
    }
    key.algorithm()?;
    let key_pair = key.key_pair()?;
    if key_pair.der_bytes() == parent.key.key_pair()?.der_bytes() {
        return Err(PkiError::Lint(
            "intermediate must not reuse the parent's key".to_owned(),
        ));
    }
    Ok((params, key_pair))
}

fn ca_params(
    common_name: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    constraints: BasicConstraints,
) -> Result<CertificateParams, PkiError> {
    if common_name.trim().is_empty() || common_name.chars().count() > MAX_COMMON_NAME {
        return Err(PkiError::Lint(format!(
            "CA common name must be 1 to {MAX_COMMON_NAME} characters"
        )));
    }
    let (not_before, not_after) = validity(not_before, not_after)?;
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, common_name);
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn check_is_ca(cert: &X509Certificate<'_>) -> Result<(), PkiError> {
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| PkiError::Lint(format!("bad basicConstraints: {e}")))?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(PkiError::Lint(
            "certificate is not a CA (basicConstraints CA:true)".to_owned(),
        ));
    }
    let key_usage = cert
        .key_usage()
        .map_err(|e| PkiError::Lint(format!("bad keyUsage: {e}")))?;
    if key_usage.is_some_and(|ku| !ku.value.key_cert_sign()) {
        return Err(PkiError::Lint(
            "CA certificate's keyUsage lacks keyCertSign".to_owned(),
        ));
    }
    Ok(())
}

fn check_key_matches(cert: &X509Certificate<'_>, key_pair: &KeyPair) -> Result<(), PkiError> {
    if cert.public_key().subject_public_key.data.as_ref() != key_pair.der_bytes() {
        return Err(PkiError::KeyMismatch(format!(
            "private key does not belong to the certificate for {}",
            cert.subject()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::testutil::{now, openssl};

    fn chain(alg: KeyAlgorithm) -> (CaMaterial, CaMaterial) {
        let t = now();
        let root = create_root("Sigil Test Root", alg, t, t + Duration::days(30)).unwrap();
        let inter = create_intermediate(
            &root,
            "Sigil Test Issuing CA",
            alg,
            t,
            t + Duration::days(10),
        )
        .unwrap();
        (root, inter)
    }

    #[test]
    fn roots_and_intermediates_for_every_generated_algorithm() {
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
        ] {
            let (root, inter) = chain(alg);
            assert_eq!(root.subject(), "CN=Sigil Test Root");
            assert_eq!(inter.subject(), "CN=Sigil Test Issuing CA");
            assert_eq!(inter.key.algorithm().unwrap(), alg);
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("root.pem"), &root.cert_pem).unwrap();
            std::fs::write(dir.path().join("inter.pem"), &inter.cert_pem).unwrap();
            let (ok, text) = openssl(
                dir.path(),
                &["verify", "-x509_strict", "-CAfile", "root.pem", "inter.pem"],
            );
            assert!(ok, "{alg:?}: {text}");

            let (_, root_text) =
                openssl(dir.path(), &["x509", "-noout", "-text", "-in", "root.pem"]);
            assert!(
                root_text.contains("X509v3 Basic Constraints: critical\n                CA:TRUE\n"),
                "{root_text}"
            );
            assert!(
                root_text.contains(
                    "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign"
                ),
                "{root_text}"
            );
            assert!(
                root_text.contains("X509v3 Subject Key Identifier"),
                "{root_text}"
            );

            let (_, text) = openssl(dir.path(), &["x509", "-noout", "-text", "-in", "inter.pem"]);
            assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
            assert!(
                text.contains(
                    "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign"
                ),
                "{text}"
            );
            assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
            assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");
        }
    }

    #[test]
    fn rsa_ca_from_an_imported_key() {
        let dir = tempfile::tempdir().unwrap();
        let (ok, text) = openssl(
            dir.path(),
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "k.pem",
            ],
        );
        assert!(ok, "{text}");
        let key =
            SecretKey::from_pkcs8_pem(&std::fs::read_to_string(dir.path().join("k.pem")).unwrap())
                .unwrap();
        assert_eq!(key.algorithm().unwrap(), KeyAlgorithm::Rsa2048);
        let t = now();
        let root = create_root_with_key("RSA Root", key, t, t + Duration::days(3)).unwrap();
        std::fs::write(dir.path().join("root.pem"), &root.cert_pem).unwrap();
        let (ok, text) = openssl(
            dir.path(),
            &["verify", "-x509_strict", "-CAfile", "root.pem", "root.pem"],
        );
        assert!(ok, "{text}");
    }

    #[test]
    fn from_parts_checks_ca_and_key() {
        let (root, inter) = chain(KeyAlgorithm::EcdsaP256);
        let again = CaMaterial::from_parts(&inter.cert_pem, inter.key.clone()).unwrap();
        assert_eq!(again.cert_der, inter.cert_der);
        assert_eq!(again.subject(), inter.subject());
        assert_eq!(again.not_after(), inter.not_after());
        assert!(matches!(
            CaMaterial::from_parts(&inter.cert_pem, root.key.clone()),
            Err(PkiError::KeyMismatch(_))
        ));
        assert!(matches!(
            CaMaterial::from_parts("not pem", root.key.clone()),
            Err(PkiError::Encoding(_))
        ));
    }

    #[test]
    fn intermediate_must_fit_inside_parent() {
        let t = now();
        let root = create_root("R", KeyAlgorithm::EcdsaP256, t, t + Duration::days(1)).unwrap();
        assert!(matches!(
            create_intermediate(
                &root,
                "I",
                KeyAlgorithm::EcdsaP256,
                t,
                t + Duration::days(2)
            ),
            Err(PkiError::InvalidValidity(_))
        ));
        assert!(matches!(
            create_root("R", KeyAlgorithm::EcdsaP256, t, t),
            Err(PkiError::InvalidValidity(_))
        ));
        assert!(matches!(
            create_root("", KeyAlgorithm::EcdsaP256, t, t + Duration::days(1)),
            Err(PkiError::Lint(_))
        ));
        let inter = create_intermediate(
            &root,
            "I",
            KeyAlgorithm::EcdsaP256,
            t,
            t + Duration::hours(1),
        )
        .unwrap();
        assert!(matches!(
            create_intermediate(
                &inter,
                "J",
                KeyAlgorithm::EcdsaP256,
                t,
                t + Duration::hours(1)
            ),
            Err(PkiError::Lint(_))
        ));
        assert!(matches!(
            create_root("R", KeyAlgorithm::Rsa2048, t, t + Duration::days(1)),
            Err(PkiError::UnsupportedKey(_))
        ));
    }

    #[test]
    fn material_edited_after_building_refuses_to_sign() {
        let t = now();
        let (root, inter) = chain(KeyAlgorithm::EcdsaP256);
        // Signing works and reuses the key loaded when the material was built.
        assert!(inter.issuer().is_ok());
        let mut swapped = inter.clone();
        swapped.key = root.key.clone();
        assert!(matches!(
            swapped.issuer().map(|_| ()),
            Err(PkiError::KeyMismatch(_))
        ));
        let mut recertified = inter.clone();
        recertified.cert_der = root.cert_der.clone();
        assert!(matches!(
            create_intermediate(
                &recertified,
                "X",
                KeyAlgorithm::EcdsaP256,
                t,
                t + Duration::days(1)
            ),
            Err(PkiError::KeyMismatch(_))
        ));
        // The original is unaffected.
        assert!(inter.issuer().is_ok());
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let (root, _) = chain(KeyAlgorithm::Ed25519);
        let debug = format!("{root:?}");
        assert!(debug.contains("[redacted]"), "{debug}");
        let der = root.key.pkcs8_der();
        // The last 32 bytes of an Ed25519 PKCS#8 document hold key material.
        let tail = &der[der.len() - 16..];
        assert!(!debug.contains(&hex::encode(tail)));
        assert!(!debug.contains(&format!("{tail:?}").trim_matches(['[', ']']).to_owned()));
        assert!(!debug.contains("PRIVATE KEY"));
    }
}
