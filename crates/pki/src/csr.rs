//! PKCS#10 certificate signing requests.

use sigil_contracts::types::{KeyAlgorithm, Sans};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA};
use x509_parser::prelude::FromDer as _;

use crate::composite::{self, CompositeAlg};
use crate::error::PkiError;
use crate::facts::{ip_from_bytes, signature_algorithm_name};
use crate::key::classify_spki;
use crate::lint::check_sans;
use crate::mldsa::{self, MlDsaLevel};
use crate::pem;
use crate::profile::RequestedExtensions;

mod build;

pub use build::{build_hybrid_csr, build_pq_csr};

/// Largest CSR (PEM text) [`parse_csr`] reads, in bytes.
pub const MAX_CSR_BYTES: usize = 64 * 1024;

/// A parsed PKCS#10 CSR whose self-signature has been verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCsr {
    /// The requester's public key (DER SubjectPublicKeyInfo), as it will appear in the
    /// certificate.
    pub spki_der: Vec<u8>,
    /// The public key's algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// DNS, IP and URI names from the extensionRequest (syntax already checked).
    pub sans: Sans,
    /// The first common name of the CSR's subject, if any.
    pub common_name: Option<String>,
    /// Extensions the CSR asked for besides names; the issuer refuses what the
    /// profile does not allow ([`crate::profile::check_csr_request`]).
    pub requested: RequestedExtensions,
    /// The raw `subjectPublicKey` (the SPKI's BIT STRING contents): an EC point, an
    /// Ed25519 key, an RSAPublicKey, an ML-DSA `pk`, or a composite `mldsa ‖ trad` key.
    pub public_key: Vec<u8>,
    /// A hybrid CSR's alternative (ML-DSA) public key and its parameter set, whose
    /// alternative proof of possession has been verified; `None` for other CSRs. See
    /// [`parse_csr`].
    pub alt_public_key: Option<(MlDsaLevel, Vec<u8>)>,
}

