//! Certificates rcgen cannot name: a small generic builder on `x509-cert` 0.3 and
//! pure ML-DSA certificates (RFC 9881).
//!
//! - [`CertSigner`] is what signs a certificate: its signatureAlgorithm, its own SPKI
//!   (to check it against the issuer certificate) and the raw signature over the DER
//!   TBSCertificate. [`MlDsaKeyPair`] implements it (RFC 9881: parameters absent,
//!   empty context); composite signers implement it too.
//! - [`CertTemplate`] says what to certify; [`build_certificate`] turns a template, a
//!   subject SPKI and an issuer into a signed DER certificate with SKI, AKI,
//!   basicConstraints (critical), keyUsage (critical), EKU and SAN extensions, and
//!   re-verifies the signature it made before returning.
//! - [`PqCaMaterial`] is an ML-DSA CA (certificate + key), made with
//!   [`create_mldsa_root`] / [`create_mldsa_intermediate`]; [`issue_mldsa_leaf`] issues
//!   an ML-DSA end-entity certificate from it.
//!
//! No DER is written by hand: names, extensions and the certificate itself are
//! `x509-cert` / `der` types.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use const_oid::ObjectIdentifier;
use der::asn1::{BitString, Ia5String, OctetString, Utf8StringRef};
use der::{Decode as _, Encode as _};
use sigil_contracts::types::{Profile, Sans};
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SubjectPublicKeyInfoOwned,
};
use x509_cert::Certificate;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder as _, CertificateBuilder};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension as _};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::ca::{CaCertInfo, MAX_COMMON_NAME};
use crate::error::PkiError;
use crate::facts::{certificate_facts, from_asn1_time, parse_certificate, random_serial};
use crate::leaf::IssuedCert;
use crate::lint::check_sans;
use crate::mldsa::{MlDsaKeyPair, MlDsaLevel};
use crate::pem;
use crate::prepared::PreparedCert;
use crate::profile::LeafOptions;

/// Something that can sign a certificate: the issuer's key.
pub trait CertSigner {
    /// The AlgorithmIdentifier written as the certificate's `signature` and
    /// `signatureAlgorithm` (for ML-DSA: the OID, parameters absent).
    fn algorithm(&self) -> AlgorithmIdentifierOwned;

    /// The signer's own public key as an SPKI. [`build_certificate`] checks it equals
    /// the issuer certificate's SPKI (or the subject's, when self-signing).
    fn subject_public_key_info(&self) -> Result<SubjectPublicKeyInfoOwned, PkiError>;

    /// The signature over `tbs_der` (the DER TBSCertificate), as the bytes of the
    /// certificate's signatureValue BIT STRING.
    fn sign(&self, tbs_der: &[u8]) -> Result<Vec<u8>, PkiError>;
}

impl CertSigner for MlDsaKeyPair {
    fn algorithm(&self) -> AlgorithmIdentifierOwned {
        mldsa_algorithm(self.level())
    }

    fn subject_public_key_info(&self) -> Result<SubjectPublicKeyInfoOwned, PkiError> {
        mldsa_spki(self.level(), self.public_key())
    }

    /// RFC 9881: pure ML-DSA with the empty context over the DER TBSCertificate.
    fn sign(&self, tbs_der: &[u8]) -> Result<Vec<u8>, PkiError> {
        MlDsaKeyPair::sign(self, tbs_der, &[])
    }
}

/// The ML-DSA OID of `level` (id-ml-dsa-44/65/87).
pub fn mldsa_oid(level: MlDsaLevel) -> ObjectIdentifier {
    match level {
        MlDsaLevel::L44 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.17"),
        MlDsaLevel::L65 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.18"),
        MlDsaLevel::L87 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.19"),
    }
}

/// RFC 9881 AlgorithmIdentifier: the ML-DSA OID with parameters ABSENT (not NULL).
pub fn mldsa_algorithm(level: MlDsaLevel) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: mldsa_oid(level),
        parameters: None,
    }
}

/// RFC 9881 SubjectPublicKeyInfo: the raw public key (FIPS 204 `pk`) as the BIT
/// STRING, no ASN.1 inside. Fails on a key of the wrong length.
pub fn mldsa_spki(
    level: MlDsaLevel,
    public_key: &[u8],
) -> Result<SubjectPublicKeyInfoOwned, PkiError> {
    if public_key.len() != level.public_key_len() {
        return Err(PkiError::UnsupportedKey(format!(
            "{} public key must be {} bytes, got {}",
            level.name(),
            level.public_key_len(),
            public_key.len()
        )));
    }
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: mldsa_algorithm(level),
        subject_public_key: BitString::from_bytes(public_key).map_err(der_err)?,
    })
}

/// What a certificate is for; fixes basicConstraints and the default key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// A CA: basicConstraints `CA:true` with an optional pathLenConstraint.
    Ca {
        /// `None`: unconstrained (roots); `Some(0)`: may sign only leaves.
        path_len: Option<u8>,
    },
    /// An end entity: basicConstraints `CA:false`, EKU from the profile.
    Leaf {
        /// serverAuth or clientAuth.
        profile: Profile,
    },
}

/// One keyUsage bit (RFC 5280 §4.2.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsageBit {
    DigitalSignature,
    NonRepudiation,
    KeyEncipherment,
    DataEncipherment,
    KeyAgreement,
    KeyCertSign,
    CrlSign,
}

impl KeyUsageBit {
    fn flag(self) -> KeyUsages {
        match self {
            KeyUsageBit::DigitalSignature => KeyUsages::DigitalSignature,
            KeyUsageBit::NonRepudiation => KeyUsages::NonRepudiation,
            KeyUsageBit::KeyEncipherment => KeyUsages::KeyEncipherment,
            KeyUsageBit::DataEncipherment => KeyUsages::DataEncipherment,
            KeyUsageBit::KeyAgreement => KeyUsages::KeyAgreement,
            KeyUsageBit::KeyCertSign => KeyUsages::KeyCertSign,
            KeyUsageBit::CrlSign => KeyUsages::CRLSign,
        }
    }

    /// The same bit for rcgen (classical and hybrid leaves).
    pub(crate) fn rcgen(self) -> rcgen::KeyUsagePurpose {
        use rcgen::KeyUsagePurpose as K;
        match self {
            KeyUsageBit::DigitalSignature => K::DigitalSignature,
            KeyUsageBit::NonRepudiation => K::ContentCommitment,
            KeyUsageBit::KeyEncipherment => K::KeyEncipherment,
            KeyUsageBit::DataEncipherment => K::DataEncipherment,
            KeyUsageBit::KeyAgreement => K::KeyAgreement,
            KeyUsageBit::KeyCertSign => K::KeyCertSign,
            KeyUsageBit::CrlSign => K::CrlSign,
        }
    }

    /// Bits a signature-only key (ML-DSA, composite) must never carry.
    pub fn is_encipherment_or_agreement(self) -> bool {
        matches!(
            self,
            KeyUsageBit::KeyEncipherment
                | KeyUsageBit::DataEncipherment
                | KeyUsageBit::KeyAgreement
        )
    }
}

/// Everything [`build_certificate`] writes apart from keys and the issuer.
///
/// Build one with [`CertTemplate::ca`] or [`CertTemplate::leaf`] and adjust the
/// public fields if needed.
#[derive(Debug, Clone)]
pub struct CertTemplate {
    /// Subject CN (the only subject attribute written); `None`: empty subject, and
    /// then the SAN extension is marked critical (RFC 5280 §4.2.1.6).
    pub common_name: Option<String>,
    /// DNS, IP and URI SANs (none for CAs by default).
    pub sans: Sans,
    /// Serial number, big-endian, positive, at most 20 bytes.
    pub serial: Vec<u8>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub kind: CertKind,
    /// keyUsage bits (written critical). Defaults: CA keyCertSign + cRLSign; leaf
    /// digitalSignature.
    pub key_usage: Vec<KeyUsageBit>,
    /// extendedKeyUsage purposes; empty: no EKU extension. Leaves default to
    /// serverAuth or clientAuth from their profile.
    pub extended_key_usage: Vec<ObjectIdentifier>,
    /// Further extensions, appended after the standard ones (e.g. for hybrid
    /// certificates); their OIDs must not repeat the standard ones.
    pub extra_extensions: Vec<Extension>,
}

