//! `sigil ca`: the issuer's CA hierarchy — list it, create a new one of a kind, rotate
//! the intermediate through current/next slots, fetch the trust bundle.

use clap::{Args, Subcommand};
use std::path::PathBuf;

use sigil_contracts::issuer::{
    CaInfo, CaInitRequest, CaListRequest, CaListResponse, CaRotateRequest, CaRotateResponse,
    RotateStep, TrustBundle, TrustBundleRequest,
};
use sigil_contracts::subjects::{
    ISSUER_CA_INIT, ISSUER_CA_LIST, ISSUER_CA_ROTATE, ISSUER_TRUST_BUNDLE,
};
use sigil_contracts::types::CaKind;

use crate::commands::{REQUEST_TIMEOUT, wire_enum};
use crate::context::GlobalArgs;
use crate::error::CliError;
use crate::output;

/// Manage the issuer's certificate authorities.
#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(subcommand)]
    pub command: CaCommand,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// List CAs with kind, algorithms and validity
    Ls,
    /// Create a new root and intermediate of a kind and make them active
    Init(CaInitArgs),
    /// Rotate the intermediate: prepare the next one, publish the bundle with both,
    /// activate it (the old one is kept for CRL signing until its last leaf expires)
    Rotate(CaRotateArgs),
    /// Show the trust bundle (roots and intermediates relying parties should trust)
    Bundle(CaBundleArgs),
}

#[derive(Debug, Args)]
pub struct CaRotateArgs {
    /// prepare (create the next intermediate), activate (make it current) or auto (both)
    #[arg(long, default_value = "auto", value_parser = wire_enum::<RotateStep>(RotateStep::ALL.iter().map(|s| s.as_str()).collect()))]
    pub step: RotateStep,
}

