//! The consumer inbox: which events a consumer has already applied.
//!
//! A consumer calls [`first_delivery`] inside the transaction that applies an event;
//! on a redelivery it returns `false` and the consumer commits nothing new. The ack
//! is sent after the commit, so a crash between commit and ack is harmless.
//! [`begin_first`] opens that transaction and makes the check in one call.

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DatabaseTransaction, Set, TransactionTrait};
use sigil_bus::consumer::HandleError;

/// The `inbox` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub processed_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Record that `consumer` applies `event_id`; `false` if it already did.
pub async fn first_delivery<C: ConnectionTrait>(
    conn: &C,
    consumer: &str,
    event_id: &str,
) -> Result<bool, DbErr> {
    let row = entity::ActiveModel {
        consumer: Set(consumer.to_owned()),
        event_id: Set(event_id.to_owned()),
        processed_at: Set(Utc::now()),
    };
    let inserted = entity::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([entity::Column::Consumer, entity::Column::EventId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(inserted == 1)
}

/// Begin the transaction in which `consumer` applies `event_id`, recording it in the
/// inbox; `None` when `consumer` already applied it (a redelivery), in which case
/// nothing new is committed and the handler should return success.
///
/// Dropping the returned transaction without committing (e.g. to retry later) rolls
/// the inbox row back too.
pub async fn begin_first<C: TransactionTrait>(
    db: &C,
    consumer: &str,
    event_id: &str,
) -> Result<Option<DatabaseTransaction>, DbErr> {
    let txn = db.begin().await?;
    if first_delivery(&txn, consumer, event_id).await? {
        Ok(Some(txn))
    } else {
        txn.commit().await?;
        Ok(None)
    }
}

/// A database error while applying an event: [`HandleError::Retry`], so the event is
/// redelivered later.
pub fn retry(e: DbErr) -> HandleError {
    HandleError::Retry(format!("database: {e}"))
}

pub use migration::Migration;

mod migration {
    use sea_orm_migration::prelude::*;

    /// Migration creating the `inbox` table; every consuming service includes it.
    #[derive(Debug, DeriveMigrationName)]
    pub struct Migration;

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table(Alias::new("inbox"))
                        .if_not_exists()
                        .col(ColumnDef::new(Alias::new("consumer")).string().not_null())
                        .col(ColumnDef::new(Alias::new("event_id")).string().not_null())
                        .col(
                            ColumnDef::new(Alias::new("processed_at"))
                                .timestamp_with_time_zone()
                                .not_null(),
                        )
                        .primary_key(
                            Index::create()
                                .col(Alias::new("consumer"))
                                .col(Alias::new("event_id")),
                        )
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table(Alias::new("inbox")).to_owned())
                .await
        }
    }
}
