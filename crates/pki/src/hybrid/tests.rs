use std::path::PathBuf;
use std::process::Command;

use chrono::Duration;
use sigil_contracts::types::{Profile, Sans};

use super::*;
use crate::leaf::LeafKey;
use crate::testutil::{now, openssl};

struct Chain {
    root: HybridCaMaterial,
    inter: HybridCaMaterial,
    leaf: IssuedCert,
    leaf_alt: MlDsaKeyPair,
}

fn request() -> LeafRequest {
    let t = now();
    LeafRequest {
        profile: Profile::TlsServer,
        sans: Sans {
            dns: vec!["svc.example.com".to_owned()],
            ip: vec!["10.1.2.3".parse().unwrap()],
            uri: vec!["spiffe://example.org/ns/prod/sa/svc".to_owned()],
        },
        common_name: None,
        not_before: t,
        not_after: t + Duration::days(1),
        key: LeafKey::Generated(generate_key(KeyAlgorithm::EcdsaP256).unwrap()),
    }
}

fn chain(classical: KeyAlgorithm, level: MlDsaLevel, leaf_level: MlDsaLevel) -> Chain {
    let t = now();
    let root = create_hybrid_root(
        "Sigil Hybrid Root",
        classical,
        level,
        t,
        t + Duration::days(30),
    )
    .unwrap();
    let inter = create_hybrid_intermediate(
        &root,
        "Sigil Hybrid Issuing",
        classical,
        level,
        t,
        t + Duration::days(10),
    )
    .unwrap();
    let leaf_alt = MlDsaKeyPair::generate(leaf_level);
    let leaf = issue_hybrid_leaf(
        &inter,
        &request(),
        Some((leaf_level, leaf_alt.public_key().to_vec())),
    )
    .unwrap();
    Chain {
        root,
        inter,
        leaf,
        leaf_alt,
    }
}

fn extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<&Extension> {
    cert.tbs_certificate()
        .extensions()
        .into_iter()
        .flatten()
        .find(|e| e.extn_id == oid)
}

fn openssl_verify_chain(c: &Chain) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::write(path.join("root.pem"), c.root.cert_pem()).unwrap();
    std::fs::write(path.join("inter.pem"), c.inter.cert_pem()).unwrap();
    std::fs::write(path.join("leaf.pem"), &c.leaf.cert_pem).unwrap();
    let (ok, text) = openssl(
        path,
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "inter.pem",
            "leaf.pem",
        ],
    );
    assert!(
        ok && text.contains("leaf.pem: OK"),
        "openssl verify: {text}"
    );
    let (ok, text) = openssl(path, &["x509", "-noout", "-text", "-in", "inter.pem"]);
    assert!(ok, "{text}");
    text
}

/// The Python with pyca/cryptography ≥ 49: `$SIGIL_PYTHON`, else the tools venv.
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
        "no Python with pyca/cryptography at {} (set $SIGIL_PYTHON, or run \
         `scripts/ensure-nats.sh --with-crypto`)",
        path.display()
    );
    path
}

