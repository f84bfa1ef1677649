//! `sigil-rotation-scheduler`: runs the rotation scheduler until Ctrl-C or SIGTERM.
//!
//! Environment: `SIGIL_DATABASE_URL` (default SQLite `rotation-scheduler.db` under
//! `SIGIL_DATA_DIR`, default `./.sigil`), `SIGIL_TICK_INTERVAL` (e.g. `10s`, default
//! 10 s), plus the common `SIGIL_NATS_URL` and `SIGIL_HTTP_ADDR` (see
//! [`sigil_bus::launch`]). Invalid configuration exits with 78.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use sigil_bus::launch;
use sigil_rotation_scheduler::Config;

const NAME: &str = "sigil-rotation-scheduler";

fn main() -> ExitCode {
    match config_from_env() {
        Ok(config) => launch::main(NAME, move |rt, shutdown| {
            sigil_rotation_scheduler::run(config, rt, shutdown)
        }),
        Err(e) => launch::config_error(NAME, e),
    }
}

fn config_from_env() -> Result<Config, String> {
    let mut config = Config {
        database_url: launch::database_url("rotation-scheduler"),
        ..Config::default()
    };
    if let Some(t) = launch::env("SIGIL_TICK_INTERVAL") {
        config.tick_interval =
            humantime::parse_duration(&t).map_err(|e| format!("SIGIL_TICK_INTERVAL {t:?}: {e}"))?;
    }
    Ok(config)
}
