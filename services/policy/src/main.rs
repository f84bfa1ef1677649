//! `sigil-policy` binary: reads its configuration from the environment and runs the
//! policy service until Ctrl-C or SIGTERM; or, with `mint-token`, mints a bootstrap
//! token straight from the policy database and exits.
//!
//! Environment (besides the common `SIGIL_NATS_URL` and `SIGIL_HTTP_ADDR`, see
//! [`sigil_bus::launch`]):
//! - `SIGIL_DATABASE_URL`: the policy database (default `sqlite://.sigil/policy.db`)
//! - `SIGIL_POLICY_FILE`: Cedar policies stored as version 1 when the database holds
//!   none (the built-in default set when unset); later versions come from
//!   `sigil policy apply`
//! - `SIGIL_POLICY_ENTITIES`: a Cedar entities JSON file (group memberships) to go with it
//! - `SIGIL_POLICY_RELOAD`: fallback poll interval of the active version, e.g. `2s`
//! - `SIGIL_POLICY_AUTH_TIMEOUT`: how long authentication waits for the issuer and the
//!   revocation service, e.g. `3s`
//! - `SIGIL_ALLOW_ANONYMOUS`: `true` decides requests without proof as `anonymous`
//!   instead of refusing them. Turns authentication off: tests and throwaway setups only.
//!
//! `sigil-policy mint-token --principal admin:admin --name 'spiffe://sigil.admin/admin/*'
//! [--name PATTERN]… [--ttl 10m] [--uses 1] [--json]` mints the first token of an
//! installation that has no credential yet (e.g. run inside a policy pod on
//! Kubernetes): it opens the policy database of `SIGIL_DATABASE_URL` directly, needs no
//! NATS, appends a `token_created` row to the audit log and prints the token (with
//! `--json`, the whole `TokenCreateResponse`).
//!
//! Invalid seed policies or settings exit with 78 before anything is connected; a bad
//! command line exits with 64.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use sigil_bus::launch;
use sigil_policy::{Compiled, Config};

const NAME: &str = "sigil-policy";
/// Exit code of a bad command line (BSD `EX_USAGE`).
const EX_USAGE: u8 = 64;
/// Lifetime of a token from `mint-token` without `--ttl`.
const DEFAULT_MINT_TTL: Duration = Duration::from_secs(600);

const USAGE: &str = "usage: sigil-policy                 serve the policy service (configured by SIGIL_* variables)
       sigil-policy mint-token --principal TYPE:ID --name PATTERN [--name PATTERN]... [--ttl 10m] [--uses 1] [--json]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        Some("mint-token") => return mint_token(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => return usage_error(&format!("unknown command {other:?}")),
    }
    match config_from_env() {
        Ok(config) => launch::main(NAME, move |rt, shutdown| {
            sigil_policy::run(config, rt, shutdown)
        }),
        Err(e) => launch::config_error(NAME, e),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("{NAME}: {msg}\n{USAGE}");
    ExitCode::from(EX_USAGE)
}

/// What `mint-token` was asked for.
#[derive(Debug, PartialEq)]
struct MintArgs {
    principal: String,
    names: Vec<String>,
    ttl: Duration,
    uses: u32,
    json: bool,
}

fn parse_mint_args(args: &[String]) -> Result<MintArgs, String> {
    let mut principal = None;
    let mut names = Vec::new();
    let mut ttl = DEFAULT_MINT_TTL;
    let mut uses = 1;
    let mut json = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        // `--flag value` and `--flag=value` alike.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--principal" => principal = Some(value()?),
            "--name" | "--for" => names.push(value()?),
            "--ttl" => {
                let v = value()?;
                ttl = humantime::parse_duration(&v).map_err(|e| format!("--ttl {v:?}: {e}"))?;
            }
            "--uses" => {
                let v = value()?;
                uses = v
                    .parse()
                    .map_err(|_| format!("--uses {v:?}: expected a positive number"))?;
            }
            "--json" if inline.is_none() => json = true,
            other => return Err(format!("mint-token: unknown argument {other:?}")),
        }
    }
    let principal = principal.ok_or("mint-token needs --principal TYPE:ID")?;
    if names.is_empty() {
        return Err("mint-token needs at least one --name PATTERN".to_owned());
    }
    Ok(MintArgs {
        principal,
        names,
        ttl,
        uses,
        json,
    })
}

