//! `sigil renew`: a credential renews itself, by possession of its key.
//!
//! The request asks for exactly the certificate's names and profile (policy refuses a
//! renewal that changes them: `sigil:renewal-names`), carries a CSR signed by the key
//! being kept (default) or by a new key of the same kind (`--rekey`; a hybrid
//! credential gets a new ML-DSA alternative key too), and is proven by the current
//! credential: the request signed with its key(s), its chain attached. No admin
//! credential or token is involved, so a workload can renew on its own; a revoked or
//! expired credential cannot.
//!
//! The new certificate replaces the old one in place (atomically), or goes to `--out`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;
use sigil_bus::Bus;
use sigil_contracts::issuer::{IssueRequest, IssueResponse};
use sigil_contracts::types::{KeyAlgorithm, Profile, Sans};
use sigil_pki::mldsa::MlDsaLevel;
use sigil_pki::proof::Credential;

use crate::commands::issue::{self, CERT_FILE, CHAIN_FILE, KEY_FILE, write_file};
use crate::commands::{parse_duration, seconds};
use crate::context::{GlobalArgs, Prover};
use crate::error::CliError;
use crate::{keys, output};

/// File the new alternative (ML-DSA) key of a hybrid credential goes to under `--out`.
pub const ALT_KEY_FILE: &str = "alt-key.pem";
/// Largest key file read.
const MAX_KEY_BYTES: u64 = 64 * 1024;

/// Renew a certificate by proving possession of its key: same names and profile, a
/// new serial; the key is kept unless --rekey.
#[derive(Debug, Clone, Args)]
pub struct RenewArgs {
    /// The certificate to renew (PEM; may hold its chain after it)
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,

    /// Its private key (PEM)
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,

    /// Its ML-DSA alternative key, for a hybrid certificate that carries one
    #[arg(long, value_name = "FILE")]
    pub alt_key: Option<PathBuf>,

    /// Make a new key (and alternative key) of the same kind instead of keeping it
    #[arg(long)]
    pub rekey: bool,

    /// Requested lifetime [default: the certificate's own]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Option<Duration>,

    /// Directory to write cert.pem, chain.pem (and with --rekey key.pem, alt-key.pem) to
    /// [default: replace the files given, in place]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// What a credential's leaf says about how to renew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    pub serial: String,
    pub sans: Sans,
    pub profile: Profile,
    /// The subject key's algorithm (what `--rekey` makes again).
    pub key_algorithm: KeyAlgorithm,
    /// The ML-DSA level of its subjectAltPublicKeyInfo, for a hybrid leaf with one.
    pub alt_level: Option<MlDsaLevel>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

impl LeafInfo {
    /// Reads a DER leaf certificate.
    pub fn read(leaf_der: &[u8]) -> Result<LeafInfo, String> {
        let facts = sigil_pki::certificate_facts(leaf_der, Profile::TlsServer)
            .map_err(|e| format!("cannot read the certificate: {e}"))?;
        let key_algorithm = key_algorithm(&facts.key_algorithm).ok_or_else(|| {
            format!(
                "the certificate's {} key is not one Sigil issues for",
                facts.key_algorithm
            )
        })?;
        let alt_level = sigil_pki::hybrid::subject_alt_key_level(leaf_der)
            .map_err(|e| format!("cannot read the certificate's alternative key: {e}"))?;
        Ok(LeafInfo {
            serial: facts.serial,
            sans: facts.sans,
            profile: sigil_pki::profile_of(leaf_der)?,
            key_algorithm,
            alt_level,
            not_before: facts.not_before,
            not_after: facts.not_after,
        })
    }

    /// The lifetime the certificate was asked with: its validity minus the issuer's
    /// backdating of notBefore.
    pub fn requested_ttl_seconds(&self) -> i64 {
        let span = (self.not_after - self.not_before).num_seconds();
        let asked = span - sigil_issuer::issue::BACKDATE_SECONDS;
        if asked > 0 { asked } else { span.max(1) }
    }

