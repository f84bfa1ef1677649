//! Options every command shares, the NATS connection they lead to, and the proof of
//! who sends a mutating request: the admin credential (`<data-dir>/admin.cred`, made by
//! `sigil up`, or `--admin-cred FILE`), loaded only by the commands that need it.

use std::path::{Path, PathBuf};

use chrono::Utc;
use clap::Args;
use sigil_bus::Bus;
use sigil_contracts::auth::{CarriesProof, Proof};
use sigil_contracts::subjects::Operation;
use sigil_pki::proof::Credential;

use crate::error::CliError;

/// Where NATS is when nothing says otherwise.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// File in the data directory where `sigil up` records the URL of the NATS it runs.
pub const NATS_URL_FILE: &str = "nats.url";
/// Help heading of the global options.
const GLOBAL: &str = "Global options";
/// File in the data directory holding the admin credential `sigil up` makes.
pub const ADMIN_CRED_FILE: &str = "admin.cred";
/// Largest credential file read (a chain of post-quantum certificates and two keys
/// fit many times over).
const MAX_CREDENTIAL_BYTES: u64 = 256 * 1024;
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

    /// Credential that signs mutating requests (PEM chain and private key(s))
    /// [default: <DATA_DIR>/admin.cred, made by `sigil up`]
    #[arg(
        long,
        global = true,
        env = "SIGIL_ADMIN_CRED",
        value_name = "FILE",
        help_heading = GLOBAL
    )]
    pub admin_cred: Option<PathBuf>,
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

    /// Where the admin credential is: `--admin-cred`/`SIGIL_ADMIN_CRED`, else
    /// `<data-dir>/admin.cred`.
    pub fn admin_cred_path(&self) -> PathBuf {
        self.admin_cred
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| self.data_dir.join(ADMIN_CRED_FILE))
    }

    /// The admin credential, as a [`Prover`]. A missing, unreadable or malformed file
    /// is [`CliError::NoCredential`]: one line saying to run `sigil up` or pass
    /// `--admin-cred`.
    pub fn admin(&self) -> Result<Prover, CliError> {
        load_credential(&self.admin_cred_path()).map(|c| Prover::Credential(Box::new(c)))
    }
}

/// Reads a credential file (PEM chain, leaf first, and its private key(s)).
pub fn load_credential(path: &Path) -> Result<Credential, CliError> {
    let missing = |reason: String| CliError::NoCredential {
        path: path.to_owned(),
        reason,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| missing(e.to_string()))?
        .len();
    if size > MAX_CREDENTIAL_BYTES {
        return Err(missing(format!(
            "{size} bytes is too large for a credential"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| missing(e.to_string()))?;
    Credential::from_pem_bundle(&text).map_err(|e| missing(e.to_string()))
}

/// Who signs a request: a credential's key (a possession proof, made fresh for each
/// request and each attempt, since its nonce is single use) or a bootstrap token.
pub enum Prover {
    Credential(Box<Credential>),
    Token(String),
}

impl std::fmt::Debug for Prover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prover::Credential(_) => f.write_str("Credential([redacted])"),
            Prover::Token(_) => f.write_str("Token([redacted])"),
        }
    }
}

impl Prover {
    /// Sets `req.proof` to a proof for sending `req` to `op`, made now. Call it again
    /// for every attempt: a possession proof's nonce is accepted once.
    pub fn prove<T: CarriesProof>(&self, op: Operation, req: &mut T) -> Result<(), CliError> {
        let proof = match self {
            Prover::Token(token) => Proof::Token {
                token: token.clone(),
            },
            Prover::Credential(cred) => {
                *req.proof_mut() = None;
                cred.proof(&op.subject(), req, Utc::now())
                    .map_err(|e| CliError::Other(format!("cannot sign the request: {e}")))?
            }
        };
        *req.proof_mut() = Some(proof);
        Ok(())
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
