//! Alarms: what is wrong right now. The manager evaluates each condition where it learns the
//! facts (a host link changing state, a host reporting its datastores, a stats sampling
//! round, a VM powering off or going away); this module stores the result, records an Event
//! for every trigger, severity change, acknowledgement and clear, and pushes `alarm.changed`
//! to subscribed sessions.

pub mod connection;
pub mod datastore;
pub mod sustain;
pub mod usage;

use std::collections::HashMap;
use std::sync::Mutex;

use strata_shared::api::notifications;
use strata_shared::model::{
    AlarmChange, AlarmChangeState, AlarmInfo, AlarmKind, AlarmSeverity, ObjectKind, ObjectRef,
    PowerState, Severity, VmInfo,
};
use tracing::{info, warn};
use uuid::Uuid;

use crate::app::App;
use crate::db::DbError;
use sustain::{Sustained, Thresholds};

/// Event kind of an alarm becoming active.
pub const EVENT_TRIGGERED: &str = "alarm.triggered";
/// Event kind of an active alarm changing severity.
pub const EVENT_SEVERITY_CHANGED: &str = "alarm.severityChanged";
/// Event kind of an alarm being acknowledged.
pub const EVENT_ACKNOWLEDGED: &str = "alarm.acknowledged";
/// Event kind of an alarm clearing.
pub const EVENT_CLEARED: &str = "alarm.cleared";

/// The manager's alarm state besides the database: the usage levels of each object.
#[derive(Default)]
pub struct Alarms {
    /// Held while an alarm is read and written, so that stores, events and notifications of
    /// one alarm happen in order.
    write: tokio::sync::Mutex<()>,
    /// Usage level per (kind, object), fed by the stats sampler.
    usage: Mutex<HashMap<(AlarmKind, Uuid), Sustained>>,
}

impl Alarms {
    /// Feeds one usage sample of an object; returns the level before and after it when the
    /// sample changed it.
    pub fn observe(
        &self,
        kind: AlarmKind,
        target: Uuid,
        pct: f64,
        t: &Thresholds,
    ) -> Option<(Option<AlarmSeverity>, Option<AlarmSeverity>)> {
        let mut usage = self.usage.lock().ok()?;
        let s = usage.entry((kind, target)).or_default();
        let before = s.level();
        let after = s.observe(pct, t);
        (before != after).then_some((before, after))
    }

    /// Sets an object's usage level (an alarm found active at start-up).
    pub fn restore(&self, kind: AlarmKind, target: Uuid, level: AlarmSeverity) {
        if let Ok(mut usage) = self.usage.lock() {
            usage.insert((kind, target), Sustained::at(Some(level)));
        }
    }

    /// Forgets the usage levels of an object.
    pub fn forget(&self, target: Uuid) {
        if let Ok(mut usage) = self.usage.lock() {
            usage.retain(|(_, id), _| *id != target);
        }
    }
}

/// The object in words: "VM web01", "host h1", "datastore ds2".
pub fn object_words(r: &ObjectRef) -> String {
    match r.kind {
        ObjectKind::Vm => format!("VM {}", r.name),
        other => format!("{} {}", other.as_str(), r.name),
    }
}

/// The event severity matching an alarm's.
fn event_severity(s: AlarmSeverity) -> Severity {
    match s {
        AlarmSeverity::Warning => Severity::Warning,
        AlarmSeverity::Critical => Severity::Error,
    }
}

fn publish(app: &App, alarm: &AlarmInfo, state: AlarmChangeState) {
    app.publish(
        notifications::ALARM_CHANGED,
        &AlarmChange {
            alarm: alarm.clone(),
            state,
        },
    );
}

