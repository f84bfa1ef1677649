//! ML-DSA signatures made by sigil-pki verify with an implementation that is not ours
//! (nor pqcrypto's): @noble/post-quantum, pure JavaScript, run with Node.
//!
//! - pure ML-DSA (RFC 9881): every certificate of a root → intermediate → leaf chain
//!   of each level, the signature over the DER TBSCertificate with an empty context;
//! - hybrid (X.509 alternative signatures): altSignatureValue (2.5.29.74) over the
//!   preTBSCertificate ([`sigil_pki::hybrid::pre_tbs_certificate`]), with the issuer's
//!   subjectAltPublicKeyInfo (2.5.29.72) key, empty context;
//! - composite (draft-ietf-lamps-pq-composite-sigs-19): the ML-DSA half of every
//!   certificate signature, over `M' = Prefix ‖ Label ‖ 0 ‖ PH(TBSCertificate)`
//!   ([`sigil_pki::CompositeAlg::message_representative`]) with the FIPS 204 context
//!   set to the algorithm's label.
//!
//! Certificates are taken apart with x509-parser and `der`, not with sigil-pki. Each
//! case is also checked to fail with one message bit flipped and, where the context is
//! not empty, with an empty context, so the verifier is shown to discriminate.
//!
//! noble lives in `$SIGIL_NODE_TOOLS/node_modules` (default
//! `~/.cache/sigil/tools/node/node_modules`); when it is missing the test runs
//! `scripts/ensure-noble.sh` (npm install) and fails if that fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use der::Decode as _;
use serde_json::json;
use sigil_contracts::types::KeyAlgorithm;
use sigil_pki::CompositeAlg;
use sigil_pki::mldsa::MlDsaLevel;
use sigil_testkit::pki::{ChainKind, ChainSpec, TestChain, chain};
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// altSignatureValue (ITU-T X.509 §9.8).
const ALT_SIGNATURE_VALUE: &str = "2.5.29.74";
/// altSignatureAlgorithm.
const ALT_SIGNATURE_ALGORITHM: &str = "2.5.29.73";
/// subjectAltPublicKeyInfo.
const SUBJECT_ALT_PUBLIC_KEY_INFO: &str = "2.5.29.72";

const HINT: &str = "run `scripts/ensure-noble.sh` (npm install of @noble/post-quantum into \
                    ~/.cache/sigil/tools/node; needs node >= 20 and npm)";

/// The node_modules directory holding @noble/post-quantum; installs it with
/// `scripts/ensure-noble.sh` when it is not there yet (once per test process: the
/// tests run in parallel threads and must not race two npm installs).
fn noble_modules() -> PathBuf {
    static MODULES: OnceLock<PathBuf> = OnceLock::new();
    MODULES.get_or_init(find_or_install_noble).clone()
}

fn find_or_install_noble() -> PathBuf {
    let prefix = std::env::var_os("SIGIL_NODE_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sigil/tools/node"))
        })
        .expect("neither $SIGIL_NODE_TOOLS nor $HOME is set");
    let modules = prefix.join("node_modules");
    if modules.join("@noble/post-quantum/package.json").is_file() {
        return modules;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ensure-noble.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {HINT}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}\n{HINT}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        printed.join("@noble/post-quantum/package.json").is_file(),
        "ensure-noble.sh printed {}, which holds no @noble/post-quantum; {HINT}",
        printed.display()
    );
    printed
}

