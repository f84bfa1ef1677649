//! `sigil-rotation-scheduler`: runs the rotation scheduler.
//!
//! Environment: `SIGIL_NATS_URL` (default `nats://127.0.0.1:4222`),
//! `SIGIL_DATABASE_URL` (default SQLite `rotation-scheduler.db` under `SIGIL_DATA_DIR`, default
//! `./.sigil`), `SIGIL_TICK_INTERVAL` (e.g. `10s`, default 10 s), `SIGIL_HTTP_ADDR`
//! (serve `/healthz`, `/readyz`, `/metrics` when set).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use sigil_bus::{Bus, Runtime};
use sigil_telemetry::{Health, Metrics};
use tokio_util::sync::CancellationToken;

const NAME: &str = "sigil-rotation-scheduler";

#[tokio::main]
async fn main() -> ExitCode {
    match start().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{NAME}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

async fn start() -> Result<(), String> {
    // Validate configuration before connecting to anything.
    let nats_url = env("SIGIL_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    let data_dir = PathBuf::from(env("SIGIL_DATA_DIR").unwrap_or_else(|| "./.sigil".to_owned()));
    let database_url = env("SIGIL_DATABASE_URL")
        .unwrap_or_else(|| sigil_store::sqlite_url(&data_dir.join("rotation-scheduler.db")));
    let http_addr = env("SIGIL_HTTP_ADDR")
        .map(|a| {
            a.parse::<SocketAddr>()
                .map_err(|e| format!("SIGIL_HTTP_ADDR {a:?}: {e}"))
        })
        .transpose()?;
    let mut config = sigil_rotation_scheduler::Config {
        database_url,
        ..Default::default()
    };
    if let Some(t) = env("SIGIL_TICK_INTERVAL") {
        config.tick_interval =
            humantime::parse_duration(&t).map_err(|e| format!("SIGIL_TICK_INTERVAL {t:?}: {e}"))?;
    }

    let _telemetry = sigil_telemetry::init(NAME).map_err(|e| e.to_string())?;
    let bus = Bus::connect(&nats_url, NAME)
        .await
        .map_err(|e| e.to_string())?;
    let rt = Runtime::new(bus, Metrics::new(), Health::new());

    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("shutting down");
            }
            shutdown.cancel();
        });
    }
    // Bind before serving so a busy port fails the start instead of going unnoticed.
    let http = match http_addr {
        None => None,
        Some(addr) => {
            let (listener, _) = sigil_telemetry::bind_http(addr)
                .await
                .map_err(|e| e.to_string())?;
            let (metrics, health, shutdown) =
                (rt.metrics.clone(), rt.health.clone(), shutdown.clone());
            Some(tokio::spawn(sigil_telemetry::serve_listener(
                listener, metrics, health, shutdown,
            )))
        }
    };
    let result = sigil_rotation_scheduler::run(config, rt, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(http) = http
        && let Ok(Err(e)) = http.await
    {
        tracing::warn!(error = %e, "telemetry HTTP server failed");
    }
    result.map_err(|e| e.to_string())
}
