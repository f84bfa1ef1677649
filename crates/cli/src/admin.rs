//! The admin credential `sigil up` keeps in the data directory (`admin.cred`).
//!
//! On the first start it is made like any workload's first identity, with nothing
//! crossing the bus that should not: a one-use bootstrap token minted straight from the
//! policy database ([`sigil_policy::mint_local_token`]: whoever can open that database
//! can mint, as whoever holds the CA key can sign), a key made here (the CA's kind
//! decides which: P-256 plus an ML-DSA-65 alternative key for a hybrid CA, the CA's own
//! algorithm for composite and ML-DSA CAs), and a `tls-client` certificate for
//! `spiffe://sigil.admin/admin/admin` issued to principal `admin:admin`. Chain and
//! key(s) are written as one PEM bundle with mode 0600, atomically.
//!
//! On later starts a credential with less than a third of its lifetime left is renewed
//! by possession (same name, new key) and replaced; an expired one is made anew. A
//! valid one is never overwritten, and a file that does not parse is left alone with a
//! warning (it may be someone's to fix).

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sigil_bus::{Bus, ClientError};
use sigil_contracts::ErrorCode;
use sigil_contracts::auth::TokenCreateRequest;
use sigil_contracts::issuer::{CaListRequest, CaListResponse, CaRole, IssueRequest, IssueResponse};
use sigil_contracts::policy::{EvaluateRequest, Explanation, TestRequest};
use sigil_contracts::subjects::{ISSUER_CA_LIST, POLICY_TEST, POLICY_TOKEN_CREATE};
use sigil_contracts::types::{CaKind, KeyAlgorithm, Profile, Sans};
use sigil_pki::proof::Credential;

use crate::commands::REQUEST_TIMEOUT;
use crate::commands::issue::{self, write_file};
use crate::commands::renew::{self, LeafInfo};
use crate::context::{Prover, load_credential};
use crate::error::CliError;
use crate::keys;

/// The principal of the admin credential `sigil up` makes.
pub const ADMIN_PRINCIPAL: &str = "admin:admin";
/// Its one name (URI SAN).
pub const ADMIN_NAME: &str = "spiffe://sigil.admin/admin/admin";
/// Its lifetime: renewed at each start in its last third.
pub const ADMIN_TTL_SECONDS: i64 = 30 * 86_400;
/// Lifetime of the local token that gets the first one.
const TOKEN_TTL_SECONDS: i64 = 600;
/// How long to wait for the policy service to know a new credential (it learns the
/// principal of a serial from the `identity.issued` event).
const USABLE_WITHIN: Duration = Duration::from_secs(30);

/// What [`ensure`] did.
#[derive(Debug)]
pub enum Outcome {
    /// A new credential was written.
    Created {
        serial: String,
        not_after: DateTime<Utc>,
    },
    /// The credential was renewed (new key) and replaced.
    Renewed {
        serial: String,
        replaced: String,
        not_after: DateTime<Utc>,
    },
    /// The credential is valid and not yet due; nothing changed.
    Kept {
        serial: String,
        not_after: DateTime<Utc>,
    },
    /// Nothing was written; the reason is worth a warning.
    Untouched { reason: String },
}

/// Makes, renews or keeps the admin credential at `path` (see the module docs).
/// `policy` is the configuration the policy service runs with.
pub async fn ensure(
    path: &Path,
    policy: &sigil_policy::Config,
    bus: &Bus,
) -> Result<Outcome, CliError> {
    let now = Utc::now();
    if !path.exists() {
        let (serial, not_after) = create(path, policy, bus, false).await?;
        return Ok(Outcome::Created { serial, not_after });
    }
    let credential = match load_credential(path) {
        Ok(c) => c,
        Err(e) => {
            let why = match e {
                CliError::NoCredential { reason, .. } => reason,
                other => other.to_string(),
            };
            return Ok(Outcome::Untouched {
                reason: format!(
                    "{} is not a usable credential ({why}); move it away and restart to get a new one",
                    path.display()
                ),
            });
        }
    };
    let info = match credential
        .leaf_der()
        .map_err(|e| e.to_string())
        .and_then(|der| LeafInfo::read(&der))
    {
        Ok(info) => info,
        Err(reason) => {
            return Ok(Outcome::Untouched {
                reason: format!("{}: {reason}", path.display()),
            });
        }
    };
    if now >= info.not_after {
        let (serial, not_after) = create(path, policy, bus, true).await?;
        return Ok(Outcome::Renewed {
            serial,
            replaced: info.serial,
            not_after,
        });
    }
    if !info.due(now) {
        return Ok(Outcome::Kept {
            serial: info.serial,
            not_after: info.not_after,
        });
    }
    match renew(path, credential, &info, bus).await {
        Ok((serial, not_after)) => Ok(Outcome::Renewed {
            serial,
            replaced: info.serial,
            not_after,
        }),
        Err(e) => Ok(Outcome::Untouched {
            reason: format!(
                "renewing {} failed ({}); it stays valid until {}",
                path.display(),
                e.line().trim_start_matches("sigil: "),
                crate::output::time(info.not_after)
            ),
        }),
    }
}

