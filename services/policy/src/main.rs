//! `sigil-policy` binary: reads its configuration from the environment and runs the
//! policy service until Ctrl-C or SIGTERM.
//!
//! Environment (besides the common `SIGIL_NATS_URL` and `SIGIL_HTTP_ADDR`, see
//! [`sigil_bus::launch`]):
//! - `SIGIL_POLICY_FILE`: a TOML file of [`sigil_policy::Rules`]; the built-in rules
//!   when unset
//!
//! Invalid rules exit with 78 before anything is connected.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use sigil_bus::launch;
use sigil_policy::{Config, Rules};

const NAME: &str = "sigil-policy";

fn main() -> ExitCode {
    match config_from_env() {
        Ok(config) => launch::main(NAME, move |rt, shutdown| {
            sigil_policy::run(config, rt, shutdown)
        }),
        Err(e) => launch::config_error(NAME, e),
    }
}

fn config_from_env() -> Result<Config, String> {
    // `var_os`: a rules file may live at a path that is not UTF-8.
    let rules = match std::env::var_os("SIGIL_POLICY_FILE") {
        Some(path) if !path.is_empty() => {
            Rules::from_toml_file(&PathBuf::from(path)).map_err(|e| e.to_string())?
        }
        _ => Rules::default(),
    };
    rules.validate().map_err(|e| e.to_string())?;
    Ok(Config { rules })
}
