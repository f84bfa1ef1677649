//! The revocation service's schema: its own two tables plus the shared outbox and inbox.
//!
//! - `m0001_revocation_tables`: `known_certificates` and `revocations`.
//! - `m0002_known_certificate_facts`: what policy is told about a certificate someone
//!   asks to revoke (profile, names, key algorithm, CA kind), on `known_certificates`.
//!   Nullable: rows recorded before it have none, and are described to policy without
//!   names.

use sea_orm_migration::prelude::*;

/// Runs every migration of the revocation database, in order.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(sigil_store::outbox::Migration),
            Box::new(sigil_store::inbox::Migration),
            Box::new(CreateTables),
            Box::new(AddKnownCertificateFacts),
        ]
    }
}

#[derive(DeriveIden)]
enum KnownCertificates {
    Table,
    Serial,
    Issuer,
    NotAfter,
    RecordedAt,
}

#[derive(DeriveIden)]
enum Revocations {
    Table,
    Serial,
    Issuer,
    Reason,
    ReasonCode,
    RevokedAt,
    RevokedBy,
    NotAfter,
}

/// `known_certificates` and `revocations`, shaped so CRLs (per issuer, by revocation
/// date) and OCSP (by serial) can be served from them later.
#[derive(Debug)]
struct CreateTables;

impl MigrationName for CreateTables {
    fn name(&self) -> &str {
        "m0001_revocation_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KnownCertificates::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(KnownCertificates::Serial)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(KnownCertificates::Issuer)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(KnownCertificates::NotAfter)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(KnownCertificates::RecordedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Revocations::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Revocations::Serial)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Revocations::Issuer).string().not_null())
                    .col(ColumnDef::new(Revocations::Reason).string().not_null())
                    .col(
                        ColumnDef::new(Revocations::ReasonCode)
                            .small_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Revocations::RevokedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Revocations::RevokedBy).string().not_null())
                    .col(
                        ColumnDef::new(Revocations::NotAfter)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // A CRL for one issuer lists its revocations in date order.
        manager
            .create_index(
                Index::create()
                    .name("idx_revocations_issuer_revoked_at")
                    .table(Revocations::Table)
                    .col(Revocations::Issuer)
                    .col(Revocations::RevokedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Revocations::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(KnownCertificates::Table).to_owned())
            .await
    }
}

/// Profile, names, key algorithm and CA kind of each known certificate, from its
/// `identity.issued` event: the resource a revocation is authorized against.
#[derive(Debug)]
struct AddKnownCertificateFacts;

impl MigrationName for AddKnownCertificateFacts {
    fn name(&self) -> &str {
        "m0002_known_certificate_facts"
    }
}

/// The columns [`AddKnownCertificateFacts`] adds, all nullable.
fn fact_columns() -> [ColumnDef; 4] {
    [
        ColumnDef::new(KnownCertificateFacts::Profile)
            .string()
            .null()
            .to_owned(),
        ColumnDef::new(KnownCertificateFacts::Sans)
            .json()
            .null()
            .to_owned(),
        ColumnDef::new(KnownCertificateFacts::KeyAlgorithm)
            .string()
            .null()
            .to_owned(),
        ColumnDef::new(KnownCertificateFacts::CaKind)
            .string()
            .null()
            .to_owned(),
    ]
}

#[derive(DeriveIden)]
enum KnownCertificateFacts {
    Profile,
    Sans,
    KeyAlgorithm,
    CaKind,
}

#[async_trait::async_trait]
impl MigrationTrait for AddKnownCertificateFacts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite adds only one at a time.
        for column in fact_columns() {
            manager
                .alter_table(
                    Table::alter()
                        .table(KnownCertificates::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            KnownCertificateFacts::Profile,
            KnownCertificateFacts::Sans,
            KnownCertificateFacts::KeyAlgorithm,
            KnownCertificateFacts::CaKind,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(KnownCertificates::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
