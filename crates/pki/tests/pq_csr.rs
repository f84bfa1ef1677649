//! Post-quantum PKCS#10 requests against an implementation that is not ours:
//! pyca/cryptography (≥ 49, OpenSSL's ML-DSA underneath).
//!
//! - ML-DSA CSRs made by pyca (RFC 9881: id-ml-dsa-44/65/87, parameters absent, pure
//!   ML-DSA with the empty context over the CertificationRequestInfo) parse with
//!   [`sigil_pki::parse_csr`], carry the right key algorithm and public key, and are
//!   refused once a signature byte or a body byte is changed;
//! - ML-DSA CSRs made by [`sigil_pki::build_pq_csr`] pass pyca's
//!   `is_signature_valid`;
//! - composite CSRs made by [`sigil_pki::build_pq_csr`]
//!   (draft-ietf-lamps-pq-composite-sigs-19) verify component by component in Python:
//!   `M'` is rebuilt there from the draft's formula (prefix, label, a zero context
//!   length, the pre-hash of the CertificationRequestInfo), the ML-DSA half is checked
//!   with context = label and the traditional half with pyca's ECDSA / Ed25519.
//!
//! - hybrid CSRs made by [`sigil_pki::build_hybrid_csr`] (Bouncy Castle's form)
//!   check out in Python: pyca verifies the classical signature, and the alternative
//!   signature verifies with pyca's ML-DSA over the CertificationRequestInfo without
//!   its altSignatureValue attribute, re-encoded by pyasn1's DER encoder (as
//!   pkilint installs it) from the attribute definitions of RFC 2986 / RFC 5280.
//!
//! pyca runs in the Python at `$SIGIL_PYTHON`, else the tools venv
//! (`~/.cache/sigil/tools/venv`) that `scripts/ensure-nats.sh --with-crypto` sets up.
//! When it is missing the test fails (it does not skip).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sigil_contracts::types::{KeyAlgorithm, Sans};
use sigil_pki::mldsa::{MlDsaKeyPair, MlDsaLevel};
use sigil_pki::pqcert::CertSigner;
use sigil_pki::{CompositeAlg, CompositeKeyPair, PkiError, build_pq_csr, parse_csr};

const HINT: &str = "run `scripts/ensure-nats.sh --with-crypto` (installs pyca/cryptography \
                    >= 49 into ~/.cache/sigil/tools/venv), or point $SIGIL_PYTHON at a \
                    Python with cryptography >= 49";

