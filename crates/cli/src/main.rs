//! `sigil`: the command line of Sigil, the machine-identity platform.
//!
//! `sigil up` runs NATS (when none answers) and all five services in one process;
//! `sigil serve <service>` runs one. Client commands talk to the running services over NATS (request/reply and the
//! `SIGIL_EVENTS` stream): `issue`, `renew`, `ls`, `show`, `revoke`, `events`, `ca`,
//! `policy`, `token`, `audit`. Mutating requests carry a proof of who sends them: a
//! possession proof by the admin credential `sigil up` makes (`<data-dir>/admin.cred`,
//! or `--admin-cred FILE`, see [`context`]), a bootstrap token (`issue --token`), or the
//! credential being renewed (`renew`). `verify` checks a
//! certificate path offline (no NATS). Each lives in its own module under
//! [`commands`]; global options are in [`context`]; errors and the exit-code table in
//! [`error`].
//!
//! Exit codes: 0 ok, 1 other failure, 2 usage, 3 denied by policy, 4 not found,
//! 5 rejected (bad request, too large, conflict; for `verify`: unreadable or malformed
//! input), 6 verification failed (`verify`, `audit verify`), 7 unauthenticated (the
//! request's token or credential was refused), 69 Sigil unavailable.
#![forbid(unsafe_code)]

mod admin;
mod commands;
mod context;
mod error;
mod keys;
mod local_nats;
mod output;
mod services;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::context::GlobalArgs;
use crate::error::CliError;

/// Sigil: issue, track, rotate and revoke machine identities.
#[derive(Debug, Parser)]
#[command(name = "sigil", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run NATS (if none answers) and all five services in this process
    Up(commands::up::UpArgs),
    /// Run one service
    Serve(commands::serve::ServeArgs),
    Issue(commands::issue::IssueArgs),
    /// Renew a certificate by proving possession of its key (same names, new serial)
    Renew(commands::renew::RenewArgs),
    /// Make a key pair and a CSR here (classical, ML-DSA, composite or hybrid); the
    /// private key never leaves this machine
    Csr(commands::csr::CsrArgs),
    Ls(commands::ls::LsArgs),
    Show(commands::show::ShowArgs),
    Revoke(commands::revoke::RevokeArgs),
    Events(commands::events::EventsArgs),
    /// The issuer's certificate authorities: list, or create a new hierarchy
    Ca(commands::ca::CaArgs),
    Verify(commands::verify::VerifyArgs),
    /// Cedar policies: apply, list, show, roll back, dry-run a request, templates
    Policy(commands::policy::PolicyArgs),
    /// Bootstrap tokens: one-time (or N-time) proofs for a workload's first identity
    Token(commands::token::TokenArgs),
    /// The hash-chained audit log: list entries, verify the chain
    Audit(commands::audit::AuditArgs),
    /// Measure a running Sigil (see docs/benchmarks.md)
    Bench(commands::bench::BenchArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; mistakes are usage errors.
            let code = if e.use_stderr() {
                error::EXIT_USAGE
            } else {
                error::EXIT_OK
            };
            e.print().ok();
            return ExitCode::from(code);
        }
    };
    match run(cli).await {
        Ok(()) => ExitCode::from(error::EXIT_OK),
        Err(e) => {
            eprintln!("{}", e.line());
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let global = &cli.global;
    match cli.command {
        Command::Up(args) => commands::up::run(global, args).await,
        Command::Serve(args) => commands::serve::run(global, args).await,
        Command::Issue(args) => commands::issue::run(global, args).await,
        Command::Renew(args) => commands::renew::run(global, args).await,
        Command::Csr(args) => commands::csr::run(global, &args),
        Command::Ls(args) => commands::ls::run(global, args).await,
        Command::Show(args) => commands::show::run(global, args).await,
        Command::Revoke(args) => commands::revoke::run(global, args).await,
        Command::Events(args) => commands::events::run(global, args).await,
        Command::Ca(args) => commands::ca::run(global, args).await,
        Command::Verify(args) => commands::verify::run(global, args),
        Command::Policy(args) => commands::policy::run(global, args).await,
        Command::Token(args) => commands::token::run(global, args).await,
        Command::Audit(args) => commands::audit::run(global, args).await,
        Command::Bench(args) => commands::bench::run(global, args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_are_accepted_anywhere() {
        let cli = Cli::try_parse_from([
            "sigil",
            "--nats",
            "nats://h:4222",
            "ls",
            "--data-dir",
            "/tmp/x",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.global.nats.as_deref(), Some("nats://h:4222"));
        assert_eq!(cli.global.data_dir, std::path::PathBuf::from("/tmp/x"));
        assert!(cli.global.json);
        assert_eq!(cli.global.admin_cred, None);
        assert_eq!(
            cli.global.admin_cred_path(),
            std::path::PathBuf::from("/tmp/x/admin.cred")
        );
        let cli = Cli::try_parse_from([
            "sigil",
            "revoke",
            "0a",
            "--reason",
            "superseded",
            "--admin-cred",
            "/etc/sigil/alice.cred",
        ])
        .unwrap();
        assert_eq!(
            cli.global.admin_cred_path(),
            std::path::PathBuf::from("/etc/sigil/alice.cred")
        );
    }

    #[test]
    fn unknown_commands_and_flags_are_usage_errors() {
        for bad in [
            vec!["sigil"],
            vec!["sigil", "frobnicate"],
            vec!["sigil", "ls", "--bogus"],
        ] {
            let e = Cli::try_parse_from(bad.clone()).unwrap_err();
            assert_eq!(e.exit_code(), error::EXIT_USAGE as i32, "{bad:?}");
        }
    }
}
