//! A real nats-server with JetStream for tests.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Oldest nats-server accepted (JetStream features Sigil relies on).
const MIN_VERSION: (u64, u64) = (2, 10);
/// How long a start may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Where `scripts/ensure-nats.sh` installs nats-server, relative to `$HOME`.
const VENV_BINARY: &str = ".cache/sigil/tools/venv/bin/nats-server";

/// The nats-server binary tests use:
///
/// 1. `$SIGIL_NATS_SERVER` if set;
/// 2. `$HOME/.cache/sigil/tools/venv/bin/nats-server` if it exists (installed by
///    `scripts/ensure-nats.sh`);
/// 3. `nats-server` on `PATH` if its version is at least 2.10.
///
/// The answer is computed once per process.
///
/// # Panics
///
/// When none of those exists, telling to run `scripts/ensure-nats.sh`.
pub fn nats_server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(find_binary).clone()
}

fn find_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SIGIL_NATS_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = Path::new(&home).join(VENV_BINARY);
        if venv.is_file() {
            return venv;
        }
    }
    let on_path = PathBuf::from("nats-server");
    match version_of(&on_path) {
        Some(version) if version >= MIN_VERSION => on_path,
        found => panic!(
            "no usable nats-server (need >= {}.{}; `nats-server` on PATH: {}). \
             Run `scripts/ensure-nats.sh` (it installs one under ~/.cache/sigil/tools) \
             or set SIGIL_NATS_SERVER=/path/to/nats-server",
            MIN_VERSION.0,
            MIN_VERSION.1,
            found.map_or_else(|| "not found".to_owned(), |(a, b)| format!("{a}.{b}")),
        ),
    }
}

/// (major, minor) reported by `binary --version`, e.g. `nats-server: v2.10.24`.
fn version_of(binary: &Path) -> Option<(u64, u64)> {
    let output = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_version(&text)
}

fn parse_version(text: &str) -> Option<(u64, u64)> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let mut parts = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .map(str::parse::<u64>);
    Some((parts.next()?.ok()?, parts.next()?.ok()?))
}

