//! Hybrid alternative-signature ("Catalyst") certificates: ITU-T X.509 (10/2019) §9.8.
//!
//! A hybrid certificate is an ordinary classical certificate (ECDSA P-256 or P-384,
//! signed with the issuer's classical key) that every TLS stack accepts today, plus
//! three **non-critical** extensions that carry a post-quantum signature next to it:
//!
//! | extension | OID | value |
//! | --- | --- | --- |
//! | subjectAltPublicKeyInfo | 2.5.29.72 | the subject's ML-DSA key, encoded as an RFC 9881 SubjectPublicKeyInfo (ML-DSA OID, parameters absent, raw `pk` in the BIT STRING) |
//! | altSignatureAlgorithm | 2.5.29.73 | AlgorithmIdentifier of the issuer's ML-DSA key (parameters absent) |
//! | altSignatureValue | 2.5.29.74 | BIT STRING: the issuer's ML-DSA signature (empty context) over the preTBSCertificate |
//!
//! The preTBSCertificate is the TBSCertificate without its `signature`
//! AlgorithmIdentifier and without the altSignatureValue extension, DER re-encoded (see
//! [`pre_tbs_certificate`]). A CA carries 72 (its own ML-DSA key, used to alt-sign what
//! it issues) and 73 + 74 (its issuer's alternative signature; a root signs itself). A
//! leaf always carries 73 + 74 and carries 72 only when the requester supplied an
//! ML-DSA public key.
//!
//! Issuance uses rcgen twice with identical parameters (serial and validity are fixed
//! up front): first with 72/73, through a signer that records the TBSCertificate rcgen
//! asks it to sign; the preTBSCertificate derived from that TBS is ML-DSA-signed; then
//! again with 74 added. The two recorded TBSCertificates are decoded and must agree
//! apart from extension 74 ([`PkiError::Lint`] otherwise), and the final certificate's
//! alternative and classical signatures are verified before it is returned. Extension
//! values are encoded with `spki` / `der` types; nothing is written by hand.

use std::cell::Cell;
use std::fmt;

use chrono::{DateTime, Utc};
use const_oid::ObjectIdentifier;
use der::asn1::BitString;
use der::{Decode as _, Encode as _, Sequence};
use rcgen::{CertificateParams, CustomExtension, PublicKeyData, SigningKey};
use sigil_contracts::types::KeyAlgorithm;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::ext::{Extension, Extensions};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;
use x509_cert::{Certificate, TbsCertificate, Version};

use crate::ca::{CaMaterial, intermediate_params, root_params};
use crate::error::PkiError;
use crate::facts::parse_certificate;
use crate::key::generate_key;
#[cfg(test)]
use crate::leaf::prepare_leaf;
use crate::leaf::{IssuedCert, LeafRequest, PreparedLeaf, finish_leaf, prepare_leaf_with};
use crate::mldsa::{self, MlDsaKeyPair, MlDsaLevel};
use crate::prepared::PreparedCert;
use crate::profile::LeafOptions;

/// subjectAltPublicKeyInfo (ITU-T X.509 §9.8.2), 2.5.29.72.
pub const SUBJECT_ALT_PUBLIC_KEY_INFO: &str = "2.5.29.72";
/// altSignatureAlgorithm (ITU-T X.509 §9.8.3), 2.5.29.73.
pub const ALT_SIGNATURE_ALGORITHM: &str = "2.5.29.73";
/// altSignatureValue (ITU-T X.509 §9.8.4), 2.5.29.74.
pub const ALT_SIGNATURE_VALUE: &str = "2.5.29.74";

const OID_ALT_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.72");
const OID_ALT_SIG_ALGORITHM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.73");
const OID_ALT_SIG_VALUE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.74");
const ARCS_ALT_PUBLIC_KEY: [u64; 4] = [2, 5, 29, 72];
const ARCS_ALT_SIG_ALGORITHM: [u64; 4] = [2, 5, 29, 73];
const ARCS_ALT_SIG_VALUE: [u64; 4] = [2, 5, 29, 74];

/// Classical algorithm of a new hybrid CA unless configured otherwise.
pub const DEFAULT_HYBRID_CLASSICAL: KeyAlgorithm = KeyAlgorithm::EcdsaP256;
/// ML-DSA parameter set of a new hybrid CA unless configured otherwise.
pub const DEFAULT_HYBRID_MLDSA: MlDsaLevel = MlDsaLevel::L65;