const PYCA_VERIFY: &str = r#"
import sys
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography import x509
level, pk, sig, msg, cert, issuer = sys.argv[1:7]
cls = {"44": mldsa.MLDSA44PublicKey, "65": mldsa.MLDSA65PublicKey, "87": mldsa.MLDSA87PublicKey}[level]
data = open(msg, "rb").read()
key = cls.from_public_bytes(open(pk, "rb").read())
key.verify(open(sig, "rb").read(), data)
# The signed certificate is one pyca reads (its extensions are not looked at here:
# pyca refuses rcgen's explicit `cA FALSE` in a leaf's basicConstraints).
c = x509.load_der_x509_certificate(open(cert, "rb").read())
assert c.version == x509.Version.v3
# The issuer's subjectAltPublicKeyInfo carries the very key handed to us.
i = x509.load_der_x509_certificate(open(issuer, "rb").read())
spki = i.extensions.get_extension_for_oid(x509.ObjectIdentifier("2.5.29.72")).value.value
assert spki.endswith(open(pk, "rb").read())
# Tampering with the message must fail.
bad = bytearray(data); bad[len(bad) // 2] ^= 1
try:
    key.verify(open(sig, "rb").read(), bytes(bad))
    sys.exit("tampered preTBSCertificate verified")
except Exception as e:
    if type(e).__name__ != "InvalidSignature":
        raise
print("pyca-ok")
"#;

/// Verifies `cert`'s alternative signature with pyca/cryptography, from files: the
/// preTBSCertificate (from [`pre_tbs_certificate`]), the issuer's ML-DSA public key
/// and the altSignatureValue.
fn pyca_verify(cert_der: &[u8], issuer: &HybridCaMaterial) {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let cert = Certificate::from_der(cert_der).unwrap();
    let sig = alt_signature_value(&cert).unwrap().unwrap();
    std::fs::write(p("pretbs.der"), pre_tbs_certificate(cert_der).unwrap()).unwrap();
    std::fs::write(p("issuer_pk.bin"), issuer.alt_key.public_key()).unwrap();
    std::fs::write(p("sig.bin"), sig).unwrap();
    std::fs::write(p("cert.der"), cert_der).unwrap();
    std::fs::write(p("issuer.der"), issuer.cert_der()).unwrap();
    std::fs::write(p("verify.py"), PYCA_VERIFY).unwrap();
    let level = &issuer.alt_level().name()["ML-DSA-".len()..];
    let out = Command::new(python())
        .arg(p("verify.py"))
        .arg(level)
        .args(
            [
                "issuer_pk.bin",
                "sig.bin",
                "pretbs.der",
                "cert.der",
                "issuer.der",
            ]
            .map(p),
        )
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("pyca-ok"), "{text}");
}

fn classical_ok(cert_der: &[u8], issuer_der: &[u8]) -> bool {
    check_classical_signature(cert_der, Some(issuer_der)).is_ok()
}

