//! Snapshots, clones and templates end to end on a real Debian guest (qemu engine): snapshot →
//! write → revert restores the data; a linked clone boots with its own host name and writes
//! without changing its base; the base and its snapshot cannot go while the clone exists;
//! deleting the last snapshot merges everything back into the original raw disk; a full
//! clone copies the data; a template refuses to power on.

use strata_shared::api::manager as m;
use strata_shared::model::*;
use strata_shared::{Client, ErrorCode};
use strata_tests::{bins, boot, console_run, new_disk, power_off, task_error, task_ok, Lab};
use uuid::Uuid;

/// What the guest reads at sector 8 of vda (8 bytes).
const READ: &str = "echo got=$(dd if=/dev/vda bs=512 skip=8 count=1 2>/dev/null | head -c 8)";

fn write(word: &str) -> String {
    format!("printf {word} | dd of=/dev/vda bs=512 seek=8 conv=notrunc 2>/dev/null; sync; echo w-{word}-$((2+3))")
}

async fn write_word(c: &Client, vm: Uuid, word: &str) {
    let off = boot(c, vm).await;
    console_run(c, vm, off, &write(word), &format!("w-{word}-5")).await;
    power_off(c, vm).await;
}

async fn read_word(c: &Client, vm: Uuid, word: &str) -> u64 {
    let off = boot(c, vm).await;
    console_run(c, vm, off, READ, &format!("got={word}"))
        .await
        .1
}

