//! The Linux x86 boot protocol (Documentation/arch/x86/boot.rst) for a bzImage or a plain
//! vmlinux ELF: the zero page (`boot_params` with the setup header, command line, initrd
//! and E820 map), identity page tables for the first GiB, a 64-bit GDT, and the register
//! state of the 64-bit entry point. Hosts with hardware KVM boot Linux this way; under KVM
//! PVM a Linux kernel cannot run, so this path is covered by unit tests against the spec.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

use crate::vmm::boot::gdt::gdt_entry;
use crate::vmm::boot::pvh;
use crate::vmm::layout;

/// The zero page (`boot_params`), %rsi at entry.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// PML4 of the boot page tables.
pub const PML4_START: u64 = 0x9000;
/// PDPT.
pub const PDPTE_START: u64 = 0xa000;
/// PD (512 × 2 MiB = the first GiB).
pub const PDE_START: u64 = 0xb000;
/// `boot_flag` magic.
pub const BOOT_FLAG: u16 = 0xaa55;
/// `header` magic, "HdrS".
pub const HDR_MAGIC: u32 = 0x5372_6448;
/// `type_of_loader`: a boot loader without an assigned id.
pub const LOADER_OTHER: u8 = 0xff;
/// `kernel_alignment` for kernels that do not say (16 MiB).
pub const KERNEL_ALIGNMENT: u32 = 0x0100_0000;
/// Most E820 entries the zero page holds.
pub const E820_MAX: usize = 128;

/// The 64-bit boot GDT: null, 64-bit code (0x08), data (0x10), TSS (0x18).
pub const GDT64: [u64; 4] = [
    gdt_entry(0, 0, 0),
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];

/// `boot_params`, writable into guest memory.
#[repr(transparent)]
#[derive(Clone, Copy, Default)]
pub struct ZeroPage(pub boot_params);

// SAFETY: boot_params is the kernel's packed plain-old-data structure of integers and
// arrays of integers (bindgen, repr(C, packed)); any byte pattern is a valid value and it
// has no padding or pointers.
unsafe impl ByteValued for ZeroPage {}

/// Why the Linux boot structures could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LinuxBootError {
    /// Too many memory ranges for the zero page.
    #[error("the E820 map has {0} entries, more than the zero page holds")]
    E820TooLarge(usize),
    /// Guest memory.
    #[error("writing the Linux boot structures failed: {0}")]
    Write(#[from] vm_memory::GuestMemoryError),
}

/// Builds the zero page: the kernel's setup header (a bzImage's, or a default one for a
/// vmlinux), our loader id, the command line, the initrd (address, size) and the E820 map
/// of `ram`.
pub fn zero_page(
    header: Option<setup_header>,
    cmdline_len: usize,
    initrd: Option<(u64, u64)>,
    ram: &[(u64, u64)],
) -> Result<boot_params, LinuxBootError> {
    let mut p = boot_params::default();
    let mut hdr = header.unwrap_or_default();
    if header.is_none() {
        hdr.boot_flag = BOOT_FLAG;
        hdr.header = HDR_MAGIC;
        hdr.kernel_alignment = KERNEL_ALIGNMENT;
    }
    hdr.type_of_loader = LOADER_OTHER;
    hdr.cmd_line_ptr = layout::CMDLINE_START as u32;
    hdr.cmdline_size = cmdline_len as u32;
    if let Some((addr, size)) = initrd {
        hdr.ramdisk_image = addr as u32;
        hdr.ramdisk_size = size as u32;
    }
    p.hdr = hdr;
    let map = pvh::memory_map(ram);
    if map.len() > E820_MAX {
        return Err(LinuxBootError::E820TooLarge(map.len()));
    }
    for (slot, e) in p.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.type_,
        };
    }
    p.e820_entries = map.len() as u8;
    Ok(p)
}

/// `orig_video_isVGA` for a VESA linear framebuffer.
pub const VIDEO_TYPE_VLFB: u8 = 0x23;

/// A linear framebuffer as the kernel's `screen_info` describes it (vesafb, simplefb).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearFramebuffer {
    /// Guest physical address (below 4 GiB).
    pub base: u32,
    /// Width, pixels.
    pub width: u16,
    /// Height, pixels.
    pub height: u16,
    /// Bytes per line.
    pub stride: u16,
    /// Size of the memory, bytes.
    pub size: u64,
}

