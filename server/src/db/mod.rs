//! The manager's database: SQLite via sqlx, migrations at start-up, one module per table group.

pub mod alarms;
pub mod events;
pub mod inventory;
pub mod pools;
pub mod stats;
pub mod tasks;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use strata_shared::rpc::RpcError;

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
    /// Migrations failed (e.g. the database is newer than this manager).
    #[error("database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
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

/// The connection pool.
#[derive(Clone, Debug)]
pub struct Db {
    /// sqlx pool.
    pub pool: SqlitePool,
}

impl Db {
    /// Opens (creating if missing) and migrates the database.
    pub async fn open(url: &str) -> Result<Self, DbError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Closes the pool (checkpoints the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Reads a setting.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, DbError> {
        let v: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(v.map(|r| r.0))
    }

    /// Writes a setting.
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), DbError> {
        sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
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
    use super::*;

    #[tokio::test]
    async fn opens_in_wal_mode_and_refuses_a_newer_schema() {
        let (db, dir) = test_db().await;
        let mode: (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(mode.0, "wal");
        db.set_setting("k", "v").await.unwrap();
        db.set_setting("k", "w").await.unwrap();
        assert_eq!(db.setting("k").await.unwrap().as_deref(), Some("w"));
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (99991231000000, 'future', CURRENT_TIMESTAMP, 1, x'00', 0)")
            .execute(&db.pool)
            .await
            .unwrap();
        db.close().await;
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let err = Db::open(&url).await.unwrap_err().to_string();
        assert!(err.contains("schema"), "{err}");
    }
}
