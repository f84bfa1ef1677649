//! The issuer's schema: its own tables plus the shared outbox.

use sea_orm::DbErr;
use sea_orm_migration::prelude::*;

/// Every migration of the issuer's database, in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(sigil_store::outbox::Migration),
            Box::new(CreateCa),
            Box::new(CreateIssuance),
            Box::new(AddCaKind),
            Box::new(AddCaSlots),
            Box::new(crate::issue::intent::CreateIntent),
        ]
    }
}

/// `issuer_ca`: CA certificates with sealed keys; one active row per role.
struct CreateCa;

impl MigrationName for CreateCa {
    fn name(&self) -> &str {
        "m0001_issuer_ca"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateCa {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let t = Alias::new("issuer_ca");
        manager
            .create_table(
                Table::create()
                    .table(t.clone())
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Alias::new("id"))
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Alias::new("role")).string().not_null())
                    .col(ColumnDef::new(Alias::new("active")).boolean().null())
                    .col(ColumnDef::new(Alias::new("cert_pem")).text().not_null())
                    .col(ColumnDef::new(Alias::new("sealed_key")).blob().not_null())
                    .col(
                        ColumnDef::new(Alias::new("created_at"))
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_issuer_ca_active_role")
                    .table(t)
                    .col(Alias::new("role"))
                    .col(Alias::new("active"))
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("issuer_ca")).to_owned())
            .await
    }
}

/// `issuer_issuance`: every certificate signed, keyed by serial.
struct CreateIssuance;

impl MigrationName for CreateIssuance {
    fn name(&self) -> &str {
        "m0002_issuer_issuance"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateIssuance {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let t = Alias::new("issuer_issuance");
        manager
            .create_table(
                Table::create()
                    .table(t.clone())
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Alias::new("serial"))
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Alias::new("idempotency_key"))
                            .string()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Alias::new("request_sha256"))
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Alias::new("profile")).string().not_null())
                    .col(
                        ColumnDef::new(Alias::new("requested_by"))
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Alias::new("key_source")).string().not_null())
                    .col(
                        ColumnDef::new(Alias::new("issuer_ca_id"))
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Alias::new("certificate_pem"))
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Alias::new("chain_pem")).json().not_null())
                    .col(ColumnDef::new(Alias::new("facts")).json().not_null())
                    .col(
                        ColumnDef::new(Alias::new("ttl_seconds"))
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Alias::new("notes")).json().not_null())
                    .col(
                        ColumnDef::new(Alias::new("created_at"))
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_issuer_issuance_idempotency_key")
                    .table(t)
                    .col(Alias::new("idempotency_key"))
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Alias::new("issuer_issuance"))
                    .to_owned(),
            )
            .await
    }
}

/// `issuer_ca.kind` and `issuer_issuance.ca_kind`: which kind of CA a row is, or
/// signed an issuance. Rows written before CA kinds existed were classical.
struct AddCaKind;