    /// True when less than a third of the lifetime is left at `now` (the point where
    /// `sigil up` renews its admin credential).
    pub fn due(&self, now: DateTime<Utc>) -> bool {
        let lifetime = self.not_after - self.not_before;
        self.not_after - now < lifetime / 3
    }
}

/// A [`KeyAlgorithm`] from its wire name (`ecdsa-p256`, `ml-dsa-65`, …) or a composite
/// algorithm's name (`MLDSA65-ECDSA-P256-SHA512`), as certificates and CA listings
/// describe keys.
pub fn key_algorithm(name: &str) -> Option<KeyAlgorithm> {
    serde_json::from_value(serde_json::Value::String(name.to_ascii_lowercase()))
        .ok()
        .or_else(|| sigil_pki::CompositeAlg::from_name(name).map(|a| a.key_algorithm()))
}

/// The renewal request: the leaf's names and profile, `csr`, a fresh idempotency key.
pub fn request(info: &LeafInfo, csr_pem: String, ttl_seconds: i64) -> IssueRequest {
    IssueRequest {
        idempotency_key: Some(uuid::Uuid::new_v4().to_string()),
        profile: info.profile,
        sans: info.sans.clone(),
        ttl_seconds,
        csr_pem: Some(csr_pem),
        key_algorithm: None,
        proof: None,
    }
}

/// The CSR for a renewal of `info` and the new key(s), if `rekey`.
pub fn new_csr(
    info: &LeafInfo,
    key_pem: &str,
    alt_key_pem: Option<&str>,
    rekey: bool,
) -> Result<keys::Made, CliError> {
    let fail = |e: sigil_pki::PkiError| CliError::Other(format!("cannot make the CSR: {e}"));
    if rekey {
        if matches!(
            info.key_algorithm,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
        ) {
            return Err(CliError::Usage(
                "sigil cannot make RSA keys; renew without --rekey (keeping the key)".to_owned(),
            ));
        }
        let alt = info.alt_level.map(MlDsaLevel::key_algorithm);
        return keys::generate(info.key_algorithm, alt, &info.sans).map_err(fail);
    }
    let csr = keys::csr_for_key(key_pem, alt_key_pem, &info.sans).map_err(fail)?;
    Ok(keys::Made {
        csr,
        key: key_pem.to_owned(),
        alt_key: alt_key_pem.map(str::to_owned),
    })
}

/// Sends a renewal proven by `credential`; returns the issuer's reply.
pub async fn send(
    bus: &Bus,
    credential: Credential,
    mut req: IssueRequest,
) -> Result<IssueResponse, CliError> {
    issue::issue(bus, &Prover::Credential(Box::new(credential)), &mut req).await
}

/// The certificates of a chain without self-signed roots (a proof needs the leaf and
/// intermediates; the verifier has the roots).
pub fn without_roots(certs: &[Vec<u8>]) -> Vec<String> {
    certs
        .iter()
        .enumerate()
        .filter(|(i, der)| *i == 0 || !self_signed(der))
        .map(|(_, der)| sigil_pki::pem::encode("CERTIFICATE", der))
        .collect()
}

/// Issuer name = subject name: a root.
pub fn self_signed(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.subject().as_raw() == c.issuer().as_raw())
        .unwrap_or(false)
}

/// What `--json` prints: the issuer's reply (without a key) plus what it replaced.
#[derive(Debug, Serialize)]
struct Renewed {
    /// Serial of the certificate renewed.
    replaces: String,
    /// Whether a new key was made.
    rekeyed: bool,
    #[serde(flatten)]
    issued: IssueResponse,
}

/// Where the renewal's files went.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    cert: PathBuf,
    chain: Option<PathBuf>,
    key: Option<PathBuf>,
    alt_key: Option<PathBuf>,
}

pub async fn run(global: &GlobalArgs, args: RenewArgs) -> Result<(), CliError> {
    let certs = crate::commands::verify::read_certs(&args.cert)?;
    let leaf = certs
        .first()
        .ok_or_else(|| CliError::bad_input(&args.cert, "no certificate"))?;
    let info = LeafInfo::read(leaf).map_err(|e| CliError::bad_input(&args.cert, e))?;
    let key_pem = read_key(&args.key)?;
    let alt_key_pem = args.alt_key.as_deref().map(read_key).transpose()?;
    match (info.alt_level, &alt_key_pem) {
        (Some(level), None) => {
            return Err(CliError::Usage(format!(
                "{} carries an {} alternative key (hybrid): pass its key with --alt-key FILE",
                args.cert.display(),
                level.name()
            )));
        }
        (None, Some(_)) => {
            return Err(CliError::Usage(format!(
                "{} carries no alternative key; leave out --alt-key",
                args.cert.display()
            )));
        }
        _ => {}
    }
    let credential =
        Credential::from_parts(without_roots(&certs), &key_pem, alt_key_pem.as_deref()).map_err(
            |e| CliError::bad_input(&args.key, format!("not the certificate's key: {e}")),
        )?;
    let made = new_csr(&info, &key_pem, alt_key_pem.as_deref(), args.rekey)?;
    let ttl = args
        .ttl
        .map(seconds)
        .unwrap_or_else(|| info.requested_ttl_seconds());
    let req = request(&info, made.csr.clone(), ttl);
    let bus = global.connect().await?;
    let resp = send(&bus, credential, req).await?;
    let written = write(&args, &resp, certs.len() > 1, &made)?;
    let text = if global.json {
        output::json(&Renewed {
            replaces: info.serial,
            rekeyed: args.rekey,
            issued: issue::without_key(resp),
        })?
    } else {
        summary(&info, &resp, &written, args.rekey)
    };
    output::print(&text)
}