/// A hybrid CA: a classical CA certificate (with its classical key) that carries the
/// CA's ML-DSA public key in subjectAltPublicKeyInfo, and that ML-DSA key pair.
///
/// Build one with [`create_hybrid_root`], [`create_hybrid_intermediate`] or
/// [`HybridCaMaterial::from_parts`], which check that the ML-DSA key is the one in the
/// certificate. The fields are public for reading (and storing); issuance re-checks
/// both keys against the certificate every time. `Debug` prints no key bytes: the
/// classical key shows as `[redacted]` and the ML-DSA key as its level and public key
/// length only.
#[derive(Clone)]
pub struct HybridCaMaterial {
    /// The CA certificate and its classical (ECDSA) key.
    pub classical: CaMaterial,
    /// The CA's ML-DSA key pair; its public key is the certificate's
    /// subjectAltPublicKeyInfo.
    pub alt_key: MlDsaKeyPair,
}

impl fmt::Debug for HybridCaMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HybridCaMaterial")
            .field("classical", &self.classical)
            .field("alt_key", &self.alt_key)
            .finish()
    }
}

impl HybridCaMaterial {
    /// Pairs a classical CA with its ML-DSA key. Fails with [`PkiError::AltSignature`]
    /// when the certificate has no (or a malformed) subjectAltPublicKeyInfo and with
    /// [`PkiError::KeyMismatch`] when `alt_key` is not the key it names.
    pub fn from_parts(classical: CaMaterial, alt_key: MlDsaKeyPair) -> Result<Self, PkiError> {
        let ca = HybridCaMaterial { classical, alt_key };
        ca.check_alt_key()?;
        Ok(ca)
    }

    /// The CA certificate as DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.classical.cert_der
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> &str {
        &self.classical.cert_pem
    }

    /// ML-DSA parameter set of the CA's alternative key.
    pub fn alt_level(&self) -> MlDsaLevel {
        self.alt_key.level()
    }

    fn check_alt_key(&self) -> Result<(), PkiError> {
        let cert = decode_certificate(&self.classical.cert_der)?;
        let (level, public) = subject_alt_public_key(&cert)?.ok_or_else(|| {
            PkiError::AltSignature(
                "CA certificate has no subjectAltPublicKeyInfo (2.5.29.72)".to_owned(),
            )
        })?;
        if level != self.alt_key.level() || public != self.alt_key.public_key() {
            return Err(PkiError::KeyMismatch(format!(
                "{} key does not belong to the certificate for {}",
                self.alt_key.level().name(),
                self.classical.subject()
            )));
        }
        Ok(())
    }
}

