//! strata-vmx's VMM library: one VM per process on KVM through the rust-vmm crates, laid out
//! like Firecracker's `src/vmm` (vstate, devices, boot, config, control API).
//!
//! Threads: one per vCPU (`vcpuN`), `serial-in` (serial socket → UART FIFO), `control`
//! (control socket), `events` (the device event loop: backends such as a tap, see
//! [`event_loop`]), `vnc` and one `vnc-client` per VNC connection (the console, see
//! [`vnc`]), and the VMM loop on the caller's thread, which owns the VM and receives every
//! event over one bounded channel.

pub mod boot;
pub mod config;
pub mod control;
pub mod devices;
pub mod event_loop;
pub mod layout;
pub mod persist;
pub mod seccomp;
pub mod vnc;
pub mod vstate;

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use tracing::{debug, info, warn};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

pub use config::VmmConfig;
use control::{ControlRequest, ControlResponse, RunState};
use devices::legacy::framebuffer::Framebuffer;
use devices::legacy::{i8042, power, serial, EventTrigger};
use devices::virtio::{self, block::Block, mmio::MmioTransport, net::Net};
use devices::{MmioBus, PioBus};
use vstate::kvm::KvmContext;
use vstate::vcpu::{PauseControl, Vcpu, VcpuRequest};
use vstate::vm::Vm;

/// The test guest built from hostagent/testguest (a PVH ELF).
pub const TESTGUEST_PATH: &str = env!("STRATA_TESTGUEST");
/// What the test guest prints on the serial port once it is up.
pub const TESTGUEST_READY_MARKER: &str = "STRATA-TESTGUEST-READY";

/// What the VMM loop hears from vCPUs, devices and the control socket.
pub enum VmmEvent {
    /// The guest powered off.
    PowerOff,
    /// The guest reset itself.
    Reset,
    /// The guest cannot continue (with the reason).
    Crashed(String),
    /// A control request, where to send its answer, and where the control thread says the
    /// answer has been written (the loop waits for that before ending the process).
    Control(ControlRequest, SyncSender<ControlResponse>, Receiver<()>),
}

/// Where and how the boot vCPU starts.
#[derive(Debug, Clone, Copy)]
enum BootEntry {
    /// 32-bit PVH entry with the start info's address.
    Pvh {
        entry: GuestAddress,
        start_info: GuestAddress,
    },
    /// Linux 64-bit entry (zero page at `boot::linux::ZERO_PAGE_START`).
    Linux64(GuestAddress),
}

/// How the VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The guest powered off.
    PowerOff,
    /// Stopped through the control socket.
    Stopped,
    /// Reset: the caller starts the VM afresh (re-executes itself), with the disk that was
    /// hot-added meanwhile, if any (path, read-only), so the guest keeps it.
    Reset {
        /// The hot-add slot's disk.
        hot_disk: Option<(PathBuf, bool)>,
    },
    /// The guest crashed.
    Crashed(String),
}

