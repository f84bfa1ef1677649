//! `sigil verify` through the real binary, offline: chains of every kind built with
//! sigil-pki (classical, hybrid with alternative signatures, composite, pure ML-DSA)
//! verify with exit 0 and report their signature kinds; a flipped signature byte or a
//! wrong root exits 6; unreadable input exits 5; no trust anchor exits 2. NATS is
//! pointed at a closed port throughout, so any attempt to connect would show (69).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{Duration, Utc};
use serde_json::Value;
use sigil_contracts::types::{KeyAlgorithm, Profile, Sans};
use sigil_pki::mldsa::{MlDsaKeyPair, MlDsaLevel};
use sigil_pki::{
    CompositeAlg, CompositeKeyPair, CompositeLeafRequest, LeafKey, LeafRequest, MlDsaLeafRequest,
    create_composite_intermediate, create_composite_root, create_hybrid_intermediate,
    create_hybrid_root, create_intermediate, create_mldsa_intermediate, create_mldsa_root,
    create_root, generate_key, issue_composite_leaf, issue_hybrid_leaf, issue_leaf,
    issue_mldsa_leaf,
};

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

fn sans() -> Sans {
    Sans {
        dns: vec!["svc.example.com".to_owned()],
        ..Sans::default()
    }
}

fn classical() -> Chain {
    let t = Utc::now();
    let root = create_root("Root", KeyAlgorithm::EcdsaP256, t, t + Duration::days(2)).unwrap();
    let inter = create_intermediate(
        &root,
        "Issuing",
        KeyAlgorithm::EcdsaP256,
        t,
        t + Duration::days(2),
    )
    .unwrap();
    let leaf = issue_leaf(
        &inter,
        &LeafRequest {
            profile: Profile::TlsServer,
            sans: sans(),
            common_name: None,
            not_before: t,
            not_after: t + Duration::days(1),
            key: LeafKey::Generated(generate_key(KeyAlgorithm::EcdsaP256).unwrap()),
        },
    )
    .unwrap();
    Chain {
        name: "classical",
        leaf: leaf.cert_der,
        inter: inter.cert_der,
        root: root.cert_der,
        kinds: &["classical", "validity", "constraints"],
        leaf_kind: "classical",
    }
}

fn hybrid() -> Chain {
    let t = Utc::now();
    let root = create_hybrid_root(
        "Hybrid Root",
        KeyAlgorithm::EcdsaP256,
        MlDsaLevel::L65,
        t,
        t + Duration::days(2),
    )
    .unwrap();
    let inter = create_hybrid_intermediate(
        &root,
        "Hybrid Issuing",
        KeyAlgorithm::EcdsaP256,
        MlDsaLevel::L65,
        t,
        t + Duration::days(2),
    )
    .unwrap();
    let leaf = issue_hybrid_leaf(
        &inter,
        &LeafRequest {
            profile: Profile::TlsServer,
            sans: sans(),
            common_name: None,
            not_before: t,
            not_after: t + Duration::days(1),
            key: LeafKey::Generated(generate_key(KeyAlgorithm::EcdsaP256).unwrap()),
        },
        None,
    )
    .unwrap();
    Chain {
        name: "hybrid",
        leaf: leaf.cert_der,
        inter: inter.cert_der().to_vec(),
        root: root.cert_der().to_vec(),
        kinds: &["classical", "alternative"],
        leaf_kind: "classical",
    }
}

fn composite() -> Chain {
    let alg = CompositeAlg::MlDsa65EcdsaP256Sha512;
    let t = Utc::now();
    let root = create_composite_root("Composite Root", alg, t, t + Duration::days(2)).unwrap();
    let inter =
        create_composite_intermediate(&root, "Composite Issuing", alg, t, t + Duration::days(2))
            .unwrap();
    let leaf = issue_composite_leaf(
        &inter,
        &CompositeLeafRequest {
            profile: Profile::TlsServer,
            sans: sans(),
            common_name: None,
            not_before: t,
            not_after: t + Duration::days(1),
            alg,
            public_key: CompositeKeyPair::generate(alg).unwrap().public_key(),
        },
    )
    .unwrap();
    Chain {
        name: "composite",
        leaf: leaf.cert_der,
        inter: inter.cert_der,
        root: root.cert_der,
        kinds: &["composite"],
        leaf_kind: "composite",
    }
}

