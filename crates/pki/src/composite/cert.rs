//! Composite ML-DSA certificates (draft-ietf-lamps-pq-composite-sigs-19 in X.509),
//! built with [`crate::pqcert::build_certificate`].
//!
//! The composite OID is both the signature `AlgorithmIdentifier` and the SPKI
//! algorithm, parameters absent; the SPKI `subjectPublicKey` is the raw concatenated
//! public key (ML-DSA `pk` ‖ traditional key); certificates are signed with the empty
//! context.

use std::fmt;

use chrono::{DateTime, Utc};
use const_oid::ObjectIdentifier;
use der::asn1::BitString;
use sigil_contracts::types::{Profile, Sans};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use super::{CompositeAlg, CompositeKeyPair};
use crate::PkiError;
use crate::ca::CaCertInfo;
use crate::ca::MAX_COMMON_NAME;
use crate::facts::parse_certificate;
use crate::leaf::IssuedCert;
use crate::pqcert::{
    CaKind, CertSigner, CertTemplate, create_ca_intermediate, create_ca_root, read_signer_ca_cert,
};
use crate::prepared::PreparedCert;
use crate::profile::LeafOptions;

fn der_err(e: der::Error) -> PkiError {
    PkiError::Encoding(format!("DER: {e}"))
}

/// The composite AlgorithmIdentifier: the OID, parameters absent.
pub fn composite_algorithm(alg: CompositeAlg) -> Result<AlgorithmIdentifierOwned, PkiError> {
    Ok(AlgorithmIdentifierOwned {
        oid: ObjectIdentifier::new(alg.oid())
            .map_err(|e| PkiError::Encoding(format!("composite OID: {e}")))?,
        parameters: None,
    })
}

/// The composite SubjectPublicKeyInfo: composite OID (parameters absent) and the raw
/// concatenated public key. Fails on a key of the wrong length.
pub fn composite_spki(
    alg: CompositeAlg,
    public_key: &[u8],
) -> Result<SubjectPublicKeyInfoOwned, PkiError> {
    if public_key.len() != alg.public_key_len() {
        return Err(PkiError::UnsupportedKey(format!(
            "{alg} public key must be {} bytes, got {}",
            alg.public_key_len(),
            public_key.len()
        )));
    }
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: composite_algorithm(alg)?,
        subject_public_key: BitString::from_bytes(public_key).map_err(der_err)?,
    })
}

impl CertSigner for CompositeKeyPair {
    fn algorithm(&self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap(self.alg.oid()),
            parameters: None,
        }
    }

    fn subject_public_key_info(&self) -> Result<SubjectPublicKeyInfoOwned, PkiError> {
        composite_spki(self.alg, &self.public_key())
    }

    /// Composite signature over the DER TBSCertificate with the empty context.
    fn sign(&self, tbs_der: &[u8]) -> Result<Vec<u8>, PkiError> {
        CompositeKeyPair::sign(self, tbs_der, &[])
    }
}

/// A composite CA: its certificate and its composite key pair. `Debug` never prints
/// key bytes. Store `cert_der` and [`CompositeKeyPair::to_der`] (sealed).
pub struct CompositeCaMaterial {
    /// The certificate as PEM.
    pub cert_pem: String,
    /// The certificate as DER.
    pub cert_der: Vec<u8>,
    /// The CA's composite key pair.
    pub key: CompositeKeyPair,
    subject: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

impl fmt::Debug for CompositeCaMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        CaCertInfo::debug_fields(
            f,
            "CompositeCaMaterial",
            &self.subject,
            &self.not_before,
            &self.not_after,
            &self.key,
        )
    }
}

