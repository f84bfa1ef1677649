//! `sigil-issuer` binary: reads its configuration from the environment and runs the
//! issuer until Ctrl-C.
//!
//! Environment:
//! - `SIGIL_NATS_URL` (default `nats://127.0.0.1:4222`)
//! - `SIGIL_DATA_DIR` (default `./.sigil`): holds the generated `kek` file and the
//!   default SQLite database
//! - `SIGIL_DATABASE_URL` (default `sqlite://<data dir>/issuer.db?mode=rwc`)
//! - `SIGIL_KEK`: key-encryption key for CA keys (64 hex characters or base64 of 32
//!   bytes); when unset, `<data dir>/kek` is used (created with mode 0600)
//! - `SIGIL_CA_COMMON_NAME` (default `Sigil`): prefix of the CA common names
//! - `SIGIL_POLICY_TIMEOUT` (default `5s`)
//! - `SIGIL_HTTP_ADDR`: serve `/healthz`, `/readyz` and `/metrics` here when set
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use sigil_bus::{Bus, Runtime};
use sigil_issuer::Config;
use sigil_telemetry::{Health, Metrics};
use tokio_util::sync::CancellationToken;

const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

#[tokio::main]
async fn main() -> ExitCode {
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sigil-issuer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn config_from_env() -> Result<Config, String> {
    let mut config = Config::default();
    if let Some(dir) = env("SIGIL_DATA_DIR") {
        config.data_dir = PathBuf::from(dir);
    }
    config.database_url = env("SIGIL_DATABASE_URL")
        .unwrap_or_else(|| sigil_issuer::default_database_url(&config.data_dir));
    config.kek = env("SIGIL_KEK");
    if let Some(name) = env("SIGIL_CA_COMMON_NAME") {
        config.ca_common_name = name;
    }
    if let Some(t) = env("SIGIL_POLICY_TIMEOUT") {
        config.policy_timeout = humantime::parse_duration(&t)
            .map_err(|e| format!("SIGIL_POLICY_TIMEOUT={t:?} is not a duration such as 5s: {e}"))?;
    }
    Ok(config)
}

async fn serve() -> Result<(), String> {
    // Validate configuration before touching the network.
    let config = config_from_env()?;
    config.validate().map_err(|e| e.to_string())?;
    let nats_url = env("SIGIL_NATS_URL").unwrap_or_else(|| DEFAULT_NATS_URL.to_owned());
    let http_addr = match env("SIGIL_HTTP_ADDR") {
        Some(a) => Some(
            a.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("SIGIL_HTTP_ADDR={a:?} is not a socket address: {e}"))?,
        ),
        None => None,
    };
    let _telemetry = sigil_telemetry::init("sigil-issuer").map_err(|e| e.to_string())?;
    let bus = Bus::connect(&nats_url, "sigil-issuer")
        .await
        .map_err(|e| e.to_string())?;
    let rt = Runtime::new(bus, Metrics::new(), Health::new());
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("shutting down");
            }
            shutdown.cancel();
        }
    });
    if let Some(addr) = http_addr {
        let (metrics, health, shutdown) = (rt.metrics.clone(), rt.health.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = sigil_telemetry::serve_http(addr, metrics, health, shutdown).await {
                tracing::error!(error = %e, "health/metrics endpoint failed");
            }
        });
    }
    sigil_issuer::run(config, rt, shutdown)
        .await
        .map_err(|e| e.to_string())
}
