//! The stats sampler: every interval the manager reads each connected host's raw VM
//! counters, turns the CPU time used since the previous round into MHz, and stores a sample
//! per VM, then feeds the round to the usage alarms; old samples are pruned to the retention.

use std::collections::HashMap;
use std::sync::Mutex;

use strata_shared::api::agent as agent_api;
use strata_shared::model::Empty;
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
            Ok(mut last) => counters.rates(&mut last),
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