/// Creates a self-signed hybrid root CA with fresh keys: a classical key of
/// `classical_alg` (P-256 or P-384; anything else is [`PkiError::UnsupportedKey`])
/// and an ML-DSA key of `mldsa_level`.
///
/// The classical part is what [`create_root`](crate::create_root) makes; the root adds
/// its ML-DSA key (2.5.29.72) and alt-signs itself with it (2.5.29.73/74).
pub fn create_hybrid_root(
    common_name: &str,
    classical_alg: KeyAlgorithm,
    mldsa_level: MlDsaLevel,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<HybridCaMaterial, PkiError> {
    check_classical_alg(classical_alg)?;
    let params = root_params(common_name, not_before, not_after)?;
    let key = generate_key(classical_alg)?;
    let alt_key = MlDsaKeyPair::generate(mldsa_level);
    let recorder = RecordingSigner::new(key.key_pair()?);
    let signed = sign_twice(
        params,
        &recorder,
        |p| p.self_signed(&recorder),
        Some((mldsa_level, alt_key.public_key())),
        &alt_key,
    )?;
    check_classical_signature(&signed.cert_der, None)?;
    verify_alt_signature(&signed.cert_der, &signed.cert_der)?;
    HybridCaMaterial::from_parts(CaMaterial::from_der(signed.cert_der, key)?, alt_key)
}

/// Creates a hybrid intermediate CA with fresh keys, signed classically by the
/// parent's classical key and alternatively by the parent's ML-DSA key.
///
/// The classical checks and fields are those of
/// [`create_intermediate`](crate::create_intermediate) (pathLenConstraint 0, validity
/// inside the parent's, no reused key, …).
pub fn create_hybrid_intermediate(
    parent: &HybridCaMaterial,
    common_name: &str,
    classical_alg: KeyAlgorithm,
    mldsa_level: MlDsaLevel,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<HybridCaMaterial, PkiError> {
    check_classical_alg(classical_alg)?;
    parent.check_alt_key()?;
    let key = generate_key(classical_alg)?;
    let (params, key_pair) =
        intermediate_params(&parent.classical, common_name, &key, not_before, not_after)?;
    let alt_key = MlDsaKeyPair::generate(mldsa_level);
    let issuer = parent.classical.issuer_with(RecordingSigner::new)?;
    let signed = sign_twice(
        params,
        issuer.key(),
        |p| p.signed_by(&key_pair, &issuer),
        Some((mldsa_level, alt_key.public_key())),
        &parent.alt_key,
    )?;
    check_classical_signature(&signed.cert_der, Some(parent.cert_der()))?;
    verify_alt_signature(&signed.cert_der, parent.cert_der())?;
    HybridCaMaterial::from_parts(CaMaterial::from_der(signed.cert_der, key)?, alt_key)
}

/// Issues a hybrid leaf: exactly what [`issue_leaf`](crate::issue_leaf) issues (same
/// checks, same fields, same post-signing validation), plus altSignatureAlgorithm and
/// altSignatureValue (the issuer's ML-DSA signature), plus subjectAltPublicKeyInfo
/// when `subject_alt_public_key` is given.
///
/// `subject_alt_public_key` is the requester's raw ML-DSA public key (FIPS 204 `pk`)
/// and its parameter set. It must have the right length and differ from the issuer's
/// ML-DSA key ([`PkiError::UnsupportedKey`] / [`PkiError::Lint`]). This function does
/// not prove that the requester holds the matching private key: the caller does (as
/// for a classical key, through a CSR).
pub fn issue_hybrid_leaf(
    issuer: &HybridCaMaterial,
    req: &LeafRequest,
    subject_alt_public_key: Option<(MlDsaLevel, Vec<u8>)>,
) -> Result<IssuedCert, PkiError> {
    prepare_hybrid_leaf(issuer, req, subject_alt_public_key, &LeafOptions::default())?.sign()
}

/// [`issue_hybrid_leaf`] in two steps: every check before signing now (the serial is
/// fixed), both signatures on [`PreparedCert::sign`]. `opts` adds the CRL
/// distribution point and OCSP URLs.
pub fn prepare_hybrid_leaf<'a>(
    issuer: &'a HybridCaMaterial,
    req: &LeafRequest,
    subject_alt_public_key: Option<(MlDsaLevel, Vec<u8>)>,
    opts: &LeafOptions,
) -> Result<PreparedCert<'a>, PkiError> {
    issuer.check_alt_key()?;
    if let Some((level, public)) = &subject_alt_public_key {
        if public.len() != level.public_key_len() {
            return Err(PkiError::UnsupportedKey(format!(
                "{} public key must be {} bytes, got {}",
                level.name(),
                level.public_key_len(),
                public.len()
            )));
        }
        if public.as_slice() == issuer.alt_key.public_key() {
            return Err(PkiError::Lint(
                "subject ML-DSA key must differ from the issuer's".to_owned(),
            ));
        }
    }
    let PreparedLeaf {
        params,
        subject_key,
        subject_spki,
    } = prepare_leaf_with(&issuer.classical, req, opts)?;
    let serial = params
        .serial_number
        .as_ref()
        .map(|s| s.to_bytes())
        .unwrap_or_default();
    let req = req.clone();
    Ok(PreparedCert::new(
        &serial,
        req.profile,
        Box::new(move || {
            let rcgen_issuer = issuer.classical.issuer_with(RecordingSigner::new)?;
            let signed = sign_twice(
                params,
                rcgen_issuer.key(),
                |p| p.signed_by(&subject_key, &rcgen_issuer),
                subject_alt_public_key
                    .as_ref()
                    .map(|(level, public)| (*level, public.as_slice())),
                &issuer.alt_key,
            )?;
            verify_alt_signature(&signed.cert_der, issuer.cert_der())?;
            finish_leaf(&issuer.classical, signed.cert_der, &req, &subject_spki)
        }),
    ))
}

/// The ML-DSA parameter set of the key in `cert_der`'s subjectAltPublicKeyInfo
/// (2.5.29.72), `None` when the certificate has none.
pub fn subject_alt_key_level(cert_der: &[u8]) -> Result<Option<MlDsaLevel>, PkiError> {
    let cert = decode_certificate(cert_der)?;
    Ok(subject_alt_public_key(&cert)?.map(|(level, _)| level))
}

