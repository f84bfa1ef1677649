//! Versioned policy storage: table `policy_versions` (plus the shared outbox), and the
//! [`Migrator`] of every table of the policy database (audit log, inbox, the
//! authentication tables `credentials` and `token_keys`).
//!
//! History only grows: `apply` and `rollback` both append a version, and the highest
//! version is the active one, so "which version is active" is one indexed `MAX` that
//! every replica can poll cheaply, and a rollback is itself a visible, audited change.
//! Each append and its `policy.changed` event are one transaction (outbox). Two
//! replicas appending at once race on the primary key; the loser retries with the
//! next number.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseConnection, DbErr, EntityTrait, QueryOrder,
    QuerySelect, SqlErr, TransactionTrait,
};
use sea_orm_migration::prelude::*;
use sigil_contracts::CloudEvent;
use sigil_contracts::event::{PolicyChanged, source_for};
use sigil_contracts::policy::{PolicyDocument, PolicyOrigin, PolicyVersion};
use sigil_contracts::subjects::Service;
use sigil_store::outbox;

/// Attempts at appending when replicas race for the next version number.
const APPEND_ATTEMPTS: usize = 5;

/// The `policy_versions` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "policy_versions")]
    pub struct Model {
        /// 1, 2, 3…; the highest is active.
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i64,
        /// Cedar policies.
        #[sea_orm(column_type = "Text")]
        pub policies: String,
        /// Cedar entities JSON (group memberships), if any.
        #[sea_orm(column_type = "Text", nullable)]
        pub entities: Option<String>,
        pub sha256: String,
        pub created_at: ChronoDateTimeUtc,
        pub created_by: String,
        pub comment: Option<String>,
        /// seeded, applied or rolled_back.
        pub origin: String,
        pub restored_from: Option<i64>,
        pub policy_count: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Runs every migration of the policy database, in order.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(sigil_store::outbox::Migration),
            Box::new(CreateVersions),
            Box::new(crate::audit::CreateAudit),
            Box::new(sigil_store::inbox::Migration),
            Box::new(crate::authn::CreateCredentials),
        ]
    }
}

#[derive(DeriveIden)]
enum PolicyVersions {
    Table,
    Version,
    Policies,
    Entities,
    Sha256,
    CreatedAt,
    CreatedBy,
    Comment,
    Origin,
    RestoredFrom,
    PolicyCount,
}

#[derive(Debug)]
struct CreateVersions;

impl MigrationName for CreateVersions {
    fn name(&self) -> &str {
        "m0001_policy_versions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateVersions {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PolicyVersions::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(PolicyVersions::Version)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(PolicyVersions::Policies).text().not_null())
                    .col(ColumnDef::new(PolicyVersions::Entities).text().null())
                    .col(ColumnDef::new(PolicyVersions::Sha256).string().not_null())
                    .col(
                        ColumnDef::new(PolicyVersions::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PolicyVersions::CreatedBy)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(PolicyVersions::Comment).string().null())
                    .col(ColumnDef::new(PolicyVersions::Origin).string().not_null())
                    .col(
                        ColumnDef::new(PolicyVersions::RestoredFrom)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(PolicyVersions::PolicyCount)
                            .integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PolicyVersions::Table).to_owned())
            .await
    }
}

/// A version to append.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub policies: String,
    pub entities: Option<String>,
    pub created_by: String,
    pub comment: Option<String>,
    pub origin: PolicyOrigin,
    pub restored_from: Option<u64>,
    pub policy_count: usize,
}

/// SHA-256 (hex) of a version's text: the policies, a NUL, the entities JSON.
pub fn fingerprint(policies: &str, entities: Option<&str>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(policies.as_bytes());
    ctx.update(b"\0");
    ctx.update(entities.unwrap_or("").as_bytes());
    hex::encode(ctx.finish())
}

/// The active (highest) version number, if any.
pub async fn active_version(db: &DatabaseConnection) -> Result<Option<u64>, DbErr> {
    let top = entity::Entity::find()
        .select_only()
        .column(entity::Column::Version)
        .order_by_desc(entity::Column::Version)
        .limit(1)
        .into_tuple::<i64>()
        .one(db)
        .await?;
    Ok(top.and_then(|v| <u64 as TryFrom<_>>::try_from(v).ok()))
}

