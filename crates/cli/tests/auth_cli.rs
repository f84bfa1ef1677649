//! Requester authentication through the real `sigil` binary, against `sigil up` on
//! private nats-servers.
//!
//! - The first `sigil up` makes `admin.cred` (mode 0600, chain and keys); a second one
//!   keeps it byte for byte; a start that finds it in the last third of its lifetime
//!   renews it by possession, with a new key.
//! - Without a usable admin credential, mutating commands stop with one line saying
//!   how to get one (exit 2), before touching the network.
//! - Tokens: `sigil token create` → `sigil issue --token` works once; the same token
//!   again is unauthenticated (exit 7, "used"); a name outside the token's patterns is
//!   denied (exit 3) without burning the token; a token minted by another installation
//!   is unauthenticated and issues nothing.
//! - Renewal by possession: `sigil renew` keeps the names, gets a new serial, keeps the
//!   key by default and makes a new one with `--rekey` (a hybrid credential's ML-DSA key
//!   too, replaced in place); a revoked credential cannot renew (exit 7).
//! - A workload credential passed as `--admin-cred` can neither revoke nor change
//!   policy (exit 3).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use sigil_testkit::NatsServer;

mod common;

use common::{err, out, sigil, until_known};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({:?}): {}{}",
        o.status.code(),
        out(&o),
        err(&o)
    );
    out(&o)
}

fn one_line(o: &Output) -> String {
    let e = err(o);
    assert_eq!(e.trim().lines().count(), 1, "one-line error: {e}");
    e
}

/// The DER of the first certificate in a PEM file.
fn cert_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let end = "-----END CERTIFICATE-----";
    let first = &text[..text.find(end).unwrap() + end.len()];
    sigil_pki::pem::decode(first, &["CERTIFICATE"]).unwrap()
}

/// The leaf's SubjectPublicKeyInfo (DER): what "the same key" means.
fn spki(path: &Path) -> Vec<u8> {
    let der = cert_der(path);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.public_key().raw.to_vec()
}

fn facts(path: &Path) -> sigil_contracts::types::CertificateFacts {
    sigil_pki::certificate_facts(&cert_der(path), sigil_contracts::types::Profile::TlsServer)
        .unwrap()
}

/// The public key (SPKI DER) of a PKCS#8 classical key file.
fn key_spki(path: &Path) -> Vec<u8> {
    use rcgen::PublicKeyData as _;
    let pem = std::fs::read_to_string(path).unwrap();
    let der = sigil_pki::pem::decode(&pem, &["PRIVATE KEY"]).unwrap();
    rcgen::KeyPair::try_from(der.as_slice())
        .unwrap()
        .subject_public_key_info()
}

/// `sigil token create …` → the token.
fn token(d: &Path, url: &str, principal: &str, pattern: &str) -> String {
    let o = sigil(
        d,
        url,
        &[
            "token",
            "create",
            "--principal",
            principal,
            "--for",
            pattern,
            "--ttl",
            "10m",
        ],
    );
    ok(o, "token create").trim().to_owned()
}

