//! Failure isolation: a host with two datastores loses one (a bind mount lazily unmounted,
//! as when storage goes away under running VMs). The datastore is marked inaccessible with
//! an Event naming the VMs on it, a VM from it cannot power on, the VM on the other datastore
//! runs on untouched, and when the storage returns the datastore recovers and its VM powers
//! on again. A critical datastore access alarm is active meanwhile.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use strata_shared::api::manager as m;
use strata_shared::model::*;
use strata_shared::Client;
use strata_tests::{bins, boot, console_run, power_off, task_error, Lab};

/// A directory bind-mounted elsewhere for one test; unmounted and removed on drop.
struct BindMount {
    store: PathBuf,
    at: PathBuf,
    _dir: tempfile::TempDir,
}

impl BindMount {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("strata-bind")
            .tempdir_in(strata_tests::scratch_root())
            .unwrap();
        let store = dir.path().join("store");
        let at = dir.path().join("ds2");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::create_dir_all(&at).unwrap();
        let b = BindMount {
            store,
            at,
            _dir: dir,
        };
        b.mount();
        b
    }

    fn mount(&self) {
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(&self.store)
            .arg(&self.at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount --bind needs root");
    }

    /// Storage gone: the mount disappears while open files stay open.
    fn lose(&self) {
        let ok = Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "umount -l");
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

async fn ds2(c: &Client) -> DatastoreInfo {
    c.call::<m::InventoryGet>(Empty {})
        .await
        .unwrap()
        .datastores
        .into_iter()
        .find(|d| d.name == "ds2")
        .expect("ds2 in the inventory")
}

async fn wait_for(c: &Client, what: &str, accessible: bool) -> DatastoreInfo {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = ds2(c).await;
        if d.inaccessible_on.is_empty() == accessible {
            return d;
        }
        assert!(Instant::now() < deadline, "ds2 never became {what}: {d:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn state(c: &Client, vm: uuid::Uuid) -> PowerState {
    c.call::<m::VmGet>(IdParams { id: vm })
        .await
        .unwrap()
        .power_state
}

/// Polls the alarms about a datastore until `active` says whether its access alarm is on.
async fn wait_alarm(c: &Client, ds: uuid::Uuid, active: bool) -> Vec<AlarmInfo> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = c
            .call::<m::AlarmList>(AlarmListParams { target: Some(ds) })
            .await
            .unwrap();
        if list.iter().any(|a| a.kind == AlarmKind::DatastoreAccess) == active {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "the datastore access alarm never became {active}: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn exists(p: &Path) -> bool {
    p.exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_datastore_affects_only_its_vms_and_it_recovers() {
    let mount = BindMount::new();
    let lab = Lab::start_full(&bins!(), &[], &[("ds2", &mount.at)]).await;
    let c = &lab.client;
    let safe = lab.create_guest_vm_on("safe01", 1, None).await;
    let lost = lab.create_guest_vm_on("lost01", 1, Some("ds2")).await;
    assert!(exists(&mount.store.join("lost01")), "lost01 lives on ds2");
    let inv = c.call::<m::InventoryGet>(Empty {}).await.unwrap();
    assert_eq!(inv.datastores.len(), 2);
    assert!(inv.datastores.iter().all(|d| d.inaccessible_on.is_empty()));

    let safe_off = boot(c, safe).await;
    boot(c, lost).await;

    mount.lose();
    let d = wait_for(c, "inaccessible", false).await;
    assert_eq!(d.inaccessible_on.len(), 1);
    assert!(
        d.inaccessible_on[0]
            .problem
            .contains("missing or unreadable"),
        "{d:?}"
    );
    // A critical alarm on the datastore names the host and the problem.
    let alarm = wait_alarm(c, d.id, true).await.remove(0);
    assert_eq!(alarm.severity, AlarmSeverity::Critical);
    assert!(
        alarm
            .message
            .starts_with("Datastore ds2 is inaccessible on ")
            && alarm.message.contains("missing or unreadable"),
        "{}",
        alarm.message
    );
    let events = c
        .call::<m::EventList>(EventListParams::default())
        .await
        .unwrap();
    let e = events
        .iter()
        .find(|e| e.kind == "datastore.inaccessible")
        .expect("an event says so");
    assert_eq!(e.severity, Severity::Error);
    assert!(
        e.message.contains("ds2") && e.message.contains("lost01") && !e.message.contains("safe01"),
        "{}",
        e.message
    );

    // lost01 cannot renew its lease on the lost storage: it is fenced (stopped) once the
    // lease runs out; safe01 runs on through all of it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while state(c, lost).await == PowerState::PoweredOn {
        assert!(Instant::now() < deadline, "lost01 was never fenced");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(state(c, safe).await, PowerState::PoweredOn);
    console_run(c, safe, safe_off, "echo alive-$((20+22))", "alive-42").await;

    // Nothing powers on from the lost datastore.
    let t = c.call::<m::VmPowerOn>(IdParams { id: lost }).await.unwrap();
    let msg = task_error(c, t).await;
    assert!(msg.contains("datastore ds2 is inaccessible"), "{msg}");

    // The storage comes back: the datastore recovers and lost01 powers on again.
    mount.mount();
    wait_for(c, "accessible", true).await;
    wait_alarm(c, d.id, false).await;
    let events = c
        .call::<m::EventList>(EventListParams::default())
        .await
        .unwrap();
    assert!(events.iter().any(|e| e.kind == "datastore.accessible"));
    boot(c, lost).await;
    power_off(c, lost).await;
    power_off(c, safe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datastore_two_hosts_mount_is_one_object() {
    let mount = BindMount::new();
    let lab = Lab::start_full(&bins!(), &[], &[("shared", &mount.store)]).await;
    let c = &lab.client;
    // A second host agent mounting the same directory under another name.
    let other_dir = lab.datastore().parent().unwrap().with_file_name("agent2");
    let flag = format!("nfs01={}", mount.store.display());
    let other = strata_tests::Daemon::agent_with(&bins!(), &other_dir, 0, &["--datastore", &flag]);
    let t = c
        .call::<m::HostAdd>(HostAddParams {
            address: other.address.clone(),
            username: "root".into(),
            password: strata_tests::PASSWORD.into(),
            thumbprint: Some(other.thumbprint.clone()),
            cluster: None,
        })
        .await
        .unwrap();
    let done = strata_tests::task_ok(c, t).await;
    let host2: HostInfo = serde_json::from_value(done.result.unwrap()).unwrap();
    let inv = c.call::<m::InventoryGet>(Empty {}).await.unwrap();
    let shared: Vec<&DatastoreInfo> = inv
        .datastores
        .iter()
        .filter(|d| d.hosts.contains(&host2.id))
        .collect();
    assert_eq!(shared.len(), 1, "{:?}", inv.datastores);
    assert_eq!(
        shared[0].hosts.len(),
        2,
        "both hosts see the one volume: {:?}",
        inv.datastores
    );
    assert_eq!(inv.datastores.len(), 2, "datastore1 + the shared volume");
}
