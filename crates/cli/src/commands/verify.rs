//! `sigil verify`: check every signature on a certificate's path to a trusted root —
//! classical, alternative (Catalyst), composite and pure ML-DSA — offline.
//!
//! This is a thin shell over [`sigil_pki::verify_chain`], the library relying parties
//! (and the renewal agent) call directly: here we only read the PEM files, decide
//! what is trusted, and print the [`VerifyReport`]. It never connects to NATS.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::Args;
use sigil_pki::{VerifyReport, verify_chain};
use x509_parser::pem::Pem;

use crate::context::GlobalArgs;
use crate::error::CliError;
use crate::output;

/// Largest PEM file read (far more than any real chain).
pub const MAX_PEM_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Check every signature on a certificate's path to a trusted root.
///
/// Classical, alternative (altSignatureValue), composite and pure ML-DSA signatures
/// are all checked, as are validity at the current time and each issuer's CA
/// constraints; revocation is not. One row per check is printed, then a summary.
/// Does not contact Sigil.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Trust: with --roots, only those certificates are trusted. Without --roots, the last \
certificate of --chain is trusted when it is self-signed (chain.pem as written by \
`sigil issue` holds the issuing intermediate, then the root); otherwise there is no \
trust anchor and the command fails.

Exit codes: 0 every check passed, 6 a check failed (or no path to a root), 5 an \
input file is unreadable or malformed, 2 usage (including no trust anchor).")]
pub struct VerifyArgs {
    /// The certificate to check (PEM; further certificates in the file are used as
    /// intermediates)
    #[arg(value_name = "CERT.pem")]
    pub cert: PathBuf,

    /// Intermediate certificates (PEM, one or more, any order)
    #[arg(long, value_name = "CHAIN.pem")]
    pub chain: Option<PathBuf>,

    /// Trusted root certificates (PEM, one or more) [default: the last certificate
    /// of --chain, if self-signed]
    #[arg(long, value_name = "ROOTS.pem")]
    pub roots: Option<PathBuf>,
}

pub fn run(global: &GlobalArgs, args: VerifyArgs) -> Result<(), CliError> {
    let inputs = Inputs::read(&args)?;
    let report = inputs.verify(Utc::now());
    let text = if global.json {
        output::json(&report)?
    } else {
        let mut text = table(&report);
        text.push_str(&summary(&report));
        text
    };
    output::print(&text)?;
    if report.ok {
        return Ok(());
    }
    Err(CliError::VerifyFailed {
        failed: report.checks.iter().filter(|c| !c.ok).count(),
        total: report.checks.len(),
    })
}

/// The certificates to verify, as DER, with the trust decision made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub leaf: Vec<u8>,
    pub intermediates: Vec<Vec<u8>>,
    pub roots: Vec<Vec<u8>>,
}

impl Inputs {
    /// Reads the files named by `args` and decides the trust anchors (see
    /// [`Inputs::from_certs`]).
    pub fn read(args: &VerifyArgs) -> Result<Inputs, CliError> {
        let cert = read_certs(&args.cert)?;
        let chain = args.chain.as_deref().map(read_certs).transpose()?;
        let roots = args.roots.as_deref().map(read_certs).transpose()?;
        Inputs::from_certs(cert, chain, roots)
    }

    /// `cert`: the leaf, then any extra intermediates. With `roots`, everything in
    /// `chain` is an intermediate; without, the last certificate of `chain` is the
    /// root and must be self-signed ([`CliError::Usage`] otherwise). Every certificate
    /// must already have parsed (see [`read_certs`]).
    pub fn from_certs(
        cert: Vec<Vec<u8>>,
        chain: Option<Vec<Vec<u8>>>,
        roots: Option<Vec<Vec<u8>>>,
    ) -> Result<Inputs, CliError> {
        let mut cert = cert.into_iter();
        let leaf = cert
            .next()
            .ok_or_else(|| CliError::Other("no certificate to verify".to_owned()))?;
        let mut intermediates: Vec<Vec<u8>> = cert.collect();
        let mut chain = chain.unwrap_or_default();
        let roots = match roots {
            Some(roots) => roots,
            None => match chain.pop() {
                Some(last) if is_self_signed(&last) => vec![last],
                Some(_) => {
                    return Err(CliError::Usage(
                        "no trust anchor: the last certificate of --chain is not self-signed; \
                         pass --roots ROOTS.pem"
                            .to_owned(),
                    ));
                }
                None => {
                    return Err(CliError::Usage(
                        "no trust anchor: pass --roots ROOTS.pem, or a --chain ending in a \
                         self-signed root"
                            .to_owned(),
                    ));
                }
            },
        };
        intermediates.extend(chain);
        Ok(Inputs {
            leaf,
            intermediates,
            roots,
        })
    }

