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
//! not a staged rotation (current/next slots come later).

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait as _, QueryFilter as _, QueryOrder as _, Set, SqlErr, TransactionTrait as _,
};
use sigil_contracts::issuer::{CaInfo, CaRole};
use sigil_contracts::types::{CaKind, KeyAlgorithm, Profile};
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
    if retire {
        entity::Entity::update_many()
            .col_expr(entity::Column::Active, Expr::value(Option::<bool>::None))
            .filter(entity::Column::Active.eq(true))
            .exec(&txn)
            .await?;
    }
    for (id, role, ca) in [
        (&root_id, ROLE_ROOT, &root),
        (&intermediate_id, ROLE_INTERMEDIATE, &intermediate),
    ] {
        let material = ca.key_material().map_err(pki)?;
        let sealed_key = keys.store(id, &material).map_err(|e| {
            CreateError::Other(Error::CaKey {
                id: id.clone(),
                reason: e.to_string(),
            })
        })?;
        insert_row(&txn, id, role, kind, ca.cert_pem(), sealed_key, now).await?;
    }
    txn.commit().await?;
    Ok(CaSet {
        kind,
        root_id,
        root,
        intermediate_id,
        intermediate,
    })
}

async fn insert_row(
    txn: &impl ConnectionTrait,
    id: &str,
    role: &str,
    kind: CaKind,
    cert_pem: &str,
    sealed_key: Vec<u8>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    entity::ActiveModel {
        id: Set(id.to_owned()),
        role: Set(role.to_owned()),
        active: Set(Some(true)),
        cert_pem: Set(cert_pem.to_owned()),
        sealed_key: Set(sealed_key),
        created_at: Set(now),
        kind: Set(kind.as_str().to_owned()),
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
    })
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

    #[tokio::test]
    async fn a_second_hierarchy_loses_on_the_unique_index() {
        let (_dir, db) = db().await;
        let keys = SealedKeys::new(Kek::generate());
        let now = Utc::now();
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
        let (_dir, db) = db().await;
        let keys = SealedKeys::new(Kek::generate());
        let now = Utc::now();
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