/// Verifies every case with noble, and checks that a flipped message bit (and, for a
/// non-empty context, the empty context) makes verification fail. Prints one line per
/// case to stdout; exits non-zero if anything is off.
const NOBLE_VERIFY: &str = r#"
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
const [modules, jobsPath] = process.argv.slice(2);
const pkg = JSON.parse(readFileSync(join(modules, '@noble/post-quantum/package.json'), 'utf8'));
const mod = await import(pathToFileURL(join(modules, '@noble/post-quantum/ml-dsa.js')).href);
const algs = { 44: mod.ml_dsa44, 65: mod.ml_dsa65, 87: mod.ml_dsa87 };
const hex = (s) => Uint8Array.from(Buffer.from(s, 'hex'));
const verify = (alg, sig, msg, pk, context) => {
  try {
    return alg.verify(sig, msg, pk, { context });
  } catch (e) {
    return `threw ${e}`;
  }
};
let bad = 0;
for (const c of JSON.parse(readFileSync(jobsPath, 'utf8'))) {
  const alg = algs[c.level];
  const [pk, sig, msg, ctx] = [hex(c.pk), hex(c.sig), hex(c.msg), hex(c.ctx)];
  const problems = [];
  if (pk.length !== alg.lengths.publicKey) problems.push(`public key is ${pk.length} bytes`);
  if (sig.length !== alg.lengths.signature) problems.push(`signature is ${sig.length} bytes`);
  const ok = verify(alg, sig, msg, pk, ctx);
  if (ok !== true) problems.push(`does not verify (${ok})`);
  const flipped = msg.slice();
  flipped[flipped.length >> 1] ^= 1;
  if (verify(alg, sig, flipped, pk, ctx) === true) problems.push('verifies a tampered message');
  if (ctx.length > 0 && verify(alg, sig, msg, pk, new Uint8Array()) === true) {
    problems.push('verifies without its context');
  }
  if (problems.length) bad++;
  console.log(`${problems.length ? 'FAIL' : 'ok'} ${c.name}${problems.length ? ': ' + problems.join('; ') : ''}`);
}
console.log(`noble ${pkg.version}: ${bad} failed`);
process.exit(bad ? 1 : 0);
"#;

/// One ML-DSA signature to check: `sig` by `pk` over `msg` with context `ctx`.
struct Case {
    name: String,
    level: MlDsaLevel,
    pk: Vec<u8>,
    sig: Vec<u8>,
    msg: Vec<u8>,
    ctx: Vec<u8>,
}

fn level_number(level: MlDsaLevel) -> u32 {
    match level {
        MlDsaLevel::L44 => 44,
        MlDsaLevel::L65 => 65,
        MlDsaLevel::L87 => 87,
    }
}

fn run_noble(cases: &[Case]) {
    assert!(!cases.is_empty());
    let modules = noble_modules();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("verify.mjs");
    std::fs::write(&script, NOBLE_VERIFY).unwrap();
    let jobs: Vec<_> = cases
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "level": level_number(c.level),
                "pk": hex::encode(&c.pk),
                "sig": hex::encode(&c.sig),
                "msg": hex::encode(&c.msg),
                "ctx": hex::encode(&c.ctx),
            })
        })
        .collect();
    let jobs_path = dir.path().join("jobs.json");
    std::fs::write(&jobs_path, serde_json::to_vec(&jobs).unwrap()).unwrap();
    let out = Command::new("node")
        .arg(&script)
        .arg(&modules)
        .arg(&jobs_path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node: {e}; install Node.js >= 20"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "noble rejected signatures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        cases.len(),
        "{stdout}"
    );
}

/// A root → intermediate → one `tls-server` leaf chain of `kind`.
fn noble_chain(kind: ChainKind) -> TestChain {
    chain(kind, &ChainSpec::new("Noble Root", "Noble Issuing"))
}

/// (name, certificate, its issuer's certificate) for each certificate of `c`.
fn with_issuers(c: &TestChain) -> [(&'static str, &[u8], &[u8]); 3] {
    [
        ("root", &c.root_der, &c.root_der),
        ("intermediate", &c.inter_der, &c.root_der),
        ("leaf", c.leaf_der(), &c.inter_der),
    ]
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty(), "trailing bytes after the certificate");
    cert
}

/// (TBSCertificate DER, signatureAlgorithm OID, signature bytes) of a certificate.
fn signed_parts(cert: &X509Certificate<'_>) -> (Vec<u8>, String, Vec<u8>) {
    assert_eq!(cert.signature_value.unused_bits, 0);
    (
        cert.tbs_certificate.as_ref().to_vec(),
        cert.signature_algorithm.algorithm.to_id_string(),
        cert.signature_value.data.to_vec(),
    )
}

/// The raw subject public key (the SPKI BIT STRING's contents) and its algorithm OID.
fn subject_key(cert: &X509Certificate<'_>) -> (String, Vec<u8>) {
    let spki = cert.public_key();
    assert_eq!(spki.subject_public_key.unused_bits, 0);
    assert!(
        spki.algorithm.parameters.is_none(),
        "ML-DSA / composite SPKI parameters must be absent"
    );
    (
        spki.algorithm.algorithm.to_id_string(),
        spki.subject_public_key.data.to_vec(),
    )
}

/// The extnValue octets of the extension `oid`.
fn extension_value<'a>(cert: &'a X509Certificate<'_>, oid: &str) -> &'a [u8] {
    cert.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == oid)
        .unwrap_or_else(|| panic!("no extension {oid}"))
        .value
}