/// Describes an XRGB8888 framebuffer in the zero page's `screen_info`.
pub fn set_framebuffer(p: &mut boot_params, fb: LinearFramebuffer) {
    let si = &mut p.screen_info;
    si.orig_video_isVGA = VIDEO_TYPE_VLFB;
    si.lfb_width = fb.width;
    si.lfb_height = fb.height;
    si.lfb_depth = 32;
    si.lfb_base = fb.base;
    // For VLFB the size is in 64 KiB units.
    si.lfb_size = u32::try_from(fb.size.div_ceil(1 << 16)).unwrap_or(u32::MAX);
    si.lfb_linelength = fb.stride;
    (si.red_size, si.red_pos) = (8, 16);
    (si.green_size, si.green_pos) = (8, 8);
    (si.blue_size, si.blue_pos) = (8, 0);
    (si.rsvd_size, si.rsvd_pos) = (8, 24);
}

/// The kernel command line with the `virtio_mmio.device=` entries that tell Linux where
/// the virtio-mmio devices are (`slots`: (window, IRQ) of each device present).
pub fn cmdline_with_virtio_mmio(cmdline: &str, slots: &[(u64, u32)]) -> String {
    let mut out = cmdline.trim().to_string();
    for (base, irq) in slots {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("virtio_mmio.device=4K@{base:#x}:{irq}"));
    }
    out
}

/// Where an initrd of `size` bytes goes: page-aligned, as high as allowed below
/// `initrd_addr_max` (0 = the protocol's old default 0x37ffffff) and the end of low RAM,
/// above the kernel at `kernel_end`.
pub fn initrd_address(
    size: u64,
    initrd_addr_max: u32,
    low_ram_end: u64,
    kernel_end: u64,
) -> Option<u64> {
    let max = if initrd_addr_max == 0 {
        0x37ff_ffff
    } else {
        u64::from(initrd_addr_max)
    };
    let top = (max + 1).min(low_ram_end);
    let start = top.checked_sub(size)? & !0xfff;
    (start >= kernel_end).then_some(start)
}

/// Writes the boot page tables: an identity map of the first GiB with 2 MiB pages.
pub fn write_page_tables(mem: &GuestMemoryMmap) -> Result<(), LinuxBootError> {
    mem.write_obj(PDPTE_START | 0x03, GuestAddress(PML4_START))?;
    mem.write_obj(PDE_START | 0x03, GuestAddress(PDPTE_START))?;
    for i in 0..512u64 {
        mem.write_obj((i << 21) | 0x83, GuestAddress(PDE_START + i * 8))?;
    }
    Ok(())
}

