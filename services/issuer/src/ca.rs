//! The CA hierarchy: a root and one intermediate of one [`CaKind`], created on first
//! start and kept in the `issuer_ca` table with their private keys in the custody of
//! a [`KeyManager`].
//!
//! Each row holds a CA certificate, its kind (`classical`, `hybrid`, `composite`,
//! `mldsa`; rows written before kinds existed are `classical`) and the key reference
//! the key manager returned (with [`SealedKeys`](crate::keys::SealedKeys): the key
//! sealed by the KEK with the row id as associated data, so a sealed key cannot be
//! moved to another row). The active CA of each role has `active = true`; a unique
//! index on `(role, active)` lets only one row per role be active (retired rows hold
//! `NULL`, which unique indexes do not compare). Two issuers starting at once against
//! an empty database both generate a hierarchy, but only the first transaction
//! commits; the other hits the unique index, discards its keys and loads the winner's.
//!
//! `sigil.issuer.v1.ca_init` ([`create`] with `retire`) creates a new pair of a chosen kind; with
//! `force` the active pair is retired in the same transaction. That is a replacement,
//! not a staged rotation.
//!
//! **Slots** (migration m0004; SPIRE's current/next): each row has a `state`. The
//! intermediate that signs is `current` (and `active`, which the unique index keeps
//! single); [`prepare`] creates a `next` intermediate under the current root (same kind
//! and algorithms) that is already in the trust bundle but does not sign; [`activate`]
//! makes it `current` and the old one `retired`, with `retire_until` = the latest
//! notAfter of the leaves it issued (its own notAfter when it issued none): it is kept
//! for CRL signing and in the trust bundle until then. A retired root stays as long as
//! any of its intermediates (`parent_id`). Every slot change bumps the trust-bundle
//! version in the one-row `issuer_ca_bundle` table *first* in its transaction (that
//! row lock serializes slot changes across replicas) and enqueues `ca.bundle_changed`
//! with the new [`TrustBundle`] in the outbox in the same transaction.
//!
//! An issuance already signing with the old intermediate when [`activate`] commits
//! (its intent `prepared`, its issuance not yet recorded) is counted in `retire_until`
//! with the old intermediate's own notAfter, the latest its leaf can have (see
//! [`retire_until_now`]). An issuance that loaded the old intermediate before the
//! activation cannot record its intent after it: the intent insert requires its CA
//! row to be still `current` (read `FOR SHARE` on PostgreSQL), and the issuance is
//! then prepared again with the new intermediate (`crate::issue`).

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait as _, QueryFilter as _, QueryOrder as _, Set, SqlErr, TransactionTrait as _,
};
use sigil_contracts::event::{CaBundleChanged, source_for};
use sigil_contracts::issuer::{BundleChangeReason, CaInfo, CaRole, CaState, TrustBundle};
use sigil_contracts::subjects::Service;
use sigil_contracts::types::{CaKind, KeyAlgorithm, Profile};
use sigil_contracts::{CloudEvent, EventData as _};
use sigil_pki::mldsa::MlDsaLevel;
use sigil_pki::{
    CaMaterial, CompositeAlg, CompositeCaMaterial, HybridCaMaterial, PkiError, PqCaMaterial,
};

use crate::Error;
use crate::keys::{CaKeyMaterial, KeyError, KeyManager};

/// Role of the root CA row.
pub const ROLE_ROOT: &str = "root";
/// Role of the issuing intermediate CA row.
pub const ROLE_INTERMEDIATE: &str = "intermediate";
/// Lifetime of a new root CA.
const ROOT_LIFETIME_DAYS: i64 = 3650;
/// Lifetime of a new intermediate CA.
const INTERMEDIATE_LIFETIME_DAYS: i64 = 1825;
/// New CA certificates start this long before "now", to absorb clock skew.
const CA_BACKDATE_MINUTES: i64 = 60;
/// Classical key algorithm of new classical and hybrid CAs unless configured.
const DEFAULT_CLASSICAL: KeyAlgorithm = KeyAlgorithm::EcdsaP256;
/// ML-DSA level of new hybrid and ML-DSA CAs unless configured.
const DEFAULT_MLDSA: MlDsaLevel = MlDsaLevel::L65;
/// Algorithm of new composite CAs unless configured.
const DEFAULT_COMPOSITE: CompositeAlg = CompositeAlg::MlDsa65EcdsaP256Sha512;

/// The `issuer_ca` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "issuer_ca")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// `root` or `intermediate`.
        pub role: String,
        /// `Some(true)` for the active CA of its role; `None` once retired.
        pub active: Option<bool>,
        #[sea_orm(column_type = "Text")]
        pub cert_pem: String,
        /// The key manager's reference to the private key (for the sealed backend:
        /// the key sealed with the KEK, associated data = `id`).
        pub sealed_key: Vec<u8>,
        pub created_at: ChronoDateTimeUtc,
        /// `classical`, `hybrid`, `composite` or `mldsa` (migration m0003; older rows
        /// are `classical`).
        pub kind: String,
        /// `current`, `next` or `retired` (migration m0004).
        pub state: String,
        /// Retired rows: kept (CRL signing, trust bundle) until then.
        pub retire_until: Option<ChronoDateTimeUtc>,
        /// Intermediates: the root that signed them.
        pub parent_id: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What kind of hierarchy to create, with its algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaSpec {
    Classical(KeyAlgorithm),
    /// Classical algorithm (P-256 or P-384) and the ML-DSA level of the alt key.
    Hybrid(KeyAlgorithm, MlDsaLevel),
    Composite(CompositeAlg),
    Mldsa(MlDsaLevel),
}

