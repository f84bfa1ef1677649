//! `sigil csr`: make a key pair and a signed PKCS#10 request on this machine, so the
//! private key never leaves it; then `sigil issue --csr csr.pem`.
//!
//! Classical keys (ECDSA P-256/P-384, Ed25519) give a plain CSR (rcgen); ML-DSA keys
//! an RFC 9881 CSR and composite keys a draft -19 composite CSR
//! ([`sigil_pki::build_pq_csr`]); a classical key with `--alt ml-dsa-65` a hybrid CSR in
//! Bouncy Castle's attribute form ([`sigil_pki::build_hybrid_csr`]), whose ML-DSA key a
//! hybrid CA puts into the leaf's subjectAltPublicKeyInfo (2.5.29.72).

use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args};
use serde::Serialize;
use sigil_contracts::types::{KeyAlgorithm, Sans};
use sigil_pki::composite::COMPOSITE_KEY_PEM_LABEL;
use sigil_pki::mldsa::{MlDsaKeyPair, MlDsaLevel};
use sigil_pki::{CompositeAlg, CompositeKeyPair, PkiError, SecretKey};

use crate::commands::issue::write_file;
use crate::commands::{NameArgs, wire_enum};
use crate::context::GlobalArgs;
use crate::error::CliError;
use crate::output;

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

/// The request's PEM, its private key's PEM and the alternative key's PEM, if any.
struct Made {
    csr: String,
    key: String,
    alt_key: Option<String>,
}

pub fn run(global: &GlobalArgs, args: &CsrArgs) -> Result<(), CliError> {
    let sans = args.names.sans();
    let made = make(args.key_alg, args.alt, &sans)
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

fn make(alg: KeyAlgorithm, alt: Option<KeyAlgorithm>, sans: &Sans) -> Result<Made, PkiError> {
    let cn = sans.dns.first().map(String::as_str);
    if let Some(level) = MlDsaLevel::from_key_algorithm(alg) {
        refuse_alt(alt, alg)?;
        let key = MlDsaKeyPair::generate(level);
        let pkcs8 = sigil_pki::pqcert::mldsa_key_to_pkcs8(&key)?;
        return Ok(Made {
            csr: sigil_pki::build_pq_csr(&key, cn, sans)?,
            key: sigil_pki::pem::encode("PRIVATE KEY", &pkcs8),
            alt_key: None,
        });
    }
    if let Some(composite) = CompositeAlg::from_key_algorithm(alg) {
        refuse_alt(alt, alg)?;
        let key = CompositeKeyPair::generate(composite)?;
        return Ok(Made {
            csr: sigil_pki::build_pq_csr(&key, cn, sans)?,
            key: sigil_pki::pem::encode(COMPOSITE_KEY_PEM_LABEL, &key.to_der()?),
            alt_key: None,
        });
    }
    let key = sigil_pki::generate_key(alg)?;
    match alt.map(|a| MlDsaLevel::from_key_algorithm(a).ok_or(a)) {
        None => Ok(Made {
            csr: classical_csr(&key, sans)?,
            key: key.to_pkcs8_pem(),
            alt_key: None,
        }),
        Some(Ok(level)) => {
            let alt_key = MlDsaKeyPair::generate(level);
            let pkcs8 = sigil_pki::pqcert::mldsa_key_to_pkcs8(&alt_key)?;
            Ok(Made {
                csr: sigil_pki::build_hybrid_csr(&key, &alt_key, cn, sans)?,
                key: key.to_pkcs8_pem(),
                alt_key: Some(sigil_pki::pem::encode("PRIVATE KEY", &pkcs8)),
            })
        }
        Some(Err(a)) => Err(PkiError::UnsupportedKey(format!(
            "--alt must be an ML-DSA algorithm, not {}",
            a.as_str()
        ))),
    }
}

fn refuse_alt(alt: Option<KeyAlgorithm>, alg: KeyAlgorithm) -> Result<(), PkiError> {
    match alt {
        Some(_) => Err(PkiError::UnsupportedKey(format!(
            "--alt adds an ML-DSA key to a classical key; {} is not classical",
            alg.as_str()
        ))),
        None => Ok(()),
    }
}

/// A classical CSR (rcgen) for `key`, naming `sans`, CN = the first DNS name.
fn classical_csr(key: &SecretKey, sans: &Sans) -> Result<String, PkiError> {
    let bad = |e: rcgen::Error| PkiError::Encoding(format!("classical CSR: {e}"));
    let key_pair = rcgen::KeyPair::try_from(key.pkcs8_der()).map_err(bad)?;
    let mut params = rcgen::CertificateParams::default();
    if let Some(cn) = sans.dns.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn.clone());
    }
    for dns in &sans.dns {
        let name = rcgen::string::Ia5String::try_from(dns.as_str()).map_err(bad)?;
        params.subject_alt_names.push(rcgen::SanType::DnsName(name));
    }
    for ip in &sans.ip {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(*ip));
    }
    for uri in &sans.uri {
        let name = rcgen::string::Ia5String::try_from(uri.as_str()).map_err(bad)?;
        params.subject_alt_names.push(rcgen::SanType::URI(name));
    }
    params
        .serialize_request(&key_pair)
        .and_then(|r| r.pem())
        .map_err(bad)
}