/// Writes the zero page, the page tables and the 64-bit GDT (at the boot GDT's place).
pub fn write_boot_structures(
    mem: &GuestMemoryMmap,
    params: boot_params,
) -> Result<(), LinuxBootError> {
    mem.write_obj(ZeroPage(params), GuestAddress(ZERO_PAGE_START))?;
    write_page_tables(mem)?;
    for (i, e) in GDT64.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(layout::BOOT_GDT_START + 8 * i as u64))?;
    }
    mem.write_obj(0u64, GuestAddress(layout::BOOT_IDT_START))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::boot::gdt::segment_from_gdt;

    #[test]
    fn framebuffer_and_virtio_devices_are_described() {
        let mut p = zero_page(None, 0, None, &[(0, 64 << 20)]).unwrap();
        set_framebuffer(
            &mut p,
            LinearFramebuffer {
                base: 0xe000_0000,
                width: 640,
                height: 480,
                stride: 2560,
                size: 640 * 480 * 4,
            },
        );
        let si = p.screen_info;
        assert_eq!({ si.orig_video_isVGA }, VIDEO_TYPE_VLFB);
        assert_eq!(
            ({ si.lfb_width }, { si.lfb_height }, { si.lfb_depth }),
            (640, 480, 32)
        );
        assert_eq!(
            ({ si.lfb_base }, { si.lfb_linelength }),
            (0xe000_0000, 2560)
        );
        assert_eq!({ si.lfb_size }, 19, "64 KiB units, rounded up");
        assert_eq!(
            ({ si.red_pos }, { si.green_pos }, { si.blue_pos }),
            (16, 8, 0)
        );
        assert_eq!(
            cmdline_with_virtio_mmio(" console=ttyS0 ", &[(0xd000_0000, 6), (0xd000_1000, 7)]),
            "console=ttyS0 virtio_mmio.device=4K@0xd0000000:6 virtio_mmio.device=4K@0xd0001000:7"
        );
        assert_eq!(cmdline_with_virtio_mmio("", &[]), "");
    }

    #[test]
    fn zero_page_fields_follow_the_boot_protocol() {
        let p = zero_page(None, 13, Some((0x3000_0000, 0x10_0000)), &[(0, 512 << 20)]).unwrap();
        let hdr = p.hdr;
        assert_eq!({ hdr.boot_flag }, 0xaa55);
        assert_eq!({ hdr.header }, 0x5372_6448, "\"HdrS\"");
        assert_eq!({ hdr.type_of_loader }, 0xff);
        assert_eq!({ hdr.cmd_line_ptr }, layout::CMDLINE_START as u32);
        assert_eq!({ hdr.cmdline_size }, 13);
        assert_eq!({ hdr.ramdisk_image }, 0x3000_0000);
        assert_eq!({ hdr.ramdisk_size }, 0x10_0000);
        assert_eq!({ hdr.kernel_alignment }, 0x0100_0000);
        // The zero page layout: e820_entries at 0x1e8, e820_table at 0x2d0, hdr at 0x1f1.
        let bytes = ZeroPage(p);
        let raw = bytes.as_slice();
        assert_eq!(raw.len(), 4096);
        assert_eq!(raw[0x1e8], 2);
        assert_eq!(u16::from_le_bytes([raw[0x1fe], raw[0x1ff]]), 0xaa55);
        assert_eq!(&raw[0x202..0x206], b"HdrS");
        assert_eq!(raw[0x210], 0xff);
        // e820 entry 1: 1 MiB .. 512 MiB, type 1 (RAM); each entry is 20 bytes.
        let e1 = &raw[0x2d0 + 20..0x2d0 + 40];
        assert_eq!(u64::from_le_bytes(e1[0..8].try_into().unwrap()), 0x10_0000);
        assert_eq!(
            u64::from_le_bytes(e1[8..16].try_into().unwrap()),
            (512 << 20) - 0x10_0000
        );
        assert_eq!(u32::from_le_bytes(e1[16..20].try_into().unwrap()), 1);
    }

    #[test]
    fn a_bzimage_header_is_kept_with_our_fields_over_it() {
        let h = setup_header {
            boot_flag: BOOT_FLAG,
            header: HDR_MAGIC,
            version: 0x020f,
            kernel_alignment: 0x20_0000,
            ..Default::default()
        };
        let p = zero_page(Some(h), 0, None, &[(0, 64 << 20)]).unwrap();
        let hdr = p.hdr;
        assert_eq!(
            ({ hdr.version }, { hdr.kernel_alignment }),
            (0x020f, 0x20_0000)
        );
        assert_eq!({ hdr.type_of_loader }, LOADER_OTHER);
        assert_eq!({ hdr.ramdisk_image }, 0);
        let big = zero_page(None, 0, None, &[(0, 0xc000_0000), (1 << 32, 8 << 30)]).unwrap();
        assert_eq!(big.e820_entries, 3);
        let e = big.e820_table[2];
        assert_eq!(({ e.addr }, { e.size }), (1 << 32, 8 << 30));
    }

    #[test]
    fn initrd_goes_high_and_page_aligned() {
        assert_eq!(
            initrd_address(0x1800, 0, 256 << 20, 0x200_0000),
            Some((256 << 20) - 0x2000)
        );
        assert_eq!(
            initrd_address(0x1000, 0x7fff_ffff, 4 << 30, 0),
            Some(0x8000_0000 - 0x1000)
        );
        assert_eq!(
            initrd_address(1 << 30, 0, 256 << 20, 0),
            None,
            "does not fit"
        );
        assert_eq!(
            initrd_address(0x1000, 0, 0x200_0800, 0x200_0000),
            None,
            "overlaps kernel"
        );
    }

    #[test]
    fn page_tables_map_the_first_gib_and_the_gdt_is_64_bit() {
        let mem = crate::vmm::vstate::memory::create_guest_memory(2 << 20).unwrap();
        write_page_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4, PDPTE_START | 3);
        let pdpte: u64 = mem.read_obj(GuestAddress(PDPTE_START)).unwrap();
        assert_eq!(pdpte, PDE_START | 3);
        let last: u64 = mem.read_obj(GuestAddress(PDE_START + 511 * 8)).unwrap();
        assert_eq!(last, (511 << 21) | 0x83, "present, writable, 2 MiB page");
        let code = segment_from_gdt(GDT64[1], 1);
        assert_eq!((code.l, code.db, code.type_, code.present), (1, 0, 0xb, 1));
        let data = segment_from_gdt(GDT64[2], 2);
        assert_eq!((data.l, data.db, data.type_), (0, 1, 3));
    }
}
