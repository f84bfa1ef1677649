//! `sigil-policy` binary: reads its configuration from the environment and runs the
//! policy service until Ctrl-C or SIGTERM.
//!
//! Environment (besides the common `SIGIL_NATS_URL` and `SIGIL_HTTP_ADDR`, see
//! [`sigil_bus::launch`]):
//! - `SIGIL_DATABASE_URL`: the policy database (default `sqlite://.sigil/policy.db`)
//! - `SIGIL_POLICY_FILE`: Cedar policies stored as version 1 when the database holds
//!   none (the built-in default set when unset); later versions come from
//!   `sigil policy apply`
//! - `SIGIL_POLICY_ENTITIES`: a Cedar entities JSON file (group memberships) to go with it
//! - `SIGIL_POLICY_RELOAD`: fallback poll interval of the active version, e.g. `2s`
//!
//! Invalid seed policies exit with 78 before anything is connected.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use sigil_bus::launch;
use sigil_policy::{Compiled, Config};

const NAME: &str = "sigil-policy";

fn main() -> ExitCode {
    match config_from_env() {
        Ok(config) => launch::main(NAME, move |rt, shutdown| {
            sigil_policy::run(config, rt, shutdown)
        }),
        Err(e) => launch::config_error(NAME, e),
    }
}

fn read(var: &str) -> Result<Option<String>, String> {
    // `var_os`: a file may live at a path that is not UTF-8.
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            std::fs::read_to_string(&path)
                .map(Some)
                .map_err(|e| format!("{var}={}: {e}", path.display()))
        }
        _ => Ok(None),
    }
}

fn config_from_env() -> Result<Config, String> {
    let mut config = Config::default();
    if let Some(url) = launch::env("SIGIL_DATABASE_URL") {
        config.database_url = url;
    }
    config.seed_policies = read("SIGIL_POLICY_FILE")?;
    config.seed_entities = read("SIGIL_POLICY_ENTITIES")?;
    if let Some(text) = &config.seed_policies {
        Compiled::new("seed", text, config.seed_entities.as_deref())
            .map_err(|e| format!("SIGIL_POLICY_FILE: {e}"))?;
    }
    if let Some(every) = launch::env("SIGIL_POLICY_RELOAD") {
        let secs: f64 = every
            .trim_end_matches('s')
            .parse()
            .map_err(|_| format!("SIGIL_POLICY_RELOAD={every:?}: expected seconds, e.g. 2s"))?;
        if !(0.05..=3600.0).contains(&secs) {
            return Err(format!(
                "SIGIL_POLICY_RELOAD={every:?}: between 0.05s and 3600s"
            ));
        }
        config.reload_interval = Duration::from_secs_f64(secs);
    }
    Ok(config)
}
