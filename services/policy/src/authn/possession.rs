//! Possession proofs: a request signed by the key of a credential Sigil issued.
//!
//! [`PossessionVerifier::verify`] accepts a proof only when all of these hold, checked
//! cheapest first so a flood of junk costs little:
//!
//! 1. the nonce is well formed and `signed_at` is within
//!    [`MAX_PROOF_SKEW_SECONDS`] of our clock (a captured proof is useless soon after);
//! 2. the chain parses and the leaf's key(s) signed
//!    [`proof_message`]`(operation, signed_at, nonce, digest)`, so the proof is bound to
//!    this endpoint and this request body ([`sigil_pki::proof::verify_possession`]; a
//!    hybrid leaf must be proven by both of its keys);
//! 3. the chain verifies to the issuer's *current* trust bundle at `now` (every
//!    signature, including alternative and composite ones, and every validity period,
//!    via [`sigil_pki::verify_chain`]). The bundle is cached; when a chain does not
//!    verify against the cached one it is fetched again once, as the CA may have
//!    rotated since (`ca.bundle_changed` also clears the cache:
//!    [`PossessionVerifier::invalidate_bundle`]);
//! 4. the credential's issuance was recorded here (from `identity.issued`,
//!    [`record_issued`]): that record names the principal it was issued to;
//! 5. the revocation service says it is not revoked (asked every time: revocation
//!    must take effect at once);
//! 6. the nonce was not seen before (recorded in the [`UseLedger`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait};
use sha2::{Digest, Sha256};
use sigil_bus::Bus;
use sigil_contracts::auth::{
    ADMIN_URI_PREFIX, AuthMethod, MAX_PROOF_SKEW_SECONDS, PossessionProof, proof_message,
    valid_nonce,
};
use sigil_contracts::event::IdentityIssued;
use sigil_contracts::issuer::{TrustBundle, TrustBundleRequest};
use sigil_contracts::normalize_serial;
use sigil_contracts::revocation::{StatusRequest, StatusResponse};
use sigil_contracts::subjects::{ISSUER_TRUST_BUNDLE, REVOCATION_STATUS};
use sigil_contracts::types::{CertificateFacts, Profile, Sans};
use sigil_pki::verify::MAX_PATH_LEN;
use sigil_pki::{SignatureKind, VerifyReport};

use super::ledger::UseLedger;
use super::{AuthError, Grant, Requester};

pub use super::migration::CreateCredentials;

/// Prefix of the principals whose credentials prove an administrator.
pub const ADMIN_PREFIX: &str = "admin:";