#[test]
fn pure_mldsa_certificate_signatures_verify_with_noble() {
    let mut cases = Vec::new();
    for level in MlDsaLevel::ALL {
        let c = noble_chain(ChainKind::MlDsa(level));
        for (name, der, issuer_der) in with_issuers(&c) {
            let cert = parse(der);
            let (tbs, sig_oid, sig) = signed_parts(&cert);
            let (key_oid, pk) = subject_key(&parse(issuer_der));
            assert_eq!(sig_oid, level.oid(), "{name}: signatureAlgorithm");
            assert_eq!(key_oid, level.oid(), "{name}: issuer key algorithm");
            cases.push(Case {
                name: format!("{} {name}", level.name()),
                level,
                pk,
                sig,
                msg: tbs,
                ctx: Vec::new(),
            });
        }
    }
    run_noble(&cases);
}

#[test]
fn hybrid_alternative_signatures_verify_with_noble() {
    let mut cases = Vec::new();
    for (alg, level) in [
        (KeyAlgorithm::EcdsaP256, MlDsaLevel::L44),
        (KeyAlgorithm::EcdsaP256, MlDsaLevel::L65),
        (KeyAlgorithm::EcdsaP384, MlDsaLevel::L87),
    ] {
        let c = noble_chain(ChainKind::Hybrid(alg, level));
        for (name, der, issuer_der) in with_issuers(&c) {
            let cert = parse(der);
            // altSignatureValue ::= BIT STRING
            let alt_sig =
                der::asn1::BitString::from_der(extension_value(&cert, ALT_SIGNATURE_VALUE))
                    .unwrap();
            let sig = alt_sig.as_bytes().expect("no unused bits").to_vec();
            // altSignatureAlgorithm ::= AlgorithmIdentifier
            let alt_alg = spki::AlgorithmIdentifierOwned::from_der(extension_value(
                &cert,
                ALT_SIGNATURE_ALGORITHM,
            ))
            .unwrap();
            assert_eq!(alt_alg.oid.to_string(), level.oid(), "{name}");
            assert!(alt_alg.parameters.is_none(), "{name}");
            // The issuer's subjectAltPublicKeyInfo ::= SubjectPublicKeyInfo
            let issuer = parse(issuer_der);
            let alt_spki = spki::SubjectPublicKeyInfoOwned::from_der(extension_value(
                &issuer,
                SUBJECT_ALT_PUBLIC_KEY_INFO,
            ))
            .unwrap();
            assert_eq!(alt_spki.algorithm.oid.to_string(), level.oid(), "{name}");
            let pk = alt_spki.subject_public_key.as_bytes().unwrap().to_vec();
            cases.push(Case {
                name: format!("hybrid {}+{} {name}", alg.as_str(), level.name()),
                level,
                pk,
                sig,
                msg: sigil_pki::hybrid::pre_tbs_certificate(der).unwrap(),
                ctx: Vec::new(),
            });
        }
    }
    run_noble(&cases);
}

#[test]
fn composite_mldsa_components_verify_with_noble() {
    let mut cases = Vec::new();
    for alg in CompositeAlg::ALL {
        let level = alg.mldsa_level();
        let c = noble_chain(ChainKind::Composite(alg));
        for (name, der, issuer_der) in with_issuers(&c) {
            let cert = parse(der);
            let (tbs, sig_oid, sig) = signed_parts(&cert);
            let (key_oid, composite_pk) = subject_key(&parse(issuer_der));
            assert_eq!(sig_oid, alg.oid(), "{name}: signatureAlgorithm");
            assert_eq!(key_oid, alg.oid(), "{name}: issuer key algorithm");
            assert_eq!(composite_pk.len(), alg.public_key_len(), "{name}");
            // Composite encodings (draft-19): ML-DSA part first, at fixed lengths.
            let pk = composite_pk[..level.public_key_len()].to_vec();
            assert!(
                sig.len() > level.signature_len(),
                "{name}: signature too short"
            );
            let mldsa_sig = sig[..level.signature_len()].to_vec();
            // Certificates are signed with the empty application context.
            let m_prime = alg.message_representative(&tbs, &[]).unwrap();
            cases.push(Case {
                name: format!("composite {} {name}", alg.name()),
                level,
                pk,
                sig: mldsa_sig,
                msg: m_prime,
                ctx: alg.label().as_bytes().to_vec(),
            });
        }
    }
    run_noble(&cases);
}