/// `sigil-policy mint-token`: mint from the database, print, exit.
fn mint_token(args: &[String]) -> ExitCode {
    let args = match parse_mint_args(args) {
        Ok(a) => a,
        Err(e) => return usage_error(&e),
    };
    let config = match config_from_env() {
        Ok(c) => c,
        Err(e) => return launch::config_error(NAME, e),
    };
    let Ok(ttl_seconds) = i64::try_from(args.ttl.as_secs()) else {
        return usage_error("--ttl is too long");
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{NAME}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let minted = runtime.block_on(sigil_policy::mint_local_token(
        &config,
        &args.principal,
        &args.names,
        ttl_seconds,
        args.uses,
        chrono::Utc::now(),
    ));
    match minted {
        Ok(token) if args.json => match serde_json::to_string_pretty(&token) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{NAME}: cannot encode the token: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(token) => {
            eprintln!(
                "{NAME}: token {} for {} ({}), {} use(s), expires {}",
                token.id,
                token.principal,
                token.names.join(", "),
                token.uses,
                token.expires_at.to_rfc3339()
            );
            println!("{}", token.token);
            ExitCode::SUCCESS
        }
        Err(sigil_policy::Error::Auth(e @ sigil_policy::AuthError::Malformed(_))) => {
            usage_error(&e.to_string())
        }
        Err(e) => {
            eprintln!("{NAME}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read(var: &str) -> Result<Option<String>, String> {
    // `var_os`: a file may live at a path that is not UTF-8.
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            std::fs::read_to_string(&path)
                .map(Some)
                .map_err(|e| format!("{var}={}: {e}", path.display()))
        }
        _ => Ok(None),
    }
}

fn config_from_env() -> Result<Config, String> {
    let mut config = Config::default();
    if let Some(url) = launch::env("SIGIL_DATABASE_URL") {
        config.database_url = url;
    }
    config.seed_policies = read("SIGIL_POLICY_FILE")?;
    config.seed_entities = read("SIGIL_POLICY_ENTITIES")?;
    if let Some(text) = &config.seed_policies {
        Compiled::new("seed", text, config.seed_entities.as_deref())
            .map_err(|e| format!("SIGIL_POLICY_FILE: {e}"))?;
    }
    if let Some(every) = launch::env("SIGIL_POLICY_RELOAD") {
        let secs: f64 = every
            .trim_end_matches('s')
            .parse()
            .map_err(|_| format!("SIGIL_POLICY_RELOAD={every:?}: expected seconds, e.g. 2s"))?;
        if !(0.05..=3600.0).contains(&secs) {
            return Err(format!(
                "SIGIL_POLICY_RELOAD={every:?}: between 0.05s and 3600s"
            ));
        }
        config.reload_interval = Duration::from_secs_f64(secs);
    }
    if let Some(t) = launch::env("SIGIL_POLICY_AUTH_TIMEOUT") {
        config.auth_timeout = humantime::parse_duration(&t)
            .map_err(|e| format!("SIGIL_POLICY_AUTH_TIMEOUT={t:?}: {e}"))?;
        if config.auth_timeout.is_zero() {
            return Err(format!("SIGIL_POLICY_AUTH_TIMEOUT={t:?}: must be positive"));
        }
    }
    if let Some(v) = launch::env("SIGIL_ALLOW_ANONYMOUS") {
        config.allow_anonymous = match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => {
                return Err(format!(
                    "SIGIL_ALLOW_ANONYMOUS={v:?}: expected true or false"
                ));
            }
        };
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn mint_token_arguments() {
        let a = parse_mint_args(&args(&[
            "--principal",
            "admin:admin",
            "--name",
            "spiffe://sigil.admin/admin/*",
            "--ttl=1h",
            "--uses",
            "2",
            "--json",
        ]))
        .unwrap();
        assert_eq!(
            a,
            MintArgs {
                principal: "admin:admin".into(),
                names: vec!["spiffe://sigil.admin/admin/*".into()],
                ttl: Duration::from_secs(3600),
                uses: 2,
                json: true,
            }
        );
        let d = parse_mint_args(&args(&["--principal", "workload:w", "--name", "a"])).unwrap();
        assert_eq!((d.ttl, d.uses, d.json), (DEFAULT_MINT_TTL, 1, false));
        for bad in [
            &["--name", "a"][..],
            &["--principal", "admin:a"],
            &["--principal"],
            &["--principal", "admin:a", "--name", "a", "--ttl", "soon"],
            &["--principal", "admin:a", "--name", "a", "--uses", "-1"],
            &["--principal", "admin:a", "--name", "a", "--colour", "red"],
        ] {
            assert!(parse_mint_args(&args(bad)).is_err(), "{bad:?}");
        }
    }
}
