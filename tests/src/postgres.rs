//! A private, throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory,
//! `postgres` on 127.0.0.1 (a free port) and a unix socket in that directory, no fsync;
//! [`PgCluster::create_database`] hands out a fresh database and its URL. Dropping the
//! cluster stops the server (immediate shutdown) and removes the directory; so does the end
//! of the test process, however it ends: a watcher shell holds the server and stops it when
//! the pipe from this process closes.
//!
//! Needs Debian's `postgresql` package (scripts/setup installs it); the system's own cluster
//! and service are not used. As root, the cluster runs as the `postgres` user the package
//! creates (initdb refuses root).
//!
//! Only the standard library and `tempfile`: the server crate's unit tests include this file
//! too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Password of the `strata` role the databases belong to (the URLs carry it).
pub const PG_PASSWORD: &str = "pg-secret-Xy7";

/// A running throwaway cluster.
pub struct PgCluster {
    /// Directory with the data directory, the socket and the server log.
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// TCP port on 127.0.0.1 (the socket is `dir/.s.PGSQL.<port>`).
    pub port: u16,
    watcher: Option<Child>,
    lifeline: Option<ChildStdin>,
}

/// The directory with `initdb` and `postgres`, or a panic saying to run scripts/setup.
pub fn postgres_bindir() -> PathBuf {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has(&d) {
            return d;
        }
    }
    // Debian: /usr/lib/postgresql/<major>/bin, not on PATH; the newest wins.
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let d = e.path().join("bin");
            has(&d).then_some((major, d))
        })
        .collect();
    found.sort();
    if let Some((_, d)) = found.pop() {
        return d;
    }
    for d in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if has(&d) {
            return d;
        }
    }
    panic!(
        "PostgreSQL server binaries (initdb, postgres) not found: run scripts/setup (as root) first, \
         it installs Debian's postgresql package"
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A command for a PostgreSQL server program: as the `postgres` user when we are root.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl PgCluster {
    /// Creates and starts a cluster (a few seconds); panics with the reason when it cannot.
    pub fn start() -> PgCluster {
        let bin = postgres_bindir();
        let dir = tempfile::Builder::new()
            .prefix("strata-pg")
            .tempdir()
            .expect("temporary directory");
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(
                st.success(),
                "cannot hand {} to the postgres user (does it exist? run scripts/setup)",
                dir.path().display()
            );
        }
        let data = dir.path().join("data");
        let out = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb (run scripts/setup): {e}"));
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cluster = PgCluster {
            dir,
            bin,
            port: 0,
            watcher: None,
            lifeline: None,
        };
        // A port picked now may be taken before the server binds it: try a few.
        let mut last_log = String::new();
        for _ in 0..3 {
            cluster.port = free_port();
            match cluster.run_server() {
                Ok(()) => {
                    cluster.psql(&format!(
                        "CREATE ROLE strata LOGIN PASSWORD '{PG_PASSWORD}'"
                    ));
                    return cluster;
                }
                Err(log) => last_log = log,
            }
        }
        panic!("postgres did not start; its log:\n{last_log}");
    }

    /// Starts `postgres` under a watcher shell and waits until it accepts connections; the
    /// server log when it does not.
    fn run_server(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let log = dir.join(format!("postgres-{}.log", self.port));
        let server = as_owner(&self.bin.join("postgres"));
        let server: Vec<String> = std::iter::once(server.get_program())
            .chain(server.get_args())
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        // The watcher: server in the background; when a line arrives on its stdin (drop, a
        // retry) or the pipe closes (this process ended, however), an immediate shutdown; in
        // the second case it also removes the directory, which nobody else will.
        let script = r#"
            "$@" >"$LOG" 2>&1 </dev/null &
            if read -r _; then keep=1; else keep=0; fi
            pid=$(head -n1 "$DATA/postmaster.pid" 2>/dev/null)
            [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null
            i=0
            while [ -e "$DATA/postmaster.pid" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
            wait
            [ "$keep" = 1 ] || rm -rf "$DIR"
        "#;
        let mut watcher = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("pg-watcher")
            .args(&server)
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-k")
            .arg(dir)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .env("LOG", &log)
            .env("DATA", dir.join("data"))
            .env("DIR", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run sh");
        self.lifeline = watcher.stdin.take();
        self.watcher = Some(watcher);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("ready to accept connections") {
                return Ok(());
            }
            let exited = self
                .watcher
                .as_mut()
                .map(|w| matches!(w.try_wait(), Ok(Some(_))))
                .unwrap_or(true);
            if exited || text.contains("FATAL") || Instant::now() > deadline {
                self.stop_watcher();
                return Err(text);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs SQL as the superuser through psql (over the socket); panics when it fails.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Creates a fresh empty database owned by the `strata` role; returns its URL (TCP to
    /// 127.0.0.1, password authentication).
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("strata_{}", NEXT.fetch_add(1, Ordering::SeqCst));
        self.psql(&format!("CREATE DATABASE {name} OWNER strata"));
        self.url(&name)
    }

    /// The directory of the server's unix socket (`.s.PGSQL.<port>`; local connections are
    /// trusted).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of database `name` for the `strata` role.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://strata:{PG_PASSWORD}@127.0.0.1:{}/{name}",
            self.port
        )
    }

    fn stop_watcher(&mut self) {
        if let Some(mut l) = self.lifeline.take() {
            let _ = l.write_all(b"stop\n");
        }
        if let Some(mut w) = self.watcher.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !matches!(w.try_wait(), Ok(Some(_))) {
                if Instant::now() > deadline {
                    let _ = w.kill();
                    let _ = w.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop_watcher();
    }
}

/// With `STRATA_TEST_DATABASE=postgres`, a fresh database in a cluster shared by this test
/// process (stopped when the process ends); `None` otherwise (SQLite, the default). Any other
/// value is a mistake and panics.
pub fn suite_database() -> Option<String> {
    match std::env::var("STRATA_TEST_DATABASE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => None,
        Ok("postgres") => {
            static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
            Some(CLUSTER.get_or_init(PgCluster::start).create_database())
        }
        Ok(other) => panic!("STRATA_TEST_DATABASE={other:?}: use sqlite or postgres"),
    }
}