fn mldsa() -> Chain {
    let t = Utc::now();
    let root = create_mldsa_root("ML-DSA Root", MlDsaLevel::L65, t, t + Duration::days(2)).unwrap();
    let inter = create_mldsa_intermediate(
        &root,
        "ML-DSA Issuing",
        MlDsaLevel::L65,
        t,
        t + Duration::days(2),
    )
    .unwrap();
    let leaf = issue_mldsa_leaf(
        &inter,
        &MlDsaLeafRequest {
            profile: Profile::TlsServer,
            sans: sans(),
            common_name: None,
            not_before: t,
            not_after: t + Duration::days(1),
            level: MlDsaLevel::L65,
            public_key: MlDsaKeyPair::generate(MlDsaLevel::L65)
                .public_key()
                .to_vec(),
        },
    )
    .unwrap();
    Chain {
        name: "mldsa",
        leaf: leaf.cert_der,
        inter: inter.cert_der,
        root: root.cert_der,
        kinds: &["ml-dsa"],
        leaf_kind: "ml-dsa",
    }
}

fn pem(ders: &[&[u8]]) -> String {
    let mut out = String::new();
    for der in ders {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in STANDARD.encode(der).as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

fn write(dir: &Path, name: &str, ders: &[&[u8]]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem(ders)).unwrap();
    path
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
        let cert = write(dir.path(), "cert.pem", &[&chain.leaf]);
        // chain.pem as `sigil issue` writes it: intermediate, then root.
        let chain_pem = write(dir.path(), "chain.pem", &[&chain.inter, &chain.root]);

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
        let inter = write(dir.path(), "inter.pem", &[&chain.inter]);
        let root = write(dir.path(), "root.pem", &[&chain.root]);
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
        let cert = write(dir.path(), "cert.pem", &[&leaf]);
        let chain_pem = write(dir.path(), "chain.pem", &[&chain.inter, &chain.root]);

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
    let cert = write(dir.path(), "cert.pem", &[&chain.leaf]);
    let inter = write(dir.path(), "inter.pem", &[&chain.inter]);
    let t = Utc::now();

    // Same name, another key: its subjectKeyIdentifier is not the intermediate's
    // authorityKeyIdentifier, so no path (and were it chained by name alone, the
    // intermediate's signature would not verify).
    let impostor = create_root("Root", KeyAlgorithm::EcdsaP256, t, t + Duration::days(2))
        .unwrap()
        .cert_der;
    let roots = write(dir.path(), "impostor.pem", &[&impostor]);
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
    let roots = write(dir.path(), "stranger.pem", &[&stranger]);
    let (code, report, _) = verify_json(&cert, &inter, Some(&roots));
    assert_eq!(code, 6, "{report:#}");
    assert_eq!(failed_kinds(&report), vec!["path".to_owned()], "{report:#}");

    // A chain from another kind's hierarchy, trusted via its own root: no path.
    let other = mldsa();
    let other_chain = write(dir.path(), "other.pem", &[&other.inter, &other.root]);
    let (code, report, _) = verify_json(&cert, &other_chain, None);
    assert_eq!(code, 6, "{report:#}");
}

#[test]
fn unreadable_input_exits_5_and_no_trust_anchor_exits_2() {
    let chain = classical();
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "cert.pem", &[&chain.leaf]);
    let chain_pem = write(dir.path(), "chain.pem", &[&chain.inter, &chain.root]);
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
    let inter = write(dir.path(), "inter.pem", &[&chain.inter]);
    let out = verify(&[&cert]);
    assert_eq!(out.status.code(), Some(2));
    let out = verify(&[cert.as_os_str(), "--chain".as_ref(), inter.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no trust anchor"), "{stderr}");
}
