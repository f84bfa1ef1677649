//! `sigil csr` makes keys and CSRs locally for every key kind: each CSR verifies with
//! the issuer's own parser (proof of possession, for hybrid both keys), keys are
//! written with mode 0600, and contradictory options are refused with nothing written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use sigil_contracts::types::KeyAlgorithm;

fn sigil(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(args)
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn every_key_kind_gets_a_verifiable_csr() {
    for (alg, alt) in [
        ("ecdsa-p256", None),
        ("ed25519", None),
        ("ml-dsa-65", None),
        ("mldsa65-ecdsa-p256-sha512", None),
        ("ecdsa-p256", Some("ml-dsa-65")),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_str().unwrap();
        let mut args = vec![
            "--json",
            "csr",
            "--key-alg",
            alg,
            "--dns",
            "web.example.com",
            "--out",
            out,
        ];
        if let Some(alt) = alt {
            args.extend(["--alt", alt]);
        }
        let run = sigil(&args);
        assert!(
            run.status.success(),
            "{alg}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let written: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(written["key_algorithm"], alg);

        let csr = std::fs::read_to_string(dir.path().join("csr.pem")).unwrap();
        let parsed = sigil_pki::parse_csr(&csr).unwrap();
        let expected: KeyAlgorithm =
            serde_json::from_value(serde_json::Value::String(alg.to_owned())).unwrap();
        assert_eq!(parsed.key_algorithm, expected, "{alg}");
        assert_eq!(parsed.sans.dns, vec!["web.example.com".to_owned()]);
        assert_eq!(parsed.alt_public_key.is_some(), alt.is_some(), "{alg}");
        assert_eq!(mode(&dir.path().join("key.pem")), 0o600);
        if alt.is_some() {
            assert_eq!(mode(&dir.path().join("alt-key.pem")), 0o600);
        }
    }
}

#[test]
fn contradictions_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let run = sigil(&[
        "csr",
        "--key-alg",
        "ml-dsa-65",
        "--alt",
        "ml-dsa-65",
        "--dns",
        "a.example.com",
        "--out",
        out,
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("--alt"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // An existing key is not overwritten without --force.
    let ok = ["csr", "--dns", "a.example.com", "--out", out];
    assert!(sigil(&ok).status.success());
    let again = sigil(&ok);
    assert!(!again.status.success());
}