#[derive(Debug, Args)]
pub struct CaBundleArgs {
    /// Write the roots and intermediates as one PEM file instead of printing a table
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CaInitArgs {
    /// classical (ECDSA), hybrid (ECDSA + ML-DSA alternative signatures), composite
    /// (ML-DSA + ECDSA/Ed25519 in one signature) or mldsa (pure ML-DSA, RFC 9881)
    #[arg(long, value_parser = wire_enum::<CaKind>(CaKind::ALL.iter().map(|k| k.as_str()).collect()))]
    pub kind: CaKind,
    /// Algorithm within the kind: p256, p384 (classical); p256+mldsa65 (hybrid);
    /// MLDSA65-ECDSA-P256-SHA512, MLDSA44-Ed25519-SHA512, MLDSA87-ECDSA-P384-SHA512 …
    /// (composite); mldsa44, mldsa65, mldsa87 (mldsa) [default: the kind's default]
    #[arg(long = "alg", value_name = "ALG")]
    pub algorithm: Option<String>,
    /// Replace an active hierarchy (the old CAs are kept, inactive)
    #[arg(long)]
    pub force: bool,
}

pub async fn run(global: &GlobalArgs, args: CaArgs) -> Result<(), CliError> {
    let resp: CaListResponse = match args.command {
        CaCommand::Rotate(a) => {
            // Changing the hierarchy is an admin action: the credential is read before
            // anything goes on the wire.
            let admin = global.admin()?;
            let bus = global.connect().await?;
            let mut req = CaRotateRequest {
                step: a.step,
                proof: None,
            };
            admin.prove(ISSUER_CA_ROTATE, &mut req)?;
            let resp: CaRotateResponse =
                bus.request(ISSUER_CA_ROTATE, &req, REQUEST_TIMEOUT).await?;
            let text = if global.json {
                output::json(&resp)?
            } else {
                let cas: Vec<CaInfo> = [Some(resp.current), resp.next, resp.retired]
                    .into_iter()
                    .flatten()
                    .collect();
                format!(
                    "{}\ntrust bundle version {}: {} root(s), {} intermediate(s)",
                    table(&cas),
                    resp.bundle.version,
                    resp.bundle.roots.len(),
                    resp.bundle.intermediates.len()
                )
            };
            return output::print(&text);
        }
        CaCommand::Bundle(a) => {
            let bus = global.connect().await?;
            let bundle: TrustBundle = bus
                .request(ISSUER_TRUST_BUNDLE, &TrustBundleRequest {}, REQUEST_TIMEOUT)
                .await?;
            if let Some(path) = a.out {
                std::fs::write(&path, bundle_pem(&bundle)).map_err(|e| CliError::io(&path, e))?;
                return output::print(&format!(
                    "wrote trust bundle version {} to {}",
                    bundle.version,
                    path.display()
                ));
            }
            let text = if global.json {
                output::json(&bundle)?
            } else {
                bundle_table(&bundle)
            };
            return output::print(&text);
        }
        CaCommand::Ls => {
            let bus = global.connect().await?;
            bus.request(ISSUER_CA_LIST, &CaListRequest {}, REQUEST_TIMEOUT)
                .await?
        }
        CaCommand::Init(a) => {
            let admin = global.admin()?;
            let bus = global.connect().await?;
            let mut req = CaInitRequest {
                kind: a.kind,
                algorithm: a.algorithm,
                force: a.force,
                proof: None,
            };
            admin.prove(ISSUER_CA_INIT, &mut req)?;
            bus.request(ISSUER_CA_INIT, &req, REQUEST_TIMEOUT).await?
        }
    };
    let text = if global.json {
        output::json(&resp.cas)?
    } else {
        table(&resp.cas)
    };
    output::print(&text)
}

/// One row per CA: active ones marked with `*`.
pub fn table(cas: &[CaInfo]) -> String {
    output::plain_table(
        [
            "",
            "ROLE",
            "STATE",
            "KIND",
            "ALGORITHMS",
            "SUBJECT",
            "NOT AFTER",
            "RETIRE UNTIL",
        ],
        cas.iter().map(|ca| {
            [
                if ca.active { "*" } else { "" }.to_owned(),
                ca.role.as_str().to_owned(),
                ca.state.map(|s| s.as_str()).unwrap_or("-").to_owned(),
                ca.kind.as_str().to_owned(),
                ca.algorithms.join(" + "),
                ca.subject.clone(),
                output::time(ca.not_after),
                ca.retire_until.map(output::time).unwrap_or_default(),
            ]
        }),
    )
}

/// Roots, then intermediates, as one PEM file.
pub fn bundle_pem(bundle: &TrustBundle) -> String {
    let mut out = String::new();
    for pem in bundle.roots.iter().chain(&bundle.intermediates) {
        out.push_str(pem.trim_end());
        out.push('\n');
    }
    out
}

/// One row per certificate of the bundle, with subject and validity.
pub fn bundle_table(bundle: &TrustBundle) -> String {
    let rows = bundle
        .roots
        .iter()
        .map(|p| ("root", p))
        .chain(bundle.intermediates.iter().map(|p| ("intermediate", p)))
        .map(|(role, pem)| {
            let facts = sigil_pki::pem::decode(pem, &["CERTIFICATE"])
                .ok()
                .and_then(|der| {
                    sigil_pki::certificate_facts(&der, sigil_contracts::types::Profile::TlsServer)
                        .ok()
                });
            [
                role.to_owned(),
                facts
                    .as_ref()
                    .map(|f| f.subject.clone())
                    .unwrap_or_default(),
                facts
                    .as_ref()
                    .map(|f| output::time(f.not_after))
                    .unwrap_or_default(),
            ]
        });
    format!(
        "trust bundle version {} ({})\n{}",
        bundle.version,
        bundle.kind.as_str(),
        output::plain_table(["ROLE", "SUBJECT", "NOT AFTER"], rows)
    )
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use sigil_contracts::issuer::CaRole;

    use super::*;

    #[test]
    fn table_lists_kind_and_algorithms() {
        let ca = CaInfo {
            id: "1".into(),
            role: CaRole::Intermediate,
            kind: CaKind::Hybrid,
            algorithms: vec!["ecdsa-p256".into(), "ML-DSA-65".into()],
            subject: "CN=Sigil Intermediate CA".into(),
            not_before: Utc::now(),
            not_after: Utc::now(),
            active: true,
            certificate_pem: String::new(),
            state: Some(sigil_contracts::issuer::CaState::Current),
            retire_until: None,
        };
        let t = table(&[ca]);
        assert!(t.lines().next().unwrap().starts_with("   ROLE") || t.contains("ROLE"));
        assert!(t.contains("hybrid"));
        assert!(t.contains("ecdsa-p256 + ML-DSA-65"));
        assert!(t.lines().nth(1).unwrap().starts_with('*'));
        assert!(t.contains("current"));
    }

    #[test]
    fn bundle_pem_lists_roots_then_intermediates() {
        let bundle = TrustBundle {
            version: 3,
            kind: CaKind::Classical,
            roots: vec!["R\n".into()],
            intermediates: vec!["I1".into(), "I2\n".into()],
        };
        assert_eq!(bundle_pem(&bundle), "R\nI1\nI2\n");
        assert!(bundle_table(&bundle).starts_with("trust bundle version 3 (classical)"));
    }
}