/// Why the VMM could not build or run the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// Configuration refused.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// KVM unusable.
    #[error(transparent)]
    Kvm(#[from] vstate::kvm::KvmError),
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] vstate::memory::MemoryError),
    /// VM set-up.
    #[error(transparent)]
    Vm(#[from] vstate::vm::VmError),
    /// vCPU set-up.
    #[error(transparent)]
    Vcpu(#[from] vstate::vcpu::VcpuError),
    /// Loading the kernel failed.
    #[error("cannot load kernel {path}: {message}")]
    Kernel {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Boot structures.
    #[error(transparent)]
    Boot(#[from] boot::pvh::PvhError),
    /// The MP table.
    #[error(transparent)]
    MpTable(#[from] boot::mptable::MpTableError),
    /// The ACPI tables.
    #[error(transparent)]
    Acpi(#[from] boot::acpi::AcpiError),
    /// The disk.
    #[error(transparent)]
    Disk(#[from] virtio::block::BlockError),
    /// The framebuffer.
    #[error(transparent)]
    Framebuffer(#[from] devices::legacy::framebuffer::FramebufferError),
    /// The NIC's tap.
    #[error(transparent)]
    Tap(#[from] crate::net::tap::TapError),
    /// The device event loop.
    #[error(transparent)]
    EventLoop(#[from] event_loop::EventLoopError),
    /// The seccomp filter.
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    /// A snapshot could not be restored.
    #[error("cannot restore the snapshot: {0}")]
    Restore(#[from] persist::PersistError),
    /// Device set-up.
    #[error(transparent)]
    Bus(#[from] devices::BusError),
    /// A host file or socket.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmmError {
    let what = what.into();
    move |source| VmmError::Io { what, source }
}

/// A built VM, ready to run.
pub struct Vmm {
    config: VmmConfig,
    vm: Vm,
    // Guest RAM: registered with KVM, so it must live as long as `vm`.
    memory: Arc<GuestMemoryMmap>,
    // Mapped into the guest too: lives as long as `vm` (declared after it, dropped after;
    // the VNC console's clone may keep it longer).
    framebuffer: Option<Arc<Framebuffer>>,
    vcpus: Vec<Vcpu>,
    mmio: Arc<MmioBus>,
    blk: Option<Arc<Mutex<MmioTransport>>>,
    /// The hot-add block slot (always present) and the disk in it, if any.
    hot_blk: Arc<Mutex<MmioTransport>>,
    hot_disk: Option<(PathBuf, bool)>,
    net: Option<Arc<Mutex<MmioTransport>>>,
    event_loop: Option<event_loop::EventLoop>,
    /// While set, device backends leave guest memory alone (the VM is paused).
    backends_held: Arc<std::sync::atomic::AtomicBool>,
    msr_index: Arc<Vec<u32>>,
    bus: Arc<PioBus>,
    power: Arc<Mutex<power::PowerPort>>,
    i8042: Arc<Mutex<i8042::I8042>>,
    serial: Arc<Mutex<serial::SerialDevice>>,
    events_tx: SyncSender<VmmEvent>,
    events: Receiver<VmmEvent>,
    control: Option<UnixListener>,
    serial_in: Option<UnixListener>,
    /// The VNC socket and what it serves.
    vnc: Option<(UnixListener, Arc<vnc::VmConsole>)>,
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// The signal that kicks a vCPU thread out of KVM_RUN.
fn kick_signal() -> i32 {
    SIGRTMIN()
}

fn bind(path: &Path) -> Result<UnixListener, VmmError> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(io(format!("binding {}", path.display())))
}

impl Vmm {
    /// Builds the VM in order: KVM, configuration check, memory, irqchip, kernel, boot
    /// structures, devices, vCPUs, sockets. Nothing of the guest runs yet.
    pub fn build(mut config: VmmConfig) -> Result<Self, VmmError> {
        let kvm = KvmContext::open()?;
        // A snapshot stream: its state and framebuffer now, guest memory once it exists.
        let (snapshot, mut snapshot_rest) = match &config.restore {
            Some(dir) => {
                let (s, fb, rest) = persist::Snapshot::open_file(dir)?;
                config.memory_mib = s.memory_mib;
                config.vcpus = s.vcpus.len() as u32;
                (Some(s), Some((fb, rest)))
            }
            None => (None, None),
        };
        config.validate(config::host_memory_mib(), kvm.max_vcpus)?;
        if let Some(s) = &snapshot {
            // The disks the snapshot was taken with (a --disk given now would not match them).
            config.disk = s.disk.as_ref().map(|d| d.path.clone());
            config.disk_read_only = s.disk.as_ref().is_some_and(|d| d.read_only);
            let hot = s.hot_disk.as_ref().and_then(|h| h.disk.as_ref());
            config.hot_disk = hot.map(|d| d.0.clone());
            config.hot_disk_read_only = hot.is_some_and(|d| d.1);
        }
        if let Some(s) = &snapshot {
            // Likewise the display's geometry, which the guest has read.
            config.framebuffer = s.display.as_ref().map(|d| (d.width, d.height));
            // And the NIC: the guest's driver state belongs to the snapshot's device.
            config.net = s.net.as_ref().map(|n| config::NetConfig {
                tap: n.tap.clone(),
                mac: crate::net::mac::MacAddr(n.mac),
            });
        }
        // An absolute disk path, so a snapshot names it whatever the restorer's directory
        // (resolved now: the seccomp filter later allows no readlink/getcwd).
        // Only relative paths: a reset re-executes under the seccomp filter, which has no
        // readlink for realpath (the paths are absolute by then).
        let absolute = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())
            }
        };
        config.disk = config.disk.as_ref().map(absolute);
        config.hot_disk = config.hot_disk.as_ref().map(absolute);
        // Open (and lock) the disk before anything of the guest exists.
        let disk = config
            .disk
            .as_deref()
            .map(|p| Block::open(p, config.disk_read_only))
            .transpose()?;
        let hot_disk = config
            .hot_disk
            .as_deref()
            .map(|p| Block::open(p, config.hot_disk_read_only))
            .transpose()?;
        let tap = config
            .net
            .as_ref()
            .map(|n| crate::net::tap::Tap::open(&n.tap))
            .transpose()?;
        let memory = Arc::new(vstate::memory::create_guest_memory(config.memory_bytes())?);
        let framebuffer = config
            .framebuffer
            .map(|(w, h)| Framebuffer::new(w, h).map(Arc::new))
            .transpose()?;
        let extra: Vec<vstate::vm::ExtraMemory> = framebuffer
            .iter()
            .map(|f| vstate::vm::ExtraMemory {
                guest_addr: layout::FRAMEBUFFER_START,
                size: f.size(),
                host_addr: f.host_address(),
            })
            .collect();
        let vm = Vm::new(&kvm.kvm, &memory, &extra)?;
        if let (Some(fb), Some((data, _))) = (&framebuffer, &snapshot_rest) {
            fb.load(data)?;
        }
        let boot = match (&snapshot, &mut snapshot_rest) {
            (Some(s), Some((_, rest))) => {
                persist::stream::read_memory(rest, &memory)?;
                s.vm.restore(&vm.fd)?;
                None
            }
            _ => Some(Self::load_kernel(&config, &memory)?),
        };

        let (events_tx, events) = sync_channel(64);
        // With a VNC console, serial output also feeds its text mode.
        let console_text = config.vnc_socket.as_ref().map(|_| {
            let width = framebuffer
                .as_ref()
                .map_or(vnc::TEXT_SIZE.0, |f| f.width() as u16);
            Arc::new(Mutex::new(vnc::text_console(width, &config.serial_log)))
        });
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.serial_log)
            .map_err(io(format!("opening {}", config.serial_log.display())))?;
        let log: Box<dyn std::io::Write + Send> = match &console_text {
            Some(text) => Box::new(vnc::SerialTee::new(Box::new(log_file), text.clone())),
            None => Box::new(log_file),
        };
        let serial_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(io("creating an eventfd"))?;
        vm.fd
            .register_irqfd(&serial_irq, serial::IRQ)
            .map_err(|source| vstate::vm::VmError::Kvm {
                what: "KVM_IRQFD",
                source,
            })?;
        let serial_dev = match &snapshot {
            Some(s) => serial::SerialDevice::from_state(&(&s.serial).into(), serial_irq, log)
                .map_err(persist::PersistError::Format)?,
            None => serial::SerialDevice::new(serial_irq, log),
        };
        let serial = Arc::new(Mutex::new(serial_dev));
        let mut power_port =
            power::PowerPort::new(EventTrigger::new(events_tx.clone(), || VmmEvent::PowerOff));
        if let Some(s) = &snapshot {
            power_port.set_pending(s.power_pending);
        }
        let power = Arc::new(Mutex::new(power_port));
        let kbd_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(io("creating an eventfd"))?;
        vm.fd
            .register_irqfd(&kbd_irq, i8042::IRQ)
            .map_err(|source| vstate::vm::VmError::Kvm {
                what: "KVM_IRQFD",
                source,
            })?;
        let mut kbd = i8042::I8042::new(
            EventTrigger::new(events_tx.clone(), || VmmEvent::Reset),
            Some(kbd_irq),
        );
        if let Some(k) = snapshot.as_ref().and_then(|s| s.keyboard.as_ref()) {
            kbd.restore(k);
        }
        let i8042 = Arc::new(Mutex::new(kbd));
        let mut bus = PioBus::default();
        bus.insert(serial::BASE, serial::LEN, serial.clone())?;
        bus.insert(i8042::BASE, i8042::LEN, i8042.clone())?;
        bus.insert(power::BASE, power::LEN, power.clone())?;
        let mut mmio = MmioBus::default();
        if let Some(fb) = &framebuffer {
            info!(vm = %config.name, width = fb.width(), height = fb.height(), "framebuffer");
            mmio.insert(
                layout::DISPLAY_REGS_START,
                devices::legacy::framebuffer::REGS_LEN,
                Arc::new(Mutex::new(fb.registers())),
            )?;
        }
        let mut blk = None;
        let mut net = None;
        let mut device_events = event_loop::EventLoop::new()?;
        let backends_held = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let irqfd = |slot: u32| -> Result<EventFd, VmmError> {
            let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(io("creating an eventfd"))?;
            vm.fd
                .register_irqfd(&irq, virtio::slot_irq(slot))
                .map_err(|source| vstate::vm::VmError::Kvm {
                    what: "KVM_IRQFD",
                    source,
                })?;
            Ok(irq)
        };
        if let Some(disk) = disk {
            let irq = irqfd(virtio::SLOT_BLOCK)?;
            info!(vm = %config.name, sectors = disk.capacity(), "virtio-blk disk");
            let mut transport = MmioTransport::new(Box::new(disk), memory.clone(), irq);
            if let Some(d) = snapshot.as_ref().and_then(|s| s.disk.as_ref()) {
                transport
                    .restore(&d.transport)
                    .map_err(persist::PersistError::Format)?;
            }
            let transport = Arc::new(Mutex::new(transport));
            mmio.insert(
                virtio::slot_base(virtio::SLOT_BLOCK),
                virtio::MMIO_SIZE,
                transport.clone(),
            )?;
            blk = Some(transport);
        }
        let hot_blk = {
            let irq = irqfd(virtio::SLOT_HOT_BLOCK)?;
            if let Some(d) = &hot_disk {
                info!(vm = %config.name, sectors = d.capacity(), "virtio-blk disk in the hot-add slot");
            }
            let mut transport = MmioTransport::new(
                Box::new(hot_disk.unwrap_or_else(Block::empty)),
                memory.clone(),
                irq,
            );
            if let Some(h) = snapshot.as_ref().and_then(|s| s.hot_disk.as_ref()) {
                transport
                    .restore(&h.transport)
                    .map_err(persist::PersistError::Format)?;
            }
            let transport = Arc::new(Mutex::new(transport));
            mmio.insert(
                virtio::slot_base(virtio::SLOT_HOT_BLOCK),
                virtio::MMIO_SIZE,
                transport.clone(),
            )?;
            transport
        };
        let hot_disk = config
            .hot_disk
            .clone()
            .map(|p| (p, config.hot_disk_read_only));
        if let (Some(tap), Some(nc)) = (tap, &config.net) {
            let irq = irqfd(virtio::SLOT_NET)?;
            info!(vm = %config.name, tap = tap.name(), mac = %nc.mac, "virtio-net NIC");
            let fd = std::os::fd::AsRawFd::as_raw_fd(&tap);
            let mut transport = MmioTransport::new(
                Box::new(Net::new(Box::new(tap), nc.mac)),
                memory.clone(),
                irq,
            );
            if let Some(n) = snapshot.as_ref().and_then(|s| s.net.as_ref()) {
                transport
                    .restore(&n.transport)
                    .map_err(persist::PersistError::Format)?;
            }
            let transport = Arc::new(Mutex::new(transport));
            mmio.insert(
                virtio::slot_base(virtio::SLOT_NET),
                virtio::MMIO_SIZE,
                transport.clone(),
            )?;
            let t = transport.clone();
            let hold = backends_held.clone();
            // The tap's fd lives in the device, which the handler keeps alive. The flag is
            // read under the transport's lock (see `hold_backends`).
            device_events.add(
                fd,
                Box::new(move || {
                    let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
                    if !hold.load(std::sync::atomic::Ordering::SeqCst) {
                        t.backend_ready();
                    }
                }),
            )?;
            net = Some(transport);
        }

        let cpuid = kvm
            .kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|source| vstate::vm::VmError::Kvm {
                what: "KVM_GET_SUPPORTED_CPUID",
                source,
            })?;
        let mut vcpus = Vec::new();
        for id in 0..config.vcpus {
            vcpus.push(Vcpu::new(&vm.fd, id, config.vcpus, &cpuid)?);
        }
        match (&snapshot, boot) {
            (Some(s), _) => {
                for (vcpu, state) in vcpus.iter().zip(&s.vcpus) {
                    state.restore(&vcpu.fd)?;
                }
            }
            (None, Some(BootEntry::Pvh { entry, start_info })) => {
                if let Some(bsp) = vcpus.first() {
                    bsp.setup_pvh(entry, start_info)?;
                }
            }
            (None, Some(BootEntry::Linux64(entry))) => {
                if let Some(bsp) = vcpus.first() {
                    bsp.setup_linux64(entry)?;
                }
            }
            (None, None) => {}
        }

        let control = config.control_socket.as_deref().map(bind).transpose()?;
        let serial_in = config.serial_socket.as_deref().map(bind).transpose()?;
        let vnc = match (config.vnc_socket.as_deref(), console_text) {
            (Some(path), Some(text)) => Some((
                bind(path)?,
                Arc::new(vnc::VmConsole::new(
                    framebuffer.clone(),
                    text,
                    i8042.clone(),
                )),
            )),
            _ => None,
        };
        Ok(Self {
            config,
            vm,
            memory,
            framebuffer,
            vcpus,
            mmio: Arc::new(mmio),
            blk,
            hot_blk,
            hot_disk,
            net,
            event_loop: (!device_events.is_empty()).then_some(device_events),
            backends_held,
            msr_index: Arc::new(persist::msr_index_list(&kvm.kvm)),
            bus: Arc::new(bus),
            power,
            i8042,
            serial,
            events_tx,
            events,
            control,
            serial_in,
            vnc,
        })
    }

    /// Loads the kernel and writes its boot structures: a PVH ELF (the Xen PVH note) boots
    /// through its 32-bit PVH entry, a bzImage or another x86-64 ELF through the Linux
    /// 64-bit boot protocol.
    fn load_kernel(config: &VmmConfig, memory: &GuestMemoryMmap) -> Result<BootEntry, VmmError> {
        use std::io::Read;
        let kernel_err = |message: String| VmmError::Kernel {
            path: config.kernel.clone(),
            message,
        };
        let mut kernel = std::fs::File::open(&config.kernel)
            .map_err(io(format!("opening kernel {}", config.kernel.display())))?;
        let mut magic = [0u8; 4];
        kernel
            .read_exact(&mut magic)
            .map_err(|e| kernel_err(format!("cannot read it: {e}")))?;
        let himem = Some(GuestAddress(layout::HIMEM_START));
        let (loaded, entry) = if &magic == b"\x7fELF" {
            let loaded = Elf::load(memory, None, &mut kernel, himem)
                .map_err(|e| kernel_err(e.to_string()))?;
            if let PvhBootCapability::PvhEntryPresent(entry) = loaded.pvh_boot_cap {
                if config.initrd.is_some() {
                    return Err(kernel_err(
                        "an initrd with a PVH kernel is not supported yet".into(),
                    ));
                }
                return Self::write_pvh(config, memory, entry);
            }
            let entry = loaded.kernel_load;
            (loaded, entry)
        } else {
            let loaded = BzImage::load(memory, None, &mut kernel, himem)
                .map_err(|e| kernel_err(format!("neither an ELF nor a bzImage: {e}")))?;
            // The 64-bit entry point is 0x200 past the protected-mode code.
            let entry = GuestAddress(loaded.kernel_load.0 + 0x200);
            (loaded, entry)
        };
        // Linux finds virtio-mmio devices only on its command line.
        let mut slots = Vec::new();
        if config.disk.is_some() {
            slots.push((
                virtio::slot_base(virtio::SLOT_BLOCK),
                virtio::slot_irq(virtio::SLOT_BLOCK),
            ));
        }
        if config.net.is_some() {
            slots.push((
                virtio::slot_base(virtio::SLOT_NET),
                virtio::slot_irq(virtio::SLOT_NET),
            ));
        }
        // Always: a disk may be hot-added later.
        slots.push((
            virtio::slot_base(virtio::SLOT_HOT_BLOCK),
            virtio::slot_irq(virtio::SLOT_HOT_BLOCK),
        ));
        let cmdline = boot::linux::cmdline_with_virtio_mmio(&config.cmdline, &slots);
        if cmdline.len() >= layout::CMDLINE_MAX {
            return Err(config::ConfigError::CmdlineTooLong.into());
        }
        let mut line = cmdline.as_bytes().to_vec();
        line.push(0);
        memory
            .write_slice(&line, GuestAddress(layout::CMDLINE_START))
            .map_err(boot::pvh::PvhError::from)?;
        let ram = vstate::memory::ram_ranges(config.memory_bytes());
        let initrd = match &config.initrd {
            Some(path) => {
                let data = std::fs::read(path)
                    .map_err(io(format!("reading initrd {}", path.display())))?;
                let max = loaded.setup_header.map(|h| h.initrd_addr_max).unwrap_or(0);
                let low_end = ram.first().map(|r| r.1).unwrap_or(0);
                let kernel_end = loaded.kernel_load.0 + loaded.kernel_end;
                let at = boot::linux::initrd_address(data.len() as u64, max, low_end, kernel_end)
                    .ok_or_else(|| {
                    kernel_err("the initrd does not fit in guest memory".into())
                })?;
                memory
                    .write_slice(&data, GuestAddress(at))
                    .map_err(boot::pvh::PvhError::from)?;
                Some((at, data.len() as u64))
            }
            None => None,
        };
        let mut params = boot::linux::zero_page(loaded.setup_header, cmdline.len(), initrd, &ram)
            .map_err(|e| kernel_err(e.to_string()))?;
        if let Some((w, h)) = config.framebuffer {
            // What Framebuffer::new accepts fits these fields (sides up to 4096).
            let side = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
            boot::linux::set_framebuffer(
                &mut params,
                boot::linux::LinearFramebuffer {
                    base: layout::FRAMEBUFFER_START as u32,
                    width: side(w),
                    height: side(h),
                    stride: side(w.saturating_mul(4)),
                    size: u64::from(w) * u64::from(h) * 4,
                },
            );
        }
        // ACPI for kernels that take their CPUs from the MADT only; the MP table for the rest.
        params.acpi_rsdp_addr = boot::acpi::write(memory, config.vcpus)?;
        boot::linux::write_boot_structures(memory, params)
            .map_err(|e| kernel_err(e.to_string()))?;
        boot::mptable::write(memory, config.vcpus)?;
        Ok(BootEntry::Linux64(entry))
    }

    /// PVH: the 32-bit GDT, the start info with its memory map and command line, the MP
    /// table.
    fn write_pvh(
        config: &VmmConfig,
        memory: &GuestMemoryMmap,
        entry: GuestAddress,
    ) -> Result<BootEntry, VmmError> {
        for (i, e) in boot::gdt::BOOT_GDT.iter().enumerate() {
            memory
                .write_obj(*e, GuestAddress(layout::BOOT_GDT_START + 8 * i as u64))
                .map_err(boot::pvh::PvhError::from)?;
        }
        memory
            .write_obj(0u64, GuestAddress(layout::BOOT_IDT_START))
            .map_err(boot::pvh::PvhError::from)?;
        let ram = vstate::memory::ram_ranges(config.memory_bytes());
        let start_info = boot::pvh::write_start_info(memory, &ram, &config.cmdline)?;
        boot::mptable::write(memory, config.vcpus)?;
        Ok(BootEntry::Pvh { entry, start_info })
    }

    /// Runs the VM until it ends; the caller then exits the process (vCPU threads included).
    pub fn run(mut self) -> Result<Exit, VmmError> {
        register_signal_handler(kick_signal(), kick_handler)
            .map_err(|e| io("installing the vCPU kick handler")(e.into()))?;
        if self.config.seccomp {
            // Before any thread starts: they all inherit it.
            seccomp::install()?;
        }
        if let Some(listener) = self.control.take() {
            let tx = self.events_tx.clone();
            std::thread::Builder::new()
                .name("control".into())
                .spawn(move || control::serve(listener, tx))
                .map_err(io("spawning the control thread"))?;
        }
        if let Some(events) = self.event_loop.take() {
            std::thread::Builder::new()
                .name("events".into())
                .spawn(move || events.run())
                .map_err(io("spawning the device event loop"))?;
        }
        if let Some((listener, console)) = self.vnc.take() {
            let name = self.config.name.clone();
            std::thread::Builder::new()
                .name("vnc".into())
                .spawn(move || crate::rfb::serve(listener, console, name))
                .map_err(io("spawning the VNC thread"))?;
        }
        if let Some(listener) = self.serial_in.take() {
            let serial = self.serial.clone();
            std::thread::Builder::new()
                .name("serial-in".into())
                .spawn(move || serve_serial_input(listener, serial))
                .map_err(io("spawning the serial input thread"))?;
        }
        if let Some(p) = &self.config.pid_file {
            std::fs::write(p, std::process::id().to_string())
                .map_err(io(format!("writing {}", p.display())))?;
        }
        let pause = Arc::new(PauseControl::default());
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let mut requests = Vec::new();
        let count = self.vcpus.len();
        for vcpu in std::mem::take(&mut self.vcpus) {
            let (bus, pause, tx) = (self.bus.clone(), pause.clone(), self.events_tx.clone());
            let mmio = self.mmio.clone();
            let (req_tx, req_rx) = sync_channel(1);
            let handle = std::thread::Builder::new()
                .name(format!("vcpu{}", vcpu.id))
                .spawn(move || vcpu.run(bus, mmio, pause, tx, req_rx))
                .map_err(io("spawning a vCPU thread"))?;
            threads.push(handle);
            requests.push(req_tx);
        }
        let vcpus = VcpuThreads { threads, requests };
        info!(vm = %self.config.name, vcpus = count, memory_mib = self.config.memory_mib, "VM running");
        let mut state = RunState::Running;
        loop {
            let Ok(event) = self.events.recv() else {
                return Ok(Exit::Crashed("the VMM lost its event channel".into()));
            };
            match event {
                VmmEvent::PowerOff => return Ok(Exit::PowerOff),
                VmmEvent::Reset => return Ok(self.reset_exit()),
                VmmEvent::Crashed(reason) => return Ok(Exit::Crashed(reason)),
                VmmEvent::Control(req, reply, written) => {
                    debug!(?req, "control request");
                    let (resp, exit) = self.control(req, &mut state, &pause, &vcpus);
                    let _ = reply.send(resp);
                    if let Some(exit) = exit {
                        // The requester hears "ok" before the process ends or re-executes.
                        let _ = written.recv_timeout(Duration::from_secs(1));
                        return Ok(exit);
                    }
                }
            }
        }
    }

    fn control(
        &mut self,
        req: ControlRequest,
        state: &mut RunState,
        pause: &PauseControl,
        vcpus: &VcpuThreads,
    ) -> (ControlResponse, Option<Exit>) {
        let mut exit = None;
        let mut dirty = None;
        match req {
            ControlRequest::Status => {}
            ControlRequest::Shutdown => {
                self.power
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .request_shutdown();
                let pulse = self
                    .vm
                    .fd
                    .set_irq_line(power::IRQ, true)
                    .and_then(|_| self.vm.fd.set_irq_line(power::IRQ, false));
                if let Err(e) = pulse {
                    return (
                        ControlResponse::error(format!("raising the shutdown IRQ failed: {e}")),
                        None,
                    );
                }
            }
            ControlRequest::Key { codes } => {
                if let Err(e) = self.keys(&codes) {
                    return (ControlResponse::error(e), None);
                }
            }
            ControlRequest::Type { text } => {
                let codes = match devices::legacy::keymap::scancodes_for(&text) {
                    Ok(c) => c,
                    Err(c) => return (ControlResponse::error(format!("no key types {c:?}")), None),
                };
                if let Err(e) = self.keys(&codes) {
                    return (ControlResponse::error(e), None);
                }
            }
            ControlRequest::Screendump { path } => {
                if let Err(e) = self.screendump(&path) {
                    return (ControlResponse::error(e), None);
                }
            }
            ControlRequest::Stop => exit = Some(Exit::Stopped),
            ControlRequest::Reset => exit = Some(self.reset_exit()),
            ControlRequest::AttachDisk { path, read_only } => {
                if let Err(e) = self.attach_disk(&path, read_only) {
                    return (ControlResponse::error(e), None);
                }
            }
            ControlRequest::DirtyLog { enable } => {
                if let Err(e) = self.vm.set_dirty_logging(&self.memory, enable) {
                    return (ControlResponse::error(e.to_string()), None);
                }
                info!(vm = %self.config.name, enable, "dirty-page logging");
            }
            ControlRequest::DirtyPages => match self.vm.dirty_pages(&self.memory) {
                Ok(pages) => dirty = Some(pages.len() as u64),
                Err(e) => return (ControlResponse::error(e.to_string()), None),
            },
            ControlRequest::Snapshot { dir } => {
                if *state == RunState::Running {
                    if let Err(e) = park_all(pause, &vcpus.threads) {
                        pause.set_paused(false);
                        return (ControlResponse::error(e), None);
                    }
                    self.hold_backends(true);
                    *state = RunState::Paused;
                }
                let started = Instant::now();
                if let Err(e) = self.snapshot(&dir, vcpus) {
                    return (
                        ControlResponse::error(format!("snapshot failed: {e}")),
                        None,
                    );
                }
                info!(vm = %self.config.name, dir = %dir.display(), ms = started.elapsed().as_millis() as u64, "snapshot written");
            }
            ControlRequest::Pause => {
                if *state == RunState::Running {
                    if let Err(e) = park_all(pause, &vcpus.threads) {
                        pause.set_paused(false);
                        return (ControlResponse::error(e), None);
                    }
                    self.hold_backends(true);
                    *state = RunState::Paused;
                }
            }
            ControlRequest::Resume => {
                self.hold_backends(false);
                pause.set_paused(false);
                *state = RunState::Running;
            }
        }
        let resp = ControlResponse {
            ok: true,
            state: Some(*state),
            pid: Some(std::process::id()),
            vcpus: Some(self.config.vcpus),
            memory_mib: Some(self.config.memory_mib),
            dirty_pages: dirty,
            error: None,
        };
        (resp, exit)
    }
}

impl Vmm {
    /// How a reset ends this process: with the hot-added disk carried over.
    fn reset_exit(&self) -> Exit {
        Exit::Reset {
            hot_disk: self.hot_disk.clone(),
        }
    }

    /// Hot-add: opens (and locks) the raw image at `path` and puts it into the empty hot-add
    /// slot; the guest gets a configuration-change interrupt and finds the new capacity.
    fn attach_disk(&mut self, path: &Path, read_only: bool) -> Result<(), String> {
        if let Some((held, _)) = &self.hot_disk {
            return Err(format!(
                "the hot-add slot already holds {}; power the VM off to add more disks",
                held.display()
            ));
        }
        if !path.is_absolute() {
            return Err(format!("{} is not an absolute path", path.display()));
        }
        let disk = Block::open(path, read_only).map_err(|e| e.to_string())?;
        let sectors = disk.capacity();
        self.hot_blk
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .attach(Box::new(disk))?;
        self.hot_disk = Some((path.to_path_buf(), read_only));
        info!(vm = %self.config.name, disk = %path.display(), sectors, "disk hot-added");
        Ok(())
    }

    /// Stops (or lets go on) device work that the event loop does on its own, so a paused
    /// VM's memory and queues stay still (a snapshot or a migration copies them). Holding
    /// waits for a handler already running; letting go serves what came meanwhile (frames
    /// that waited in the tap).
    fn hold_backends(&self, hold: bool) {
        self.backends_held
            .store(hold, std::sync::atomic::Ordering::SeqCst);
        if let Some(net) = &self.net {
            // Taking the lock waits out a handler that read the flag before it changed.
            let mut t = net.lock().unwrap_or_else(|p| p.into_inner());
            if !hold {
                t.backend_ready();
            }
        }
    }

    /// Writes the framebuffer to `path` as a PPM (P6).
    fn screendump(&self, path: &Path) -> Result<(), String> {
        let fb = self
            .framebuffer
            .as_ref()
            .ok_or("the VM has no framebuffer")?;
        let file = std::fs::File::create(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        fb.write_ppm(&mut out)
            .and_then(|_| std::io::Write::flush(&mut out))
            .map_err(|e| format!("writing {} failed: {e}", path.display()))
    }

    /// Queues set-1 scan codes on the PS/2 keyboard (all or none).
    fn keys(&self, codes: &[u8]) -> Result<(), String> {
        let mut kbd = self.i8042.lock().unwrap_or_else(|p| p.into_inner());
        if kbd.push_scancodes(codes) {
            Ok(())
        } else {
            Err(format!(
                "the keyboard buffer is full ({} of {} bytes waiting for the guest)",
                kbd.pending(),
                i8042::QUEUE_MAX
            ))
        }
    }
}

/// The running vCPU threads and their request channels.
struct VcpuThreads {
    threads: Vec<JoinHandle<()>>,
    requests: Vec<SyncSender<VcpuRequest>>,
}

impl Vmm {
    /// Writes a snapshot of the (paused) VM into `dir`: vCPU states from their threads, the
    /// VM's KVM state, device state, then guest memory.
    fn snapshot(&self, dir: &Path, vcpus: &VcpuThreads) -> Result<(), String> {
        let mut states = Vec::new();
        for (id, tx) in vcpus.requests.iter().enumerate() {
            let (reply, rx) = sync_channel(1);
            tx.send(VcpuRequest::Save(self.msr_index.clone(), reply))
                .map_err(|_| format!("vCPU {id} is gone"))?;
            let state = rx
                .recv_timeout(Duration::from_secs(5))
                .map_err(|_| format!("vCPU {id} did not answer"))??;
            states.push(state);
        }
        let snapshot = persist::Snapshot {
            version: persist::SNAPSHOT_VERSION,
            name: self.config.name.clone(),
            memory_mib: self.config.memory_mib,
            vm: persist::VmState::save(&self.vm.fd).map_err(|e| e.to_string())?,
            vcpus: states,
            serial: self
                .serial
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .state()
                .into(),
            display: self.framebuffer.as_ref().map(|f| persist::DisplaySnapshot {
                width: f.width(),
                height: f.height(),
            }),
            keyboard: Some(self.i8042.lock().unwrap_or_else(|p| p.into_inner()).state()),
            power_pending: self
                .power
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pending(),
            disk: match (&self.blk, &self.config.disk) {
                (Some(t), Some(path)) => Some(persist::DiskSnapshot {
                    path: path.clone(),
                    read_only: self.config.disk_read_only,
                    transport: t.lock().unwrap_or_else(|p| p.into_inner()).state(),
                }),
                _ => None,
            },
            hot_disk: Some(persist::HotDiskSnapshot {
                disk: self.hot_disk.clone(),
                transport: self
                    .hot_blk
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .state(),
            }),
            net: match (&self.net, &self.config.net) {
                (Some(t), Some(n)) => Some(persist::NetSnapshot {
                    tap: n.tap.clone(),
                    mac: n.mac.0,
                    transport: t.lock().unwrap_or_else(|p| p.into_inner()).state(),
                }),
                _ => None,
            },
        };
        let fb = self.framebuffer.as_ref().map(|f| f.contents());
        snapshot
            .write_file(dir, fb.as_deref(), &self.memory)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Parks every vCPU thread: sets the pause flag, then kicks each thread out of KVM_RUN
/// until all have parked (a kick that lands before KVM_RUN is simply sent again).
fn park_all(pause: &PauseControl, threads: &[JoinHandle<()>]) -> Result<(), String> {
    pause.set_paused(true);
    let deadline = Instant::now() + Duration::from_secs(5);
    while pause.parked() < threads.len() {
        for t in threads {
            if !t.is_finished() {
                let _ = t.kill(kick_signal());
            }
        }
        if Instant::now() > deadline {
            return Err("the vCPUs did not pause within 5 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Feeds bytes from serial-socket clients (one at a time) into the UART's input FIFO,
/// waiting while the FIFO is full so no input is lost.
fn serve_serial_input(listener: UnixListener, serial: Arc<Mutex<serial::SerialDevice>>) {
    let mut buf = [0u8; 1024];
    for conn in listener.incoming() {
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "serial socket accept failed");
                continue;
            }
        };
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let took = serial
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .enqueue(rest);
                rest = &rest[took..];
                if took == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

/// Removes the sockets a VMM bound (on exit).
pub fn remove_sockets(config: &VmmConfig) {
    for p in [
        &config.control_socket,
        &config.serial_socket,
        &config.vnc_socket,
    ]
    .into_iter()
    .flatten()
    {
        let _ = std::fs::remove_file(p);
    }
}