fn ls_count(d: &Path, url: &str) -> usize {
    let o = sigil(d, url, &["ls", "--json"]);
    let v: Value = serde_json::from_str(&ok(o, "ls")).unwrap();
    v.as_array().unwrap().len()
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_makes_the_admin_credential_once() {
    let nats = NatsServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let cred = data.path().join("admin.cred");
    let first = {
        let (_up, _) = common::start_up(data.path(), &nats.url(), &[]);
        assert_eq!(mode(&cred), 0o600);
        let text = std::fs::read_to_string(&cred).unwrap();
        assert!(text.contains("-----BEGIN CERTIFICATE-----"), "{text}");
        assert!(text.contains("PRIVATE KEY-----"));
        // A hybrid CA (the default): P-256 key plus an ML-DSA-65 alternative key.
        assert_eq!(text.matches("-----BEGIN PRIVATE KEY-----").count(), 2);
        let facts = facts(&cred);
        assert_eq!(facts.sans.uri, vec!["spiffe://sigil.admin/admin/admin"]);
        assert_eq!(
            sigil_pki::hybrid::subject_alt_key_level(&cert_der(&cred)).unwrap(),
            Some(sigil_pki::mldsa::MlDsaLevel::L65)
        );
        let lifetime = facts.not_after - facts.not_before;
        assert!(lifetime >= chrono::Duration::days(29), "{lifetime}");
        // It works: the admin may list-and-change things right away.
        ok(
            sigil(
                data.path(),
                &nats.url(),
                &["ca", "rotate", "--step", "prepare"],
            ),
            "ca rotate",
        );
        std::fs::read(&cred).unwrap()
    };
    {
        let (_up, _) = common::start_up(data.path(), &nats.url(), &[]);
        assert_eq!(
            std::fs::read(&cred).unwrap(),
            first,
            "a valid credential is never replaced"
        );
        ok(
            sigil(
                data.path(),
                &nats.url(),
                &["ca", "rotate", "--step", "activate"],
            ),
            "the kept credential still signs",
        );
        // Put a short-lived admin credential in its place (issued to admin:admin, as the
        // admin signs the request): the next start finds it in the last third of its
        // life.
        let short = data.path().join("short");
        ok(
            sigil(
                data.path(),
                &nats.url(),
                &[
                    "issue",
                    "--uri",
                    "spiffe://sigil.admin/admin/admin",
                    "--profile",
                    "tls-client",
                    "--ttl",
                    "30s",
                    "--out",
                    short.to_str().unwrap(),
                ],
            ),
            "issue a short-lived admin credential",
        );
        let bundle = ["cert.pem", "chain.pem", "key.pem"]
            .map(|f| std::fs::read_to_string(short.join(f)).unwrap())
            .concat();
        std::fs::write(&cred, bundle).unwrap();
    }
    let replaced = facts(&cred);
    let (_up, _) = common::start_up(data.path(), &nats.url(), &[]);
    let renewed = facts(&cred);
    assert_ne!(renewed.serial, replaced.serial, "renewed at start");
    assert_eq!(renewed.sans, replaced.sans);
    assert!(renewed.not_after - renewed.not_before >= chrono::Duration::days(29));
    assert_eq!(mode(&cred), 0o600);
    assert_eq!(
        sigil_pki::hybrid::subject_alt_key_level(&cert_der(&cred)).unwrap(),
        Some(sigil_pki::mldsa::MlDsaLevel::L65),
        "a new key of the kind the CA certifies"
    );
    ok(
        sigil(
            data.path(),
            &nats.url(),
            &["ca", "rotate", "--step", "prepare"],
        ),
        "the renewed credential signs",
    );
}

#[test]
fn mutating_commands_need_an_admin_credential() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    // Nothing listens here: the credential is checked before any connection.
    let url = format!("nats://127.0.0.1:{}", common::free_port());
    for args in [
        vec!["revoke", "0a", "--reason", "superseded"],
        vec!["issue", "--dns", "a.example.com", "--out", "x"],
        vec!["ca", "rotate"],
        vec!["token", "create", "--principal", "workload:a", "--for", "a"],
    ] {
        let o = sigil(d, &url, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        let e = one_line(&o);
        assert!(
            e.contains("admin.cred") && e.contains("sigil up") && e.contains("--admin-cred"),
            "{e}"
        );
    }
    let junk = d.join("junk.cred");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let o = sigil(
        d,
        &url,
        &[
            "--admin-cred",
            junk.to_str().unwrap(),
            "revoke",
            "0a",
            "--reason",
            "superseded",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(one_line(&o).contains("junk.cred"), "{}", err(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_renewal_and_workload_credentials() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let (_up, _) = common::start_up(d, &url, &[]);
    let dir = |name: &str| d.join(name);
    let path = |name: &str, file: &str| dir(name).join(file).to_str().unwrap().to_owned();

    // A one-use token gets one certificate.
    let t1 = token(d, &url, "workload:web", "*.web.internal");
    let o = sigil(
        d,
        &url,
        &[
            "issue",
            "--token",
            &t1,
            "--dns",
            "a.web.internal",
            "--out",
            &path("w1", ""),
        ],
    );
    ok(o, "issue with a token");
    let w1 = facts(&dir("w1").join("cert.pem"));
    let o = sigil(
        d,
        &url,
        &[
            "issue",
            "--token",
            &t1,
            "--dns",
            "b.web.internal",
            "--out",
            &path("again", ""),
        ],
    );
    assert_eq!(o.status.code(), Some(7), "{}", err(&o));
    let e = one_line(&o);
    assert!(
        e.starts_with("sigil: unauthenticated: ") && e.to_lowercase().contains("used"),
        "{e}"
    );
    assert!(!dir("again").join("cert.pem").exists());

    // A name outside the token's patterns is denied, and the token is not burnt.
    let t2 = token(d, &url, "workload:web", "*.web.internal");
    let o = sigil(
        d,
        &url,
        &[
            "issue",
            "--token",
            &t2,
            "--dns",
            "b.other.internal",
            "--out",
            &path("out", ""),
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(one_line(&o).contains("b.other.internal"), "{}", err(&o));
    ok(
        sigil(
            d,
            &url,
            &[
                "csr",
                "--alt",
                "ml-dsa-65",
                "--dns",
                "h.web.internal",
                "--out",
                &path("h", ""),
            ],
        ),
        "csr",
    );
    // The token also works from the environment (and was not burnt by the denial).
    let o = common::command(
        d,
        &url,
        &[
            "issue",
            "--csr",
            &path("h", "csr.pem"),
            "--out",
            &path("h", ""),
        ],
    )
    .env("SIGIL_TOKEN", &t2)
    .output()
    .unwrap();
    ok(o, "issue with SIGIL_TOKEN after a denial");

    // A token from another installation proves nothing here, and issues nothing.
    let other_nats = NatsServer::start().await;
    let other = tempfile::tempdir().unwrap();
    let foreign = {
        let (_other_up, _) = common::start_up(other.path(), &other_nats.url(), &[]);
        token(
            other.path(),
            &other_nats.url(),
            "workload:web",
            "*.web.internal",
        )
    };
    let before = wait_for("inventory lists both", || {
        let n = ls_count(d, &url);
        (n >= 3).then_some(n)
    });
    let o = sigil(
        d,
        &url,
        &[
            "issue",
            "--token",
            &foreign,
            "--dns",
            "f.web.internal",
            "--out",
            &path("f", ""),
        ],
    );
    assert_eq!(o.status.code(), Some(7), "{}", err(&o));
    assert!(
        one_line(&o).starts_with("sigil: unauthenticated: "),
        "{}",
        err(&o)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ls_count(d, &url), before, "nothing was issued");

    // Renewal keeping the key: same names, new serial, same public key; the key file is
    // not rewritten.
    let renew_json = |args: &[&str]| -> Value {
        let mut all = vec!["--json", "renew"];
        all.extend_from_slice(args);
        let o = until_known(d, &url, &all);
        serde_json::from_str(&ok(o, "renew")).unwrap()
    };
    let key1 = path("w1", "key.pem");
    let r2 = renew_json(&[
        "--cert",
        &path("w1", "cert.pem"),
        "--key",
        &key1,
        "--out",
        &path("w2", ""),
    ]);
    assert_eq!(r2["replaces"], w1.serial.as_str());
    assert_eq!(r2["rekeyed"], false);
    let w2 = facts(&dir("w2").join("cert.pem"));
    assert_ne!(w2.serial, w1.serial);
    assert_eq!(w2.sans, w1.sans);
    assert_eq!(
        spki(&dir("w2").join("cert.pem")),
        spki(&dir("w1").join("cert.pem"))
    );
    assert!(!dir("w2").join("key.pem").exists());

    // With --rekey: a new key, written 0600, that the new certificate carries.
    let r3 = renew_json(&[
        "--cert",
        &path("w2", "cert.pem"),
        "--key",
        &key1,
        "--rekey",
        "--out",
        &path("w3", ""),
    ]);
    assert_eq!(r3["rekeyed"], true);
    let w3 = facts(&dir("w3").join("cert.pem"));
    assert_eq!(w3.sans, w1.sans);
    assert_eq!(mode(&dir("w3").join("key.pem")), 0o600);
    assert_ne!(
        key_spki(&dir("w3").join("key.pem")),
        key_spki(Path::new(&key1))
    );
    assert_eq!(
        key_spki(&dir("w3").join("key.pem")),
        spki(&dir("w3").join("cert.pem"))
    );

    // A hybrid credential renews in place, proven by both keys; --rekey replaces both.
    let h_cert = dir("h").join("cert.pem");
    let h_before = facts(&h_cert);
    let h_key = std::fs::read(dir("h").join("key.pem")).unwrap();
    let h_alt = std::fs::read(dir("h").join("alt-key.pem")).unwrap();
    let o = until_known(
        d,
        &url,
        &[
            "renew",
            "--cert",
            &path("h", "cert.pem"),
            "--key",
            &path("h", "key.pem"),
            "--alt-key",
            &path("h", "alt-key.pem"),
            "--rekey",
        ],
    );
    let text = ok(o, "renew hybrid in place");
    let h_after = facts(&h_cert);
    assert_ne!(h_after.serial, h_before.serial);
    assert!(
        text.contains(&h_after.serial) && text.contains(&h_before.serial),
        "{text}"
    );
    assert_eq!(h_after.sans, h_before.sans);
    assert_ne!(std::fs::read(dir("h").join("key.pem")).unwrap(), h_key);
    assert_ne!(std::fs::read(dir("h").join("alt-key.pem")).unwrap(), h_alt);
    assert_eq!(mode(&dir("h").join("alt-key.pem")), 0o600);
    assert_eq!(
        sigil_pki::hybrid::subject_alt_key_level(&cert_der(&h_cert)).unwrap(),
        Some(sigil_pki::mldsa::MlDsaLevel::L65)
    );
    ok(
        sigil(
            d,
            &url,
            &[
                "verify",
                &path("h", "cert.pem"),
                "--chain",
                &path("h", "chain.pem"),
            ],
        ),
        "the renewed hybrid leaf verifies with the chain written next to it",
    );

    // A workload credential is not an admin: it can neither revoke nor change policy.
    let workload = d.join("workload.cred");
    let bundle = [
        std::fs::read_to_string(dir("w3").join("cert.pem")).unwrap(),
        std::fs::read_to_string(dir("w3").join("chain.pem")).unwrap(),
        std::fs::read_to_string(dir("w3").join("key.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(&workload, bundle).unwrap();
    let as_workload = |args: &[&str]| {
        let mut all = vec!["--admin-cred", workload.to_str().unwrap()];
        all.extend_from_slice(args);
        until_known(d, &url, &all)
    };
    let o = as_workload(&["revoke", &w1.serial, "--reason", "superseded"]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    one_line(&o);
    let policy_file = d.join("p.cedar");
    std::fs::write(&policy_file, "permit (principal, action, resource);\n").unwrap();
    let o = as_workload(&["policy", "apply", policy_file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    let o = sigil(d, &url, &["--json", "policy", "ls"]);
    let list: Value = serde_json::from_str(&ok(o, "policy ls")).unwrap();
    assert_eq!(list["active"], 1, "nothing applied: {list}");

    // Revoked (by the admin), a credential cannot renew itself any more.
    wait_for("revocation knows the serial", || {
        sigil(
            d,
            &url,
            &["revoke", &w2.serial, "--reason", "key-compromise"],
        )
        .status
        .success()
        .then_some(())
    });
    let o = sigil(
        d,
        &url,
        &[
            "renew",
            "--cert",
            &path("w2", "cert.pem"),
            "--key",
            &key1,
            "--out",
            &path("w4", ""),
        ],
    );
    assert_eq!(o.status.code(), Some(7), "{}", err(&o));
    let e = one_line(&o);
    assert!(e.to_lowercase().contains("revoked"), "{e}");
    assert!(!dir("w4").join("cert.pem").exists());
}