async fn snapshot(c: &Client, vm: Uuid, name: &str) -> SnapshotTree {
    let t = c
        .call::<m::VmSnapshotCreate>(m::SnapshotCreateParams {
            id: vm,
            name: name.into(),
            description: String::new(),
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    c.call::<m::VmSnapshotList>(IdParams { id: vm })
        .await
        .unwrap()
}

fn raw_at(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()[4096..4104].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_revert_and_clones_share_a_base_safely() {
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    let vm = lab.create_guest_vm("base01", 1).await;
    let dir = lab.datastore().join("base01");
    let t = c
        .call::<m::VmDiskCreate>(new_disk(vm, 64, DiskFormat::Raw, Provisioning::Thin))
        .await
        .unwrap();
    task_ok(c, t).await;
    write_word(c, vm, "ORIGINAL").await;

    // Snapshot, change the data, revert: the data is back.
    let tree = snapshot(c, vm, "before-upgrade").await;
    let s1 = tree.snapshots[0].id;
    assert_eq!(tree.current, Some(s1));
    assert_eq!(tree.snapshots[0].disks[0].file, "base01.raw");
    let info = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(
        info.spec.disks[0].file, "base01-000001.qcow2",
        "the VM writes to an overlay"
    );
    write_word(c, vm, "CHANGED!").await;
    assert_eq!(
        raw_at(&dir.join("base01.raw")),
        b"ORIGINAL",
        "the frozen base is untouched"
    );
    // Disks cannot change while snapshots exist, and a duplicate name is refused.
    let e = c
        .call::<m::VmSnapshotCreate>(m::SnapshotCreateParams {
            id: vm,
            name: "before-upgrade".into(),
            description: String::new(),
        })
        .await
        .unwrap();
    assert!(task_error(c, e).await.contains("already has a snapshot"));
    let t = c
        .call::<m::VmSnapshotRevert>(m::SnapshotParams {
            id: vm,
            snapshot: s1,
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    read_word(c, vm, "ORIGINAL").await;
    // Snapshots of a running VM are refused at once (memory snapshots are not supported yet).
    let e = c
        .call::<m::VmSnapshotCreate>(m::SnapshotCreateParams {
            id: vm,
            name: "live".into(),
            description: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidState));
    power_off(c, vm).await;

    // A linked clone of the snapshot, with its own host name.
    let started = std::time::Instant::now();
    let t = c
        .call::<m::VmClone>(m::VmCloneParams {
            id: vm,
            name: "clone01".into(),
            linked: true,
            snapshot: Some(s1),
            hostname: Some("clone01-host".into()),
            template: false,
        })
        .await
        .unwrap();
    let done = task_ok(c, t).await;
    eprintln!("linked clone took {:?}", started.elapsed());
    let clone: VmInfo = serde_json::from_value(done.result.unwrap()).unwrap();
    let cdir = lab.datastore().join("clone01");
    assert_eq!(clone.spec.disks[0].file, "clone01.qcow2");
    assert!(
        std::fs::metadata(cdir.join("clone01.qcow2")).unwrap().len() < 1 << 20,
        "a linked clone's disk is a small overlay"
    );
    let off = read_word(c, clone.id, "ORIGINAL").await;
    let (_, off) = console_run(
        c,
        clone.id,
        off,
        "echo name=$(hostname)",
        "name=clone01-host",
    )
    .await;
    console_run(c, clone.id, off, &write("CLONEWRT"), "w-CLONEWRT-5").await;
    power_off(c, clone.id).await;
    assert_eq!(
        raw_at(&dir.join("base01.raw")),
        b"ORIGINAL",
        "the clone's writes stay in the clone"
    );
    read_word(c, vm, "ORIGINAL").await;
    power_off(c, vm).await;

    // The base cannot go while the clone reads through it.
    let t = c
        .call::<m::VmSnapshotDelete>(m::SnapshotParams {
            id: vm,
            snapshot: s1,
        })
        .await
        .unwrap();
    let msg = task_error(c, t).await;
    assert!(msg.contains("linked clone clone01"), "{msg}");
    let t = c.call::<m::VmDestroy>(IdParams { id: vm }).await.unwrap();
    assert!(task_error(c, t).await.contains("linked clone clone01"));
    assert!(dir.join("base01.raw").is_file());

    // Once the clone is gone, deleting the only snapshot merges the VM back into its raw disk.
    let t = c
        .call::<m::VmDestroy>(IdParams { id: clone.id })
        .await
        .unwrap();
    task_ok(c, t).await;
    write_word(c, vm, "NEWDATA!").await;
    let t = c
        .call::<m::VmSnapshotDelete>(m::SnapshotParams {
            id: vm,
            snapshot: s1,
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    let info = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(info.spec.disks[0].file, "base01.raw");
    assert_eq!(info.spec.disks[0].format, DiskFormat::Raw);
    assert_eq!(raw_at(&dir.join("base01.raw")), b"NEWDATA!");
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".qcow2"))
        .collect();
    assert!(leftovers.is_empty(), "overlays are gone: {leftovers:?}");

    // A full clone copies the data; as a template it refuses to power on.
    let t = c
        .call::<m::VmClone>(m::VmCloneParams {
            id: vm,
            name: "gold".into(),
            linked: false,
            snapshot: None,
            hostname: None,
            template: true,
        })
        .await
        .unwrap();
    let done = task_ok(c, t).await;
    let gold: VmInfo = serde_json::from_value(done.result.unwrap()).unwrap();
    assert!(gold.spec.template);
    assert_eq!(
        raw_at(&lab.datastore().join("gold").join("gold.raw")),
        b"NEWDATA!"
    );
    let t = c
        .call::<m::VmPowerOn>(IdParams { id: gold.id })
        .await
        .unwrap();
    assert!(task_error(c, t).await.contains("template"));
    // Deploy from the template: a full clone that is an ordinary VM.
    let t = c
        .call::<m::VmClone>(m::VmCloneParams {
            id: gold.id,
            name: "web07".into(),
            linked: false,
            snapshot: None,
            hostname: Some("web07".into()),
            template: false,
        })
        .await
        .unwrap();
    let done = task_ok(c, t).await;
    let web: VmInfo = serde_json::from_value(done.result.unwrap()).unwrap();
    let off = read_word(c, web.id, "NEWDATA!").await;
    console_run(c, web.id, off, "echo name=$(hostname)", "name=web07").await;
    power_off(c, web.id).await;

    let events = c
        .call::<m::EventList>(EventListParams::default())
        .await
        .unwrap();
    for kind in [
        "vm.snapshotTaken",
        "vm.snapshotReverted",
        "vm.snapshotDeleted",
        "vm.cloned",
    ] {
        assert!(events.iter().any(|e| e.kind == kind), "an event {kind}");
    }
}