impl CertTemplate {
    /// A CA template with a random serial, no SANs and keyCertSign + cRLSign.
    pub fn ca(
        common_name: &str,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
        path_len: Option<u8>,
    ) -> CertTemplate {
        CertTemplate {
            common_name: Some(common_name.to_owned()),
            sans: Sans::default(),
            serial: random_serial().to_vec(),
            not_before,
            not_after,
            kind: CertKind::Ca { path_len },
            key_usage: vec![KeyUsageBit::KeyCertSign, KeyUsageBit::CrlSign],
            extended_key_usage: Vec::new(),
            extra_extensions: Vec::new(),
        }
    }

    /// A leaf template with a random serial and the profile's keyUsage (for a
    /// signature-only key: digitalSignature) and EKU ([`crate::profile`]).
    pub fn leaf(
        profile: Profile,
        sans: Sans,
        common_name: Option<String>,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> CertTemplate {
        CertTemplate {
            common_name,
            sans,
            serial: random_serial().to_vec(),
            not_before,
            not_after,
            kind: CertKind::Leaf { profile },
            key_usage: crate::profile::key_usage(profile, None),
            extended_key_usage: crate::profile::extended_key_usage(profile),
            extra_extensions: Vec::new(),
        }
    }
}

/// Who signs a certificate built by [`build_certificate`].
#[derive(Debug, Clone, Copy)]
pub enum CertIssuer<'a> {
    /// The subject itself (a root): issuer name = subject name, no
    /// authorityKeyIdentifier; the signer's SPKI must be the subject SPKI.
    SelfSigned,
    /// The CA certificate (DER) whose key the signer holds: its subject becomes the
    /// issuer name and its subjectKeyIdentifier the authorityKeyIdentifier. It must
    /// be a CA with keyCertSign, and the certificate must not outlive it.
    Cert(&'a [u8]),
}

/// Builds and signs a certificate; returns its DER.
///
/// Checks before signing: `not_before < not_after`, both from 1970 to 9999
/// ([`PkiError::InvalidValidity`]); a non-empty subject CN of at most 64 characters
/// without control characters, and a leaf without CN has a SAN ([`PkiError::Lint`]);
/// well-formed SANs ([`PkiError::InvalidSan`]); the signer's key is the issuer
/// certificate's (or the subject's when self-signed) ([`PkiError::KeyMismatch`]); an
/// issuer certificate is a CA allowed to sign certificates, its pathLenConstraint
/// allows another CA, and it outlives `not_after` ([`PkiError::Lint`],
/// [`PkiError::InvalidValidity`]).
///
/// Extensions, in order: basicConstraints (critical), keyUsage (critical),
/// extendedKeyUsage (if any), subjectAltName (if any SAN; critical when the subject
/// is empty), subjectKeyIdentifier (RFC 7093 method 1: leftmost 160 bits of the
/// SHA-256 of the subjectPublicKey bits), authorityKeyIdentifier (not for
/// self-signed), then `extra_extensions`.
///
/// After signing, the signature is verified again with the issuer's key through
/// [`crate::verify`]'s algorithm dispatch ([`PkiError::Lint`] if it does not verify).
pub fn build_certificate(
    template: &CertTemplate,
    subject_spki: &SubjectPublicKeyInfoOwned,
    issuer: CertIssuer<'_>,
    signer: &dyn CertSigner,
) -> Result<Vec<u8>, PkiError> {
    let linted = lint_certificate(template, subject_spki, issuer, signer)?;
    sign_certificate(linted, signer)
}

/// What [`lint_certificate`] checked, ready for [`sign_certificate`].
pub(crate) struct LintedCert {
    serial: Vec<u8>,
    subject: Name,
    issuer_name: Name,
    validity: Validity,
    extensions: Vec<Extension>,
    subject_spki: SubjectPublicKeyInfoOwned,
    signer_spki: SubjectPublicKeyInfoOwned,
    issuer_spki_der: Vec<u8>,
}

/// Every check [`build_certificate`] makes before signing.
pub(crate) fn lint_certificate(
    template: &CertTemplate,
    subject_spki: &SubjectPublicKeyInfoOwned,
    issuer: CertIssuer<'_>,
    signer: &dyn CertSigner,
) -> Result<LintedCert, PkiError> {
    // Prepare and lint.
    let validity = x509_validity(template.not_before, template.not_after)?;
    let subject = subject_name(template.common_name.as_deref())?;
    let signer_spki = signer.subject_public_key_info()?;
    let subject_ski = key_identifier(subject_spki);
    let (issuer_name, authority_key_id, issuer_spki_der) = match issuer {
        CertIssuer::SelfSigned => {
            if &signer_spki != subject_spki {
                return Err(PkiError::KeyMismatch(
                    "a self-signed certificate must be signed by the subject's own key".to_owned(),
                ));
            }
            (
                subject.clone(),
                None,
                subject_spki.to_der().map_err(der_err)?,
            )
        }
        CertIssuer::Cert(issuer_der) => {
            let info = issuer_info(issuer_der, template)?;
            if info.spki != signer_spki {
                return Err(PkiError::KeyMismatch(
                    "the signer's key is not the issuer certificate's key".to_owned(),
                ));
            }
            if &info.spki == subject_spki {
                return Err(PkiError::Lint(
                    "subject key must differ from the issuer's key".to_owned(),
                ));
            }
            let spki_der = info.spki.to_der().map_err(der_err)?;
            (info.name, Some(info.key_id), spki_der)
        }
    };
    if is_signature_only_key(subject_spki)
        && template
            .key_usage
            .iter()
            .any(|bit| bit.is_encipherment_or_agreement())
    {
        return Err(PkiError::Lint(
            "an ML-DSA or composite key can only sign: no encipherment or agreement key usage"
                .to_owned(),
        ));
    }
    let mut extensions = standard_extensions(template, &subject, &subject_ski, authority_key_id)?;
    extensions.extend(template.extra_extensions.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = extensions.iter().find(|e| !seen.insert(e.extn_id)) {
        return Err(PkiError::Lint(format!(
            "extension {} appears twice",
            dup.extn_id
        )));
    }

    let _checked: SerialNumber = SerialNumber::new(&template.serial)
        .map_err(|e| PkiError::Lint(format!("serial number: {e}")))?;
    Ok(LintedCert {
        serial: template.serial.clone(),
        subject,
        issuer_name,
        validity,
        extensions,
        subject_spki: subject_spki.clone(),
        signer_spki,
        issuer_spki_der,
    })
}

/// Builds, signs and validates a certificate [`lint_certificate`] passed.
pub(crate) fn sign_certificate(
    linted: LintedCert,
    signer: &dyn CertSigner,
) -> Result<Vec<u8>, PkiError> {
    let LintedCert {
        serial,
        subject,
        issuer_name,
        validity,
        extensions,
        subject_spki,
        signer_spki,
        issuer_spki_der,
    } = linted;
    // Build and sign.
    let serial =
        SerialNumber::new(&serial).map_err(|e| PkiError::Lint(format!("serial number: {e}")))?;
    let profile = TemplateProfile {
        subject,
        issuer: issuer_name,
        extensions,
    };
    let adapter = SignerAdapter {
        algorithm: signer.algorithm(),
        spki: signer_spki,
    };
    let mut builder = CertificateBuilder::new(profile, serial, validity, subject_spki)
        .map_err(|e| PkiError::Encoding(format!("certificate builder: {e}")))?;
    let tbs_der = builder
        .finalize(&adapter)
        .map_err(|e| PkiError::Encoding(format!("encoding TBSCertificate: {e}")))?;
    let signature = signer.sign(&tbs_der)?;
    let cert = builder
        .assemble(
            BitString::from_bytes(&signature).map_err(der_err)?,
            &adapter,
        )
        .map_err(|e| PkiError::Encoding(format!("assembling certificate: {e}")))?;
    let cert_der = cert.to_der().map_err(der_err)?;

    // Validate what was signed.
    let parsed = parse_certificate(&cert_der)?;
    if parsed.tbs_certificate.as_ref() != tbs_der.as_slice() {
        return Err(PkiError::Lint(
            "issued certificate's TBS differs from what was signed".to_owned(),
        ));
    }
    crate::verify::check_one_signature(&parsed, &issuer_spki_der).map_err(|why| {
        PkiError::Lint(format!(
            "issued certificate does not verify with the issuer's key: {why}"
        ))
    })?;
    Ok(cert_der)
}

/// An ML-DSA CA: its certificate and its ML-DSA key pair.
///
/// Made by [`create_mldsa_root`], [`create_mldsa_intermediate`] or
/// [`PqCaMaterial::from_der`], which check that the certificate is a CA with an
/// ML-DSA key and that the key pair is the certificate's. The issuer stores
/// `cert_der` (or `cert_pem`) and the key pair's public and expanded secret key
/// (reload with [`MlDsaKeyPair::from_parts`], seal the secret key with the KEK).
/// `Debug` never prints key bytes.
#[derive(Clone)]
pub struct PqCaMaterial {
    /// The certificate as PEM (re-encoded from `cert_der`).
    pub cert_pem: String,
    /// The certificate as DER.
    pub cert_der: Vec<u8>,
    /// The CA's ML-DSA key pair.
    pub key: MlDsaKeyPair,
    subject: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

impl fmt::Debug for PqCaMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        CaCertInfo::debug_fields(
            f,
            "PqCaMaterial",
            &self.subject,
            &self.not_before,
            &self.not_after,
            &self.key,
        )
    }
}

impl PqCaMaterial {
    /// Pairs a DER CA certificate with its ML-DSA key pair. Fails when the
    /// certificate is not a CA allowed to sign certificates ([`PkiError::Lint`]) or
    /// its SPKI is not exactly the RFC 9881 SPKI of `key` ([`PkiError::KeyMismatch`]).
    pub fn from_der(cert_der: Vec<u8>, key: MlDsaKeyPair) -> Result<Self, PkiError> {
        let info = read_signer_ca_cert(
            &cert_der,
            || mldsa_spki(key.level(), key.public_key()),
            key.level().name(),
        )?;
        Ok(PqCaMaterial {
            cert_pem: info.cert_pem,
            cert_der,
            key,
            subject: info.subject,
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }

    /// As [`PqCaMaterial::from_der`], from one PEM `CERTIFICATE`.
    pub fn from_pem(cert_pem: &str, key: MlDsaKeyPair) -> Result<Self, PkiError> {
        PqCaMaterial::from_der(CaCertInfo::decode_pem(cert_pem)?, key)
    }

    /// Subject distinguished name (RFC 4514-style string).
    pub fn subject(&self) -> String {
        self.subject.clone()
    }

    pub fn not_before(&self) -> DateTime<Utc> {
        self.not_before
    }

    /// Nothing this CA signs may outlive this.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    pub fn level(&self) -> MlDsaLevel {
        self.key.level()
    }
}

/// Creates a self-signed ML-DSA root CA (RFC 9881) with a fresh key of `level`.
///
/// `CN=<common_name>`, random serial, basicConstraints `CA:true` (critical, no path
/// length limit), keyUsage keyCertSign + cRLSign (critical), subjectKeyIdentifier.
pub fn create_mldsa_root(
    common_name: &str,
    level: MlDsaLevel,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<PqCaMaterial, PkiError> {
    create_ca_root::<PqCaMaterial>(common_name, level, not_before, not_after)
}

/// Creates an ML-DSA intermediate CA with a fresh key of `level`, signed by `parent`.
///
/// Like a root plus pathLenConstraint 0 and an authorityKeyIdentifier; must not
/// outlive the parent ([`PkiError::InvalidValidity`]) nor repeat its subject.
pub fn create_mldsa_intermediate(
    parent: &PqCaMaterial,
    common_name: &str,
    level: MlDsaLevel,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<PqCaMaterial, PkiError> {
    create_ca_intermediate(parent, common_name, level, not_before, not_after)
}

impl CaKind for PqCaMaterial {
    type Key = MlDsaKeyPair;
    type Alg = MlDsaLevel;

    fn check_common_name(common_name: &str) -> Result<(), PkiError> {
        check_ca_common_name(common_name)
    }

    fn check_not_parent_subject(
        parent_der: &[u8],
        common_name: &str,
        template: &CertTemplate,
    ) -> Result<(), PkiError> {
        if subject_name(Some(common_name))?.to_der().map_err(der_err)?
            == issuer_info(parent_der, template)?
                .name
                .to_der()
                .map_err(der_err)?
        {
            return Err(PkiError::Lint(
                "intermediate must not have the same subject as its parent".to_owned(),
            ));
        }
        Ok(())
    }

    fn generate(level: MlDsaLevel) -> Result<MlDsaKeyPair, PkiError> {
        Ok(MlDsaKeyPair::generate(level))
    }

    fn from_der(cert_der: Vec<u8>, key: MlDsaKeyPair) -> Result<Self, PkiError> {
        PqCaMaterial::from_der(cert_der, key)
    }

    fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    fn key(&self) -> &MlDsaKeyPair {
        &self.key
    }
}

/// A CA-material type whose key is a [`CertSigner`] (ML-DSA, composite): what
/// [`create_ca_root`] and [`create_ca_intermediate`] need to make one.
pub(crate) trait CaKind: Sized {
    /// The CA's key pair.
    type Key: CertSigner;
    /// What selects a fresh key (parameter set, composite algorithm).
    type Alg;

    /// Checks a new CA's common name before anything is generated.
    fn check_common_name(common_name: &str) -> Result<(), PkiError>;
    /// Refuses an intermediate that would repeat its parent's subject.
    fn check_not_parent_subject(
        parent_der: &[u8],
        common_name: &str,
        template: &CertTemplate,
    ) -> Result<(), PkiError>;
    fn generate(alg: Self::Alg) -> Result<Self::Key, PkiError>;
    fn from_der(cert_der: Vec<u8>, key: Self::Key) -> Result<Self, PkiError>;
    fn cert_der(&self) -> &[u8];
    fn key(&self) -> &Self::Key;
}

/// Creates a self-signed root CA of kind `M` with a fresh key of `alg`.
pub(crate) fn create_ca_root<M: CaKind>(
    common_name: &str,
    alg: M::Alg,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<M, PkiError> {
    M::check_common_name(common_name)?;
    let key = M::generate(alg)?;
    let template = CertTemplate::ca(common_name, not_before, not_after, None);
    let spki = CertSigner::subject_public_key_info(&key)?;
    let der = build_certificate(&template, &spki, CertIssuer::SelfSigned, &key)?;
    M::from_der(der, key)
}

/// Creates an intermediate CA of kind `M` with a fresh key of `alg`, signed by
/// `parent` (pathLenConstraint 0, authorityKeyIdentifier).
pub(crate) fn create_ca_intermediate<M: CaKind>(
    parent: &M,
    common_name: &str,
    alg: M::Alg,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<M, PkiError> {
    M::check_common_name(common_name)?;
    let template = CertTemplate::ca(common_name, not_before, not_after, Some(0));
    M::check_not_parent_subject(parent.cert_der(), common_name, &template)?;
    let key = M::generate(alg)?;
    let spki = CertSigner::subject_public_key_info(&key)?;
    let der = build_certificate(
        &template,
        &spki,
        CertIssuer::Cert(parent.cert_der()),
        parent.key(),
    )?;
    M::from_der(der, key)
}

/// [`CaCertInfo::read`] for a [`CertSigner`] CA: the certificate must be a CA allowed
/// to sign certificates ([`PkiError::Lint`]) whose SPKI is exactly `expected_spki`
/// ([`PkiError::KeyMismatch`], naming the key's algorithm `alg_name`).
pub(crate) fn read_signer_ca_cert(
    cert_der: &[u8],
    expected_spki: impl FnOnce() -> Result<SubjectPublicKeyInfoOwned, PkiError>,
    alg_name: impl fmt::Display,
) -> Result<CaCertInfo, PkiError> {
    CaCertInfo::read(cert_der, |cert| {
        check_can_sign_certificates(cert)?;
        let expected = expected_spki()?.to_der().map_err(der_err)?;
        if cert.public_key().raw != expected.as_slice() {
            return Err(PkiError::KeyMismatch(format!(
                "{} key pair does not belong to the CA certificate",
                alg_name
            )));
        }
        Ok(())
    })
}

/// What ML-DSA leaf to issue. The caller (policy) has decided every field; the
/// requester holds the private key (proof of possession is the caller's business).
#[derive(Debug, Clone)]
pub struct MlDsaLeafRequest {
    pub profile: Profile,
    /// Names to certify; at least one.
    pub sans: Sans,
    /// Subject CN; `None`: the first DNS SAN (no CN when there is none).
    pub common_name: Option<String>,
    pub not_before: DateTime<Utc>,
    /// Must not be later than the issuer's `not_after`.
    pub not_after: DateTime<Utc>,
    /// The subject's ML-DSA parameter set.
    pub level: MlDsaLevel,
    /// The subject's raw ML-DSA public key (FIPS 204 `pk`).
    pub public_key: Vec<u8>,
}

/// Issues an ML-DSA end-entity certificate (RFC 9881) signed by an ML-DSA CA.
///
/// keyUsage is digitalSignature only (never encipherment or agreement: ML-DSA keys
/// only sign), EKU serverAuth/clientAuth from the profile, basicConstraints
/// `CA:false`, SANs, SKI and AKI. Checks as [`build_certificate`], plus at least
/// one SAN ([`PkiError::InvalidSan`]). After signing, the certificate is read back
/// and its SANs compared with the request.
pub fn issue_mldsa_leaf(
    issuer: &PqCaMaterial,
    req: &MlDsaLeafRequest,
) -> Result<IssuedCert, PkiError> {
    prepare_mldsa_leaf(issuer, req, &LeafOptions::default())?.sign()
}

/// [`issue_mldsa_leaf`] in two steps: every check before signing now (including the
/// profile's name rules), signing on [`PreparedCert::sign`]. `opts` adds the CRL
/// distribution point and OCSP URLs.
pub fn prepare_mldsa_leaf<'a>(
    issuer: &'a PqCaMaterial,
    req: &MlDsaLeafRequest,
    opts: &LeafOptions,
) -> Result<PreparedCert<'a>, PkiError> {
    let spki = mldsa_spki(req.level, &req.public_key)?;
    prepare_template_leaf(
        req.profile,
        &req.sans,
        req.common_name.as_deref(),
        (req.not_before, req.not_after),
        &spki,
        &issuer.cert_der,
        &issuer.key,
        opts,
    )
}

/// The shared prepare step of ML-DSA and composite leaves: profile name rules,
/// template with the revocation extensions, [`lint_certificate`]; the returned
/// [`PreparedCert`] signs, then checks the SANs read back.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare_template_leaf<'a>(
    profile: Profile,
    sans: &Sans,
    common_name: Option<&str>,
    (not_before, not_after): (DateTime<Utc>, DateTime<Utc>),
    spki: &SubjectPublicKeyInfoOwned,
    issuer_der: &'a [u8],
    signer: &'a (dyn CertSigner + Sync),
    opts: &LeafOptions,
) -> Result<PreparedCert<'a>, PkiError> {
    let common_name = crate::profile::leaf_common_name(profile, sans, common_name)?;
    let mut template =
        CertTemplate::leaf(profile, sans.clone(), common_name, not_before, not_after);
    template
        .extra_extensions
        .extend(crate::profile::revocation_extensions(opts)?);
    let linted = lint_certificate(&template, spki, CertIssuer::Cert(issuer_der), signer)?;
    let sans = sans.clone();
    Ok(PreparedCert::new(
        &template.serial,
        profile,
        Box::new(move || {
            let cert_der = sign_certificate(linted, signer)?;
            let facts = certificate_facts(&cert_der, profile)?;
            if facts.sans != sans {
                return Err(PkiError::Lint(
                    "issued certificate carries different SANs than requested".to_owned(),
                ));
            }
            Ok(IssuedCert {
                cert_pem: pem::encode("CERTIFICATE", &cert_der),
                cert_der,
                facts,
            })
        }),
    ))
}

/// Reads an RFC 9881 ML-DSA private key (PKCS#8 / RFC 5958 OneAsymmetricKey whose
/// privateKey is the `seed [0]`, `expandedKey` or `both` CHOICE) into a key pair.
///
/// The public key comes from `public_key` or, if absent, from the OneAsymmetricKey
/// `publicKey [1]` field. A seed-only key is refused ([`PkiError::UnsupportedKey`]):
/// pqcrypto cannot expand a seed. With `both`, the expanded key is used (the seed is
/// not checked against it). The pair is checked by a sign/verify probe
/// ([`PkiError::KeyMismatch`]).
pub fn mldsa_key_from_pkcs8(
    pkcs8_der: &[u8],
    public_key: Option<&[u8]>,
) -> Result<MlDsaKeyPair, PkiError> {
    let bad = |e: der::Error| PkiError::Encoding(format!("ML-DSA PKCS#8 private key: {e}"));
    let key = OneAsymmetricKey::from_der(pkcs8_der).map_err(bad)?;
    let level = MlDsaLevel::from_oid(&key.algorithm.oid.to_string()).ok_or_else(|| {
        PkiError::UnsupportedKey(format!("{} is not an ML-DSA key", key.algorithm.oid))
    })?;
    if key.algorithm.parameters.is_some() {
        return Err(PkiError::Encoding(
            "ML-DSA AlgorithmIdentifier parameters must be absent".to_owned(),
        ));
    }
    let expanded = match MlDsaPrivateKey::from_der(key.private_key.as_bytes()).map_err(bad)? {
        MlDsaPrivateKey::Seed(_) => {
            return Err(PkiError::UnsupportedKey(
                "seed-only ML-DSA private key: the backend cannot expand seeds".to_owned(),
            ));
        }
        MlDsaPrivateKey::ExpandedKey(sk) => sk,
        MlDsaPrivateKey::Both(both) => both.expanded_key,
    };
    let embedded = key.public_key.as_ref().and_then(BitString::as_bytes);
    let public = public_key
        .or(embedded)
        .ok_or_else(|| PkiError::Encoding("ML-DSA private key without a public key".to_owned()))?;
    MlDsaKeyPair::from_parts(level, public, expanded.as_bytes())
}

/// Writes `key` as PKCS#8 v2 (RFC 5958 OneAsymmetricKey, version 1) with the RFC 9881
/// `expandedKey` private key and the public key in `publicKey [1]`, so
/// [`mldsa_key_from_pkcs8`] can read it back alone. Handle the result as secret.
pub fn mldsa_key_to_pkcs8(key: &MlDsaKeyPair) -> Result<Vec<u8>, PkiError> {
    let private =
        MlDsaPrivateKey::ExpandedKey(OctetString::new(key.secret_key().to_vec()).map_err(der_err)?)
            .to_der()
            .map_err(der_err)?;
    OneAsymmetricKey {
        version: 1,
        algorithm: mldsa_algorithm(key.level()),
        private_key: OctetString::new(private).map_err(der_err)?,
        public_key: Some(BitString::from_bytes(key.public_key()).map_err(der_err)?),
    }
    .to_der()
    .map_err(der_err)
}

#[derive(der::Sequence)]
struct OneAsymmetricKey {
    version: u8,
    algorithm: AlgorithmIdentifierOwned,
    private_key: OctetString,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    public_key: Option<BitString>,
}

/// RFC 9881 ML-DSA-PrivateKey.
#[derive(der::Choice)]
enum MlDsaPrivateKey {
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    Seed(OctetString),
    ExpandedKey(OctetString),
    Both(SeedAndExpanded),
}

#[derive(der::Sequence)]
struct SeedAndExpanded {
    seed: OctetString,
    expanded_key: OctetString,
}

// ---------------------------------------------------------------------------------
// Internals.

/// A [`BuilderProfile`] that writes exactly what [`build_certificate`] computed.
struct TemplateProfile {
    subject: Name,
    issuer: Name,
    extensions: Vec<Extension>,
}

impl BuilderProfile for TemplateProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
        _tbs: &x509_cert::TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(self.extensions.clone())
    }
}

