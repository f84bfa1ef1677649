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
