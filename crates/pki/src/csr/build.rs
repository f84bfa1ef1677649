//! Building PKCS#10 requests rcgen cannot build: for ML-DSA (RFC 9881) and composite
//! ML-DSA (draft-ietf-lamps-pq-composite-sigs-19) keys, and hybrid requests that carry
//! an alternative ML-DSA key with its own proof of possession (Bouncy Castle's form).
//!
//! The request is made of `x509-cert` types and encoded with `der`; no DER is written
//! by hand.

use const_oid::ObjectIdentifier;
use der::asn1::{Any, BitString, SetOfVec};
use der::{Decode as _, Encode as _};
use sigil_contracts::types::Sans;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::attr::Attribute;
use x509_cert::ext::ToExtension as _;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq, Version};

use crate::error::PkiError;
use crate::key::SecretKey;
use crate::mldsa::MlDsaKeyPair;
use crate::pem;
use crate::pqcert::{CertSigner, mldsa_algorithm, mldsa_spki, san_names, subject_name};

/// Builds a PEM `CERTIFICATE REQUEST` for `key`'s public key, signed with `key`
/// (pure ML-DSA with the empty context for an [`MlDsaKeyPair`](crate::mldsa::MlDsaKeyPair),
/// a composite signature with the empty context for a
/// [`CompositeKeyPair`](crate::CompositeKeyPair)), which is exactly what
/// [`parse_csr`](crate::parse_csr) verifies.
///
/// The subject is `CN=<common_name>` (UTF8String) or empty; `sans`, when not empty,
/// go into an extensionRequest holding one subjectAltName extension.
pub fn build_pq_csr(
    key: &dyn CertSigner,
    common_name: Option<&str>,
    sans: &Sans,
) -> Result<String, PkiError> {
    let info = request_info(key, common_name, sans)?;
    let tbs = info.to_der().map_err(der_err)?;
    let signature = key.sign(&tbs)?;
    encode_request(info, key, &signature)
}

/// The unsigned CertificationRequestInfo for `key`, `common_name` and `sans`.
pub(crate) fn request_info(
    key: &dyn CertSigner,
    common_name: Option<&str>,
    sans: &Sans,
) -> Result<CertReqInfo, PkiError> {
    let subject = subject_name(common_name)?;
    let mut info = CertReqInfo {
        version: Version::V1,
        subject,
        public_key: key.subject_public_key_info()?,
        attributes: Default::default(),
    };
    let names = san_names(sans)?;
    if !names.is_empty() {
        let san = (&SubjectAltName(names))
            .to_extension(&info.subject, &[])
            .map_err(der_err)?;
        let attribute = Attribute::try_from(ExtensionReq(vec![san])).map_err(der_err)?;
        info.attributes.insert(attribute).map_err(der_err)?;
    }
    Ok(info)
}

/// `info` signed: the CertificationRequest as PEM.
pub(crate) fn encode_request(
    info: CertReqInfo,
    key: &dyn CertSigner,
    signature: &[u8],
) -> Result<String, PkiError> {
    let request = CertReq {
        info,
        algorithm: key.algorithm(),
        signature: BitString::from_bytes(signature).map_err(der_err)?,
    };
    Ok(pem::encode(
        "CERTIFICATE REQUEST",
        &request.to_der().map_err(der_err)?,
    ))
}

fn der_err(e: der::Error) -> PkiError {
    PkiError::Encoding(format!("CSR encoding: {e}"))
}

/// subjectAltPublicKeyInfo (ITU-T X.509 (10/2019) §9.8), as a CSR attribute.
pub(crate) const ALT_PUBLIC_KEY_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.72");
/// altSignatureAlgorithm, as a CSR attribute.
pub(crate) const ALT_SIGNATURE_ALGORITHM_OID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.5.29.73");
/// altSignatureValue, as a CSR attribute.
pub(crate) const ALT_SIGNATURE_VALUE_OID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.5.29.74");

/// Builds a hybrid ("Catalyst") PEM `CERTIFICATE REQUEST` in Bouncy Castle's form
/// (`PKCS10CertificationRequestBuilder.build(signer, altPublicKey, altSigner)`):
///
/// 1. the CertificationRequestInfo for `classical`'s key gets two attributes,
///    subjectAltPublicKeyInfo (2.5.29.72, one value: `alt`'s RFC 9881 SPKI) and
///    altSignatureAlgorithm (2.5.29.73, one value: id-ml-dsa-*, parameters absent);
/// 2. `alt` signs the DER of that CertificationRequestInfo (pure ML-DSA, empty context);
/// 3. the signature is added as attribute altSignatureValue (2.5.29.74, one BIT
///    STRING value), and `classical` signs the complete CertificationRequestInfo.
///
/// Attributes are a DER SET OF, so they are sorted by encoding in both signed forms.
/// `classical` must be ECDSA P-256, ECDSA P-384 or Ed25519
/// ([`PkiError::UnsupportedKey`] otherwise). [`parse_csr`](crate::parse_csr) verifies
/// both signatures and returns `alt`'s key in
/// [`ParsedCsr::alt_public_key`](crate::ParsedCsr::alt_public_key).
pub fn build_hybrid_csr(
    classical: &SecretKey,
    alt: &MlDsaKeyPair,
    common_name: Option<&str>,
    sans: &Sans,
) -> Result<String, PkiError> {
    hybrid_csr_with(classical, alt, alt, true, common_name, sans)
}

