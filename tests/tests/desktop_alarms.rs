//! Alarms in the desktop client (egui, headless through egui_kittest) against a real manager
//! and host agent: the agent stops, the manager raises a Critical host-connection alarm, the
//! client marks the host in the tree and lists the alarm in its Summary; the operator
//! acknowledges it there (the manager records who); the agent comes back and the mark goes.

use std::time::Duration;

use egui_kittest::kittest::Queryable;
use strata_shared::api::manager as m;
use strata_shared::model::{AlarmKind, AlarmListParams, AlarmSeverity};
use strata_tests::desktop::{click_tree_node, logged_in, step_until, tree_node};
use strata_tests::{bins, Lab};

#[test]
fn a_host_alarm_shows_in_the_client_is_acknowledged_there_and_clears() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut lab = rt.block_on(Lab::start(&bins!()));
    let host = lab.host;
    let mut h = logged_in(&lab);
    step_until(
        &mut h,
        "the host in the tree",
        Duration::from_secs(30),
        |h| h.state().model.inventory.hosts.contains_key(&host),
    );
    let host_name = h.state().model.inventory.hosts[&host].name.clone();
    assert!(h.query_by_label("Critical alarm").is_none(), "no alarm yet");

    // The agent goes away: the host is marked.
    lab.agent.stop();
    step_until(&mut h, "the host's alarm", Duration::from_secs(60), |h| {
        h.state().model.alarms.worst(host).map(|w| w.0) == Some(AlarmSeverity::Critical)
            && h.query_by_label("Critical alarm").is_some()
    });
    assert!(tree_node(&h, &host_name));

    // Its Summary lists the alarm; acknowledge it there.
    click_tree_node(&mut h, &host_name);
    step_until(
        &mut h,
        "the alarm in the Summary",
        Duration::from_secs(10),
        |h| h.query_by_label("Acknowledge").is_some(),
    );
    h.get_by_label("Acknowledge").click();
    step_until(
        &mut h,
        "the acknowledgement to come back",
        Duration::from_secs(30),
        |h| {
            h.state()
                .model
                .alarms
                .on(host)
                .first()
                .is_some_and(|a| a.acknowledged_by.as_deref() == Some("admin"))
                && h.query_by_label_contains("Acknowledged by admin").is_some()
        },
    );
    let on_server = rt
        .block_on(
            lab.client
                .call::<m::AlarmList>(AlarmListParams { target: Some(host) }),
        )
        .unwrap();
    assert_eq!(on_server.len(), 1, "{on_server:?}");
    assert_eq!(on_server[0].kind, AlarmKind::HostConnection);
    assert_eq!(on_server[0].acknowledged_by.as_deref(), Some("admin"));

    // The agent is back: the alarm clears and the mark goes.
    lab.agent.restart();
    step_until(&mut h, "the alarm to clear", Duration::from_secs(60), |h| {
        h.state().model.alarms.worst(host).is_none() && h.query_by_label("Critical alarm").is_none()
    });
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    drop(h);
    drop(lab);
}
