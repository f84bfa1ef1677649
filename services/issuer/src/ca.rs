//! The CA hierarchy: a root and one intermediate, created on first start and kept in
//! the `issuer_ca` table with their private keys sealed by the KEK.
//!
//! Each row holds a CA certificate and its PKCS#8 key sealed with
//! [`Kek::seal`](sigil_pki::Kek::seal), the row id as associated data (so a sealed key
//! cannot be moved to another row). The active CA of each role has `active = true`;
//! a unique index on `(role, active)` lets only one row per role be active (retired rows
//! will hold `NULL`, which unique indexes do not compare). Two issuers starting at once
//! against an empty database both generate a hierarchy, but only the first transaction
//! commits; the other hits the unique index, discards its keys and loads the winner's.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseConnection, DbErr, EntityTrait as _,
    QueryFilter as _, Set, SqlErr, TransactionTrait as _,
};
use sigil_contracts::types::KeyAlgorithm;
use sigil_pki::{CaMaterial, Kek, SecretKey};

use crate::Error;

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
/// Key algorithm of new CAs.
const CA_KEY_ALGORITHM: KeyAlgorithm = KeyAlgorithm::EcdsaP256;

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
        /// PKCS#8 private key sealed with the KEK, associated data = `id`.
        pub sealed_key: Vec<u8>,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The active hierarchy, loaded and unsealed.
#[derive(Debug, Clone)]
pub struct CaSet {
    pub root_id: String,
    pub root: CaMaterial,
    pub intermediate_id: String,
    pub intermediate: CaMaterial,
}

impl CaSet {
    /// Issuing chain as sent to clients: intermediate first, root last.
    pub fn chain_pem(&self) -> Vec<String> {
        vec![
            self.intermediate.cert_pem.clone(),
            self.root.cert_pem.clone(),
        ]
    }
}

/// Load the active hierarchy, creating one first if the table has none.
pub(crate) async fn load_or_create(
    db: &DatabaseConnection,
    kek: Kek,
    name_prefix: &str,
    now: DateTime<Utc>,
) -> Result<CaSet, Error> {
    let kek = &kek;
    if let Some(set) = load_active(db, kek).await? {
        return Ok(set);
    }
    match create(db, kek, name_prefix, now).await {
        Ok(set) => {
            tracing::info!(
                root = %set.root.subject(),
                intermediate = %set.intermediate.subject(),
                "created a new CA hierarchy"
            );
            Ok(set)
        }
        Err(CreateError::Lost) => {
            tracing::info!("another issuer created the CA hierarchy first; using it");
            load_active(db, kek).await?.ok_or_else(|| {
                Error::CaState("CA rows conflicted on creation but none is active".to_owned())
            })
        }
        Err(CreateError::Other(e)) => Err(e),
    }
}

async fn load_active(db: &DatabaseConnection, kek: &Kek) -> Result<Option<CaSet>, Error> {
    let rows = entity::Entity::find()
        .filter(entity::Column::Active.eq(true))
        .all(db)
        .await?;
    let root = rows.iter().find(|r| r.role == ROLE_ROOT);
    let intermediate = rows.iter().find(|r| r.role == ROLE_INTERMEDIATE);
    match (root, intermediate) {
        (None, None) => Ok(None),
        (Some(root), Some(intermediate)) => Ok(Some(CaSet {
            root_id: root.id.clone(),
            root: unseal(kek, root)?,
            intermediate_id: intermediate.id.clone(),
            intermediate: unseal(kek, intermediate)?,
        })),
        _ => Err(Error::CaState(
            "the database has an active root or intermediate CA but not both".to_owned(),
        )),
    }
}

fn unseal(kek: &Kek, row: &entity::Model) -> Result<CaMaterial, Error> {
    let pkcs8 = kek.open(&row.sealed_key, row.id.as_bytes()).map_err(|_| Error::CaKey {
        id: row.id.clone(),
        reason: "cannot unseal the private key: wrong KEK (SIGIL_KEK or the kek file) for this database?"
            .to_owned(),
    })?;
    CaMaterial::from_parts(&row.cert_pem, SecretKey::from_pkcs8_der(pkcs8)).map_err(|e| {
        Error::CaKey {
            id: row.id.clone(),
            reason: e.to_string(),
        }
    })
}

enum CreateError {
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

async fn create(
    db: &DatabaseConnection,
    kek: &Kek,
    name_prefix: &str,
    now: DateTime<Utc>,
) -> Result<CaSet, CreateError> {
    let pki = |e: sigil_pki::PkiError| CreateError::Other(Error::Pki(e));
    let not_before = now - Duration::minutes(CA_BACKDATE_MINUTES);
    let root = sigil_pki::create_root(
        &format!("{name_prefix} Root CA"),
        CA_KEY_ALGORITHM,
        not_before,
        now + Duration::days(ROOT_LIFETIME_DAYS),
    )
    .map_err(pki)?;
    let intermediate = sigil_pki::create_intermediate(
        &root,
        &format!("{name_prefix} Intermediate CA"),
        CA_KEY_ALGORITHM,
        not_before,
        now + Duration::days(INTERMEDIATE_LIFETIME_DAYS),
    )
    .map_err(pki)?;
    let root_id = uuid::Uuid::now_v7().to_string();
    let intermediate_id = uuid::Uuid::now_v7().to_string();

    let txn = db.begin().await?;
    for (id, role, ca) in [
        (&root_id, ROLE_ROOT, &root),
        (&intermediate_id, ROLE_INTERMEDIATE, &intermediate),
    ] {
        let sealed_key = kek.seal(ca.key.pkcs8_der(), id.as_bytes()).map_err(pki)?;
        entity::ActiveModel {
            id: Set(id.clone()),
            role: Set(role.to_owned()),
            active: Set(Some(true)),
            cert_pem: Set(ca.cert_pem.clone()),
            sealed_key: Set(sealed_key),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(CaSet {
        root_id,
        root,
        intermediate_id,
        intermediate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let kek = Kek::generate();
        let now = Utc::now();
        let first = create(&db, &kek, "T", now).await.ok().unwrap();
        assert!(matches!(
            create(&db, &kek, "T", now).await,
            Err(CreateError::Lost)
        ));
        let loaded = load_or_create(&db, kek.clone(), "T", now).await.unwrap();
        assert_eq!(loaded.root_id, first.root_id);
        assert_eq!(loaded.intermediate.cert_pem, first.intermediate.cert_pem);
        assert_eq!(loaded.chain_pem(), first.chain_pem());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_first_starts_agree() {
        let (_dir, db) = db().await;
        let kek = Kek::generate();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (db, kek) = (db.clone(), kek.clone());
            tasks.spawn(async move {
                load_or_create(&db, kek, "T", Utc::now())
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
        load_or_create(&db, Kek::generate(), "T", Utc::now())
            .await
            .unwrap();
        let err = load_or_create(&db, Kek::generate(), "T", Utc::now())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::CaKey { .. }), "{err}");
    }
}