/// Parses and checks a PEM `CERTIFICATE REQUEST`.
///
/// In order: size cap ([`MAX_CSR_BYTES`]), PEM framing and strict DER
/// ([`PkiError::BadCsr`]), key algorithm ([`PkiError::WeakKey`] for RSA under 2048
/// bits, [`PkiError::UnsupportedKey`] for anything not P-256/P-384/Ed25519/RSA
/// 2048/3072/4096, ML-DSA-44/65/87 or one of the six composite algorithms of
/// [`CompositeAlg`]; checked before the signature so that small RSA keys get the
/// clearer error), proof of possession ([`PkiError::CsrSignatureInvalid`]), then the
/// extensionRequest: SANs must be DNS, IP or URI and well formed
/// ([`PkiError::InvalidSan`]), and `CA:true` is refused ([`PkiError::BadCsr`]).
/// Other requested extensions are recorded in [`ParsedCsr::requested`] for the
/// profile check ([`crate::profile::check_csr_request`]); what is issued is always
/// the profile's own set.
///
/// Post-quantum keys (see [`check_pq_proof_of_possession`]):
/// - pure ML-DSA (RFC 9881): SPKI algorithm id-ml-dsa-44/65/87 with parameters
///   absent; the CSR must be signed with the same ML-DSA algorithm (parameters absent),
///   pure ML-DSA with the empty context over the DER CertificationRequestInfo;
/// - composite (draft-ietf-lamps-pq-composite-sigs-19): SPKI algorithm one of the six
///   composite OIDs of [`CompositeAlg`], parameters absent; signed with the same
///   composite algorithm, i.e. ML-DSA and the traditional algorithm over
///   `M' = Prefix ‖ Label ‖ 0x00 ‖ PH(CertificationRequestInfo)` (empty context).
///
/// A CSR whose signature algorithm is not the key's own is [`PkiError::BadCsr`].
///
/// Hybrid CSRs (a classical key plus an alternative ML-DSA key for a hybrid leaf's
/// subjectAltPublicKeyInfo, in Bouncy Castle's form, see [`build_hybrid_csr`]): both
/// the classical and the alternative proof of possession are checked, and the
/// alternative key is returned in [`ParsedCsr::alt_public_key`].
pub fn parse_csr(pem_text: &str) -> Result<ParsedCsr, PkiError> {
    if pem_text.len() > MAX_CSR_BYTES {
        return Err(PkiError::BadCsr(format!(
            "CSR larger than {MAX_CSR_BYTES} bytes"
        )));
    }
    let der = pem::decode(
        pem_text,
        &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"],
    )
    .map_err(PkiError::BadCsr)?;
    let (rest, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| PkiError::BadCsr(format!("not a DER PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::BadCsr(
            "trailing bytes after the request".to_owned(),
        ));
    }
    let info = &csr.certification_request_info;
    if info.version.0 != 0 {
        return Err(PkiError::BadCsr(format!(
            "unknown CSR version {}",
            info.version.0
        )));
    }

    let key_algorithm = match check_pq_proof_of_possession(&csr)? {
        Some(alg) => alg,
        None => {
            let key_algorithm = classify_spki(&info.subject_pki)?;
            let sig_oid = &csr.signature_algorithm.algorithm;
            if *sig_oid == OID_PKCS1_SHA1WITHRSA || *sig_oid == OID_SHA1_WITH_RSA {
                return Err(PkiError::BadCsr("CSR is signed with SHA-1".to_owned()));
            }
            csr.verify_signature().map_err(|e| match e {
                X509Error::SignatureUnsupportedAlgorithm => PkiError::UnsupportedKey(format!(
                    "CSR signature algorithm {} with a {} key",
                    signature_algorithm_name(&csr.signature_algorithm),
                    key_algorithm.as_str()
                )),
                _ => PkiError::CsrSignatureInvalid,
            })?;
            key_algorithm
        }
    };
    let alt_public_key = check_alternative_key(&der, &csr, key_algorithm)?;

    let mut sans = Sans::default();
    let mut requested = RequestedExtensions::default();
    let mut extension_requests = 0;
    for attribute in info.iter_attributes() {
        let ParsedCriAttribute::ExtensionRequest(request) = attribute.parsed_attribute() else {
            continue;
        };
        extension_requests += 1;
        if extension_requests > 1 {
            return Err(PkiError::BadCsr(
                "more than one extensionRequest".to_owned(),
            ));
        }
        for extension in &request.extensions {
            match extension.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        add_san(&mut sans, name)?;
                    }
                }
                ParsedExtension::BasicConstraints(bc) if bc.ca => {
                    return Err(PkiError::BadCsr(
                        "CSR requests basicConstraints CA:true".to_owned(),
                    ));
                }
                ParsedExtension::ParseError { error } => {
                    return Err(PkiError::BadCsr(format!(
                        "requested extension {} does not parse: {error}",
                        extension.oid.to_id_string()
                    )));
                }
                ParsedExtension::BasicConstraints(_) | ParsedExtension::SubjectKeyIdentifier(_) => {
                }
                ParsedExtension::KeyUsage(ku) => {
                    let bits = [
                        (ku.digital_signature(), "digitalSignature"),
                        (ku.non_repudiation(), "nonRepudiation"),
                        (ku.key_encipherment(), "keyEncipherment"),
                        (ku.data_encipherment(), "dataEncipherment"),
                        (ku.key_agreement(), "keyAgreement"),
                        (ku.key_cert_sign(), "keyCertSign"),
                        (ku.crl_sign(), "cRLSign"),
                        (ku.encipher_only(), "encipherOnly"),
                        (ku.decipher_only(), "decipherOnly"),
                    ];
                    requested
                        .key_usage
                        .extend(bits.iter().filter(|(set, _)| *set).map(|(_, name)| *name));
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    let known = [
                        (eku.any, "2.5.29.37.0"),
                        (eku.server_auth, "1.3.6.1.5.5.7.3.1"),
                        (eku.client_auth, "1.3.6.1.5.5.7.3.2"),
                        (eku.code_signing, "1.3.6.1.5.5.7.3.3"),
                        (eku.email_protection, "1.3.6.1.5.5.7.3.4"),
                        (eku.time_stamping, "1.3.6.1.5.5.7.3.8"),
                        (eku.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
                    ];
                    requested.extended_key_usage.extend(
                        known
                            .iter()
                            .filter(|(set, _)| *set)
                            .map(|(_, oid)| (*oid).to_owned())
                            .chain(eku.other.iter().map(|o| o.to_id_string())),
                    );
                }
                _ => requested
                    .other
                    .push(extension_name(&extension.oid.to_id_string())),
            }
        }
    }
    check_sans(&sans)?;

    let common_name = info
        .subject
        .iter_common_name()
        .next()
        .map(|cn| {
            cn.as_str()
                .map(str::to_owned)
                .map_err(|e| PkiError::BadCsr(format!("common name is not a string: {e}")))
        })
        .transpose()?;

    Ok(ParsedCsr {
        spki_der: info.subject_pki.raw.to_vec(),
        key_algorithm,
        sans,
        common_name,
        requested,
        public_key: info.subject_pki.subject_public_key.data.to_vec(),
        alt_public_key,
    })
}