/// The `credentials` table: who each issued credential belongs to.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "credentials")]
    pub struct Model {
        /// Serial, lowercase hex ([`sigil_contracts::normalize_serial`]).
        #[sea_orm(primary_key, auto_increment = false)]
        pub serial: String,
        /// The principal it was issued to (`identity.issued` `requested_by`).
        pub principal: String,
        /// SHA-256 (lowercase hex) of the certificate's DER: a presented leaf must be
        /// this very certificate, not merely carry its serial.
        pub fingerprint: String,
        pub not_after: ChronoDateTimeUtc,
        /// The intermediate that signed it, when the event named it.
        pub issuer_ca_id: Option<String>,
        /// When this service recorded it.
        pub recorded_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Record an issued credential (serial → principal) inside the audit consumer's
/// transaction. Insert-or-ignore by serial, so a redelivered event changes nothing.
pub async fn record_issued(txn: &DatabaseTransaction, event: &IdentityIssued) -> Result<(), DbErr> {
    let serial =
        normalize_serial(&event.facts.serial).unwrap_or_else(|| event.facts.serial.clone());
    let fingerprint = sigil_pki::pem::decode(&event.certificate_pem, &["CERTIFICATE"])
        .map(|der| fingerprint(&der))
        .unwrap_or_default();
    let row = entity::ActiveModel {
        serial: Set(serial),
        principal: Set(event.requested_by.clone()),
        fingerprint: Set(fingerprint),
        not_after: Set(event.facts.not_after.trunc_subsecs(6)),
        issuer_ca_id: Set(event.issuer_ca_id.clone()),
        // Bookkeeping only; never compared with proof or certificate times.
        recorded_at: Set(Utc::now().trunc_subsecs(6)),
    };
    let insert = entity::Entity::insert(row)
        .on_conflict(
            OnConflict::column(entity::Column::Serial)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await;
    match insert {
        Ok(_) | Err(DbErr::RecordNotInserted) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The principal credential `serial` (normalized hex) was issued to and the
/// fingerprint of that certificate, if recorded.
pub async fn recorded_principal(
    db: &DatabaseConnection,
    serial: &str,
) -> Result<Option<(String, String)>, DbErr> {
    Ok(entity::Entity::find_by_id(serial.to_owned())
        .one(db)
        .await?
        .map(|m| (m.principal, m.fingerprint)))
}

/// The principal a credential proves, and whether it proves an admin. An admin's
/// credential was issued to `admin:<id>` and names exactly
/// `spiffe://sigil.admin/admin/<id>` ([`ADMIN_URI_PREFIX`]). A certificate an admin
/// had issued for some workload (recorded with the admin as its requester) proves
/// `workload:<its first name>` instead — never the admin. Any other credential proves
/// the principal it was issued to.
pub fn credential_principal(recorded: String, sans: &Sans) -> (String, bool) {
    let Some(id) = recorded.strip_prefix(ADMIN_PREFIX) else {
        return (recorded, false);
    };
    let admin_uri = format!("{ADMIN_URI_PREFIX}{id}");
    if sans.dns.is_empty() && sans.ip.is_empty() && sans.uri == [admin_uri] {
        return (recorded, true);
    }
    let first = sans
        .uri
        .first()
        .cloned()
        .or_else(|| sans.dns.first().cloned())
        .or_else(|| sans.ip.first().map(ToString::to_string))
        .unwrap_or_else(|| "unnamed".to_owned());
    (format!("workload:{first}"), false)
}

/// SHA-256 of a certificate's DER, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The issuer's trust bundle as DER.
#[derive(Debug)]
struct Bundle {
    roots: Vec<Vec<u8>>,
    intermediates: Vec<Vec<u8>>,
    /// When every certificate of the bundle is valid (a chain verified against the
    /// bundle is cached only inside this window).
    valid: Window,
}

/// A validity window: the latest notBefore and the earliest notAfter of a set of
/// certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    from: DateTime<Utc>,
    until: DateTime<Utc>,
}

impl Window {
    const ALWAYS: Window = Window {
        from: DateTime::<Utc>::MIN_UTC,
        until: DateTime::<Utc>::MAX_UTC,
    };

    fn narrow(self, not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> Window {
        Window {
            from: self.from.max(not_before),
            until: self.until.min(not_after),
        }
    }

    fn contains(self, now: DateTime<Utc>) -> bool {
        self.from <= now && now <= self.until
    }
}

/// A chain that verified against a bundle: while that bundle is current and every
/// certificate involved is valid, the chain verifies again (path validation depends
/// only on the certificates, the anchors and the time), so the CA signatures need not
/// be checked again. The proof's own signature always is.
#[derive(Debug, Clone)]
struct Verified {
    bundle: Arc<Bundle>,
    valid: Window,
}

/// Least time between two fetches of the trust bundle forced by a failing chain.
const REFETCH_EVERY: Duration = Duration::from_secs(5);

/// Most chains and principals remembered; the caches are cleared when full.
const MAX_REMEMBERED: usize = 10_000;

impl Bundle {
    fn from_wire(bundle: &TrustBundle) -> Result<Bundle, AuthError> {
        let decode = |list: &[String], what: &str| {
            list.iter()
                .enumerate()
                .map(|(i, pem)| {
                    sigil_pki::pem::decode(pem, &["CERTIFICATE"]).map_err(|e| {
                        AuthError::Unavailable(format!(
                            "the issuer's trust bundle has a bad {what} #{}: {e}",
                            i + 1
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let roots = decode(&bundle.roots, "root")?;
        if roots.is_empty() {
            return Err(AuthError::Unavailable(
                "the issuer's trust bundle holds no root".into(),
            ));
        }
        let intermediates = decode(&bundle.intermediates, "intermediate")?;
        let mut valid = Window::ALWAYS;
        for der in roots.iter().chain(intermediates.iter()) {
            // A bundle certificate that does not parse never verifies a chain; it only
            // keeps chains from being cached.
            valid = match sigil_pki::certificate_facts(der, Profile::TlsClient) {
                Ok(f) => valid.narrow(f.not_before, f.not_after),
                Err(_) => Window {
                    from: DateTime::<Utc>::MAX_UTC,
                    until: DateTime::<Utc>::MIN_UTC,
                },
            };
        }
        Ok(Bundle {
            roots,
            intermediates,
            valid,
        })
    }
}

/// Verifies possession proofs (see the module docs). One per replica.
#[derive(Debug)]
pub struct PossessionVerifier {
    bus: Bus,
    db: DatabaseConnection,
    ledger: Arc<UseLedger>,
    request_timeout: Duration,
    bundle: RwLock<Option<Arc<Bundle>>>,
    /// When the bundle was last fetched again because a chain failed.
    refetched: Mutex<Option<std::time::Instant>>,
    /// Chains verified against the current bundle, by SHA-256 of the presented chain.
    verified: Mutex<HashMap<[u8; 32], Verified>>,
    /// The principal each serial was issued to and its certificate's fingerprint (never
    /// change once recorded).
    principals: Mutex<HashMap<String, (String, String)>>,
}

impl PossessionVerifier {
    /// A verifier asking the issuer and the revocation service over `bus` (each call
    /// bounded by `request_timeout`), reading `credentials` from `db` and recording
    /// nonces in `ledger`.
    pub fn new(
        bus: Bus,
        db: DatabaseConnection,
        ledger: Arc<UseLedger>,
        request_timeout: Duration,
    ) -> Self {
        PossessionVerifier {
            bus,
            db,
            ledger,
            request_timeout,
            bundle: RwLock::new(None),
            refetched: Mutex::new(None),
            verified: Mutex::new(HashMap::new()),
            principals: Mutex::new(HashMap::new()),
        }
    }

    /// Forget the cached trust bundle (on `ca.bundle_changed`); the next proof fetches it.
    pub fn invalidate_bundle(&self) {
        match self.bundle.write() {
            Ok(mut b) => *b = None,
            Err(poisoned) => *poisoned.into_inner() = None,
        }
        lock(&self.verified).clear();
    }

    /// Verify `proof` for a request to `operation` whose digest
    /// ([`sigil_contracts::auth::CarriesProof::digest`]) is `digest`, at `now`. With
    /// `consume = false` (dry runs) every check is made but the nonce is not recorded.
    pub async fn verify(
        &self,
        proof: &PossessionProof,
        operation: &str,
        digest: &str,
        now: DateTime<Utc>,
        consume: bool,
    ) -> Result<Requester, AuthError> {
        if operation.is_empty() || digest.is_empty() {
            return Err(AuthError::WrongRequest(
                "a possession proof needs the operation and the request digest it was made for"
                    .into(),
            ));
        }
        // 1. Nonce and time.
        if !valid_nonce(&proof.nonce) {
            return Err(AuthError::Malformed(
                "nonce must be 16 to 64 URL-safe characters".into(),
            ));
        }
        let skew = (now - proof.signed_at).num_seconds();
        if skew.abs() > MAX_PROOF_SKEW_SECONDS {
            return Err(AuthError::Expired(format!(
                "proof signed at {} is {}s {} this service's clock ({}); at most {MAX_PROOF_SKEW_SECONDS}s are allowed",
                proof.signed_at.to_rfc3339(),
                skew.abs(),
                if skew > 0 { "behind" } else { "ahead of" },
                now.to_rfc3339()
            )));
        }

        // 2. Chain syntax and the signature(s) over this request.
        let chain = parse_chain(&proof.chain_pem)?;
        let (leaf, presented) = chain
            .split_first()
            .ok_or_else(|| AuthError::Malformed("the proof carries no certificate".into()))?;
        let facts = sigil_pki::certificate_facts(leaf, Profile::TlsClient)
            .map_err(|e| AuthError::Malformed(format!("credential certificate: {e}")))?;
        let serial = facts.serial.clone();
        // Whose it is, first: the cheapest check, and the one that turns away
        // certificates Sigil never issued before any signature is verified or the trust
        // bundle fetched. The leaf must be the very certificate issued under this
        // serial (its fingerprint), not another one carrying the same serial.
        let (principal, issued_fingerprint) = self.recorded(&serial).await?;
        if fingerprint(leaf) != issued_fingerprint {
            return Err(AuthError::UntrustedChain(format!(
                "the presented certificate is not the one Sigil issued with serial {serial}"
            )));
        }
        let signature = decode_b64(&proof.signature, "signature")?;
        let alt = proof
            .alt_signature
            .as_deref()
            .map(|s| decode_b64(s, "alt_signature"))
            .transpose()?;
        let message = proof_message(operation, proof.signed_at, &proof.nonce, digest);
        sigil_pki::proof::verify_possession(leaf, &message, &signature, alt.as_deref()).map_err(
            |e| {
                AuthError::BadSignature(format!(
                    "the proof does not verify for {operation} with this request ({e}): it was made for another request or by another key"
                ))
            },
        )?;

        // 3. Trust: the current bundle, refetched once when the cached one fails. A
        //    chain that verified against this very bundle, with every certificate
        //    still valid, is not verified again.
        let (mut bundle, fresh) = self.bundle(false).await?;
        let key = chain_key(&chain);
        if self.still_verified(&key, &bundle, now) {
            return self
                .finish(facts, leaf, serial, principal, proof, consume)
                .await;
        }
        // Not remembered: the attached CA certificates must parse (junk is "malformed",
        // not a failed path), and bound the window the verified chain is remembered for.
        let presented_valid =
            presented_window(presented)?.narrow(facts.not_before, facts.not_after);
        let mut report = check_chain(leaf, presented, &bundle, now);
        if !report.ok && !fresh && !only_validity_failed(&report) {
            bundle = self.bundle(true).await?.0;
            report = check_chain(leaf, presented, &bundle, now);
        }
        if report.ok {
            let valid = bundle
                .valid
                .narrow(presented_valid.from, presented_valid.until);
            self.remember_verified(key, &bundle, valid);
        } else {
            let failed = failures(&report);
            return Err(if only_validity_failed(&report) {
                AuthError::Expired(format!("credential {serial}: {failed}"))
            } else {
                AuthError::UntrustedChain(format!(
                    "credential {serial} does not chain to Sigil's current trust bundle: {failed}"
                ))
            });
        }

        self.finish(facts, leaf, serial, principal, proof, consume)
            .await
    }

    /// Steps 4 to 6, once the signature and the chain hold: whose credential it is,
    /// that it is not revoked, and (unless a dry run) that its nonce is new.
    async fn finish(
        &self,
        facts: CertificateFacts,
        leaf: &[u8],
        serial: String,
        principal: String,
        proof: &PossessionProof,
        consume: bool,
    ) -> Result<Requester, AuthError> {
        // 5. Not revoked (asked before the nonce is spent, so a proof refused because
        //    the revocation service did not answer can be sent again).
        let ask = StatusRequest {
            serial: serial.clone(),
        };
        let status: StatusResponse = self
            .bus
            .request(REVOCATION_STATUS, &ask, self.request_timeout)
            .await
            .map_err(|e| AuthError::Unavailable(format!("revocation status of {serial}: {e}")))?;
        if status.revoked {
            let reason = status
                .reason
                .map(|r| format!(" ({})", r.as_str()))
                .unwrap_or_default();
            let at = status
                .revoked_at
                .map(|t| format!(" at {}", t.to_rfc3339()))
                .unwrap_or_default();
            return Err(AuthError::Revoked(format!(
                "credential {serial} was revoked{at}{reason}"
            )));
        }

        // 6. Single use.
        if consume {
            self.ledger.consume_nonce(&serial, &proof.nonce).await?;
        }

        let mut sans = facts.sans;
        for d in &mut sans.dns {
            *d = d.to_ascii_lowercase();
        }
        let (principal, admin) = credential_principal(principal, &sans);
        Ok(Requester {
            principal,
            method: AuthMethod::Credential,
            grant: Grant::Credential {
                serial,
                sans,
                profile: sigil_pki::profile_of(leaf).ok(),
                admin,
            },
        })
    }

    /// The principal `serial` was issued to and its certificate's fingerprint:
    /// remembered, else from the database.
    async fn recorded(&self, serial: &str) -> Result<(String, String), AuthError> {
        if let Some(p) = lock(&self.principals).get(serial) {
            return Ok(p.clone());
        }
        let recorded = recorded_principal(&self.db, serial)
            .await
            .map_err(|e| AuthError::Unavailable(format!("policy database: {e}")))?
            .ok_or_else(|| {
                AuthError::UnknownCredential(format!(
                    "credential {serial} is not recorded here yet (issuances arrive asynchronously); retry shortly"
                ))
            })?;
        let mut known = lock(&self.principals);
        if known.len() >= MAX_REMEMBERED {
            known.clear();
        }
        known.insert(serial.to_owned(), recorded.clone());
        Ok(recorded)
    }

    fn still_verified(&self, key: &[u8; 32], bundle: &Arc<Bundle>, now: DateTime<Utc>) -> bool {
        lock(&self.verified)
            .get(key)
            .is_some_and(|v| Arc::ptr_eq(&v.bundle, bundle) && v.valid.contains(now))
    }

    fn remember_verified(&self, key: [u8; 32], bundle: &Arc<Bundle>, valid: Window) {
        let mut verified = lock(&self.verified);
        if verified.len() >= MAX_REMEMBERED {
            verified.clear();
        }
        verified.insert(
            key,
            Verified {
                bundle: bundle.clone(),
                valid,
            },
        );
    }

    /// The trust bundle: the cached one unless `refresh` (or none is cached). Answers
    /// whether it was fetched just now.
    async fn bundle(&self, refresh: bool) -> Result<(Arc<Bundle>, bool), AuthError> {
        // A forced refetch (a chain that did not verify) happens at most once per
        // REFETCH_EVERY: proofs with foreign chains must not turn into a request to the
        // issuer each.
        let refresh = refresh && {
            let mut last = lock(&self.refetched);
            let due = last.is_none_or(|t| t.elapsed() >= REFETCH_EVERY);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        if !refresh {
            let cached = match self.bundle.read() {
                Ok(b) => b.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            if let Some(b) = cached {
                return Ok((b, false));
            }
        }
        let wire: TrustBundle = self
            .bus
            .request(
                ISSUER_TRUST_BUNDLE,
                &TrustBundleRequest {},
                self.request_timeout,
            )
            .await
            .map_err(|e| AuthError::Unavailable(format!("issuer trust bundle: {e}")))?;
        let bundle = Arc::new(Bundle::from_wire(&wire)?);
        tracing::debug!(
            version = wire.version,
            roots = bundle.roots.len(),
            intermediates = bundle.intermediates.len(),
            "trust bundle fetched for possession proofs"
        );
        match self.bundle.write() {
            Ok(mut b) => *b = Some(bundle.clone()),
            Err(poisoned) => *poisoned.into_inner() = Some(bundle.clone()),
        }
        Ok((bundle, true))
    }
}

/// SHA-256 over the presented chain (each certificate's length, then its DER).
fn chain_key(chain: &[Vec<u8>]) -> [u8; 32] {
    let mut h = Sha256::new();
    for der in chain {
        h.update((der.len() as u64).to_be_bytes());
        h.update(der);
    }
    h.finalize().into()
}

/// Where every attached CA certificate is valid; `Malformed` when one does not parse.
fn presented_window(presented: &[Vec<u8>]) -> Result<Window, AuthError> {
    presented
        .iter()
        .enumerate()
        .try_fold(Window::ALWAYS, |w, (i, der)| {
            let f = sigil_pki::certificate_facts(der, Profile::TlsClient)
                .map_err(|e| AuthError::Malformed(format!("chain certificate #{}: {e}", i + 2)))?;
            Ok(w.narrow(f.not_before, f.not_after))
        })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The presented chain as DER, leaf first; at most [`MAX_PATH_LEN`] certificates (the
/// leaf is parsed by the caller; the CA certificates only when the chain is not
/// remembered).
fn parse_chain(chain_pem: &[String]) -> Result<Vec<Vec<u8>>, AuthError> {
    if chain_pem.is_empty() {
        return Err(AuthError::Malformed(
            "the proof carries no certificate".into(),
        ));
    }
    if chain_pem.len() > MAX_PATH_LEN {
        return Err(AuthError::Malformed(format!(
            "the proof carries {} certificates, more than {MAX_PATH_LEN}",
            chain_pem.len()
        )));
    }
    chain_pem
        .iter()
        .enumerate()
        .map(|(i, pem)| {
            sigil_pki::pem::decode(pem, &["CERTIFICATE"])
                .map_err(|e| AuthError::Malformed(format!("chain certificate #{}: {e}", i + 1)))
        })
        .collect()
}

fn decode_b64(text: &str, what: &str) -> Result<Vec<u8>, AuthError> {
    STANDARD
        .decode(text.as_bytes())
        .map_err(|e| AuthError::Malformed(format!("{what} is not base64: {e}")))
}

/// Leaf through the presented certificates and the bundle's intermediates to one of
/// the bundle's roots. A root the requester attached is only an intermediate here:
/// trust comes from the bundle alone.
fn check_chain(
    leaf: &[u8],
    presented: &[Vec<u8>],
    bundle: &Bundle,
    now: DateTime<Utc>,
) -> VerifyReport {
    let intermediates: Vec<Vec<u8>> = presented
        .iter()
        .chain(bundle.intermediates.iter())
        .cloned()
        .collect();
    sigil_pki::verify_chain(leaf, &intermediates, &bundle.roots, now)
}

/// The path was built to a root and only validity periods failed.
fn only_validity_failed(report: &VerifyReport) -> bool {
    let mut failed = report.checks.iter().filter(|c| !c.ok).peekable();
    failed.peek().is_some() && failed.all(|c| c.kind == SignatureKind::Validity)
}

/// The failed checks, one clause each.
fn failures(report: &VerifyReport) -> String {
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| {
            format!(
                "{} check of {} failed{}",
                c.kind,
                c.subject,
                c.detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    if failed.is_empty() {
        "no path to a trusted root".to_owned()
    } else {
        failed.join("; ")
    }
}
