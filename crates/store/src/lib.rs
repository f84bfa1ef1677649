//! Sigil's storage helpers on sea-orm.
//!
//! Each service owns its tables and takes its own database URL. SQLite (WAL) is the
//! zero-setup default; with PostgreSQL each service lives in its own schema
//! (`sigil_<service>`), so several services can share one database without ever
//! seeing each other's tables.
//!
//! Shared building blocks every service includes in its migrator:
//! - [`outbox`]: events written in the same transaction as the state change, and the
//!   relay that publishes them to JetStream with `Nats-Msg-Id` = event id;
//! - [`inbox`]: the processed-event ledger that makes consumers idempotent, and
//!   batched application of events in one transaction;
//! - [`group`]: group commit of many requests' writes in one transaction.
#![forbid(unsafe_code)]

pub mod group;
pub mod inbox;
pub mod outbox;

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

pub use sea_orm;
pub use sea_orm_migration;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL is not a supported database URL.
    #[error("unsupported database URL {0:?}: use sqlite://PATH?mode=rwc or postgres://…")]
    UnsupportedUrl(String),
    /// Could not connect or prepare the database.
    #[error("cannot open database {url}: {source}")]
    Connect { url: String, source: DbErr },
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(DbErr),
    /// A query failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Which engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn of(url: &str) -> Result<Engine, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Engine::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }
}

/// A SQLite URL for a file, created if missing.
pub fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Open the database of `service` at `url` and run `M`'s migrations.
///
/// SQLite gets WAL mode and a busy timeout; PostgreSQL gets schema `sigil_<service>`
/// (created if absent) as its search path.
pub async fn open<M: sea_orm_migration::MigratorTrait>(
    url: &str,
    service: &str,
) -> Result<DatabaseConnection, StoreError> {
    let db = connect(url, service).await?;
    migrate::<M>(&db, service).await?;
    Ok(db)
}

/// Run `M`'s pending migrations. Replicas starting together must not race: on
/// PostgreSQL a transaction-scoped advisory lock (keyed by service) serialises them;
/// on SQLite the database lock does, and a loser that saw a half-applied state
/// retries once the winner is done.
async fn migrate<M: sea_orm_migration::MigratorTrait>(
    db: &DatabaseConnection,
    service: &str,
) -> Result<(), StoreError> {
    use sea_orm::TransactionTrait;
    let guard = if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        let key = service.bytes().fold(0x5167_696c_i64, |h, b| {
            h.wrapping_mul(31).wrapping_add(i64::from(b))
        });
        let txn = db.begin().await?;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({key})"))
            .await?;
        Some(txn)
    } else {
        None
    };
    let mut attempt = 0;
    let result = loop {
        match M::up(db, None).await {
            Ok(()) => break Ok(()),
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(service, error = %e, attempt, "migration raced; retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => break Err(StoreError::Migrate(e)),
        }
    };
    if let Some(txn) = guard {
        txn.commit().await?;
    }
    result
}

/// Connect without migrating.
pub async fn connect(url: &str, service: &str) -> Result<DatabaseConnection, StoreError> {
    let err = |source| StoreError::Connect {
        url: redact(url),
        source,
    };
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    match Engine::of(url)? {
        Engine::Sqlite => {
            if let Some(path) = url
                .strip_prefix("sqlite://")
                .and_then(|r| r.split('?').next())
                && let Some(parent) = std::path::Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)
                    .map_err(|e| err(DbErr::Custom(format!("create {}: {e}", parent.display()))))?;
            }
            // An embedded database cannot drop the connection: skip the liveness ping
            // the pool would otherwise make on every acquire (a round trip to the
            // connection's worker thread per query or transaction).
            opts.max_connections(8)
                .min_connections(1)
                .test_before_acquire(false);
            opts.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(30))
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
            });
            // Switching a new file to WAL takes an exclusive lock; processes opening the
            // same new database at once can see "database is locked" here. Retry.
            let mut attempt = 0;
            loop {
                match Database::connect(opts.clone()).await {
                    Ok(db) => return Ok(db),
                    Err(e) if attempt < 10 => {
                        attempt += 1;
                        tracing::debug!(error = %e, attempt, "sqlite open raced; retrying");
                        tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    }
                    Err(e) => return Err(err(e)),
                }
            }
        }
        Engine::Postgres => {
            let schema = format!("sigil_{}", service.replace('-', "_"));
            let admin = Database::connect(url).await.map_err(err)?;
            // Replicas starting together can both try to create the schema; the loser
            // sees a unique violation on pg_namespace, after which the schema exists.
            let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
            let mut attempt = 0;
            while let Err(e) = admin.execute_unprepared(&create).await {
                attempt += 1;
                if attempt >= 5 {
                    return Err(err(e));
                }
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            admin.close().await.ok();
            opts.max_connections(16).set_schema_search_path(schema);
            Database::connect(opts).await.map_err(err)
        }
    }
}

/// A URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_classified_and_redacted() {
        assert_eq!(
            Engine::of("sqlite://x.db?mode=rwc").unwrap(),
            Engine::Sqlite
        );
        assert_eq!(Engine::of("postgres://u@h/db").unwrap(), Engine::Postgres);
        assert!(Engine::of("mysql://h/db").is_err());
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
