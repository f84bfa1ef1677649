//! `sigil-issuer`: Sigil's certificate authority service.
//!
//! The issuer holds the CA hierarchy and the only copies of the CA private keys, and
//! serves `sigil.issuer.v1.issue` ([`ISSUER_ISSUE`]), `sigil.issuer.v1.ca_list`
//! ([`ISSUER_CA_LIST`]), `sigil.issuer.v1.ca_init` ([`ISSUER_CA_INIT`]),
//! `sigil.issuer.v1.ca_rotate` ([`ISSUER_CA_ROTATE`]) and `sigil.issuer.v1.trust_bundle`
//! ([`ISSUER_TRUST_BUNDLE`]).
//!
//! **CA hierarchy.** On first start (no active CA in its database) it creates a root
//! valid for 10 years and an intermediate valid for 5 years of [`Config::ca_kind`]
//! (default **hybrid**: ECDSA P-256 certificates carrying ML-DSA-65 alternative
//! signatures; or classical P-256, composite ML-DSA + ECDSA, pure ML-DSA), and stores
//! them in its own `issuer_ca` table. An existing hierarchy is kept whatever the
//! configuration says: the stored kind decides (installations from before CA kinds
//! are classical). `ca_init` creates a new pair of a chosen kind; with `force` it
//! replaces the active pair (retired, kept), which is not a staged rotation.
//!
//! **Rotation** (`ca_rotate`, see [`ca`]): the intermediate moves through
//! current/next/retired slots — prepare a next intermediate under the current root,
//! publish the bundle holding both, activate; the old one is kept for CRL signing until
//! its last leaf expires. Every change of the trust bundle (first start, `ca_init`,
//! prepare, activate) commits a `ca.bundle_changed` event in the same transaction;
//! `trust_bundle` serves the bundle on request.
//!
//! **CA keys** sit behind the [`keys::KeyManager`] trait. The backend in use,
//! [`keys::SealedKeys`], seals them (AES-256-GCM, the CA id as associated data) with a
//! key-encryption key: [`Config::kek`] (`SIGIL_KEK`, 64 hex characters or base64 of 32
//! bytes) or else the file `<data_dir>/kek`, created with mode 0600 on first start; an
//! existing file readable by group or others is refused. The sealed blob lives in the
//! CA's database row, the KEK only in the file or the environment. Key bytes are never
//! logged. Issuers racing on first start against one database end up sharing one
//! hierarchy (see [`ca`]).
//!
//! **Who asks.** The issuer never establishes a principal itself. Every request may
//! carry a proof ([`sigil_contracts::auth`]: a bootstrap token, or a possession proof
//! made with a credential's key); the issuer passes it unchanged to policy's
//! `evaluate`, with the endpoint's subject and the request's digest it must be bound
//! to. Policy authenticates it, decides, and names the principal, which the issuer
//! records (`requested_by`). A refused proof reaches the client as `unauthenticated`
//! with policy's message; a denial as `denied` with policy's reasons. `ca_init` and
//! `ca_rotate` are decided as action `admin` before anything changes; the hierarchy a
//! first start creates needs no proof (it is the issuer's own set-up, not a request).
//!
//! **Issuing** runs prepare → authorize → sign → record (see [`issue`]): the request is
//! checked and its CSR's proof of possession verified; policy authenticates the
//! requester, decides over the bus and may shorten the lifetime; the CA's kind picks
//! the signer ([`sigil_pki::issue_leaf`], [`sigil_pki::issue_hybrid_leaf`],
//! [`sigil_pki::issue_composite_leaf`], [`sigil_pki::issue_mldsa_leaf`]), which lints,
//! signs and validates; the issuance row and its `identity.issued` CloudEvent are
//! committed in one
//! transaction and the outbox relay publishes the event to JetStream. Requests with an
//! idempotency key are answered once: a retry gets the recorded certificate (without
//! the private key, which is never stored). Any error leaves no row and no event.
#![forbid(unsafe_code)]

pub mod ca;
pub mod issue;
pub mod kek;
pub mod keys;
pub mod migration;
mod rotate;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sigil_bus::service::Router;
use sigil_bus::{BusError, Runtime};
use sigil_contracts::issuer::{
    CaInitRequest, CaListRequest, CaRotateRequest, IssueRequest, TrustBundleRequest,
};
use sigil_contracts::subjects::{
    ISSUER_CA_INIT, ISSUER_CA_LIST, ISSUER_CA_ROTATE, ISSUER_ISSUE, ISSUER_TRUST_BUNDLE, Service,
};
use sigil_contracts::types::CaKind;
use sigil_store::outbox::Outbox;
use tokio_util::sync::CancellationToken;