/// Lets x509-cert's builder name the algorithm; signing happens outside it
/// (`finalize` → [`CertSigner::sign`] → `assemble`) so errors keep their type.
struct SignerAdapter {
    algorithm: AlgorithmIdentifierOwned,
    spki: SubjectPublicKeyInfoOwned,
}

#[derive(Clone)]
struct SpkiKey(SubjectPublicKeyInfoOwned);

impl EncodePublicKey for SpkiKey {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::encode_msg(&self.0)?)
    }
}

impl signature::Keypair for SignerAdapter {
    type VerifyingKey = SpkiKey;

    fn verifying_key(&self) -> SpkiKey {
        SpkiKey(self.spki.clone())
    }
}

impl DynSignatureAlgorithmIdentifier for SignerAdapter {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(self.algorithm.clone())
    }
}

struct IssuerInfo {
    name: Name,
    spki: SubjectPublicKeyInfoOwned,
    key_id: Vec<u8>,
}

/// Reads and checks an issuer certificate for signing `template`.
fn issuer_info(issuer_der: &[u8], template: &CertTemplate) -> Result<IssuerInfo, PkiError> {
    let parsed = parse_certificate(issuer_der)?;
    check_can_sign_certificates(&parsed)?;
    if let CertKind::Ca { .. } = template.kind {
        let path_len = parsed
            .basic_constraints()
            .ok()
            .flatten()
            .and_then(|bc| bc.value.path_len_constraint);
        if path_len == Some(0) {
            return Err(PkiError::Lint(
                "issuer has pathLenConstraint 0 and cannot sign another CA".to_owned(),
            ));
        }
    }
    let issuer_not_after = from_asn1_time(&parsed.validity().not_after)?;
    if template.not_after.timestamp() > issuer_not_after.timestamp() {
        return Err(PkiError::InvalidValidity(format!(
            "not_after {} is beyond the issuing CA's not_after {issuer_not_after}",
            template.not_after
        )));
    }
    let cert = Certificate::from_der(issuer_der)
        .map_err(|e| PkiError::Encoding(format!("issuer certificate: {e}")))?;
    let tbs = cert.tbs_certificate();
    let spki = tbs.subject_public_key_info().clone();
    let key_id = match tbs
        .get_extension::<SubjectKeyIdentifier>()
        .map_err(|e| PkiError::Encoding(format!("issuer subjectKeyIdentifier: {e}")))?
    {
        Some((_, ski)) => ski.0.as_bytes().to_vec(),
        None => key_identifier(&spki),
    };
    Ok(IssuerInfo {
        name: tbs.subject().clone(),
        spki,
        key_id,
    })
}