/// Verifies the alternative signature of `cert_der` (DER) against the ML-DSA key in
/// `issuer_cert_der`'s subjectAltPublicKeyInfo: the certificate's
/// altSignatureAlgorithm must name exactly the issuer key's ML-DSA algorithm
/// (parameters absent), and its altSignatureValue must be a valid ML-DSA signature
/// (empty context) over its [`pre_tbs_certificate`]. For a self-signed root pass the
/// same DER twice.
///
/// Only the signature is checked: names, validity, extensions and the classical
/// signature are the path validator's business. Errors: [`PkiError::Encoding`] when
/// either input is not a DER certificate or an alt extension is malformed;
/// [`PkiError::AltSignature`] when an extension is missing or duplicated, the
/// algorithms differ, or the signature does not verify.
pub fn verify_alt_signature(cert_der: &[u8], issuer_cert_der: &[u8]) -> Result<(), PkiError> {
    // Only the issuer's extension 72 is read, so it need not re-encode exactly.
    let issuer = Certificate::from_der(issuer_cert_der)
        .map_err(der_error("issuer is not a DER X.509 certificate"))?;
    let (level, public) = subject_alt_public_key(&issuer)?.ok_or_else(|| {
        PkiError::AltSignature(
            "issuer certificate has no subjectAltPublicKeyInfo (2.5.29.72)".to_owned(),
        )
    })?;
    let cert = decode_certificate(cert_der)?;
    let algorithm = alt_signature_algorithm(&cert)?.ok_or_else(|| {
        PkiError::AltSignature("certificate has no altSignatureAlgorithm (2.5.29.73)".to_owned())
    })?;
    if algorithm.oid.to_string() != level.oid() || algorithm.parameters.is_some() {
        return Err(PkiError::AltSignature(format!(
            "altSignatureAlgorithm {} does not match the issuer's {} key",
            algorithm.oid,
            level.name()
        )));
    }
    let signature = alt_signature_value(&cert)?.ok_or_else(|| {
        PkiError::AltSignature("certificate has no altSignatureValue (2.5.29.74)".to_owned())
    })?;
    let pre_tbs = pre_tbs_from_tbs(cert.tbs_certificate())?;
    mldsa::verify(level, &public, &pre_tbs, &[], &signature).map_err(|_| {
        PkiError::AltSignature(format!(
            "{} signature over the preTBSCertificate does not verify",
            level.name()
        ))
    })
}

/// The preTBSCertificate of a DER certificate (ITU-T X.509 (10/2019) §9.8): its
/// TBSCertificate without the `signature` AlgorithmIdentifier and without the
/// altSignatureValue extension (2.5.29.74), DER re-encoded. This is the message the
/// alternative signature signs.
///
/// The construction matches Bouncy Castle's `V3TBSCertificateGenerator
/// .generatePreTBSCertificate()` (bc-java `org.bouncycastle.asn1.x509`): the
/// TBSCertificate's fields in their own order — version, serialNumber, issuer,
/// validity, subject, subjectPublicKeyInfo, issuerUniqueID, subjectUniqueID,
/// extensions — with `signature` left out, and the extensions minus altSignatureValue
/// (order kept). The certificate must be strict DER that re-encodes byte for byte
/// ([`PkiError::Encoding`] otherwise), so every field is carried over exactly as
/// signed.
pub fn pre_tbs_certificate(cert_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    let cert = decode_certificate(cert_der)?;
    pre_tbs_from_tbs(cert.tbs_certificate())
}

/// `PreTBSCertificate`: `TBSCertificate` (RFC 5280 §4.1) without `signature`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct PreTbsCertificate {
    #[asn1(context_specific = "0", default = "Default::default")]
    version: Version,
    serial_number: SerialNumber,
    issuer: Name,
    validity: Validity,
    subject: Name,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    issuer_unique_id: Option<BitString>,
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", optional = "true")]
    subject_unique_id: Option<BitString>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Extensions>,
}

