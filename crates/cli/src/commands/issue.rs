//! `sigil issue`: get a certificate and write it (with its chain and, for a key the
//! issuer generated, the private key) to files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgGroup, Args};
use sigil_bus::{Bus, ClientError};
use sigil_contracts::MAX_REQUEST_BYTES;
use sigil_contracts::issuer::{IssueRequest, IssueResponse};
use sigil_contracts::subjects::ISSUER_ISSUE;
use sigil_contracts::types::{KeyAlgorithm, Profile, Sans};

use crate::commands::{NameArgs, parse_duration, seconds, wire_enum};
use crate::context::{GlobalArgs, Prover};
use crate::error::CliError;
use crate::output;

/// Timeout of one issue call (server-side RSA key generation can take a while).
const ISSUE_TIMEOUT: Duration = Duration::from_secs(30);
/// Calls made in all when a reply is lost; the idempotency key makes retries safe.
const ATTEMPTS: u32 = 3;

pub const CERT_FILE: &str = "cert.pem";
pub const CHAIN_FILE: &str = "chain.pem";
pub const KEY_FILE: &str = "key.pem";

/// Issue a certificate.
///
/// Without --csr the issuer generates the key and returns it once; it is written to
/// key.pem with mode 0600. With --csr the key never leaves your machine. The request is
/// signed with the admin credential (--admin-cred), or carries a bootstrap token
/// (--token) that policy limits to its names.
#[derive(Debug, Clone, Args)]
#[command(group(
    ArgGroup::new("names").required(true).multiple(true).args(["dns", "ip", "uri", "csr"])
))]
pub struct IssueArgs {
    #[command(flatten)]
    pub names: NameArgs,

    /// Requested lifetime, e.g. 24h, 7d (policy may shorten it)
    #[arg(long, default_value = "24h", value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Duration,

    /// Certificate profile (spiffe-x509-svid: exactly one --uri spiffe://trust-domain/path, no CN)
    #[arg(
        long,
        default_value = "tls-server",
        value_parser = wire_enum::<Profile>(Profile::ALL.iter().map(|p| p.as_str()).collect())
    )]
    pub profile: Profile,

    /// Algorithm of the key the issuer generates [default: the issuer's choice]
    #[arg(
        long = "key-alg",
        value_name = "ALG",
        conflicts_with = "csr",
        value_parser = wire_enum::<KeyAlgorithm>(KeyAlgorithm::ALL.iter().map(|a| a.as_str()).collect())
    )]
    pub key_alg: Option<KeyAlgorithm>,

    /// PEM certificate signing request; the key stays with you
    #[arg(long, value_name = "FILE")]
    pub csr: Option<PathBuf>,

    /// Directory to write cert.pem, chain.pem and key.pem to
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub out: PathBuf,

    /// Idempotency key: repeating a request with the same key never issues twice
    /// [default: a fresh UUID]
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,

    /// Overwrite an existing key.pem
    #[arg(long)]
    pub force: bool,

    /// Bootstrap token (from `sigil token create`) proving who asks, instead of the
    /// admin credential
    #[arg(
        long,
        env = "SIGIL_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// What was written where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub cert: PathBuf,
    pub chain: PathBuf,
    pub key: Option<PathBuf>,
}