pub(crate) fn check_can_sign_certificates(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<(), PkiError> {
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    let may_sign = cert
        .key_usage()
        .ok()
        .flatten()
        .is_none_or(|ku| ku.value.key_cert_sign());
    if is_ca && may_sign {
        Ok(())
    } else {
        Err(PkiError::Lint(
            "issuer certificate is not a CA allowed to sign certificates".to_owned(),
        ))
    }
}

/// ML-DSA (RFC 9881) and composite ML-DSA (draft-ietf-lamps-pq-composite-sigs-19:
/// id-alg arc 1.3.6.1.5.5.7.6.37 to .54) keys, which can only sign.
fn is_signature_only_key(spki: &SubjectPublicKeyInfoOwned) -> bool {
    let oid = spki.algorithm.oid.to_string();
    if MlDsaLevel::from_oid(&oid).is_some() {
        return true;
    }
    oid.strip_prefix("1.3.6.1.5.5.7.6.")
        .and_then(|last| last.parse::<u32>().ok())
        .is_some_and(|n| (37..=54).contains(&n))
}

fn check_ca_common_name(common_name: &str) -> Result<(), PkiError> {
    if common_name.trim().is_empty() {
        return Err(PkiError::Lint(format!(
            "CA common name must be 1 to {MAX_COMMON_NAME} characters"
        )));
    }
    Ok(())
}

fn standard_extensions(
    template: &CertTemplate,
    subject: &Name,
    subject_ski: &[u8],
    authority_key_id: Option<Vec<u8>>,
) -> Result<Vec<Extension>, PkiError> {
    let mut out: Vec<Extension> = Vec::new();
    let mut push = |ext: Result<Extension, der::Error>| -> Result<(), PkiError> {
        out.push(ext.map_err(der_err)?);
        Ok(())
    };
    let bc = match template.kind {
        CertKind::Ca { path_len } => BasicConstraints {
            ca: true,
            path_len_constraint: path_len,
        },
        CertKind::Leaf { .. } => BasicConstraints {
            ca: false,
            path_len_constraint: None,
        },
    };
    push((true, &bc).to_extension(subject, &[]))?;

    if template.key_usage.is_empty() {
        return Err(PkiError::Lint("keyUsage must not be empty".to_owned()));
    }
    let is_ca = matches!(template.kind, CertKind::Ca { .. });
    let has_cert_sign = template.key_usage.contains(&KeyUsageBit::KeyCertSign);
    if is_ca != has_cert_sign {
        return Err(PkiError::Lint(
            "keyCertSign must be set exactly for CA certificates".to_owned(),
        ));
    }
    let mut key_usage = KeyUsage(KeyUsageBit::DigitalSignature.flag().into());
    for (i, bit) in template.key_usage.iter().enumerate() {
        if i == 0 {
            key_usage = KeyUsage(bit.flag().into());
        } else {
            key_usage.0 |= bit.flag();
        }
    }
    push((true, &key_usage).to_extension(subject, &[]))?;

    if !template.extended_key_usage.is_empty() {
        let eku = ExtendedKeyUsage(template.extended_key_usage.clone());
        push((false, &eku).to_extension(subject, &[]))?;
    }

    let sans = san_names(&template.sans)?;
    if !sans.is_empty() {
        push((subject.is_empty(), &SubjectAltName(sans)).to_extension(subject, &[]))?;
    } else if subject.is_empty() {
        return Err(PkiError::Lint(
            "a certificate without subject CN needs a SAN".to_owned(),
        ));
    }

    let ski = SubjectKeyIdentifier(OctetString::new(subject_ski.to_vec()).map_err(der_err)?);
    push((false, &ski).to_extension(subject, &[]))?;
    if let Some(key_id) = authority_key_id {
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(key_id).map_err(der_err)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        };
        push((false, &aki).to_extension(subject, &[]))?;
    }
    Ok(out)
}

