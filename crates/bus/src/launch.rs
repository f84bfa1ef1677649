//! Start-up shared by the `sigil-<service>` binaries.
//!
//! Each binary parses its own settings from the environment (reporting a bad one with
//! [`config_error`]), then hands its service's `run` to [`main`], which:
//!
//! 1. reads `SIGIL_NATS_URL` and `SIGIL_HTTP_ADDR`; an address that does not parse
//!    exits with [`EX_CONFIG`] before anything is bound or connected;
//! 2. installs telemetry (`RUST_LOG`, `OTEL_*`); invalid settings exit with
//!    [`EX_CONFIG`];
//! 3. binds `SIGIL_HTTP_ADDR`, when set, and serves `/healthz`, `/readyz` and
//!    `/metrics` there (a busy port fails the start at once); `/readyz` reports the
//!    `nats` component not ready until the connection is up;
//! 4. connects to NATS; when no server answers it exits with [`EX_UNAVAILABLE`];
//! 5. runs the service until Ctrl-C or SIGTERM, drains the HTTP endpoint and exits 0,
//!    or 1 with `<name>: <error>` on stderr when the service failed.
//!
//! Environment common to every service binary:
//!
//! - `SIGIL_NATS_URL` (default [`DEFAULT_NATS_URL`])
//! - `SIGIL_DATA_DIR` (default [`DEFAULT_DATA_DIR`]): see [`data_dir`]
//! - `SIGIL_DATABASE_URL`: see [`database_url`]
//! - `SIGIL_HTTP_ADDR`: serve `/healthz`, `/readyz` and `/metrics` here when set
//!
//! A variable that is empty or only whitespace counts as unset.

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use sigil_telemetry::{Health, Metrics};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Bus, Runtime};

/// NATS server used when `SIGIL_NATS_URL` is unset.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Data directory used when `SIGIL_DATA_DIR` is unset.
pub const DEFAULT_DATA_DIR: &str = "./.sigil";
/// Exit code for invalid configuration (BSD `EX_CONFIG`).
pub const EX_CONFIG: u8 = 78;
/// Exit code when the NATS server cannot be reached (BSD `EX_UNAVAILABLE`).
pub const EX_UNAVAILABLE: u8 = 69;
/// The `/readyz` component that is ready once NATS is connected.
pub const NATS_COMPONENT: &str = "nats";

/// The value of environment variable `name`, trimmed; `None` when unset or blank.
pub fn env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// `SIGIL_DATA_DIR`, or [`DEFAULT_DATA_DIR`].
pub fn data_dir() -> PathBuf {
    PathBuf::from(env("SIGIL_DATA_DIR").unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned()))
}

/// `SIGIL_DATABASE_URL`, or SQLite `<data dir>/<service>.db`, created when missing.
pub fn database_url(service: &str) -> String {
    env("SIGIL_DATABASE_URL").unwrap_or_else(|| {
        // The form of `sigil_store::sqlite_url`; the store crate depends on this one.
        let path = data_dir().join(format!("{service}.db"));
        format!("sqlite://{}?mode=rwc", path.display())
    })
}

/// Print `<name>: invalid configuration: <msg>` and return [`EX_CONFIG`].
pub fn config_error(name: &str, msg: impl Display) -> ExitCode {
    eprintln!("{name}: invalid configuration: {msg}");
    ExitCode::from(EX_CONFIG)
}

/// Run a service binary named `name` (e.g. `sigil-issuer`) as described in the
/// [module docs](self): `run` gets the [`Runtime`] and a token cancelled on Ctrl-C or
/// SIGTERM, and should return once it is cancelled.
pub fn main<F, Fut, E>(name: &'static str, run: F) -> ExitCode
where
    F: FnOnce(Runtime, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let http_addr = match env("SIGIL_HTTP_ADDR")
        .map(|a| parse_http_addr(&a))
        .transpose()
    {
        Ok(addr) => addr,
        Err(e) => return config_error(name, e),
    };
    let nats_url = env("SIGIL_NATS_URL").unwrap_or_else(|| DEFAULT_NATS_URL.to_owned());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let _telemetry = match sigil_telemetry::init(name) {
            Ok(guard) => guard,
            Err(e) => {
                eprintln!("{name}: invalid configuration: {e}");
                return EX_CONFIG;
            }
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        launch(name, &nats_url, http_addr, shutdown, run).await
    });
    ExitCode::from(code)
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    // When no handler can be installed this returns at once, and the service stops
    // rather than run on unstoppable.
    let _ = tokio::signal::ctrl_c().await;
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    shutdown_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
}

