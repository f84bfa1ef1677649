//! Path verification for `sigil verify` and relying parties: every signature on the
//! path from a leaf to a trusted root, whatever its kind.
//!
//! [`verify_chain`] builds the path by name (issuer = subject, and
//! authorityKeyIdentifier = subjectKeyIdentifier when both are present) from the leaf
//! through the given intermediates to a certificate in `roots`, then reports one
//! [`SignatureCheck`] per thing checked:
//!
//! - each certificate's signature by its issuer, dispatched on the
//!   signatureAlgorithm OID: classical (ECDSA P-256/P-384 with SHA-256/384, Ed25519,
//!   RSA PKCS#1 v1.5 with SHA-256/384/512, via ring), pure ML-DSA (RFC 9881, empty
//!   context), composite ML-DSA (draft-ietf-lamps-pq-composite-sigs-19);
//! - the alternative (Catalyst) signature of each certificate carrying
//!   altSignatureValue (2.5.29.74);
//! - the root's own self-signature (and alternative self-signature);
//! - each certificate's validity at `now`;
//! - each issuer's CA constraints (basicConstraints CA:true, keyCertSign when
//!   keyUsage is present, pathLenConstraint) and unknown critical extensions.
//!
//! An unknown signature algorithm is a failed check, never a pass. The report is `ok`
//! only when a path to a root was found and every check passed. Revocation is not
//! checked here.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer as _;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use crate::composite::is_composite_oid;
use crate::facts::{from_asn1_time, parse_certificate};
use crate::mldsa::{self, MlDsaLevel};

/// Longest path tried (leaf + intermediates + root).
pub const MAX_PATH_LEN: usize = 8;

/// altSignatureValue (ITU-T X.509 §9.8).
const ALT_SIGNATURE_VALUE: &str = "2.5.29.74";
/// altSignatureAlgorithm.
const ALT_SIGNATURE_ALGORITHM: &str = "2.5.29.73";

/// What a [`SignatureCheck`] checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureKind {
    /// A classical signature (ECDSA, Ed25519, RSA).
    Classical,
    /// A pure ML-DSA signature (RFC 9881).
    MlDsa,
    /// A composite ML-DSA signature.
    Composite,
    /// An alternative signature (altSignatureValue, 2.5.29.74).
    Alternative,
    /// Not a signature: the certificate's validity period at the given time.
    Validity,
    /// Not a signature: the issuer's CA constraints, or unknown critical extensions.
    Constraints,
    /// Not a signature: building the path (no issuer found, unparseable input, …).
    Path,
}

impl SignatureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureKind::Classical => "classical",
            SignatureKind::MlDsa => "ml-dsa",
            SignatureKind::Composite => "composite",
            SignatureKind::Alternative => "alternative",
            SignatureKind::Validity => "validity",
            SignatureKind::Constraints => "constraints",
            SignatureKind::Path => "path",
        }
    }
}

impl fmt::Display for SignatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check on the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureCheck {
    /// Subject of the certificate checked (RFC 4514-style).
    pub subject: String,
    /// Subject of the certificate whose key verified it (for non-signature checks:
    /// the certificate's issuer name).
    pub issuer: String,
    pub kind: SignatureKind,
    /// Signature algorithm name (e.g. `ML-DSA-65`, `ecdsa-with-SHA256`), or what was
    /// checked for non-signature kinds (`notBefore/notAfter`, `basicConstraints`, …).
    pub algorithm: String,
    pub ok: bool,
    /// Why it failed, or extra facts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Everything [`verify_chain`] checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub checks: Vec<SignatureCheck>,
    /// A path to a root was found and every check passed.
    pub ok: bool,
}

