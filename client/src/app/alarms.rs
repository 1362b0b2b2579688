//! The active alarms the manager reports (`alarm.list`, then `alarm.changed` deltas), indexed
//! by the object they are about so the tree can mark each row in constant time.

use std::collections::HashMap;

use strata_shared::model::{AlarmChange, AlarmChangeState, AlarmInfo, AlarmSeverity};
use uuid::Uuid;

/// The active alarms.
#[derive(Debug, Default, Clone)]
pub struct AlarmSet {
    by_id: HashMap<Uuid, AlarmInfo>,
    /// The most severe alarm's severity per object, and how many alarms it has.
    worst: HashMap<Uuid, (AlarmSeverity, u32)>,
}

impl AlarmSet {
    /// Replaces every alarm (after connecting or reloading).
    pub fn reset(&mut self, alarms: Vec<AlarmInfo>) {
        self.by_id = alarms.into_iter().map(|a| (a.id, a)).collect();
        self.reindex();
    }

    /// Applies one `alarm.changed`.
    pub fn apply(&mut self, change: AlarmChange) {
        let target = change.alarm.target.id;
        match change.state {
            AlarmChangeState::Triggered | AlarmChangeState::Changed => {
                self.by_id.insert(change.alarm.id, change.alarm);
            }
            AlarmChangeState::Cleared => {
                self.by_id.remove(&change.alarm.id);
            }
        }
        self.reindex_target(target);
    }

    fn reindex(&mut self) {
        self.worst.clear();
        for a in self.by_id.values() {
            let e = self.worst.entry(a.target.id).or_insert((a.severity, 0));
            e.0 = e.0.max(a.severity);
            e.1 += 1;
        }
    }

    fn reindex_target(&mut self, target: Uuid) {
        let mut worst: Option<(AlarmSeverity, u32)> = None;
        for a in self.by_id.values().filter(|a| a.target.id == target) {
            let (s, n) = worst.unwrap_or((a.severity, 0));
            worst = Some((s.max(a.severity), n + 1));
        }
        match worst {
            Some(w) => self.worst.insert(target, w),
            None => self.worst.remove(&target),
        };
    }

    /// The most severe active alarm's severity on `object`, with how many it has.
    pub fn worst(&self, object: Uuid) -> Option<(AlarmSeverity, u32)> {
        self.worst.get(&object).copied()
    }

    /// The most severe active alarm's severity, when any alarm is active.
    pub fn worst_overall(&self) -> Option<AlarmSeverity> {
        self.worst.values().map(|w| w.0).max()
    }

    /// The alarms on `object`, most severe then newest first.
    pub fn on(&self, object: Uuid) -> Vec<&AlarmInfo> {
        let mut v: Vec<&AlarmInfo> = self
            .by_id
            .values()
            .filter(|a| a.target.id == object)
            .collect();
        sort(&mut v);
        v
    }

    /// Every alarm, most severe then newest first.
    pub fn all(&self) -> Vec<&AlarmInfo> {
        let mut v: Vec<&AlarmInfo> = self.by_id.values().collect();
        sort(&mut v);
        v
    }

    /// How many alarms are active, and how many of them nobody has acknowledged.
    pub fn counts(&self) -> (usize, usize) {
        let open = self
            .by_id
            .values()
            .filter(|a| a.acknowledged_by.is_none())
            .count();
        (self.by_id.len(), open)
    }
}

fn sort(v: &mut [&AlarmInfo]) {
    v.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.triggered_ms.cmp(&a.triggered_ms))
            .then(a.id.cmp(&b.id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::{AlarmKind, ObjectKind, ObjectRef};

    fn alarm(target: Uuid, kind: AlarmKind, severity: AlarmSeverity, at: i64) -> AlarmInfo {
        AlarmInfo {
            id: Uuid::new_v4(),
            kind,
            target: ObjectRef {
                kind: ObjectKind::Host,
                id: target,
                name: "h1".into(),
            },
            severity,
            message: "m".into(),
            triggered_ms: at,
            acknowledged_by: None,
            acknowledged_ms: None,
        }
    }

    #[test]
    fn the_worst_alarm_per_object_follows_triggers_changes_and_clears() {
        let host = Uuid::new_v4();
        let mut set = AlarmSet::default();
        let cpu = alarm(host, AlarmKind::HostCpuUsage, AlarmSeverity::Warning, 1);
        let conn = alarm(host, AlarmKind::HostConnection, AlarmSeverity::Critical, 2);
        set.reset(vec![cpu.clone()]);
        assert_eq!(set.worst(host), Some((AlarmSeverity::Warning, 1)));
        set.apply(AlarmChange {
            alarm: conn.clone(),
            state: AlarmChangeState::Triggered,
        });
        assert_eq!(set.worst(host), Some((AlarmSeverity::Critical, 2)));
        assert_eq!(set.worst_overall(), Some(AlarmSeverity::Critical));
        assert_eq!(set.on(host)[0].id, conn.id, "most severe first");
        let mut acked = conn.clone();
        acked.acknowledged_by = Some("admin".into());
        set.apply(AlarmChange {
            alarm: acked,
            state: AlarmChangeState::Changed,
        });
        assert_eq!(set.counts(), (2, 1));
        set.apply(AlarmChange {
            alarm: conn,
            state: AlarmChangeState::Cleared,
        });
        assert_eq!(set.worst(host), Some((AlarmSeverity::Warning, 1)));
        set.apply(AlarmChange {
            alarm: cpu,
            state: AlarmChangeState::Cleared,
        });
        assert_eq!(set.worst(host), None);
        assert_eq!(set.worst_overall(), None);
        assert!(set.all().is_empty());
    }
}
