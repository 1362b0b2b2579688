//! Virtual disks end to end: created through the manager, seen by a real Linux guest on the
//! qemu engine with the right sizes, written by the guest and read back from the file on the
//! datastore; grown while powered off; bad requests refused with nothing changed.

use std::time::Duration;

use strata_shared::api::manager as m;
use strata_shared::model::*;
use strata_shared::ErrorCode;
use strata_tests::{
    bins, console_run as run, new_disk, power_off, power_on, task_error, task_ok, wait_console,
    Lab, READY_MARKER,
};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disks_are_created_seen_by_the_guest_written_and_grown() {
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    let vm = lab.create_guest_vm("db01", 1).await;
    let dir = lab.datastore().join("db01");

    // A thin raw disk and a thick qcow2 disk.
    let t = c
        .call::<m::VmDiskCreate>(new_disk(vm, 64, DiskFormat::Raw, Provisioning::Thin))
        .await
        .unwrap();
    task_ok(c, t).await;
    let t = c
        .call::<m::VmDiskCreate>(new_disk(vm, 32, DiskFormat::Qcow2, Provisioning::Thick))
        .await
        .unwrap();
    task_ok(c, t).await;
    let disks = c.call::<m::VmDiskList>(IdParams { id: vm }).await.unwrap();
    let files: Vec<&str> = disks.iter().map(|d| d.file.as_str()).collect();
    assert_eq!(files, ["db01.raw", "db01_1.qcow2"]);
    assert_eq!(disks[0].capacity_bytes, 64 << 20);
    assert!(disks[0].allocated_bytes < 1 << 20, "thin: {:?}", disks[0]);
    assert_eq!(disks[1].capacity_bytes, 32 << 20);
    assert!(
        disks[1].allocated_bytes >= 32 << 20,
        "thick: {:?}",
        disks[1]
    );
    // The manager's inventory knows them too, and the config file on the datastore has them.
    let info = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(info.spec.disks.len(), 2);
    let toml = std::fs::read_to_string(dir.join("db01.toml")).unwrap();
    assert!(
        toml.contains("db01_1.qcow2") && toml.contains("qcow2"),
        "{toml}"
    );
    let events = c
        .call::<m::EventList>(EventListParams::default())
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .filter(|e| e.kind == "vm.diskAdded" && e.user.as_deref() == Some("admin"))
            .count()
            == 2,
        "each change is an event"
    );

    power_on(c, vm).await;
    let (_, off) = wait_console(c, vm, 0, READY_MARKER, Duration::from_secs(120))
        .await
        .unwrap();
    // Sizes in 512-byte sectors: 64 MiB and 32 MiB.
    let (_, off) = run(
        c,
        vm,
        off,
        "echo vda=$(cat /sys/block/vda/size) vdb=$(cat /sys/block/vdb/size)",
        "vda=131072 vdb=65536",
    )
    .await;

    // A microvm has no hot-plug: adding a disk while it runs fails with the reason, and
    // nothing is left behind.
    let t = c
        .call::<m::VmDiskCreate>(new_disk(vm, 8, DiskFormat::Raw, Provisioning::Thin))
        .await
        .unwrap();
    let msg = task_error(c, t).await;
    assert!(msg.contains("no hot-plug"), "{msg}");
    assert!(!dir.join("db01_2.raw").exists(), "no file left behind");
    let info = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(info.spec.disks.len(), 2, "nothing attached");

    // The guest writes a signature at byte 4096 of vda.
    let (_, _) = run(
        c,
        vm,
        off,
        "echo STRATA-DISK-SIGNATURE | dd of=/dev/vda bs=512 seek=8 2>/dev/null; sync; echo wrote-$((1+1))",
        "wrote-2",
    )
    .await;
    power_off(c, vm).await;
    let raw = std::fs::read(dir.join("db01.raw")).unwrap();
    assert_eq!(
        &raw[4096..4096 + 22],
        b"STRATA-DISK-SIGNATURE\n",
        "the guest's write reached the disk file"
    );

    // Grow vda while powered off; the guest sees the new size and the data is still there.
    let t = c
        .call::<m::VmDiskGrow>(m::DiskGrowParams {
            id: vm,
            file: "db01.raw".into(),
            size_mib: 96,
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    // Shrinking is refused and changes nothing.
    let t = c
        .call::<m::VmDiskGrow>(m::DiskGrowParams {
            id: vm,
            file: "db01.raw".into(),
            size_mib: 16,
        })
        .await
        .unwrap();
    let msg = task_error(c, t).await;
    assert!(msg.contains("shrinking"), "{msg}");
    assert_eq!(
        std::fs::metadata(dir.join("db01.raw")).unwrap().len(),
        96 << 20
    );

    let before = c
        .call::<m::VmConsoleRead>(m::ConsoleReadParams {
            id: vm,
            offset: -1,
            max_bytes: None,
        })
        .await
        .unwrap()
        .size;
    power_on(c, vm).await;
    let (_, off) = wait_console(c, vm, before, READY_MARKER, Duration::from_secs(120))
        .await
        .unwrap();
    run(
        c,
        vm,
        off,
        "echo size=$(cat /sys/block/vda/size) data=$(dd if=/dev/vda bs=512 skip=8 count=1 2>/dev/null | head -c 21)",
        "size=196608 data=STRATA-DISK-SIGNATURE",
    )
    .await;
    power_off(c, vm).await;

    // Detach vdb keeping its file, then delete vda with its file.
    let t = c
        .call::<m::VmDiskRemove>(m::DiskRemoveParams {
            id: vm,
            file: "db01_1.qcow2".into(),
            delete_file: false,
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    assert!(dir.join("db01_1.qcow2").is_file(), "detached, not deleted");
    let t = c
        .call::<m::VmDiskRemove>(m::DiskRemoveParams {
            id: vm,
            file: "db01.raw".into(),
            delete_file: true,
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    assert!(!dir.join("db01.raw").exists());
    // Re-attach the detached qcow2 file.
    let t = c
        .call::<m::VmDiskAttach>(m::DiskAttachParams {
            id: vm,
            disk: DiskSpec {
                file: "db01_1.qcow2".into(),
                format: DiskFormat::Qcow2,
                read_only: true,
            },
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    let info = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(
        info.spec.disks,
        vec![DiskSpec {
            file: "db01_1.qcow2".into(),
            format: DiskFormat::Qcow2,
            read_only: true,
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_disk_requests_are_refused_and_change_nothing() {
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    let vm = lab.create_guest_vm("bad01", 1).await;
    let dir = lab.datastore().join("bad01");

    let create = |size_mib: u64, file: Option<&str>| m::DiskCreateParams {
        id: vm,
        size_mib,
        format: DiskFormat::Raw,
        provisioning: Provisioning::Thin,
        read_only: false,
        file: file.map(String::from),
    };
    // Zero size, a path that leaves the VM directory, a name clashing with the VM's config.
    for (p, words) in [
        (create(0, None), "between 1 MiB"),
        (create(8, Some("../escape.raw")), "must not"),
        (create(8, Some("sub/escape.raw")), "must not contain"),
        (create(8, Some("bad01.toml")), "clash"),
    ] {
        let t = c.call::<m::VmDiskCreate>(p).await.unwrap();
        let msg = task_error(c, t).await;
        assert!(msg.contains(words), "{msg}");
    }
    assert!(!lab.datastore().join("escape.raw").exists());
    // Growing or removing a disk the VM does not have.
    let t = c
        .call::<m::VmDiskGrow>(m::DiskGrowParams {
            id: vm,
            file: "nope.raw".into(),
            size_mib: 8,
        })
        .await
        .unwrap();
    assert!(task_error(c, t).await.contains("no disk"));
    // Attaching a file that is not there.
    let t = c
        .call::<m::VmDiskAttach>(m::DiskAttachParams {
            id: vm,
            disk: DiskSpec {
                file: "missing.raw".into(),
                format: DiskFormat::Raw,
                read_only: false,
            },
        })
        .await
        .unwrap();
    assert!(task_error(c, t).await.contains("does not exist"));
    // Unknown VM: refused before any task.
    let e = c
        .call::<m::VmDiskList>(IdParams { id: Uuid::new_v4() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    let info = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert!(info.spec.disks.is_empty(), "nothing was attached");

    // A disk whose file vanished: power-on fails naming it, and the VM stays off.
    let t = c.call::<m::VmDiskCreate>(create(8, None)).await.unwrap();
    task_ok(c, t).await;
    std::fs::remove_file(dir.join("bad01.raw")).unwrap();
    let t = c.call::<m::VmPowerOn>(IdParams { id: vm }).await.unwrap();
    let msg = task_error(c, t).await;
    assert!(
        msg.contains("bad01.raw") && msg.contains("does not exist"),
        "{msg}"
    );
    let info = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(info.power_state, PowerState::PoweredOff);
}

/// A loop device over a scratch file, detached when dropped.
struct LoopDevice {
    device: String,
    file: std::path::PathBuf,
}

impl LoopDevice {
    fn new(mib: u64) -> Self {
        let file =
            strata_tests::scratch_root().join(format!("rdm-{}.img", Uuid::new_v4().simple()));
        std::fs::File::create(&file)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let out = std::process::Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&file)
            .output()
            .expect("losetup");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
        LoopDevice { device, file }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.device])
            .status();
        let _ = std::fs::remove_file(&self.file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_block_device_is_mapped_into_a_guest() {
    let dev = LoopDevice::new(32);
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    let vm = lab.create_guest_vm("rdm01", 1).await;
    let map = |device: &str| m::DiskMapDeviceParams {
        id: vm,
        device: device.into(),
        read_only: false,
    };
    // Not a block device, or no such device: refused, nothing attached.
    for (device, words) in [
        ("/etc/hostname", "not a block device"),
        ("/dev/strata-missing", "does not exist"),
    ] {
        let t = c.call::<m::VmDiskMapDevice>(map(device)).await.unwrap();
        let msg = task_error(c, t).await;
        assert!(msg.contains(words), "{msg}");
    }
    let t = c
        .call::<m::VmDiskMapDevice>(map(&dev.device))
        .await
        .unwrap();
    task_ok(c, t).await;
    let disks = c.call::<m::VmDiskList>(IdParams { id: vm }).await.unwrap();
    assert_eq!(disks.len(), 1);
    assert_eq!(disks[0].file, "rdm01.rdm");
    assert_eq!(disks[0].format, DiskFormat::Rdm);
    assert_eq!(disks[0].capacity_bytes, 32 << 20);
    let mapping = std::fs::read_to_string(lab.datastore().join("rdm01").join("rdm01.rdm")).unwrap();
    assert!(
        mapping.contains(&dev.device),
        "the mapping file names the device: {mapping}"
    );

    power_on(c, vm).await;
    let (_, off) = wait_console(c, vm, 0, READY_MARKER, Duration::from_secs(120))
        .await
        .unwrap();
    let (_, off) = run(
        c,
        vm,
        off,
        "echo vda=$(cat /sys/block/vda/size)",
        "vda=65536",
    )
    .await;
    run(
        c,
        vm,
        off,
        "printf RDM-WRITE | dd of=/dev/vda bs=512 seek=8 conv=notrunc 2>/dev/null; sync; echo rdm-$((4*4))",
        "rdm-16",
    )
    .await;

    // A second VM mapping the same device cannot power on while the first runs.
    let other = lab.create_guest_vm("rdm02", 1).await;
    let t = c
        .call::<m::VmDiskMapDevice>(m::DiskMapDeviceParams {
            id: other,
            device: dev.device.clone(),
            read_only: true,
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    let t = c
        .call::<m::VmPowerOn>(IdParams { id: other })
        .await
        .unwrap();
    let msg = task_error(c, t).await;
    assert!(msg.contains("in use by running VM rdm01"), "{msg}");

    power_off(c, vm).await;
    let data = std::fs::read(&dev.file).unwrap();
    assert_eq!(
        &data[4096..4105],
        b"RDM-WRITE",
        "the guest wrote to the device"
    );
    // Removing the mapping deletes the mapping file, never the device.
    let t = c
        .call::<m::VmDiskRemove>(m::DiskRemoveParams {
            id: vm,
            file: "rdm01.rdm".into(),
            delete_file: true,
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    assert!(std::path::Path::new(&dev.device).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_is_hot_added_to_a_running_q35_guest() {
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    let spec = VmSpec {
        machine: Machine::Q35,
        ..strata_tests::guest_spec()
    };
    let vm = lab.create_vm("hot01", spec).await;
    power_on(c, vm).await;
    let (_, off) = wait_console(c, vm, 0, READY_MARKER, Duration::from_secs(120))
        .await
        .unwrap();
    let (_, off) = run(
        c,
        vm,
        off,
        "echo disks=[$(ls /sys/block | grep vd)]",
        "disks=[]",
    )
    .await;
    let t = c
        .call::<m::VmDiskCreate>(new_disk(vm, 48, DiskFormat::Qcow2, Provisioning::Thin))
        .await
        .unwrap();
    task_ok(c, t).await;
    // The guest's PCIe hot-plug sees the new disk without a reboot.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut off = off;
    loop {
        let (out, next) = run(
            c,
            vm,
            off,
            "echo hp=$(cat /sys/block/vda/size 2>/dev/null || echo none)",
            "hp=",
        )
        .await;
        off = next;
        if out.contains("hp=98304") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the guest never saw the disk: {out}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    run(
        c,
        vm,
        off,
        "printf HOTDATA | dd of=/dev/vda bs=512 seek=1 conv=notrunc 2>/dev/null; sync; echo hot-$((3*3))",
        "hot-9",
    )
    .await;
    let info = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(
        info.spec.disks.len(),
        1,
        "the disk is in the VM's configuration"
    );
    assert_eq!(info.power_state, PowerState::PoweredOn, "it never stopped");
    power_off(c, vm).await;
}