fn read_key(path: &Path) -> Result<String, CliError> {
    let size = std::fs::metadata(path)
        .map_err(|e| CliError::bad_input(path, e.to_string()))?
        .len();
    if size > MAX_KEY_BYTES {
        return Err(CliError::bad_input(
            path,
            format!("{size} bytes is too large for a private key"),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| CliError::bad_input(path, e.to_string()))
}

fn pem_text(pems: &[&str]) -> String {
    pems.iter()
        .map(|p| {
            let p = p.trim_end();
            format!("{p}\n")
        })
        .collect()
}

/// Writes the renewal. With `--out`: cert.pem, chain.pem and, with `--rekey`, key.pem
/// and alt-key.pem (0600). In place: the certificate file (with the chain after the
/// leaf when it held one), a `chain.pem` next to it if there is one, and with
/// `--rekey` the key files given. Keys go first, each file is replaced atomically.
fn write(
    args: &RenewArgs,
    resp: &IssueResponse,
    cert_file_had_chain: bool,
    made: &keys::Made,
) -> Result<Written, CliError> {
    let chain: Vec<&str> = resp.chain_pem.iter().map(String::as_str).collect();
    let leaf_only = pem_text(&[resp.certificate_pem.as_str()]);
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).map_err(|e| CliError::io(out, e))?;
        let mut written = Written {
            cert: out.join(CERT_FILE),
            chain: Some(out.join(CHAIN_FILE)),
            key: None,
            alt_key: None,
        };
        if args.rekey {
            let key = out.join(KEY_FILE);
            write_file(&key, made.key.as_bytes(), 0o600, true)?;
            written.key = Some(key);
            if let Some(alt) = &made.alt_key {
                let path = out.join(ALT_KEY_FILE);
                write_file(&path, alt.as_bytes(), 0o600, true)?;
                written.alt_key = Some(path);
            }
        }
        write_file(&written.cert, leaf_only.as_bytes(), 0o644, true)?;
        if let Some(path) = &written.chain {
            write_file(path, pem_text(&chain).as_bytes(), 0o644, true)?;
        }
        return Ok(written);
    }
    let mut written = Written {
        cert: args.cert.clone(),
        chain: None,
        key: None,
        alt_key: None,
    };
    if args.rekey {
        write_file(&args.key, made.key.as_bytes(), 0o600, true)?;
        written.key = Some(args.key.clone());
        if let (Some(path), Some(alt)) = (&args.alt_key, &made.alt_key) {
            write_file(path, alt.as_bytes(), 0o600, true)?;
            written.alt_key = Some(path.clone());
        }
    }
    if cert_file_had_chain {
        let mut all = vec![resp.certificate_pem.as_str()];
        all.extend(&chain);
        write_file(&args.cert, pem_text(&all).as_bytes(), 0o644, true)?;
    } else {
        write_file(&args.cert, leaf_only.as_bytes(), 0o644, true)?;
        let sibling = args
            .cert
            .parent()
            .unwrap_or(Path::new("."))
            .join(CHAIN_FILE);
        if sibling != args.cert && sibling.is_file() {
            write_file(&sibling, pem_text(&chain).as_bytes(), 0o644, true)?;
            written.chain = Some(sibling);
        }
    }
    Ok(written)
}