/// [`build_hybrid_csr`] with the alternative key of the SPKI (`alt`) and the one that
/// signs (`alt_signer`) given apart, and the altSignatureValue attribute optional:
/// tests build broken requests with it.
pub(crate) fn hybrid_csr_with(
    classical: &SecretKey,
    alt: &MlDsaKeyPair,
    alt_signer: &MlDsaKeyPair,
    with_alt_signature: bool,
    common_name: Option<&str>,
    sans: &Sans,
) -> Result<String, PkiError> {
    let signer = ClassicalSigner::new(classical)?;
    let mut info = request_info(&signer, common_name, sans)?;
    insert_attribute(
        &mut info,
        ALT_PUBLIC_KEY_OID,
        Any::encode_from(&mldsa_spki(alt.level(), alt.public_key())?).map_err(der_err)?,
    )?;
    insert_attribute(
        &mut info,
        ALT_SIGNATURE_ALGORITHM_OID,
        Any::encode_from(&mldsa_algorithm(alt.level())).map_err(der_err)?,
    )?;
    if with_alt_signature {
        let alt_signature = alt_signer.sign(&info.to_der().map_err(der_err)?, &[])?;
        insert_attribute(
            &mut info,
            ALT_SIGNATURE_VALUE_OID,
            Any::encode_from(&BitString::from_bytes(&alt_signature).map_err(der_err)?)
                .map_err(der_err)?,
        )?;
    }
    let signature = signer.sign(&info.to_der().map_err(der_err)?)?;
    encode_request(info, &signer, &signature)
}

/// Adds the single-valued attribute `oid` = `value` to `info`.
fn insert_attribute(
    info: &mut CertReqInfo,
    oid: ObjectIdentifier,
    value: Any,
) -> Result<(), PkiError> {
    let mut values = SetOfVec::new();
    values.insert(value).map_err(der_err)?;
    info.attributes
        .insert(Attribute { oid, values })
        .map_err(der_err)
}

/// A classical key (through rcgen / ring) as a request signer.
struct ClassicalSigner {
    key_pair: rcgen::KeyPair,
    algorithm: AlgorithmIdentifierOwned,
}

impl ClassicalSigner {
    fn new(key: &SecretKey) -> Result<ClassicalSigner, PkiError> {
        const ECDSA_WITH_SHA256: ObjectIdentifier =
            ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
        const ECDSA_WITH_SHA384: ObjectIdentifier =
            ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
        const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
        let key_pair = key.key_pair()?;
        let oid = if key_pair.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
            ECDSA_WITH_SHA256
        } else if key_pair.algorithm() == &rcgen::PKCS_ECDSA_P384_SHA384 {
            ECDSA_WITH_SHA384
        } else if key_pair.algorithm() == &rcgen::PKCS_ED25519 {
            ED25519
        } else {
            return Err(PkiError::UnsupportedKey(
                "hybrid CSRs are built for ECDSA P-256/P-384 and Ed25519 keys".to_owned(),
            ));
        };
        Ok(ClassicalSigner {
            key_pair,
            // RFC 5758 §3.2 / RFC 8410 §3: parameters absent.
            algorithm: AlgorithmIdentifierOwned {
                oid,
                parameters: None,
            },
        })
    }
}

impl CertSigner for ClassicalSigner {
    fn algorithm(&self) -> AlgorithmIdentifierOwned {
        self.algorithm.clone()
    }

    fn subject_public_key_info(&self) -> Result<SubjectPublicKeyInfoOwned, PkiError> {
        use rcgen::PublicKeyData as _;
        SubjectPublicKeyInfoOwned::from_der(&self.key_pair.subject_public_key_info())
            .map_err(der_err)
    }

    fn sign(&self, tbs_der: &[u8]) -> Result<Vec<u8>, PkiError> {
        use rcgen::SigningKey as _;
        self.key_pair
            .sign(tbs_der)
            .map_err(|e| PkiError::crypto("CSR signing", e))
    }
}