pub async fn run(global: &GlobalArgs, args: IssueArgs) -> Result<(), CliError> {
    let key_path = args.out.join(KEY_FILE);
    let server_key = args.csr.is_none();
    if server_key && !args.force && key_path.exists() {
        return Err(CliError::Other(format!(
            "{} already exists; pass --force to overwrite it",
            key_path.display()
        )));
    }
    let prover = match args.token.as_deref().map(str::trim) {
        Some(token) if !token.is_empty() => Prover::Token(token.to_owned()),
        _ => global.admin()?,
    };
    let csr_pem = args.csr.as_deref().map(read_csr).transpose()?;
    let mut req = request(&args, csr_pem);
    let bus = global.connect().await?;
    let resp = issue(&bus, &prover, &mut req).await?;
    let key = match (server_key, resp.private_key_pem.as_deref()) {
        (true, Some(key)) => Some(key),
        (true, None) => {
            return Err(CliError::Other(format!(
                "certificate {} was issued but its private key did not reach this client \
                 (the issuer hands it out only once); revoke it with `sigil revoke {} \
                 --reason superseded` and issue again",
                resp.serial, resp.serial
            )));
        }
        (false, _) => None,
    };
    let written = write_outputs(&args.out, &resp, key, args.force)?;
    let text = if global.json {
        output::json(&without_key(resp))?
    } else {
        summary(&resp, &req.sans, &written)
    };
    output::print(&text)
}

/// The request for `args`; always with an idempotency key, so a retry is safe.
pub fn request(args: &IssueArgs, csr_pem: Option<String>) -> IssueRequest {
    IssueRequest {
        idempotency_key: Some(
            args.idempotency_key
                .clone()
                .filter(|k| !k.trim().is_empty())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        ),
        profile: args.profile,
        sans: args.names.sans(),
        ttl_seconds: seconds(args.ttl),
        key_algorithm: if csr_pem.is_some() {
            None
        } else {
            args.key_alg
        },
        csr_pem,
        proof: None,
    }
}

/// Call the issuer with a fresh proof by `prover`, retrying with the same idempotency
/// key (and a new proof: a possession proof's nonce is single use) when a reply is
/// lost. A retry of a request that was issued gets the recorded answer.
pub async fn issue(
    bus: &Bus,
    prover: &Prover,
    req: &mut IssueRequest,
) -> Result<IssueResponse, CliError> {
    let mut attempt = 1;
    loop {
        prover.prove(ISSUER_ISSUE, req)?;
        match bus.request(ISSUER_ISSUE, &*req, ISSUE_TIMEOUT).await {
            Err(ClientError::TimedOut { .. } | ClientError::Transport { .. })
                if attempt < ATTEMPTS =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return Ok(other?),
        }
    }
}

fn read_csr(path: &Path) -> Result<String, CliError> {
    let meta = std::fs::metadata(path).map_err(|e| CliError::io(path, e))?;
    if meta.len() > MAX_REQUEST_BYTES as u64 {
        return Err(CliError::Other(format!(
            "{}: {} bytes is too large for a CSR",
            path.display(),
            meta.len()
        )));
    }
    let pem = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
    if !pem.contains("-----BEGIN CERTIFICATE REQUEST-----")
        && !pem.contains("-----BEGIN NEW CERTIFICATE REQUEST-----")
    {
        return Err(CliError::Other(format!(
            "{}: not a PEM certificate signing request",
            path.display()
        )));
    }
    Ok(pem)
}

/// The reply as printed with --json: everything but the private key.
pub fn without_key(mut resp: IssueResponse) -> IssueResponse {
    resp.private_key_pem = None;
    resp
}

/// Write key.pem (mode 0600, only if absent unless `force`), cert.pem and chain.pem.
/// The key goes first: it is the one thing a retry cannot get back.
pub fn write_outputs(
    out: &Path,
    resp: &IssueResponse,
    key: Option<&str>,
    force: bool,
) -> Result<Written, CliError> {
    std::fs::create_dir_all(out).map_err(|e| CliError::io(out, e))?;
    let key = match key {
        Some(pem) => {
            let path = out.join(KEY_FILE);
            write_file(&path, pem.as_bytes(), 0o600, force)?;
            Some(path)
        }
        None => None,
    };
    let cert = out.join(CERT_FILE);
    write_file(
        &cert,
        with_newline(&resp.certificate_pem).as_bytes(),
        0o644,
        true,
    )?;
    let chain = out.join(CHAIN_FILE);
    let chain_pem: String = resp.chain_pem.iter().map(|c| with_newline(c)).collect();
    write_file(&chain, chain_pem.as_bytes(), 0o644, true)?;
    Ok(Written { cert, chain, key })
}

