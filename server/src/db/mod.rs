//! The manager's database through sqlx's Any driver: SQLite (a file, the default) or
//! PostgreSQL, chosen by the URL's scheme; migrations per backend at start-up; one module per
//! table group. Queries are written once, with `$1, $2, …` placeholders (SQLite binds `$N`
//! by number as PostgreSQL does) and SQL both accept; [`Backend`] covers the few differences.

pub mod alarms;
pub mod events;
pub mod inventory;
pub mod pools;
pub mod stats;
pub mod tasks;
#[cfg(test)]
pub(crate) mod testing;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor};
use strata_shared::rpc::RpcError;
use tracing::{debug, info};

/// The SQLite schema. These files are never edited: installed databases keep their checksums.
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
/// The same schema versions for PostgreSQL.
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long the first connection to a PostgreSQL server may take before start-up fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Database errors.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The row does not exist.
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken.
    #[error("already exists")]
    Duplicate,
    /// Anything else from the driver.
    #[error("database error: {0}")]
    Sqlx(sqlx::Error),
    /// The URL names no supported database.
    #[error("database URL {0:?} is neither sqlite:// nor postgres:// (or postgresql://)")]
    UnsupportedUrl(String),
    /// The database server cannot be reached or refused the connection.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// What was dialled: host, port, database and user (never the password).
        target: String,
        /// Why it failed.
        reason: String,
    },
    /// The database was migrated by a newer manager.
    #[error("database schema version {found} is newer than this manager knows (up to {known}); run a newer strata-server")]
    NewerSchema {
        /// Newest version applied to the database.
        found: i64,
        /// Newest version this manager has.
        known: i64,
    },
    /// Migrations failed.
    #[error("database schema: {0}")]
    Migrate(#[from] MigrateError),
    /// A stored value is corrupt.
    #[error("corrupt value in the database: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => DbError::NotFound,
            sqlx::Error::Database(d) if d.is_unique_violation() => DbError::Duplicate,
            _ => DbError::Sqlx(e),
        }
    }
}

impl DbError {
    /// The API error for a failed look-up of `what` `id`: `NotFound` when the row is missing.
    pub fn or_not_found(self, what: &str, id: impl std::fmt::Display) -> RpcError {
        match self {
            DbError::NotFound => RpcError::not_found(what, id),
            e => e.into(),
        }
    }
}

impl From<DbError> for RpcError {
    fn from(e: DbError) -> Self {
        RpcError::internal(e.to_string())
    }
}

/// Which database engine a [`Db`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (WAL mode).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The backend a database URL names, by its scheme.
    pub fn of_url(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }

    /// Appended to a `SELECT` that reads a row a transaction then rewrites, so a concurrent
    /// read-modify-write waits (PostgreSQL); SQLite serializes writers by itself.
    pub fn for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }
}