impl CaSpec {
    /// The spec for `kind` and an optional algorithm name: `p256` / `p384`
    /// (classical), `p256+mldsa65` (hybrid), a composite name such as
    /// `MLDSA65-ECDSA-P256-SHA512`, `mldsa44` / `mldsa65` / `mldsa87`. Names are
    /// case-insensitive; `ecdsa-p256` and `ML-DSA-65` spellings are accepted too.
    pub fn parse(kind: CaKind, algorithm: Option<&str>) -> Result<CaSpec, String> {
        let algorithm = algorithm.map(str::trim).filter(|a| !a.is_empty());
        let bad = |what: &str| {
            format!(
                "algorithm {:?} is not valid for a {kind} CA: expected {what}",
                algorithm.unwrap_or_default()
            )
        };
        Ok(match kind {
            CaKind::Classical => CaSpec::Classical(match algorithm {
                None => DEFAULT_CLASSICAL,
                Some(a) => classical(a).ok_or_else(|| bad("p256 or p384"))?,
            }),
            CaKind::Hybrid => match algorithm {
                None => CaSpec::Hybrid(DEFAULT_CLASSICAL, DEFAULT_MLDSA),
                Some(a) => {
                    let (c, m) = a
                        .split_once('+')
                        .ok_or_else(|| bad("<classical>+<mldsa>, e.g. p256+mldsa65"))?;
                    CaSpec::Hybrid(
                        classical(c).ok_or_else(|| bad("p256 or p384 before the +"))?,
                        mldsa(m).ok_or_else(|| bad("mldsa44, mldsa65 or mldsa87 after the +"))?,
                    )
                }
            },
            CaKind::Composite => CaSpec::Composite(match algorithm {
                None => DEFAULT_COMPOSITE,
                Some(a) => CompositeAlg::from_name(a).ok_or_else(|| {
                    let names: Vec<&str> = CompositeAlg::ALL.iter().map(|a| a.name()).collect();
                    bad(&format!("one of {}", names.join(", ")))
                })?,
            }),
            CaKind::Mldsa => CaSpec::Mldsa(match algorithm {
                None => DEFAULT_MLDSA,
                Some(a) => mldsa(a).ok_or_else(|| bad("mldsa44, mldsa65 or mldsa87"))?,
            }),
        })
    }

    /// The key algorithm of a leaf such a CA certifies when the request names none
    /// (what the issuer generates by default); what policy is told about a CA
    /// operation's hierarchy.
    pub fn leaf_key_algorithm(self) -> KeyAlgorithm {
        match self {
            CaSpec::Classical(_) | CaSpec::Hybrid(..) => KeyAlgorithm::default(),
            CaSpec::Composite(alg) => alg.key_algorithm(),
            CaSpec::Mldsa(level) => level.key_algorithm(),
        }
    }

    pub fn kind(self) -> CaKind {
        match self {
            CaSpec::Classical(_) => CaKind::Classical,
            CaSpec::Hybrid(..) => CaKind::Hybrid,
            CaSpec::Composite(_) => CaKind::Composite,
            CaSpec::Mldsa(_) => CaKind::Mldsa,
        }
    }

