//! Builds the qemu-system-x86_64 command line for a VM.

use std::ffi::OsString;

use strata_shared::model::Machine;

use crate::engine::VmContext;

/// How QEMU executes guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// Spare PCIe root ports a q35 VM gets for disks added while it runs.
pub const HOTPLUG_PORTS: usize = 4;

/// The kernel command line the engine always adds before the VM's own.
pub fn base_kernel_cmdline(machine: Machine, host_khz: u32) -> String {
    match machine {
        // microvm has no HPET or ACPI PM timer: without a TSC frequency the guest hangs after
        // "Marking TSC unstable" under TCG.
        Machine::Microvm => format!(
            "console=ttyS0 reboot=t panic=-1 tsc_early_khz={host_khz} lpj={}",
            u64::from(host_khz) * 2
        ),
        // The VGA text console too (tty0), for the VNC console; ttyS0 last stays /dev/console.
        Machine::Q35 => "console=tty0 console=ttyS0 panic=-1".to_string(),
    }
}

/// The full argument list (without the binary).
pub fn qemu_args(vm: &VmContext, accel: Accel, host_khz: u32) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(OsString::from(s));
    push("-name");
    push(&format!(
        "guest={},debug-threads=on",
        vm.name.replace(',', ",,")
    ));
    push("-uuid");
    push(&vm.id.to_string());
    push("-M");
    push(match vm.spec.machine {
        Machine::Microvm => "microvm,pit=on,rtc=on,acpi=on",
        Machine::Q35 => "q35",
    });
    match accel {
        Accel::Kvm => {
            push("-accel");
            push("kvm");
            push("-cpu");
            push("host,-arch-capabilities");
        }
        Accel::Tcg => {
            push("-accel");
            push("tcg");
            push("-cpu");
            push("max");
        }
    }
    push("-m");
    push(&vm.spec.memory_mib.to_string());
    push("-smp");
    push(&vm.spec.vcpus.to_string());
    push("-nodefaults");
    push("-no-user-config");
    push("-display");
    push("none");
    push("-kernel");
    a.push(vm.kernel.clone().into_os_string());
    if let Some(initrd) = &vm.initrd {
        a.push("-initrd".into());
        a.push(initrd.clone().into_os_string());
    }
    let mut cmdline = base_kernel_cmdline(vm.spec.machine, host_khz);
    if !vm.spec.boot.cmdline.trim().is_empty() {
        cmdline.push(' ');
        cmdline.push_str(vm.spec.boot.cmdline.trim());
    }
    let mut push = |s: &str| a.push(OsString::from(s));
    push("-append");
    push(&cmdline);
    push("-chardev");
    push(&format!(
        "socket,id=ser0,path={},server=on,wait=off,logfile={},logappend=on",
        escape(&vm.serial_socket().to_string_lossy()),
        escape(&vm.serial_log().to_string_lossy())
    ));
    push("-serial");
    push("chardev:ser0");
    for (i, nic) in vm.spec.nics.iter().enumerate() {
        push("-netdev");
        push(&format!(
            "tap,id=net{i},ifname={},script=no,downscript=no",
            escape(&nic.tap)
        ));
        let mac = crate::engine::nic_mac(vm, i)
            .map(|m| format!(",mac={m}"))
            .unwrap_or_default();
        push("-device");
        push(&format!(
            "{},netdev=net{i}{mac}",
            match vm.spec.machine {
                Machine::Microvm => "virtio-net-device",
                Machine::Q35 => "virtio-net-pci",
            }
        ));
    }
    // The screen, as RFB on a unix socket only the host agent's console gateway reaches.
    // q35 gets a VGA card; a microvm has no display device.
    if vm.spec.machine == Machine::Q35 {
        push("-device");
        push("VGA");
        push("-vnc");
        push(&format!(
            "unix:{}",
            escape(&crate::console::backend_socket(&vm.run_dir, vm.id).to_string_lossy())
        ));
    }
    push("-qmp");
    push(&format!(
        "unix:{},server=on,wait=off",
        escape(&vm.control_socket().to_string_lossy())
    ));
    if vm.spec.machine == Machine::Q35 {
        for port in 0..HOTPLUG_PORTS {
            push("-device");
            push(&format!(
                "pcie-root-port,id=hp{port},chassis={},bus=pcie.0",
                port + 1
            ));
        }
    }
    for (i, d) in vm.spec.disks.iter().enumerate() {
        let path = vm
            .disk_paths
            .get(i)
            .cloned()
            .unwrap_or_else(|| vm.dir.join(&d.file));
        // The format is always stated: QEMU must never probe a guest-writable image.
        push("-drive");
        push(&format!(
            "file={},format={},if=none,id=disk{i},aio=threads,discard=unmap{}",
            escape(&path.to_string_lossy()),
            d.format.data_format(),
            if d.read_only { ",readonly=on" } else { "" }
        ));
        push("-device");
        push(&format!(
            "{},drive=disk{i},serial=strata-disk{i}",
            match vm.spec.machine {
                Machine::Microvm => "virtio-blk-device",
                Machine::Q35 => "virtio-blk-pci",
            }
        ));
    }
    push("-pidfile");
    a.push(vm.pid_file().into_os_string());
    a.push("-daemonize".into());
    a
}

