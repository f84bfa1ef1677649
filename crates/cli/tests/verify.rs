//! `sigil verify` through the real binary, offline: chains of every kind built with
//! sigil-pki (classical, hybrid with alternative signatures, composite, pure ML-DSA)
//! verify with exit 0 and report their signature kinds; a flipped signature byte or a
//! wrong root exits 6; unreadable input exits 5; no trust anchor exits 2. NATS is
//! pointed at a closed port throughout, so any attempt to connect would show (69).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

use chrono::{Duration, Utc};
use serde_json::Value;
use sigil_contracts::types::{KeyAlgorithm, Sans};
use sigil_pki::mldsa::MlDsaLevel;
use sigil_pki::{CompositeAlg, create_root};
use sigil_testkit::pki::{ChainKind, ChainSpec, chain, write_pem};

/// One chain, as DER: leaf, issuing intermediate, root.
struct Chain {
    name: &'static str,
    leaf: Vec<u8>,
    inter: Vec<u8>,
    root: Vec<u8>,
    /// Kinds of signature checks the report must contain (and pass).
    kinds: &'static [&'static str],
    /// The kind of the leaf's own signature (what a flipped byte breaks).
    leaf_kind: &'static str,
}

/// A chain of `kind` whose one `tls-server` leaf names only `svc.example.com` (hybrid
/// leaves without an alternative key).
fn build(
    name: &'static str,
    kind: ChainKind,
    (root_cn, inter_cn): (&str, &str),
    kinds: &'static [&'static str],
    leaf_kind: &'static str,
) -> Chain {
    let spec = ChainSpec {
        sans: Sans {
            dns: vec!["svc.example.com".to_owned()],
            ..Sans::default()
        },
        hybrid_leaf_alt_key: false,
        ..ChainSpec::new(root_cn, inter_cn)
    };
    let mut built = chain(kind, &spec);
    Chain {
        name,
        leaf: built.leaf_ders.remove(0),
        inter: built.inter_der,
        root: built.root_der,
        kinds,
        leaf_kind,
    }
}

fn classical() -> Chain {
    build(
        "classical",
        ChainKind::Classical(KeyAlgorithm::EcdsaP256),
        ("Root", "Issuing"),
        &["classical", "validity", "constraints"],
        "classical",
    )
}

fn hybrid() -> Chain {
    build(
        "hybrid",
        ChainKind::Hybrid(KeyAlgorithm::EcdsaP256, MlDsaLevel::L65),
        ("Hybrid Root", "Hybrid Issuing"),
        &["classical", "alternative"],
        "classical",
    )
}

fn composite() -> Chain {
    build(
        "composite",
        ChainKind::Composite(CompositeAlg::MlDsa65EcdsaP256Sha512),
        ("Composite Root", "Composite Issuing"),
        &["composite"],
        "composite",
    )
}

fn mldsa() -> Chain {
    build(
        "mldsa",
        ChainKind::MlDsa(MlDsaLevel::L65),
        ("ML-DSA Root", "ML-DSA Issuing"),
        &["ml-dsa"],
        "ml-dsa",
    )
}

/// `sigil --nats <closed port> verify <args>`.
fn verify<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["--nats", "nats://127.0.0.1:1", "verify"])
        .args(args)
        .env_remove("SIGIL_NATS_URL")
        .output()
        .unwrap()
}