/// The alternative ML-DSA key of a hybrid CSR, after checking its proof of
/// possession; `Ok(None)` when the CSR has none of the three alternative attributes.
///
/// The form is Bouncy Castle's (`PKCS10CertificationRequestBuilder.build(signer,
/// altPublicKey, altSigner)`, and [`build_hybrid_csr`]): three attributes of the
/// CertificationRequestInfo (not extensionRequest entries), each with exactly one
/// value — subjectAltPublicKeyInfo (2.5.29.72) = an RFC 9881 ML-DSA SPKI,
/// altSignatureAlgorithm (2.5.29.73) = the same ML-DSA OID with parameters absent,
/// altSignatureValue (2.5.29.74) = a BIT STRING holding a pure ML-DSA signature (empty
/// context) over the DER CertificationRequestInfo without the altSignatureValue
/// attribute. The classical signature (already checked) covers all three.
///
/// Refused: only some of the three, a duplicate, a non-ML-DSA alternative key, a
/// mismatching algorithm, parameters present, a PQ main key ([`PkiError::BadCsr`] /
/// [`PkiError::UnsupportedKey`]); an alternative signature that does not verify
/// ([`PkiError::AltSignature`]).
fn check_alternative_key(
    der_bytes: &[u8],
    csr: &X509CertificationRequest<'_>,
    key_algorithm: KeyAlgorithm,
) -> Result<Option<(MlDsaLevel, Vec<u8>)>, PkiError> {
    use der::{Decode as _, Encode as _};
    use x509_cert::request::CertReq;

    let names = [
        (
            build::ALT_PUBLIC_KEY_OID,
            "subjectAltPublicKeyInfo (2.5.29.72)",
        ),
        (
            build::ALT_SIGNATURE_ALGORITHM_OID,
            "altSignatureAlgorithm (2.5.29.73)",
        ),
        (
            build::ALT_SIGNATURE_VALUE_OID,
            "altSignatureValue (2.5.29.74)",
        ),
    ];
    let count = |oid: &const_oid::ObjectIdentifier| {
        csr.certification_request_info
            .iter_attributes()
            .filter(|a| a.oid.to_id_string() == oid.to_string())
            .count()
    };
    let counts: Vec<usize> = names.iter().map(|(oid, _)| count(oid)).collect();
    if counts.iter().all(|c| *c == 0) {
        return Ok(None);
    }
    if counts.iter().any(|c| *c != 1) {
        let have: Vec<&str> = names
            .iter()
            .zip(&counts)
            .map(|((_, name), c)| {
                if *c == 0 {
                    "missing"
                } else if *c > 1 {
                    "repeated"
                } else {
                    name
                }
            })
            .collect();
        return Err(PkiError::BadCsr(format!(
            "a hybrid CSR carries each of the attributes subjectAltPublicKeyInfo, \
             altSignatureAlgorithm and altSignatureValue exactly once; found: {}",
            have.join(", ")
        )));
    }
    if MlDsaLevel::from_key_algorithm(key_algorithm).is_some()
        || CompositeAlg::from_key_algorithm(key_algorithm).is_some()
    {
        return Err(PkiError::BadCsr(format!(
            "alternative (hybrid) attributes go with a classical CSR key, not {}",
            key_algorithm.as_str()
        )));
    }

    let bad = |what: &str, e: der::Error| PkiError::BadCsr(format!("{what}: {e}"));
    let request = CertReq::from_der(der_bytes).map_err(|e| bad("hybrid CSR", e))?;
    let single = |oid: const_oid::ObjectIdentifier| -> Result<der::asn1::Any, PkiError> {
        let attribute = request
            .info
            .attributes
            .iter()
            .find(|a| a.oid == oid)
            .ok_or_else(|| PkiError::BadCsr(format!("attribute {oid} is missing")))?;
        let mut values = attribute.values.iter();
        match (values.next(), values.next()) {
            (Some(value), None) => Ok(value.clone()),
            _ => Err(PkiError::BadCsr(format!(
                "attribute {oid} must have exactly one value"
            ))),
        }
    };
    let spki: spki::SubjectPublicKeyInfoOwned = single(build::ALT_PUBLIC_KEY_OID)?
        .decode_as()
        .map_err(|e| bad("subjectAltPublicKeyInfo", e))?;
    let algorithm: spki::AlgorithmIdentifierOwned = single(build::ALT_SIGNATURE_ALGORITHM_OID)?
        .decode_as()
        .map_err(|e| bad("altSignatureAlgorithm", e))?;
    let signature: der::asn1::BitString = single(build::ALT_SIGNATURE_VALUE_OID)?
        .decode_as()
        .map_err(|e| bad("altSignatureValue", e))?;

    let key_oid = spki.algorithm.oid.to_string();
    let level = MlDsaLevel::from_oid(&key_oid).ok_or_else(|| {
        PkiError::UnsupportedKey(format!(
            "alternative public key algorithm {key_oid}; only ML-DSA-44/65/87 are supported"
        ))
    })?;
    let public = spki.subject_public_key.as_bytes().ok_or_else(|| {
        PkiError::BadCsr("alternative public key BIT STRING has unused bits".to_owned())
    })?;
    if spki.algorithm.parameters.is_some() || public.len() != level.public_key_len() {
        return Err(PkiError::BadCsr(format!(
            "alternative {} public key must have absent parameters and {} bytes",
            level.name(),
            level.public_key_len()
        )));
    }
    if algorithm.oid != spki.algorithm.oid || algorithm.parameters.is_some() {
        return Err(PkiError::BadCsr(format!(
            "altSignatureAlgorithm {} does not match the alternative {} key (parameters absent)",
            algorithm.oid,
            level.name()
        )));
    }
    let signature = signature.as_bytes().ok_or_else(|| {
        PkiError::BadCsr("altSignatureValue BIT STRING has unused bits".to_owned())
    })?;

    // The CertificationRequestInfo as the alternative key signed it.
    let mut pre = request.info.clone();
    pre.attributes = der::asn1::SetOfVec::try_from(
        request
            .info
            .attributes
            .iter()
            .filter(|a| a.oid != build::ALT_SIGNATURE_VALUE_OID)
            .cloned()
            .collect::<Vec<_>>(),
    )
    .map_err(|e| bad("hybrid CSR attributes", e))?;
    let pre_der = pre.to_der().map_err(|e| bad("hybrid CSR", e))?;
    mldsa::verify(level, public, &pre_der, &[], signature).map_err(|_| {
        PkiError::AltSignature(
            "the CSR's altSignatureValue does not verify with its subjectAltPublicKeyInfo: \
             no proof of possession of the alternative key"
                .to_owned(),
        )
    })?;
    Ok(Some((level, public.to_vec())))
}

