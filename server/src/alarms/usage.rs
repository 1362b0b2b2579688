//! The usage alarms, fed by each stats sampling round: a VM's CPU (its MHz over its vCPUs ×
//! the host's MHz per core), and a host's CPU and memory (the sums over its VMs over the
//! host's cores × MHz and its memory), each through the threshold and sustain rule.

use strata_shared::model::{AlarmKind, HostCounters, ObjectKind, ObjectRef};
use tracing::warn;
use uuid::Uuid;

use super::sustain::Thresholds;
use crate::app::App;
use crate::config::ServerConfig;

/// True for the kinds the stats sampler drives.
pub fn is_usage(kind: AlarmKind) -> bool {
    matches!(
        kind,
        AlarmKind::VmCpuUsage | AlarmKind::HostCpuUsage | AlarmKind::HostMemoryUsage
    )
}

/// `used` as a percentage of `capacity`; `None` when the capacity is unknown (zero).
pub fn percent(used: f64, capacity: f64) -> Option<f64> {
    (capacity > 0.0 && used.is_finite()).then(|| used * 100.0 / capacity)
}

/// The CPU thresholds of the configuration.
pub fn cpu_thresholds(c: &ServerConfig) -> Thresholds {
    Thresholds {
        warning_pct: f64::from(c.alarm_cpu_warning_pct),
        critical_pct: f64::from(c.alarm_cpu_critical_pct),
        sustain: c.alarm_sustain_samples,
    }
}

/// The memory thresholds of the configuration.
pub fn memory_thresholds(c: &ServerConfig) -> Thresholds {
    Thresholds {
        warning_pct: f64::from(c.alarm_memory_warning_pct),
        critical_pct: f64::from(c.alarm_memory_critical_pct),
        sustain: c.alarm_sustain_samples,
    }
}

/// What one usage alarm watches, in words: "VM web01 uses 97% of its CPU".
pub fn message(target: &ObjectRef, kind: AlarmKind, pct: f64) -> String {
    let what = match kind {
        AlarmKind::HostMemoryUsage => "memory",
        _ => "CPU",
    };
    let who = match target.kind {
        ObjectKind::Vm => "VM",
        _ => "Host",
    };
    format!("{who} {} uses {pct:.0}% of its {what}", target.name)
}

/// One object's sample: feeds its level and raises, changes or clears its alarm when the
/// level moved. True when it raised or changed the alarm.
async fn observe(app: &App, kind: AlarmKind, target: ObjectRef, pct: f64, t: &Thresholds) -> bool {
    let Some((_, after)) = app.alarms.observe(kind, target.id, pct, t) else {
        return false;
    };
    match after {
        Some(severity) => {
            super::raise(app, kind, &target, severity, &message(&target, kind, pct)).await;
            true
        }
        None => {
            let why = format!(
                "usage has been below {:.0}% for {} sample(s) (now {pct:.0}%)",
                t.warning_pct,
                t.sustain.max(1)
            );
            super::clear(app, kind, target.id, &why).await;
            false
        }
    }
}

/// One sampling round of a host: `samples` are (VM, CPU MHz, resident MiB) for the VMs
/// measured over the round.
pub async fn evaluate(
    app: &App,
    host: Uuid,
    counters: &HostCounters,
    samples: &[(Uuid, f64, f64)],
) {
    let (row, vms) = match (app.db.host(host).await, app.db.vms(Some(host)).await) {
        (Ok(r), Ok(v)) => (r, v),
        (Err(e), _) | (_, Err(e)) => {
            warn!(%host, error = %e, "cannot check the usage alarms");
            return;
        }
    };
    let cpu = cpu_thresholds(&app.config);
    let mem = memory_thresholds(&app.config);
    let facts = row.info.facts.as_ref();
    let per_core = match counters.cpu_mhz_per_core {
        0 => facts.map(|f| f.cpu_mhz).unwrap_or(0),
        n => n,
    };
    for (vm, mhz, _) in samples {
        let Some(info) = vms.iter().find(|v| v.id == *vm) else {
            continue;
        };
        if !info.power_state.has_process() {
            continue;
        }
        let capacity = f64::from(info.spec.vcpus) * f64::from(per_core);
        let Some(pct) = percent(*mhz, capacity) else {
            continue;
        };
        let target = crate::app::vm_ref(info);
        if observe(app, AlarmKind::VmCpuUsage, target, pct, &cpu).await {
            // A power-off recorded since this round began has cleared the VM's alarms
            // already: do not leave the one just raised behind.
            if let Ok(now) = app.db.vm(*vm).await {
                if !now.power_state.has_process() {
                    super::vm_stopped(app, &now).await;
                }
            }
        }
    }
    // A host's load is the sum over all its VMs: only judge it on rounds that measured
    // every one (not the first round after a connect or a VM start).
    let (Some(f), true) = (facts, samples.len() == counters.vms.len()) else {
        return;
    };
    let target = ObjectRef {
        kind: ObjectKind::Host,
        id: host,
        name: row.info.name.clone(),
    };
    let mhz: f64 = samples.iter().map(|s| s.1).sum();
    let mib: f64 = samples.iter().map(|s| s.2).sum();
    let capacity = f64::from(f.cpu_count) * f64::from(f.cpu_mhz);
    if let Some(pct) = percent(mhz, capacity) {
        observe(app, AlarmKind::HostCpuUsage, target.clone(), pct, &cpu).await;
    }
    if let Some(pct) = percent(mib, f.memory_mib as f64) {
        observe(app, AlarmKind::HostMemoryUsage, target, pct, &mem).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_messages() {
        assert_eq!(percent(1000.0, 2000.0), Some(50.0));
        assert_eq!(percent(1000.0, 0.0), None, "unknown capacity");
        assert_eq!(percent(f64::NAN, 10.0), None);
        let vm = ObjectRef {
            kind: ObjectKind::Vm,
            id: Uuid::nil(),
            name: "web01".into(),
        };
        assert_eq!(
            message(&vm, AlarmKind::VmCpuUsage, 96.7),
            "VM web01 uses 97% of its CPU"
        );
        let host = ObjectRef {
            kind: ObjectKind::Host,
            ..vm
        };
        assert_eq!(
            message(&host, AlarmKind::HostMemoryUsage, 85.2),
            "Host web01 uses 85% of its memory"
        );
        let t = cpu_thresholds(&ServerConfig::default());
        assert_eq!((t.warning_pct, t.critical_pct, t.sustain), (75.0, 90.0, 3));
        let t = memory_thresholds(&ServerConfig::default());
        assert_eq!((t.warning_pct, t.critical_pct), (85.0, 95.0));
        assert!(is_usage(AlarmKind::HostCpuUsage) && !is_usage(AlarmKind::HostConnection));
    }
}
