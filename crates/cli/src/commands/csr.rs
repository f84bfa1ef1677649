//! `sigil csr`: make a key pair and a signed PKCS#10 request on this machine, so the
//! private key never leaves it; then `sigil issue --csr csr.pem`.
//!
//! The keys and the CSR are made by [`crate::keys`] (shared with `sigil renew` and the
//! admin credential of `sigil up`): classical keys give a plain CSR, ML-DSA and
//! composite keys a post-quantum one, a classical key with `--alt ml-dsa-65` a hybrid
//! CSR whose ML-DSA key a hybrid CA puts into the leaf's subjectAltPublicKeyInfo.

use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args};
use serde::Serialize;
use sigil_contracts::types::KeyAlgorithm;

use crate::commands::issue::write_file;
use crate::commands::{NameArgs, wire_enum};
use crate::context::GlobalArgs;
use crate::error::CliError;
use crate::{keys, output};

pub const CSR_FILE: &str = "csr.pem";
pub const KEY_FILE: &str = "key.pem";
pub const ALT_KEY_FILE: &str = "alt-key.pem";

/// Make a key pair and a certificate signing request locally.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("names").required(true).multiple(true).args(["dns", "ip", "uri"])))]
pub struct CsrArgs {
    #[command(flatten)]
    pub names: NameArgs,
    /// Key algorithm: classical, ML-DSA or composite (the CA's kind must match)
    #[arg(
        long = "key-alg",
        default_value = "ecdsa-p256",
        value_name = "ALG",
        value_parser = wire_enum::<KeyAlgorithm>(KeyAlgorithm::ALL.iter().map(|a| a.as_str()).collect())
    )]
    pub key_alg: KeyAlgorithm,
    /// Also make an ML-DSA key and a hybrid CSR (for a hybrid CA), e.g. ml-dsa-65
    #[arg(
        long,
        value_name = "ALG",
        value_parser = wire_enum::<KeyAlgorithm>(vec!["ml-dsa-44", "ml-dsa-65", "ml-dsa-87"])
    )]
    pub alt: Option<KeyAlgorithm>,
    /// Directory to write csr.pem, key.pem (0600) and alt-key.pem (0600) to
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub out: PathBuf,
    /// Overwrite existing files
    #[arg(long)]
    pub force: bool,
}

/// What was written where (`--json`).
#[derive(Debug, Serialize)]
struct Written {
    key_algorithm: KeyAlgorithm,
    alt_key_algorithm: Option<KeyAlgorithm>,
    csr: PathBuf,
    key: PathBuf,
    alt_key: Option<PathBuf>,
}

pub fn run(global: &GlobalArgs, args: &CsrArgs) -> Result<(), CliError> {
    let sans = args.names.sans();
    let made = keys::generate(args.key_alg, args.alt, &sans)
        .map_err(|e| CliError::Other(format!("cannot make the CSR: {e}")))?;
    std::fs::create_dir_all(&args.out).map_err(|e| CliError::io(&args.out, e))?;
    let path = |name: &str| args.out.join(name);
    let mut written = Written {
        key_algorithm: args.key_alg,
        alt_key_algorithm: args.alt,
        csr: path(CSR_FILE),
        key: path(KEY_FILE),
        alt_key: None,
    };
    // Keys first: a CSR on disk always has its key next to it.
    write_file(&written.key, made.key.as_bytes(), 0o600, args.force)?;
    if let Some(alt) = &made.alt_key {
        let alt_path = path(ALT_KEY_FILE);
        write_file(&alt_path, alt.as_bytes(), 0o600, args.force)?;
        written.alt_key = Some(alt_path);
    }
    write_file(&written.csr, made.csr.as_bytes(), 0o644, args.force)?;
    if global.json {
        return output::print(&output::json(&written)?);
    }
    let show = |p: &Path| p.display().to_string();
    let mut rows = vec![
        ("csr", show(&written.csr)),
        (
            "key",
            format!("{} ({})", show(&written.key), args.key_alg.as_str()),
        ),
    ];
    if let (Some(p), Some(alg)) = (&written.alt_key, args.alt) {
        rows.push(("alt key", format!("{} ({})", show(p), alg.as_str())));
    }
    output::print(&output::key_values(&rows))
}
