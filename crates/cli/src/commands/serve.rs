//! `sigil serve <service>`: one service, for deployments that run each separately.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use sigil_contracts::subjects::Service;
use sigil_telemetry::{Health, Metrics};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::context::GlobalArgs;
use crate::error::CliError;
use crate::services::{self, ServiceSettings};

fn parse_service(s: &str) -> Result<Service, String> {
    Service::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
        format!("unknown service {s:?}; one of: {}", names.join(", "))
    })
}

/// Run one service.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// issuer, inventory, rotation-scheduler, revocation or policy
    #[arg(value_parser = parse_service)]
    pub service: Service,
    /// Address for /healthz, /readyz and /metrics (off when not given)
    #[arg(long, env = "SIGIL_HTTP_ADDR", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Database URL (default: SQLite file in the data dir)
    #[arg(long, env = "SIGIL_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Cedar policies seeded as version 1 of a new installation, for the policy service
    #[arg(long, env = "SIGIL_POLICY_FILE", value_name = "FILE")]
    pub policy: Option<std::path::PathBuf>,
    /// Kind of CA a new installation creates: classical, hybrid (ECDSA + ML-DSA
    /// alternative signatures), composite or mldsa; an existing hierarchy keeps its kind
    #[arg(long, env = "SIGIL_CA_KIND", default_value = "hybrid", value_parser = crate::commands::wire_enum::<sigil_contracts::types::CaKind>(sigil_contracts::types::CaKind::ALL.iter().map(|k| k.as_str()).collect()))]
    pub ca_kind: sigil_contracts::types::CaKind,
    /// Algorithm within the CA kind (see `sigil ca init --help`)
    #[arg(long = "ca-alg", env = "SIGIL_CA_ALGORITHM", value_name = "ALG")]
    pub ca_algorithm: Option<String>,
    /// Rotation-scheduler tick
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub tick: Duration,
}

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> Result<(), CliError> {
    let _telemetry = sigil_telemetry::init(&format!("sigil-{}", args.service.name()))
        .map_err(|e| CliError::Other(e.to_string()))?;
    let settings = ServiceSettings {
        data_dir: global.data_dir.clone(),
        nats_url: global.nats_url(),
        database_url: args.database_url,
        policy_file: args.policy,
        kek: std::env::var("SIGIL_KEK").ok().filter(|k| !k.is_empty()),
        tick_interval: args.tick,
        ca_kind: args.ca_kind,
        ca_algorithm: args.ca_algorithm.clone(),
    };
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| CliError::io(&settings.data_dir, e))?;
    let metrics = Metrics::new();
    let health = Health::new();
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    if let Some(addr) = args.http {
        let (m, h, s) = (metrics.clone(), health.clone(), shutdown.clone());
        tasks.spawn(async move {
            sigil_telemetry::serve_http(addr, m, h, s)
                .await
                .map_err(|e| CliError::Other(e.to_string()))
        });
    }
    services::spawn(
        args.service,
        &settings,
        &metrics,
        &health,
        &shutdown,
        &mut tasks,
    )
    .await?;
    tracing::info!(service = args.service.name(), nats = %settings.nats_url, "serving");
    services::supervise(tasks, shutdown).await
}
