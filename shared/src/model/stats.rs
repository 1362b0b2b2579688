//! Performance statistics: what host agents count for each running VM, and the samples the
//! manager keeps and serves for charts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A running VM's raw counters at one moment (host agent → manager).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmCounters {
    /// The VM.
    pub vm: Uuid,
    /// CPU time its process (all threads) has used, nanoseconds.
    pub cpu_ns: u64,
    /// Resident memory of its process, bytes.
    pub rss_bytes: u64,
}

/// `host.stats` result (agent): counters of every running VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostCounters {
    /// When they were read, Unix ms.
    pub time_ms: i64,
    /// MHz of one host CPU (to turn CPU time into MHz).
    pub cpu_mhz_per_core: u32,
    /// The VMs.
    pub vms: Vec<VmCounters>,
}

impl HostCounters {
    /// (VM, MHz, MiB) for each VM that has a previous reading in `last` (VM → (time, CPU ns)),
    /// which this round updates: the CPU time used since then becomes MHz. A VM whose counter
    /// went back (a new process) or whose clock did not move gives no sample this round.
    pub fn rates(
        &self,
        last: &mut std::collections::HashMap<Uuid, (i64, u64)>,
    ) -> Vec<(Uuid, f64, f64)> {
        let mut out = Vec::new();
        for v in &self.vms {
            if let Some((t0, cpu0)) = last.insert(v.vm, (self.time_ms, v.cpu_ns)) {
                let wall_ns = (self.time_ms - t0) as f64 * 1e6;
                if wall_ns <= 0.0 || v.cpu_ns < cpu0 {
                    continue; // clock went back, or a new process since: start over
                }
                let cores = (v.cpu_ns - cpu0) as f64 / wall_ns;
                out.push((
                    v.vm,
                    cores * f64::from(self.cpu_mhz_per_core),
                    v.rss_bytes as f64 / (1024.0 * 1024.0),
                ));
            }
        }
        out
    }
}

/// One sample of a VM's (or a host's) load over an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatSample {
    /// End of the interval, Unix ms.
    pub time_ms: i64,
    /// CPU used, MHz (averaged over the interval).
    pub cpu_mhz: f64,
    /// Resident memory, MiB.
    pub memory_mib: f64,
}

/// `stats.query` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatsQueryParams {
    /// A VM or a host (a host's samples are the sums over its VMs).
    pub id: Uuid,
    /// Only samples after this time, Unix ms (default: the last hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
}

#[cfg(test)]
mod rate_tests {
    use super::*;
    use std::collections::HashMap;

    fn round(time_ms: i64, cpu_ns: u64) -> HostCounters {
        HostCounters {
            time_ms,
            cpu_mhz_per_core: 2000,
            vms: vec![VmCounters {
                vm: Uuid::nil(),
                cpu_ns,
                rss_bytes: 256 << 20,
            }],
        }
    }

    #[test]
    fn cpu_time_becomes_mhz_over_the_interval() {
        let mut last = HashMap::new();
        assert!(
            round(1_000, 0).rates(&mut last).is_empty(),
            "first reading only"
        );
        // Half a core for two seconds at 2000 MHz per core = 1000 MHz.
        let r = round(3_000, 1_000_000_000).rates(&mut last);
        assert_eq!(r.len(), 1);
        assert!((r[0].1 - 1000.0).abs() < 1e-6, "{r:?}");
        assert!((r[0].2 - 256.0).abs() < 1e-6);
        // A restarted process (counter went back) gives no sample, then counts again.
        assert!(round(4_000, 10).rates(&mut last).is_empty());
        assert_eq!(round(5_000, 10 + 2_000_000_000).rates(&mut last).len(), 1);
    }
}
