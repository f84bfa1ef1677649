//! Options every command shares, and the NATS connection they lead to.

use std::path::{Path, PathBuf};

use clap::Args;
use sigil_bus::Bus;

use crate::error::CliError;

/// Where NATS is when nothing says otherwise.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// File in the data directory where `sigil up` records the URL of the NATS it runs.
pub const NATS_URL_FILE: &str = "nats.url";
/// Help heading of the global options.
const GLOBAL: &str = "Global options";
/// Client name shown in NATS connection listings.
const CLIENT_NAME: &str = "sigil-cli";

/// Global options.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// NATS server URL [default: contents of <DATA_DIR>/nats.url if present, else
    /// nats://127.0.0.1:4222]
    #[arg(long, global = true, env = "SIGIL_NATS_URL", value_name = "URL", help_heading = GLOBAL)]
    pub nats: Option<String>,

    /// Sigil data directory
    #[arg(
        long,
        global = true,
        env = "SIGIL_DATA_DIR",
        default_value = "./.sigil",
        value_name = "DIR",
        help_heading = GLOBAL
    )]
    pub data_dir: PathBuf,

    /// Print machine-readable JSON instead of tables
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
}

impl GlobalArgs {
    /// The NATS URL to use: `--nats`/`SIGIL_NATS_URL`, else `<data-dir>/nats.url`, else
    /// the default.
    pub fn nats_url(&self) -> String {
        resolve_nats_url(self.nats.as_deref(), &self.data_dir)
    }

    /// Connect to NATS, failing fast with a clear message when nobody answers.
    pub async fn connect(&self) -> Result<Bus, CliError> {
        let url = self.nats_url();
        // A quick probe first: Bus::connect keeps retrying for a while, which is right
        // for services starting together but slow for a person at a prompt.
        Bus::probe(&url).await?;
        Ok(Bus::connect(&url, CLIENT_NAME).await?)
    }
}

fn resolve_nats_url(explicit: Option<&str>, data_dir: &Path) -> String {
    if let Some(url) = explicit.map(str::trim).filter(|u| !u.is_empty()) {
        return url.to_owned();
    }
    std::fs::read_to_string(data_dir.join(NATS_URL_FILE))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_url_comes_from_flag_then_data_dir_then_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve_nats_url(None, dir.path()), DEFAULT_NATS_URL);
        std::fs::write(dir.path().join(NATS_URL_FILE), "nats://127.0.0.1:39999\n").unwrap();
        assert_eq!(resolve_nats_url(None, dir.path()), "nats://127.0.0.1:39999");
        assert_eq!(
            resolve_nats_url(Some("nats://h:1"), dir.path()),
            "nats://h:1"
        );
        assert_eq!(
            resolve_nats_url(Some("  "), dir.path()),
            "nats://127.0.0.1:39999"
        );
        std::fs::write(dir.path().join(NATS_URL_FILE), "\n").unwrap();
        assert_eq!(resolve_nats_url(None, dir.path()), DEFAULT_NATS_URL);
    }
}