/// One stored version with its text.
pub async fn load(db: &DatabaseConnection, version: u64) -> Result<Option<entity::Model>, DbErr> {
    let Ok(v) = <i64 as TryFrom<_>>::try_from(version) else {
        return Ok(None);
    };
    entity::Entity::find_by_id(v).one(db).await
}

/// The newest `limit` versions, newest first (without their text).
pub async fn list(db: &DatabaseConnection, limit: u64) -> Result<Vec<entity::Model>, DbErr> {
    entity::Entity::find()
        .order_by_desc(entity::Column::Version)
        .limit(limit)
        .all(db)
        .await
}

/// Append `new` as the next version and enqueue its `policy.changed`, in one
/// transaction. `only_if_empty`: append only when no version exists (first-start
/// seeding); answers `None` when another replica seeded first.
pub async fn append(
    db: &DatabaseConnection,
    new: &NewVersion,
    now: DateTime<Utc>,
    only_if_empty: bool,
) -> Result<Option<entity::Model>, DbErr> {
    let mut last_err = None;
    for _ in 0..APPEND_ATTEMPTS {
        let previous = active_version(db).await?;
        if only_if_empty && previous.is_some() {
            return Ok(None);
        }
        let next = previous.unwrap_or(0) + 1;
        match try_append(db, new, now, previous, next).await {
            Ok(model) => return Ok(Some(model)),
            // A replica took this number (primary key): try the next one.
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                last_err = Some(e)
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| DbErr::Custom("cannot append a policy version".into())))
}

async fn try_append(
    db: &DatabaseConnection,
    new: &NewVersion,
    now: DateTime<Utc>,
    previous: Option<u64>,
    next: u64,
) -> Result<entity::Model, DbErr> {
    let version = <i64 as TryFrom<_>>::try_from(next).map_err(|e| DbErr::Custom(e.to_string()))?;
    let sha256 = fingerprint(&new.policies, new.entities.as_deref());
    let now = now.trunc_subsecs(6);
    let txn = db.begin().await?;
    let model = entity::ActiveModel {
        version: Set(version),
        policies: Set(new.policies.clone()),
        entities: Set(new.entities.clone()),
        sha256: Set(sha256.clone()),
        created_at: Set(now),
        created_by: Set(new.created_by.clone()),
        comment: Set(new.comment.clone()),
        origin: Set(new.origin.as_str().to_owned()),
        restored_from: Set(new
            .restored_from
            .and_then(|v| <i64 as TryFrom<_>>::try_from(v).ok())),
        policy_count: Set(<i32 as TryFrom<_>>::try_from(new.policy_count).unwrap_or(i32::MAX)),
    }
    .insert(&txn)
    .await?;
    let event = CloudEvent::new(
        &source_for(Service::Policy),
        PolicyChanged {
            version: next,
            previous,
            origin: new.origin,
            restored_from: new.restored_from,
            sha256,
            changed_by: new.created_by.clone(),
        },
        now,
        None,
    );
    outbox::enqueue(&txn, &event).await?;
    txn.commit().await?;
    Ok(model)
}

/// The wire summary of a stored version.
pub fn summary(m: &entity::Model, active: Option<u64>) -> PolicyVersion {
    let version = <u64 as TryFrom<_>>::try_from(m.version).unwrap_or(0);
    PolicyVersion {
        version,
        sha256: m.sha256.clone(),
        created_at: m.created_at,
        created_by: m.created_by.clone(),
        comment: m.comment.clone(),
        origin: PolicyOrigin::from_name(&m.origin).unwrap_or(PolicyOrigin::Applied),
        restored_from: m
            .restored_from
            .and_then(|v| <u64 as TryFrom<_>>::try_from(v).ok()),
        policy_count: <u32 as TryFrom<_>>::try_from(m.policy_count).unwrap_or(0),
        active: active == Some(version),
    }
}

/// The wire document of a stored version.
pub fn document(m: &entity::Model, active: Option<u64>) -> PolicyDocument {
    PolicyDocument {
        version: summary(m, active),
        policies: m.policies.clone(),
        entities: m.entities.clone(),
    }
}
