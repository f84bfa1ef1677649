//! PKCS#10 certificate signing requests.

use sigil_contracts::types::{KeyAlgorithm, Sans};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA};
use x509_parser::prelude::FromDer as _;

use crate::error::PkiError;
use crate::facts::{ip_from_bytes, signature_algorithm_name};
use crate::key::classify_spki;
use crate::lint::check_sans;
use crate::pem;
use crate::profile::RequestedExtensions;

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
}

/// Parses and checks a PEM `CERTIFICATE REQUEST`.
///
/// In order: size cap ([`MAX_CSR_BYTES`]), PEM framing and strict DER
/// ([`PkiError::BadCsr`]), key algorithm ([`PkiError::WeakKey`] for RSA under 2048
/// bits, [`PkiError::UnsupportedKey`] for anything not P-256/P-384/Ed25519/RSA
/// 2048/3072/4096; checked before the signature so that small RSA keys get the clearer
/// error), proof of possession ([`PkiError::CsrSignatureInvalid`]), then the
/// extensionRequest: SANs must be DNS, IP or URI and well formed
/// ([`PkiError::InvalidSan`]), and `CA:true` is refused ([`PkiError::BadCsr`]).
/// Other requested extensions are recorded in [`ParsedCsr::requested`] for the
/// profile check ([`crate::profile::check_csr_request`]); what is issued is always
/// the profile's own set.
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
    })
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
