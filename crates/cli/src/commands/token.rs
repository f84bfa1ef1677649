//! `sigil token create`: ask the policy service (as an admin) for a bootstrap token, the
//! one-time proof a workload presents for its first identity (`sigil issue --token`).

use std::time::Duration;

use clap::{Args, Subcommand};
use sigil_contracts::auth::{MAX_TOKEN_USES, TokenCreateRequest, TokenCreateResponse};
use sigil_contracts::subjects::POLICY_TOKEN_CREATE;

use crate::commands::{REQUEST_TIMEOUT, parse_duration, seconds};
use crate::context::GlobalArgs;
use crate::error::CliError;
use crate::output;

/// Bootstrap tokens.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token for one principal and the names it may ask for; prints the token
    /// (a secret: hand it to the one workload it is for)
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Principal the token authenticates, `type:id` (workload, agent, service or admin),
    /// e.g. workload:web
    #[arg(long, value_name = "PRINCIPAL")]
    pub principal: String,

    /// Name pattern the token may ask for; `*` matches any run of characters, e.g.
    /// '*.web.internal' or 'spiffe://prod.example/ns/web/*' (repeatable)
    #[arg(long = "for", value_name = "PATTERN", required = true)]
    pub names: Vec<String>,

    /// How long the token is valid, e.g. 10m, 1h (at most 30 days)
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Duration,

    /// How many requests may use it
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_TOKEN_USES)))]
    pub uses: u32,
}

pub async fn run(global: &GlobalArgs, args: TokenArgs) -> Result<(), CliError> {
    match args.command {
        TokenCommand::Create(a) => create(global, a).await,
    }
}

/// The request for `args` (without its proof).
pub fn request(args: &CreateArgs) -> TokenCreateRequest {
    TokenCreateRequest {
        principal: args.principal.trim().to_owned(),
        names: args.names.iter().map(|n| n.trim().to_owned()).collect(),
        ttl_seconds: seconds(args.ttl),
        uses: args.uses,
        proof: None,
    }
}

async fn create(global: &GlobalArgs, args: CreateArgs) -> Result<(), CliError> {
    let admin = global.admin()?;
    let bus = global.connect().await?;
    let mut req = request(&args);
    admin.prove(POLICY_TOKEN_CREATE, &mut req)?;
    let resp: TokenCreateResponse = bus
        .request(POLICY_TOKEN_CREATE, &req, REQUEST_TIMEOUT)
        .await?;
    let text = if global.json {
        output::json(&resp)?
    } else {
        // The token alone on stdout (`T=$(sigil token create …)`); what it allows on
        // stderr, where it does not get in the way of a pipe.
        eprint!("{}", summary(&resp));
        format!("{}\n", resp.token)
    };
    output::print(&text)
}

/// What the token allows, for people.
pub fn summary(resp: &TokenCreateResponse) -> String {
    let uses = if resp.uses == 1 {
        "once".to_owned()
    } else {
        format!("{} times", resp.uses)
    };
    format!(
        "token {} for {} · names {} · usable {uses} · expires {}\n",
        resp.id,
        resp.principal,
        resp.names.join(", "),
        output::time(resp.expires_at)
    )
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn parse(args: &[&str]) -> Result<CreateArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("sigil").chain(args.iter().copied()))?;
        match cli.command {
            Command::Token(TokenArgs {
                command: TokenCommand::Create(a),
            }) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn arguments_parse_into_a_request() {
        let a = parse(&[
            "token",
            "create",
            "--principal",
            "workload:web",
            "--for",
            "*.web.internal",
            "--for",
            "spiffe://prod/ns/web/*",
            "--ttl",
            "10m",
            "--uses",
            "3",
        ])
        .unwrap();
        let req = request(&a);
        assert_eq!(req.principal, "workload:web");
        assert_eq!(req.names, vec!["*.web.internal", "spiffe://prod/ns/web/*"]);
        assert_eq!(req.ttl_seconds, 600);
        assert_eq!(req.uses, 3);
        assert_eq!(req.proof, None);

        let a = parse(&[
            "token",
            "create",
            "--principal",
            "workload:x",
            "--for",
            "x.internal",
        ])
        .unwrap();
        assert_eq!((a.ttl, a.uses), (Duration::from_secs(3600), 1));
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for bad in [
            vec!["token", "create", "--principal", "workload:web"],
            vec!["token", "create", "--for", "a.internal"],
            vec![
                "token",
                "create",
                "--principal",
                "w:x",
                "--for",
                "a",
                "--uses",
                "0",
            ],
            vec![
                "token",
                "create",
                "--principal",
                "w:x",
                "--for",
                "a",
                "--ttl",
                "soon",
            ],
        ] {
            assert_eq!(parse(&bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn summary_says_what_the_token_allows() {
        let resp = TokenCreateResponse {
            token: "secret".into(),
            id: "7d1c".into(),
            principal: "workload:web".into(),
            names: vec!["*.web.internal".into()],
            uses: 1,
            expires_at: Utc.with_ymd_and_hms(2025, 6, 1, 13, 0, 0).unwrap(),
        };
        let text = summary(&resp);
        assert_eq!(
            text,
            "token 7d1c for workload:web · names *.web.internal · usable once · expires 2025-06-01T13:00:00Z\n"
        );
        assert!(!text.contains("secret"));
    }
}