/// A nats-server with JetStream on a free `127.0.0.1` port and a temporary store
/// directory; the process is killed when this value is dropped.
///
/// ```no_run
/// # async fn demo() {
/// let mut nats = sigil_testkit::NatsServer::start().await;
/// let client = async_nats::connect(nats.url()).await.unwrap();
/// nats.stop(); // the bus dies mid-work...
/// nats.start_again().await; // ...and comes back with its JetStream data
/// # }
/// ```
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    /// A unique server name, checked in the INFO line so we never mistake another
    /// server that grabbed the port for ours.
    name: String,
    /// Holds the JetStream store (`store/`) and the server log (`nats.log`).
    root: TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server and waits (up to 10 s) until it accepts clients.
    ///
    /// # Panics
    ///
    /// When no nats-server binary is found (see [`nats_server_binary`]) or it does not
    /// come up; the message includes the server's log.
    pub async fn start() -> Self {
        let root = tempfile::Builder::new()
            .prefix("sigil-nats-")
            .tempdir()
            .expect("create a temp dir for nats-server");
        std::fs::create_dir_all(root.path().join("store")).expect("create the JetStream store dir");
        let mut server = Self {
            binary: nats_server_binary(),
            port: 0,
            name: format!("sigil-test-{}", uuid::Uuid::new_v4().simple()),
            root,
            child: None,
        };
        // The free port can be taken between probing and the server binding it: retry
        // on a fresh port a few times.
        let mut last_error = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn_and_wait().await {
                Ok(()) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("nats-server did not start: {last_error}");
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (kept across [`stop`](Self::stop) and
    /// [`start_again`](Self::start_again), removed on drop).
    pub fn store_dir(&self) -> PathBuf {
        self.root.path().join("store")
    }

    /// The server's log file (stderr of every run, appended).
    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("nats.log")
    }

    /// Whether the server process is running (started and not stopped or exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills the server (SIGKILL: no goodbye to clients, no graceful JetStream
    /// shutdown) and waits for it to exit. Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same JetStream store (so
    /// streams, consumers and messages survive), stopping it first if it is running.
    /// Waits until it accepts clients; retries while the old port is still being
    /// released, for up to 10 s.
    ///
    /// # Panics
    ///
    /// When the server does not come back; the message includes its log.
    pub async fn start_again(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_and_wait().await {
                Ok(()) => return,
                Err(error) if Instant::now() >= deadline => {
                    panic!("nats-server did not restart on port {}: {error}", self.port)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Spawns the server on `self.port` and waits for its INFO line. On failure the
    /// child is reaped and the error carries the log tail.
    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = self.open_log()?;
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.store_dir())
            .args(["-n", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("exited with {status}; log:\n{}", self.log_tail()));
            }
            if self.answers_info().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "no INFO on port {} within {START_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether our server (by name) answers on the port with its INFO line.
    async fn answers_info(&self) -> bool {
        let probe = async {
            let stream = TcpStream::connect(("127.0.0.1", self.port)).await.ok()?;
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line).await.ok()?;
            Some(line)
        };
        match tokio::time::timeout(Duration::from_secs(1), probe).await {
            Ok(Some(line)) => {
                line.starts_with("INFO ")
                    && line.contains(&format!("\"server_name\":\"{}\"", self.name))
            }
            _ => false,
        }
    }

    fn open_log(&self) -> Result<File, String> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open {}: {e}", self.log_path().display()))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("probe a free port")
        .port()
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::{self, stream};

    use super::*;

    #[test]
    fn parses_nats_server_versions() {
        assert_eq!(parse_version("nats-server: v2.10.24\n"), Some((2, 10)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert_eq!(parse_version("garbage"), None);
        assert!((2, 9) < MIN_VERSION && (2, 15) >= MIN_VERSION && (3, 0) >= MIN_VERSION);
    }

    #[test]
    fn the_binary_is_recent_enough() {
        let version = version_of(&nats_server_binary()).expect("nats-server --version");
        assert!(version >= MIN_VERSION, "{version:?}");
    }

    async fn stored_messages(client: async_nats::Client) -> u64 {
        let js = jetstream::new(client);
        let mut stream = js.get_stream("ORDERS").await.expect("get stream");
        stream.info().await.expect("stream info").state.messages
    }

    #[tokio::test]
    async fn jetstream_data_survives_stop_and_start_again() {
        let mut nats = NatsServer::start().await;
        assert!(nats.is_running());
        assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
        assert!(nats.store_dir().is_dir());

        let client = async_nats::connect(nats.url()).await.expect("connect");
        let js = jetstream::new(client.clone());
        js.get_or_create_stream(stream::Config {
            name: "ORDERS".to_owned(),
            subjects: vec!["orders.>".to_owned()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create stream");
        js.publish("orders.1", "first".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        drop(js);
        drop(client);

        let port = nats.port();
        nats.stop();
        assert!(!nats.is_running());
        assert!(
            TcpStream::connect(("127.0.0.1", port)).await.is_err(),
            "port closed while stopped"
        );

        nats.start_again().await;
        assert_eq!(nats.port(), port);
        let client = async_nats::connect(nats.url()).await.expect("reconnect");
        assert_eq!(stored_messages(client.clone()).await, 1, "message kept");

        let js = jetstream::new(client.clone());
        js.publish("orders.2", "second".into())
            .await
            .expect("publish after restart")
            .await
            .expect("ack after restart");
        assert_eq!(stored_messages(client).await, 2);
        assert!(std::fs::read_to_string(nats.log_path()).is_ok_and(|l| !l.is_empty()));
    }

    #[tokio::test]
    async fn a_connected_client_rides_through_a_restart() {
        let mut nats = NatsServer::start().await;
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let js = jetstream::new(client.clone());
        js.get_or_create_stream(stream::Config {
            name: "ORDERS".to_owned(),
            subjects: vec!["orders.>".to_owned()],
            ..Default::default()
        })
        .await
        .expect("create stream");

        nats.stop();
        nats.start_again().await;

        // The same client reconnects by itself; publishing works again eventually.
        crate::eventually(Duration::from_secs(10), "publish after restart", || {
            let js = js.clone();
            async move {
                js.publish("orders.x", "again".into())
                    .await
                    .ok()?
                    .await
                    .ok()
            }
        })
        .await;
        assert_eq!(stored_messages(client).await, 1);
    }

    #[tokio::test]
    async fn servers_are_independent_and_killed_on_drop() {
        let a = NatsServer::start().await;
        let b = NatsServer::start().await;
        assert_ne!(a.port(), b.port());
        assert_ne!(a.store_dir(), b.store_dir());
        let port = a.port();
        let store = a.store_dir();
        drop(a);
        assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
        assert!(!store.exists(), "store removed on drop");
        assert!(TcpStream::connect(("127.0.0.1", b.port())).await.is_ok());
    }
}