pub(crate) fn san_names(sans: &Sans) -> Result<Vec<GeneralName>, PkiError> {
    if sans.is_empty() {
        return Ok(Vec::new());
    }
    check_sans(sans)?;
    let ia5 =
        |s: &String| Ia5String::new(s).map_err(|e| PkiError::InvalidSan(format!("{s:?}: {e}")));
    let mut names = Vec::new();
    for dns in &sans.dns {
        names.push(GeneralName::DnsName(ia5(dns)?));
    }
    for ip in &sans.ip {
        let bytes = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        names.push(GeneralName::IpAddress(
            OctetString::new(bytes).map_err(der_err)?,
        ));
    }
    for uri in &sans.uri {
        names.push(GeneralName::UniformResourceIdentifier(ia5(uri)?));
    }
    Ok(names)
}

/// `CN=<cn>` as a UTF8String, or the empty name. The CN goes through the RFC 4514
/// parser as hex-encoded DER (`2.5.4.3=#…`), so no character needs escaping.
pub(crate) fn subject_name(common_name: Option<&str>) -> Result<Name, PkiError> {
    let Some(cn) = common_name else {
        return Ok(Name::default());
    };
    if cn.is_empty() || cn.chars().count() > MAX_COMMON_NAME {
        return Err(PkiError::Lint(format!(
            "common name must be 1 to {MAX_COMMON_NAME} characters"
        )));
    }
    if cn.chars().any(char::is_control) {
        return Err(PkiError::Lint(
            "common name holds control characters".to_owned(),
        ));
    }
    let value = Utf8StringRef::new(cn)
        .map_err(der_err)?
        .to_der()
        .map_err(der_err)?;
    Name::from_str(&format!("2.5.4.3=#{}", hex::encode(value)))
        .map_err(|e| PkiError::Encoding(format!("subject name: {e}")))
}

