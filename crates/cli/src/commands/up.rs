//! `sigil up`: NATS (started if needed) plus all five services in this process, and the
//! admin credential in the data directory ([`crate::admin`]): made on the first start,
//! renewed when due, ready before the ready line is printed.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use sigil_bus::{Bus, BusError};
use sigil_contracts::subjects::Service;
use sigil_telemetry::{Health, Metrics};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Outcome};
use crate::context::{ADMIN_CRED_FILE, DEFAULT_NATS_URL, GlobalArgs, NATS_URL_FILE};
use crate::error::CliError;
use crate::local_nats::{self, LocalNats};
use crate::services::{self, ServiceSettings};

/// Run NATS (when none answers) and all five services; prints one line when ready.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address for /healthz, /readyz and /metrics
    #[arg(long, default_value = "127.0.0.1:8088", value_name = "ADDR")]
    pub http: SocketAddr,
    /// Database URL for every service (default: one SQLite file per service in the data dir)
    #[arg(long, env = "SIGIL_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Cedar policies seeded as version 1 of a new installation; default: local names and private addresses, 90-day maximum
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
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub tick: Duration,
}

/// Pick the NATS to use: the given URL, or for a loopback URL with no usable server
/// behind it, a child nats-server (on that port, or a free one if it is taken by an
/// incompatible server).
async fn resolve_nats(global: &GlobalArgs) -> Result<(String, Option<LocalNats>), CliError> {
    let explicit = global.nats.clone().filter(|u| !u.trim().is_empty());
    let url = explicit
        .clone()
        .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned());
    match Bus::probe(&url).await {
        Ok(version) => match sigil_bus::parse_version(&version) {
            Some(v) if v >= sigil_bus::MIN_SERVER_VERSION => return Ok((url, None)),
            _ if explicit.is_some() => {
                return Err(BusError::ServerTooOld {
                    url,
                    found: version,
                }
                .into());
            }
            _ => {
                eprintln!(
                    "sigil up: nats-server {version} at {url} is older than 2.10; starting a private one"
                );
            }
        },
        Err(e) if local_nats::loopback_port(&url).is_none() => return Err(e.into()),
        Err(_) => {}
    }
    let port = local_nats::loopback_port(&url).unwrap_or(4222);
    let child = local_nats::start(&global.data_dir, port).await?;
    Ok((child.url.clone(), Some(child)))
}

/// Makes, renews or keeps `<data-dir>/admin.cred` (always the data directory's file:
/// `--admin-cred` picks what client commands sign with, not what `up` manages).
async fn admin_credential(
    global: &GlobalArgs,
    settings: &ServiceSettings,
    nats_url: &str,
) -> Result<Outcome, CliError> {
    let policy = services::policy_config(settings)?;
    let bus = Bus::connect(nats_url, "sigil-up").await?;
    let path = global.data_dir.join(ADMIN_CRED_FILE);
    admin::ensure(&path, &policy, &bus).await
}

/// One line about the admin credential, when there is something to say.
fn report(path: &std::path::Path, outcome: &Outcome) {
    let path = path.display();
    match outcome {
        Outcome::Created { serial, not_after } => println!(
            "sigil up: admin credential {path} created for {} (serial {serial}, valid until {}; mode 0600)",
            admin::ADMIN_PRINCIPAL,
            crate::output::time(*not_after)
        ),
        Outcome::Renewed {
            serial,
            replaced,
            not_after,
        } => println!(
            "sigil up: admin credential {path} renewed (serial {serial} replaces {replaced}, valid until {})",
            crate::output::time(*not_after)
        ),
        Outcome::Kept { serial, not_after } => println!(
            "sigil up: admin credential {path} (serial {serial}, valid until {})",
            crate::output::time(*not_after)
        ),
        Outcome::Untouched { reason } => eprintln!("sigil up: warning: {reason}"),
    }
}

pub async fn run(global: &GlobalArgs, args: UpArgs) -> Result<(), CliError> {
    std::fs::create_dir_all(&global.data_dir).map_err(|e| CliError::io(&global.data_dir, e))?;
    let _telemetry = sigil_telemetry::init("sigil").map_err(|e| CliError::Other(e.to_string()))?;
    let (nats_url, child) = resolve_nats(global).await?;
    let url_file = global.data_dir.join(NATS_URL_FILE);
    std::fs::write(&url_file, format!("{nats_url}\n")).map_err(|e| CliError::io(&url_file, e))?;

    let settings = ServiceSettings {
        data_dir: global.data_dir.clone(),
        nats_url: nats_url.clone(),
        database_url: args.database_url.clone(),
        policy_file: args.policy.clone(),
        kek: std::env::var("SIGIL_KEK").ok().filter(|k| !k.is_empty()),
        tick_interval: args.tick,
        ca_kind: args.ca_kind,
        ca_algorithm: args.ca_algorithm.clone(),
    };
    let metrics = Metrics::new();
    let health = Health::new();
    let shutdown = CancellationToken::new();
    let (listener, http_addr) = sigil_telemetry::bind_http(args.http)
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    let mut tasks = JoinSet::new();
    {
        let (m, h, s) = (metrics.clone(), health.clone(), shutdown.clone());
        tasks.spawn(async move {
            sigil_telemetry::serve_listener(listener, m, h, s)
                .await
                .map_err(|e| CliError::Other(e.to_string()))
        });
    }
    for service in Service::ALL {
        services::spawn(service, &settings, &metrics, &health, &shutdown, &mut tasks).await?;
    }
    let ready = async {
        while !(health.report().components.len() == Service::ALL.len() && health.is_ready()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(Duration::from_secs(60), ready) => {}
        Some(done) = tasks.join_next() => {
            shutdown.cancel();
            return Err(match done {
                Ok(Err(e)) => e,
                _ => CliError::Other("a service stopped during start-up".to_owned()),
            });
        }
    }
    if !health.is_ready() {
        shutdown.cancel();
        return Err(CliError::Other(format!(
            "services not ready within 60s: {:?}",
            health.report()
        )));
    }
    let admin = match admin_credential(global, &settings, &nats_url).await {
        Ok(outcome) => outcome,
        Err(e) => {
            shutdown.cancel();
            services::drain(tasks).await;
            if let Some(child) = child {
                child.stop().await;
            }
            return Err(e);
        }
    };
    println!(
        "sigil up: 5 services ready · nats {nats_url} · http http://{http_addr} · data {}",
        global.data_dir.display()
    );
    report(&global.data_dir.join(ADMIN_CRED_FILE), &admin);
    let result = services::supervise(tasks, shutdown).await;
    if let Some(child) = child {
        child.stop().await;
    }
    result
}
