//! Throwaway databases for tests: SQLite by default, PostgreSQL on request.

use sea_orm::{ConnectOptions, ConnectionTrait, Database};
use tempfile::TempDir;

/// The environment variable naming a PostgreSQL server for tests.
const DATABASE_URL_ENV: &str = "SIGIL_TEST_DATABASE_URL";

/// A database that exists for one test.
///
/// - [`TestDb::sqlite`]: a file in a temp dir (removed on drop).
/// - [`TestDb::from_env_or_sqlite`]: when `SIGIL_TEST_DATABASE_URL` names a PostgreSQL
///   server, a fresh database `sigil_t_<random>` on it, dropped (`WITH (FORCE)`) when
///   the value is dropped or [`cleanup`](TestDb::cleanup)ed; otherwise SQLite.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Sqlite {
        _dir: TempDir,
    },
    Postgres {
        /// URL of the server's maintenance database, used to drop ours.
        admin_url: String,
        name: String,
        dropped: bool,
    },
}

impl TestDb {
    /// A new SQLite database: `sqlite://<tempdir>/db.sqlite?mode=rwc`.
    pub fn sqlite() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sigil-db-")
            .tempdir()
            .expect("create a temp dir for SQLite");
        let url = format!("sqlite://{}/db.sqlite?mode=rwc", dir.path().display());
        Self {
            url,
            backend: Backend::Sqlite { _dir: dir },
        }
    }

    /// PostgreSQL when `SIGIL_TEST_DATABASE_URL` is set (see [`TestDb::postgres`]),
    /// else [`TestDb::sqlite`].
    pub async fn from_env_or_sqlite() -> Self {
        match std::env::var(DATABASE_URL_ENV) {
            Ok(url) if !url.trim().is_empty() => Self::postgres(url.trim()).await,
            _ => Self::sqlite(),
        }
    }

    /// Creates a fresh database `sigil_t_<random>` on the PostgreSQL server that
    /// `server_url` points at (any database on it, e.g.
    /// `postgres://postgres@127.0.0.1:5432/test`).
    ///
    /// # Panics
    ///
    /// When the server cannot be reached or the database cannot be created.
    pub async fn postgres(server_url: &str) -> Self {
        let name = format!("sigil_t_{}", uuid::Uuid::new_v4().simple());
        execute(server_url, &format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name} via {server_url}: {e}"));
        Self {
            url: with_database(server_url, &name),
            backend: Backend::Postgres {
                admin_url: server_url.to_owned(),
                name,
                dropped: false,
            },
        }
    }

    /// The database URL to hand to the code under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    /// Drops the database now (PostgreSQL) or removes its directory (SQLite). Dropping
    /// the value does the same, from a helper thread; call this in async tests that
    /// want the cleanup awaited and its errors reported.
    ///
    /// # Panics
    ///
    /// When the PostgreSQL database cannot be dropped.
    pub async fn cleanup(mut self) {
        if let Backend::Postgres {
            admin_url,
            name,
            dropped,
        } = &mut self.backend
        {
            execute(admin_url, &drop_statement(name))
                .await
                .unwrap_or_else(|e| panic!("cannot drop test database {name}: {e}"));
            *dropped = true;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Backend::Postgres {
            admin_url,
            name,
            dropped: false,
        } = &self.backend
        else {
            return;
        };
        // Drop cannot await, and may run inside (or outside) a Tokio runtime: do the
        // best-effort cleanup on a thread with its own small runtime and wait for it.
        let admin_url = admin_url.clone();
        let statement = drop_statement(name);
        let cleaner = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(execute(&admin_url, &statement)).ok()
        });
        let _ = cleaner.join();
    }
}

fn drop_statement(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
}

/// Runs one statement on a short-lived single connection.
async fn execute(url: &str, statement: &str) -> Result<(), sea_orm::DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(1)
        .min_connections(0)
        .sqlx_logging(false);
    let db = Database::connect(options).await?;
    let result = db.execute_unprepared(statement).await.map(|_| ());
    let _ = db.close().await;
    result
}

/// `url` with its database (path) replaced by `name`, keeping credentials and query.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{name}{query}")
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbBackend, Statement};

    use super::*;

    #[test]
    fn replaces_the_database_in_a_url() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/test",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://u:p@h/test?sslmode=disable",
                "postgres://u:p@h/x?sslmode=disable",
            ),
            ("postgresql://h:5432", "postgresql://h:5432/x"),
            (
                "postgres://h?sslmode=disable",
                "postgres://h/x?sslmode=disable",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(with_database(input, "x"), expected, "{input}");
        }
    }

    #[tokio::test]
    async fn sqlite_database_is_usable_and_removed_on_drop() {
        let db = TestDb::sqlite();
        assert!(!db.is_postgres());
        assert!(db.url().starts_with("sqlite://") && db.url().ends_with("/db.sqlite?mode=rwc"));
        let conn = Database::connect(db.url()).await.expect("connect");
        conn.execute_unprepared("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (42);")
            .await
            .expect("write");
        let row = conn
            .query_one(Statement::from_string(DbBackend::Sqlite, "SELECT x FROM t"))
            .await
            .expect("query")
            .expect("row");
        assert_eq!(row.try_get::<i32>("", "x").expect("x"), 42);
        conn.close().await.expect("close");

        let path = db
            .url()
            .trim_start_matches("sqlite://")
            .trim_end_matches("?mode=rwc")
            .to_owned();
        assert!(std::path::Path::new(&path).is_file());
        drop(db);
        assert!(!std::path::Path::new(&path).exists());
    }

    #[tokio::test]
    async fn two_sqlite_databases_are_distinct() {
        let (a, b) = (TestDb::sqlite(), TestDb::sqlite());
        assert_ne!(a.url(), b.url());
    }

    /// Runs only when `SIGIL_TEST_DATABASE_URL` names a PostgreSQL server.
    #[tokio::test]
    async fn postgres_database_is_created_and_dropped() {
        let Some(server) = std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty())
        else {
            eprintln!("skipped: {DATABASE_URL_ENV} is not set");
            return;
        };
        let exists = |name: String| {
            let server = server.clone();
            async move {
                let admin = Database::connect(server.as_str())
                    .await
                    .expect("admin connect");
                let found = admin
                    .query_one(Statement::from_string(
                        DbBackend::Postgres,
                        format!("SELECT 1 AS one FROM pg_database WHERE datname = '{name}'"),
                    ))
                    .await
                    .expect("query pg_database")
                    .is_some();
                admin.close().await.expect("close");
                found
            }
        };

        // Dropped by Drop, even with a connection still open (WITH (FORCE)).
        let db = TestDb::from_env_or_sqlite().await;
        assert!(db.is_postgres());
        let name = db.url().rsplit('/').next().expect("db name").to_owned();
        assert!(name.starts_with("sigil_t_"));
        let conn = Database::connect(db.url())
            .await
            .expect("connect to test db");
        conn.execute_unprepared("CREATE TABLE t (x INTEGER)")
            .await
            .expect("create table");
        assert!(exists(name.clone()).await);
        drop(db);
        assert!(!exists(name).await, "dropped on Drop");
        drop(conn);

        // Dropped by an awaited cleanup.
        let db = TestDb::postgres(&server).await;
        let name = db.url().rsplit('/').next().expect("db name").to_owned();
        assert!(exists(name.clone()).await);
        db.cleanup().await;
        assert!(!exists(name).await, "dropped by cleanup");
    }
}