impl CompositeCaMaterial {
    /// Pairs a DER CA certificate with its composite key pair. Fails when the
    /// certificate is not a CA allowed to sign certificates ([`PkiError::Lint`]) or
    /// its SPKI is not exactly the composite SPKI of `key` ([`PkiError::KeyMismatch`]).
    pub fn from_der(cert_der: Vec<u8>, key: CompositeKeyPair) -> Result<Self, PkiError> {
        let info = read_signer_ca_cert(
            &cert_der,
            || composite_spki(key.alg(), &key.public_key()),
            key.alg(),
        )?;
        Ok(CompositeCaMaterial {
            cert_pem: info.cert_pem,
            cert_der,
            key,
            subject: info.subject,
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }

    /// As [`CompositeCaMaterial::from_der`], from one PEM `CERTIFICATE`.
    pub fn from_pem(cert_pem: &str, key: CompositeKeyPair) -> Result<Self, PkiError> {
        CompositeCaMaterial::from_der(CaCertInfo::decode_pem(cert_pem)?, key)
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

    pub fn alg(&self) -> CompositeAlg {
        self.key.alg()
    }
}

fn check_ca_common_name(common_name: &str) -> Result<(), PkiError> {
    if common_name.trim().is_empty() || common_name.chars().count() > MAX_COMMON_NAME {
        return Err(PkiError::Lint(format!(
            "CA common name must be 1 to {MAX_COMMON_NAME} characters"
        )));
    }
    Ok(())
}

/// Creates a self-signed composite root CA with a fresh key of `alg`.
///
/// `CN=<common_name>`, random serial, basicConstraints `CA:true` (critical, no path
/// length limit), keyUsage keyCertSign + cRLSign (critical), subjectKeyIdentifier;
/// signed with the composite key (empty context).
pub fn create_composite_root(
    common_name: &str,
    alg: CompositeAlg,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CompositeCaMaterial, PkiError> {
    create_ca_root::<CompositeCaMaterial>(common_name, alg, not_before, not_after)
}

/// Creates a composite intermediate CA with a fresh key of `alg`, signed by `parent`
/// (whose algorithm may differ).
///
/// Like a root plus pathLenConstraint 0 and an authorityKeyIdentifier; must not
/// outlive the parent ([`PkiError::InvalidValidity`]) nor repeat its subject CN
/// ([`PkiError::Lint`]).
pub fn create_composite_intermediate(
    parent: &CompositeCaMaterial,
    common_name: &str,
    alg: CompositeAlg,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CompositeCaMaterial, PkiError> {
    create_ca_intermediate(parent, common_name, alg, not_before, not_after)
}

impl CaKind for CompositeCaMaterial {
    type Key = CompositeKeyPair;
    type Alg = CompositeAlg;

    fn check_common_name(common_name: &str) -> Result<(), PkiError> {
        check_ca_common_name(common_name)
    }

    /// Compares with the parent's subject when that is a single CN.
    fn check_not_parent_subject(
        parent_der: &[u8],
        common_name: &str,
        _template: &CertTemplate,
    ) -> Result<(), PkiError> {
        let parent_cert = parse_certificate(parent_der)?;
        let subject = parent_cert.subject();
        let mut attrs = subject.iter_attributes();
        let only_cn = match (attrs.next(), attrs.next()) {
            (Some(attr), None)
                if *attr.attr_type() == x509_parser::oid_registry::OID_X509_COMMON_NAME =>
            {
                attr.as_str().ok()
            }
            _ => None,
        };
        if only_cn == Some(common_name) {
            return Err(PkiError::Lint(
                "intermediate must not have the same subject as its parent".to_owned(),
            ));
        }
        Ok(())
    }

    fn generate(alg: CompositeAlg) -> Result<CompositeKeyPair, PkiError> {
        CompositeKeyPair::generate(alg)
    }

    fn from_der(cert_der: Vec<u8>, key: CompositeKeyPair) -> Result<Self, PkiError> {
        CompositeCaMaterial::from_der(cert_der, key)
    }

    fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    fn key(&self) -> &CompositeKeyPair {
        &self.key
    }
}

/// What composite leaf to issue. The caller (policy) has decided every field; the
/// requester holds the private key (proof of possession is the caller's business).
#[derive(Debug, Clone)]
pub struct CompositeLeafRequest {
    pub profile: Profile,
    /// Names to certify; at least one.
    pub sans: Sans,
    /// Subject CN; `None`: the first DNS SAN (no CN when there is none).
    pub common_name: Option<String>,
    pub not_before: DateTime<Utc>,
    /// Must not be later than the issuer's `not_after`.
    pub not_after: DateTime<Utc>,
    /// The subject's composite algorithm.
    pub alg: CompositeAlg,
    /// The subject's composite public key (ML-DSA `pk` ‖ traditional key).
    pub public_key: Vec<u8>,
}

/// Issues a composite end-entity certificate signed by a composite CA.
///
/// keyUsage digitalSignature only, EKU serverAuth/clientAuth from the profile,
/// basicConstraints `CA:false`, SANs, SKI and AKI; checks as
/// [`build_certificate`](crate::pqcert::build_certificate), plus at least one SAN ([`PkiError::InvalidSan`]). After
/// signing, the certificate is read back and its SANs compared with the request.
pub fn issue_composite_leaf(
    issuer: &CompositeCaMaterial,
    req: &CompositeLeafRequest,
) -> Result<IssuedCert, PkiError> {
    prepare_composite_leaf(issuer, req, &LeafOptions::default())?.sign()
}

/// [`issue_composite_leaf`] in two steps: every check before signing now (including
/// the profile's name rules), signing on [`PreparedCert::sign`]. `opts` adds the CRL
/// distribution point and OCSP URLs.
pub fn prepare_composite_leaf<'a>(
    issuer: &'a CompositeCaMaterial,
    req: &CompositeLeafRequest,
    opts: &LeafOptions,
) -> Result<PreparedCert<'a>, PkiError> {
    let spki = composite_spki(req.alg, &req.public_key)?;
    crate::pqcert::prepare_template_leaf(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::composite::verify_certificate_signature;
    use chrono::Duration;
    use std::process::Command;

    fn times() -> (DateTime<Utc>, DateTime<Utc>) {
        let now = crate::testutil::now();
        (now, now + Duration::days(30))
    }

    fn leaf_request(alg: CompositeAlg, public_key: Vec<u8>) -> CompositeLeafRequest {
        let (nb, na) = times();
        CompositeLeafRequest {
            profile: Profile::TlsServer,
            sans: Sans {
                dns: vec!["composite.test".to_owned()],
                ip: vec!["192.0.2.7".parse().unwrap()],
                uri: Vec::new(),
            },
            common_name: None,
            not_before: nb,
            not_after: na - Duration::days(1),
            alg,
            public_key,
        }
    }

    /// Checks `cert`'s composite signature with `issuer`'s SPKI key, and that the
    /// certificate is laid out as the draft says.
    fn check_signed_by(cert_der: &[u8], issuer_der: &[u8], alg: CompositeAlg) {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der).unwrap();
        let (_, issuer) = x509_parser::parse_x509_certificate(issuer_der).unwrap();
        assert_eq!(cert.signature_algorithm.algorithm.to_id_string(), alg.oid());
        assert!(cert.signature_algorithm.parameters.is_none());
        assert_eq!(
            cert.tbs_certificate.signature.algorithm.to_id_string(),
            alg.oid()
        );
        let issuer_spki = issuer.public_key();
        assert_eq!(issuer_spki.algorithm.algorithm.to_id_string(), alg.oid());
        assert!(issuer_spki.algorithm.parameters.is_none());
        let tbs = cert.tbs_certificate.as_ref();
        let sig = &*cert.signature_value.data;
        verify_certificate_signature(alg.oid(), &issuer_spki.subject_public_key.data, tbs, sig)
            .unwrap();
        let mut bad = tbs.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(
            verify_certificate_signature(
                alg.oid(),
                &issuer_spki.subject_public_key.data,
                &bad,
                sig
            )
            .is_err()
        );
    }

    #[test]
    fn composite_chain_issues_and_verifies() {
        for (root_alg, leaf_alg) in [
            (
                CompositeAlg::MlDsa87EcdsaP384Sha512,
                CompositeAlg::MlDsa65EcdsaP256Sha512,
            ),
            (
                CompositeAlg::MlDsa65EcdsaP256Sha512,
                CompositeAlg::MlDsa44Ed25519Sha512,
            ),
        ] {
            let (nb, na) = times();
            let root = create_composite_root("Sigil Composite Root", root_alg, nb, na).unwrap();
            assert_eq!(root.alg(), root_alg);
            check_signed_by(&root.cert_der, &root.cert_der, root_alg);
            let inter = create_composite_intermediate(
                &root,
                "Sigil Composite Intermediate",
                root_alg,
                nb,
                na,
            )
            .unwrap();
            check_signed_by(&inter.cert_der, &root.cert_der, root_alg);
            let leaf_key = CompositeKeyPair::generate(leaf_alg).unwrap();
            let leaf = issue_composite_leaf(&inter, &leaf_request(leaf_alg, leaf_key.public_key()))
                .unwrap();
            check_signed_by(&leaf.cert_der, &inter.cert_der, root_alg);
            assert_eq!(leaf.facts.sans.dns, vec!["composite.test".to_owned()]);

            // The leaf's SPKI is the composite SPKI of its key; key usage signs only.
            let (_, parsed) = x509_parser::parse_x509_certificate(&leaf.cert_der).unwrap();
            assert_eq!(
                parsed.public_key().algorithm.algorithm.to_id_string(),
                leaf_alg.oid()
            );
            assert!(parsed.public_key().algorithm.parameters.is_none());
            assert_eq!(
                &*parsed.public_key().subject_public_key.data,
                leaf_key.public_key().as_slice()
            );
            let ku = parsed.key_usage().unwrap().unwrap().value;
            assert!(ku.digital_signature());
            assert!(!ku.key_encipherment() && !ku.key_agreement() && !ku.data_encipherment());

            // Reload the CA from storage.
            let reloaded = CompositeKeyPair::from_der(&inter.key.to_der().unwrap()).unwrap();
            let again = CompositeCaMaterial::from_pem(&inter.cert_pem, reloaded).unwrap();
            assert_eq!(again.subject(), inter.subject());
        }
    }

    #[test]
    fn composite_chain_passes_verify_chain_and_tampering_fails() {
        use crate::verify::{SignatureKind, verify_chain};
        let (nb, na) = times();
        let root =
            create_composite_root("Chain Root", CompositeAlg::MlDsa87EcdsaP384Sha512, nb, na)
                .unwrap();
        let inter = create_composite_intermediate(
            &root,
            "Chain Intermediate",
            CompositeAlg::MlDsa65EcdsaP256Sha512,
            nb,
            na,
        )
        .unwrap();
        let leaf_key = CompositeKeyPair::generate(CompositeAlg::MlDsa44Ed25519Sha512).unwrap();
        let leaf = issue_composite_leaf(
            &inter,
            &leaf_request(CompositeAlg::MlDsa44Ed25519Sha512, leaf_key.public_key()),
        )
        .unwrap();
        let now = crate::testutil::now() + Duration::minutes(5);
        let inters = vec![inter.cert_der.clone()];
        let roots = vec![root.cert_der.clone()];
        let report = verify_chain(&leaf.cert_der, &inters, &roots, now);
        assert!(report.ok, "{report:#?}");
        let composite: Vec<_> = report
            .checks
            .iter()
            .filter(|c| c.kind == SignatureKind::Composite)
            .collect();
        assert_eq!(composite.len(), 3, "leaf, intermediate, root: {report:#?}");
        assert!(composite.iter().all(|c| c.ok));

        // Any flipped byte in the leaf's TBS or signature breaks the chain.
        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf.cert_der).unwrap();
        let tbs_len = parsed.tbs_certificate.as_ref().len();
        drop(parsed);
        let sig_ml = leaf.cert_der.len() - 200; // inside the ML-DSA-65 part
        let sig_trad = leaf.cert_der.len() - 3; // inside the ECDSA part
        for at in [tbs_len / 2, tbs_len, sig_ml, sig_trad] {
            let mut bad = leaf.cert_der.clone();
            bad[at] ^= 0x01;
            let report = verify_chain(&bad, &inters, &roots, now);
            assert!(!report.ok, "tampered byte {at} accepted");
        }
        // The wrong root does not anchor it.
        let stranger =
            create_composite_root("Chain Root", CompositeAlg::MlDsa87EcdsaP384Sha512, nb, na)
                .unwrap();
        let report = verify_chain(
            &leaf.cert_der,
            &inters,
            std::slice::from_ref(&stranger.cert_der),
            now,
        );
        assert!(!report.ok);
    }

    #[test]
    fn bad_requests_sign_nothing() {
        let alg = CompositeAlg::MlDsa65EcdsaP256Sha512;
        let (nb, na) = times();
        let root = create_composite_root("Root", alg, nb, na).unwrap();
        let other = CompositeKeyPair::generate(alg).unwrap();
        assert!(matches!(
            CompositeCaMaterial::from_der(root.cert_der.clone(), other),
            Err(PkiError::KeyMismatch(_))
        ));
        assert!(matches!(
            create_composite_intermediate(&root, "Root", alg, nb, na),
            Err(PkiError::Lint(_))
        ));
        assert!(create_composite_root("", alg, nb, na).is_err());
        let key = CompositeKeyPair::generate(alg).unwrap();
        let mut req = leaf_request(alg, key.public_key());
        req.sans = Sans::default();
        assert!(matches!(
            issue_composite_leaf(&root, &req),
            Err(PkiError::InvalidSan(_))
        ));
        let mut req = leaf_request(alg, key.public_key());
        req.not_after = na + Duration::days(1);
        assert!(matches!(
            issue_composite_leaf(&root, &req),
            Err(PkiError::InvalidValidity(_))
        ));
        let mut req = leaf_request(alg, key.public_key());
        req.public_key.pop();
        assert!(matches!(
            issue_composite_leaf(&root, &req),
            Err(PkiError::UnsupportedKey(_))
        ));
    }

    /// The certificate signature's components verify with pyca/cryptography (ML-DSA,
    /// with M' recomputed from the TBS pyca extracts) and openssl (ECDSA), and openssl
    /// parses the certificate.
    #[test]
    fn composite_certificate_verifies_independently() {
        const SCRIPT: &str = r#"
import hashlib, sys, pathlib
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import mldsa, ec
from cryptography.hazmat.primitives import serialization
d = pathlib.Path(sys.argv[1])
cert = x509.load_der_x509_certificate((d / "cert.der").read_bytes())
assert cert.signature_algorithm_oid.dotted_string == "1.3.6.1.5.5.7.6.45", cert.signature_algorithm_oid
pk = (d / "issuer_pk").read_bytes()
label = b"COMPSIG-MLDSA65-ECDSA-P256-SHA512"
mp = (b"CompositeAlgorithmSignatures2025" + label + b"\x00"
      + hashlib.sha512(cert.tbs_certificate_bytes).digest())
sig = cert.signature
mldsa.MLDSA65PublicKey.from_public_bytes(pk[:1952]).verify(sig[:3309], mp, label)
key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pk[1952:])
(d / "mprime").write_bytes(mp)
(d / "tradsig").write_bytes(sig[3309:])
(d / "trad.pem").write_bytes(key.public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
print("ok")
"#;
        let python = std::env::var_os("SIGIL_PYTHON")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(std::env::var_os("HOME").unwrap())
                    .join(".cache/sigil/tools/venv/bin/python")
            });
        assert!(
            python.is_file(),
            "no Python with pyca/cryptography at {} (set SIGIL_PYTHON or run \
             scripts/ensure-nats.sh --with-crypto)",
            python.display()
        );
        let alg = CompositeAlg::MlDsa65EcdsaP256Sha512;
        let (nb, na) = times();
        let root = create_composite_root("Independent Root", alg, nb, na).unwrap();
        let leaf_key = CompositeKeyPair::generate(alg).unwrap();
        let leaf = issue_composite_leaf(&root, &leaf_request(alg, leaf_key.public_key())).unwrap();
        for cert_der in [&root.cert_der, &leaf.cert_der] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path();
            std::fs::write(p.join("cert.der"), cert_der).unwrap();
            std::fs::write(p.join("issuer_pk"), root.key.public_key()).unwrap();
            std::fs::write(p.join("check.py"), SCRIPT).unwrap();
            let out = Command::new(&python)
                .arg(p.join("check.py"))
                .arg(p)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pyca rejected the certificate signature: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let (ok, text) = crate::testutil::openssl(
                p,
                &[
                    "dgst",
                    "-sha256",
                    "-verify",
                    "trad.pem",
                    "-signature",
                    "tradsig",
                    "mprime",
                ],
            );
            assert!(ok, "openssl rejected the ECDSA component: {text}");
            let (ok, text) = crate::testutil::openssl(
                p,
                &[
                    "x509", "-inform", "DER", "-in", "cert.der", "-noout", "-text",
                ],
            );
            assert!(ok, "openssl cannot parse the certificate: {text}");
            assert!(text.contains("1.3.6.1.5.5.7.6.45"), "{text}");
        }
    }
}
