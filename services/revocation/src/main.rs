//! `sigil-revocation`: runs the revocation service on its own until Ctrl-C or SIGTERM.
//!
//! Environment: `SIGIL_DATABASE_URL` (default SQLite `revocation.db` under
//! `SIGIL_DATA_DIR`, default `./.sigil`), `SIGIL_POLICY_TIMEOUT` (default `5s`: how long
//! a revocation waits for policy's decision), plus the common `SIGIL_NATS_URL` and
//! `SIGIL_HTTP_ADDR` (see [`sigil_bus::launch`]).
//!
//! Invalid configuration exits with 78 before anything is connected.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use sigil_bus::launch::{self, env};
use sigil_revocation::Config;

const NAME: &str = "sigil-revocation";

fn main() -> ExitCode {
    match config_from_env() {
        Ok(config) => launch::main(NAME, move |rt, shutdown| {
            sigil_revocation::run(config, rt, shutdown)
        }),
        Err(e) => launch::config_error(NAME, e),
    }
}

fn config_from_env() -> Result<Config, String> {
    let mut config = Config {
        database_url: launch::database_url("revocation"),
        ..Config::default()
    };
    if let Some(t) = env("SIGIL_POLICY_TIMEOUT") {
        config.policy_timeout = humantime::parse_duration(&t)
            .map_err(|e| format!("SIGIL_POLICY_TIMEOUT={t:?} is not a duration such as 5s: {e}"))?;
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}
