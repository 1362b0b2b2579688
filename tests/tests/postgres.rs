//! The manager on PostgreSQL end to end, against a private throwaway cluster (Debian's
//! postgresql package, installed by scripts/setup): a host added, a Debian guest created and
//! booted, tasks, events, stats and a host connection alarm stored in PostgreSQL; after a
//! manager restart the inventory, events, stats and alarm are all still there. A bad or
//! unreachable database stops the manager at start with a clear message that never shows the
//! password.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_shared::api::manager as m;
use strata_shared::model::*;
use strata_shared::Client;
use strata_tests::postgres::{PgCluster, PG_PASSWORD};
use strata_tests::{bins, boot, scratch_root, Lab, PASSWORD};
use uuid::Uuid;

async fn events(c: &Client, object: Option<Uuid>) -> Vec<EventInfo> {
    c.call::<m::EventList>(EventListParams {
        object,
        after_id: None,
        limit: Some(500),
    })
    .await
    .unwrap()
}

async fn alarms(c: &Client) -> Vec<AlarmInfo> {
    c.call::<m::AlarmList>(AlarmListParams { target: None })
        .await
        .unwrap()
}

async fn samples(c: &Client, id: Uuid) -> Vec<StatSample> {
    c.call::<m::StatsQuery>(StatsQueryParams { id, since_ms: None })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_runs_on_postgres_and_keeps_everything_across_a_restart() {
    let pg = PgCluster::start();
    let url = pg.create_database();
    let bins = bins!();
    let mut lab = Lab::start_with(
        &bins,
        &["--database-url", &url, "--stats-interval-secs", "1"],
    )
    .await;
    let log = lab.server.log();
    assert!(
        log.contains("database ready") && log.contains("Postgres"),
        "the manager says which database it uses: {log}"
    );
    assert!(
        !log.contains(PG_PASSWORD),
        "the password is never logged: {log}"
    );
    // Nothing went to an SQLite file.
    assert!(!lab.server.data_dir.join("strata.db").exists());

    let c = lab.client.clone();
    let vm = lab.create_guest_vm("pg-guest", 1).await;
    boot(&c, vm).await;

    // Stats rounds land in PostgreSQL and come back through stats.query.
    let deadline = Instant::now() + Duration::from_secs(60);
    while samples(&c, vm).await.len() < 2 {
        assert!(Instant::now() < deadline, "no stats for the VM within 60 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(samples(&c, lab.host).await.len() >= 2, "host sums too");

    // A stopped agent raises the host connection alarm.
    lab.agent.stop();
    let deadline = Instant::now() + Duration::from_secs(60);
    let alarm = loop {
        if let Some(a) = alarms(&c)
            .await
            .into_iter()
            .find(|a| a.kind == AlarmKind::HostConnection)
        {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "no host connection alarm within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(alarm.target.id, lab.host);

    let tasks_before = c
        .call::<m::TaskList>(TaskListParams::default())
        .await
        .unwrap();
    for op in ["host.add", "vm.create", "vm.powerOn"] {
        assert!(
            tasks_before
                .iter()
                .any(|t| t.operation == op && t.state == TaskState::Success),
            "{op} stored as a successful task: {tasks_before:?}"
        );
    }
    let events_before = events(&c, None).await;
    for kind in ["vm.created", "vm.poweredOn"] {
        assert!(
            events_before.iter().any(|e| e.kind == kind),
            "{kind} in event.list: {events_before:?}"
        );
    }
    let vm_samples = samples(&c, vm).await;
    // The rows are in the database itself.
    let db_name = url.rsplit('/').next().unwrap().to_string();
    let count = |table: &str| -> i64 {
        let out = Command::new(strata_tests::postgres::postgres_bindir().join("psql"))
            .arg(&url)
            .args(["-X", "-q", "-A", "-t", "-c"])
            .arg(format!("SELECT COUNT(*) FROM {table}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "psql on {db_name}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    assert_eq!(count("vms"), 1);
    assert_eq!(count("hosts"), 1);
    assert_eq!(count("alarms"), 1);
    assert!(count("events") >= events_before.len() as i64);
    assert!(count("stats") >= 2);

    // A manager restart finds it all again.
    let status = lab.server.stop().expect("running");
    assert!(status.success(), "clean shutdown: {status:?}");
    lab.server.restart();
    let c = lab.server.client("admin").await;
    let v = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(v.name, "pg-guest");
    let hosts = c.call::<m::HostList>(Empty {}).await.unwrap();
    assert_eq!(hosts.iter().map(|h| h.id).collect::<Vec<_>>(), [lab.host]);
    let events_after = events(&c, None).await;
    for e in &events_before {
        assert!(
            events_after.iter().any(|a| a == e),
            "event {} kept as it was",
            e.id
        );
    }
    let tasks_after = c
        .call::<m::TaskList>(TaskListParams::default())
        .await
        .unwrap();
    for t in &tasks_before {
        assert!(
            tasks_after.iter().any(|a| a.id == t.id),
            "task {} kept",
            t.description
        );
    }
    let after = alarms(&c).await;
    assert!(
        after
            .iter()
            .any(|a| a.id == alarm.id && a.triggered_ms == alarm.triggered_ms),
        "the same alarm, triggered when it was: {after:?}"
    );
    let kept = samples(&c, vm).await;
    assert!(
        vm_samples.iter().all(|s| kept.contains(s)),
        "stats kept: {vm_samples:?} vs {kept:?}"
    );
    assert!(!lab.server.log().contains(PG_PASSWORD));
    // Lab's drop stops the manager and the VM; PgCluster's stops PostgreSQL.
    drop(lab);
    drop(pg);
}

/// Runs strata-server with `--database-url url` and returns (exit status, stdout + stderr);
/// it must exit by itself within 60 s.
fn run_server_with(url: &str) -> (std::process::ExitStatus, String) {
    let dir = tempfile::Builder::new()
        .prefix("strata-pgbad")
        .tempdir_in(scratch_root())
        .unwrap();
    let mut child = Command::new(bins!().server)
        .args(["--listen", "127.0.0.1:0", "--admin-password", PASSWORD])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--database-url", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "strata-server kept running with {url:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

#[test]
fn a_bad_or_unreachable_database_stops_the_manager_with_a_clear_message() {
    // Not a supported database.
    let (st, out) = run_server_with("mysql://strata:hunter2-x@db/strata");
    assert!(!st.success(), "{out}");
    assert!(out.contains("is not supported: use sqlite://"), "{out}");
    assert!(!out.contains("hunter2-x"), "{out}");

    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (st, out) = run_server_with(&format!(
        "postgres://strata:hunter2-y@127.0.0.1:{port}/inventory"
    ));
    assert!(!st.success(), "{out}");
    assert!(
        out.contains(&format!(
            "cannot connect to PostgreSQL at 127.0.0.1:{port}, database inventory, user strata"
        )),
        "{out}"
    );
    assert!(!out.contains("hunter2-y"), "{out}");

    // A real server that refuses the password.
    let pg = PgCluster::start();
    let url = pg.create_database();
    let (st, out) = run_server_with(&url.replace(PG_PASSWORD, "hunter2-z"));
    assert!(!st.success(), "{out}");
    assert!(
        out.contains("cannot connect to PostgreSQL at 127.0.0.1")
            && out.contains("password authentication failed"),
        "{out}"
    );
    assert!(!out.contains("hunter2-z"), "{out}");
}