impl MigrationName for AddCaKind {
    fn name(&self) -> &str {
        "m0003_issuer_ca_kind"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddCaKind {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite adds only one at a time.
        for (table, column) in [("issuer_ca", "kind"), ("issuer_issuance", "ca_kind")] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .add_column(
                            ColumnDef::new(Alias::new(column))
                                .string()
                                .not_null()
                                .default("classical"),
                        )
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, column) in [("issuer_ca", "kind"), ("issuer_issuance", "ca_kind")] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

/// Current/next/retired slots (see [`crate::ca`]): `issuer_ca.state`, `retire_until`
/// and `parent_id` (an intermediate's root), and the one-row `issuer_ca_bundle` table
/// holding the trust-bundle version. Existing rows: active → `current`, the rest
/// `retired` until the latest notAfter of the leaves they issued (or their own
/// notAfter); an intermediate's root is the root created with it.
struct AddCaSlots;

impl MigrationName for AddCaSlots {
    fn name(&self) -> &str {
        "m0004_issuer_ca_slots"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddCaSlots {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let t = Alias::new("issuer_ca");
        // One column per ALTER: SQLite adds only one at a time.
        for column in [
            ColumnDef::new(Alias::new("state"))
                .string()
                .not_null()
                .default("retired")
                .to_owned(),
            ColumnDef::new(Alias::new("retire_until"))
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(Alias::new("parent_id"))
                .string()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(t.clone())
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("issuer_ca_bundle"))
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Alias::new("id"))
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Alias::new("version"))
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;

        let db = manager.get_connection();
        let backend = db.get_database_backend();
        db.execute(
            backend.build(
                Query::update()
                    .table(t.clone())
                    .value(Alias::new("state"), "current")
                    .and_where(Expr::col(Alias::new("active")).eq(true)),
            ),
        )
        .await?;
        let rows = db
            .query_all(
                backend.build(
                    Query::select()
                        .columns([
                            Alias::new("id"),
                            Alias::new("role"),
                            Alias::new("active"),
                            Alias::new("cert_pem"),
                            Alias::new("created_at"),
                        ])
                        .from(t.clone()),
                ),
            )
            .await?;
        struct Row {
            id: String,
            role: String,
            active: bool,
            cert_pem: String,
            created_at: chrono::DateTime<chrono::Utc>,
        }
        let rows = rows
            .iter()
            .map(|r| {
                Ok(Row {
                    id: r.try_get("", "id")?,
                    role: r.try_get("", "role")?,
                    active: r.try_get::<Option<bool>>("", "active")? == Some(true),
                    cert_pem: r.try_get("", "cert_pem")?,
                    created_at: r.try_get("", "created_at")?,
                })
            })
            .collect::<Result<Vec<Row>, DbErr>>()?;
        let mut root_until = std::collections::HashMap::new();
        for row in rows
            .iter()
            .filter(|r| r.role == crate::ca::ROLE_INTERMEDIATE)
        {
            let parent = rows
                .iter()
                .find(|r| r.role == crate::ca::ROLE_ROOT && r.created_at == row.created_at);
            let mut update = Query::update();
            update.table(t.clone());
            if let Some(parent) = parent {
                update.value(Alias::new("parent_id"), parent.id.clone());
            }
            if !row.active {
                let until = crate::ca::retire_until(db, &row.id, &row.cert_pem).await?;
                update.value(Alias::new("retire_until"), until);
                if let Some(parent) = parent {
                    let entry = root_until.entry(parent.id.clone()).or_insert(until);
                    *entry = (*entry).max(until);
                }
            }
            if parent.is_some() || !row.active {
                update.and_where(Expr::col(Alias::new("id")).eq(row.id.clone()));
                db.execute(backend.build(&update)).await?;
            }
        }
        for row in rows
            .iter()
            .filter(|r| r.role == crate::ca::ROLE_ROOT && !r.active)
        {
            let until = match root_until.get(&row.id) {
                Some(until) => *until,
                None => crate::ca::cert_not_after(&row.cert_pem)?,
            };
            db.execute(
                backend.build(
                    Query::update()
                        .table(t.clone())
                        .value(Alias::new("retire_until"), until)
                        .and_where(Expr::col(Alias::new("id")).eq(row.id.clone())),
                ),
            )
            .await?;
        }
        // Version 1 for an existing hierarchy; a fresh database starts at 0 and its
        // first hierarchy makes it 1.
        let version: i64 = if rows.is_empty() { 0 } else { 1 };
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new("issuer_ca_bundle"))
            .columns([Alias::new("id"), Alias::new("version")])
            .values([1i32.into(), version.into()])
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        db.execute(backend.build(&insert)).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Alias::new("issuer_ca_bundle"))
                    .to_owned(),
            )
            .await?;
        for column in ["parent_id", "retire_until", "state"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("issuer_ca"))
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