fn x509_validity(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<Validity, PkiError> {
    if not_after.timestamp() <= not_before.timestamp() {
        return Err(PkiError::InvalidValidity(format!(
            "not_after {not_after} is not after not_before {not_before}"
        )));
    }
    let time = |t: DateTime<Utc>| -> Result<Time, PkiError> {
        let secs = u64::try_from(t.timestamp())
            .map_err(|_| PkiError::InvalidValidity(format!("time {t} is before 1970")))?;
        let dt = der::DateTime::from_unix_duration(Duration::from_secs(secs))
            .map_err(|e| PkiError::InvalidValidity(format!("time {t} out of range: {e}")))?;
        Ok(Time::from(dt))
    };
    Ok(Validity::new(time(not_before)?, time(not_after)?))
}

/// RFC 7093 §2 method 1: the leftmost 160 bits of the SHA-256 of the
/// subjectPublicKey BIT STRING value.
pub(crate) fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.subject_public_key.raw_bytes());
    digest.as_ref()[..20].to_vec()
}

fn der_err(e: der::Error) -> PkiError {
    PkiError::Encoding(format!("DER: {e}"))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use chrono::Duration;
    use x509_parser::extensions::ParsedExtension;

    use super::*;
    use crate::mldsa;
    use crate::testutil::{now, openssl};
    use crate::verify::{SignatureKind, verify_chain};

    fn testdata(name: &str) -> String {
        let path = format!("{}/testdata/rfc9881/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap()
    }

    /// pyca/cryptography ≥ 49: `$SIGIL_PYTHON` or the tools venv. Missing → fail.
    fn python() -> PathBuf {
        let path = std::env::var_os("SIGIL_PYTHON")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(".cache/sigil/tools/venv/bin/python"))
            })
            .unwrap();
        assert!(
            path.exists(),
            "no python with pyca/cryptography at {}: run scripts/ensure-nats.sh --with-crypto \
             or set SIGIL_PYTHON",
            path.display()
        );
        path
    }

    fn sans(dns: &str) -> Sans {
        Sans {
            dns: vec![dns.to_owned()],
            ip: vec!["10.0.0.7".parse().unwrap()],
            uri: vec!["spiffe://example.org/svc".to_owned()],
        }
    }

    struct Chain {
        root: PqCaMaterial,
        inter: PqCaMaterial,
        leaf_key: MlDsaKeyPair,
        leaf: IssuedCert,
    }

    fn chain(root_level: MlDsaLevel, inter_level: MlDsaLevel, leaf_level: MlDsaLevel) -> Chain {
        let t = now();
        let root = create_mldsa_root("PQ Root", root_level, t, t + Duration::days(30)).unwrap();
        let inter =
            create_mldsa_intermediate(&root, "PQ Issuing", inter_level, t, t + Duration::days(10))
                .unwrap();
        let leaf_key = MlDsaKeyPair::generate(leaf_level);
        let leaf = issue_mldsa_leaf(
            &inter,
            &MlDsaLeafRequest {
                profile: Profile::TlsServer,
                sans: sans("pq.example.com"),
                common_name: None,
                not_before: t,
                not_after: t + Duration::days(1),
                level: leaf_level,
                public_key: leaf_key.public_key().to_vec(),
            },
        )
        .unwrap();
        Chain {
            root,
            inter,
            leaf_key,
            leaf,
        }
    }

    fn verify(c: &Chain, at: DateTime<Utc>) -> crate::verify::VerifyReport {
        verify_chain(
            &c.leaf.cert_der,
            std::slice::from_ref(&c.inter.cert_der),
            std::slice::from_ref(&c.root.cert_der),
            at,
        )
    }

    #[test]
    fn mldsa_root_intermediate_leaf_chain_verifies() {
        for (r, i, l) in [
            (MlDsaLevel::L87, MlDsaLevel::L65, MlDsaLevel::L44),
            (MlDsaLevel::L65, MlDsaLevel::L65, MlDsaLevel::L65),
            (MlDsaLevel::L44, MlDsaLevel::L87, MlDsaLevel::L65),
        ] {
            let c = chain(r, i, l);
            let report = verify(&c, now() + Duration::hours(1));
            assert!(report.ok, "{report:#?}");
            let algs: Vec<_> = report
                .checks
                .iter()
                .filter(|c| c.kind == SignatureKind::MlDsa)
                .map(|c| c.algorithm.clone())
                .collect();
            assert_eq!(algs, [i.name(), r.name(), r.name()]);
            assert_eq!(c.leaf.facts.sans, sans("pq.example.com"));
            assert_eq!(c.leaf.facts.subject, "CN=pq.example.com");
            assert_eq!(c.leaf.facts.issuer, "CN=PQ Issuing");
            assert_eq!(c.leaf.facts.key_algorithm, l.name());
        }
    }

    #[test]
    fn mldsa_certificates_follow_rfc9881() {
        let c = chain(MlDsaLevel::L65, MlDsaLevel::L65, MlDsaLevel::L44);
        let leaf = parse_certificate(&c.leaf.cert_der).unwrap();
        // Parameters absent (not NULL) everywhere; raw key in the SPKI.
        assert_eq!(
            leaf.signature_algorithm.algorithm.to_id_string(),
            MlDsaLevel::L65.oid()
        );
        assert!(leaf.signature_algorithm.parameters.is_none());
        assert!(leaf.tbs_certificate.signature.parameters.is_none());
        assert!(leaf.public_key().algorithm.parameters.is_none());
        assert_eq!(
            leaf.public_key().subject_public_key.data.as_ref(),
            c.leaf_key.public_key()
        );
        let ku = leaf.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.digital_signature());
        assert!(!ku.value.key_encipherment() && !ku.value.key_agreement());
        assert!(!ku.value.data_encipherment() && !ku.value.key_cert_sign());
        let bc = leaf.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && !bc.value.ca);
        let eku = leaf.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth && !eku.value.client_auth);
        let has = |cert: &x509_parser::certificate::X509Certificate<'_>,
                   f: fn(&ParsedExtension<'_>) -> bool| {
            cert.iter_extensions().any(|e| f(e.parsed_extension()))
        };
        assert!(has(&leaf, |e| matches!(
            e,
            ParsedExtension::SubjectKeyIdentifier(_)
        )));
        assert!(has(&leaf, |e| matches!(
            e,
            ParsedExtension::AuthorityKeyIdentifier(_)
        )));

        for ca in [&c.root, &c.inter] {
            let cert = parse_certificate(&ca.cert_der).unwrap();
            let ku = cert.key_usage().unwrap().unwrap();
            assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
            assert!(!ku.value.key_encipherment() && !ku.value.key_agreement());
            assert!(!ku.value.data_encipherment());
            assert!(cert.basic_constraints().unwrap().unwrap().value.ca);
        }
        let root = parse_certificate(&c.root.cert_der).unwrap();
        assert!(!has(&root, |e| matches!(
            e,
            ParsedExtension::AuthorityKeyIdentifier(_)
        )));
        let inter = parse_certificate(&c.inter.cert_der).unwrap();
        assert_eq!(
            inter
                .basic_constraints()
                .unwrap()
                .unwrap()
                .value
                .path_len_constraint,
            Some(0)
        );
    }

    #[test]
    fn tampering_with_any_byte_of_the_leaf_fails() {
        let c = chain(MlDsaLevel::L44, MlDsaLevel::L44, MlDsaLevel::L44);
        let at = now() + Duration::hours(1);
        assert!(verify(&c, at).ok);
        let mut tried = 0;
        for i in (0..c.leaf.cert_der.len()).step_by(97) {
            let mut bad = c.leaf.cert_der.clone();
            bad[i] ^= 0x01;
            let report = verify_chain(
                &bad,
                std::slice::from_ref(&c.inter.cert_der),
                std::slice::from_ref(&c.root.cert_der),
                at,
            );
            assert!(!report.ok, "byte {i} flipped still verifies");
            tried += 1;
        }
        assert!(tried > 20);
    }

    #[test]
    fn wrong_root_expired_and_not_yet_valid_fail() {
        let c = chain(MlDsaLevel::L44, MlDsaLevel::L44, MlDsaLevel::L44);
        let t = now();
        let other =
            create_mldsa_root("PQ Root", MlDsaLevel::L44, t, t + Duration::days(30)).unwrap();
        let wrong = verify_chain(
            &c.leaf.cert_der,
            std::slice::from_ref(&c.inter.cert_der),
            std::slice::from_ref(&other.cert_der),
            t + Duration::hours(1),
        );
        assert!(!wrong.ok, "{wrong:#?}");
        assert!(!verify(&c, t + Duration::days(2)).ok, "leaf expired");
        assert!(!verify(&c, t - Duration::days(1)).ok, "not yet valid");
        // Intermediates given as roots do not make the real root unnecessary when the
        // intermediate is not self-signed.
        let inter_as_root = verify_chain(
            &c.leaf.cert_der,
            &[],
            std::slice::from_ref(&c.inter.cert_der),
            t + Duration::hours(1),
        );
        assert!(!inter_as_root.ok);
    }

    #[test]
    fn leaf_signature_verifies_with_pyca_cryptography() {
        let python = python();
        let c = chain(MlDsaLevel::L65, MlDsaLevel::L65, MlDsaLevel::L44);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("leaf.der"), &c.leaf.cert_der).unwrap();
        std::fs::write(dir.path().join("issuer.pk"), c.inter.key.public_key()).unwrap();
        std::fs::write(dir.path().join("inter.der"), &c.inter.cert_der).unwrap();
        std::fs::write(dir.path().join("root.der"), &c.root.cert_der).unwrap();
        let script = r#"