    pub fn verify(&self, now: DateTime<Utc>) -> VerifyReport {
        verify_chain(&self.leaf, &self.intermediates, &self.roots, now)
    }
}

/// Every `CERTIFICATE` block of a PEM file, as DER, each checked to parse as X.509.
/// Other blocks (keys, CSRs) are skipped. A file that cannot be read, holds no
/// certificate, or holds a broken block is [`CliError::BadInput`].
pub fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>, CliError> {
    let bad = |reason: String| CliError::bad_input(path, reason);
    let size = std::fs::metadata(path)
        .map_err(|e| bad(e.to_string()))?
        .len();
    if size > MAX_PEM_FILE_BYTES {
        return Err(bad(format!(
            "larger than {MAX_PEM_FILE_BYTES} bytes; not a certificate file"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut certs = Vec::new();
    for (i, block) in Pem::iter_from_buffer(&bytes).enumerate() {
        let pem = block.map_err(|e| bad(format!("PEM block #{}: {e}", i + 1)))?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        match x509_parser::parse_x509_certificate(&pem.contents) {
            Ok(([], _)) => certs.push(pem.contents),
            Ok(_) => {
                return Err(bad(format!(
                    "certificate #{}: trailing bytes after the certificate",
                    certs.len() + 1
                )));
            }
            Err(e) => {
                return Err(bad(format!(
                    "certificate #{} is not valid X.509: {e}",
                    certs.len() + 1
                )));
            }
        }
    }
    if certs.is_empty() {
        return Err(bad("no PEM CERTIFICATE block".to_owned()));
    }
    Ok(certs)
}

/// Issuer name = subject name. (Whether its signature holds is checked with the rest.)
fn is_self_signed(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.subject().as_raw() == c.issuer().as_raw())
        .unwrap_or(false)
}

/// CERT | KIND | ALGORITHM | RESULT | DETAIL, one row per check, without borders.
pub fn table(report: &VerifyReport) -> String {
    output::plain_table(
        ["CERT", "KIND", "ALGORITHM", "RESULT", "DETAIL"],
        report.checks.iter().map(|check| {
            [
                check.subject.clone(),
                check.kind.as_str().to_owned(),
                check.algorithm.clone(),
                if check.ok { "✓" } else { "✗" }.to_owned(),
                check.detail.clone().unwrap_or_default(),
            ]
        }),
    )
}

/// One line: `OK: all N checks passed` or `FAILED: n of N checks failed (kinds)`.
pub fn summary(report: &VerifyReport) -> String {
    let total = report.checks.len();
    let failed: Vec<_> = report.checks.iter().filter(|c| !c.ok).collect();
    if report.ok {
        return format!("OK: all {total} checks passed\n");
    }
    if failed.is_empty() {
        // Cannot happen with verify_chain (no path is itself a failed check), but the
        // report says not ok, so say so.
        return format!("FAILED: no path to a trusted root ({total} checks)\n");
    }
    let mut kinds: Vec<&str> = failed.iter().map(|c| c.kind.as_str()).collect();
    kinds.dedup();
    format!(
        "FAILED: {} of {total} checks failed ({})\n",
        failed.len(),
        kinds.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use clap::Parser;
    use sigil_contracts::types::KeyAlgorithm;
    use sigil_pki::{SignatureKind, create_intermediate, create_root};

    use super::*;
    use crate::{Cli, Command};

    #[test]
    fn cert_is_positional_and_json_is_global() {
        let cli = Cli::try_parse_from([
            "sigil",
            "verify",
            "cert.pem",
            "--chain",
            "chain.pem",
            "--json",
        ])
        .unwrap();
        assert!(cli.global.json);
        match cli.command {
            Command::Verify(a) => {
                assert_eq!(a.cert, PathBuf::from("cert.pem"));
                assert_eq!(a.chain, Some(PathBuf::from("chain.pem")));
                assert_eq!(a.roots, None);
            }
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(
            Cli::try_parse_from(["sigil", "verify"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn trust_comes_from_roots_or_a_self_signed_end_of_chain() {
        let t = Utc::now();
        let root = create_root("Root", KeyAlgorithm::EcdsaP256, t, t + Duration::days(2)).unwrap();
        let inter = create_intermediate(
            &root,
            "Issuing",
            KeyAlgorithm::EcdsaP256,
            t,
            t + Duration::days(1),
        )
        .unwrap();
        let (r, i) = (root.cert_der.clone(), inter.cert_der.clone());

        let inputs =
            Inputs::from_certs(vec![i.clone()], Some(vec![i.clone(), r.clone()]), None).unwrap();
        assert_eq!(inputs.roots, vec![r.clone()]);
        assert_eq!(inputs.intermediates, vec![i.clone()]);

        // --roots wins; the chain is all intermediates.
        let inputs = Inputs::from_certs(
            vec![i.clone()],
            Some(vec![i.clone(), r.clone()]),
            Some(vec![r.clone()]),
        )
        .unwrap();
        assert_eq!(inputs.intermediates.len(), 2);

        // No anchor at all, or a chain not ending in a self-signed certificate: usage.
        for chain in [None, Some(vec![i.clone()])] {
            let e = Inputs::from_certs(vec![i.clone()], chain, None).unwrap_err();
            assert_eq!(e.exit_code(), crate::error::EXIT_USAGE, "{e}");
            assert!(e.line().contains("no trust anchor"), "{}", e.line());
        }
    }

    #[test]
    fn table_and_summary_show_each_check() {
        let t = Utc::now();
        let root = create_root("Root", KeyAlgorithm::EcdsaP256, t, t + Duration::days(2)).unwrap();
        let report = verify_chain(
            &root.cert_der,
            &[],
            std::slice::from_ref(&root.cert_der),
            t + Duration::hours(1),
        );
        assert!(report.ok, "{report:#?}");
        let text = table(&report);
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        for column in ["CERT", "KIND", "ALGORITHM", "RESULT", "DETAIL"] {
            assert!(header.contains(column), "{header}");
        }
        assert!(text.contains("classical") && text.contains("✓"), "{text}");
        assert_eq!(
            summary(&report),
            format!("OK: all {} checks passed\n", report.checks.len())
        );

        let mut failed = report.clone();
        failed.ok = false;
        failed.checks[0].ok = false;
        assert!(table(&failed).contains("✗"));
        let kind = failed.checks[0].kind;
        assert_ne!(kind, SignatureKind::Path);
        assert_eq!(
            summary(&failed),
            format!(
                "FAILED: 1 of {} checks failed ({kind})\n",
                failed.checks.len()
            )
        );
    }

    #[test]
    fn unreadable_and_malformed_files_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, b"\x00\xffnot a certificate\n").unwrap();
        let bad_b64 = dir.path().join("bad-b64.pem");
        std::fs::write(
            &bad_b64,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let bad_der = dir.path().join("bad-der.pem");
        std::fs::write(
            &bad_der,
            "-----BEGIN CERTIFICATE-----\nAAECAw==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for path in [missing, garbage, bad_b64, bad_der] {
            let e = read_certs(&path).unwrap_err();
            assert_eq!(e.exit_code(), crate::error::EXIT_REJECTED, "{e}");
            assert!(
                e.line().contains(&*path.display().to_string()),
                "{}",
                e.line()
            );
        }
    }
}