fn pre_tbs_from_tbs(tbs: &TbsCertificate) -> Result<Vec<u8>, PkiError> {
    let alt_values = tbs.extensions().map_or(0, |exts| {
        exts.iter()
            .filter(|e| e.extn_id == OID_ALT_SIG_VALUE)
            .count()
    });
    if alt_values > 1 {
        return Err(PkiError::AltSignature(
            "more than one altSignatureValue extension".to_owned(),
        ));
    }
    let extensions = tbs
        .extensions()
        .map(|exts| without_alt_signature_value(exts))
        .filter(|exts| !exts.is_empty());
    let pre = PreTbsCertificate {
        version: tbs.version(),
        serial_number: tbs.serial_number().clone(),
        issuer: tbs.issuer().clone(),
        validity: *tbs.validity(),
        subject: tbs.subject().clone(),
        subject_public_key_info: tbs.subject_public_key_info().clone(),
        issuer_unique_id: tbs.issuer_unique_id().clone(),
        subject_unique_id: tbs.subject_unique_id().clone(),
        extensions,
    };
    pre.to_der()
        .map_err(der_error("encoding preTBSCertificate"))
}

fn without_alt_signature_value(extensions: &[Extension]) -> Extensions {
    extensions
        .iter()
        .filter(|e| e.extn_id != OID_ALT_SIG_VALUE)
        .cloned()
        .collect()
}

/// Decodes a certificate with x509-cert and checks that its TBSCertificate re-encodes
/// to exactly the bytes that were signed (so a preTBSCertificate built from the decoded
/// fields is the signed one minus the removed parts).
fn decode_certificate(cert_der: &[u8]) -> Result<Certificate, PkiError> {
    let cert = Certificate::from_der(cert_der).map_err(der_error("not a DER X.509 certificate"))?;
    let raw_tbs = parse_certificate(cert_der)?
        .tbs_certificate
        .as_ref()
        .to_vec();
    let reencoded = cert
        .tbs_certificate()
        .to_der()
        .map_err(der_error("re-encoding TBSCertificate"))?;
    if reencoded != raw_tbs {
        return Err(PkiError::Encoding(
            "TBSCertificate does not re-encode to the signed bytes (not strict DER / RFC 5280)"
                .to_owned(),
        ));
    }
    Ok(cert)
}

fn der_error(context: &'static str) -> impl Fn(der::Error) -> PkiError {
    move |e| PkiError::Encoding(format!("{context}: {e}"))
}

/// The value of the single extension `oid`, if present (two are an error).
fn extension_value<'a>(
    cert: &'a Certificate,
    oid: ObjectIdentifier,
    name: &str,
) -> Result<Option<&'a [u8]>, PkiError> {
    let mut found = cert
        .tbs_certificate()
        .extensions()
        .into_iter()
        .flatten()
        .filter(|e| e.extn_id == oid);
    let first = found.next();
    if found.next().is_some() {
        return Err(PkiError::AltSignature(format!(
            "certificate has more than one {name} extension"
        )));
    }
    Ok(first.map(|e| e.extn_value.as_bytes()))
}

/// The ML-DSA key in `cert_der`'s subjectAltPublicKeyInfo: level and raw public key,
/// `None` when it has none (also what possession proofs check a hybrid credential's
/// alternative signature with).
pub(crate) fn subject_alt_public_key_of(
    cert_der: &[u8],
) -> Result<Option<(MlDsaLevel, Vec<u8>)>, PkiError> {
    subject_alt_public_key(&decode_certificate(cert_der)?)
}

/// The ML-DSA key in subjectAltPublicKeyInfo: level and raw public key.
fn subject_alt_public_key(cert: &Certificate) -> Result<Option<(MlDsaLevel, Vec<u8>)>, PkiError> {
    let Some(value) = extension_value(cert, OID_ALT_PUBLIC_KEY, "subjectAltPublicKeyInfo")? else {
        return Ok(None);
    };
    let spki = SubjectPublicKeyInfoOwned::from_der(value)
        .map_err(der_error("malformed subjectAltPublicKeyInfo"))?;
    let level = MlDsaLevel::from_oid(&spki.algorithm.oid.to_string())
        .filter(|_| spki.algorithm.parameters.is_none())
        .ok_or_else(|| {
            PkiError::AltSignature(format!(
                "subjectAltPublicKeyInfo holds a {} key; only ML-DSA (RFC 9881, parameters \
                 absent) is supported",
                spki.algorithm.oid
            ))
        })?;
    let public = spki.subject_public_key.as_bytes().ok_or_else(|| {
        PkiError::Encoding("subjectAltPublicKeyInfo key has unused bits".to_owned())
    })?;
    if public.len() != level.public_key_len() {
        return Err(PkiError::Encoding(format!(
            "subjectAltPublicKeyInfo {} key is {} bytes, expected {}",
            level.name(),
            public.len(),
            level.public_key_len()
        )));
    }
    Ok(Some((level, public.to_vec())))
}

