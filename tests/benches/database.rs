//! Database figures (a benchmark, not a test): 10,000 events appended one by one (each its
//! own transaction, as the manager does) and 100 reads of the newest 500, on
//! - SQLite through sqlx's Any driver (the manager's code since PostgreSQL came in),
//! - SQLite through a plain `SqlitePool` with the same settings and SQL (the code before),
//! - PostgreSQL through the Any driver (a private throwaway cluster: fsync off, so this
//!   measures the driver and the server, not the disk).
//!
//! Run: `cargo bench -p strata-tests --bench database` (needs scripts/setup for PostgreSQL).

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use strata_server::db::Db;
use strata_shared::model::{ObjectKind, ObjectRef, Severity};
use strata_tests::postgres::PgCluster;

const EVENTS: usize = 10_000;
type EventRow = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);
const READS: usize = 100;

async fn through_db(db: &Db) -> (Duration, Duration) {
    let vm = ObjectRef {
        kind: ObjectKind::Vm,
        id: uuid::Uuid::new_v4(),
        name: "bench".into(),
    };
    let t = Instant::now();
    for i in 0..EVENTS {
        db.insert_event(
            "vm.poweredOn",
            Severity::Info,
            Some(&vm),
            Some("admin"),
            &format!("event {i}"),
        )
        .await
        .unwrap();
    }
    let insert = t.elapsed();
    let t = Instant::now();
    for _ in 0..READS {
        assert_eq!(db.events(Some(vm.id), None, 500).await.unwrap().len(), 500);
    }
    (insert, t.elapsed())
}

/// The pre-PostgreSQL code path: a SqlitePool and `?` placeholders.
async fn through_sqlite_pool(url: &str) -> (Duration, Duration) {
    let opts = SqliteConnectOptions::from_str(url)
        .unwrap()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(opts)
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let t = Instant::now();
    for i in 0..EVENTS {
        let _: (i64,) = sqlx::query_as(
            "INSERT INTO events (time_ms, kind, severity, object_kind, object_id, object_name, username, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(strata_shared::now_ms())
        .bind("vm.poweredOn")
        .bind("info")
        .bind("vm")
        .bind(&id)
        .bind("bench")
        .bind("admin")
        .bind(format!("event {i}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    }
    let insert = t.elapsed();
    let t = Instant::now();
    for _ in 0..READS {
        let rows: Vec<EventRow> =
            sqlx::query_as("SELECT id, time_ms, kind, severity, object_kind, object_id, object_name, username, message FROM events WHERE (? IS NULL OR object_id = ?) AND id > ? ORDER BY id DESC LIMIT ?")
                .bind(Some(&id))
                .bind(Some(&id))
                .bind(0_i64)
                .bind(500_i64)
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(rows.len(), 500);
    }
    pool.close().await;
    (insert, t.elapsed())
}

fn line(what: &str, (insert, read): (Duration, Duration), base: Option<(Duration, Duration)>) {
    let per = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    print!(
        "{what:<44} insert {:>8.1} µs/event ({:>6.2} s)   read 500 {:>8.1} µs",
        per(insert, EVENTS),
        insert.as_secs_f64(),
        per(read, READS)
    );
    if let Some((bi, br)) = base {
        print!(
            "   ×{:.2} / ×{:.2} vs SqlitePool",
            insert.as_secs_f64() / bi.as_secs_f64(),
            read.as_secs_f64() / br.as_secs_f64()
        );
    }
    println!();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let plain_url = format!("sqlite://{}", dir.path().join("plain.db").display());
    // The schema, made by the manager's own migrations, then the plain pool on the same file.
    Db::open(&plain_url).await.unwrap().close().await;
    let plain = through_sqlite_pool(&plain_url).await;
    line("SQLite, SqlitePool (before)", plain, None);

    let any_url = format!("sqlite://{}", dir.path().join("any.db").display());
    let db = Db::open(&any_url).await.unwrap();
    let any = through_db(&db).await;
    db.close().await;
    line("SQLite, Any driver (now)", any, Some(plain));

    let pg = PgCluster::start();
    let db = Db::open(&pg.create_database()).await.unwrap();
    let on_pg = through_db(&db).await;
    db.close().await;
    line(
        "PostgreSQL 127.0.0.1, Any driver (fsync off)",
        on_pg,
        Some(plain),
    );
}
