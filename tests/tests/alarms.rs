//! Alarms end to end: a stopped host agent raises a critical host connection alarm (listed,
//! pushed to subscribers, recorded as an Event) that operators may acknowledge and that
//! clears when the agent is back; a CPU-burning guest raises a VM CPU alarm that clears when
//! it idles (and at once when it powers off); an active alarm survives a manager restart.

use std::process::Command;
use std::time::Duration;

use strata_shared::api::manager as m;
use strata_shared::model::*;
use strata_shared::rpc::Notification;
use strata_shared::{Client, ErrorCode};
use strata_tests::{bins, boot, console_run, power_off_hard, Lab, PASSWORD};
use tokio::sync::broadcast;
use uuid::Uuid;

async fn alarms(c: &Client, target: Option<Uuid>) -> Vec<AlarmInfo> {
    c.call::<m::AlarmList>(AlarmListParams { target })
        .await
        .unwrap()
}

/// Polls `alarm.list` about `target` until `pred` holds for it (60 s at most).
async fn wait_alarms(
    c: &Client,
    target: Uuid,
    what: &str,
    pred: impl Fn(&[AlarmInfo]) -> bool,
) -> Vec<AlarmInfo> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = alarms(c, Some(target)).await;
        if pred(&list) {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 60 s for {what}; alarms now: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The next `alarm.changed` notification that `pred` accepts (30 s at most).
async fn next_change(
    rx: &mut broadcast::Receiver<Notification>,
    what: &str,
    pred: impl Fn(&AlarmChange) -> bool,
) -> AlarmChange {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let n = match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(n)) => n,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => panic!("notifications ended while waiting for {what}: {e}"),
            Err(_) => panic!("no alarm.changed notification for {what} within 30 s"),
        };
        if n.method != strata_shared::api::notifications::ALARM_CHANGED {
            continue;
        }
        let change: AlarmChange = serde_json::from_value(n.params).unwrap();
        if pred(&change) {
            return change;
        }
    }
}

async fn events_about(c: &Client, id: Uuid) -> Vec<EventInfo> {
    c.call::<m::EventList>(EventListParams {
        object: Some(id),
        after_id: None,
        limit: Some(200),
    })
    .await
    .unwrap()
}

async fn add_user(c: &Client, name: &str, role: Role) {
    c.call::<m::UserCreate>(UserCreateParams {
        username: name.into(),
        password: PASSWORD.into(),
        role,
    })
    .await
    .unwrap();
}

