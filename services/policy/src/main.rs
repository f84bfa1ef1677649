//! `sigil-policy` binary: reads its configuration from the environment and runs the
//! policy service until Ctrl-C.
//!
//! Environment:
//! - `SIGIL_NATS_URL` (default `nats://127.0.0.1:4222`)
//! - `SIGIL_POLICY_FILE`: a TOML file of [`sigil_policy::Rules`]; the built-in rules
//!   when unset
//! - `SIGIL_HTTP_ADDR`: serve `/healthz`, `/readyz` and `/metrics` here when set
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use sigil_bus::{Bus, Runtime};
use sigil_policy::{Config, Rules};
use sigil_telemetry::{Health, Metrics};
use tokio_util::sync::CancellationToken;

const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

#[tokio::main]
async fn main() -> ExitCode {
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sigil-policy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config_from_env() -> Result<Config, String> {
    let rules = match std::env::var_os("SIGIL_POLICY_FILE") {
        Some(path) if !path.is_empty() => {
            Rules::from_toml_file(&PathBuf::from(path)).map_err(|e| e.to_string())?
        }
        _ => Rules::default(),
    };
    rules.validate().map_err(|e| e.to_string())?;
    Ok(Config { rules })
}

async fn serve() -> Result<(), String> {
    // Validate configuration before touching the network.
    let config = config_from_env()?;
    let nats_url = std::env::var("SIGIL_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned());
    let http_addr = match std::env::var("SIGIL_HTTP_ADDR") {
        Ok(a) if !a.is_empty() => Some(
            a.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("SIGIL_HTTP_ADDR={a:?} is not a socket address: {e}"))?,
        ),
        _ => None,
    };
    let _telemetry = sigil_telemetry::init("sigil-policy").map_err(|e| e.to_string())?;
    let bus = Bus::connect(&nats_url, "sigil-policy")
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
    sigil_policy::run(config, rt, shutdown)
        .await
        .map_err(|e| e.to_string())
}
