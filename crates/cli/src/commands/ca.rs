//! `sigil ca`: the issuer's CA hierarchy — list it, or create a new one of a kind.

use clap::{Args, Subcommand};
use sigil_contracts::issuer::{CaInfo, CaInitRequest, CaListRequest, CaListResponse};
use sigil_contracts::subjects::{ISSUER_CA_INIT, ISSUER_CA_LIST};
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
    let bus = global.connect().await?;
    let resp: CaListResponse = match args.command {
        CaCommand::Ls => {
            bus.request(ISSUER_CA_LIST, &CaListRequest {}, REQUEST_TIMEOUT)
                .await?
        }
        CaCommand::Init(a) => {
            let req = CaInitRequest {
                kind: a.kind,
                algorithm: a.algorithm,
                force: a.force,
            };
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
        ["", "ROLE", "KIND", "ALGORITHMS", "SUBJECT", "NOT AFTER"],
        cas.iter().map(|ca| {
            [
                if ca.active { "*" } else { "" }.to_owned(),
                ca.role.as_str().to_owned(),
                ca.kind.as_str().to_owned(),
                ca.algorithms.join(" + "),
                ca.subject.clone(),
                output::time(ca.not_after),
            ]
        }),
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
        };
        let t = table(&[ca]);
        assert!(t.lines().next().unwrap().starts_with("   ROLE") || t.contains("ROLE"));
        assert!(t.contains("hybrid"));
        assert!(t.contains("ecdsa-p256 + ML-DSA-65"));
        assert!(t.lines().nth(1).unwrap().starts_with('*'));
    }
}
