//! Helpers shared by the unit tests: clock, CSRs, and the OpenSSL command line.

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Duration, Utc};
use rcgen::{CertificateParams, KeyPair};

use crate::key::SecretKey;
use crate::pem;

/// Tests may read the clock (the crate may not): OpenSSL checks validity against now.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now() - Duration::minutes(1)
}

/// A CSR from rcgen with the given SANs (IP literals become IP SANs), signed by `key`.
pub(crate) fn rcgen_csr(
    key: &SecretKey,
    sans: &[&str],
    tweak: impl FnOnce(&mut CertificateParams),
) -> String {
    let key_pair = KeyPair::try_from(key.pkcs8_der()).unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
    tweak(&mut params);
    params.serialize_request(&key_pair).unwrap().pem().unwrap()
}

/// Re-frames DER as PEM with `label`.
pub(crate) fn to_pem(label: &str, der: &[u8]) -> String {
    pem::encode(label, der)
}

/// Runs `openssl` with `args` in `dir`; returns (success, stdout + stderr).
pub(crate) fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Makes a CSR with OpenSSL (for key kinds rcgen cannot generate), e.g.
/// `&["-newkey", "rsa:1024"]`. Returns (csr pem, private key as SecretKey).
pub(crate) fn openssl_csr(newkey: &[&str], san: &str) -> (String, SecretKey) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "req",
        "-new",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "csr.pem",
        "-subj",
        "/CN=openssl.test",
    ];
    args.extend_from_slice(newkey);
    let addext = format!("subjectAltName={san}");
    args.extend_from_slice(&["-addext", &addext]);
    let (ok, text) = openssl(dir.path(), &args);
    assert!(ok, "openssl req failed: {text}");
    let csr = std::fs::read_to_string(dir.path().join("csr.pem")).unwrap();
    let key = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    (csr, SecretKey::from_pkcs8_pem(&key).unwrap())
}
