//! What can go wrong in a command, how it is reported (one line on stderr) and which
//! exit code it gets. The whole code table lives here.

use std::path::PathBuf;

use sigil_bus::{BusError, ClientError};
use sigil_contracts::{ErrorCode, WireError};

/// Success.
pub const EXIT_OK: u8 = 0;
/// Any other failure (internal errors, local I/O, malformed replies).
pub const EXIT_FAILURE: u8 = 1;
/// Bad command line (clap exits with this itself).
pub const EXIT_USAGE: u8 = 2;
/// Denied by policy.
pub const EXIT_DENIED: u8 = 3;
/// The named object does not exist.
pub const EXIT_NOT_FOUND: u8 = 4;
/// The service refused the request: bad request, too large, or a conflict.
pub const EXIT_REJECTED: u8 = 5;
/// `sigil verify`: a check on the certificate path failed, or no path to a trusted
/// root was found. (Input files that cannot be read or parsed exit with
/// [`EXIT_REJECTED`]; a missing trust anchor with [`EXIT_USAGE`].)
pub const EXIT_VERIFY_FAILED: u8 = 6;
/// The request's proof of who sent it was refused (`unauthenticated`: a used or
/// expired token, a revoked or unknown credential, a signature Sigil does not trust).
pub const EXIT_UNAUTHENTICATED: u8 = 7;
/// Sigil cannot be reached: no NATS, no service listening, timeout, or a service
/// reporting `unavailable` (BSD `EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// A failed command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A request/reply call failed (typed service error or transport failure).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Connecting to NATS or using JetStream failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A local input file is unreadable or malformed (exit [`EXIT_REJECTED`]).
    #[error("{}: {reason}", path.display())]
    BadInput { path: PathBuf, reason: String },
    /// The credential a command signs with is missing, unreadable or malformed (exit
    /// [`EXIT_USAGE`]: the fix is `sigil up` or `--admin-cred`).
    #[error(
        "no usable admin credential at {} ({reason}); run `sigil up` to create it, or pass --admin-cred FILE",
        path.display()
    )]
    NoCredential { path: PathBuf, reason: String },
    /// Options that parsed but cannot be acted on together (exit [`EXIT_USAGE`]).
    #[error("{0}")]
    Usage(String),
    /// `sigil verify`: at least one check failed (exit [`EXIT_VERIFY_FAILED`]).
    #[error("verification failed: {failed} of {total} checks failed")]
    VerifyFailed { failed: usize, total: usize },
    /// Anything else, with its message.
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CliError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn bad_input(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        CliError::BadInput {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Client(ClientError::Wire(e)) => exit_code_of(e.code),
            CliError::Client(
                ClientError::TimedOut { .. }
                | ClientError::NoResponders { .. }
                | ClientError::Transport { .. },
            ) => EXIT_UNAVAILABLE,
            CliError::Client(_) => EXIT_FAILURE,
            CliError::Bus(_) => EXIT_UNAVAILABLE,
            CliError::BadInput { .. } => EXIT_REJECTED,
            CliError::Usage(_) | CliError::NoCredential { .. } => EXIT_USAGE,
            CliError::VerifyFailed { .. } => EXIT_VERIFY_FAILED,
            CliError::Io { .. } | CliError::Other(_) => EXIT_FAILURE,
        }
    }

    /// The one line printed on stderr: `sigil: denied: r1; r2` for a policy denial,
    /// `sigil: unauthenticated: …` for a refused proof, `sigil: error: …` otherwise.
    pub fn line(&self) -> String {
        match self {
            CliError::Client(ClientError::Wire(e)) if e.code == ErrorCode::Denied => {
                format!("sigil: denied: {}", denied_reasons(e))
            }
            CliError::Client(ClientError::Wire(e)) if e.code == ErrorCode::Unauthenticated => {
                format!("sigil: unauthenticated: {}", one_line(&e.message))
            }
            CliError::Client(ClientError::Wire(e)) => {
                format!("sigil: error: {}", one_line(&e.message))
            }
            other => format!("sigil: error: {}", one_line(&other.to_string())),
        }
    }
}

/// Exit code of a typed service error.
pub fn exit_code_of(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::Denied => EXIT_DENIED,
        ErrorCode::Unauthenticated => EXIT_UNAUTHENTICATED,
        ErrorCode::NotFound => EXIT_NOT_FOUND,
        ErrorCode::BadRequest | ErrorCode::TooLarge | ErrorCode::Conflict => EXIT_REJECTED,
        ErrorCode::Unavailable => EXIT_UNAVAILABLE,
        ErrorCode::Internal => EXIT_FAILURE,
        _ => EXIT_FAILURE,
    }
}