pub use migration::Migrator;

/// Name of the health component, of the outbox relay in metrics, and of the database
/// schema (`sigil_issuer` on PostgreSQL).
pub const COMPONENT: &str = "issuer";
/// Most intent and issuance writes committed in one transaction.
const WRITE_BATCH: usize = 64;
/// Default time to wait for policy's answer.
pub const DEFAULT_POLICY_TIMEOUT: Duration = Duration::from_secs(5);
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = ".sigil";
/// Default prefix of the CA common names.
pub const DEFAULT_CA_COMMON_NAME: &str = "Sigil";
/// Kind of the hierarchy a new installation creates.
pub const DEFAULT_CA_KIND: CaKind = CaKind::Hybrid;

/// Configuration of the issuer.
///
/// ```toml
/// database_url = "postgres://sigil@db/sigil"
/// data_dir = "/var/lib/sigil"
/// ca_common_name = "Example Corp"
/// ca_kind = "hybrid"
/// ca_algorithm = "p256+mldsa65"
/// policy_timeout = "5s"
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The issuer's database (default: SQLite `<data_dir>/issuer.db`).
    pub database_url: String,
    /// Where the generated KEK file `kek` lives when [`Config::kek`] is not set.
    pub data_dir: PathBuf,
    /// Key-encryption key for CA keys at rest: 64 hex characters or base64 of 32 bytes.
    /// `Debug` never prints it.
    pub kek: Option<String>,
    /// Prefix of the CA common names: `<prefix> Root CA`, `<prefix> Intermediate CA`.
    pub ca_common_name: String,
    /// Kind of hierarchy created on first start (default hybrid). Ignored once the
    /// database holds an active hierarchy: its stored kind wins.
    pub ca_kind: CaKind,
    /// Algorithm within `ca_kind` (see [`ca::CaSpec::parse`]): `p256` / `p384`,
    /// `p256+mldsa65`, `MLDSA65-ECDSA-P256-SHA512`, `mldsa65`, …; `None`: the kind's
    /// default (P-256, ML-DSA-65, MLDSA65-ECDSA-P256-SHA512).
    pub ca_algorithm: Option<String>,
    /// How long to wait for policy, e.g. `"5s"`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub policy_timeout: Duration,
    /// Base URL of the CRLs (`SIGIL_CRL_BASE_URL`), e.g. `http://sigil.example/crl`:
    /// each leaf gets the cRLDistributionPoint `<base>/<issuer-ca-id>.crl`. `None`:
    /// no CRL distribution point.
    pub crl_base_url: Option<String>,
    /// URL of the OCSP responder (`SIGIL_OCSP_BASE_URL`), written as the leaves'
    /// authorityInfoAccess id-ad-ocsp. `None`: no AIA.
    pub ocsp_base_url: Option<String>,
    /// How often an issuance compares the CA hierarchy in memory with the database,
    /// where another replica's `ca init` / `ca rotate` shows up (default 1 s). A
    /// request prepared with an intermediate retired in the meantime is prepared again
    /// whatever this is: its intent is refused.
    #[serde(deserialize_with = "deserialize_duration")]
    pub ca_recheck: Duration,
}

impl Default for Config {
    fn default() -> Self {
        let data_dir = PathBuf::from(DEFAULT_DATA_DIR);
        Config {
            database_url: default_database_url(&data_dir),
            data_dir,
            kek: None,
            ca_common_name: DEFAULT_CA_COMMON_NAME.to_owned(),
            ca_kind: DEFAULT_CA_KIND,
            ca_algorithm: None,
            policy_timeout: DEFAULT_POLICY_TIMEOUT,
            crl_base_url: None,
            ocsp_base_url: None,
            ca_recheck: issue::CA_RECHECK,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &sigil_store::redact(&self.database_url))
            .field("data_dir", &self.data_dir)
            .field("kek", &self.kek.as_ref().map(|_| "[redacted]"))
            .field("ca_common_name", &self.ca_common_name)
            .field("ca_kind", &self.ca_kind)
            .field("ca_algorithm", &self.ca_algorithm)
            .field("policy_timeout", &self.policy_timeout)
            .field("crl_base_url", &self.crl_base_url)
            .field("ocsp_base_url", &self.ocsp_base_url)
            .field("ca_recheck", &self.ca_recheck)
            .finish()
    }
}

