//! `sigil-revocation`: runs the revocation service on its own.
//!
//! Environment: `SIGIL_NATS_URL` (default `nats://127.0.0.1:4222`), `SIGIL_DATABASE_URL`
//! (default SQLite `revocation.db` under `SIGIL_DATA_DIR`, default `./.sigil`),
//! `SIGIL_HTTP_ADDR` (serve /healthz, /readyz and /metrics there when set).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use sigil_bus::{Bus, Runtime};
use sigil_revocation::{Config, run};
use sigil_telemetry::{Health, Metrics};
use tokio_util::sync::CancellationToken;

const NAME: &str = "sigil-revocation";
/// Exit code for invalid configuration (BSD `EX_CONFIG`).
const EX_CONFIG: u8 = 78;

struct Settings {
    nats_url: String,
    http_addr: Option<SocketAddr>,
    config: Config,
}

fn settings() -> Result<Settings, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let nats_url = var("SIGIL_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    let data_dir = PathBuf::from(var("SIGIL_DATA_DIR").unwrap_or_else(|| ".sigil".to_owned()));
    let mut config = Config::in_data_dir(&data_dir);
    if let Some(url) = var("SIGIL_DATABASE_URL") {
        config.database_url = url;
    }
    let http_addr = match var("SIGIL_HTTP_ADDR") {
        Some(a) => Some(
            a.parse()
                .map_err(|e| format!("SIGIL_HTTP_ADDR={a:?}: {e}"))?,
        ),
        None => None,
    };
    Ok(Settings {
        nats_url,
        http_addr,
        config,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{NAME}: invalid configuration: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let _telemetry = match sigil_telemetry::init(NAME) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{NAME}: invalid configuration: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    match serve(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{NAME}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), String> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let bus = Bus::connect(&settings.nats_url, NAME)
        .await
        .map_err(|e| e.to_string())?;
    let metrics = Metrics::new();
    let health = Health::new();
    let http = settings.http_addr.map(|addr| {
        tokio::spawn(sigil_telemetry::serve_http(
            addr,
            metrics.clone(),
            health.clone(),
            shutdown.clone(),
        ))
    });
    let rt = Runtime::new(bus, metrics, health);
    let result = run(settings.config, rt, shutdown.clone())
        .await
        .map_err(|e| e.to_string());
    shutdown.cancel();
    let http_result = match http {
        Some(task) => match task.await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        None => Ok(()),
    };
    result.and(http_result)
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            shutdown.cancel();
            return;
        }
    }
    tokio::signal::ctrl_c().await.ok();
    shutdown.cancel();
}