/// Verifies `leaf_der` up to one of `roots` (DER), through `intermediates` (DER, any
/// order; unused ones are ignored, but one that does not parse is a failed
/// [`SignatureKind::Path`] check), at time `now`. Never panics on hostile input.
pub fn verify_chain(
    leaf_der: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    now: DateTime<Utc>,
) -> VerifyReport {
    let mut checks = Vec::new();
    let leaf = match parse_certificate(leaf_der) {
        Ok(cert) => cert,
        Err(e) => {
            checks.push(path_failure("(unparseable leaf)", "", e.to_string()));
            return VerifyReport { checks, ok: false };
        }
    };
    let mut pool: Vec<Node<'_>> = Vec::new();
    for (list, is_root, what) in [
        (roots, true, "root"),
        (intermediates, false, "intermediate"),
    ] {
        for (i, der) in list.iter().enumerate() {
            match parse_certificate(der) {
                Ok(cert) => pool.push(Node { der, cert, is_root }),
                Err(e) => checks.push(path_failure(
                    &format!("({what} #{})", i + 1),
                    "",
                    format!("could not parse: {e}"),
                )),
            }
        }
    }

    let (path, anchored) = build_path(leaf_der, &leaf, &pool, &mut checks);
    let certs: Vec<(&[u8], &X509Certificate<'_>)> = path
        .iter()
        .map(|p| match p {
            PathItem::Leaf => (leaf_der, &leaf),
            PathItem::Pool(i) => (pool[*i].der, &pool[*i].cert),
        })
        .collect();

    for (i, (der, cert)) in certs.iter().enumerate() {
        checks.push(validity_check(cert, now));
        checks.extend(critical_extension_checks(cert));
        if let Some((issuer_der, issuer)) = certs.get(i + 1) {
            checks.push(ca_check(issuer, i));
            checks.push(signature_check(cert, issuer));
            if has_alt_signature(cert) {
                checks.push(alt_signature_check(der, cert, issuer_der, issuer));
            }
        }
    }
    if let Some((root_der, root)) = certs.last().filter(|_| anchored) {
        if root.subject().as_raw() == root.issuer().as_raw() {
            checks.push(signature_check(root, root));
            if has_alt_signature(root) {
                checks.push(alt_signature_check(root_der, root, root_der, root));
            }
        } else {
            checks.push(path_failure(
                &root.subject().to_string(),
                &root.issuer().to_string(),
                "the trust anchor is not self-signed".to_owned(),
            ));
        }
    }

    let ok = anchored && checks.iter().all(|c| c.ok);
    VerifyReport { checks, ok }
}

/// Checks `cert`'s signature with `issuer_spki_der` (as [`verify_chain`] does for one
/// link). Used by the builders to validate what they signed.
pub(crate) fn check_one_signature(
    cert: &X509Certificate<'_>,
    issuer_spki_der: &[u8],
) -> Result<(), String> {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(issuer_spki_der)
        .map_err(|e| format!("issuer SPKI does not parse: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after issuer SPKI".to_owned());
    }
    let (_, _, result) = dispatch(cert, &spki);
    result
}

// ---------------------------------------------------------------------------------
// Path building.

struct Node<'a> {
    der: &'a [u8],
    cert: X509Certificate<'a>,
    is_root: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PathItem {
    Leaf,
    Pool(usize),
}

/// Leaf first. `anchored`: the last item is a root.
fn build_path(
    leaf_der: &[u8],
    leaf: &X509Certificate<'_>,
    pool: &[Node<'_>],
    checks: &mut Vec<SignatureCheck>,
) -> (Vec<PathItem>, bool) {
    // The leaf itself may be a trust anchor (a self-signed root checked alone).
    if let Some(i) = pool.iter().position(|n| n.is_root && n.der == leaf_der) {
        return (vec![PathItem::Pool(i)], true);
    }
    let mut path = vec![PathItem::Leaf];
    let mut current = leaf;
    while path.len() < MAX_PATH_LEN {
        let candidates: Vec<usize> = pool
            .iter()
            .enumerate()
            .filter(|(i, n)| !path.contains(&PathItem::Pool(*i)) && issued_by(current, &n.cert))
            .map(|(i, _)| i)
            .collect();
        // Prefer roots, then a candidate whose key verifies the signature.
        let pick = candidates
            .iter()
            .copied()
            .filter(|i| pool[*i].is_root)
            .chain(candidates.iter().copied().filter(|i| !pool[*i].is_root))
            .find(|i| dispatch(current, pool[*i].cert.public_key()).2.is_ok())
            .or_else(|| {
                candidates
                    .iter()
                    .copied()
                    .find(|i| pool[*i].is_root)
                    .or(candidates.first().copied())
            });
        let Some(i) = pick else {
            checks.push(path_failure(
                &current.subject().to_string(),
                &current.issuer().to_string(),
                format!(
                    "no issuer named {:?} found among the chain and the roots",
                    current.issuer().to_string()
                ),
            ));
            return (path, false);
        };
        path.push(PathItem::Pool(i));
        if pool[i].is_root {
            return (path, true);
        }
        current = &pool[i].cert;
    }
    checks.push(path_failure(
        &current.subject().to_string(),
        &current.issuer().to_string(),
        format!("no root reached within {MAX_PATH_LEN} certificates"),
    ));
    (path, false)
}

/// Name chaining, plus AKI/SKI when both are present.
fn issued_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return false;
    }
    match (authority_key_id(cert), subject_key_id(issuer)) {
        (Some(aki), Some(ski)) => aki == ski,
        _ => true,
    }
}