fn alt_signature_algorithm(
    cert: &Certificate,
) -> Result<Option<AlgorithmIdentifierOwned>, PkiError> {
    extension_value(cert, OID_ALT_SIG_ALGORITHM, "altSignatureAlgorithm")?
        .map(|value| {
            AlgorithmIdentifierOwned::from_der(value)
                .map_err(der_error("malformed altSignatureAlgorithm"))
        })
        .transpose()
}

fn alt_signature_value(cert: &Certificate) -> Result<Option<Vec<u8>>, PkiError> {
    let Some(value) = extension_value(cert, OID_ALT_SIG_VALUE, "altSignatureValue")? else {
        return Ok(None);
    };
    let bits = BitString::from_der(value).map_err(der_error("malformed altSignatureValue"))?;
    bits.as_bytes()
        .map(<[u8]>::to_vec)
        .map(Some)
        .ok_or_else(|| PkiError::Encoding("altSignatureValue has unused bits".to_owned()))
}

fn check_classical_alg(alg: KeyAlgorithm) -> Result<(), PkiError> {
    match alg {
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => Ok(()),
        other => Err(PkiError::UnsupportedKey(format!(
            "hybrid CAs use ECDSA P-256 or P-384 as their classical key, not {}",
            other.as_str()
        ))),
    }
}

/// Checks the classical signature of `cert_der` with the key of `issuer_der` (`None`:
/// self-signed).
fn check_classical_signature(cert_der: &[u8], issuer_der: Option<&[u8]>) -> Result<(), PkiError> {
    let cert = parse_certificate(cert_der)?;
    let issuer = issuer_der.map(parse_certificate).transpose()?;
    cert.verify_signature(issuer.as_ref().map(|i| i.public_key()))
        .map_err(|_| {
            PkiError::Lint("issued certificate does not verify with the issuer's key".to_owned())
        })
}

/// The issuer's classical key for rcgen, recording every message (TBSCertificate) it
/// is asked to sign.
struct RecordingSigner<K> {
    key: K,
    signed: Cell<Vec<Vec<u8>>>,
}

impl<K: SigningKey> RecordingSigner<K> {
    fn new(key: K) -> Self {
        RecordingSigner {
            key,
            signed: Cell::new(Vec::new()),
        }
    }

    /// The one message signed since the last call.
    fn take_one(&self) -> Result<Vec<u8>, PkiError> {
        let mut signed = self.signed.take();
        match (signed.pop(), signed.is_empty()) {
            (Some(tbs), true) => Ok(tbs),
            _ => Err(PkiError::Crypto(
                "expected rcgen to sign exactly one TBSCertificate".to_owned(),
            )),
        }
    }
}

impl<K: SigningKey> PublicKeyData for RecordingSigner<K> {
    fn der_bytes(&self) -> &[u8] {
        self.key.der_bytes()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.key.algorithm()
    }
}

impl<K: SigningKey> SigningKey for RecordingSigner<K> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let mut signed = self.signed.take();
        signed.push(msg.to_vec());
        self.signed.set(signed);
        self.key.sign(msg)
    }
}

/// What [`sign_twice`] produced.
struct TwoPass {
    /// The final certificate (with altSignatureValue).
    cert_der: Vec<u8>,
    /// First pass: the TBSCertificate without altSignatureValue, and its certificate
    /// (kept for tests).
    #[cfg_attr(not(test), allow(dead_code))]
    first_tbs: Vec<u8>,
    #[cfg_attr(not(test), allow(dead_code))]
    first_cert_der: Vec<u8>,
    /// Second pass: the TBSCertificate that was signed into `cert_der`.
    #[cfg_attr(not(test), allow(dead_code))]
    second_tbs: Vec<u8>,
}