fn parse_http_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|e| format!("SIGIL_HTTP_ADDR={value:?} is not a socket address: {e}"))
}

/// Steps 3–5 of [`main`], returning the exit code.
async fn launch<F, Fut, E>(
    name: &str,
    nats_url: &str,
    http_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    run: F,
) -> u8
where
    F: FnOnce(Runtime, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let (metrics, health) = (Metrics::new(), Health::new());
    health.register(NATS_COMPONENT);
    let http = match http_addr {
        None => None,
        Some(addr) => match sigil_telemetry::bind_http(addr).await {
            Ok((listener, _)) => Some(tokio::spawn(sigil_telemetry::serve_listener(
                listener,
                metrics.clone(),
                health.clone(),
                shutdown.clone(),
            ))),
            Err(e) => {
                eprintln!("{name}: {e}");
                return 1;
            }
        },
    };
    let connected = tokio::select! {
        connected = Bus::connect(nats_url, name) => Some(connected),
        () = shutdown.cancelled() => None,
    };
    let result = match connected {
        // Stopped while still connecting: a clean exit.
        None => Ok(()),
        Some(Err(e)) => {
            eprintln!("{name}: {e}");
            shutdown.cancel();
            drain(http).await;
            return EX_UNAVAILABLE;
        }
        Some(Ok(bus)) => {
            health.set_ready(NATS_COMPONENT, true);
            run(Runtime::new(bus, metrics, health), shutdown.clone()).await
        }
    };
    shutdown.cancel();
    drain(http).await;
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{name}: {e}");
            1
        }
    }
}

/// Wait for the HTTP endpoint to finish its in-flight requests.
async fn drain(http: Option<JoinHandle<Result<(), sigil_telemetry::TelemetryError>>>) {
    if let Some(http) = http {
        match http.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "health/metrics endpoint failed"),
            Err(e) => tracing::warn!(error = %e, "health/metrics endpoint panicked"),
        }
    }
}

/// Waits for every task of a service. The first failure (an error, or a task that
/// panicked or was aborted, turned into `E` by `join_error`) cancels `stop`, so the
/// other tasks wind down, and is returned once all of them have ended.
pub async fn supervise<E: std::fmt::Display + Send + 'static>(
    service: &str,
    tasks: &mut tokio::task::JoinSet<Result<(), E>>,
    stop: &tokio_util::sync::CancellationToken,
    join_error: impl Fn(tokio::task::JoinError) -> E,
) -> Result<(), E> {
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined.map_err(&join_error).and_then(|r| r) {
            tracing::error!(error = %e, "{service} task failed; stopping");
            stop.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sigil_testkit::NatsServer;

    use super::*;

    #[test]
    fn http_addr_must_be_a_socket_address() {
        assert_eq!(
            parse_http_addr("127.0.0.1:9090"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 9090)))
        );
        let err = parse_http_addr("nonsense").unwrap_err();
        assert!(err.starts_with("SIGIL_HTTP_ADDR=\"nonsense\""), "{err}");
    }

    #[tokio::test]
    async fn runs_the_service_until_it_returns() {
        let nats = NatsServer::start().await;
        let code = launch(
            "sigil-test",
            &nats.url(),
            None,
            CancellationToken::new(),
            |rt, _shutdown| async move {
                assert!(rt.health.is_ready(), "{:?}", rt.health.report());
                assert_eq!(rt.health.report().components.len(), 1);
                Ok::<(), String>(())
            },
        )
        .await;
        assert_eq!(code, 0);
        let code = launch(
            "sigil-test",
            &nats.url(),
            None,
            CancellationToken::new(),
            |_rt, _shutdown| async { Err("boom") },
        )
        .await;
        assert_eq!(code, 1);
    }

    #[tokio::test]
    async fn stopping_while_connecting_is_a_clean_exit() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let code = launch(
            "sigil-test",
            // Nothing listens on port 1; the cancelled token wins.
            "nats://127.0.0.1:1",
            None,
            shutdown,
            |_rt, _shutdown| async { Err::<(), _>("the service must not start") },
        )
        .await;
        assert_eq!(code, 0);
    }

    #[tokio::test]
    async fn a_busy_http_port_fails_before_connecting() {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = busy.local_addr().unwrap();
        let code = tokio::time::timeout(
            Duration::from_secs(5),
            launch(
                "sigil-test",
                "nats://127.0.0.1:1",
                Some(addr),
                CancellationToken::new(),
                |_rt, _shutdown| async { Err::<(), _>("the service must not start") },
            ),
        )
        .await
        .unwrap();
        assert_eq!(code, 1);
    }
}