/// Makes the alarm of `kind` on `target` active with this severity and message (or updates
/// the active one); records an Event when it triggers or changes severity. Failures are
/// logged.
pub async fn raise(
    app: &App,
    kind: AlarmKind,
    target: &ObjectRef,
    severity: AlarmSeverity,
    message: &str,
) {
    let _w = app.alarms.write.lock().await;
    let up = match app
        .db
        .upsert_alarm(kind, target, severity, message, strata_shared::now_ms())
        .await
    {
        Ok(Some(up)) => up,
        Ok(None) => return,
        Err(e) => {
            warn!(kind = kind.as_str(), target = %target.id, error = %e, "cannot store an alarm");
            return;
        }
    };
    let a = &up.alarm;
    let what = format!("{} alarm", kind.label());
    let on = object_words(target);
    match (up.state, up.previous) {
        (AlarmChangeState::Triggered, _) => {
            info!(kind = kind.as_str(), target = %target.id, %severity, "alarm triggered: {message}");
            app.event(
                EVENT_TRIGGERED,
                event_severity(severity),
                Some(target),
                None,
                &format!("{what} ({severity}) on {on}: {message}"),
            )
            .await;
        }
        (_, Some(before)) => {
            info!(kind = kind.as_str(), target = %target.id, %severity, "alarm changed severity: {message}");
            app.event(
                EVENT_SEVERITY_CHANGED,
                event_severity(severity),
                Some(target),
                None,
                &format!("{what} on {on} is now {severity} (was {before}): {message}"),
            )
            .await;
        }
        _ => {}
    }
    publish(app, a, up.state);
}

/// Clears the alarm of `kind` on `target` when one is active, saying `why` in its Event.
pub async fn clear(app: &App, kind: AlarmKind, target: Uuid, why: &str) {
    let _w = app.alarms.write.lock().await;
    let gone = match app.db.delete_alarm(kind, target).await {
        Ok(Some(a)) => a,
        Ok(None) => return,
        Err(e) => {
            warn!(kind = kind.as_str(), %target, error = %e, "cannot clear an alarm");
            return;
        }
    };
    info!(kind = kind.as_str(), %target, "alarm cleared: {why}");
    app.event(
        EVENT_CLEARED,
        Severity::Info,
        Some(&gone.target),
        None,
        &format!(
            "{} alarm on {} cleared: {why}",
            kind.label(),
            object_words(&gone.target)
        ),
    )
    .await;
    publish(app, &gone, AlarmChangeState::Cleared);
}

/// Records that `user` acknowledged an active alarm (it stays active).
pub async fn acknowledge(app: &App, id: Uuid, user: &str) -> Result<AlarmInfo, DbError> {
    let _w = app.alarms.write.lock().await;
    let a = app
        .db
        .acknowledge_alarm(id, user, strata_shared::now_ms())
        .await?;
    app.event(
        EVENT_ACKNOWLEDGED,
        Severity::Info,
        Some(&a.target),
        Some(user),
        &format!(
            "{} alarm ({}) on {} acknowledged",
            a.kind.label(),
            a.severity,
            object_words(&a.target)
        ),
    )
    .await;
    publish(app, &a, AlarmChangeState::Changed);
    Ok(a)
}

/// An object was renamed: its active alarms name it by its new name (a Changed
/// notification each; their messages keep the words they were raised with).
pub async fn object_renamed(app: &App, target: Uuid, name: &str) {
    let _w = app.alarms.write.lock().await;
    match app.db.rename_alarm_target(target, name).await {
        Ok(changed) => {
            for a in changed {
                publish(app, &a, AlarmChangeState::Changed);
            }
        }
        Err(e) => warn!(%target, error = %e, "cannot rename the object of its alarms"),
    }
}

/// Clears every alarm about an object that left the inventory.
pub async fn object_removed(app: &App, target: Uuid, why: &str) {
    app.alarms.forget(target);
    let Ok(active) = app.db.alarms(Some(target)).await else {
        return;
    };
    for a in active {
        clear(app, a.kind, target, why).await;
    }
}

/// A power state in words ("powered off").
fn power_words(p: PowerState) -> &'static str {
    match p {
        PowerState::PoweredOn => "powered on",
        PowerState::PoweredOff => "powered off",
        PowerState::Paused => "paused",
        PowerState::Suspended => "suspended",
        PowerState::Unknown => "in an unknown state",
    }
}

/// A VM stopped running (powered off, suspended, or no longer known to its host): its CPU
/// alarm clears at once.
pub async fn vm_stopped(app: &App, vm: &VmInfo) {
    app.alarms.forget(vm.id);
    clear(
        app,
        AlarmKind::VmCpuUsage,
        vm.id,
        &format!("VM {} is {}", vm.name, power_words(vm.power_state)),
    )
    .await;
}

