//! The authentication tables: `credentials` (who each issued credential belongs to) and
//! `token_keys` (the bootstrap-token secrets).

use sea_orm::DbErr;
use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
pub(crate) enum Credentials {
    Table,
    Serial,
    Principal,
    Fingerprint,
    NotAfter,
    IssuerCaId,
    RecordedAt,
}

#[derive(DeriveIden)]
pub(crate) enum TokenKeys {
    Table,
    Kid,
    Secret,
    CreatedAt,
}

/// Migration `m0003_policy_authn`: creates `credentials` (serial → principal, from
/// `identity.issued`) and `token_keys` (HS256 secrets of bootstrap tokens). Both are
/// needed by authentication, so they come in one migration.
#[derive(Debug)]
pub struct CreateCredentials;

impl MigrationName for CreateCredentials {
    fn name(&self) -> &str {
        "m0003_policy_authn"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateCredentials {
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
                    .col(ColumnDef::new(Credentials::Principal).string().not_null())
                    .col(ColumnDef::new(Credentials::Fingerprint).string().not_null())
                    .col(
                        ColumnDef::new(Credentials::NotAfter)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Credentials::IssuerCaId).string().null())
                    .col(
                        ColumnDef::new(Credentials::RecordedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TokenKeys::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(TokenKeys::Kid)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(TokenKeys::Secret).binary().not_null())
                    .col(
                        ColumnDef::new(TokenKeys::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TokenKeys::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Credentials::Table).to_owned())
            .await
    }
}