/// The Python with pyca/cryptography ≥ 49 (ML-DSA). Panics, with the way to install
/// it, when there is none.
fn python() -> PathBuf {
    let path = sigil_testkit::pki::python();
    assert!(
        path.exists(),
        "no Python at {} for pyca/cryptography: {HINT}",
        path.display()
    );
    let out = Command::new(&path)
        .args([
            "-c",
            "from cryptography.hazmat.primitives.asymmetric import mldsa; import cryptography; print(cryptography.__version__)",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {HINT}", path.display()));
    assert!(
        out.status.success(),
        "pyca/cryptography with ML-DSA is not importable in {}: {}\n{HINT}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Runs `script` in pyca's Python with `input` on stdin; returns its stdout as JSON.
fn run_python(python: &Path, script: &str, input: &Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let script_path = dir.path().join("script.py");
    let input_path = dir.path().join("input.json");
    std::fs::write(&script_path, script).unwrap();
    std::fs::write(&input_path, serde_json::to_vec(input).unwrap()).unwrap();
    let out = Command::new(python)
        .arg(&script_path)
        .arg(&input_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const PYCA_MAKES_CSRS: &str = r#"
import json, sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.hazmat.primitives import serialization
out = {}
for name, cls in [("ML-DSA-44", mldsa.MLDSA44PrivateKey),
                  ("ML-DSA-65", mldsa.MLDSA65PrivateKey),
                  ("ML-DSA-87", mldsa.MLDSA87PrivateKey)]:
    key = cls.generate()
    csr = (x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pyca " + name)]))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("pyca.example.com"),
            x509.UniformResourceIdentifier("spiffe://example.org/pyca")]), critical=False)
        .sign(key, None))
    out[name] = {
        "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
        "public_key": key.public_key().public_bytes_raw().hex(),
    }
print(json.dumps(out))
"#;

/// The DER of a PEM CSR, and back.
fn der_of(pem: &str) -> Vec<u8> {
    sigil_pki::pem::decode(pem, &["CERTIFICATE REQUEST"]).unwrap()
}

fn pem_of(der: &[u8]) -> String {
    sigil_pki::pem::encode("CERTIFICATE REQUEST", der)
}

#[test]
fn pyca_mldsa_csrs_prove_possession_and_tampering_is_caught() {
    let made = run_python(&python(), PYCA_MAKES_CSRS, &Value::Null);
    for level in MlDsaLevel::ALL {
        let case = &made[level.name()];
        let pem = case["csr"].as_str().unwrap();
        let csr = parse_csr(pem).unwrap_or_else(|e| panic!("{}: {e}", level.name()));
        assert_eq!(csr.key_algorithm, level.key_algorithm());
        assert_eq!(
            hex::encode(&csr.public_key),
            case["public_key"].as_str().unwrap()
        );
        assert_eq!(csr.sans.dns, ["pyca.example.com"]);
        assert_eq!(csr.sans.uri, ["spiffe://example.org/pyca"]);
        assert_eq!(
            csr.common_name.as_deref(),
            Some(format!("pyca {}", level.name()).as_str())
        );

        let der = der_of(pem);
        // The last byte and one in the middle of the signature.
        for at in [der.len() - 1, der.len() - level.signature_len() / 2] {
            let mut tampered = der.clone();
            tampered[at] ^= 0x01;
            assert_eq!(
                parse_csr(&pem_of(&tampered)),
                Err(PkiError::CsrSignatureInvalid),
                "{} byte {at}",
                level.name()
            );
        }
        let mut body = der.clone();
        let at = body
            .windows(16)
            .position(|w| w == b"pyca.example.com")
            .unwrap();
        body[at] = b'q';
        assert_eq!(
            parse_csr(&pem_of(&body)),
            Err(PkiError::CsrSignatureInvalid),
            "{}",
            level.name()
        );
    }
}

const PYCA_CHECKS_CSRS: &str = r#"
import json, sys, hashlib
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa

PREFIX = b"CompositeAlgorithmSignatures2025"
MLDSA = {44: (mldsa.MLDSA44PublicKey, 1312, 2420),
         65: (mldsa.MLDSA65PublicKey, 1952, 3309),
         87: (mldsa.MLDSA87PublicKey, 2592, 4627)}

def composite_ok(case, tbs, sig, pk):
    level = case["level"]
    cls, pk_len, sig_len = MLDSA[level]
    label = case["label"].encode()
    ph = hashlib.sha256 if case["prehash"] == "sha256" else hashlib.sha512
    m = PREFIX + label + b"\x00" + ph(tbs).digest()
    try:
        cls.from_public_bytes(pk[:pk_len]).verify(sig[:sig_len], m, label)
        trad_pk, trad_sig = pk[pk_len:], sig[sig_len:]
        if case["trad"] == "ed25519":
            ed25519.Ed25519PublicKey.from_public_bytes(trad_pk).verify(trad_sig, m)
        else:
            curve, h = (ec.SECP256R1(), hashes.SHA256()) if case["trad"] == "p256" else (ec.SECP384R1(), hashes.SHA384())
            ec.EllipticCurvePublicKey.from_encoded_point(curve, trad_pk).verify(trad_sig, m, ec.ECDSA(h))
        return True
    except InvalidSignature:
        return False

out = []
for case in json.load(open(sys.argv[1])):
    csr = x509.load_pem_x509_csr(case["csr"].encode())
    if case["kind"] == "mldsa":
        out.append(csr.is_signature_valid)
    else:
        out.append(composite_ok(case, csr.tbs_certrequest_bytes, csr.signature,
                                bytes.fromhex(case["public_key"])))
print(json.dumps(out))
"#;

#[test]
fn our_pq_csrs_verify_in_pyca() {
    let sans = Sans {
        dns: vec!["ours.example.com".to_owned()],
        ..Sans::default()
    };
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for level in MlDsaLevel::ALL {
        let key = MlDsaKeyPair::generate(level);
        let csr = build_pq_csr(&key, Some("ours"), &sans).unwrap();
        assert_eq!(
            parse_csr(&csr).unwrap().key_algorithm,
            level.key_algorithm()
        );
        cases.push(serde_json::json!({"kind": "mldsa", "csr": csr}));
        expected.push(true);
    }
    for alg in CompositeAlg::ALL {
        let key = CompositeKeyPair::generate(alg).unwrap();
        let csr = build_pq_csr(&key, Some("ours"), &sans).unwrap();
        assert_eq!(parse_csr(&csr).unwrap().key_algorithm, alg.key_algorithm());
        let level = match alg.mldsa_level() {
            MlDsaLevel::L44 => 44,
            MlDsaLevel::L65 => 65,
            MlDsaLevel::L87 => 87,
        };
        let trad = match alg.trad() {
            sigil_pki::composite::TradAlg::EcdsaP256 => "p256",
            sigil_pki::composite::TradAlg::EcdsaP384 => "p384",
            sigil_pki::composite::TradAlg::Ed25519 => "ed25519",
        };
        let prehash = match alg.pre_hash() {
            sigil_pki::composite::PreHash::Sha256 => "sha256",
            sigil_pki::composite::PreHash::Sha512 => "sha512",
        };
        let case = serde_json::json!({
            "kind": "composite", "level": level, "trad": trad, "prehash": prehash,
            "label": alg.label(), "public_key": hex::encode(key.public_key()),
        });
        let mut good = case.clone();
        good["csr"] = csr.clone().into();
        cases.push(good);
        expected.push(true);
        // A CSR for this key signed by another key of the same algorithm must fail
        // in Python too, so the check above can fail.
        let other = CompositeKeyPair::generate(alg).unwrap();
        let forged = build_pq_csr(&other, Some("ours"), &sans).unwrap();
        let mut bad = case;
        bad["csr"] = forged.into();
        cases.push(bad);
        expected.push(false);
    }
    let verdicts = run_python(&python(), PYCA_CHECKS_CSRS, &Value::Array(cases));
    let verdicts: Vec<bool> = serde_json::from_value(verdicts).unwrap();
    assert_eq!(verdicts, expected);
}

#[test]
fn composite_key_algorithm_names_round_trip() {
    // The composite names the CSR parser reports are the contracts' own.
    for alg in CompositeAlg::ALL {
        assert_eq!(
            KeyAlgorithm::from_name(alg.key_algorithm().as_str()),
            Some(alg.key_algorithm())
        );
        assert_eq!(
            CompositeAlg::from_key_algorithm(alg.key_algorithm()),
            Some(alg)
        );
        let signer: &dyn CertSigner = &CompositeKeyPair::generate(alg).unwrap();
        assert_eq!(signer.algorithm().oid.to_string(), alg.oid());
    }
    assert_eq!(
        CompositeAlg::from_key_algorithm(KeyAlgorithm::EcdsaP256),
        None
    );
    assert_eq!(MlDsaLevel::from_key_algorithm(KeyAlgorithm::Ed25519), None);
}

const PYCA_CHECKS_HYBRID_CSRS: &str = r#"
import json, sys
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.hazmat.primitives.serialization import Encoding
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc2986, rfc5280

ALT_KEY, ALT_ALG, ALT_SIG = (univ.ObjectIdentifier("2.5.29.%d" % n) for n in (72, 73, 74))
MLDSA = {"2.16.840.1.101.3.4.3.17": mldsa.MLDSA44PublicKey,
         "2.16.840.1.101.3.4.3.18": mldsa.MLDSA65PublicKey,
         "2.16.840.1.101.3.4.3.19": mldsa.MLDSA87PublicKey}

def verifies(key, sig, msg):
    try:
        key.verify(sig, msg)
        return True
    except InvalidSignature:
        return False

out = []
for pem in json.load(open(sys.argv[1])):
    csr = x509.load_pem_x509_csr(pem.encode())
    req, _ = decoder.decode(csr.public_bytes(Encoding.DER),
                            asn1Spec=rfc2986.CertificationRequest())
    cri = req["certificationRequestInfo"]
    values = {}
    for attr in cri["attributes"]:
        values.setdefault(attr["type"], []).extend(attr["values"])
    spki, _ = decoder.decode(bytes(values[ALT_KEY][0]), asn1Spec=rfc5280.SubjectPublicKeyInfo())
    alg, _ = decoder.decode(bytes(values[ALT_ALG][0]), asn1Spec=rfc5280.AlgorithmIdentifier())
    sig, _ = decoder.decode(bytes(values[ALT_SIG][0]), asn1Spec=univ.BitString())
    key_oid = str(spki["algorithm"]["algorithm"])
    pre = rfc2986.CertificationRequestInfo()
    pre["version"] = cri["version"]
    pre["subject"] = cri["subject"]
    pre["subjectPKInfo"] = cri["subjectPKInfo"]
    attrs = pre["attributes"]
    for attr in cri["attributes"]:
        if attr["type"] != ALT_SIG:
            attrs.append(attr)
    msg = encoder.encode(pre)
    key = MLDSA[key_oid].from_public_bytes(spki["subjectPublicKey"].asOctets())
    tampered = msg[:-1] + bytes([msg[-1] ^ 1])
    out.append({
        "classical": csr.is_signature_valid,
        "alg_matches": str(alg["algorithm"]) == key_oid and not alg["parameters"].isValue,
        "alt": verifies(key, sig.asOctets(), msg),
        "alt_tampered": verifies(key, sig.asOctets(), tampered),
        "alt_key": spki["subjectPublicKey"].asOctets().hex(),
    })
print(json.dumps(out))
"#;

#[test]
fn hybrid_csrs_verify_in_pyca_and_pyasn1() {
    let sans = Sans {
        dns: vec!["hybrid.example.com".to_owned()],
        ..Sans::default()
    };
    let mut csrs = Vec::new();
    let mut alt_keys = Vec::new();
    for (alg, level) in [
        (KeyAlgorithm::EcdsaP256, MlDsaLevel::L65),
        (KeyAlgorithm::EcdsaP384, MlDsaLevel::L87),
        (KeyAlgorithm::Ed25519, MlDsaLevel::L44),
    ] {
        let classical = sigil_pki::generate_key(alg).unwrap();
        let alt = MlDsaKeyPair::generate(level);
        let csr = sigil_pki::build_hybrid_csr(&classical, &alt, Some("hybrid"), &sans).unwrap();
        let parsed = parse_csr(&csr).unwrap();
        assert_eq!(
            parsed.alt_public_key,
            Some((level, alt.public_key().to_vec()))
        );
        csrs.push(Value::String(csr));
        alt_keys.push(hex::encode(alt.public_key()));
    }
    let verdicts = run_python(&python(), PYCA_CHECKS_HYBRID_CSRS, &Value::Array(csrs));
    for (v, key) in verdicts.as_array().unwrap().iter().zip(&alt_keys) {
        assert_eq!(v["classical"], true, "{v}");
        assert_eq!(v["alg_matches"], true, "{v}");
        assert_eq!(v["alt"], true, "{v}");
        assert_eq!(v["alt_tampered"], false, "{v}");
        assert_eq!(v["alt_key"], key.as_str());
    }
}