    fn create_root(
        self,
        common_name: &str,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> Result<CaSigner, PkiError> {
        Ok(match self {
            CaSpec::Classical(alg) => CaSigner::Classical(sigil_pki::create_root(
                common_name,
                alg,
                not_before,
                not_after,
            )?),
            CaSpec::Hybrid(alg, level) => CaSigner::Hybrid(sigil_pki::create_hybrid_root(
                common_name,
                alg,
                level,
                not_before,
                not_after,
            )?),
            CaSpec::Composite(alg) => CaSigner::Composite(Box::new(
                sigil_pki::create_composite_root(common_name, alg, not_before, not_after)?,
            )),
            CaSpec::Mldsa(level) => CaSigner::Mldsa(sigil_pki::create_mldsa_root(
                common_name,
                level,
                not_before,
                not_after,
            )?),
        })
    }

    fn create_intermediate(
        self,
        parent: &CaSigner,
        common_name: &str,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> Result<CaSigner, PkiError> {
        Ok(match (self, parent) {
            (CaSpec::Classical(alg), CaSigner::Classical(p)) => CaSigner::Classical(
                sigil_pki::create_intermediate(p, common_name, alg, not_before, not_after)?,
            ),
            (CaSpec::Hybrid(alg, level), CaSigner::Hybrid(p)) => {
                CaSigner::Hybrid(sigil_pki::create_hybrid_intermediate(
                    p,
                    common_name,
                    alg,
                    level,
                    not_before,
                    not_after,
                )?)
            }
            (CaSpec::Composite(alg), CaSigner::Composite(p)) => {
                CaSigner::Composite(Box::new(sigil_pki::create_composite_intermediate(
                    p,
                    common_name,
                    alg,
                    not_before,
                    not_after,
                )?))
            }
            (CaSpec::Mldsa(level), CaSigner::Mldsa(p)) => CaSigner::Mldsa(
                sigil_pki::create_mldsa_intermediate(p, common_name, level, not_before, not_after)?,
            ),
            _ => {
                return Err(PkiError::Lint(
                    "intermediate and root must be of the same kind".to_owned(),
                ));
            }
        })
    }
}

/// `p256`, `ecdsa-p256`, `P-256`, … → the classical algorithm (P-256 / P-384 only).
fn classical(name: &str) -> Option<KeyAlgorithm> {
    match normalize(name).as_str() {
        "p256" | "ecdsap256" => Some(KeyAlgorithm::EcdsaP256),
        "p384" | "ecdsap384" => Some(KeyAlgorithm::EcdsaP384),
        _ => None,
    }
}

/// `mldsa65`, `ML-DSA-65`, … → the ML-DSA level.
fn mldsa(name: &str) -> Option<MlDsaLevel> {
    match normalize(name).as_str() {
        "mldsa44" => Some(MlDsaLevel::L44),
        "mldsa65" => Some(MlDsaLevel::L65),
        "mldsa87" => Some(MlDsaLevel::L87),
        _ => None,
    }
}

fn normalize(name: &str) -> String {
    name.trim()
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// One CA, able to sign: certificate and private key(s), by kind.
#[derive(Debug)]
pub enum CaSigner {
    Classical(CaMaterial),
    Hybrid(HybridCaMaterial),
    /// Boxed: much larger than the other variants.
    Composite(Box<CompositeCaMaterial>),
    Mldsa(PqCaMaterial),
}

impl CaSigner {
    /// Pairs a stored certificate with the key the key manager returned.
    fn from_parts(cert_pem: &str, key: CaKeyMaterial) -> Result<CaSigner, PkiError> {
        Ok(match key {
            CaKeyMaterial::Classical(key) => {
                CaSigner::Classical(CaMaterial::from_parts(cert_pem, key)?)
            }
            CaKeyMaterial::Hybrid { classical, alt } => CaSigner::Hybrid(
                HybridCaMaterial::from_parts(CaMaterial::from_parts(cert_pem, classical)?, alt)?,
            ),
            CaKeyMaterial::Composite(key) => {
                CaSigner::Composite(Box::new(CompositeCaMaterial::from_pem(cert_pem, *key)?))
            }
            CaKeyMaterial::Mldsa(key) => CaSigner::Mldsa(PqCaMaterial::from_pem(cert_pem, key)?),
        })
    }

    /// A copy of the private key(s), to hand to the key manager.
    fn key_material(&self) -> Result<CaKeyMaterial, PkiError> {
        match self {
            CaSigner::Classical(ca) => Ok(CaKeyMaterial::Classical(ca.key.clone())),
            CaSigner::Hybrid(ca) => Ok(CaKeyMaterial::Hybrid {
                classical: ca.classical.key.clone(),
                alt: ca.alt_key.clone(),
            }),
            CaSigner::Composite(ca) => Ok(CaKeyMaterial::Composite(Box::new(
                sigil_pki::CompositeKeyPair::from_der(&ca.key.to_der()?)?,
            ))),
            CaSigner::Mldsa(ca) => Ok(CaKeyMaterial::Mldsa(ca.key.clone())),
        }
    }

    pub fn kind(&self) -> CaKind {
        match self {
            CaSigner::Classical(_) => CaKind::Classical,
            CaSigner::Hybrid(_) => CaKind::Hybrid,
            CaSigner::Composite(_) => CaKind::Composite,
            CaSigner::Mldsa(_) => CaKind::Mldsa,
        }
    }

    /// [`CaSpec::leaf_key_algorithm`] of this CA.
    pub fn leaf_key_algorithm(&self) -> KeyAlgorithm {
        match self {
            CaSigner::Classical(_) | CaSigner::Hybrid(_) => KeyAlgorithm::default(),
            CaSigner::Composite(ca) => ca.alg().key_algorithm(),
            CaSigner::Mldsa(ca) => ca.level().key_algorithm(),
        }
    }

    pub fn cert_pem(&self) -> &str {
        match self {
            CaSigner::Classical(ca) => &ca.cert_pem,
            CaSigner::Hybrid(ca) => ca.cert_pem(),
            CaSigner::Composite(ca) => &ca.cert_pem,
            CaSigner::Mldsa(ca) => &ca.cert_pem,
        }
    }

    pub fn subject(&self) -> String {
        match self {
            CaSigner::Classical(ca) => ca.subject(),
            CaSigner::Hybrid(ca) => ca.classical.subject(),
            CaSigner::Composite(ca) => ca.subject(),
            CaSigner::Mldsa(ca) => ca.subject(),
        }
    }

    pub fn not_before(&self) -> DateTime<Utc> {
        match self {
            CaSigner::Classical(ca) => ca.not_before(),
            CaSigner::Hybrid(ca) => ca.classical.not_before(),
            CaSigner::Composite(ca) => ca.not_before(),
            CaSigner::Mldsa(ca) => ca.not_before(),
        }
    }

    pub fn not_after(&self) -> DateTime<Utc> {
        match self {
            CaSigner::Classical(ca) => ca.not_after(),
            CaSigner::Hybrid(ca) => ca.classical.not_after(),
            CaSigner::Composite(ca) => ca.not_after(),
            CaSigner::Mldsa(ca) => ca.not_after(),
        }
    }
}

/// The active hierarchy, loaded and unsealed.
#[derive(Debug)]
pub struct CaSet {
    pub kind: CaKind,
    pub root_id: String,
    pub root: CaSigner,
    pub intermediate_id: String,
    pub intermediate: CaSigner,
}

impl CaSet {
    /// Issuing chain as sent to clients: intermediate first, root last.
    pub fn chain_pem(&self) -> Vec<String> {
        vec![
            self.intermediate.cert_pem().to_owned(),
            self.root.cert_pem().to_owned(),
        ]
    }
}

/// The issuing chain of the intermediate `id` (intermediate first, root last), from
/// its row and its parent's; `None` when either row is missing.
pub(crate) async fn chain_of(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<Vec<String>>, DbErr> {
    let Some(inter) = entity::Entity::find_by_id(id.to_owned()).one(db).await? else {
        return Ok(None);
    };
    let Some(parent) = inter.parent_id.clone() else {
        return Ok(None);
    };
    let root = entity::Entity::find_by_id(parent).one(db).await?;
    Ok(root.map(|root| vec![inter.cert_pem, root.cert_pem]))
}

/// Load the active hierarchy, creating one of `spec` first if the table has none.
/// An existing hierarchy is used whatever its kind: its rows decide, not `spec`.
pub(crate) async fn load_or_create(
    db: &DatabaseConnection,
    keys: &dyn KeyManager,
    spec: CaSpec,
    name_prefix: &str,
    now: DateTime<Utc>,
) -> Result<CaSet, Error> {
    if let Some(set) = load_active(db, keys).await? {
        if set.kind != spec.kind() {
            tracing::info!(
                stored = %set.kind,
                configured = %spec.kind(),
                "using the stored CA hierarchy; the configured CA kind applies only to new installations (or ca_init)"
            );
        }
        return Ok(set);
    }
    match create(db, keys, spec, name_prefix, now, false).await {
        Ok(set) => {
            tracing::info!(
                kind = %set.kind,
                root = %set.root.subject(),
                intermediate = %set.intermediate.subject(),
                "created a new CA hierarchy"
            );
            Ok(set)
        }
        Err(CreateError::Lost) => {
            tracing::info!("another issuer created the CA hierarchy first; using it");
            load_active(db, keys).await?.ok_or_else(|| {
                Error::CaState("CA rows conflicted on creation but none is active".to_owned())
            })
        }
        Err(CreateError::Other(e)) => Err(e),
    }
}

/// The id of the active intermediate, if any (cheap: no key is loaded).
pub(crate) async fn active_intermediate_id(
    db: &DatabaseConnection,
) -> Result<Option<String>, DbErr> {
    Ok(entity::Entity::find()
        .filter(entity::Column::Active.eq(true))
        .filter(entity::Column::Role.eq(ROLE_INTERMEDIATE))
        .one(db)
        .await?
        .map(|row| row.id))
}

pub(crate) async fn load_active(
    db: &DatabaseConnection,
    keys: &dyn KeyManager,
) -> Result<Option<CaSet>, Error> {
    let rows = entity::Entity::find()
        .filter(entity::Column::Active.eq(true))
        .all(db)
        .await?;
    let root = rows.iter().find(|r| r.role == ROLE_ROOT);
    let intermediate = rows.iter().find(|r| r.role == ROLE_INTERMEDIATE);
    match (root, intermediate) {
        (None, None) => Ok(None),
        (Some(root), Some(intermediate)) => {
            let kind = row_kind(intermediate)?;
            if row_kind(root)? != kind {
                return Err(Error::CaState(format!(
                    "the active root is {} but the active intermediate is {kind}",
                    root.kind
                )));
            }
            Ok(Some(CaSet {
                kind,
                root_id: root.id.clone(),
                root: unseal(keys, root, kind)?,
                intermediate_id: intermediate.id.clone(),
                intermediate: unseal(keys, intermediate, kind)?,
            }))
        }
        _ => Err(Error::CaState(
            "the database has an active root or intermediate CA but not both".to_owned(),
        )),
    }
}

fn row_kind(row: &entity::Model) -> Result<CaKind, Error> {
    CaKind::from_name(&row.kind)
        .ok_or_else(|| Error::CaState(format!("CA {} has unknown kind {:?}", row.id, row.kind)))
}

fn unseal(keys: &dyn KeyManager, row: &entity::Model, kind: CaKind) -> Result<CaSigner, Error> {
    let key_error = |reason: String| Error::CaKey {
        id: row.id.clone(),
        reason,
    };
    let key = keys
        .load(&row.id, kind, &row.sealed_key)
        .map_err(|e: KeyError| key_error(e.to_string()))?;
    CaSigner::from_parts(&row.cert_pem, key).map_err(|e| key_error(e.to_string()))
}

pub(crate) enum CreateError {
    /// Another issuer committed its hierarchy first.
    Lost,
    Other(Error),
}

impl From<DbErr> for CreateError {
    fn from(e: DbErr) -> Self {
        if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            CreateError::Lost
        } else {
            CreateError::Other(Error::Database(e))
        }
    }
}

/// Create a hierarchy of `spec` and make it active; with `retire`, the active rows
/// are retired (`active = NULL`) in the same transaction. Without it, an existing
/// active hierarchy makes the insert lose on the unique index.
pub(crate) async fn create(
    db: &DatabaseConnection,
    keys: &dyn KeyManager,
    spec: CaSpec,
    name_prefix: &str,
    now: DateTime<Utc>,
    retire: bool,
) -> Result<CaSet, CreateError> {
    let pki = |e: PkiError| CreateError::Other(Error::Pki(e));
    let not_before = now - Duration::minutes(CA_BACKDATE_MINUTES);
    let root = spec
        .create_root(
            &format!("{name_prefix} Root CA"),
            not_before,
            now + Duration::days(ROOT_LIFETIME_DAYS),
        )
        .map_err(pki)?;
    let intermediate = spec
        .create_intermediate(
            &root,
            &format!("{name_prefix} Intermediate CA"),
            not_before,
            now + Duration::days(INTERMEDIATE_LIFETIME_DAYS),
        )
        .map_err(pki)?;
    let root_id = uuid::Uuid::now_v7().to_string();
    let intermediate_id = uuid::Uuid::now_v7().to_string();
    let kind = spec.kind();

    let txn = db.begin().await?;
    // First statement: the bundle row's lock serializes slot changes.
    let version = bump_version(&txn).await?;
    if retire {
        retire_all(&txn, now).await?;
    }
    for (id, role, ca, parent) in [
        (&root_id, ROLE_ROOT, &root, None),
        (
            &intermediate_id,
            ROLE_INTERMEDIATE,
            &intermediate,
            Some(root_id.as_str()),
        ),
    ] {
        let material = ca.key_material().map_err(pki)?;
        let sealed_key = keys.store(id, &material).map_err(|e| {
            CreateError::Other(Error::CaKey {
                id: id.clone(),
                reason: e.to_string(),
            })
        })?;
        let row = NewRow {
            id,
            role,
            kind,
            cert_pem: ca.cert_pem(),
            state: CaState::Current,
            parent_id: parent,
        };
        insert_row(&txn, row, sealed_key, now).await?;
    }
    announce(&txn, version, BundleChangeReason::Init, now)
        .await
        .map_err(CreateError::Other)?;
    txn.commit().await?;
    Ok(CaSet {
        kind,
        root_id,
        root,
        intermediate_id,
        intermediate,
    })
}

/// A CA row to insert.
struct NewRow<'a> {
    id: &'a str,
    role: &'a str,
    kind: CaKind,
    cert_pem: &'a str,
    state: CaState,
    parent_id: Option<&'a str>,
}

async fn insert_row(
    txn: &impl ConnectionTrait,
    row: NewRow<'_>,
    sealed_key: Vec<u8>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    entity::ActiveModel {
        id: Set(row.id.to_owned()),
        role: Set(row.role.to_owned()),
        active: Set((row.state == CaState::Current).then_some(true)),
        cert_pem: Set(row.cert_pem.to_owned()),
        sealed_key: Set(sealed_key),
        created_at: Set(now),
        kind: Set(row.kind.as_str().to_owned()),
        state: Set(row.state.as_str().to_owned()),
        retire_until: Set(None),
        parent_id: Set(row.parent_id.map(str::to_owned)),
    }
    .insert(txn)
    .await
    .map(|_| ())
}

/// Every CA row, oldest first (roots before intermediates of the same moment).
pub(crate) async fn list(db: &DatabaseConnection) -> Result<Vec<CaInfo>, Error> {
    let rows = entity::Entity::find()
        .order_by_asc(entity::Column::CreatedAt)
        .order_by_desc(entity::Column::Role)
        .order_by_asc(entity::Column::Id)
        .all(db)
        .await?;
    rows.iter().map(describe).collect()
}

/// What `ca_list` says about one row; read from the certificate, no key is loaded.
pub(crate) fn describe(row: &entity::Model) -> Result<CaInfo, Error> {
    let kind = row_kind(row)?;
    let role = CaRole::from_name(&row.role)
        .ok_or_else(|| Error::CaState(format!("CA {} has unknown role {:?}", row.id, row.role)))?;
    let bad = |reason: String| Error::CaKey {
        id: row.id.clone(),
        reason,
    };
    let der = sigil_pki::pem::decode(&row.cert_pem, &["CERTIFICATE"]).map_err(bad)?;
    let facts =
        sigil_pki::certificate_facts(&der, Profile::TlsServer).map_err(|e| bad(e.to_string()))?;
    let mut algorithms = vec![facts.key_algorithm];
    if kind == CaKind::Hybrid
        && let Some(level) =
            sigil_pki::hybrid::subject_alt_key_level(&der).map_err(|e| bad(e.to_string()))?
    {
        algorithms.push(level.name().to_owned());
    }
    Ok(CaInfo {
        id: row.id.clone(),
        role,
        kind,
        algorithms,
        subject: facts.subject,
        not_before: facts.not_before,
        not_after: facts.not_after,
        active: row.active == Some(true),
        certificate_pem: row.cert_pem.clone(),
        state: Some(row_state(row)?),
        retire_until: row.retire_until,
    })
}

fn row_state(row: &entity::Model) -> Result<CaState, Error> {
    CaState::from_name(&row.state)
        .ok_or_else(|| Error::CaState(format!("CA {} has unknown state {:?}", row.id, row.state)))
}

fn has_state(row: &entity::Model, role: &str, state: CaState) -> bool {
    row.role == role && row.state == state.as_str()
}

const BUNDLE_TABLE: &str = "issuer_ca_bundle";

/// Bump the trust-bundle version and return the new one. Run it first in a slot
/// change's transaction: the row lock serializes slot changes.
async fn bump_version(txn: &impl ConnectionTrait) -> Result<u64, DbErr> {
    use sea_orm::sea_query::{Alias, Query};
    let backend = txn.get_database_backend();
    let (t, id, version) = (
        Alias::new(BUNDLE_TABLE),
        Alias::new("id"),
        Alias::new("version"),
    );
    let updated = txn
        .execute(
            backend.build(
                Query::update()
                    .table(t.clone())
                    .value(
                        version.clone(),
                        Expr::col(version.clone()).add(Expr::value(1i64)),
                    )
                    .and_where(Expr::col(id.clone()).eq(1i32)),
            ),
        )
        .await?;
    if updated.rows_affected() == 0 {
        let mut insert = Query::insert();
        insert
            .into_table(t)
            .columns([id, version])
            .values([1i32.into(), 1i64.into()])
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        txn.execute(backend.build(&insert)).await?;
    }
    read_version(txn).await
}

/// The current trust-bundle version (0 before the first hierarchy).
pub(crate) async fn read_version(conn: &impl ConnectionTrait) -> Result<u64, DbErr> {
    use sea_orm::sea_query::{Alias, Query};
    let backend = conn.get_database_backend();
    let row = conn
        .query_one(
            backend.build(
                Query::select()
                    .column(Alias::new("version"))
                    .from(Alias::new(BUNDLE_TABLE))
                    .and_where(Expr::col(Alias::new("id")).eq(1i32)),
            ),
        )
        .await?;
    match row {
        None => Ok(0),
        Some(row) => Ok(u64::try_from(row.try_get::<i64>("", "version")?).unwrap_or(0)),
    }
}

/// notAfter of a CA certificate.
pub(crate) fn cert_not_after(cert_pem: &str) -> Result<DateTime<Utc>, DbErr> {
    let der = sigil_pki::pem::decode(cert_pem, &["CERTIFICATE"]).map_err(DbErr::Custom)?;
    sigil_pki::certificate_facts(&der, Profile::TlsServer)
        .map(|f| f.not_after)
        .map_err(|e| DbErr::Custom(format!("CA certificate does not parse: {e}")))
}

/// How long a CA that stops signing now must be kept: [`retire_until`], unless a
/// leaf it signs is in flight.
///
/// A leaf whose signing is in flight (its `issuer_intent` row for this CA is still
/// `prepared`: recorded before signing, not yet recorded as issued, failed or
/// discarded) may still be handed out after this runs, and its notAfter is not known
/// yet; the issuer never lets a leaf outlive its CA, so then the CA's own notAfter is
/// the answer. An intent left `prepared` by a crash keeps the CA until its notAfter
/// too, which is safe (it may have been signed).
pub(crate) async fn retire_until_now(
    conn: &impl ConnectionTrait,
    ca_id: &str,
    cert_pem: &str,
) -> Result<DateTime<Utc>, DbErr> {
    use sea_orm::sea_query::{Alias, Query};
    let backend = conn.get_database_backend();
    let in_flight = conn
        .query_one(
            backend.build(
                Query::select()
                    .column(Alias::new("serial"))
                    .from(Alias::new("issuer_intent"))
                    .and_where(Expr::col(Alias::new("issuer_ca_id")).eq(ca_id))
                    .and_where(Expr::col(Alias::new("state")).eq(crate::issue::intent::PREPARED))
                    .limit(1),
            ),
        )
        .await?;
    if in_flight.is_some() {
        return cert_not_after(cert_pem);
    }
    retire_until(conn, ca_id, cert_pem).await
}

/// The latest notAfter of the leaves a CA issued (from `issuer_issuance`), or its own
/// notAfter when it issued none. (Migration m0004 backfills with this; a CA retired
/// by a live issuer gets [`retire_until_now`].)
pub(crate) async fn retire_until(
    conn: &impl ConnectionTrait,
    ca_id: &str,
    cert_pem: &str,
) -> Result<DateTime<Utc>, DbErr> {
    use sea_orm::sea_query::{Alias, Query};
    let backend = conn.get_database_backend();
    let rows = conn
        .query_all(
            backend.build(
                Query::select()
                    .column(Alias::new("facts"))
                    .from(Alias::new("issuer_issuance"))
                    .and_where(Expr::col(Alias::new("issuer_ca_id")).eq(ca_id)),
            ),
        )
        .await?;
    let mut latest: Option<DateTime<Utc>> = None;
    for row in rows {
        let facts: serde_json::Value = row.try_get("", "facts")?;
        let not_after: DateTime<Utc> = serde_json::from_value(facts["not_after"].clone())
            .map_err(|e| DbErr::Custom(format!("issuance facts of CA {ca_id}: {e}")))?;
        latest = Some(latest.map_or(not_after, |l| l.max(not_after)));
    }
    match latest {
        Some(latest) => Ok(latest),
        None => cert_not_after(cert_pem),
    }
}

/// Retire every current and next CA (ca_init with force): intermediates until their
/// last leaf expires, roots until the last of their intermediates is retired.
async fn retire_all(txn: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<(), DbErr> {
    let rows = entity::Entity::find().all(txn).await?;
    let live = |r: &&entity::Model| {
        r.state == CaState::Current.as_str() || r.state == CaState::Next.as_str()
    };
    let mut until_of = std::collections::HashMap::new();
    for row in rows
        .iter()
        .filter(live)
        .filter(|r| r.role == ROLE_INTERMEDIATE)
    {
        let until = retire_until_now(txn, &row.id, &row.cert_pem).await?;
        set_retired(txn, &row.id, until).await?;
        until_of.insert(row.id.clone(), until);
    }
    for root in rows.iter().filter(live).filter(|r| r.role == ROLE_ROOT) {
        let children = rows
            .iter()
            .filter(|r| r.parent_id.as_deref() == Some(root.id.as_str()))
            .map(|r| until_of.get(&r.id).copied().or(r.retire_until));
        let until = match children.flatten().max() {
            Some(until) => until,
            None => cert_not_after(&root.cert_pem)?,
        };
        set_retired(txn, &root.id, until).await?;
    }
    tracing::debug!(%now, retired = until_of.len(), "retired the live CA rows");
    Ok(())
}

async fn set_retired(
    txn: &impl ConnectionTrait,
    id: &str,
    until: DateTime<Utc>,
) -> Result<(), DbErr> {
    entity::Entity::update_many()
        .col_expr(entity::Column::Active, Expr::value(Option::<bool>::None))
        .col_expr(
            entity::Column::State,
            Expr::value(CaState::Retired.as_str()),
        )
        .col_expr(entity::Column::RetireUntil, Expr::value(Some(until)))
        .filter(entity::Column::Id.eq(id))
        .exec(txn)
        .await
        .map(|_| ())
}

/// What relying parties should trust at `now`: current and next CAs, retired ones
/// whose `retire_until` has not passed, and the roots of every intermediate listed.
pub(crate) async fn bundle(
    conn: &impl ConnectionTrait,
    version: u64,
    now: DateTime<Utc>,
) -> Result<TrustBundle, Error> {
    let rows = entity::Entity::find()
        .order_by_desc(entity::Column::CreatedAt)
        .order_by_asc(entity::Column::Id)
        .all(conn)
        .await?;
    let current = rows
        .iter()
        .find(|r| has_state(r, ROLE_INTERMEDIATE, CaState::Current))
        .ok_or_else(|| Error::CaState("no current intermediate CA".to_owned()))?;
    // Inclusive, as a certificate's notAfter is (RFC 5280 §4.1.2.5): the last leaf is
    // still valid at the instant `retire_until`, so its intermediate must still be here.
    let kept = |r: &entity::Model| r.retire_until.is_some_and(|until| until >= now);
    let by_state = |role: &'static str, state: CaState| {
        rows.iter()
            .filter(move |r| has_state(r, role, state))
            .filter(move |r| state != CaState::Retired || kept(r))
    };
    let intermediates: Vec<&entity::Model> = by_state(ROLE_INTERMEDIATE, CaState::Current)
        .chain(by_state(ROLE_INTERMEDIATE, CaState::Next))
        .chain(by_state(ROLE_INTERMEDIATE, CaState::Retired))
        .collect();
    let mut roots: Vec<&entity::Model> = by_state(ROLE_ROOT, CaState::Current)
        .chain(by_state(ROLE_ROOT, CaState::Retired))
        .collect();
    for parent in intermediates.iter().filter_map(|i| i.parent_id.as_deref()) {
        if !roots.iter().any(|r| r.id == parent)
            && let Some(root) = rows.iter().find(|r| r.id == parent)
        {
            roots.push(root);
        }
    }
    Ok(TrustBundle {
        version,
        kind: row_kind(current)?,
        roots: roots.iter().map(|r| r.cert_pem.clone()).collect(),
        intermediates: intermediates.iter().map(|r| r.cert_pem.clone()).collect(),
    })
}

/// Enqueue `ca.bundle_changed` with the bundle as of this transaction.
async fn announce(
    txn: &impl ConnectionTrait,
    version: u64,
    reason: BundleChangeReason,
    now: DateTime<Utc>,
) -> Result<TrustBundle, Error> {
    let bundle = bundle(txn, version, now).await?;
    let event = CloudEvent::new(
        &source_for(Service::Issuer),
        CaBundleChanged {
            reason,
            bundle: bundle.clone(),
        },
        now,
        sigil_telemetry::current_traceparent(),
    );
    sigil_store::outbox::enqueue(txn, &event).await?;
    tracing::info!(
        version,
        reason = ?reason,
        subject = %event.data.subject(),
        intermediates = bundle.intermediates.len(),
        roots = bundle.roots.len(),
        "trust bundle changed"
    );
    Ok(bundle)
}

/// Why a rotation step did not happen.
#[derive(Debug)]
pub(crate) enum RotateError {
    /// The slots are not in the state the step needs.
    Conflict(String),
    Other(Error),
}

impl From<Error> for RotateError {
    fn from(e: Error) -> Self {
        RotateError::Other(e)
    }
}

impl From<DbErr> for RotateError {
    fn from(e: DbErr) -> Self {
        RotateError::Other(Error::Database(e))
    }
}

impl From<PkiError> for RotateError {
    fn from(e: PkiError) -> Self {
        RotateError::Other(Error::Pki(e))
    }
}

/// Prepare: create the next intermediate under the current root, of the current
/// intermediate's kind and algorithms, and publish the bundle holding both.
pub(crate) async fn prepare(
    db: &DatabaseConnection,
    keys: &dyn KeyManager,
    name_prefix: &str,
    now: DateTime<Utc>,
) -> Result<(String, TrustBundle), RotateError> {
    let txn = db.begin().await?;
    let version = bump_version(&txn).await?;
    let rows = entity::Entity::find().all(&txn).await?;
    if let Some(next) = rows
        .iter()
        .find(|r| has_state(r, ROLE_INTERMEDIATE, CaState::Next))
    {
        return Err(RotateError::Conflict(format!(
            "intermediate {} is already prepared as next; activate it before preparing another",
            next.id
        )));
    }
    let current = rows
        .iter()
        .find(|r| has_state(r, ROLE_INTERMEDIATE, CaState::Current))
        .ok_or_else(|| Error::CaState("no current intermediate CA".to_owned()))?;
    let root = current
        .parent_id
        .as_deref()
        .and_then(|p| rows.iter().find(|r| r.id == p))
        .or_else(|| {
            rows.iter()
                .find(|r| has_state(r, ROLE_ROOT, CaState::Current))
        })
        .ok_or_else(|| Error::CaState("no root for the current intermediate".to_owned()))?;
    let kind = row_kind(current)?;
    let info = describe(current)?;
    let spec = CaSpec::parse(kind, Some(&info.algorithms.join("+"))).map_err(Error::CaState)?;
    let signer = unseal(keys, root, row_kind(root)?)?;
    let not_before = now - Duration::minutes(CA_BACKDATE_MINUTES);
    let not_after = (now + Duration::days(INTERMEDIATE_LIFETIME_DAYS)).min(signer.not_after());
    let next = spec.create_intermediate(
        &signer,
        &format!("{name_prefix} Intermediate CA"),
        not_before,
        not_after,
    )?;
    let id = uuid::Uuid::now_v7().to_string();
    let sealed_key = keys
        .store(&id, &next.key_material()?)
        .map_err(|e| Error::CaKey {
            id: id.clone(),
            reason: e.to_string(),
        })?;
    let row = NewRow {
        id: &id,
        role: ROLE_INTERMEDIATE,
        kind,
        cert_pem: next.cert_pem(),
        state: CaState::Next,
        parent_id: Some(&root.id),
    };
    insert_row(&txn, row, sealed_key, now).await?;
    let bundle = announce(&txn, version, BundleChangeReason::Prepare, now).await?;
    txn.commit().await?;
    tracing::info!(next = %id, %kind, "prepared the next intermediate CA");
    Ok((id, bundle))
}

/// Activate: the next intermediate becomes current, the current one is retired until
/// its last leaf expires; publishes the bundle. Returns the retired intermediate's id.
pub(crate) async fn activate(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
) -> Result<(Option<String>, TrustBundle), RotateError> {
    let txn = db.begin().await?;
    let version = bump_version(&txn).await?;
    let rows = entity::Entity::find().all(&txn).await?;
    let next = rows
        .iter()
        .find(|r| has_state(r, ROLE_INTERMEDIATE, CaState::Next))
        .ok_or_else(|| {
            RotateError::Conflict(
                "no next intermediate is prepared; run the prepare step first".to_owned(),
            )
        })?;
    let current = rows
        .iter()
        .find(|r| has_state(r, ROLE_INTERMEDIATE, CaState::Current));
    if let Some(current) = current {
        // Retire the row before reading its intents: the row lock this write takes
        // orders the activation after any intent recorded while holding that row, so
        // such an intent is seen by `retire_until_now`.
        set_retired(&txn, &current.id, cert_not_after(&current.cert_pem)?).await?;
        let until = retire_until_now(&txn, &current.id, &current.cert_pem).await?;
        set_retired(&txn, &current.id, until).await?;
    }
    entity::Entity::update_many()
        .col_expr(entity::Column::Active, Expr::value(Some(true)))
        .col_expr(
            entity::Column::State,
            Expr::value(CaState::Current.as_str()),
        )
        .filter(entity::Column::Id.eq(next.id.as_str()))
        .exec(&txn)
        .await?;
    let bundle = announce(&txn, version, BundleChangeReason::Activate, now).await?;
    txn.commit().await?;
    let retired = current.map(|c| c.id.clone());
    tracing::warn!(current = %next.id, retired = ?retired, "activated the next intermediate CA");
    Ok((retired, bundle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SealedKeys;
    use sigil_pki::Kek;

    const SPEC: CaSpec = CaSpec::Classical(KeyAlgorithm::EcdsaP256);

    async fn db() -> (tempfile::TempDir, DatabaseConnection) {
        let dir = tempfile::tempdir().unwrap();
        let url = sigil_store::sqlite_url(&dir.path().join("issuer.db"));
        let db = sigil_store::open::<crate::Migrator>(&url, "issuer")
            .await
            .unwrap();
        (dir, db)
    }

    /// [`db`], CA keys sealed under a fresh KEK, and the time to create CAs at.
    async fn setup() -> (
        tempfile::TempDir,
        DatabaseConnection,
        SealedKeys,
        chrono::DateTime<Utc>,
    ) {
        let (dir, db) = db().await;
        (dir, db, SealedKeys::new(Kek::generate()), Utc::now())
    }

    #[tokio::test]
    async fn a_second_hierarchy_loses_on_the_unique_index() {
        let (_dir, db, keys, now) = setup().await;
        let first = create(&db, &keys, SPEC, "T", now, false)
            .await
            .ok()
            .unwrap();
        assert!(matches!(
            create(&db, &keys, SPEC, "T", now, false).await,
            Err(CreateError::Lost)
        ));
        let loaded = load_or_create(&db, &keys, SPEC, "T", now).await.unwrap();
        assert_eq!(loaded.root_id, first.root_id);
        assert_eq!(
            loaded.intermediate.cert_pem(),
            first.intermediate.cert_pem()
        );
        assert_eq!(loaded.chain_pem(), first.chain_pem());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_first_starts_agree() {
        let (_dir, db) = db().await;
        let keys = SealedKeys::new(Kek::generate());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (db, keys) = (db.clone(), keys.clone());
            tasks.spawn(async move {
                load_or_create(&db, &keys, SPEC, "T", Utc::now())
                    .await
                    .unwrap()
                    .root_id
            });
        }
        let mut ids = std::collections::BTreeSet::new();
        while let Some(id) = tasks.join_next().await {
            ids.insert(id.unwrap());
        }
        assert_eq!(ids.len(), 1);
        assert_eq!(entity::Entity::find().all(&db).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_wrong_kek_is_reported_not_ignored() {
        let (_dir, db) = db().await;
        let spec = CaSpec::Hybrid(KeyAlgorithm::EcdsaP256, MlDsaLevel::L65);
        load_or_create(
            &db,
            &SealedKeys::new(Kek::generate()),
            spec,
            "T",
            Utc::now(),
        )
        .await
        .unwrap();
        let err = load_or_create(
            &db,
            &SealedKeys::new(Kek::generate()),
            spec,
            "T",
            Utc::now(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::CaKey { .. }), "{err}");
    }

    #[tokio::test]
    async fn every_kind_round_trips_and_lists() {
        let (_dir, db, keys, now) = setup().await;
        for kind in CaKind::ALL {
            let spec = CaSpec::parse(kind, None).unwrap();
            let created = create(&db, &keys, spec, "T", now, true).await.ok().unwrap();
            let loaded = load_active(&db, &keys).await.unwrap().unwrap();
            assert_eq!(loaded.kind, kind);
            assert_eq!(loaded.chain_pem(), created.chain_pem());
        }
        let listed = list(&db).await.unwrap();
        assert_eq!(listed.len(), 8);
        assert_eq!(listed.iter().filter(|c| c.active).count(), 2);
        let algorithms: Vec<(CaKind, Vec<String>)> = listed
            .iter()
            .filter(|c| c.role == CaRole::Root)
            .map(|c| (c.kind, c.algorithms.clone()))
            .collect();
        assert_eq!(
            algorithms,
            [
                (CaKind::Classical, vec!["ecdsa-p256".to_owned()]),
                (
                    CaKind::Hybrid,
                    vec!["ecdsa-p256".to_owned(), "ML-DSA-65".to_owned()]
                ),
                (
                    CaKind::Composite,
                    vec!["MLDSA65-ECDSA-P256-SHA512".to_owned()]
                ),
                (CaKind::Mldsa, vec!["ML-DSA-65".to_owned()]),
            ]
        );
    }

    #[tokio::test]
    async fn slots_migration_maps_active_to_current_and_retires_the_rest() {
        use sea_orm_migration::MigratorTrait as _;
        let (dir, db, keys, now) = setup().await;
        let first = create(&db, &keys, SPEC, "T", now, false)
            .await
            .ok()
            .unwrap();
        let second = create(&db, &keys, SPEC, "T", now + Duration::seconds(1), true)
            .await
            .ok()
            .unwrap();
        assert_eq!(read_version(&db).await.unwrap(), 2);
        // Back to the schema before slots, then forward again: the backfill runs on
        // rows that exist.
        let all = crate::Migrator::migrations();
        let slots = all
            .iter()
            .position(|m| m.name() == "m0004_issuer_ca_slots")
            .unwrap();
        let steps = u32::try_from(all.len() - slots).unwrap();
        crate::Migrator::down(&db, Some(steps)).await.unwrap();
        // Forward again on fresh connections, as a restarted issuer would: a pooled
        // SQLite connection that has not yet read the changed schema may still see the
        // dropped column (seen once in 40 runs under load as "duplicate column name").
        db.close().await.unwrap();
        let url = sigil_store::sqlite_url(&dir.path().join("issuer.db"));
        let db = sigil_store::open::<crate::Migrator>(&url, "issuer")
            .await
            .unwrap();
        crate::Migrator::up(&db, None).await.unwrap();
        let listed = list(&db).await.unwrap();
        let state = |id: &str| {
            let c = listed.iter().find(|c| c.id == id).unwrap();
            (c.state, c.retire_until.is_some())
        };
        assert_eq!(state(&first.root_id), (Some(CaState::Retired), true));
        assert_eq!(
            state(&first.intermediate_id),
            (Some(CaState::Retired), true)
        );
        assert_eq!(state(&second.root_id), (Some(CaState::Current), false));
        assert_eq!(
            state(&second.intermediate_id),
            (Some(CaState::Current), false)
        );
        // No leaves: the retired intermediate is kept until its own notAfter.
        let old = listed
            .iter()
            .find(|c| c.id == first.intermediate_id)
            .unwrap();
        assert_eq!(old.retire_until, Some(old.not_after));
        let bundle = bundle(&db, read_version(&db).await.unwrap(), now)
            .await
            .unwrap();
        assert_eq!(bundle.version, 1);
        assert_eq!(bundle.intermediates.len(), 2);
        assert_eq!(bundle.roots.len(), 2);
        assert_eq!(bundle.intermediates[0], second.intermediate.cert_pem());
        assert_eq!(bundle.roots[0], second.root.cert_pem());
    }

    #[test]
    fn specs_parse_names_and_refuse_mismatches() {
        let ok = [
            (
                CaKind::Hybrid,
                None,
                CaSpec::Hybrid(KeyAlgorithm::EcdsaP256, MlDsaLevel::L65),
            ),
            (
                CaKind::Hybrid,
                Some("P-384+ML-DSA-87"),
                CaSpec::Hybrid(KeyAlgorithm::EcdsaP384, MlDsaLevel::L87),
            ),
            (
                CaKind::Classical,
                Some("ecdsa-p384"),
                CaSpec::Classical(KeyAlgorithm::EcdsaP384),
            ),
            (
                CaKind::Composite,
                Some("MLDSA87-ECDSA-P384-SHA512"),
                CaSpec::Composite(CompositeAlg::MlDsa87EcdsaP384Sha512),
            ),
            (
                CaKind::Mldsa,
                Some("mldsa44"),
                CaSpec::Mldsa(MlDsaLevel::L44),
            ),
        ];
        for (kind, alg, spec) in ok {
            assert_eq!(CaSpec::parse(kind, alg).unwrap(), spec, "{kind} {alg:?}");
            assert_eq!(spec.kind(), kind);
        }
        for (kind, alg) in [
            (CaKind::Hybrid, "p256"),
            (CaKind::Hybrid, "ed25519+mldsa65"),
            (CaKind::Classical, "mldsa65"),
            (CaKind::Composite, "p256"),
            (CaKind::Mldsa, "mldsa99"),
        ] {
            let err = CaSpec::parse(kind, Some(alg)).unwrap_err();
            assert!(err.contains(alg) && err.contains(kind.as_str()), "{err}");
        }
    }
}
