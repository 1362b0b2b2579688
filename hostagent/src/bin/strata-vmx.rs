//! strata-vmx: runs one VM on KVM (the native engine). Thin main over
//! `strata_hostagent::vmm`; the host agent starts one per VM and talks to it over the
//! control socket.
//!
//! Exit status: 0 when the guest powered off or the VM was stopped, 1 when the VM could not
//! be built (bad configuration: the reason is on stderr), 2 when the guest crashed.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use clap::Parser;
use strata_hostagent::net::mac::MacAddr;
use strata_hostagent::vmm::config::NetConfig;
use strata_hostagent::vmm::devices::legacy::framebuffer;
use strata_hostagent::vmm::{self, Exit, Vmm, VmmConfig};

/// Runs one VM on KVM.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// VM name (for logs).
    #[arg(long, default_value = "vm")]
    name: String,
    /// PVH ELF kernel.
    #[arg(long, required_unless_present = "restore")]
    kernel: Option<PathBuf>,
    /// Restore the snapshot in this directory instead of booting a kernel.
    #[arg(long)]
    restore: Option<PathBuf>,
    /// Initial ramdisk (Linux boot).
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Guest RAM, MiB.
    #[arg(long, default_value_t = 128)]
    memory_mib: u64,
    /// vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// Serial output file (appended).
    #[arg(long)]
    serial_log: PathBuf,
    /// Serial input socket.
    #[arg(long)]
    serial_socket: Option<PathBuf>,
    /// Control socket.
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// VNC console socket (RFB 3.8, no authentication: keep it private to the host agent).
    #[arg(long)]
    vnc_socket: Option<PathBuf>,
    /// Pid file.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Raw disk image to serve as virtio-blk.
    #[arg(long)]
    disk: Option<PathBuf>,
    /// Serve the disk read-only.
    #[arg(long, requires = "disk")]
    disk_read_only: bool,
    /// Raw disk image in the hot-add virtio-blk slot (the slot is empty without it).
    #[arg(long)]
    hot_disk: Option<PathBuf>,
    /// Serve the hot-add slot's disk read-only.
    #[arg(long, requires = "hot_disk")]
    hot_disk_read_only: bool,
    /// Tap interface for a virtio-net NIC.
    #[arg(long)]
    net_tap: Option<String>,
    /// The NIC's MAC address (default: derived from the VM name).
    #[arg(long, requires = "net_tap")]
    net_mac: Option<MacAddr>,
    /// A linear framebuffer, WIDTHxHEIGHT (e.g. 640x480).
    #[arg(long, value_parser = framebuffer::parse_geometry)]
    framebuffer: Option<(u32, u32)>,
    /// Do not confine the process with its seccomp filter (debugging only).
    #[arg(long)]
    no_seccomp: bool,
}

fn main() {
    strata_shared::service::init_logging();
    let args = Args::parse();
    let config = VmmConfig {
        name: args.name.clone(),
        kernel: args.kernel.unwrap_or_default(),
        initrd: args.initrd,
        cmdline: args.cmdline,
        memory_mib: args.memory_mib,
        vcpus: args.vcpus,
        serial_log: args.serial_log,
        serial_socket: args.serial_socket,
        control_socket: args.control_socket,
        vnc_socket: args.vnc_socket,
        pid_file: args.pid_file,
        restore: args.restore,
        disk: args.disk,
        disk_read_only: args.disk_read_only,
        hot_disk: args.hot_disk,
        hot_disk_read_only: args.hot_disk_read_only,
        net: args.net_tap.map(|tap| NetConfig {
            tap,
            mac: args
                .net_mac
                .unwrap_or_else(|| MacAddr::derived(args.name.as_bytes())),
        }),
        framebuffer: args.framebuffer,
        seccomp: !args.no_seccomp,
    };
    let exit = Vmm::build(config.clone()).and_then(Vmm::run);
    vmm::remove_sockets(&config);
    match exit {
        Ok(Exit::PowerOff) => {
            tracing::info!(vm = %config.name, "guest powered off");
            std::process::exit(0)
        }
        Ok(Exit::Stopped) => {
            tracing::info!(vm = %config.name, "stopped");
            std::process::exit(0)
        }
        Ok(Exit::Reset { hot_disk }) => {
            tracing::info!(vm = %config.name, "reset: starting the VM afresh");
            // A cold reset: the same process (pid, pid file) runs a fresh VM, with the disk
            // hot-added meanwhile in its slot.
            let mut argv = std::env::args_os();
            let arg0 = argv.next().unwrap_or_default();
            let args = vmm::config::reset_args(argv.collect(), hot_disk.as_ref());
            let err = std::process::Command::new("/proc/self/exe")
                .arg0(arg0)
                .args(args)
                .exec();
            eprintln!("strata-vmx: crashed: reset failed: cannot re-execute: {err}");
            std::process::exit(2)
        }
        Ok(Exit::Crashed(reason)) => {
            // The host agent looks for this line in vmm.log.
            eprintln!("strata-vmx: crashed: {reason}");
            std::process::exit(2)
        }
        Err(e) => {
            eprintln!("strata-vmx: error: {e}");
            std::process::exit(1)
        }
    }
}
