//! The scheduler's schema: its `tracked` table plus the shared outbox and inbox.

use sea_orm_migration::prelude::*;

/// Runs every scheduler migration in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(sigil_store::outbox::Migration),
            Box::new(sigil_store::inbox::Migration),
            Box::new(m0001_tracked::Migration),
        ]
    }
}

mod m0001_tracked {
    use sea_orm_migration::prelude::*;

    #[derive(Debug, DeriveMigrationName)]
    pub struct Migration;

    #[derive(DeriveIden)]
    enum Tracked {
        Table,
        Serial,
        NotBefore,
        NotAfter,
        RenewAt,
        State,
        UpdatedAt,
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            let ts = |c: Tracked| {
                ColumnDef::new(c)
                    .timestamp_with_time_zone()
                    .not_null()
                    .to_owned()
            };
            manager
                .create_table(
                    Table::create()
                        .table(Tracked::Table)
                        .if_not_exists()
                        .col(
                            ColumnDef::new(Tracked::Serial)
                                .string()
                                .not_null()
                                .primary_key(),
                        )
                        .col(ts(Tracked::NotBefore))
                        .col(ts(Tracked::NotAfter))
                        .col(ts(Tracked::RenewAt))
                        .col(ColumnDef::new(Tracked::State).string_len(20).not_null())
                        .col(ts(Tracked::UpdatedAt))
                        .to_owned(),
                )
                .await?;
            // The two per-tick scans: `state = 'tracking' AND renew_at <= now` and
            // `state IN (live) AND not_after <= now`, each ordered by its time column.
            // With state leading, finished rows (expired, revoked) are never visited.
            for (name, col) in [
                ("idx_tracked_state_renew_at", Tracked::RenewAt),
                ("idx_tracked_state_not_after", Tracked::NotAfter),
            ] {
                manager
                    .create_index(
                        Index::create()
                            .name(name)
                            .table(Tracked::Table)
                            .col(Tracked::State)
                            .col(col)
                            .if_not_exists()
                            .to_owned(),
                    )
                    .await?;
            }
            Ok(())
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table(Tracked::Table).to_owned())
                .await
        }
    }
}