impl Config {
    /// Check what can be checked without touching disk or network (`run` does too):
    /// a non-empty CA name prefix, a positive policy timeout, a well-formed `kek`, a
    /// `ca_algorithm` that fits `ca_kind`.
    pub fn validate(&self) -> Result<(), Error> {
        self.ca_spec()?;
        if self.ca_common_name.trim().is_empty() {
            return Err(Error::Config("ca_common_name must not be empty".to_owned()));
        }
        if self.policy_timeout.is_zero() {
            return Err(Error::Config("policy_timeout must be positive".to_owned()));
        }
        if let Some(kek) = &self.kek {
            kek::parse(kek)?;
        }
        for (name, url) in [
            ("crl_base_url", &self.crl_base_url),
            ("ocsp_base_url", &self.ocsp_base_url),
        ] {
            if let Some(url) = url {
                issue::check_base_url(url)
                    .map_err(|why| Error::Config(format!("{name} {url:?}: {why}")))?;
            }
        }
        Ok(())
    }
}

impl Config {
    /// The hierarchy a first start creates.
    pub fn ca_spec(&self) -> Result<ca::CaSpec, Error> {
        ca::CaSpec::parse(self.ca_kind, self.ca_algorithm.as_deref()).map_err(Error::Config)
    }
}

/// SQLite database `issuer.db` inside `data_dir`.
pub fn default_database_url(data_dir: &std::path::Path) -> String {
    sigil_store::sqlite_url(&data_dir.join("issuer.db"))
}

fn deserialize_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}