/// The proof of possession of a post-quantum CSR key: `Ok(None)` when the key is not
/// ML-DSA or composite (the classical path checks it), `Ok(Some(algorithm))` when the
/// PQ signature verifies.
///
/// Refused: parameters present in the SPKI or signature AlgorithmIdentifier, a
/// signature algorithm other than the key's own, a BIT STRING with unused bits, a
/// public key of the wrong length ([`PkiError::BadCsr`]); a signature that does not
/// verify ([`PkiError::CsrSignatureInvalid`]).
fn check_pq_proof_of_possession(
    csr: &X509CertificationRequest<'_>,
) -> Result<Option<KeyAlgorithm>, PkiError> {
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let key_oid = spki.algorithm.algorithm.to_id_string();
    let (name, public_len, key_algorithm) = if let Some(level) = MlDsaLevel::from_oid(&key_oid) {
        (level.name(), level.public_key_len(), level.key_algorithm())
    } else if let Some(alg) = CompositeAlg::from_oid(&key_oid) {
        (alg.name(), alg.public_key_len(), alg.key_algorithm())
    } else {
        return Ok(None);
    };
    if spki.algorithm.parameters.is_some() {
        return Err(PkiError::BadCsr(format!(
            "{name} public key algorithm must have absent parameters"
        )));
    }
    let public = &spki.subject_public_key;
    if public.unused_bits != 0 || public.data.len() != public_len {
        return Err(PkiError::BadCsr(format!(
            "{name} public key must be {public_len} bytes, got {}",
            public.data.len()
        )));
    }
    let sig_alg = &csr.signature_algorithm;
    if sig_alg.algorithm.to_id_string() != key_oid || sig_alg.parameters.is_some() {
        return Err(PkiError::BadCsr(format!(
            "a CSR for an {name} key must be signed with {name} (parameters absent), not {}",
            signature_algorithm_name(sig_alg)
        )));
    }
    if csr.signature_value.unused_bits != 0 {
        return Err(PkiError::BadCsr(
            "signature BIT STRING has unused bits".to_owned(),
        ));
    }
    let signature = &csr.signature_value.data;
    let verified = match MlDsaLevel::from_oid(&key_oid) {
        Some(level) => mldsa::verify(level, &public.data, info.raw, &[], signature),
        None => composite::verify_signature(&key_oid, &public.data, info.raw, &[], signature),
    };
    verified.map_err(|_| PkiError::CsrSignatureInvalid)?;
    Ok(Some(key_algorithm))
}

