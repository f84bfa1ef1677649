//! `sigil revoke`: revoke a certificate, signed with the admin credential (policy lets
//! admins revoke).

use clap::Args;
use sigil_contracts::revocation::{RevokeRequest, RevokeResponse};
use sigil_contracts::subjects::REVOCATION_REVOKE;
use sigil_contracts::types::RevocationReason;

use crate::commands::{REQUEST_TIMEOUT, wire_enum};
use crate::context::GlobalArgs;
use crate::error::CliError;
use crate::output;

/// Revoke a certificate.
#[derive(Debug, Clone, Args)]
pub struct RevokeArgs {
    /// Serial number in hex (case and ':' separators are ignored)
    pub serial: String,

    /// RFC 5280 revocation reason
    #[arg(long, value_parser = wire_enum::<RevocationReason>(reason_names()))]
    pub reason: RevocationReason,
}

/// Reasons a new revocation may give: every RFC 5280 reason but `remove-from-crl`,
/// which only delta CRLs use.
fn reason_names() -> Vec<&'static str> {
    RevocationReason::ALL
        .iter()
        .filter(|r| **r != RevocationReason::RemoveFromCrl)
        .map(|r| r.as_str())
        .collect()
}

pub async fn run(global: &GlobalArgs, args: RevokeArgs) -> Result<(), CliError> {
    let admin = global.admin()?;
    let bus = global.connect().await?;
    let mut req = RevokeRequest {
        serial: args.serial,
        reason: args.reason,
        proof: None,
    };
    admin.prove(REVOCATION_REVOKE, &mut req)?;
    let resp: RevokeResponse = bus
        .request(REVOCATION_REVOKE, &req, REQUEST_TIMEOUT)
        .await?;
    let text = if global.json {
        output::json(&resp)?
    } else {
        message(&resp)
    };
    output::print(&text)
}

/// The human confirmation.
pub fn message(resp: &RevokeResponse) -> String {
    let when = output::time(resp.revoked_at);
    let reason = resp.reason.as_str();
    if resp.already_revoked {
        format!(
            "{} was already revoked at {when} ({reason}); nothing changed\n",
            resp.serial
        )
    } else {
        format!(
            "revoked {} at {when} ({reason}, code {})\n",
            resp.serial,
            resp.reason.code()
        )
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn parse(args: &[&str]) -> Result<RevokeArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("sigil").chain(args.iter().copied()))?;
        match cli.command {
            Command::Revoke(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn reasons_parse_by_their_rfc_names() {
        let a = parse(&["revoke", "7f01", "--reason", "key-compromise"]).unwrap();
        assert_eq!(a.serial, "7f01");
        assert_eq!(a.reason, RevocationReason::KeyCompromise);
        for r in reason_names() {
            assert_eq!(
                parse(&["revoke", "7f01", "--reason", r])
                    .unwrap()
                    .reason
                    .as_str(),
                r
            );
        }
        for bad in [
            vec!["revoke", "7f01"],
            vec!["revoke", "--reason", "superseded"],
            vec!["revoke", "7f01", "--reason", "bored"],
            vec!["revoke", "7f01", "--reason", "remove-from-crl"],
        ] {
            assert_eq!(parse(&bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn messages_tell_new_from_repeated_revocations() {
        let at = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
        let mut resp = RevokeResponse {
            serial: "7f01".into(),
            reason: RevocationReason::KeyCompromise,
            revoked_at: at,
            already_revoked: false,
        };
        assert_eq!(
            message(&resp),
            "revoked 7f01 at 2025-06-01T12:00:00Z (key-compromise, code 1)\n"
        );
        resp.already_revoked = true;
        assert_eq!(
            message(&resp),
            "7f01 was already revoked at 2025-06-01T12:00:00Z (key-compromise); nothing changed\n"
        );
    }
}
