//! Starting Sigil's services inside this process: `sigil up` starts all five,
//! `sigil serve <service>` one. Each gets its own NATS connection and its own
//! database (a SQLite file in the data directory, or `SIGIL_DATABASE_URL`, where the
//! store gives each service its own PostgreSQL schema).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sigil_bus::{Bus, Runtime};
use sigil_contracts::subjects::Service;
use sigil_telemetry::{Health, Metrics};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::CliError;

/// Settings shared by the services of one process.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub data_dir: PathBuf,
    pub nats_url: String,
    /// Overrides the per-service SQLite files (e.g. a PostgreSQL URL).
    pub database_url: Option<String>,
    /// Cedar policies stored as version 1 of a new installation; the built-in default
    /// set when absent (later versions come from `sigil policy apply`).
    pub policy_file: Option<PathBuf>,
    /// Key-encryption key for CA keys (hex or base64); a key file in the data dir when absent.
    pub kek: Option<String>,
    /// Rotation-scheduler tick.
    pub tick_interval: Duration,
    /// Kind of CA hierarchy a new installation creates (an existing one keeps its own).
    pub ca_kind: sigil_contracts::types::CaKind,
    /// Algorithm within that kind (e.g. `p256+mldsa65`); the kind's default when absent.
    pub ca_algorithm: Option<String>,
}

impl ServiceSettings {
    fn database_url(&self, service: Service) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => sigil_store::sqlite_url(&self.data_dir.join(format!("{}.db", service.name()))),
        }
    }
}

fn fail(service: Service, e: impl std::fmt::Display) -> CliError {
    CliError::Other(format!("{}: {e}", service.name()))
}

/// Read the seed policy file (Cedar), if one is configured, and check it before
/// anything starts.
fn policy_seed(path: Option<&Path>) -> Result<Option<String>, CliError> {
    match path {
        None => Ok(None),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| CliError::io(p, e))?;
            sigil_policy::Compiled::new("seed", &text, None)
                .map_err(|e| CliError::bad_input(p, e.to_string()))?;
            Ok(Some(text))
        }
    }
}

/// The policy service's configuration for these settings. `sigil up` uses the same one
/// to mint its local bootstrap token (it opens the policy database directly).
pub fn policy_config(settings: &ServiceSettings) -> Result<sigil_policy::Config, CliError> {
    Ok(sigil_policy::Config {
        database_url: settings.database_url(Service::Policy),
        seed_policies: policy_seed(settings.policy_file.as_deref())?,
        ..sigil_policy::Config::in_data_dir(&settings.data_dir)
    })
}

/// Spawn `service` into `tasks`; each task resolves to its service's result.
pub async fn spawn(
    service: Service,
    settings: &ServiceSettings,
    metrics: &Metrics,
    health: &Health,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<Result<(), CliError>>,
) -> Result<(), CliError> {
    let bus = Bus::connect(&settings.nats_url, &format!("sigil-{}", service.name())).await?;
    let rt = Runtime::new(bus, metrics.clone(), health.clone());
    let sd = shutdown.clone();
    match service {
        Service::Policy => {
            let cfg = policy_config(settings)?;
            tasks.spawn(async move {
                sigil_policy::run(cfg, rt, sd)
                    .await
                    .map_err(|e| fail(service, e))
            });
        }
        Service::Issuer => {
            let cfg = sigil_issuer::Config {
                database_url: settings.database_url(service),
                data_dir: settings.data_dir.clone(),
                kek: settings.kek.clone(),
                ca_kind: settings.ca_kind,
                ca_algorithm: settings.ca_algorithm.clone(),
                crl_base_url: sigil_bus::launch::env("SIGIL_CRL_BASE_URL"),
                ocsp_base_url: sigil_bus::launch::env("SIGIL_OCSP_BASE_URL"),
                ..Default::default()
            };
            tasks.spawn(async move {
                sigil_issuer::run(cfg, rt, sd)
                    .await
                    .map_err(|e| fail(service, e))
            });
        }
        Service::Inventory => {
            let cfg = sigil_inventory::Config {
                database_url: settings.database_url(service),
            };
            tasks.spawn(async move {
                sigil_inventory::run(cfg, rt, sd)
                    .await
                    .map_err(|e| fail(service, e))
            });
        }
        Service::RotationScheduler => {
            let cfg = sigil_rotation_scheduler::Config {
                database_url: settings.database_url(service),
                tick_interval: settings.tick_interval,
                ..Default::default()
            };
            tasks.spawn(async move {
                sigil_rotation_scheduler::run(cfg, rt, sd)
                    .await
                    .map_err(|e| fail(service, e))
            });
        }
        Service::Revocation => {
            let cfg = sigil_revocation::Config {
                database_url: settings.database_url(service),
                ..sigil_revocation::Config::in_data_dir(&settings.data_dir)
            };
            tasks.spawn(async move {
                sigil_revocation::run(cfg, rt, sd)
                    .await
                    .map_err(|e| fail(service, e))
            });
        }
    }
    Ok(())
}

/// Waits (at most 20 s) for every task to end, after shutdown was cancelled.
pub async fn drain(mut tasks: JoinSet<Result<(), CliError>>) {
    let all = async {
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "service stopped with an error");
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(20), all)
        .await
        .is_err()
    {
        tracing::warn!("services did not drain within 20s; exiting anyway");
    }
}

/// Run until ctrl-c / SIGTERM or until a service fails; then drain everything.
pub async fn supervise(
    mut tasks: JoinSet<Result<(), CliError>>,
    shutdown: CancellationToken,
) -> Result<(), CliError> {
    let mut first_error = None;
    tokio::select! {
        _ = sigil_bus::launch::shutdown_signal() => {}
        Some(done) = tasks.join_next() => {
            first_error = Some(match done {
                Ok(Ok(())) => CliError::Other("a service stopped unexpectedly".to_owned()),
                Ok(Err(e)) => e,
                Err(e) => CliError::Other(format!("a service crashed: {e}")),
            });
        }
    }
    shutdown.cancel();
    drain(tasks).await;
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