/// The issuance procedure of the module docs. `sign` signs the parameters with
/// `recorder` (directly or inside an rcgen issuer); `subject_alt` is the subject's
/// ML-DSA key for 2.5.29.72; `alt_signer` is the issuer's ML-DSA key.
fn sign_twice(
    mut params: CertificateParams,
    recorder: &RecordingSigner<impl SigningKey>,
    sign: impl Fn(&CertificateParams) -> Result<rcgen::Certificate, rcgen::Error>,
    subject_alt: Option<(MlDsaLevel, &[u8])>,
    alt_signer: &MlDsaKeyPair,
) -> Result<TwoPass, PkiError> {
    if params.serial_number.is_none() {
        return Err(PkiError::Lint(
            "hybrid certificates need an explicit serial number".to_owned(),
        ));
    }
    if let Some((level, public)) = subject_alt {
        let spki = SubjectPublicKeyInfoOwned {
            algorithm: mldsa_algorithm(level)?,
            subject_public_key: BitString::from_bytes(public)
                .map_err(der_error("encoding subjectAltPublicKeyInfo"))?,
        };
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &ARCS_ALT_PUBLIC_KEY,
                spki.to_der()
                    .map_err(der_error("encoding subjectAltPublicKeyInfo"))?,
            ));
    }
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            &ARCS_ALT_SIG_ALGORITHM,
            mldsa_algorithm(alt_signer.level())?
                .to_der()
                .map_err(der_error("encoding altSignatureAlgorithm"))?,
        ));

    let signing = |p: &CertificateParams| {
        sign(p).map_err(|e| PkiError::crypto("signing hybrid certificate", e))
    };
    let first_cert_der = signing(&params)?.der().to_vec();
    let first_tbs = recorder.take_one()?;
    let first =
        TbsCertificate::from_der(&first_tbs).map_err(der_error("recorded TBSCertificate"))?;
    let alt_signature = alt_signer.sign(&pre_tbs_from_tbs(&first)?, &[])?;

    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            &ARCS_ALT_SIG_VALUE,
            BitString::from_bytes(&alt_signature)
                .and_then(|bits| bits.to_der())
                .map_err(der_error("encoding altSignatureValue"))?,
        ));
    let cert_der = signing(&params)?.der().to_vec();
    let second_tbs = recorder.take_one()?;

    check_tbs_agree(&first_tbs, &second_tbs)?;
    if parse_certificate(&cert_der)?.tbs_certificate.as_ref() != second_tbs.as_slice() {
        return Err(PkiError::Lint(
            "signed certificate does not hold the recorded TBSCertificate".to_owned(),
        ));
    }
    Ok(TwoPass {
        cert_der,
        first_tbs,
        first_cert_der,
        second_tbs,
    })
}

/// The two passes' TBSCertificates must be equal apart from altSignatureValue: the
/// first has none, the second exactly one, and every other field (including the
/// `signature` AlgorithmIdentifier and the other extensions, in order) is the same.
fn check_tbs_agree(first: &[u8], second: &[u8]) -> Result<(), PkiError> {
    let decode =
        |der: &[u8]| TbsCertificate::from_der(der).map_err(der_error("recorded TBSCertificate"));
    let (a, b) = (decode(first)?, decode(second)?);
    let count = |t: &TbsCertificate| {
        t.extensions().map_or(0, |exts| {
            exts.iter()
                .filter(|e| e.extn_id == OID_ALT_SIG_VALUE)
                .count()
        })
    };
    let rest = |t: &TbsCertificate| t.extensions().map(|exts| without_alt_signature_value(exts));
    let agree = count(&a) == 0
        && count(&b) == 1
        && a.version() == b.version()
        && a.serial_number() == b.serial_number()
        && a.signature() == b.signature()
        && a.issuer() == b.issuer()
        && a.validity() == b.validity()
        && a.subject() == b.subject()
        && a.subject_public_key_info() == b.subject_public_key_info()
        && a.issuer_unique_id() == b.issuer_unique_id()
        && a.subject_unique_id() == b.subject_unique_id()
        && rest(&a) == rest(&b);
    if agree {
        Ok(())
    } else {
        Err(PkiError::Lint(
            "the two TBSCertificates of a hybrid certificate differ beyond altSignatureValue"
                .to_owned(),
        ))
    }
}

/// RFC 9881 AlgorithmIdentifier of an ML-DSA level: its OID, parameters absent.
fn mldsa_algorithm(level: MlDsaLevel) -> Result<AlgorithmIdentifierOwned, PkiError> {
    let oid = ObjectIdentifier::new(level.oid())
        .map_err(|e| PkiError::Encoding(format!("ML-DSA OID: {e}")))?;
    Ok(AlgorithmIdentifierOwned {
        oid,
        parameters: None,
    })
}

#[cfg(test)]
mod tests;