/// At start-up, before the host links connect: re-checks the stored alarms against what the
/// database knows (objects gone, VMs no longer running, datastores reachable again) and
/// resumes the usage levels of the alarms still active. Connection and usage alarms are
/// checked again as soon as the hosts connect and report.
pub async fn resume(app: &App) {
    let stored = match app.db.alarms(None).await {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "cannot read the stored alarms");
            return;
        }
    };
    for a in stored {
        let gone = match a.target.kind {
            ObjectKind::Vm => match app.db.vm(a.target.id).await {
                Ok(vm) if vm.power_state.has_process() => None,
                Ok(vm) => Some(format!("VM {} is {}", vm.name, power_words(vm.power_state))),
                Err(DbError::NotFound) => Some("the VM is no longer in the inventory".into()),
                Err(_) => None,
            },
            ObjectKind::Host => match app.db.host(a.target.id).await {
                Err(DbError::NotFound) => Some("the host is no longer in the inventory".into()),
                _ => None,
            },
            _ => None,
        };
        if let Some(why) = gone {
            clear(app, a.kind, a.target.id, &why).await;
            continue;
        }
        if usage::is_usage(a.kind) {
            app.alarms.restore(a.kind, a.target.id, a.severity);
        }
    }
    datastore::evaluate(app).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use strata_shared::model::{
        AlarmChange, ConnectionState, HostCounters, PowerState, VmCounters,
    };
    use strata_shared::rpc::Notification;
    use tokio::sync::broadcast;

    use super::*;
    use crate::config::ServerConfig;

    async fn test_app(config: ServerConfig) -> (Arc<App>, tempfile::TempDir) {
        let (db, dir) = crate::db::test_db().await;
        let (notes, _) = broadcast::channel(256);
        let app = Arc::new(App {
            id: Uuid::new_v4(),
            config,
            db,
            notes,
            hosts: Default::default(),
            tasks: Default::default(),
            admission: Default::default(),
            vm_ops: Default::default(),
            stats: Default::default(),
            alarms: Default::default(),
        });
        (app, dir)
    }

    /// A host with 2 × 1000 MHz and 1000 MiB, and one running 1-vCPU VM on it.
    async fn host_and_vm(app: &App) -> (Uuid, VmInfo) {
        use crate::db::inventory::tests::{facts, host_row, vm_info};
        let dc = app.db.default_datacenter().await.unwrap().id;
        let host = Uuid::new_v4();
        let mut row = host_row(host, "h1", dc);
        row.info.facts = Some(facts(host, "h1", Vec::new()));
        app.db.insert_host(&row).await.unwrap();
        let vm = VmInfo {
            power_state: PowerState::PoweredOn,
            ..vm_info("web01", host)
        };
        app.db.insert_vm(dc, &vm).await.unwrap();
        (host, vm)
    }

    fn changes(rx: &mut broadcast::Receiver<Notification>) -> Vec<AlarmChange> {
        let mut out = Vec::new();
        while let Ok(n) = rx.try_recv() {
            if n.method == notifications::ALARM_CHANGED {
                out.push(serde_json::from_value(n.params).unwrap());
            }
        }
        out
    }

    #[tokio::test]
    async fn a_connection_alarm_is_stored_evented_pushed_acknowledged_and_cleared() {
        let (app, _d) = test_app(ServerConfig::default()).await;
        let (host, _) = host_and_vm(&app).await;
        let mut rx = app.notes.subscribe();

        connection::host_state(
            &app,
            host,
            ConnectionState::Disconnected,
            Some("connection refused"),
        )
        .await;
        let list = app.db.alarms(None).await.unwrap();
        assert_eq!(list.len(), 1);
        let a = &list[0];
        assert_eq!(
            (a.kind, a.severity, a.target.id, a.message.as_str()),
            (
                AlarmKind::HostConnection,
                AlarmSeverity::Critical,
                host,
                "Host h1 is not responding: connection refused"
            )
        );
        let got = changes(&mut rx);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].state, AlarmChangeState::Triggered);
        let ev = app.recent_events(10).await;
        let trig = ev.iter().find(|e| e.kind == EVENT_TRIGGERED).unwrap();
        assert_eq!(trig.severity, Severity::Error);
        assert_eq!(trig.object.as_ref().map(|o| o.id), Some(host));
        assert!(
            trig.message.contains("host h1") && trig.message.contains("connection refused"),
            "{}",
            trig.message
        );

        // The same state again: nothing new.
        connection::host_state(
            &app,
            host,
            ConnectionState::Disconnected,
            Some("connection refused"),
        )
        .await;
        assert!(changes(&mut rx).is_empty());
        assert_eq!(app.db.alarms(None).await.unwrap(), list);

        let acked = acknowledge(&app, a.id, "op").await.unwrap();
        assert_eq!(acked.acknowledged_by.as_deref(), Some("op"));
        let got = changes(&mut rx);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].state, got[0].alarm.acknowledged_by.as_deref()),
            (AlarmChangeState::Changed, Some("op"))
        );
        let ev = app.recent_events(1).await;
        assert_eq!(
            (ev[0].kind.as_str(), ev[0].severity, ev[0].user.as_deref()),
            (EVENT_ACKNOWLEDGED, Severity::Info, Some("op"))
        );
        assert!(matches!(
            acknowledge(&app, Uuid::new_v4(), "op").await,
            Err(DbError::NotFound)
        ));

        connection::host_state(&app, host, ConnectionState::Connected, None).await;
        assert!(app.db.alarms(None).await.unwrap().is_empty());
        let got = changes(&mut rx);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].state, got[0].alarm.id),
            (AlarmChangeState::Cleared, a.id)
        );
        let ev = app.recent_events(1).await;
        assert_eq!(
            (ev[0].kind.as_str(), ev[0].severity),
            (EVENT_CLEARED, Severity::Info)
        );
    }

    #[tokio::test]
    async fn a_renamed_object_is_named_anew_in_its_active_alarms() {
        let (app, _d) = test_app(ServerConfig::default()).await;
        let (_host, vm) = host_and_vm(&app).await;
        let mut rx = app.notes.subscribe();
        let target = ObjectRef {
            kind: ObjectKind::Vm,
            id: vm.id,
            name: vm.name.clone(),
        };
        raise(
            &app,
            AlarmKind::VmCpuUsage,
            &target,
            AlarmSeverity::Warning,
            "VM web01 uses 80% of its CPU",
        )
        .await;
        let _ = changes(&mut rx);
        object_renamed(&app, vm.id, "web01-new").await;
        let list = app.db.alarms(Some(vm.id)).await.unwrap();
        assert_eq!(list[0].target.name, "web01-new");
        let got = changes(&mut rx);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].state, got[0].alarm.target.name.as_str()),
            (AlarmChangeState::Changed, "web01-new")
        );
        // The same name again changes nothing.
        object_renamed(&app, vm.id, "web01-new").await;
        assert!(changes(&mut rx).is_empty());
    }

    #[tokio::test]
    async fn sampling_rounds_drive_usage_alarms_and_a_powered_off_vm_clears_at_once() {
        let config = ServerConfig {
            alarm_cpu_warning_pct: 50,
            alarm_cpu_critical_pct: 80,
            alarm_memory_warning_pct: 20,
            alarm_memory_critical_pct: 90,
            alarm_sustain_samples: 2,
            ..Default::default()
        };
        let (app, _d) = test_app(config).await;
        let (host, vm) = host_and_vm(&app).await;
        let counters = HostCounters {
            time_ms: 0,
            cpu_mhz_per_core: 1000,
            vms: vec![VmCounters {
                vm: vm.id,
                cpu_ns: 0,
                rss_bytes: 0,
            }],
        };
        // 900 MHz of one 1000 MHz vCPU: 90 % (critical); the host: 45 % of its CPU (fine)
        // and 300 of 1000 MiB (30 %, a memory warning).
        let busy = [(vm.id, 900.0, 300.0)];
        usage::evaluate(&app, host, &counters, &busy).await;
        assert!(app.db.alarms(None).await.unwrap().is_empty(), "one sample");
        usage::evaluate(&app, host, &counters, &busy).await;
        let list = app.db.alarms(None).await.unwrap();
        let kinds: Vec<_> = list.iter().map(|a| (a.kind, a.severity)).collect();
        assert_eq!(
            kinds,
            vec![
                (AlarmKind::VmCpuUsage, AlarmSeverity::Critical),
                (AlarmKind::HostMemoryUsage, AlarmSeverity::Warning)
            ]
        );
        assert_eq!(list[0].message, "VM web01 uses 90% of its CPU");
        let ev = app.recent_events(10).await;
        assert!(ev
            .iter()
            .any(|e| e.kind == EVENT_TRIGGERED && e.severity == Severity::Warning));

        // A round that did not measure every VM leaves the host's levels alone.
        let partial = HostCounters {
            vms: vec![
                counters.vms[0].clone(),
                VmCounters {
                    vm: Uuid::new_v4(),
                    cpu_ns: 0,
                    rss_bytes: 0,
                },
            ],
            ..counters.clone()
        };
        let idle = [(vm.id, 10.0, 10.0)];
        usage::evaluate(&app, host, &partial, &idle).await;
        usage::evaluate(&app, host, &partial, &idle).await;
        let kinds: Vec<_> = app
            .db
            .alarms(None)
            .await
            .unwrap()
            .iter()
            .map(|a| a.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![AlarmKind::HostMemoryUsage],
            "the VM's alarm cleared after two idle samples, the host's stays"
        );
        usage::evaluate(&app, host, &counters, &idle).await;
        usage::evaluate(&app, host, &counters, &idle).await;
        assert!(app.db.alarms(None).await.unwrap().is_empty());

        // Busy again, then the VM powers off: its alarm clears without waiting for samples.
        usage::evaluate(&app, host, &counters, &[(vm.id, 900.0, 10.0)]).await;
        usage::evaluate(&app, host, &counters, &[(vm.id, 900.0, 10.0)]).await;
        assert_eq!(app.db.alarms(Some(vm.id)).await.unwrap().len(), 1);
        app.apply_power_state(vm.id, PowerState::PoweredOff, "", None)
            .await
            .unwrap();
        assert!(app.db.alarms(Some(vm.id)).await.unwrap().is_empty());
        let ev = app.recent_events(1).await;
        assert_eq!(ev[0].kind, EVENT_CLEARED);
        assert!(
            ev[0].message.ends_with("cleared: VM web01 is powered off"),
            "{}",
            ev[0].message
        );
    }

    #[tokio::test]
    async fn resume_clears_what_no_longer_holds_and_keeps_usage_levels() {
        let (app, _d) = test_app(ServerConfig::default()).await;
        let (host, vm) = host_and_vm(&app).await;
        let gone = ObjectRef {
            kind: ObjectKind::Vm,
            id: Uuid::new_v4(),
            name: "gone".into(),
        };
        raise(
            &app,
            AlarmKind::VmCpuUsage,
            &gone,
            AlarmSeverity::Warning,
            "VM gone uses 80% of its CPU",
        )
        .await;
        raise(
            &app,
            AlarmKind::VmCpuUsage,
            &crate::app::vm_ref(&vm),
            AlarmSeverity::Critical,
            "VM web01 uses 99% of its CPU",
        )
        .await;
        let host_ref = ObjectRef {
            kind: ObjectKind::Host,
            id: host,
            name: "h1".into(),
        };
        raise(
            &app,
            AlarmKind::HostConnection,
            &host_ref,
            AlarmSeverity::Critical,
            "Host h1 is not responding: x",
        )
        .await;
        let before = app.db.alarm_for(AlarmKind::HostConnection, host).await;
        // A fresh manager on the same database.
        let fresh = Arc::new(App {
            id: app.id,
            config: app.config.clone(),
            db: app.db.clone(),
            notes: app.notes.clone(),
            hosts: Default::default(),
            tasks: Default::default(),
            admission: Default::default(),
            vm_ops: Default::default(),
            stats: Default::default(),
            alarms: Default::default(),
        });
        resume(&fresh).await;
        let left: Vec<_> = fresh
            .db
            .alarms(None)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.kind, a.target.id))
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(!left.iter().any(|(_, id)| *id == gone.id));
        assert_eq!(
            fresh
                .db
                .alarm_for(AlarmKind::HostConnection, host)
                .await
                .unwrap(),
            before.unwrap(),
            "kept as it was, trigger time included"
        );
        // The VM's level was resumed: a critical sample changes nothing, and it takes the
        // sustain count of idle samples to clear.
        let t = usage::cpu_thresholds(&fresh.config);
        assert_eq!(
            fresh.alarms.observe(AlarmKind::VmCpuUsage, vm.id, 99.0, &t),
            None
        );
        assert_eq!(
            fresh.alarms.observe(AlarmKind::VmCpuUsage, vm.id, 1.0, &t),
            None
        );
        assert_eq!(
            fresh.alarms.observe(AlarmKind::VmCpuUsage, vm.id, 1.0, &t),
            None
        );
        assert_eq!(
            fresh.alarms.observe(AlarmKind::VmCpuUsage, vm.id, 1.0, &t),
            Some((Some(AlarmSeverity::Critical), None))
        );
    }
}