/// Runs the `strata` CLI against the lab's manager as `user`.
fn strata(lab: &Lab, user: &str, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(bins!().cli)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STRATA_URL", format!("wss://{}", lab.server.address))
        .env("STRATA_USERNAME", user)
        .env("STRATA_PASSWORD", PASSWORD)
        .env("STRATA_THUMBPRINT", &lab.server.thumbprint)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_host_agent_raises_a_connection_alarm_until_it_is_back() {
    let mut lab = Lab::start(&bins!()).await;
    let host = lab.host;
    add_user(&lab.client, "viewer", Role::ReadOnly).await;
    add_user(&lab.client, "op", Role::Operator).await;
    let watcher = lab.server.client("viewer").await;
    let mut rx = watcher.notifications();
    watcher
        .call::<m::InventorySubscribe>(Empty {})
        .await
        .unwrap();
    assert!(alarms(&lab.client, None).await.is_empty(), "a healthy lab");

    lab.agent.stop();
    let triggered = next_change(&mut rx, "the host connection alarm", |c| {
        c.state == AlarmChangeState::Triggered
            && c.alarm.kind == AlarmKind::HostConnection
            && c.alarm.target.id == host
    })
    .await
    .alarm;
    assert_eq!(triggered.severity, AlarmSeverity::Critical);
    assert_eq!(triggered.target.kind, ObjectKind::Host);
    assert!(
        triggered.message.contains("is not responding"),
        "{}",
        triggered.message
    );

    // Any logged-in user lists it; a read-only one may not acknowledge it.
    let listed = alarms(&watcher, None).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].id, listed[0].kind, listed[0].severity),
        (
            triggered.id,
            AlarmKind::HostConnection,
            AlarmSeverity::Critical
        )
    );
    assert_eq!(alarms(&watcher, Some(host)).await.len(), 1);
    assert!(alarms(&watcher, Some(Uuid::new_v4())).await.is_empty());
    let ev = events_about(&lab.client, host).await;
    let e = ev
        .iter()
        .find(|e| e.kind == "alarm.triggered")
        .expect("an event for the trigger");
    assert_eq!(e.severity, Severity::Error);
    assert!(e.message.contains(&triggered.target.name), "{}", e.message);
    let refused = watcher
        .call::<m::AlarmAcknowledge>(IdParams { id: triggered.id })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::NoPermission));

    // An operator acknowledges it: still active, marked, pushed as a change.
    let op = lab.server.client("op").await;
    let acked = op
        .call::<m::AlarmAcknowledge>(IdParams { id: triggered.id })
        .await
        .unwrap();
    assert_eq!(acked.acknowledged_by.as_deref(), Some("op"));
    assert!(acked.acknowledged_ms.is_some());
    let change = next_change(&mut rx, "the acknowledgement", |c| {
        c.state == AlarmChangeState::Changed && c.alarm.acknowledged_by.is_some()
    })
    .await;
    assert_eq!(change.alarm.id, triggered.id);
    let unknown = op
        .call::<m::AlarmAcknowledge>(IdParams { id: Uuid::new_v4() })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Some(ErrorCode::NotFound));
    let ev = events_about(&lab.client, host).await;
    assert!(ev
        .iter()
        .any(|e| e.kind == "alarm.acknowledged" && e.user.as_deref() == Some("op")));

    // The CLI shows it, and refuses an acknowledgement from a read-only user.
    let (ok, out, err) = strata(&lab, "viewer", &["alarm", "ls"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("SEVERITY"), "{out}");
    assert!(
        out.contains("critical")
            && out.contains("Host connection")
            && out.lines().any(|l| l.contains(&triggered.id.to_string())
                && l.split_whitespace().any(|w| w == "op")),
        "{out}"
    );
    let (ok, out, err) = strata(
        &lab,
        "viewer",
        &["alarm", "ls", "--target", &host.to_string(), "--json"],
    );
    assert!(ok, "{err}");
    let json: Vec<AlarmInfo> = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0].id, triggered.id);
    let (ok, _, err) = strata(&lab, "viewer", &["alarm", "ack", &triggered.id.to_string()]);
    assert!(!ok && err.contains("operator"), "{err}");

    // The agent is back: the alarm clears.
    lab.agent.restart();
    let cleared = next_change(&mut rx, "the clear", |c| {
        c.state == AlarmChangeState::Cleared && c.alarm.id == triggered.id
    })
    .await;
    assert_eq!(cleared.alarm.kind, AlarmKind::HostConnection);
    assert!(alarms(&watcher, None).await.is_empty());
    let ev = events_about(&lab.client, host).await;
    assert!(
        ev.iter()
            .any(|e| e.kind == "alarm.cleared" && e.severity == Severity::Info),
        "{ev:?}"
    );
    let (ok, out, _) = strata(&lab, "viewer", &["alarm", "ls"]);
    assert!(ok && out.contains("No active alarms"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_guest_raises_a_vm_cpu_alarm_that_clears_when_it_idles() {
    let lab = Lab::start_with(
        &bins!(),
        &[
            "--stats-interval-secs",
            "1",
            "--alarm-sustain-samples",
            "2",
            "--alarm-cpu-warning-pct",
            "30",
            "--alarm-cpu-critical-pct",
            "60",
        ],
    )
    .await;
    let c = &lab.client;
    let vm = lab.create_guest_vm("burner", 1).await;
    let off = boot(c, vm).await;
    let vm_cpu = |l: &[AlarmInfo]| l.iter().any(|a| a.kind == AlarmKind::VmCpuUsage);

    let (_, off) = console_run(
        c,
        vm,
        off,
        "while :; do :; done & echo burning-$((1+1))",
        "burning-2",
    )
    .await;
    let list = wait_alarms(c, vm, "the VM CPU alarm", vm_cpu).await;
    let a = list
        .iter()
        .find(|a| a.kind == AlarmKind::VmCpuUsage)
        .unwrap();
    assert_eq!(a.target.name, "burner");
    assert!(
        a.message.starts_with("VM burner uses ") && a.message.ends_with("% of its CPU"),
        "{}",
        a.message
    );
    let ev = events_about(c, vm).await;
    let trig = ev
        .iter()
        .find(|e| e.kind == "alarm.triggered")
        .expect("an event for the trigger");
    assert_eq!(
        trig.severity,
        match a.severity {
            AlarmSeverity::Warning => Severity::Warning,
            AlarmSeverity::Critical => Severity::Error,
        }
    );

    // The loop stops: the alarm clears after two idle samples.
    let (_, off) = console_run(c, vm, off, "kill $!; echo stopped-$((2+3))", "stopped-5").await;
    wait_alarms(c, vm, "the VM CPU alarm to clear", |l| !vm_cpu(l)).await;
    assert!(events_about(c, vm)
        .await
        .iter()
        .any(|e| e.kind == "alarm.cleared" && e.message.contains("below 30%")));

    // Busy again, then powered off: the alarm goes with the power-off, without more samples.
    console_run(
        c,
        vm,
        off,
        "while :; do :; done & echo burning-$((3+3))",
        "burning-6",
    )
    .await;
    wait_alarms(c, vm, "the VM CPU alarm again", vm_cpu).await;
    power_off_hard(c, vm).await;
    assert!(
        alarms(c, Some(vm)).await.is_empty(),
        "cleared by the power-off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_alarm_survives_a_manager_restart() {
    let mut lab = Lab::start(&bins!()).await;
    let host = lab.host;
    lab.agent.stop();
    let before = wait_alarms(&lab.client, host, "the host connection alarm", |l| {
        !l.is_empty()
    })
    .await;
    assert_eq!(before[0].kind, AlarmKind::HostConnection);

    lab.server.stop();
    lab.server.restart();
    let c = lab.server.client("admin").await;
    let after = alarms(&c, None).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(
        (
            after[0].id,
            after[0].kind,
            after[0].severity,
            after[0].triggered_ms
        ),
        (
            before[0].id,
            before[0].kind,
            before[0].severity,
            before[0].triggered_ms
        ),
        "the same alarm, triggered when it was"
    );

    // Re-checked once the host is reachable again.
    lab.agent.restart();
    wait_alarms(&c, host, "the alarm to clear after the restart", |l| {
        l.is_empty()
    })
    .await;
}