import sys
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import mldsa
leaf = x509.load_der_x509_certificate(open("leaf.der", "rb").read())
pk = mldsa.MLDSA65PublicKey.from_public_bytes(open("issuer.pk", "rb").read())
pk.verify(leaf.signature, leaf.tbs_certificate_bytes)
assert leaf.signature_algorithm_oid.dotted_string == "2.16.840.1.101.3.4.3.18"
assert isinstance(leaf.public_key(), mldsa.MLDSA44PublicKey)
inter = x509.load_der_x509_certificate(open("inter.der", "rb").read())
root = x509.load_der_x509_certificate(open("root.der", "rb").read())
leaf.verify_directly_issued_by(inter)
inter.verify_directly_issued_by(root)
root.verify_directly_issued_by(root)
try:
    pk.verify(leaf.signature, leaf.tbs_certificate_bytes + b"x")
    sys.exit("tampered TBS verified")
except Exception:
    pass
print("pyca ok")
"#;
        let out = Command::new(&python)
            .args(["-c", script])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && text.contains("pyca ok"), "{text}");
    }

    /// OpenSSL 3.0 (Debian 12) does not know the ML-DSA OIDs: it parses the structure
    /// and prints the extensions, but cannot load the key nor check the signature.
    #[test]
    fn openssl_parses_mldsa_certificates() {
        let c = chain(MlDsaLevel::L65, MlDsaLevel::L65, MlDsaLevel::L44);
        let dir = tempfile::tempdir().unwrap();
        for (name, der) in [
            ("root.der", &c.root.cert_der),
            ("inter.der", &c.inter.cert_der),
            ("leaf.der", &c.leaf.cert_der),
        ] {
            std::fs::write(dir.path().join(name), der).unwrap();
            let (_, text) = openssl(
                Path::new(dir.path()),
                &["x509", "-inform", "DER", "-in", name, "-text", "-noout"],
            );
            assert!(text.contains("Version: 3 (0x2)"), "{name}: {text}");
            assert!(
                text.contains("2.16.840.1.101.3.4.3.1") || text.contains("ML-DSA"),
                "{name}: {text}"
            );
            assert!(
                text.contains("X509v3 Key Usage: critical"),
                "{name}: {text}"
            );
            assert!(
                text.contains("X509v3 Basic Constraints: critical"),
                "{name}: {text}"
            );
        }
        let (_, text) = openssl(
            dir.path(),
            &[
                "x509", "-inform", "DER", "-in", "leaf.der", "-text", "-noout",
            ],
        );
        assert!(text.contains("DNS:pq.example.com"), "{text}");
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
        // Also the DER round-trips through openssl's parser byte for byte.
        let (ok, text) = openssl(
            dir.path(),
            &[
                "x509",
                "-inform",
                "DER",
                "-in",
                "leaf.der",
                "-outform",
                "DER",
                "-out",
                "again.der",
            ],
        );
        assert!(ok, "{text}");
        assert_eq!(
            std::fs::read(dir.path().join("again.der")).unwrap(),
            c.leaf.cert_der
        );
    }

    fn spki_public_key(pem_text: &str) -> Vec<u8> {
        let der = pem::decode(pem_text, &["PUBLIC KEY"]).unwrap();
        let spki = SubjectPublicKeyInfoOwned::from_der(&der).unwrap();
        assert!(spki.algorithm.parameters.is_none());
        spki.subject_public_key.raw_bytes().to_vec()
    }

    #[test]
    fn rfc9881_private_keys_import() {
        let public = spki_public_key(&testdata("ML-DSA-65.pub"));
        assert_eq!(public.len(), MlDsaLevel::L65.public_key_len());
        for name in ["ML-DSA-65-expanded.priv", "ML-DSA-65-both.priv"] {
            let der = pem::decode(&testdata(name), &["PRIVATE KEY"]).unwrap();
            let key = mldsa_key_from_pkcs8(&der, Some(&public)).unwrap();
            assert_eq!(key.level(), MlDsaLevel::L65);
            let sig = key.sign(b"RFC 9881 example message", &[]).unwrap();
            mldsa::verify(
                MlDsaLevel::L65,
                &public,
                b"RFC 9881 example message",
                &[],
                &sig,
            )
            .unwrap();
            // Without a public key there is nothing to pair it with.
            assert!(matches!(
                mldsa_key_from_pkcs8(&der, None),
                Err(PkiError::Encoding(_))
            ));
            // A public key of another key is caught.
            let other = MlDsaKeyPair::generate(MlDsaLevel::L65);
            assert!(matches!(
                mldsa_key_from_pkcs8(&der, Some(other.public_key())),
                Err(PkiError::KeyMismatch(_))
            ));
        }
        let seed = pem::decode(&testdata("ML-DSA-65-seed.priv"), &["PRIVATE KEY"]).unwrap();
        assert!(matches!(
            mldsa_key_from_pkcs8(&seed, Some(&public)),
            Err(PkiError::UnsupportedKey(_))
        ));
        assert!(mldsa_key_from_pkcs8(b"\x30\x00", Some(&public)).is_err());
    }

    #[test]
    fn rfc9881_example_ca_key_issues_a_leaf_that_verifies() {
        let public = spki_public_key(&testdata("ML-DSA-65.pub"));
        let der = pem::decode(&testdata("ML-DSA-65-expanded.priv"), &["PRIVATE KEY"]).unwrap();
        let key = mldsa_key_from_pkcs8(&der, Some(&public)).unwrap();
        let ca = PqCaMaterial::from_pem(&testdata("ML-DSA-65.crt"), key).unwrap();
        let t = now();
        let leaf_key = MlDsaKeyPair::generate(MlDsaLevel::L44);
        let leaf = issue_mldsa_leaf(
            &ca,
            &MlDsaLeafRequest {
                profile: Profile::TlsClient,
                sans: Sans {
                    uri: vec!["spiffe://example.org/client".to_owned()],
                    ..Sans::default()
                },
                common_name: Some("client".to_owned()),
                not_before: t,
                not_after: t + Duration::days(1),
                level: MlDsaLevel::L44,
                public_key: leaf_key.public_key().to_vec(),
            },
        )
        .unwrap();
        let report = verify_chain(&leaf.cert_der, &[], std::slice::from_ref(&ca.cert_der), t);
        assert!(report.ok, "{report:#?}");
    }

    #[test]
    fn pkcs8_round_trip() {
        for level in MlDsaLevel::ALL {
            let key = MlDsaKeyPair::generate(level);
            let der = mldsa_key_to_pkcs8(&key).unwrap();
            let again = mldsa_key_from_pkcs8(&der, None).unwrap();
            assert_eq!(again.public_key(), key.public_key());
            assert_eq!(again.secret_key(), key.secret_key());
        }
    }

    #[test]
    fn bad_requests_sign_nothing() {
        let c = chain(MlDsaLevel::L44, MlDsaLevel::L44, MlDsaLevel::L44);
        let t = now();
        let subject = MlDsaKeyPair::generate(MlDsaLevel::L44);
        let req = MlDsaLeafRequest {
            profile: Profile::TlsServer,
            sans: sans("ok.example.com"),
            common_name: None,
            not_before: t,
            not_after: t + Duration::days(1),
            level: MlDsaLevel::L44,
            public_key: subject.public_key().to_vec(),
        };
        let issue = |f: &dyn Fn(&mut MlDsaLeafRequest)| {
            let mut r = req.clone();
            f(&mut r);
            issue_mldsa_leaf(&c.inter, &r)
        };
        assert!(issue(&|_| {}).is_ok());
        assert!(matches!(
            issue(&|r| r.sans = Sans::default()),
            Err(PkiError::InvalidSan(_))
        ));
        assert!(matches!(
            issue(&|r| r.sans.dns = vec!["bad name!".to_owned()]),
            Err(PkiError::InvalidSan(_))
        ));
        assert!(matches!(
            issue(&|r| r.not_after = t + Duration::days(20)),
            Err(PkiError::InvalidValidity(_))
        ));
        assert!(matches!(
            issue(&|r| r.not_after = r.not_before),
            Err(PkiError::InvalidValidity(_))
        ));
        assert!(matches!(
            issue(&|r| r.public_key.truncate(100)),
            Err(PkiError::UnsupportedKey(_))
        ));
        assert!(matches!(
            issue(&|r| r.public_key = c.inter.key.public_key().to_vec()),
            Err(PkiError::Lint(_))
        ));
        assert!(matches!(
            issue(&|r| r.common_name = Some("x".repeat(65))),
            Err(PkiError::Lint(_))
        ));

        // Encipherment / agreement bits are refused for ML-DSA subjects.
        let spki = mldsa_spki(MlDsaLevel::L44, subject.public_key()).unwrap();
        let mut template = CertTemplate::leaf(
            Profile::TlsServer,
            sans("ok.example.com"),
            None,
            t,
            t + Duration::days(1),
        );
        template.key_usage.push(KeyUsageBit::KeyEncipherment);
        assert!(matches!(
            build_certificate(
                &template,
                &spki,
                CertIssuer::Cert(&c.inter.cert_der),
                &c.inter.key
            ),
            Err(PkiError::Lint(_))
        ));
        // The signer must hold the issuer certificate's key.
        template.key_usage = vec![KeyUsageBit::DigitalSignature];
        assert!(matches!(
            build_certificate(
                &template,
                &spki,
                CertIssuer::Cert(&c.inter.cert_der),
                &c.root.key
            ),
            Err(PkiError::KeyMismatch(_))
        ));
        // A leaf is not an issuer; a pathlen-0 intermediate signs no CA.
        assert!(matches!(
            build_certificate(
                &template,
                &spki,
                CertIssuer::Cert(&c.leaf.cert_der),
                &c.leaf_key
            ),
            Err(PkiError::Lint(_))
        ));
        assert!(matches!(
            create_mldsa_intermediate(
                &c.inter,
                "Deeper",
                MlDsaLevel::L44,
                t,
                t + Duration::days(1)
            ),
            Err(PkiError::Lint(_))
        ));
        assert!(matches!(
            create_mldsa_intermediate(
                &c.root,
                "PQ Root",
                MlDsaLevel::L44,
                t,
                t + Duration::days(1)
            ),
            Err(PkiError::Lint(_))
        ));
        // Self-signing with another key.
        let ca_template = CertTemplate::ca("X", t, t + Duration::days(1), None);
        assert!(matches!(
            build_certificate(&ca_template, &spki, CertIssuer::SelfSigned, &c.root.key),
            Err(PkiError::KeyMismatch(_))
        ));
        // A PqCaMaterial pairs only with its own key.
        assert!(matches!(
            PqCaMaterial::from_der(c.root.cert_der.clone(), c.inter.key.clone()),
            Err(PkiError::KeyMismatch(_))
        ));
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let c = chain(MlDsaLevel::L44, MlDsaLevel::L44, MlDsaLevel::L44);
        let dbg = format!("{:?}", c.root);
        assert!(dbg.contains("redacted"));
        assert!(dbg.contains("CN=PQ Root"));
        assert!(!dbg.contains(&format!("{:?}", &c.root.key.secret_key()[..4])));
    }
}