fn with_newline(pem: &str) -> String {
    if pem.ends_with('\n') {
        pem.to_owned()
    } else {
        format!("{pem}\n")
    }
}

/// Write `contents` to `path` atomically: into a new temporary file created with
/// `mode` from the start, then renamed into place (or hard-linked, which fails if
/// `path` exists, when `overwrite` is false).
pub(crate) fn write_file(
    path: &Path,
    contents: &[u8],
    mode: u32,
    overwrite: bool,
) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = write_new(&tmp, contents, mode).and_then(|()| {
        if overwrite {
            std::fs::rename(&tmp, path)
        } else {
            std::fs::hard_link(&tmp, path).and_then(|()| std::fs::remove_file(&tmp))
        }
    });
    result.map_err(|e| {
        std::fs::remove_file(&tmp).ok();
        CliError::io(path, e)
    })
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// The human summary.
pub fn summary(resp: &IssueResponse, sans: &Sans, written: &Written) -> String {
    let mut rows = vec![
        ("serial", resp.serial.clone()),
        ("sans", sans.values().join(", ")),
        ("not before", output::time(resp.not_before)),
        ("not after", output::time(resp.not_after)),
        (
            "lifetime",
            output::span(chrono::TimeDelta::seconds(resp.ttl_seconds)),
        ),
        ("certificate", written.cert.display().to_string()),
        ("chain", written.chain.display().to_string()),
        (
            "private key",
            written
                .key
                .as_ref()
                .map(|k| format!("{} (mode 0600)", k.display()))
                .unwrap_or_default(),
        ),
    ];
    for note in &resp.notes {
        rows.push(("note", note.clone()));
    }
    output::key_values(&rows)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn parse(args: &[&str]) -> Result<IssueArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("sigil").chain(args.iter().copied()))?;
        match cli.command {
            Command::Issue(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn response() -> IssueResponse {
        let t = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
        IssueResponse {
            serial: "7f01".into(),
            certificate_pem: "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----".into(),
            chain_pem: vec![
                "-----BEGIN CERTIFICATE-----\nISSUING\n-----END CERTIFICATE-----\n".into(),
                "-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n".into(),
            ],
            kind: sigil_contracts::types::CaKind::Hybrid,
            private_key_pem: Some(
                "-----BEGIN PRIVATE KEY-----\nK\n-----END PRIVATE KEY-----\n".into(),
            ),
            not_before: t,
            not_after: t + chrono::TimeDelta::hours(24),
            ttl_seconds: 86_400,
            notes: vec!["lifetime clamped to 24h".into()],
        }
    }

    #[test]
    fn arguments_parse_into_a_request() {
        let args = parse(&[
            "issue",
            "--dns",
            "a.example.com",
            "--dns",
            "b.example.com",
            "--ip",
            "10.0.0.1",
            "--uri",
            "spiffe://example.org/api",
            "--ttl",
            "7d",
            "--profile",
            "tls-client",
            "--key-alg",
            "ed25519",
            "--idempotency-key",
            "k1",
        ])
        .unwrap();
        let req = request(&args, None);
        assert_eq!(req.idempotency_key.as_deref(), Some("k1"));
        assert_eq!(req.sans.dns, vec!["a.example.com", "b.example.com"]);
        assert_eq!(
            req.sans.ip,
            vec!["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(req.sans.uri, vec!["spiffe://example.org/api"]);
        assert_eq!(req.ttl_seconds, 7 * 86_400);
        assert_eq!(req.profile, Profile::TlsClient);
        assert_eq!(req.key_algorithm, Some(KeyAlgorithm::Ed25519));
        assert_eq!(req.csr_pem, None);
        assert_eq!(args.out, PathBuf::from("."));
        assert!(!args.force);
        assert_eq!(req.proof, None, "the proof is made just before sending");
        let args = parse(&["issue", "--dns", "a.web.internal", "--token", "eyJ.x.y"]).unwrap();
        assert_eq!(args.token.as_deref(), Some("eyJ.x.y"));
    }

    #[test]
    fn defaults_and_generated_idempotency_keys() {
        let args = parse(&["issue", "--dns", "a.example.com"]).unwrap();
        assert_eq!(args.ttl, Duration::from_secs(86_400));
        assert_eq!(args.profile, Profile::TlsServer);
        assert_eq!(args.key_alg, None);
        let a = request(&args, None).idempotency_key.unwrap();
        let b = request(&args, None).idempotency_key.unwrap();
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
        assert_ne!(a, b, "each invocation gets its own key");
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        use clap::error::ErrorKind;
        for bad in [
            vec!["issue"],
            vec!["issue", "--dns", "a", "--ttl", "soon"],
            vec!["issue", "--dns", "a", "--ttl", "0s"],
            vec!["issue", "--dns", "a", "--profile", "email-protection"],
            vec!["issue", "--dns", "a", "--key-alg", "dsa"],
            vec!["issue", "--ip", "not-an-ip"],
            vec!["issue", "--csr", "x.csr", "--key-alg", "ed25519"],
        ] {
            let e = parse(&bad).unwrap_err();
            assert_ne!(e.kind(), ErrorKind::DisplayHelp, "{bad:?}");
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
        // A CSR alone names the identity.
        assert!(parse(&["issue", "--csr", "x.csr"]).is_ok());
    }

    #[test]
    fn files_are_written_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("certs");
        let resp = response();
        let written = write_outputs(&out, &resp, resp.private_key_pem.as_deref(), false).unwrap();
        let cert = std::fs::read_to_string(&written.cert).unwrap();
        assert!(cert.ends_with("-----END CERTIFICATE-----\n"));
        let chain = std::fs::read_to_string(&written.chain).unwrap();
        assert!(
            chain.find("ISSUING").unwrap() < chain.find("ROOT").unwrap(),
            "root last"
        );
        let key_path = written.key.clone().unwrap();
        assert_eq!(
            std::fs::read_to_string(&key_path).unwrap(),
            resp.private_key_pem.clone().unwrap()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }

        // An existing key is never overwritten without --force...
        let e = write_outputs(&out, &resp, Some("NEW KEY"), false).unwrap_err();
        assert!(matches!(e, CliError::Io { .. }), "{e:?}");
        assert_eq!(
            std::fs::read_to_string(&key_path).unwrap(),
            resp.private_key_pem.clone().unwrap()
        );
        // ...and replaced, still 0600, with it.
        write_outputs(&out, &resp, Some("NEW KEY"), true).unwrap();
        assert_eq!(std::fs::read_to_string(&key_path).unwrap(), "NEW KEY");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn json_output_never_carries_the_key() {
        let json = output::json(&without_key(response())).unwrap();
        assert!(!json.contains("PRIVATE KEY"), "{json}");
        assert!(!json.contains("private_key_pem"), "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["serial"], "7f01");
        assert_eq!(v["chain_pem"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn summary_names_serial_files_and_notes() {
        let written = Written {
            cert: PathBuf::from("./cert.pem"),
            chain: PathBuf::from("./chain.pem"),
            key: Some(PathBuf::from("./key.pem")),
        };
        let sans = Sans {
            dns: vec!["a.example.com".into()],
            ..Sans::default()
        };
        let text = summary(&response(), &sans, &written);
        assert_eq!(
            text,
            "serial       7f01\n\
             sans         a.example.com\n\
             not before   2025-06-01T12:00:00Z\n\
             not after    2025-06-02T12:00:00Z\n\
             lifetime     1d\n\
             certificate  ./cert.pem\n\
             chain        ./chain.pem\n\
             private key  ./key.pem (mode 0600)\n\
             note         lifetime clamped to 24h\n"
        );
    }
}
