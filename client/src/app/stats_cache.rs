//! Performance samples per VM or host, as the Performance tab shows them: fetched on a
//! tokio task when a view asks and the last answer is older than [`STATS_REFRESH`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use strata_shared::model::StatSample;
use uuid::Uuid;

/// How often samples on screen are fetched again.
pub const STATS_REFRESH: Duration = Duration::from_secs(5);
/// After this long without an answer a request counts as lost.
const STATS_LOST: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
struct Entry {
    result: Option<Result<Vec<StatSample>, String>>,
    asked_at: Instant,
    in_flight: bool,
}

/// `stats.query` answers per object.
#[derive(Debug, Default, Clone)]
pub struct StatsCache {
    entries: HashMap<Uuid, Entry>,
}

impl StatsCache {
    /// Whether `id`'s samples should be fetched now.
    pub fn wants_refresh(&self, id: Uuid, now: Instant) -> bool {
        match self.entries.get(&id) {
            None => true,
            Some(e) if e.in_flight => now.duration_since(e.asked_at) > STATS_LOST,
            Some(e) => now.duration_since(e.asked_at) >= STATS_REFRESH,
        }
    }

    /// Notes that a fetch of `id` started.
    pub fn asked(&mut self, id: Uuid, now: Instant) {
        let e = self.entries.entry(id).or_insert(Entry {
            result: None,
            asked_at: now,
            in_flight: true,
        });
        e.asked_at = now;
        e.in_flight = true;
    }

    /// Stores an answer (a failed refresh keeps the last good samples).
    pub fn store(&mut self, id: Uuid, result: Result<Vec<StatSample>, String>) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.in_flight = false;
            if result.is_ok() || !matches!(e.result, Some(Ok(_))) {
                e.result = Some(result);
            }
        }
    }

    /// The last answer for `id`: `None` while loading.
    pub fn get(&self, id: Uuid) -> Option<&Result<Vec<StatSample>, String>> {
        self.entries.get(&id).and_then(|e| e.result.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_fetched_once_per_refresh_and_kept_on_failure() {
        let mut c = StatsCache::default();
        let id = Uuid::new_v4();
        let t0 = Instant::now();
        assert!(c.wants_refresh(id, t0));
        c.asked(id, t0);
        assert!(
            !c.wants_refresh(id, t0 + Duration::from_secs(1)),
            "in flight"
        );
        let s = StatSample {
            time_ms: 1,
            cpu_mhz: 10.0,
            memory_mib: 20.0,
        };
        c.store(id, Ok(vec![s.clone()]));
        assert!(!c.wants_refresh(id, t0 + Duration::from_secs(1)));
        assert!(c.wants_refresh(id, t0 + STATS_REFRESH));
        c.asked(id, t0 + STATS_REFRESH);
        c.store(id, Err("gone".into()));
        assert_eq!(c.get(id), Some(&Ok(vec![s])), "last good samples kept");
    }
}
