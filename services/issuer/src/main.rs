//! `sigil-issuer` binary: reads its configuration from the environment and runs the
//! issuer until Ctrl-C or SIGTERM.
//!
//! Environment (besides the common `SIGIL_NATS_URL` and `SIGIL_HTTP_ADDR`, see
//! [`sigil_bus::launch`]):
//! - `SIGIL_DATA_DIR` (default `./.sigil`): holds the generated `kek` file and the
//!   default SQLite database
//! - `SIGIL_DATABASE_URL` (default `sqlite://<data dir>/issuer.db?mode=rwc`)
//! - `SIGIL_KEK`: key-encryption key for CA keys (64 hex characters or base64 of 32
//!   bytes); when unset, `<data dir>/kek` is used (created with mode 0600)
//! - `SIGIL_CA_COMMON_NAME` (default `Sigil`): prefix of the CA common names
//! - `SIGIL_POLICY_TIMEOUT` (default `5s`)
//! - `SIGIL_CA_KIND` (default `hybrid`): `classical`, `hybrid`, `composite` or `mldsa`,
//!   the kind of hierarchy a new installation creates (an existing one keeps its kind)
//! - `SIGIL_CA_ALGORITHM`: algorithm within the kind, e.g. `p256+mldsa65`
//! - `SIGIL_CRL_BASE_URL`: leaves get the CRL distribution point `<base>/<issuer-ca-id>.crl`
//! - `SIGIL_OCSP_BASE_URL`: leaves get this OCSP responder URL in authorityInfoAccess
//!
//! Invalid configuration exits with 78 before anything is connected.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use sigil_bus::launch::{self, env};
use sigil_issuer::Config;

const NAME: &str = "sigil-issuer";

fn main() -> ExitCode {
    match config_from_env() {
        Ok(config) => launch::main(NAME, move |rt, shutdown| {
            sigil_issuer::run(config, rt, shutdown)
        }),
        Err(e) => launch::config_error(NAME, e),
    }
}

fn config_from_env() -> Result<Config, String> {
    let mut config = Config {
        data_dir: launch::data_dir(),
        database_url: launch::database_url("issuer"),
        kek: env("SIGIL_KEK"),
        ..Config::default()
    };
    if let Some(name) = env("SIGIL_CA_COMMON_NAME") {
        config.ca_common_name = name;
    }
    if let Some(t) = env("SIGIL_POLICY_TIMEOUT") {
        config.policy_timeout = humantime::parse_duration(&t)
            .map_err(|e| format!("SIGIL_POLICY_TIMEOUT={t:?} is not a duration such as 5s: {e}"))?;
    }
    if let Some(kind) = env("SIGIL_CA_KIND") {
        config.ca_kind = sigil_contracts::types::CaKind::from_name(&kind).ok_or_else(|| {
            format!("SIGIL_CA_KIND={kind:?}: use classical, hybrid, composite or mldsa")
        })?;
    }
    config.ca_algorithm = env("SIGIL_CA_ALGORITHM");
    config.crl_base_url = env("SIGIL_CRL_BASE_URL");
    config.ocsp_base_url = env("SIGIL_OCSP_BASE_URL");
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}
