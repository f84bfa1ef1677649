//! What the CLI tests share: the real `sigil` binary run against a data dir and a
//! private nats-server, and a guard that stops a long-running `sigil` (up, serve).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `sigil up` / `sigil serve`: SIGTERM on drop for a clean drain, then
/// SIGKILL if it has not stopped within 10 s.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
    }
}

/// `sigil --data-dir DATA --nats NATS ARGS…`, with the environment that could point
/// it elsewhere (or sign with something else) removed.
pub fn command(data: &Path, nats: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigil"));
    cmd.arg("--data-dir")
        .arg(data)
        .args(["--nats", nats])
        .args(args)
        .env_remove("SIGIL_NATS_URL")
        .env_remove("SIGIL_DATABASE_URL")
        .env_remove("SIGIL_POLICY_FILE")
        .env_remove("SIGIL_ADMIN_CRED")
        .env_remove("SIGIL_TOKEN");
    cmd
}

/// Runs [`command`] to completion.
pub fn sigil(data: &Path, nats: &str, args: &[&str]) -> Output {
    command(data, nats, args).output().unwrap()
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `sigil up` with `extra` arguments on a free HTTP port and waits for its
/// ready line (which it returns).
pub fn start_up(data: &Path, nats: &str, extra: &[&str]) -> (Running, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["up", "--http", http.as_str()];
    args.extend_from_slice(extra);
    let mut child = command(data, nats, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("sigil up printed its ready line");
    assert!(line.starts_with("sigil up: 5 services ready"), "{line}");
    (Running(child), line)
}

/// Runs `sigil ARGS…` while it exits 7 (unauthenticated), for at most 30 s: the policy
/// service learns a new certificate's principal from its `identity.issued` event a
/// moment after issuance, and refuses proofs by it until then. Returns the last output.
pub fn until_known(data: &Path, nats: &str, args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = sigil(data, nats, args);
        if o.status.code() != Some(7) || Instant::now() > deadline {
            return o;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts a long-running `sigil ARGS…` (e.g. `serve policy`) with its output dropped.
pub fn spawn(data: &Path, nats: &str, args: &[&str]) -> Running {
    Running(
        command(data, nats, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Runs `sigil ARGS…` until it succeeds (a service just started may not answer yet),
/// for at most 30 s; returns that successful output.
pub fn until_ok(data: &Path, nats: &str, args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = sigil(data, nats, args);
        if o.status.success() {
            return o;
        }
        assert!(
            Instant::now() < deadline,
            "sigil {args:?} never succeeded: {}",
            err(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
