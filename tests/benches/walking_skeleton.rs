//! Walking-skeleton figures (a benchmark, not a test): VM power-on → ready-marker time,
//! API round-trip latency, and idle memory of the manager and the host agent.
//!
//! Run: `cargo bench -p strata-tests --bench walking_skeleton`

use std::time::{Duration, Instant};

use strata_shared::api::manager as m;
use strata_shared::model::*;
use strata_tests::{bins, task_ok, Lab, READY_MARKER};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

async fn console_size(c: &strata_shared::Client, vm: uuid::Uuid) -> u64 {
    c.call::<m::VmConsoleRead>(m::ConsoleReadParams {
        id: vm,
        offset: -1,
        max_bytes: Some(1),
    })
    .await
    .unwrap()
    .size
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;

    // Idle memory, before any VM exists.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server_rss = rss_kib(lab.server.pid().unwrap_or(0));
    let agent_rss = rss_kib(lab.agent.pid().unwrap_or(0));

    // API round trips: an authenticated read that goes to the database.
    let vm = lab.create_guest_vm("bench", 1).await;
    let mut rtt = Vec::with_capacity(1000);
    for _ in 0..50 {
        c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    }
    for _ in 0..1000 {
        let t = Instant::now();
        c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
        rtt.push(t.elapsed());
    }
    rtt.sort();
    let mut info_rtt = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t = Instant::now();
        c.call::<m::ServerInfoMethod>(Empty {}).await.unwrap();
        info_rtt.push(t.elapsed());
    }
    info_rtt.sort();

    // Power-on → marker, five times.
    let mut boots = Vec::new();
    for _ in 0..5 {
        let from = console_size(c, vm).await;
        let t0 = Instant::now();
        let t = c.call::<m::VmPowerOn>(IdParams { id: vm }).await.unwrap();
        let task = task_ok(c, t).await;
        let started = t0.elapsed();
        let mut offset = from as i64;
        let mut text = String::new();
        loop {
            let chunk = c
                .call::<m::VmConsoleRead>(m::ConsoleReadParams {
                    id: vm,
                    offset,
                    max_bytes: None,
                })
                .await
                .unwrap();
            text.push_str(&chunk.data);
            offset = chunk.next_offset as i64;
            if text.contains(READY_MARKER) {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "no marker: {text}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let marker = t0.elapsed();
        let _ = task;
        boots.push((started, marker));
        let t = c
            .call::<m::VmPowerOff>(m::PowerOffParams {
                id: vm,
                hard: true,
                timeout_secs: None,
            })
            .await
            .unwrap();
        task_ok(c, t).await;
    }
    let mut markers: Vec<Duration> = boots.iter().map(|b| b.1).collect();
    markers.sort();
    let mut starts: Vec<Duration> = boots.iter().map(|b| b.0).collect();
    starts.sort();

    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    println!(
        "walking skeleton figures (qemu engine, {} accel)",
        if std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .contains(" vmx")
        {
            "kvm"
        } else {
            "tcg"
        }
    );
    println!(
        "  power-on → ready marker, median of 5: {}  (runs: {})",
        ms(markers[2]),
        markers
            .iter()
            .map(|d| ms(*d))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  power-on task done (process up), median of 5: {}",
        ms(starts[2])
    );
    println!(
        "  vm.get round trip, 1000 calls: p50 {}  p99 {}  max {}",
        ms(percentile(&rtt, 0.5)),
        ms(percentile(&rtt, 0.99)),
        ms(rtt[rtt.len() - 1])
    );
    println!(
        "  server.info round trip, 1000 calls: p50 {}  p99 {}",
        ms(percentile(&info_rtt, 0.5)),
        ms(percentile(&info_rtt, 0.99))
    );
    println!(
        "  idle RSS: manager {:.1} MiB, host agent {:.1} MiB",
        server_rss as f64 / 1024.0,
        agent_rss as f64 / 1024.0
    );

    let t = c.call::<m::VmDestroy>(IdParams { id: vm }).await.unwrap();
    task_ok(c, t).await;
}