/// A first credential, by a local one-use token. `replace` overwrites an (expired) file.
async fn create(
    path: &Path,
    policy: &sigil_policy::Config,
    bus: &Bus,
    replace: bool,
) -> Result<(String, DateTime<Utc>), CliError> {
    let names = [ADMIN_NAME.to_owned()];
    let made = new_key(bus).await?;
    let token = sigil_policy::mint_local_token(
        policy,
        ADMIN_PRINCIPAL,
        &names,
        TOKEN_TTL_SECONDS,
        1,
        Utc::now(),
    )
    .await
    .map_err(|e| CliError::Other(format!("cannot mint the admin bootstrap token: {e}")))?;
    let mut req = IssueRequest {
        idempotency_key: Some(uuid::Uuid::new_v4().to_string()),
        profile: Profile::TlsClient,
        sans: sans(),
        ttl_seconds: ADMIN_TTL_SECONDS,
        csr_pem: Some(made.csr.clone()),
        key_algorithm: None,
        proof: None,
    };
    let resp = issue::issue(bus, &Prover::Token(token.token), &mut req)
        .await
        .map_err(|e| {
            CliError::Other(format!(
                "cannot issue the admin credential: {}",
                e.line().trim_start_matches("sigil: ")
            ))
        })?;
    let credential = store(path, &resp, &made, replace)?;
    usable(bus, &credential).await;
    Ok((resp.serial, resp.not_after))
}

/// Renewal by possession of the current credential, with a new key.
async fn renew(
    path: &Path,
    credential: Credential,
    info: &LeafInfo,
    bus: &Bus,
) -> Result<(String, DateTime<Utc>), CliError> {
    let made = new_key(bus).await?;
    let req = renew::request(info, made.csr.clone(), ADMIN_TTL_SECONDS);
    let resp = renew::send(bus, credential, req).await?;
    let credential = store(path, &resp, &made, true)?;
    usable(bus, &credential).await;
    Ok((resp.serial, resp.not_after))
}

fn sans() -> Sans {
    Sans {
        uri: vec![ADMIN_NAME.to_owned()],
        ..Sans::default()
    }
}

/// A new key of the kind the active CA certifies, and its CSR.
async fn new_key(bus: &Bus) -> Result<keys::Made, CliError> {
    let (kind, ca_key) = active_ca(bus).await?;
    let (alg, alt) = keys::key_kind_for_ca(kind, ca_key);
    keys::generate(alg, alt, &sans())
        .map_err(|e| CliError::Other(format!("cannot make the admin key: {e}")))
}

/// Kind and key algorithm of the issuing intermediate.
async fn active_ca(bus: &Bus) -> Result<(CaKind, Option<KeyAlgorithm>), CliError> {
    let list: CaListResponse = bus
        .request(ISSUER_CA_LIST, &CaListRequest {}, REQUEST_TIMEOUT)
        .await?;
    let ca = list
        .cas
        .iter()
        .find(|c| c.role == CaRole::Intermediate && c.active)
        .ok_or_else(|| CliError::Other("the issuer has no active intermediate CA".to_owned()))?;
    Ok((
        ca.kind,
        ca.algorithms.first().and_then(|a| renew::key_algorithm(a)),
    ))
}

/// Writes the credential (chain without the root, then the key(s)) with mode 0600,
/// atomically; without `replace` only if no file is there.
fn store(
    path: &Path,
    resp: &IssueResponse,
    made: &keys::Made,
    replace: bool,
) -> Result<Credential, CliError> {
    let mut chain = vec![resp.certificate_pem.clone()];
    for pem in &resp.chain_pem {
        match sigil_pki::pem::decode(pem, &["CERTIFICATE"]) {
            Ok(der) if renew::self_signed(&der) => {}
            _ => chain.push(pem.clone()),
        }
    }
    let credential =
        Credential::from_parts(chain, &made.key, made.alt_key.as_deref()).map_err(|e| {
            CliError::Other(format!(
                "the issued admin certificate does not match its key: {e}"
            ))
        })?;
    write_file(path, credential.to_pem_bundle().as_bytes(), 0o600, replace)?;
    Ok(credential)
}

/// Waits until the policy service accepts `credential` as proof (it learns a new
/// serial's principal from the `identity.issued` event, a moment after issuance), so
/// the credential works as soon as `sigil up` says it is ready. Asks `policy test`, a
/// dry run that records no nonce. Gives up quietly after [`USABLE_WITHIN`]: the
/// credential is written either way.
async fn usable(bus: &Bus, credential: &Credential) {
    let deadline = tokio::time::Instant::now() + USABLE_WITHIN;
    loop {
        match probe(bus, credential).await {
            Ok(principal) if principal == ADMIN_PRINCIPAL => return,
            Ok(other) => {
                tracing::warn!(principal = %other, "the admin credential authenticates another principal");
                return;
            }
            Err(e) if retryable(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the policy service does not accept the admin credential (yet)");
                return;
            }
        }
    }
}

/// Errors that go away once the policy service has caught up.
fn retryable(e: &CliError) -> bool {
    match e {
        CliError::Client(ClientError::Wire(w)) => {
            matches!(w.code, ErrorCode::Unauthenticated | ErrorCode::Unavailable)
        }
        CliError::Client(
            ClientError::TimedOut { .. }
            | ClientError::NoResponders { .. }
            | ClientError::Transport { .. },
        ) => true,
        _ => false,
    }
}

/// The principal policy establishes from a proof by `credential` (dry run).
async fn probe(bus: &Bus, credential: &Credential) -> Result<String, CliError> {
    let operation = POLICY_TOKEN_CREATE.subject();
    let probe = TokenCreateRequest {
        principal: ADMIN_PRINCIPAL.to_owned(),
        names: vec![ADMIN_NAME.to_owned()],
        ttl_seconds: 60,
        uses: 1,
        proof: None,
    };
    let proof = credential
        .proof(&operation, &probe, Utc::now())
        .map_err(|e| CliError::Other(format!("cannot sign with the admin credential: {e}")))?;
    let req = TestRequest::now(EvaluateRequest {
        proof: Some(proof),
        ..EvaluateRequest::admin(POLICY_TOKEN_CREATE, &probe)
    });
    let explanation: Explanation = bus.request(POLICY_TEST, &req, REQUEST_TIMEOUT).await?;
    Ok(explanation.decision.principal)
}