/// QEMU option values escape commas by doubling them.
fn escape(s: &str) -> String {
    s.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::{BootSpec, Engine, VmSpec};

    fn vm(name: &str, machine: Machine) -> VmContext {
        VmContext {
            id: uuid::Uuid::nil(),
            name: name.into(),
            dir: "/ds/a,b".into(),
            run_dir: "/run/s".into(),
            kernel: "/k/vmlinuz".into(),
            initrd: Some("/k/initrd".into()),
            spec: VmSpec {
                vcpus: 2,
                memory_mib: 256,
                engine: Engine::Qemu,
                machine,
                boot: BootSpec {
                    kernel: "vmlinuz".into(),
                    initrd: None,
                    cmdline: "quiet".into(),
                },
                allocation: Default::default(),
                disks: Vec::new(),
                template: false,
                nics: Vec::new(),
            },
            disk_paths: Vec::new(),
        }
    }

    fn joined(v: &VmContext, accel: Accel) -> String {
        qemu_args(v, accel, 2_000_000)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn microvm_under_tcg_gets_timer_hints_and_detaches() {
        let s = joined(&vm("web", Machine::Microvm), Accel::Tcg);
        assert!(s.contains("-accel tcg -cpu max"));
        assert!(s.contains("tsc_early_khz=2000000 lpj=4000000 quiet"));
        assert!(s.contains("-m 256 -smp 2"));
        assert!(s.contains("-daemonize"));
        assert!(
            s.contains("logfile=/ds/a,,b/serial.log"),
            "commas escaped: {s}"
        );
        assert!(s.contains("-initrd /k/initrd"));
    }

    #[test]
    fn kvm_uses_host_cpu_without_arch_capabilities() {
        let s = joined(&vm("x,y", Machine::Q35), Accel::Kvm);
        assert!(s.contains("-accel kvm -cpu host,-arch-capabilities"));
        assert!(s.contains("-M q35"));
        assert!(s.contains("-device VGA -vnc unix:/run/"), "{s}");
        assert!(s.contains("console=tty0 console=ttyS0"), "{s}");
        assert!(s.contains("guest=x,,y"));
        assert!(!s.contains("tsc_early_khz"));
    }

    #[test]
    fn disks_get_an_explicit_format_in_order() {
        use strata_shared::model::{DiskFormat, DiskSpec};
        let mut v = vm("db", Machine::Microvm);
        v.spec.disks = vec![
            DiskSpec {
                file: "db.raw".into(),
                format: DiskFormat::Raw,
                read_only: false,
            },
            DiskSpec {
                file: "db_1.qcow2".into(),
                format: DiskFormat::Qcow2,
                read_only: true,
            },
        ];
        v.disk_paths = vec!["/ds/a,b/db.raw".into(), "/ds/a,b/db_1.qcow2".into()];
        let s = joined(&v, Accel::Tcg);
        let first = s
            .find("file=/ds/a,,b/db.raw,format=raw,if=none,id=disk0")
            .unwrap();
        let second = s
            .find("file=/ds/a,,b/db_1.qcow2,format=qcow2,if=none,id=disk1")
            .unwrap();
        assert!(first < second, "vda before vdb: {s}");
        assert!(s.contains("id=disk1,aio=threads,discard=unmap,readonly=on"));
        assert!(s.contains("virtio-blk-device,drive=disk0"));
        let q = joined(&vm("db", Machine::Q35), Accel::Tcg);
        assert!(!q.contains("-drive"), "no disks, no drives");
    }

    #[test]
    fn nics_become_tap_netdevs_with_stable_macs() {
        use strata_shared::model::NicSpec;
        let mut v = vm("n", Machine::Microvm);
        v.spec.nics = vec![
            NicSpec {
                tap: "tap0".into(),
                mac: Some("52:54:00:aa:bb:cc".into()),
            },
            NicSpec {
                tap: "tap1".into(),
                mac: None,
            },
        ];
        let s = joined(&v, Accel::Tcg);
        assert!(
            s.contains("-netdev tap,id=net0,ifname=tap0,script=no,downscript=no"),
            "{s}"
        );
        assert!(s.contains("-device virtio-net-device,netdev=net0,mac=52:54:00:aa:bb:cc"));
        let derived = crate::engine::nic_mac(&v, 1).unwrap().to_string();
        assert!(s.contains(&format!("netdev=net1,mac={derived}")), "{s}");
        assert_eq!(joined(&v, Accel::Tcg), s, "the derived MAC is stable");
        v.spec.machine = Machine::Q35;
        assert!(joined(&v, Accel::Tcg).contains("-device virtio-net-pci,netdev=net0"));
    }
}
