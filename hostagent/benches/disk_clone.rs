//! Clone benchmark (not a test): how long a linked clone (a qcow2 overlay reading through the
//! source) and a full clone (a flattened copy) of a 1 GiB disk take, with the disk fully
//! written (every byte non-zero, so nothing is skipped as sparse) and half written. Prints the
//! median of N runs (default 5, `STRATA_BENCH_RUNS`). The scratch directory is under
//! `target/` (same file system as a datastore on this machine).
//!
//! Run: `cargo bench -p strata-hostagent --bench disk_clone`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use strata_hostagent::datastore::{disk, overlay};
use strata_shared::model::{DiskFormat, Provisioning};

const SIZE: u64 = 1 << 30;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn fill(path: &Path, bytes: u64) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    let block = vec![0x5au8; 1 << 20];
    for _ in 0..(bytes >> 20) {
        f.write_all(&block).expect("write");
    }
    f.sync_all().expect("sync");
}

fn main() {
    let runs: usize = std::env::var("STRATA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-disk-clone");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("scratch dir");
    println!("clone of a 1 GiB raw disk, median of {runs}");
    for (label, written) in [("fully written", SIZE), ("half written", SIZE / 2)] {
        let src_dir = root.join("src");
        std::fs::create_dir_all(&src_dir).expect("src dir");
        let base = src_dir.join("src.raw");
        let _ = std::fs::remove_file(&base);
        disk::create(&base, SIZE, DiskFormat::Raw, Provisioning::Thin).expect("create");
        fill(&base, written);
        let (mut linked, mut full) = (Vec::new(), Vec::new());
        for i in 0..runs {
            let dst = root.join(format!("clone{i}"));
            std::fs::create_dir_all(&dst).expect("clone dir");
            let t = Instant::now();
            overlay::create(&dst, "c.qcow2", "../src/src.raw", DiskFormat::Raw).expect("overlay");
            linked.push(t.elapsed());
            let t = Instant::now();
            overlay::copy(&base, DiskFormat::Raw, &dst.join("c.raw"), DiskFormat::Raw)
                .expect("copy");
            full.push(t.elapsed());
            let _ = std::fs::remove_dir_all(&dst);
        }
        let (l, f) = (median(linked), median(full));
        println!(
            "  {label:>13}: linked clone {:>8.1} ms   full clone {:>8.1} ms ({:.0} MiB/s)",
            l.as_secs_f64() * 1e3,
            f.as_secs_f64() * 1e3,
            (written >> 20) as f64 / f.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
