//! Inventory's schema: its own tables plus the shared consumer inbox.

use sea_orm_migration::prelude::*;

/// Runs every inventory migration in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(sigil_store::inbox::Migration),
            Box::new(m0001_credentials::Migration),
        ]
    }
}

mod m0001_credentials {
    use sea_orm_migration::prelude::*;

    #[derive(Debug, DeriveMigrationName)]
    pub struct Migration;

    #[derive(DeriveIden)]
    enum Credentials {
        Table,
        Serial,
        Subject,
        Sans,
        Issuer,
        NotBefore,
        NotAfter,
        KeyAlgorithm,
        SignatureAlgorithm,
        Profile,
        Fingerprint,
        Status,
        RevokedAt,
        RevocationReason,
        Labels,
        CertificatePem,
        UpdatedAt,
    }

    #[derive(DeriveIden)]
    enum CredentialSans {
        Table,
        Serial,
        Value,
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table(Credentials::Table)
                        .if_not_exists()
                        .col(
                            ColumnDef::new(Credentials::Serial)
                                .string()
                                .not_null()
                                .primary_key(),
                        )
                        .col(ColumnDef::new(Credentials::Subject).string().not_null())
                        .col(ColumnDef::new(Credentials::Sans).json().not_null())
                        .col(ColumnDef::new(Credentials::Issuer).string().not_null())
                        .col(
                            ColumnDef::new(Credentials::NotBefore)
                                .timestamp_with_time_zone()
                                .not_null(),
                        )
                        .col(
                            ColumnDef::new(Credentials::NotAfter)
                                .timestamp_with_time_zone()
                                .not_null(),
                        )
                        .col(
                            ColumnDef::new(Credentials::KeyAlgorithm)
                                .string()
                                .not_null(),
                        )
                        .col(
                            ColumnDef::new(Credentials::SignatureAlgorithm)
                                .string()
                                .not_null(),
                        )
                        .col(ColumnDef::new(Credentials::Profile).string().not_null())
                        .col(ColumnDef::new(Credentials::Fingerprint).string().not_null())
                        .col(ColumnDef::new(Credentials::Status).string().not_null())
                        .col(
                            ColumnDef::new(Credentials::RevokedAt)
                                .timestamp_with_time_zone()
                                .null(),
                        )
                        .col(
                            ColumnDef::new(Credentials::RevocationReason)
                                .string()
                                .null(),
                        )
                        .col(ColumnDef::new(Credentials::Labels).json().not_null())
                        .col(
                            ColumnDef::new(Credentials::CertificatePem)
                                .text()
                                .not_null(),
                        )
                        .col(
                            ColumnDef::new(Credentials::UpdatedAt)
                                .timestamp_with_time_zone()
                                .not_null(),
                        )
                        .to_owned(),
                )
                .await?;
            // Per-request query shapes and the index each one uses:
            // - status filter (+ serial pagination): (status, serial, not_after), so the
            //   derived-expiry test on active rows needs no table lookup
            // - status + expiry window / derived expiry: (status, not_after)
            // - expiry window alone: (not_after)
            // - SAN lookup: credential_sans (value) → serial, then the primary key.
            let indexes = [
                (
                    "idx_credentials_status_not_after",
                    vec![Credentials::Status, Credentials::NotAfter],
                ),
                (
                    "idx_credentials_status_serial",
                    vec![
                        Credentials::Status,
                        Credentials::Serial,
                        Credentials::NotAfter,
                    ],
                ),
                ("idx_credentials_not_after", vec![Credentials::NotAfter]),
            ];
            for (name, cols) in indexes {
                let mut index = Index::create();
                index.name(name).table(Credentials::Table).if_not_exists();
                for col in cols {
                    index.col(col);
                }
                manager.create_index(index.to_owned()).await?;
            }
            manager
                .create_table(
                    Table::create()
                        .table(CredentialSans::Table)
                        .if_not_exists()
                        .col(ColumnDef::new(CredentialSans::Serial).string().not_null())
                        .col(ColumnDef::new(CredentialSans::Value).string().not_null())
                        .primary_key(
                            Index::create()
                                .col(CredentialSans::Serial)
                                .col(CredentialSans::Value),
                        )
                        .to_owned(),
                )
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name("idx_credential_sans_value")
                        .table(CredentialSans::Table)
                        .col(CredentialSans::Value)
                        .col(CredentialSans::Serial)
                        .if_not_exists()
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table(CredentialSans::Table).to_owned())
                .await?;
            manager
                .drop_table(Table::drop().table(Credentials::Table).to_owned())
                .await
        }
    }
}
