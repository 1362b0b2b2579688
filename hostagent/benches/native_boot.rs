//! Boot benchmark (not a test): the same PVH test guest under strata-vmx and under
//! `qemu-system-x86_64 -M microvm -accel kvm`, side by side in one run. Prints, median of
//! N runs (default 7, `STRATA_BENCH_RUNS`): process start → first serial byte, process
//! start → ready marker, and the VMM's resident memory beyond the guest RAM it touched
//! (from /proc/PID/smaps when the marker appears).
//!
//! Run: `cargo bench -p strata-hostagent --bench native_boot` (needs /dev/kvm; QEMU is
//! skipped with a note when it is not installed).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_hostagent::vmm::{TESTGUEST_PATH, TESTGUEST_READY_MARKER};

const MEMORY_MIB: u32 = 128;

struct Sample {
    first_byte: Duration,
    marker: Duration,
    rss_kib: u64,
}

/// The VMM's resident memory beyond the guest RAM it touched, KiB: the sum of Rss over all
/// mappings of /proc/PID/smaps except the guest RAM mapping (the one exactly
/// `MEMORY_MIB` MiB long).
fn overhead_rss_kib(pid: u32) -> u64 {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return 0;
    };
    let guest_len = u64::from(MEMORY_MIB) << 20;
    let mut total = 0;
    let mut in_guest = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                in_guest = b - a == guest_len;
                continue;
            }
        }
        if let Some(v) = line.strip_prefix("Rss:") {
            let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            if !in_guest {
                total += kib;
            }
        }
    }
    total
}

/// Starts `cmd` with the guest's serial on its stdout and times the output.
fn run_once(mut cmd: Command) -> Result<Sample, String> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let mut seen = Vec::new();
    let mut first_byte = None;
    let mut buf = [0u8; 4096];
    let deadline = start + Duration::from_secs(30);
    let result = loop {
        if Instant::now() > deadline {
            break Err("no ready marker within 30 s".to_string());
        }
        let n = match out.read(&mut buf) {
            Ok(0) => break Err("the VMM exited before the marker".to_string()),
            Ok(n) => n,
            Err(e) => break Err(e.to_string()),
        };
        first_byte.get_or_insert_with(|| start.elapsed());
        seen.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&seen).contains(TESTGUEST_READY_MARKER) {
            let marker = start.elapsed();
            break Ok(Sample {
                first_byte: first_byte.unwrap_or(marker),
                marker,
                rss_kib: overhead_rss_kib(child.id()),
            });
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn measure(name: &str, runs: usize, make: &dyn Fn() -> Command) -> Option<[f64; 3]> {
    let mut samples = Vec::new();
    for _ in 0..runs {
        match run_once(make()) {
            Ok(s) => samples.push(s),
            Err(e) => {
                println!("{name}: {e}");
                return None;
            }
        }
    }
    let ms = |f: &dyn Fn(&Sample) -> Duration| {
        median(samples.iter().map(|s| f(s).as_secs_f64() * 1e3).collect())
    };
    Some([
        ms(&|s| s.first_byte),
        ms(&|s| s.marker),
        median(samples.iter().map(|s| s.rss_kib as f64 / 1024.0).collect()),
    ])
}

fn main() {
    let runs: usize = std::env::var("STRATA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
        .max(5);
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: this benchmark needs KVM"
    );
    let vmx = env!("CARGO_BIN_EXE_strata-vmx");
    let native = measure("strata-vmx", runs, &|| {
        let mut c = Command::new(vmx);
        c.env("STRATA_LOG", "warn").args([
            "--kernel",
            TESTGUEST_PATH,
            "--memory-mib",
            &MEMORY_MIB.to_string(),
            "--serial-log",
            "/dev/stdout",
        ]);
        c
    });
    let qemu = measure("qemu microvm", runs, &|| {
        let mut c = Command::new("qemu-system-x86_64");
        c.args([
            "-M",
            "microvm",
            "-accel",
            "kvm",
            "-cpu",
            "host,-arch-capabilities",
            "-m",
            &MEMORY_MIB.to_string(),
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-kernel",
            TESTGUEST_PATH,
        ]);
        c
    });
    println!("\nboot of the PVH test guest, 1 vCPU, {MEMORY_MIB} MiB, median of {runs} runs");
    println!(
        "{:<34} {:>12} {:>14} {:>8}",
        "", "first byte", "ready marker", "VMM RSS"
    );
    for (name, r) in [
        ("strata-vmx", &native),
        ("qemu -M microvm -accel kvm", &qemu),
    ] {
        match r {
            Some([f, m, rss]) => println!("{name:<34} {f:>9.1} ms {m:>11.1} ms {rss:>5.1} MiB"),
            None => println!("{name:<34} {:>12}", "failed"),
        }
    }
    if let (Some(n), Some(q)) = (native, qemu) {
        println!(
            "{:<34} {:>11.3}x {:>13.3}x {:>7.3}x",
            "strata-vmx / qemu",
            n[0] / q[0],
            n[1] / q[1],
            n[2] / q[2]
        );
    }
}