#[test]
fn default_chain_verifies_classically_and_alternatively() {
    let c = chain(
        DEFAULT_HYBRID_CLASSICAL,
        DEFAULT_HYBRID_MLDSA,
        MlDsaLevel::L65,
    );
    let text = openssl_verify_chain(&c);
    // OpenSSL shows the alt extensions as unknown, non-critical ones.
    for oid in ["2.5.29.72", "2.5.29.73", "2.5.29.74"] {
        assert!(text.contains(&format!("{oid}: \n")), "{oid} in {text}");
    }

    verify_alt_signature(c.root.cert_der(), c.root.cert_der()).unwrap();
    verify_alt_signature(c.inter.cert_der(), c.root.cert_der()).unwrap();
    verify_alt_signature(&c.leaf.cert_der, c.inter.cert_der()).unwrap();
    // Each is signed by its issuer's ML-DSA key, not by the subject's own.
    assert!(verify_alt_signature(c.inter.cert_der(), c.inter.cert_der()).is_err());
    assert!(verify_alt_signature(&c.leaf.cert_der, c.root.cert_der()).is_err());

    // Extension contents: 72 = subject's key (RFC 9881 SPKI), 73 = issuer's algorithm.
    let leaf = Certificate::from_der(&c.leaf.cert_der).unwrap();
    assert_eq!(
        subject_alt_public_key(&leaf).unwrap(),
        Some((MlDsaLevel::L65, c.leaf_alt.public_key().to_vec()))
    );
    let inter = Certificate::from_der(c.inter.cert_der()).unwrap();
    assert_eq!(
        subject_alt_public_key(&inter).unwrap(),
        Some((MlDsaLevel::L65, c.inter.alt_key.public_key().to_vec()))
    );
    let alg = alt_signature_algorithm(&leaf).unwrap().unwrap();
    assert_eq!(alg.oid.to_string(), "2.16.840.1.101.3.4.3.18");
    assert!(alg.parameters.is_none());
    for cert in [&leaf, &inter] {
        let exts = cert.tbs_certificate().extensions().unwrap();
        for oid in [OID_ALT_PUBLIC_KEY, OID_ALT_SIG_ALGORITHM, OID_ALT_SIG_VALUE] {
            assert!(!extension(cert, oid).unwrap().critical);
        }
        // altSignatureValue comes last, as Bouncy Castle puts it.
        assert_eq!(exts.last().unwrap().extn_id, OID_ALT_SIG_VALUE);
        let spki = SubjectPublicKeyInfoOwned::from_der(
            extension(cert, OID_ALT_PUBLIC_KEY)
                .unwrap()
                .extn_value
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(spki.algorithm.oid.to_string(), "2.16.840.1.101.3.4.3.18");
        assert!(spki.algorithm.parameters.is_none());
    }
    // The leaf is an ordinary leaf to everybody else.
    assert_eq!(c.leaf.facts.subject, "CN=svc.example.com");
    assert_eq!(c.leaf.facts.signature_algorithm, "ecdsa-with-SHA256");
    assert_eq!(c.leaf.facts.issuer, "CN=Sigil Hybrid Issuing");
}

#[test]
fn leaf_alt_signature_verifies_with_pyca() {
    let c = chain(KeyAlgorithm::EcdsaP256, MlDsaLevel::L65, MlDsaLevel::L44);
    pyca_verify(&c.leaf.cert_der, &c.inter);
    pyca_verify(c.inter.cert_der(), &c.root);
}

#[test]
fn other_parameter_sets_verify() {
    for (classical, level) in [
        (KeyAlgorithm::EcdsaP384, MlDsaLevel::L87),
        (KeyAlgorithm::EcdsaP256, MlDsaLevel::L44),
    ] {
        let c = chain(classical, level, MlDsaLevel::L87);
        openssl_verify_chain(&c);
        verify_alt_signature(c.root.cert_der(), c.root.cert_der()).unwrap();
        verify_alt_signature(c.inter.cert_der(), c.root.cert_der()).unwrap();
        verify_alt_signature(&c.leaf.cert_der, c.inter.cert_der()).unwrap();
        assert_eq!(c.inter.alt_level(), level);
        let leaf = Certificate::from_der(&c.leaf.cert_der).unwrap();
        assert_eq!(
            alt_signature_algorithm(&leaf)
                .unwrap()
                .unwrap()
                .oid
                .to_string(),
            level.oid()
        );
        pyca_verify(&c.leaf.cert_der, &c.inter);
    }
}

#[test]
fn leaf_without_its_own_ml_dsa_key_is_still_alt_signed() {
    let c = chain(KeyAlgorithm::EcdsaP256, MlDsaLevel::L65, MlDsaLevel::L65);
    let leaf = issue_hybrid_leaf(&c.inter, &request(), None).unwrap();
    let cert = Certificate::from_der(&leaf.cert_der).unwrap();
    assert!(extension(&cert, OID_ALT_PUBLIC_KEY).is_none());
    assert!(extension(&cert, OID_ALT_SIG_ALGORITHM).is_some());
    assert!(extension(&cert, OID_ALT_SIG_VALUE).is_some());
    verify_alt_signature(&leaf.cert_der, c.inter.cert_der()).unwrap();
    // Nothing can be verified *with* such a leaf as issuer.
    assert!(matches!(
        verify_alt_signature(&leaf.cert_der, &leaf.cert_der),
        Err(PkiError::AltSignature(_))
    ));
    pyca_verify(&leaf.cert_der, &c.inter);
}

#[test]
fn the_two_tbs_agree_apart_from_alt_signature_value() {
    let t = now();
    let root = create_hybrid_root(
        "R",
        KeyAlgorithm::EcdsaP256,
        MlDsaLevel::L65,
        t,
        t + Duration::days(2),
    )
    .unwrap();
    let PreparedLeaf {
        params,
        subject_key,
        ..
    } = prepare_leaf(&root.classical, &request()).unwrap();
    let issuer = root.classical.issuer_with(RecordingSigner::new).unwrap();
    let leaf_alt = MlDsaKeyPair::generate(MlDsaLevel::L44);
    let two = sign_twice(
        params.clone(),
        issuer.key(),
        |p| p.signed_by(&subject_key, &issuer),
        Some((MlDsaLevel::L44, leaf_alt.public_key())),
        &root.alt_key,
    )
    .unwrap();
    check_tbs_agree(&two.first_tbs, &two.second_tbs).unwrap();

    let first = TbsCertificate::from_der(&two.first_tbs).unwrap();
    let second = TbsCertificate::from_der(&two.second_tbs).unwrap();
    let a = first.extensions().unwrap();
    let b = second.extensions().unwrap();
    assert_eq!(b.len(), a.len() + 1);
    assert_eq!(&b[..a.len()], a, "same extensions, same order");
    assert_eq!(b[a.len()].extn_id, OID_ALT_SIG_VALUE);
    assert!(a.iter().all(|e| e.extn_id != OID_ALT_SIG_VALUE));
    assert_eq!(first.serial_number(), second.serial_number());
    assert_eq!(first.validity(), second.validity());
    assert_eq!(first.signature(), second.signature());
    // The recorded TBSs are the ones in the certificates.
    let tbs_of = |der: &[u8]| {
        parse_certificate(der)
            .unwrap()
            .tbs_certificate
            .as_ref()
            .to_vec()
    };
    assert_eq!(tbs_of(&two.first_cert_der), two.first_tbs);
    assert_eq!(tbs_of(&two.cert_der), two.second_tbs);
    // Both passes give the same preTBSCertificate: extension 74 is all they differ in.
    assert_eq!(
        pre_tbs_from_tbs(&first).unwrap(),
        pre_tbs_from_tbs(&second).unwrap()
    );
    verify_alt_signature(&two.cert_der, root.cert_der()).unwrap();

    // The check notices any other difference, and a missing / doubled ext 74.
    let other = sign_twice(
        params,
        issuer.key(),
        |p| p.signed_by(&subject_key, &issuer),
        None,
        &root.alt_key,
    )
    .unwrap();
    assert!(matches!(
        check_tbs_agree(&two.first_tbs, &other.second_tbs),
        Err(PkiError::Lint(_))
    ));
    assert!(check_tbs_agree(&two.first_tbs, &two.first_tbs).is_err());
    assert!(check_tbs_agree(&two.second_tbs, &two.second_tbs).is_err());
}

#[test]
fn pre_tbs_is_the_tbs_without_signature_field_and_alt_value() {
    let c = chain(KeyAlgorithm::EcdsaP256, MlDsaLevel::L65, MlDsaLevel::L65);
    let cert = Certificate::from_der(&c.leaf.cert_der).unwrap();
    let tbs = cert.tbs_certificate();
    let pre = PreTbsCertificate::from_der(&pre_tbs_certificate(&c.leaf.cert_der).unwrap()).unwrap();
    assert_eq!(pre.version, Version::V3);
    assert_eq!(&pre.serial_number, tbs.serial_number());
    assert_eq!(&pre.issuer, tbs.issuer());
    assert_eq!(&pre.validity, tbs.validity());
    assert_eq!(&pre.subject, tbs.subject());
    assert_eq!(&pre.subject_public_key_info, tbs.subject_public_key_info());
    let exts = tbs.extensions().unwrap();
    assert_eq!(
        pre.extensions.as_deref(),
        Some(&exts[..exts.len() - 1]),
        "all extensions but the last (altSignatureValue), in order"
    );
    // Element by element, bytes as signed: the TBS's elements minus the third
    // (`signature`), with the last ([3] extensions) minus altSignatureValue.
    let pre_der = pre_tbs_certificate(&c.leaf.cert_der).unwrap();
    let tbs_elems = Vec::<der::Any>::from_der(&tbs.to_der().unwrap()).unwrap();
    let pre_elems = Vec::<der::Any>::from_der(&pre_der).unwrap();
    assert_eq!(
        tbs_elems.len(),
        8,
        "v3 TBS: version .. extensions, no unique ids"
    );
    let mut expected = tbs_elems.clone();
    expected.remove(2);
    assert_eq!(expected[..6], pre_elems[..6]);
    assert_eq!(pre_elems.len(), 7);
    assert_eq!(
        tbs_elems[2].to_der().unwrap(),
        tbs.signature().to_der().unwrap()
    );
    // First issuance and every later reading agree.
    assert_eq!(
        pre_tbs_certificate(&c.leaf.cert_der).unwrap(),
        pre_tbs_certificate(&c.leaf.cert_der).unwrap()
    );
    assert!(matches!(
        pre_tbs_certificate(b"not a certificate"),
        Err(PkiError::Encoding(_))
    ));
}

#[test]
fn flipping_any_tbs_byte_breaks_a_signature() {
    let c = chain(KeyAlgorithm::EcdsaP256, MlDsaLevel::L65, MlDsaLevel::L44);
    let der = &c.leaf.cert_der;
    let issuer = c.inter.cert_der();
    assert!(classical_ok(der, issuer));
    verify_alt_signature(der, issuer).unwrap();

    let tbs_raw = parse_certificate(der)
        .unwrap()
        .tbs_certificate
        .as_ref()
        .to_vec();
    let tbs_start = der
        .windows(tbs_raw.len())
        .position(|w| w == tbs_raw)
        .unwrap();
    let tbs_end = tbs_start + tbs_raw.len();
    // Where the parts that the preTBSCertificate leaves out sit.
    let cert = Certificate::from_der(der).unwrap();
    let sig_alg = cert.tbs_certificate().signature().to_der().unwrap();
    let sig_alg_start = tbs_start
        + tbs_raw
            .windows(sig_alg.len())
            .position(|w| w == sig_alg)
            .unwrap();
    let alt_ext = extension(&cert, OID_ALT_SIG_VALUE)
        .unwrap()
        .to_der()
        .unwrap();
    let alt_start = tbs_start
        + tbs_raw
            .windows(alt_ext.len())
            .position(|w| w == alt_ext)
            .unwrap();
    let left_out = |i: usize| {
        (sig_alg_start..sig_alg_start + sig_alg.len()).contains(&i)
            || (alt_start..alt_start + alt_ext.len()).contains(&i)
    };

    let mut checked = 0;
    for i in (tbs_start..tbs_end).step_by(53) {
        let mut bad = der.clone();
        bad[i] ^= 0x01;
        let classical = classical_ok(&bad, issuer);
        let alt = verify_alt_signature(&bad, issuer).is_ok();
        assert!(!classical || !alt, "byte {i}: both signatures still verify");
        assert!(
            !classical,
            "byte {i}: the classical signature covers the whole TBS"
        );
        if !left_out(i) {
            assert!(
                !alt,
                "byte {i}: the alternative signature covers the preTBS"
            );
        }
        checked += 1;
    }
    assert!(checked > 20, "{checked}");
}

#[test]
fn stripped_alt_signature_value_fails() {
    let t = now();
    let root = create_hybrid_root(
        "R",
        KeyAlgorithm::EcdsaP256,
        MlDsaLevel::L65,
        t,
        t + Duration::days(2),
    )
    .unwrap();
    let PreparedLeaf {
        params,
        subject_key,
        ..
    } = prepare_leaf(&root.classical, &request()).unwrap();
    let issuer = root.classical.issuer_with(RecordingSigner::new).unwrap();
    let two = sign_twice(
        params,
        issuer.key(),
        |p| p.signed_by(&subject_key, &issuer),
        None,
        &root.alt_key,
    )
    .unwrap();
    // The first pass is exactly the certificate with extension 74 stripped (and
    // validly re-signed classically).
    assert!(classical_ok(&two.first_cert_der, root.cert_der()));
    let err = verify_alt_signature(&two.first_cert_der, root.cert_der()).unwrap_err();
    assert!(
        matches!(&err, PkiError::AltSignature(m) if m.contains("altSignatureValue")),
        "{err}"
    );
    verify_alt_signature(&two.cert_der, root.cert_der()).unwrap();
    // A classical CA (no ext 72) cannot check alternative signatures.
    let classical_root =
        crate::create_root("C", KeyAlgorithm::EcdsaP256, t, t + Duration::days(1)).unwrap();
    assert!(matches!(
        verify_alt_signature(&two.cert_der, &classical_root.cert_der),
        Err(PkiError::AltSignature(_))
    ));
    assert!(matches!(
        verify_alt_signature(&classical_root.cert_der, root.cert_der()),
        Err(PkiError::AltSignature(_))
    ));
}

#[test]
fn another_issuers_ml_dsa_key_fails() {
    let c = chain(KeyAlgorithm::EcdsaP256, MlDsaLevel::L65, MlDsaLevel::L65);
    // Same names and classical key, other ML-DSA key: swap the alt key in by
    // re-issuing the intermediate under the same root.
    let t = now();
    let twin = create_hybrid_intermediate(
        &c.root,
        "Sigil Hybrid Issuing",
        KeyAlgorithm::EcdsaP256,
        MlDsaLevel::L65,
        t,
        t + Duration::days(5),
    )
    .unwrap();
    let err = verify_alt_signature(&c.leaf.cert_der, twin.cert_der()).unwrap_err();
    assert!(matches!(err, PkiError::AltSignature(_)), "{err}");
    // An issuer whose ML-DSA key is of another level: altSignatureAlgorithm mismatch.
    let l87 = create_hybrid_root(
        "Other",
        KeyAlgorithm::EcdsaP256,
        MlDsaLevel::L87,
        t,
        t + Duration::days(5),
    )
    .unwrap();
    let err = verify_alt_signature(&c.leaf.cert_der, l87.cert_der()).unwrap_err();
    assert!(
        matches!(&err, PkiError::AltSignature(m) if m.contains("does not match")),
        "{err}"
    );
    // A HybridCaMaterial whose ML-DSA key is not the certificate's is refused.
    assert!(matches!(
        HybridCaMaterial::from_parts(c.inter.classical.clone(), twin.alt_key.clone()),
        Err(PkiError::KeyMismatch(_))
    ));
    let forged = HybridCaMaterial {
        classical: c.inter.classical.clone(),
        alt_key: twin.alt_key.clone(),
    };
    assert!(matches!(
        issue_hybrid_leaf(&forged, &request(), None),
        Err(PkiError::KeyMismatch(_))
    ));
}

#[test]
fn bad_input_is_refused_before_signing() {
    let t = now();
    for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa2048] {
        assert!(matches!(
            create_hybrid_root("R", alg, MlDsaLevel::L65, t, t + Duration::days(1)),
            Err(PkiError::UnsupportedKey(_))
        ));
    }
    let root = create_hybrid_root(
        "R",
        KeyAlgorithm::EcdsaP256,
        MlDsaLevel::L65,
        t,
        t + Duration::days(1),
    )
    .unwrap();
    assert!(matches!(
        create_hybrid_intermediate(
            &root,
            "I",
            KeyAlgorithm::EcdsaP256,
            MlDsaLevel::L65,
            t,
            t + Duration::days(2)
        ),
        Err(PkiError::InvalidValidity(_))
    ));
    assert!(matches!(
        issue_hybrid_leaf(&root, &request(), Some((MlDsaLevel::L65, vec![0u8; 1312]))),
        Err(PkiError::UnsupportedKey(_))
    ));
    assert!(matches!(
        issue_hybrid_leaf(
            &root,
            &request(),
            Some((MlDsaLevel::L65, root.alt_key.public_key().to_vec()))
        ),
        Err(PkiError::Lint(_))
    ));
    let mut req = request();
    req.sans = Sans::default();
    assert!(matches!(
        issue_hybrid_leaf(&root, &req, None),
        Err(PkiError::InvalidSan(_))
    ));
}

#[test]
fn debug_never_shows_key_bytes() {
    let t = now();
    let root = create_hybrid_root(
        "R",
        KeyAlgorithm::EcdsaP256,
        MlDsaLevel::L44,
        t,
        t + Duration::days(1),
    )
    .unwrap();
    let debug = format!("{root:?}");
    assert!(debug.contains("redacted"), "{debug}");
    let secret = root.alt_key.secret_key();
    assert!(!debug.contains(&hex::encode(&secret[..16])));
    assert!(
        !debug.contains(
            &format!("{:?}", &secret[..4])
                .trim_matches(['[', ']'])
                .to_owned()
        )
    );
    let classical = root.classical.key.pkcs8_der();
    assert!(!debug.contains(&hex::encode(&classical[classical.len() - 16..])));
}
