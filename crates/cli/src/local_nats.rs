//! The nats-server child `sigil up` starts when nothing usable answers at a loopback
//! URL: JetStream on, store in `<data-dir>/nats`, killed when `sigil up` exits.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sigil_bus::{Bus, MIN_SERVER_VERSION, parse_version};
use tokio::process::{Child, Command};

use crate::error::CliError;

/// A running child nats-server.
#[derive(Debug)]
pub struct LocalNats {
    child: Child,
    pub url: String,
}

impl LocalNats {
    /// Stop the child (SIGKILL is safe: JetStream's file store recovers).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Is `url` a loopback NATS URL? Returns its port.
pub fn loopback_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("nats://").unwrap_or(url);
    let hostport = rest.rsplit('@').next()?.split('/').next()?;
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "4222"));
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1");
    if !loopback {
        return None;
    }
    port.parse().ok()
}

fn version_ok(binary: &Path) -> bool {
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            text.split_whitespace().find_map(parse_version)
        })
        .is_some_and(|v| v >= MIN_SERVER_VERSION)
}

/// Find a nats-server ≥ 2.10: `SIGIL_NATS_SERVER`, the tools venv that
/// `scripts/ensure-nats.sh` creates, then `PATH`.
pub fn find_binary() -> Result<PathBuf, CliError> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("SIGIL_NATS_SERVER") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cache/sigil/tools/venv/bin/nats-server"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
    }
    candidates.into_iter().find(|c| c.is_file() && version_ok(c)).ok_or_else(|| {
        CliError::Other(
            "no nats-server >= 2.10 found (looked at $SIGIL_NATS_SERVER, ~/.cache/sigil/tools/venv, PATH); run scripts/ensure-nats.sh".to_owned(),
        )
    })
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok()
}

fn free_port() -> Result<u16, CliError> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| CliError::Other(format!("cannot find a free port: {e}")))
}

/// Start a nats-server with JetStream on `preferred` (or a free port if taken).
pub async fn start(data_dir: &Path, preferred: u16) -> Result<LocalNats, CliError> {
    let binary = find_binary()?;
    let port = if port_free(preferred) {
        preferred
    } else {
        free_port()?
    };
    let store = data_dir.join("nats");
    std::fs::create_dir_all(&store).map_err(|e| CliError::io(&store, e))?;
    let log = data_dir.join("nats-server.log");
    let child = Command::new(&binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store)
        .arg("-l")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CliError::Other(format!("cannot start {}: {e}", binary.display())))?;
    let url = format!("nats://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if Bus::probe(&url).await.is_ok() {
            return Ok(LocalNats { child, url });
        }
        if tokio::time::Instant::now() > deadline {
            return Err(CliError::Other(format!(
                "nats-server did not come up on {url}; see {}",
                log.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_recognised() {
        assert_eq!(loopback_port("nats://127.0.0.1:4222"), Some(4222));
        assert_eq!(loopback_port("nats://localhost:5000"), Some(5000));
        assert_eq!(loopback_port("nats://u:p@127.0.0.1:4333"), Some(4333));
        assert_eq!(loopback_port("nats://127.0.0.1"), Some(4222));
        assert_eq!(loopback_port("nats://nats.prod:4222"), None);
    }
}