fn denied_reasons(e: &WireError) -> String {
    let reasons = e.reasons();
    if reasons.is_empty() {
        one_line(&e.message)
    } else {
        one_line(&reasons.join("; "))
    }
}

/// Collapse line breaks so an error is always exactly one line.
fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn wire(code: ErrorCode) -> CliError {
        CliError::Client(ClientError::Wire(WireError::new(code, "boom")))
    }

    #[test]
    fn every_error_maps_to_its_exit_code() {
        let cases = [
            (wire(ErrorCode::Denied), EXIT_DENIED),
            (wire(ErrorCode::Unauthenticated), EXIT_UNAUTHENTICATED),
            (wire(ErrorCode::NotFound), EXIT_NOT_FOUND),
            (wire(ErrorCode::BadRequest), EXIT_REJECTED),
            (wire(ErrorCode::TooLarge), EXIT_REJECTED),
            (wire(ErrorCode::Conflict), EXIT_REJECTED),
            (wire(ErrorCode::Unavailable), EXIT_UNAVAILABLE),
            (wire(ErrorCode::Internal), EXIT_FAILURE),
            (
                CliError::Client(ClientError::TimedOut {
                    subject: "s".into(),
                    timeout: Duration::from_secs(1),
                }),
                EXIT_UNAVAILABLE,
            ),
            (
                CliError::Client(ClientError::NoResponders {
                    subject: "s".into(),
                }),
                EXIT_UNAVAILABLE,
            ),
            (
                CliError::Client(ClientError::Transport {
                    subject: "s".into(),
                    reason: "r".into(),
                }),
                EXIT_UNAVAILABLE,
            ),
            (
                CliError::Client(ClientError::BadReply {
                    subject: "s".into(),
                    reason: "r".into(),
                }),
                EXIT_FAILURE,
            ),
            (
                CliError::Bus(BusError::Connect {
                    url: "nats://x".into(),
                    reason: "refused".into(),
                }),
                EXIT_UNAVAILABLE,
            ),
            (
                CliError::io("key.pem", std::io::Error::other("nope")),
                EXIT_FAILURE,
            ),
            (CliError::Other("x".into()), EXIT_FAILURE),
            (CliError::bad_input("cert.pem", "not PEM"), EXIT_REJECTED),
            (CliError::Usage("no roots".into()), EXIT_USAGE),
            (
                CliError::NoCredential {
                    path: "admin.cred".into(),
                    reason: "not found".into(),
                },
                EXIT_USAGE,
            ),
            (
                CliError::VerifyFailed {
                    failed: 1,
                    total: 9,
                },
                EXIT_VERIFY_FAILED,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error:?}");
        }
        assert_eq!(EXIT_OK, 0);
        assert_eq!(EXIT_USAGE, 2);
        assert_eq!(EXIT_VERIFY_FAILED, 6);
        assert_eq!(EXIT_UNAUTHENTICATED, 7);
    }

    #[test]
    fn errors_print_as_one_line() {
        let denied = CliError::Client(ClientError::Wire(WireError::denied(vec![
            "ttl too long".into(),
            "dns name not allowed".into(),
        ])));
        assert_eq!(
            denied.line(),
            "sigil: denied: ttl too long; dns name not allowed"
        );
        let bare = CliError::Client(ClientError::Wire(WireError::new(ErrorCode::Denied, "no")));
        assert_eq!(bare.line(), "sigil: denied: no");
        let nf = CliError::Client(ClientError::Wire(WireError::not_found("serial 0a unknown")));
        assert_eq!(nf.line(), "sigil: error: serial 0a unknown");
        let multi = CliError::Other("first\nsecond\n".into());
        assert_eq!(multi.line(), "sigil: error: first second");
        let unauth = CliError::Client(ClientError::Wire(WireError::unauthenticated(
            "token already used\n(1 of 1)",
        )));
        assert_eq!(
            unauth.line(),
            "sigil: unauthenticated: token already used (1 of 1)"
        );
        let cred = CliError::NoCredential {
            path: "d/admin.cred".into(),
            reason: "No such file or directory (os error 2)".into(),
        };
        assert_eq!(
            cred.line(),
            "sigil: error: no usable admin credential at d/admin.cred (No such file or directory (os error 2)); run `sigil up` to create it, or pass --admin-cred FILE"
        );
        let io = CliError::io("out/key.pem", std::io::Error::other("exists"));
        assert_eq!(io.line(), "sigil: error: out/key.pem: exists");
    }
}