/// What can stop the issuer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key-encryption key is missing, malformed or unsafely stored.
    #[error("key-encryption key: {0}")]
    Kek(String),
    /// A stored CA cannot be used (most often: the KEK does not match the database).
    #[error("CA {id}: {reason}")]
    CaKey { id: String, reason: String },
    /// The CA rows are inconsistent.
    #[error("CA state: {0}")]
    CaState(String),
    /// Creating the CA hierarchy failed.
    #[error("creating the CA hierarchy: {0}")]
    Pki(#[from] sigil_pki::PkiError),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] sigil_store::StoreError),
    /// A database query failed.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// NATS: the stream or the micro service could not be set up.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Run the issuer until `shutdown` is cancelled: load or create the CA hierarchy,
/// serve `issue`, relay the outbox. Returns `Ok(())` after in-flight requests finished
/// and the outbox relay made its last attempt.
pub async fn run(config: Config, rt: Runtime, shutdown: CancellationToken) -> Result<(), Error> {
    rt.health.register(COMPONENT);
    config.validate()?;
    let spec = config.ca_spec()?;
    let kek = kek::load(config.kek.as_deref(), &config.data_dir).await?;
    let db = open_db(&config.database_url).await?;
    // The KEK lives on only inside the key manager, which seals and unseals CA keys.
    let keys: Arc<dyn keys::KeyManager> = Arc::new(keys::SealedKeys::new(kek));
    let cas = Arc::new(
        ca::load_or_create(&db, keys.as_ref(), spec, &config.ca_common_name, rt.now()).await?,
    );
    rt.bus.ensure_stream().await?;
    tracing::info!(
        kind = %cas.kind,
        root = %cas.root.subject(),
        root_not_after = %cas.root.not_after(),
        intermediate = %cas.intermediate.subject(),
        intermediate_not_after = %cas.intermediate.not_after(),
        "CA hierarchy loaded"
    );

    let outbox = Outbox::new(db.clone());
    let issuer = Arc::new(issue::Issuer {
        writes: sigil_store::group::GroupCommit::spawn(db.clone(), WRITE_BATCH),
        db,
        outbox: outbox.clone(),
        cas: tokio::sync::RwLock::new(cas),
        ca_checked: std::sync::Mutex::new(None),
        ca_recheck: config.ca_recheck,
        keys,
        ca_common_name: config.ca_common_name.clone(),
        rt: rt.clone(),
        policy_timeout: config.policy_timeout,
        crl_base_url: config.crl_base_url.clone(),
        ocsp_base_url: config.ocsp_base_url.clone(),
    });
    let (list_issuer, init_issuer) = (issuer.clone(), issuer.clone());
    let (rotate_issuer, bundle_issuer) = (issuer.clone(), issuer.clone());
    let router = Router::new(Service::Issuer, "Sigil issuer: certificate issuance")
        .ready(rt.health.clone(), COMPONENT)
        .route_proven(ISSUER_ISSUE, move |req: IssueRequest, digest| {
            let issuer = issuer.clone();
            async move { issuer.issue(req, digest).await }
        })
        .route(ISSUER_CA_LIST, move |req: CaListRequest| {
            let issuer = list_issuer.clone();
            async move { issuer.ca_list(req).await }
        })
        .route_proven(ISSUER_CA_INIT, move |req: CaInitRequest, digest| {
            let issuer = init_issuer.clone();
            async move { issuer.ca_init(req, digest).await }
        })
        .route_proven(ISSUER_CA_ROTATE, move |req: CaRotateRequest, digest| {
            let issuer = rotate_issuer.clone();
            async move { issuer.ca_rotate(req, digest).await }
        })
        .route(ISSUER_TRUST_BUNDLE, move |req: TrustBundleRequest| {
            let issuer = bundle_issuer.clone();
            async move { issuer.trust_bundle(req).await }
        });

    // The relay outlives the endpoint so that what in-flight requests commit while
    // draining is still published before we return.
    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(outbox.relay(
        rt.bus.clone(),
        COMPONENT,
        rt.metrics.clone(),
        relay_stop.clone(),
    ));
    let serving = tokio::spawn({
        let bus = rt.bus.clone();
        let metrics = rt.metrics.clone();
        let shutdown = shutdown.clone();
        async move { router.serve(&bus, metrics, shutdown).await }
    });
    let served = serving.await;
    rt.health.set_ready(COMPONENT, false);
    relay_stop.cancel();
    let relayed = relay.await;
    match served {
        Ok(result) => result?,
        Err(join) => {
            return Err(Error::Bus(BusError::Service(format!(
                "issue endpoint task failed: {join}"
            ))));
        }
    }
    relayed.map_err(|join| {
        Error::Bus(BusError::Service(format!(
            "outbox relay task failed: {join}"
        )))
    })
}

/// Open and migrate the database. Replicas starting together race on creating the
/// PostgreSQL schema and on the migrations table; the loser sees a unique violation
/// (`pg_namespace`, `seaql_migrations`). Both steps are idempotent, so a short retry
/// finds them done.
async fn open_db(url: &str) -> Result<sea_orm::DatabaseConnection, Error> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    loop {
        match sigil_store::open::<Migrator>(url, COMPONENT).await {
            Ok(db) => return Ok(db),
            Err(e) if attempt < ATTEMPTS && lost_setup_race(&e) => {
                tracing::info!(error = %e, attempt, "database setup raced with another instance; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn lost_setup_race(e: &sigil_store::StoreError) -> bool {
    let db_err = match e {
        sigil_store::StoreError::Migrate(e)
        | sigil_store::StoreError::Connect { source: e, .. } => e,
        _ => return false,
    };
    matches!(
        db_err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_toml() {
        let c = Config::default();
        assert!(c.database_url.starts_with("sqlite://") && c.database_url.contains("issuer.db"));
        assert_eq!(c.policy_timeout, DEFAULT_POLICY_TIMEOUT);
        assert_eq!(c.ca_kind, CaKind::Hybrid);
        let composite: Config = serde_json::from_str(
            r#"{"ca_kind": "composite", "ca_algorithm": "MLDSA87-ECDSA-P384-SHA512"}"#,
        )
        .unwrap();
        composite.validate().unwrap();
        let mismatched = Config {
            ca_kind: CaKind::Mldsa,
            ca_algorithm: Some("p256".into()),
            ..Config::default()
        };
        assert!(matches!(mismatched.validate(), Err(Error::Config(_))));
        let parsed: Config =
            serde_json::from_str(r#"{"policy_timeout": "250ms", "kek": "secret-material"}"#)
                .unwrap();
        assert_eq!(parsed.policy_timeout, Duration::from_millis(250));
        let shown = format!("{parsed:?}");
        assert!(
            !shown.contains("secret-material") && shown.contains("[redacted]"),
            "{shown}"
        );
    }
}
