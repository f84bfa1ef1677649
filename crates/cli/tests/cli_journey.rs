//! The user's journey through the real `sigil` binary: `sigil up` on a private
//! nats-server (which makes the admin credential every mutating command signs with),
//! then issue → ls → show → revoke → ls → events, checking files, modes, JSON output,
//! one-line errors and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sigil_testkit::NatsServer;

mod common;

use common::{Running, free_port, sigil};

/// `sigil up` with a fast scheduler tick, on `nats`.
fn start_up(data: &Path, nats: &str) -> Running {
    let (up, line) = common::start_up(data, nats, &["--tick", "200ms"]);
    assert!(line.contains(nats), "{line}");
    up
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn retry<F: FnMut() -> Option<T>, T>(what: &str, mut f: F) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_list_show_revoke_through_the_cli() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let data = tempfile::tempdir().unwrap();
    let _up = start_up(data.path(), &url);
    let out_dir = data.path().join("web");

    // Issue with a server-side key.
    let o = sigil(
        data.path(),
        &url,
        &[
            "issue",
            "--dns",
            "web.example.com",
            "--ttl",
            "24h",
            "--out",
            out_dir.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(o.status.success(), "issue failed: {}", stderr(&o));
    let reply: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let serial = reply["serial"].as_str().unwrap().to_owned();
    assert!(
        reply.get("private_key_pem").is_none(),
        "--json never prints the private key"
    );
    for f in ["cert.pem", "chain.pem", "key.pem"] {
        assert!(out_dir.join(f).is_file(), "{f} written");
    }
    let mode = std::fs::metadata(out_dir.join("key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let chain = std::fs::read_to_string(out_dir.join("chain.pem")).unwrap();
    assert_eq!(
        chain.matches("BEGIN CERTIFICATE").count(),
        2,
        "intermediate then root"
    );

    // A new installation is hybrid: every signature on the path checks out, the
    // ML-DSA alternative signatures included.
    let o = sigil(data.path(), &url, &["ca", "ls", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cas: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let kinds: Vec<&str> = cas
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["hybrid", "hybrid"]);
    let o = sigil(
        data.path(),
        &url,
        &[
            "verify",
            out_dir.join("cert.pem").to_str().unwrap(),
            "--chain",
            out_dir.join("chain.pem").to_str().unwrap(),
            "--json",
        ],
    );
    assert!(o.status.success(), "verify: {}{}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let alt = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "alternative" && c["ok"] == true)
        .count();
    assert_eq!(
        alt, 3,
        "leaf, intermediate and root carry alternative signatures: {report}"
    );

    // Listed (eventually: inventory consumes the event).
    let listed = retry("ls shows the serial", || {
        let o = sigil(data.path(), &url, &["ls", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).ok()?;
        v.as_array()?
            .iter()
            .find(|r| r["serial"] == serial.as_str())
            .cloned()
    });
    assert_eq!(listed["status"], "active");
    let o = sigil(data.path(), &url, &["ls"]);
    assert!(
        stdout(&o).contains(&serial),
        "table lists it: {}",
        stdout(&o)
    );
    let o = sigil(data.path(), &url, &["show", &serial]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("web.example.com"));

    // Revoke (eventually: revocation learns serials from the issued event).
    retry("revoke accepted", || {
        sigil(
            data.path(),
            &url,
            &["revoke", &serial, "--reason", "key-compromise"],
        )
        .status
        .success()
        .then_some(())
    });
    retry("ls shows it revoked", || {
        let o = sigil(data.path(), &url, &["ls", "--status", "revoked", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).ok()?;
        v.as_array()?
            .iter()
            .any(|r| r["serial"] == serial.as_str())
            .then_some(())
    });

    // Events as CloudEvents JSON lines.
    let o = sigil(data.path(), &url, &["events"]);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|e| e["type"] == "io.sigil.identity.issued.v1")
    );
    assert!(
        lines
            .iter()
            .any(|e| e["type"] == "io.sigil.identity.revoked.v1")
    );

    // Failures: one line, meaningful exit codes. (The admin may have any name the
    // forbids allow; a workload proven by a token gets what the default policy permits.)
    let o = sigil(
        data.path(),
        &url,
        &[
            "token",
            "create",
            "--principal",
            "workload:evil",
            "--for",
            "*.attacker.test",
        ],
    );
    assert!(o.status.success(), "token create: {}", stderr(&o));
    let token = stdout(&o).trim().to_owned();
    let o = sigil(
        data.path(),
        &url,
        &[
            "issue",
            "--dns",
            "evil.attacker.test",
            "--token",
            &token,
            "--out",
            data.path().join("evil").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(3), "denied → 3: {}", stderr(&o));
    assert_eq!(
        stderr(&o).trim().lines().count(),
        1,
        "one-line error: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).starts_with("sigil: denied: ") && stderr(&o).contains("evil.attacker.test"),
        "{}",
        stderr(&o)
    );
    let o = sigil(data.path(), &url, &["show", "abcdef0123"]);
    assert_eq!(o.status.code(), Some(4), "not found → 4: {}", stderr(&o));
    let o = sigil(
        data.path(),
        &url,
        &["revoke", &serial, "--reason", "because"],
    );
    assert_eq!(o.status.code(), Some(2), "usage → 2");
}

#[tokio::test]
async fn unreachable_nats_is_exit_69_with_one_line() {
    let data = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}", free_port());
    let o = sigil(data.path(), &url, &["ls"]);
    assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

/// With nothing listening at a loopback NATS URL, `sigil up` starts its own
/// nats-server there (store in the data dir), records the URL for the CLI, and serves
/// /healthz, /readyz and /metrics on one listener.
#[test]
fn up_starts_its_own_nats_and_serves_health() {
    let data = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["--nats", &url, "up", "--http", &http])
        .env_remove("SIGIL_NATS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let _up = Running(child);
    assert!(first.starts_with("sigil up: 5 services ready"), "{first}");
    assert!(first.contains(&url), "uses the port it was given: {first}");
    assert!(
        data.path().join("nats").is_dir(),
        "JetStream store in the data dir"
    );
    let recorded = std::fs::read_to_string(data.path().join("nats.url")).unwrap();
    assert_eq!(recorded.trim(), url);

    let (status, body) = http_get(&http, "/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(&http, "/readyz");
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["components"].as_object().unwrap().len(), 5);

    // The CLI finds this NATS through the data dir, with no --nats.
    let o = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["issue", "--dns", "local.example.com", "--out"])
        .arg(data.path().join("out"))
        .env_remove("SIGIL_NATS_URL")
        .env_remove("SIGIL_ADMIN_CRED")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (status, metrics) = http_get(&http, "/metrics");
    assert_eq!(status, 200);
    // Two issuances: the admin credential `up` made for itself, and ours.
    assert!(
        metrics.contains(
            "sigil_requests_total{service=\"issuer\",operation=\"issue\",outcome=\"ok\"} 2"
        ),
        "{metrics}"
    );
}