fn authority_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
            _ => None,
        })
        .map(|k| k.0)
}

fn subject_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0),
            _ => None,
        })
}

// ---------------------------------------------------------------------------------
// Non-signature checks.

fn path_failure(subject: &str, issuer: &str, detail: String) -> SignatureCheck {
    SignatureCheck {
        subject: subject.to_owned(),
        issuer: issuer.to_owned(),
        kind: SignatureKind::Path,
        algorithm: "path".to_owned(),
        ok: false,
        detail: Some(detail),
    }
}

fn validity_check(cert: &X509Certificate<'_>, now: DateTime<Utc>) -> SignatureCheck {
    let mut check = SignatureCheck {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        kind: SignatureKind::Validity,
        algorithm: "notBefore/notAfter".to_owned(),
        ok: false,
        detail: None,
    };
    let validity = cert.validity();
    match (
        from_asn1_time(&validity.not_before),
        from_asn1_time(&validity.not_after),
    ) {
        (Ok(nb), Ok(na)) => {
            if now < nb {
                check.detail = Some(format!("not yet valid: notBefore {nb} is after {now}"));
            } else if now > na {
                check.detail = Some(format!("expired: notAfter {na} is before {now}"));
            } else {
                check.ok = true;
                check.detail = Some(format!("valid from {nb} to {na}"));
            }
        }
        _ => check.detail = Some("validity times out of range".to_owned()),
    }
    check
}

/// `issuer` may sign certificates, and its pathLenConstraint allows the `cas_below`
/// intermediate CA certificates between it and the leaf.
fn ca_check(issuer: &X509Certificate<'_>, cas_below: usize) -> SignatureCheck {
    let mut check = SignatureCheck {
        subject: issuer.subject().to_string(),
        issuer: issuer.issuer().to_string(),
        kind: SignatureKind::Constraints,
        algorithm: "basicConstraints/keyUsage".to_owned(),
        ok: false,
        detail: None,
    };
    let bc = match issuer.basic_constraints() {
        Ok(bc) => bc,
        Err(e) => {
            check.detail = Some(format!("bad basicConstraints: {e}"));
            return check;
        }
    };
    let Some(bc) = bc.filter(|bc| bc.value.ca) else {
        check.detail = Some("issuer is not a CA (basicConstraints CA:true missing)".to_owned());
        return check;
    };
    match issuer.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => {
            check.detail = Some("issuer's keyUsage lacks keyCertSign".to_owned());
            return check;
        }
        Err(e) => {
            check.detail = Some(format!("bad keyUsage: {e}"));
            return check;
        }
        _ => {}
    }
    if let Some(max) = bc.value.path_len_constraint {
        if u64::try_from(cas_below).unwrap_or(u64::MAX) > u64::from(max) {
            check.detail = Some(format!(
                "pathLenConstraint {max} exceeded: {cas_below} CA certificates below"
            ));
            return check;
        }
    }
    check.ok = true;
    check.detail = Some(match bc.value.path_len_constraint {
        Some(n) => format!("CA:true, pathLenConstraint {n}"),
        None => "CA:true".to_owned(),
    });
    check
}

