//! Test databases on both backends: a temporary SQLite file, or a fresh database in a
//! PostgreSQL cluster private to the test process (started on first use, stopped when the
//! process ends: see the cluster module, shared with the end-to-end tests).

use std::sync::OnceLock;

use super::{Backend, Db};

#[allow(dead_code)]
#[path = "../../../tests/src/postgres.rs"]
pub(crate) mod cluster;

/// The test process's PostgreSQL cluster.
pub(crate) fn pg_cluster() -> &'static cluster::PgCluster {
    static CLUSTER: OnceLock<cluster::PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(cluster::PgCluster::start)
}

/// A migrated, empty database and what keeps it alive.
pub(crate) struct TestDb {
    /// The database.
    pub db: Db,
    /// Its URL.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh database on `backend`.
    pub async fn new(backend: Backend) -> TestDb {
        let (url, dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("t.db").display());
                (url, Some(dir))
            }
            Backend::Postgres => {
                let url = tokio::task::spawn_blocking(|| pg_cluster().create_database())
                    .await
                    .unwrap();
                (url, None)
            }
        };
        let db = Db::open(&url).await.unwrap();
        assert_eq!(db.backend(), backend);
        TestDb { db, url, _dir: dir }
    }

    /// Closes the pool and opens the same database again.
    pub async fn reopen(&mut self) {
        self.db.close().await;
        self.db = Db::open(&self.url).await.unwrap();
    }
}

impl std::ops::Deref for TestDb {
    type Target = Db;
    fn deref(&self) -> &Db {
        &self.db
    }
}

/// For each named `async fn NAME(t: TestDb)` in scope, a test module `NAME` with one test per
/// backend (`NAME::sqlite`, `NAME::postgres`).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(
                    $crate::db::testing::TestDb::new($crate::db::Backend::Sqlite).await,
                )
                .await
            }

            #[tokio::test]
            async fn postgres() {
                super::$name(
                    $crate::db::testing::TestDb::new($crate::db::Backend::Postgres).await,
                )
                .await
            }
        }
    )*};
}
pub(crate) use on_both_backends;