/// `sigil verify CERT --chain CHAIN [--roots ROOTS] --json`.
fn verify_json(cert: &Path, chain: &Path, roots: Option<&Path>) -> (i32, Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigil"));
    cmd.args(["--nats", "nats://127.0.0.1:1", "verify", "--json"])
        .arg(cert)
        .arg("--chain")
        .arg(chain)
        .env_remove("SIGIL_NATS_URL");
    if let Some(roots) = roots {
        cmd.arg("--roots").arg(roots);
    }
    let out = cmd.output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code().unwrap(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn checks(report: &Value) -> &Vec<Value> {
    report["checks"].as_array().unwrap()
}

fn failed_kinds(report: &Value) -> Vec<String> {
    checks(report)
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_kind_of_chain_verifies_and_reports_its_signatures() {
    for chain in [classical(), hybrid(), composite(), mldsa()] {
        let dir = tempfile::tempdir().unwrap();
        let cert = write_pem(dir.path(), "cert.pem", &[&chain.leaf]);
        // chain.pem as `sigil issue` writes it: intermediate, then root.
        let chain_pem = write_pem(dir.path(), "chain.pem", &[&chain.inter, &chain.root]);

        let (code, report, stderr) = verify_json(&cert, &chain_pem, None);
        assert_eq!(code, 0, "{}: {report:#}\n{stderr}", chain.name);
        assert_eq!(report["ok"], true, "{}", chain.name);
        for kind in chain.kinds {
            assert!(
                checks(&report)
                    .iter()
                    .any(|c| c["kind"] == *kind && c["ok"] == true),
                "{}: no passing {kind} check in {report:#}",
                chain.name
            );
        }
        // Leaf, intermediate and root self-signature.
        let signatures = checks(&report)
            .iter()
            .filter(|c| c["kind"] == chain.leaf_kind)
            .count();
        assert_eq!(signatures, 3, "{}: {report:#}", chain.name);

        // The same with an explicit root, and the table for people.
        let inter = write_pem(dir.path(), "inter.pem", &[&chain.inter]);
        let root = write_pem(dir.path(), "root.pem", &[&chain.root]);
        let (code, _, stderr) = verify_json(&cert, &inter, Some(&root));
        assert_eq!(code, 0, "{}: {stderr}", chain.name);
        let out = verify(&[cert.as_os_str(), "--chain".as_ref(), chain_pem.as_os_str()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}: {stdout}", chain.name);
        let header = stdout.lines().next().unwrap();
        for column in ["CERT", "KIND", "ALGORITHM", "RESULT", "DETAIL"] {
            assert!(header.contains(column), "{header}");
        }
        assert!(stdout.contains("CN=svc.example.com"), "{stdout}");
        assert!(stdout.contains('✓') && !stdout.contains('✗'), "{stdout}");
        assert!(
            stdout
                .trim_end()
                .lines()
                .last()
                .unwrap()
                .starts_with("OK: all "),
            "{stdout}"
        );
    }
}

#[test]
fn a_flipped_signature_byte_fails_with_exit_6() {
    for chain in [classical(), hybrid(), composite(), mldsa()] {
        let dir = tempfile::tempdir().unwrap();
        // The signatureValue BIT STRING ends the certificate: 20 bytes from the end is
        // inside the signature for every kind (inside `s` for ECDSA P-256).
        let mut leaf = chain.leaf.clone();
        let i = leaf.len() - 20;
        leaf[i] ^= 0x01;
        let cert = write_pem(dir.path(), "cert.pem", &[&leaf]);
        let chain_pem = write_pem(dir.path(), "chain.pem", &[&chain.inter, &chain.root]);

        let (code, report, stderr) = verify_json(&cert, &chain_pem, None);
        assert_eq!(code, 6, "{}: {report:#}", chain.name);
        assert_eq!(report["ok"], false);
        assert_eq!(
            failed_kinds(&report),
            vec![chain.leaf_kind.to_owned()],
            "{}: {report:#}",
            chain.name
        );
        assert!(
            stderr.starts_with("sigil: error: verification failed: 1 of "),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");

        let out = verify(&[cert.as_os_str(), "--chain".as_ref(), chain_pem.as_os_str()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(6));
        assert!(stdout.contains('✗'), "{stdout}");
        assert!(
            stdout
                .trim_end()
                .lines()
                .last()
                .unwrap()
                .starts_with("FAILED: 1 of "),
            "{stdout}"
        );
    }
}

#[test]
fn a_wrong_root_fails_with_exit_6() {
    let chain = classical();
    let dir = tempfile::tempdir().unwrap();
    let cert = write_pem(dir.path(), "cert.pem", &[&chain.leaf]);
    let inter = write_pem(dir.path(), "inter.pem", &[&chain.inter]);
    let t = Utc::now();

    // Same name, another key: its subjectKeyIdentifier is not the intermediate's
    // authorityKeyIdentifier, so no path (and were it chained by name alone, the
    // intermediate's signature would not verify).
    let impostor = create_root("Root", KeyAlgorithm::EcdsaP256, t, t + Duration::days(2))
        .unwrap()
        .cert_der;
    let roots = write_pem(dir.path(), "impostor.pem", &[&impostor]);
    let (code, report, _) = verify_json(&cert, &inter, Some(&roots));
    assert_eq!(code, 6, "{report:#}");
    assert_eq!(report["ok"], false);
    assert!(!failed_kinds(&report).is_empty(), "{report:#}");

    // Another root altogether: no path.
    let stranger = create_root(
        "Elsewhere",
        KeyAlgorithm::EcdsaP256,
        t,
        t + Duration::days(2),
    )
    .unwrap()
    .cert_der;
    let roots = write_pem(dir.path(), "stranger.pem", &[&stranger]);
    let (code, report, _) = verify_json(&cert, &inter, Some(&roots));
    assert_eq!(code, 6, "{report:#}");
    assert_eq!(failed_kinds(&report), vec!["path".to_owned()], "{report:#}");

    // A chain from another kind's hierarchy, trusted via its own root: no path.
    let other = mldsa();
    let other_chain = write_pem(dir.path(), "other.pem", &[&other.inter, &other.root]);
    let (code, report, _) = verify_json(&cert, &other_chain, None);
    assert_eq!(code, 6, "{report:#}");
}

#[test]
fn unreadable_input_exits_5_and_no_trust_anchor_exits_2() {
    let chain = classical();
    let dir = tempfile::tempdir().unwrap();
    let cert = write_pem(dir.path(), "cert.pem", &[&chain.leaf]);
    let chain_pem = write_pem(dir.path(), "chain.pem", &[&chain.inter, &chain.root]);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");

    for (args, code) in [
        (vec![&garbage, &chain_pem], 5),
        (vec![&cert, &garbage], 5),
        (vec![&missing, &chain_pem], 5),
    ] {
        let out = verify(&[args[0].as_os_str(), "--chain".as_ref(), args[1].as_os_str()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.starts_with("sigil: error: "), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(out.stdout.is_empty());
    }

    // No --chain and no --roots; or a chain that does not end in a root.
    let inter = write_pem(dir.path(), "inter.pem", &[&chain.inter]);
    let out = verify(&[&cert]);
    assert_eq!(out.status.code(), Some(2));
    let out = verify(&[cert.as_os_str(), "--chain".as_ref(), inter.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no trust anchor"), "{stderr}");
}
