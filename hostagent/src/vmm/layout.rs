//! Guest physical memory layout of an x86-64 VM (low memory, as Firecracker lays it out).

/// Boot GDT.
pub const BOOT_GDT_START: u64 = 0x500;
/// Empty boot IDT (right after the GDT).
pub const BOOT_IDT_START: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH memory map (array of `hvm_memmap_table_entry`).
pub const PVH_MEMMAP_START: u64 = 0x7000;
/// Largest number of memory map entries.
pub const PVH_MEMMAP_MAX: usize = 128;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Command line slot size, bytes (including the NUL).
pub const CMDLINE_MAX: usize = 4096;
/// Start of the EBDA: usable low RAM ends here.
pub const EBDA_START: u64 = 0x9fc00;
/// Where kernels load (1 MiB).
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO hole (LAPIC, IOAPIC, devices) below 4 GiB.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole.
pub const MMIO_GAP_END: u64 = 1 << 32;
/// KVM's TSS (three pages) for real-mode emulation on Intel.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
/// KVM's identity-map page, right before the TSS.
pub const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;
/// The display's register block (after the virtio-mmio slots at 0xd0000000).
pub const DISPLAY_REGS_START: u64 = 0xd010_0000;
/// The linear framebuffer, in the MMIO hole (no RAM here; below the IOAPIC at 0xfec00000).
pub const FRAMEBUFFER_START: u64 = 0xe000_0000;
/// Largest framebuffer, bytes.
pub const FRAMEBUFFER_MAX: u64 = 32 << 20;
