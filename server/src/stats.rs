//! The stats sampler: every interval the manager reads each connected host's raw VM
//! counters, turns the CPU time used since the previous round into MHz, and stores a sample
//! per VM, then feeds the round to the usage alarms; old samples are pruned to the retention.

use std::collections::HashMap;
use std::sync::Mutex;

use strata_shared::api::agent as agent_api;
use strata_shared::model::{Empty, HostCounters};
use strata_shared::Client;
use tracing::warn;
use uuid::Uuid;

use crate::app::App;

/// Old samples are deleted at most this often (not once per host per round).
const PRUNE_EVERY_MS: i64 = 60_000;

/// The previous counters of each VM, to take differences from.
#[derive(Default)]
pub struct Sampler {
    last: Mutex<HashMap<Uuid, (i64, u64)>>,
    last_prune_ms: std::sync::atomic::AtomicI64,
}

/// (VM, MHz, MiB) for each VM that has a previous reading, from one round of counters.
pub fn rates(last: &mut HashMap<Uuid, (i64, u64)>, c: &HostCounters) -> Vec<(Uuid, f64, f64)> {
    let mut out = Vec::new();
    for v in &c.vms {
        if let Some((t0, cpu0)) = last.insert(v.vm, (c.time_ms, v.cpu_ns)) {
            let wall_ns = (c.time_ms - t0) as f64 * 1e6;
            if wall_ns <= 0.0 || v.cpu_ns < cpu0 {
                continue; // clock went back, or a new process since: start over
            }
            let cores = (v.cpu_ns - cpu0) as f64 / wall_ns;
            out.push((
                v.vm,
                cores * f64::from(c.cpu_mhz_per_core),
                v.rss_bytes as f64 / (1024.0 * 1024.0),
            ));
        }
    }
    out
}

impl Sampler {
    /// One round for one host.
    pub async fn sample(&self, app: &App, host: Uuid, client: &Client) {
        let counters = match client.call::<agent_api::HostStats>(Empty {}).await {
            Ok(c) => c,
            Err(e) => {
                warn!(%host, error = %e, "cannot read host stats");
                return;
            }
        };
        let samples = match self.last.lock() {
            Ok(mut last) => rates(&mut last, &counters),
            Err(_) => return,
        };
        crate::alarms::usage::evaluate(app, host, &counters, &samples).await;
        if samples.is_empty() {
            return;
        }
        if let Err(e) = app.db.insert_stats(host, counters.time_ms, &samples).await {
            warn!(%host, error = %e, "cannot store stats");
        }
        let prev = self
            .last_prune_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if counters.time_ms - prev < PRUNE_EVERY_MS {
            return;
        }
        self.last_prune_ms
            .store(counters.time_ms, std::sync::atomic::Ordering::Relaxed);
        let keep_ms = i64::try_from(app.config.stats_retention_hours)
            .unwrap_or(i64::MAX / 4)
            .saturating_mul(3_600_000);
        if let Err(e) = app.db.prune_stats(counters.time_ms - keep_ms).await {
            warn!(error = %e, "cannot prune stats");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::VmCounters;

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
            rates(&mut last, &round(1_000, 0)).is_empty(),
            "first reading only"
        );
        // Half a core for two seconds at 2000 MHz per core = 1000 MHz.
        let r = rates(&mut last, &round(3_000, 1_000_000_000));
        assert_eq!(r.len(), 1);
        assert!((r[0].1 - 1000.0).abs() < 1e-6, "{r:?}");
        assert!((r[0].2 - 256.0).abs() < 1e-6);
        // A restarted process (counter went back) gives no sample, then counts again.
        assert!(rates(&mut last, &round(4_000, 10)).is_empty());
        assert_eq!(rates(&mut last, &round(5_000, 10 + 2_000_000_000)).len(), 1);
    }
}