/// The human summary, like `sigil issue`'s.
fn summary(info: &LeafInfo, resp: &IssueResponse, written: &Written, rekey: bool) -> String {
    let shown = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| format!("{} (new, mode 0600)", p.display()))
            .unwrap_or_default()
    };
    let mut rows = vec![
        ("serial", resp.serial.clone()),
        ("replaces", info.serial.clone()),
        ("sans", info.sans.values().join(", ")),
        ("profile", info.profile.as_str().to_owned()),
        ("not before", output::time(resp.not_before)),
        ("not after", output::time(resp.not_after)),
        (
            "lifetime",
            output::span(chrono::TimeDelta::seconds(resp.ttl_seconds)),
        ),
        ("certificate", written.cert.display().to_string()),
        (
            "chain",
            written
                .chain
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        (
            "private key",
            if rekey {
                shown(&written.key)
            } else {
                "kept".to_owned()
            },
        ),
        ("alt key", shown(&written.alt_key)),
    ];
    for note in &resp.notes {
        rows.push(("note", note.clone()));
    }
    output::key_values(&rows)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn parse(args: &[&str]) -> Result<RenewArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("sigil").chain(args.iter().copied()))?;
        match cli.command {
            Command::Renew(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    use sigil_testkit::pki::{ChainKind, ChainSpec, SPIFFE_ID, chain};

    const P256: KeyAlgorithm = KeyAlgorithm::EcdsaP256;

    #[test]
    fn arguments_parse() {
        let a = parse(&[
            "renew", "--cert", "c.pem", "--key", "k.pem", "--rekey", "--ttl", "7d",
        ])
        .unwrap();
        assert!(a.rekey);
        assert_eq!(a.ttl, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(a.out, None);
        assert_eq!(a.alt_key, None);
        for bad in [
            vec!["renew", "--cert", "c.pem"],
            vec!["renew", "--key", "k.pem"],
            vec!["renew", "--cert", "c", "--key", "k", "--ttl", "0s"],
        ] {
            assert_eq!(parse(&bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn key_algorithms_are_read_by_either_name() {
        assert_eq!(key_algorithm("ecdsa-p256"), Some(KeyAlgorithm::EcdsaP256));
        assert_eq!(key_algorithm("ML-DSA-65"), Some(KeyAlgorithm::MlDsa65));
        assert_eq!(
            key_algorithm("MLDSA65-ECDSA-P256-SHA512"),
            Some(KeyAlgorithm::MlDsa65EcdsaP256Sha512)
        );
        assert_eq!(key_algorithm("rsa-1024"), None);
    }

    #[test]
    fn due_when_less_than_a_third_is_left() {
        let t = Utc::now();
        let info = LeafInfo {
            serial: "0a".into(),
            sans: Sans::default(),
            profile: Profile::TlsClient,
            key_algorithm: KeyAlgorithm::EcdsaP256,
            alt_level: None,
            not_before: t,
            not_after: t + TimeDelta::days(30),
        };
        assert!(!info.due(t));
        assert!(!info.due(t + TimeDelta::days(19)));
        assert!(info.due(t + TimeDelta::days(21)));
        assert!(info.due(t + TimeDelta::days(31)));
        assert_eq!(info.requested_ttl_seconds(), 30 * 86_400 - 60);
    }

    #[test]
    fn self_signed_roots_are_left_out_of_proofs() {
        let c = chain(ChainKind::Classical(P256), &ChainSpec::new("R", "I"));
        let pems = without_roots(&[
            c.leaf_der().clone(),
            c.inter_der.clone(),
            c.root_der.clone(),
        ]);
        assert_eq!(pems.len(), 2);
        assert_eq!(
            sigil_pki::pem::decode(&pems[1], &["CERTIFICATE"]).unwrap(),
            c.inter_der
        );
    }

    #[test]
    fn profiles_and_keys_are_read_back_from_the_certificate() {
        let mut spec = ChainSpec::new("R", "I");
        spec.profiles = vec![Profile::TlsServer, Profile::TlsClient, Profile::CodeSigning];
        let c = chain(ChainKind::Classical(P256), &spec);
        for (der, profile) in c.leaf_ders.iter().zip(&spec.profiles) {
            assert_eq!(sigil_pki::profile_of(der).unwrap(), *profile);
        }
        spec.profiles = vec![Profile::SpiffeX509Svid];
        spec.sans = Sans {
            uri: vec![SPIFFE_ID.to_owned()],
            ..Sans::default()
        };
        let svid = chain(ChainKind::Classical(P256), &spec);
        assert_eq!(
            sigil_pki::profile_of(svid.leaf_der()).unwrap(),
            Profile::SpiffeX509Svid
        );
        assert!(
            sigil_pki::profile_of(&c.root_der).is_err(),
            "a CA has no leaf profile"
        );
        assert!(sigil_pki::profile_of(b"not a certificate").is_err());

        let info = LeafInfo::read(c.leaf_der()).unwrap();
        assert_eq!(info.profile, Profile::TlsServer);
        assert_eq!(info.key_algorithm, P256);
        assert_eq!(info.alt_level, None);
        assert_eq!(info.sans, sigil_testkit::pki::test_sans());

        let hybrid = chain(
            ChainKind::Hybrid(P256, MlDsaLevel::L65),
            &ChainSpec::new("R", "I"),
        );
        let info = LeafInfo::read(hybrid.leaf_der()).unwrap();
        assert_eq!(info.alt_level, Some(MlDsaLevel::L65));
        let pq = chain(ChainKind::MlDsa(MlDsaLevel::L44), &ChainSpec::new("R", "I"));
        assert_eq!(
            LeafInfo::read(pq.leaf_der()).unwrap().key_algorithm,
            KeyAlgorithm::MlDsa44
        );
    }
}