/// Unknown critical extensions make a certificate unusable (RFC 5280 §4.2). The
/// hybrid extensions 2.5.29.72-74 are understood here (and must be non-critical).
fn critical_extension_checks(cert: &X509Certificate<'_>) -> Vec<SignatureCheck> {
    cert.iter_extensions()
        .filter(|ext| {
            ext.critical
                && matches!(
                    ext.parsed_extension(),
                    ParsedExtension::UnsupportedExtension { .. }
                        | ParsedExtension::ParseError { .. }
                )
        })
        .map(|ext| SignatureCheck {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            kind: SignatureKind::Constraints,
            algorithm: "critical extensions".to_owned(),
            ok: false,
            detail: Some(format!("unsupported critical extension {}", ext.oid)),
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Signatures.

fn signature_check(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> SignatureCheck {
    let (kind, algorithm, result) = dispatch(cert, issuer.public_key());
    SignatureCheck {
        subject: cert.subject().to_string(),
        issuer: issuer.subject().to_string(),
        kind,
        algorithm,
        ok: result.is_ok(),
        detail: result.err(),
    }
}

fn has_alt_signature(cert: &X509Certificate<'_>) -> bool {
    cert.iter_extensions()
        .any(|ext| ext.oid.to_id_string() == ALT_SIGNATURE_VALUE)
}

fn alt_signature_check(
    cert_der: &[u8],
    cert: &X509Certificate<'_>,
    issuer_der: &[u8],
    issuer: &X509Certificate<'_>,
) -> SignatureCheck {
    let algorithm = cert
        .iter_extensions()
        .find(|ext| ext.oid.to_id_string() == ALT_SIGNATURE_ALGORITHM)
        .and_then(|ext| AlgorithmIdentifier::from_der(ext.value).ok())
        .map(|(_, alg)| algorithm_name(&alg.algorithm.to_id_string()))
        .unwrap_or_else(|| "altSignatureAlgorithm missing".to_owned());
    let result = verify_alternative(cert_der, issuer_der);
    SignatureCheck {
        subject: cert.subject().to_string(),
        issuer: issuer.subject().to_string(),
        kind: SignatureKind::Alternative,
        algorithm,
        ok: result.is_ok(),
        detail: result.err(),
    }
}

/// The alternative (Catalyst) signature, checked by [`crate::hybrid`].
fn verify_alternative(cert_der: &[u8], issuer_der: &[u8]) -> Result<(), String> {
    crate::hybrid::verify_alt_signature(cert_der, issuer_der).map_err(|e| e.to_string())
}

/// A composite signature over a TBSCertificate (empty application context), checked
/// by [`crate::composite`].
fn verify_composite(
    oid: &str,
    issuer_public_key: &[u8],
    tbs: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    crate::composite::verify_signature(oid, issuer_public_key, tbs, &[], signature)
        .map_err(|e| e.to_string())
}

const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const ED25519: &str = "1.3.101.112";
const RSA_SHA256: &str = "1.2.840.113549.1.1.11";
const RSA_SHA384: &str = "1.2.840.113549.1.1.12";
const RSA_SHA512: &str = "1.2.840.113549.1.1.13";
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";

fn algorithm_name(oid: &str) -> String {
    if let Some(level) = MlDsaLevel::from_oid(oid) {
        return level.name().to_owned();
    }
    match oid {
        ECDSA_SHA256 => "ecdsa-with-SHA256",
        ECDSA_SHA384 => "ecdsa-with-SHA384",
        ED25519 => "Ed25519",
        RSA_SHA256 => "sha256WithRSAEncryption",
        RSA_SHA384 => "sha384WithRSAEncryption",
        RSA_SHA512 => "sha512WithRSAEncryption",
        _ if is_composite_oid(oid) => return format!("composite {oid}"),
        _ => return oid.to_owned(),
    }
    .to_owned()
}

/// Verifies `cert`'s signature with the issuer key `spki`: (kind, algorithm name,
/// result).
fn dispatch(
    cert: &X509Certificate<'_>,
    spki: &SubjectPublicKeyInfo<'_>,
) -> (SignatureKind, String, Result<(), String>) {
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    let name = algorithm_name(&oid);
    let kind = if MlDsaLevel::from_oid(&oid).is_some() {
        SignatureKind::MlDsa
    } else if is_composite_oid(&oid) {
        SignatureKind::Composite
    } else {
        SignatureKind::Classical
    };
    let result = verify_with(cert, &oid, spki);
    (kind, name, result)
}

fn verify_with(
    cert: &X509Certificate<'_>,
    oid: &str,
    spki: &SubjectPublicKeyInfo<'_>,
) -> Result<(), String> {
    if !same_algorithm(&cert.signature_algorithm, &cert.tbs_certificate.signature) {
        return Err(
            "signatureAlgorithm differs from the TBSCertificate's signature field".to_owned(),
        );
    }
    if cert.signature_value.unused_bits != 0 {
        return Err("signature BIT STRING has unused bits".to_owned());
    }
    let tbs: &[u8] = cert.tbs_certificate.as_ref();
    let sig: &[u8] = &cert.signature_value.data;
    let key_oid = spki.algorithm.algorithm.to_id_string();
    let key: &[u8] = &spki.subject_public_key.data;
    let key_is = |expected: &str| -> Result<(), String> {
        if key_oid == expected {
            Ok(())
        } else {
            Err(format!(
                "issuer key algorithm {key_oid} does not match signature algorithm {}",
                algorithm_name(oid)
            ))
        }
    };

    if let Some(level) = MlDsaLevel::from_oid(oid) {
        if cert.signature_algorithm.parameters.is_some() {
            return Err("ML-DSA AlgorithmIdentifier parameters must be absent".to_owned());
        }
        key_is(oid)?;
        return mldsa::verify(level, key, tbs, &[], sig).map_err(|e| e.to_string());
    }
    if is_composite_oid(oid) {
        if cert.signature_algorithm.parameters.is_some() {
            return Err("composite AlgorithmIdentifier parameters must be absent".to_owned());
        }
        key_is(oid)?;
        return verify_composite(oid, key, tbs, sig);
    }
    use ring::signature as rs;
    let alg: &dyn rs::VerificationAlgorithm = match oid {
        ECDSA_SHA256 | ECDSA_SHA384 => {
            key_is(EC_PUBLIC_KEY)?;
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match (oid, curve.as_str()) {
                (ECDSA_SHA256, P256) => &rs::ECDSA_P256_SHA256_ASN1,
                (ECDSA_SHA384, P256) => &rs::ECDSA_P256_SHA384_ASN1,
                (ECDSA_SHA256, P384) => &rs::ECDSA_P384_SHA256_ASN1,
                (ECDSA_SHA384, P384) => &rs::ECDSA_P384_SHA384_ASN1,
                _ => return Err(format!("unsupported ECDSA curve {curve:?}")),
            }
        }
        ED25519 => {
            key_is(ED25519)?;
            &rs::ED25519
        }
        RSA_SHA256 | RSA_SHA384 | RSA_SHA512 => {
            key_is(RSA_ENCRYPTION)?;
            match oid {
                RSA_SHA256 => &rs::RSA_PKCS1_2048_8192_SHA256,
                RSA_SHA384 => &rs::RSA_PKCS1_2048_8192_SHA384,
                _ => &rs::RSA_PKCS1_2048_8192_SHA512,
            }
        }
        _ => return Err(format!("unsupported signature algorithm {oid}")),
    };
    rs::UnparsedPublicKey::new(alg, key)
        .verify(tbs, sig)
        .map_err(|_| format!("{} signature does not verify", algorithm_name(oid)))
}

fn same_algorithm(a: &AlgorithmIdentifier<'_>, b: &AlgorithmIdentifier<'_>) -> bool {
    a.algorithm == b.algorithm
        && match (&a.parameters, &b.parameters) {
            (None, None) => true,
            (Some(x), Some(y)) => x.tag() == y.tag() && x.data == y.data,
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone as _};
    use sigil_contracts::types::{KeyAlgorithm, Profile, Sans};

    use super::*;
    use crate::ca::{CaMaterial, create_intermediate, create_root, create_root_with_key};
    use crate::key::generate_key;
    use crate::leaf::{LeafKey, LeafRequest, issue_leaf};
    use crate::pem;
    use crate::testutil::{now, openssl_csr};

    fn rfc9881(name: &str) -> Vec<u8> {
        let path = format!("{}/testdata/rfc9881/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        pem::decode(&text, &["CERTIFICATE"]).unwrap()
    }

    fn at(year: i32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, 6, 1, 0, 0, 0).unwrap()
    }

    fn classical_chain(root: &CaMaterial, alg: KeyAlgorithm) -> (CaMaterial, Vec<u8>) {
        let t = now();
        let inter =
            create_intermediate(root, "Sigil Issuing", alg, t, t + Duration::days(10)).unwrap();
        let leaf = issue_leaf(
            &inter,
            &LeafRequest {
                profile: Profile::TlsServer,
                sans: Sans {
                    dns: vec!["svc.example.com".to_owned()],
                    ..Sans::default()
                },
                common_name: None,
                not_before: t,
                not_after: t + Duration::days(1),
                key: LeafKey::Generated(generate_key(KeyAlgorithm::EcdsaP256).unwrap()),
            },
        )
        .unwrap();
        (inter, leaf.cert_der)
    }

    #[test]
    fn rfc9881_example_certificates_verify_as_their_own_roots() {
        for (name, alg) in [
            ("ML-DSA-44.crt", "ML-DSA-44"),
            ("ML-DSA-65.crt", "ML-DSA-65"),
            ("ML-DSA-87.crt", "ML-DSA-87"),
        ] {
            let der = rfc9881(name);
            let report = verify_chain(&der, &[], std::slice::from_ref(&der), at(2025));
            assert!(report.ok, "{name}: {report:#?}");
            let sigs: Vec<_> = report
                .checks
                .iter()
                .filter(|c| c.kind == SignatureKind::MlDsa)
                .collect();
            assert_eq!(sigs.len(), 1, "{name}: one self-signature");
            assert_eq!(sigs[0].algorithm, alg);
            assert_eq!(sigs[0].subject, "O=IETF, CN=LAMPS WG");

            // Not a root: nothing to anchor to.
            assert!(!verify_chain(&der, &[], &[], at(2025)).ok);
            // Outside the validity period (2020-02-03 .. 2040-01-29).
            let late = verify_chain(&der, &[], std::slice::from_ref(&der), at(2041));
            assert!(!late.ok);
            assert!(late.checks.iter().any(|c| c.kind == SignatureKind::Validity
                && !c.ok
                && c.detail.as_deref().unwrap_or("").starts_with("expired")));
        }
    }

    #[test]
    fn classical_chains_from_rcgen_verify() {
        let t = now();
        let mut roots = Vec::new();
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
        ] {
            roots.push((
                alg,
                create_root("Sigil Root", alg, t, t + Duration::days(30)).unwrap(),
            ));
        }
        let (_, rsa_key) = openssl_csr(&["-newkey", "rsa:2048"], "DNS:rsa.test");
        roots.push((
            KeyAlgorithm::Rsa2048,
            create_root_with_key("Sigil RSA Root", rsa_key, t, t + Duration::days(30)).unwrap(),
        ));
        for (alg, root) in &roots {
            // Server-side RSA generation is refused: RSA roots get a P-256 intermediate.
            let inter_alg = match alg {
                KeyAlgorithm::Rsa2048 => KeyAlgorithm::EcdsaP256,
                other => *other,
            };
            let (inter, leaf) = classical_chain(root, inter_alg);
            let report = verify_chain(
                &leaf,
                std::slice::from_ref(&inter.cert_der),
                std::slice::from_ref(&root.cert_der),
                t + Duration::hours(1),
            );
            assert!(report.ok, "{alg:?}: {report:#?}");
            let sigs = report
                .checks
                .iter()
                .filter(|c| c.kind == SignatureKind::Classical && c.ok)
                .count();
            assert_eq!(
                sigs, 3,
                "{alg:?}: leaf, intermediate and root self-signature"
            );
            assert!(
                report
                    .checks
                    .iter()
                    .any(|c| c.kind == SignatureKind::Constraints && c.ok),
                "{alg:?}: CA constraints reported"
            );

            // Missing intermediate, wrong root, expired.
            let no_inter = verify_chain(
                &leaf,
                &[],
                std::slice::from_ref(&root.cert_der),
                t + Duration::hours(1),
            );
            assert!(!no_inter.ok);
            assert!(
                no_inter
                    .checks
                    .iter()
                    .any(|c| c.kind == SignatureKind::Path)
            );
            let other =
                create_root(&root.subject()[3..], inter_alg, t, t + Duration::days(30)).unwrap();
            let wrong = verify_chain(
                &leaf,
                std::slice::from_ref(&inter.cert_der),
                std::slice::from_ref(&other.cert_der),
                t + Duration::hours(1),
            );
            assert!(
                !wrong.ok,
                "{alg:?}: a root with the same name but another key"
            );
            let expired = verify_chain(
                &leaf,
                std::slice::from_ref(&inter.cert_der),
                std::slice::from_ref(&root.cert_der),
                t + Duration::days(2),
            );
            assert!(!expired.ok);
        }
    }

    #[test]
    fn unknown_signature_algorithm_fails_never_passes() {
        let t = now();
        let root = create_root(
            "Sigil Root",
            KeyAlgorithm::EcdsaP256,
            t,
            t + Duration::days(30),
        )
        .unwrap();
        // ecdsa-with-SHA256 → ecdsa-with-SHA512 (1.2.840.10045.4.3.4) in both places.
        let from = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let mut der = root.cert_der.clone();
        let mut replaced = 0;
        for i in 0..der.len() - from.len() {
            if der[i..i + from.len()] == from {
                der[i + from.len() - 1] = 0x04;
                replaced += 1;
            }
        }
        assert_eq!(replaced, 2);
        let report = verify_chain(&der, &[], std::slice::from_ref(&der), t);
        assert!(!report.ok);
        let sig = report
            .checks
            .iter()
            .find(|c| c.kind == SignatureKind::Classical)
            .unwrap();
        assert!(!sig.ok);
        assert_eq!(
            sig.detail.as_deref(),
            Some("unsupported signature algorithm 1.2.840.10045.4.3.4")
        );
    }

    #[test]
    fn hybrid_chains_report_classical_and_alternative_signatures() {
        use crate::hybrid::{create_hybrid_intermediate, create_hybrid_root, issue_hybrid_leaf};
        use crate::mldsa::MlDsaLevel;

        let t = now();
        let root = create_hybrid_root(
            "Hybrid Root",
            KeyAlgorithm::EcdsaP256,
            MlDsaLevel::L65,
            t,
            t + Duration::days(30),
        )
        .unwrap();
        let inter = create_hybrid_intermediate(
            &root,
            "Hybrid Issuing",
            KeyAlgorithm::EcdsaP256,
            MlDsaLevel::L65,
            t,
            t + Duration::days(10),
        )
        .unwrap();
        let leaf = issue_hybrid_leaf(
            &inter,
            &LeafRequest {
                profile: Profile::TlsServer,
                sans: Sans {
                    dns: vec!["hybrid.example.com".to_owned()],
                    ..Sans::default()
                },
                common_name: None,
                not_before: t,
                not_after: t + Duration::days(1),
                key: LeafKey::Generated(generate_key(KeyAlgorithm::EcdsaP256).unwrap()),
            },
            None,
        )
        .unwrap();
        let inters = [inter.classical.cert_der.clone()];
        let roots = [root.classical.cert_der.clone()];
        let report = verify_chain(&leaf.cert_der, &inters, &roots, t + Duration::hours(1));
        assert!(report.ok, "{report:#?}");
        let count = |kind| {
            report
                .checks
                .iter()
                .filter(|c| c.kind == kind && c.ok)
                .count()
        };
        assert_eq!(count(SignatureKind::Classical), 3);
        assert_eq!(count(SignatureKind::Alternative), 3);
        assert!(
            report
                .checks
                .iter()
                .filter(|c| c.kind == SignatureKind::Alternative)
                .all(|c| c.algorithm == "ML-DSA-65")
        );

        // Tampering with any byte of the leaf fails, alternative signature included.
        for i in (0..leaf.cert_der.len()).step_by(97) {
            let mut bad = leaf.cert_der.clone();
            bad[i] ^= 0x01;
            assert!(
                !verify_chain(&bad, &inters, &roots, t + Duration::hours(1)).ok,
                "byte {i}"
            );
        }
    }

    #[test]
    fn garbage_input_is_a_failed_report() {
        let report = verify_chain(b"not a certificate", &[vec![1, 2, 3]], &[], now());
        assert!(!report.ok);
        assert_eq!(report.checks[0].kind, SignatureKind::Path);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["checks"][0]["kind"], "path");
    }
}