/// A database URL with its password (in the user part or a `password=` parameter) replaced
/// by `***`, fit for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((user, host)) => match user.split_once(':') {
                    Some((name, _)) => format!("{name}:***@{host}"),
                    None => authority.to_string(),
                },
                None => authority.to_string(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => head.to_string(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// Says what a PostgreSQL URL dials (host or socket, port, database, user), without the
/// password.
fn postgres_target(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(o) => {
            let at = match o.get_socket() {
                Some(dir) => format!("socket {}", dir.display()),
                None => format!("{}:{}", o.get_host(), o.get_port()),
            };
            format!(
                "PostgreSQL at {at}, database {}, user {}",
                o.get_database().unwrap_or(o.get_username()),
                o.get_username()
            )
        }
        Err(_) => format!("PostgreSQL {}", redact_url(url)),
    }
}

/// The connection pool.
#[derive(Clone, Debug)]
pub struct Db {
    /// sqlx pool.
    pub pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Opens (creating an SQLite file if missing) and migrates the database; refuses one
    /// migrated by a newer manager.
    pub async fn open(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend =
            Backend::of_url(url).ok_or_else(|| DbError::UnsupportedUrl(redact_url(url)))?;
        let options = AnyPoolOptions::new().max_connections(8);
        let pool = match backend {
            Backend::Sqlite => {
                // One connection with the full SQLite options creates the file and puts it in
                // WAL mode (which persists); the pool's connections then set what is per
                // connection (foreign keys are on by default in sqlx).
                SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
                    .connect()
                    .await?
                    .close()
                    .await?;
                options
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
            Backend::Postgres => {
                // One plain connection first: its error says why (refused, unknown database,
                // authentication), where the pool would only time out.
                let target = postgres_target(url);
                let fail = |reason: String| DbError::Connect {
                    target: target.clone(),
                    reason,
                };
                match tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect(url)).await {
                    Ok(Ok(c)) => c.close().await?,
                    Ok(Err(e)) => return Err(fail(e.to_string())),
                    Err(_) => {
                        return Err(fail(format!(
                            "no answer within {} s",
                            CONNECT_TIMEOUT.as_secs()
                        )))
                    }
                }
                debug!(database = %target, "PostgreSQL answers");
                options.connect(url).await?
            }
        };
        let db = Self { pool, backend };
        db.migrate().await?;
        info!(?backend, url = %redact_url(url), "database ready");
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), DbError> {
        let migrator = self.backend.migrator();
        match migrator.run(&self.pool).await {
            Ok(()) => Ok(()),
            Err(MigrateError::VersionMissing(found)) => Err(DbError::NewerSchema {
                found,
                known: migrator.iter().map(|m| m.version).max().unwrap_or(0),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The database engine.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool (checkpoints SQLite's WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Reads a setting.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, DbError> {
        let v: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(v.map(|r| r.0))
    }

    /// Writes a setting.
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), DbError> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Parses a stored uuid.
pub fn uuid(s: &str) -> Result<uuid::Uuid, DbError> {
    s.parse()
        .map_err(|_| DbError::Corrupt(format!("{s:?} is not a uuid")))
}

#[cfg(test)]
pub(crate) async fn test_db() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (Db::open(&url).await.unwrap(), dir)
}

#[cfg(test)]
mod tests {
    use super::testing::{on_both_backends, TestDb};
    use super::*;

    #[test]
    fn sqlite_migrations_keep_the_checksums_installed_databases_recorded() {
        // sqlx records version, description and a SHA-384 of the SQL (not the file's path);
        // a changed file would make every existing installation refuse to start.
        let got: Vec<(i64, String)> = SQLITE_MIGRATIONS
            .iter()
            .map(|m| (m.version, hex::encode(&m.checksum[..8])))
            .collect();
        let want = [
            (20261125000001, "00b0602b1c5a4fb0"),
            (20261125000002, "c9fd43d1baaea159"),
            (20261126000003, "3ad3d93ad03e7ab2"),
            (20261126000004, "2d011fbe566f78bd"),
            (20261126000005, "652f09312edbd1d8"),
        ];
        let want: Vec<(i64, String)> = want.iter().map(|(v, c)| (*v, c.to_string())).collect();
        assert_eq!(got, want);
        let pg: Vec<i64> = POSTGRES_MIGRATIONS.iter().map(|m| m.version).collect();
        let lite: Vec<i64> = SQLITE_MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(pg, lite, "both backends have the same schema versions");
    }

    #[test]
    fn urls_name_their_backend_and_lose_their_password_in_logs() {
        assert_eq!(Backend::of_url("sqlite:///x/s.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("postgres://h/db"), Some(Backend::Postgres));
        assert_eq!(
            Backend::of_url("PostgreSQL://h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("mysql://h/db"), None);
        assert_eq!(Backend::of_url("/var/lib/strata.db"), None);
        assert_eq!(
            redact_url("postgres://strata:s3cret@db.example:5433/strata?sslmode=disable"),
            "postgres://strata:***@db.example:5433/strata?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgresql://u:p@ss:w@h/d?password=s3cret&user=u"),
            "postgresql://u:***@h/d?password=***&user=u"
        );
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact_url("sqlite:///x/s.db"), "sqlite:///x/s.db");
        assert_eq!(
            postgres_target("postgres://strata:s3cret@10.1.2.3:5999/inv"),
            "PostgreSQL at 10.1.2.3:5999, database inv, user strata"
        );
    }

    #[tokio::test]
    async fn sqlite_opens_in_wal_mode_with_full_sync_and_foreign_keys() {
        let t = TestDb::new(Backend::Sqlite).await;
        let mode: (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(&t.pool)
            .await
            .unwrap();
        assert_eq!(mode.0, "wal");
        // Every pooled connection, not only the first.
        let mut conns = Vec::new();
        for _ in 0..3 {
            conns.push(t.pool.acquire().await.unwrap());
        }
        for c in &mut conns {
            let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                .fetch_one(&mut **c)
                .await
                .unwrap();
            let (fk,): (i64,) = sqlx::query_as("PRAGMA foreign_keys")
                .fetch_one(&mut **c)
                .await
                .unwrap();
            let (busy,): (i64,) = sqlx::query_as("PRAGMA busy_timeout")
                .fetch_one(&mut **c)
                .await
                .unwrap();
            assert_eq!((sync, fk, busy), (2, 1, 10_000), "FULL, on, 10 s");
        }
    }

    async fn settings_and_a_newer_schema_refused(mut t: TestDb) {
        t.set_setting("k", "v").await.unwrap();
        t.set_setting("k", "w").await.unwrap();
        assert_eq!(t.setting("k").await.unwrap().as_deref(), Some("w"));
        assert_eq!(t.setting("nope").await.unwrap(), None);
        // Opening again applies nothing new and keeps the data.
        t.reopen().await;
        assert_eq!(t.setting("k").await.unwrap().as_deref(), Some("w"));
        let (success, checksum) = match t.backend() {
            Backend::Sqlite => ("1", "x'00'"),
            Backend::Postgres => ("TRUE", "'\\x00'::bytea"),
        };
        sqlx::query(&format!("INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (99991231000000, 'future', CURRENT_TIMESTAMP, {success}, {checksum}, 0)"))
            .execute(&t.pool)
            .await
            .unwrap();
        t.close().await;
        let err = Db::open(&t.url).await.unwrap_err().to_string();
        assert!(
            err.contains("database schema version 99991231000000 is newer than this manager knows (up to 20261126000005)"),
            "{err}"
        );
    }

    on_both_backends!(
        settings_and_a_newer_schema_refused,
        placeholders_bind_by_number
    );

    async fn placeholders_bind_by_number(t: TestDb) {
        // `$N` is the N-th bound value on both backends, wherever and however often it
        // appears (SQLite would otherwise bind in order of appearance).
        let (a, b, c): (String, String, String) = sqlx::query_as("SELECT $2, $1, $2")
            .bind("one")
            .bind("two")
            .fetch_one(&t.pool)
            .await
            .unwrap();
        assert_eq!((a.as_str(), b.as_str(), c.as_str()), ("two", "one", "two"));
    }

    #[tokio::test]
    async fn unreachable_postgres_is_a_clear_error_without_the_password() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://strata:hunter22@127.0.0.1:{port}/inventory");
        let err = Db::open(&url).await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "cannot connect to PostgreSQL at 127.0.0.1:{port}, database inventory, user strata: "
            )),
            "{err}"
        );
        assert!(!err.contains("hunter22"), "{err}");
        let err = Db::open("mysql://u:hunter22@h/d")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("neither sqlite:// nor postgres://"), "{err}");
        assert!(!err.contains("hunter22"), "{err}");
    }

    #[tokio::test]
    async fn postgres_over_a_unix_socket() {
        let (url, dir, port) = tokio::task::spawn_blocking(|| {
            let c = testing::pg_cluster();
            (c.create_database(), c.socket_dir().to_path_buf(), c.port)
        })
        .await
        .unwrap();
        let name = url.rsplit('/').next().unwrap();
        let socket_url = format!(
            "postgres:///{name}?host={}&port={port}&user=strata",
            dir.display()
        );
        let db = Db::open(&socket_url).await.unwrap();
        db.set_setting("via", "socket").await.unwrap();
        assert_eq!(db.setting("via").await.unwrap().as_deref(), Some("socket"));
        assert!(postgres_target(&socket_url).starts_with("PostgreSQL at socket /"));
    }

    #[tokio::test]
    async fn wrong_postgres_password_or_database_is_a_clear_error() {
        let url = tokio::task::spawn_blocking(|| testing::pg_cluster().create_database())
            .await
            .unwrap();
        let wrong = url.replace(testing::cluster::PG_PASSWORD, "not-the-password");
        let err = Db::open(&wrong).await.unwrap_err().to_string();
        assert!(err.contains("password authentication failed"), "{err}");
        assert!(!err.contains("not-the-password"), "{err}");
        let (base, _) = url.rsplit_once('/').unwrap();
        let err = Db::open(&format!("{base}/no_such_db"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("database no_such_db") && err.contains("does not exist"),
            "{err}"
        );
    }
}
