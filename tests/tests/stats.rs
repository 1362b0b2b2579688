//! Performance statistics end to end: the manager samples each host's VMs every interval and
//! serves the history; a CPU-burning guest shows far more CPU MHz than an idle one, memory is
//! the VM process's resident size, and a host's samples are the sums of its VMs'.

use std::time::{Duration, Instant};

use strata_shared::api::manager as m;
use strata_shared::model::*;
use strata_shared::{Client, ErrorCode};
use strata_tests::{bins, boot, console_run, power_off, Lab};
use uuid::Uuid;

async fn samples(c: &Client, id: Uuid) -> Vec<StatSample> {
    c.call::<m::StatsQuery>(StatsQueryParams { id, since_ms: None })
        .await
        .unwrap()
}

/// Mean CPU MHz over the samples of the last `n` rounds.
fn recent_cpu(s: &[StatSample], n: usize) -> f64 {
    let tail = &s[s.len().saturating_sub(n)..];
    tail.iter().map(|x| x.cpu_mhz).sum::<f64>() / tail.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_and_idle_vms_are_told_apart() {
    let lab = Lab::start_with(&bins!(), &["--stats-interval-secs", "1"]).await;
    let c = &lab.client;
    let busy = lab.create_guest_vm("busy01", 1).await;
    let idle = lab.create_guest_vm("idle01", 1).await;
    let off = boot(c, busy).await;
    boot(c, idle).await;
    console_run(
        c,
        busy,
        off,
        "while :; do :; done & echo burning-$((1+1))",
        "burning-2",
    )
    .await;

    // Wait for four rounds after the burner started.
    let started = strata_shared::now_ms();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = samples(c, busy).await;
        if s.iter().filter(|x| x.time_ms > started + 1000).count() >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "no samples: {s:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let facts = c
        .call::<m::HostGet>(IdParams { id: lab.host })
        .await
        .unwrap()
        .facts
        .unwrap();
    let core = f64::from(facts.cpu_mhz);
    let b = samples(c, busy).await;
    let i = samples(c, idle).await;
    let (b_cpu, i_cpu) = (recent_cpu(&b, 3), recent_cpu(&i, 3));
    eprintln!("busy {b_cpu:.0} MHz, idle {i_cpu:.0} MHz, one core {core:.0} MHz");
    assert!(
        b_cpu > 0.3 * core,
        "the burner uses a good part of a core: {b:?}"
    );
    assert!(b_cpu > 2.0 * i_cpu, "busy {b_cpu} vs idle {i_cpu}");
    let mem = b.last().unwrap().memory_mib;
    assert!(
        mem > 32.0 && mem < 1024.0,
        "resident memory of the VM process: {mem}"
    );
    // The host's samples add up its VMs.
    let h = samples(c, lab.host).await;
    let last = h.last().unwrap();
    let same: f64 = [&b, &i]
        .iter()
        .filter_map(|s| s.iter().find(|x| x.time_ms == last.time_ms))
        .map(|x| x.cpu_mhz)
        .sum();
    assert!((last.cpu_mhz - same).abs() < 1e-6, "{last:?} vs {same}");
    // Unknown objects are refused.
    let e = c
        .call::<m::StatsQuery>(StatsQueryParams {
            id: Uuid::new_v4(),
            since_ms: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    power_off(c, busy).await;
    power_off(c, idle).await;
}