/// `name (oid)` for extensions a CSR might ask for, else the dotted OID.
fn extension_name(oid: &str) -> String {
    let name = match oid {
        "2.5.29.30" => "nameConstraints",
        "2.5.29.32" => "certificatePolicies",
        "2.5.29.33" => "policyMappings",
        "2.5.29.36" => "policyConstraints",
        "2.5.29.54" => "inhibitAnyPolicy",
        "2.5.29.35" => "authorityKeyIdentifier",
        "2.5.29.31" => "cRLDistributionPoints",
        "2.5.29.18" => "issuerAltName",
        "2.5.29.9" => "subjectDirectoryAttributes",
        "1.3.6.1.5.5.7.1.1" => "authorityInfoAccess",
        "1.3.6.1.5.5.7.1.11" => "subjectInfoAccess",
        "1.3.6.1.5.5.7.1.24" => "TLS feature",
        "1.3.6.1.4.1.11129.2.4.3" => "CT precertificate poison",
        _ => return oid.to_owned(),
    };
    format!("{name} ({oid})")
}

fn add_san(sans: &mut Sans, name: &GeneralName<'_>) -> Result<(), PkiError> {
    match name {
        GeneralName::DNSName(dns) => sans.dns.push((*dns).to_owned()),
        GeneralName::URI(uri) => sans.uri.push((*uri).to_owned()),
        GeneralName::IPAddress(bytes) => sans.ip.push(
            ip_from_bytes(bytes)
                .ok_or_else(|| PkiError::BadCsr(format!("IP SAN of {} bytes", bytes.len())))?,
        ),
        other => {
            return Err(PkiError::InvalidSan(format!(
                "unsupported SAN type in CSR: {other}; only DNS, IP and URI are issued"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rcgen::CustomExtension;

    use super::*;
    use crate::key::generate_key;
    use crate::testutil::{openssl_csr, rcgen_csr, to_pem};

    #[test]
    fn parses_and_verifies_csrs() {
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
        ] {
            let key = generate_key(alg).unwrap();
            let pem = rcgen_csr(&key, &["svc.example.com", "10.0.0.1", "::1"], |p| {
                p.subject_alt_names.push(rcgen::SanType::URI(
                    "spiffe://example.org/svc".try_into().unwrap(),
                ));
            });
            let csr = parse_csr(&pem).unwrap();
            assert_eq!(csr.key_algorithm, alg);
            assert_eq!(csr.sans.dns, vec!["svc.example.com"]);
            assert_eq!(
                csr.sans.ip,
                vec![
                    "10.0.0.1".parse::<std::net::IpAddr>().unwrap(),
                    "::1".parse().unwrap()
                ]
            );
            assert_eq!(csr.sans.uri, vec!["spiffe://example.org/svc"]);
            assert_eq!(csr.common_name.as_deref(), Some("rcgen self signed cert"));
        }
    }

    #[test]
    fn flipped_signature_byte_is_no_proof_of_possession() {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let der = pem::decode(
            &rcgen_csr(&key, &["a.example"], |_| {}),
            &["CERTIFICATE REQUEST"],
        )
        .unwrap();
        let mut tampered = der.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        assert_eq!(
            parse_csr(&to_pem("CERTIFICATE REQUEST", &tampered)),
            Err(PkiError::CsrSignatureInvalid)
        );
        // A changed request body (here: one byte of the SAN) fails the same way.
        let mut body = der;
        let at = body.windows(9).position(|w| w == b"a.example").unwrap();
        body[at] = b'b';
        assert_eq!(
            parse_csr(&to_pem("CERTIFICATE REQUEST", &body)),
            Err(PkiError::CsrSignatureInvalid)
        );
    }

    #[test]
    fn non_pem_and_malformed_input_are_bad_csrs() {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let pem_text = rcgen_csr(&key, &["a.example"], |_| {});
        let der = pem::decode(&pem_text, &["CERTIFICATE REQUEST"]).unwrap();
        let mut trailing = der.clone();
        trailing.push(0);
        let cases = [
            "".to_owned(),
            "hello".to_owned(),
            String::from_utf8_lossy(&der).into_owned(),
            pem_text.replace("CERTIFICATE REQUEST", "CERTIFICATE"),
            to_pem("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00"),
            to_pem("CERTIFICATE REQUEST", &trailing),
            format!("{pem_text}{pem_text}"),
            format!("{}{pem_text}", " ".repeat(MAX_CSR_BYTES)),
        ];
        for case in cases {
            assert!(
                matches!(parse_csr(&case), Err(PkiError::BadCsr(_))),
                "{case:.80}"
            );
        }
    }

    #[test]
    fn ca_request_is_refused() {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = rcgen_csr(&key, &["a.example"], |p| {
            // basicConstraints { cA TRUE }, critical.
            let mut bc =
                CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 3, 1, 1, 0xff]);
            bc.set_criticality(true);
            p.custom_extensions.push(bc);
        });
        assert!(matches!(parse_csr(&pem), Err(PkiError::BadCsr(m)) if m.contains("CA:true")));
        let (pem, _) = openssl_csr(
            &[
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
            ],
            "DNS:ca.example",
        );
        assert!(matches!(parse_csr(&pem), Err(PkiError::BadCsr(m)) if m.contains("CA:true")));
    }

    #[test]
    fn bad_sans_are_refused() {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = rcgen_csr(&key, &["bad_name.example"], |_| {});
        assert!(matches!(parse_csr(&pem), Err(PkiError::InvalidSan(_))));
        let pem = rcgen_csr(&key, &["a.example"], |p| {
            p.subject_alt_names.push(rcgen::SanType::Rfc822Name(
                "a@example.com".try_into().unwrap(),
            ));
        });
        assert!(matches!(parse_csr(&pem), Err(PkiError::InvalidSan(_))));
    }

    fn pq_sans() -> Sans {
        Sans {
            dns: vec!["pq.example.com".to_owned()],
            ip: vec!["192.0.2.9".parse().unwrap()],
            uri: vec!["spiffe://example.org/pq".to_owned()],
        }
    }

    /// The DER of a PEM CSR.
    fn der_of(pem_text: &str) -> Vec<u8> {
        pem::decode(pem_text, &["CERTIFICATE REQUEST"]).unwrap()
    }

    #[test]
    fn mldsa_and_composite_csrs_round_trip() {
        let mut cases: Vec<(Box<dyn crate::pqcert::CertSigner>, KeyAlgorithm, Vec<u8>)> =
            Vec::new();
        for level in MlDsaLevel::ALL {
            let key = crate::mldsa::MlDsaKeyPair::generate(level);
            let public = key.public_key().to_vec();
            cases.push((Box::new(key), level.key_algorithm(), public));
        }
        for alg in CompositeAlg::ALL {
            let key = crate::CompositeKeyPair::generate(alg).unwrap();
            let public = key.public_key();
            cases.push((Box::new(key), alg.key_algorithm(), public));
        }
        for (key, alg, public) in cases {
            let pem = build_pq_csr(key.as_ref(), Some("pq client"), &pq_sans()).unwrap();
            let csr = parse_csr(&pem).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(csr.key_algorithm, alg);
            assert_eq!(csr.public_key, public, "{alg:?}");
            assert_eq!(csr.sans, pq_sans());
            assert_eq!(csr.common_name.as_deref(), Some("pq client"));
            assert_eq!(csr.alt_public_key, None);

            // Proof of possession: a flipped signature byte (the ML-DSA part and, for
            // composites, the traditional part) or a changed body fails.
            let der = der_of(&pem);
            for at in [der.len() - 1, der.len() - 200] {
                let mut tampered = der.clone();
                tampered[at] ^= 0x01;
                assert_eq!(
                    parse_csr(&to_pem("CERTIFICATE REQUEST", &tampered)),
                    Err(PkiError::CsrSignatureInvalid),
                    "{alg:?} byte {at}"
                );
            }
            let mut body = der.clone();
            let at = body
                .windows(14)
                .position(|w| w == b"pq.example.com")
                .unwrap();
            body[at] = b'q';
            assert_eq!(
                parse_csr(&to_pem("CERTIFICATE REQUEST", &body)),
                Err(PkiError::CsrSignatureInvalid),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn pq_csr_signed_with_another_key_or_algorithm_is_refused() {
        let key = crate::mldsa::MlDsaKeyPair::generate(MlDsaLevel::L65);
        let other = crate::mldsa::MlDsaKeyPair::generate(MlDsaLevel::L65);
        // The request names `key` but `other` signs it.
        let info = build::request_info(&key, None, &pq_sans()).unwrap();
        let tbs = der::Encode::to_der(&info).unwrap();
        let sig = crate::pqcert::CertSigner::sign(&other, &tbs).unwrap();
        let pem = build::encode_request(info, &key, &sig).unwrap();
        assert_eq!(parse_csr(&pem), Err(PkiError::CsrSignatureInvalid));

        // An ML-DSA-44 signer on an ML-DSA-65 key: the algorithms disagree.
        let small = crate::mldsa::MlDsaKeyPair::generate(MlDsaLevel::L44);
        let info = build::request_info(&key, None, &pq_sans()).unwrap();
        let tbs = der::Encode::to_der(&info).unwrap();
        let sig = crate::pqcert::CertSigner::sign(&small, &tbs).unwrap();
        let pem = build::encode_request(info, &small, &sig).unwrap();
        assert!(
            matches!(parse_csr(&pem), Err(PkiError::BadCsr(m)) if m.contains("must be signed with ML-DSA-65")),
            "{:?}",
            parse_csr(&pem)
        );

        // A composite key's request signed by its ML-DSA half alone.
        let composite =
            crate::CompositeKeyPair::generate(CompositeAlg::MlDsa65EcdsaP256Sha512).unwrap();
        let info = build::request_info(&composite, None, &pq_sans()).unwrap();
        let tbs = der::Encode::to_der(&info).unwrap();
        let sig = crate::pqcert::CertSigner::sign(composite.mldsa(), &tbs).unwrap();
        let pem = build::encode_request(info, composite.mldsa(), &sig).unwrap();
        assert!(matches!(parse_csr(&pem), Err(PkiError::BadCsr(_))));
    }

    #[test]
    fn hybrid_csrs_prove_both_keys() {
        for (alg, level) in [
            (KeyAlgorithm::EcdsaP256, MlDsaLevel::L65),
            (KeyAlgorithm::EcdsaP384, MlDsaLevel::L87),
            (KeyAlgorithm::Ed25519, MlDsaLevel::L44),
        ] {
            let classical = generate_key(alg).unwrap();
            let alt = crate::mldsa::MlDsaKeyPair::generate(level);
            let pem = build_hybrid_csr(&classical, &alt, Some("hybrid"), &pq_sans()).unwrap();
            let csr = parse_csr(&pem).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(csr.key_algorithm, alg);
            assert_eq!(csr.alt_public_key, Some((level, alt.public_key().to_vec())));
            assert_eq!(csr.sans, pq_sans());
            assert!(csr.requested.other.is_empty(), "{:?}", csr.requested);

            // Any changed byte breaks the classical signature over everything.
            let der = der_of(&pem);
            let mut tampered = der.clone();
            let at = der.len() / 2;
            tampered[at] ^= 0x01;
            assert!(parse_csr(&to_pem("CERTIFICATE REQUEST", &tampered)).is_err());

            // A valid classical signature over an alternative signature made by
            // another ML-DSA key: no proof of possession of the alternative key.
            let other = crate::mldsa::MlDsaKeyPair::generate(level);
            let pem =
                build::hybrid_csr_with(&classical, &alt, &other, true, None, &pq_sans()).unwrap();
            assert!(
                matches!(parse_csr(&pem), Err(PkiError::AltSignature(_))),
                "{:?}",
                parse_csr(&pem)
            );
            // The key and algorithm without a value: not a hybrid CSR.
            let pem =
                build::hybrid_csr_with(&classical, &alt, &alt, false, None, &pq_sans()).unwrap();
            assert!(
                matches!(parse_csr(&pem), Err(PkiError::BadCsr(m)) if m.contains("missing")),
                "{:?}",
                parse_csr(&pem)
            );
        }
        // RSA and PQ keys are not hybrid main keys here.
        let alt = crate::mldsa::MlDsaKeyPair::generate(MlDsaLevel::L65);
        let rsa = openssl_csr(&["-newkey", "rsa:2048"], "DNS:rsa.example").1;
        assert!(matches!(
            build_hybrid_csr(&rsa, &alt, None, &pq_sans()),
            Err(PkiError::UnsupportedKey(_))
        ));
    }

    /// The new parsing paths (PQ signatures, hybrid attributes through x509-cert) on
    /// mangled input: no flipped bit anywhere in the DER gets a request through, and
    /// nothing panics.
    #[test]
    fn every_flipped_bit_is_refused() {
        let classical = generate_key(KeyAlgorithm::Ed25519).unwrap();
        let alt = crate::mldsa::MlDsaKeyPair::generate(MlDsaLevel::L44);
        let composite =
            crate::CompositeKeyPair::generate(CompositeAlg::MlDsa44Ed25519Sha512).unwrap();
        let sans = Sans {
            dns: vec!["f.example".to_owned()],
            ..Sans::default()
        };
        for pem in [
            build_hybrid_csr(&classical, &alt, Some("f"), &sans).unwrap(),
            build_pq_csr(&alt, Some("f"), &sans).unwrap(),
            build_pq_csr(&composite, Some("f"), &sans).unwrap(),
        ] {
            let der = der_of(&pem);
            assert!(parse_csr(&pem).is_ok());
            for at in (0..der.len()).step_by(5) {
                let mut mangled = der.clone();
                mangled[at] ^= 1 << (at % 8);
                let result = parse_csr(&to_pem("CERTIFICATE REQUEST", &mangled));
                assert!(result.is_err(), "byte {at} of {}: {result:?}", der.len());
            }
        }
    }

    #[test]
    fn rsa_sizes_from_openssl() {
        let (pem, _) = openssl_csr(&["-newkey", "rsa:1024"], "DNS:weak.example");
        assert!(
            matches!(parse_csr(&pem), Err(PkiError::WeakKey(_))),
            "{:?}",
            parse_csr(&pem)
        );
        let (pem, _) = openssl_csr(&["-newkey", "rsa:2048"], "DNS:rsa.example");
        let csr = parse_csr(&pem).unwrap();
        assert_eq!(csr.key_algorithm, KeyAlgorithm::Rsa2048);
        assert_eq!(csr.common_name.as_deref(), Some("openssl.test"));
        let (pem, _) = openssl_csr(
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
            "DNS:p521.example",
        );
        assert!(matches!(parse_csr(&pem), Err(PkiError::UnsupportedKey(_))));
    }
}
