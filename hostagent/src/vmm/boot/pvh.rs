//! The PVH boot protocol (Xen's `arch-x86/hvm/start_info.h`): the `hvm_start_info` block
//! whose address a PVH entry point receives in %ebx, its memory map and command line.

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

use crate::vmm::layout;

/// `XEN_HVM_START_MAGIC_VALUE`.
pub const START_INFO_MAGIC: u32 = 0x336e_c578;
/// E820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// E820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

/// `struct hvm_start_info` (version 1).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HvmStartInfo {
    /// `START_INFO_MAGIC`.
    pub magic: u32,
    /// Structure version (1 has the memory map).
    pub version: u32,
    /// SIF_xxx flags.
    pub flags: u32,
    /// Number of modules (initrd).
    pub nr_modules: u32,
    /// Physical address of the module list.
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP (0: none).
    pub rsdp_paddr: u64,
    /// Physical address of the memory map.
    pub memmap_paddr: u64,
    /// Entries in the memory map.
    pub memmap_entries: u32,
    /// Must be zero.
    pub reserved: u32,
}

// SAFETY: plain-old-data with no padding (all fields are integers laid out by repr(C) with
// natural alignment: 4 × u32, 4 × u64, 2 × u32 = 56 bytes); any byte pattern is valid.
unsafe impl ByteValued for HvmStartInfo {}

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HvmMemmapEntry {
    /// Start address.
    pub addr: u64,
    /// Length, bytes.
    pub size: u64,
    /// E820 type.
    pub type_: u32,
    /// Must be zero.
    pub reserved: u32,
}

// SAFETY: plain-old-data, no padding (u64, u64, u32, u32 = 24 bytes); any bytes are valid.
unsafe impl ByteValued for HvmMemmapEntry {}

/// The guest's memory map for `ram`, the guest RAM ranges (start, length) sorted by address,
/// the first starting at 0: low RAM below the EBDA, RAM from 1 MiB, the rest as given.
pub fn memory_map(ram: &[(u64, u64)]) -> Vec<HvmMemmapEntry> {
    let mut map = Vec::new();
    for &(start, len) in ram {
        if start == 0 {
            map.push(HvmMemmapEntry {
                addr: 0,
                size: layout::EBDA_START.min(len),
                type_: E820_RAM,
                reserved: 0,
            });
            if len > layout::HIMEM_START {
                map.push(HvmMemmapEntry {
                    addr: layout::HIMEM_START,
                    size: len - layout::HIMEM_START,
                    type_: E820_RAM,
                    reserved: 0,
                });
            }
        } else {
            map.push(HvmMemmapEntry {
                addr: start,
                size: len,
                type_: E820_RAM,
                reserved: 0,
            });
        }
    }
    map
}

/// Why the boot structures could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PvhError {
    /// Too many memory map entries.
    #[error("the memory map has {0} entries, more than fit")]
    MemmapTooLarge(usize),
    /// Guest memory rejected a write.
    #[error("writing the PVH boot structures to guest memory failed: {0}")]
    Write(#[from] vm_memory::GuestMemoryError),
}

/// Writes the start info, its memory map and the command line; returns the start info's
/// address (for %rbx).
pub fn write_start_info(
    mem: &GuestMemoryMmap,
    ram: &[(u64, u64)],
    cmdline: &str,
) -> Result<GuestAddress, PvhError> {
    let map = memory_map(ram);
    if map.len() > layout::PVH_MEMMAP_MAX {
        return Err(PvhError::MemmapTooLarge(map.len()));
    }
    for (i, e) in map.iter().enumerate() {
        let at = layout::PVH_MEMMAP_START + (i * std::mem::size_of::<HvmMemmapEntry>()) as u64;
        mem.write_obj(*e, GuestAddress(at))?;
    }
    let mut line = cmdline.as_bytes().to_vec();
    line.push(0);
    mem.write_slice(&line, GuestAddress(layout::CMDLINE_START))?;
    let info = HvmStartInfo {
        magic: START_INFO_MAGIC,
        version: 1,
        cmdline_paddr: layout::CMDLINE_START,
        memmap_paddr: layout::PVH_MEMMAP_START,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    let at = GuestAddress(layout::PVH_INFO_START);
    mem.write_obj(info, at)?;
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_have_the_abi_sizes() {
        assert_eq!(std::mem::size_of::<HvmStartInfo>(), 56);
        assert_eq!(std::mem::size_of::<HvmMemmapEntry>(), 24);
    }

    #[test]
    fn memory_map_skips_the_legacy_hole() {
        let map = memory_map(&[(0, 256 << 20)]);
        assert_eq!(map.len(), 2);
        assert_eq!((map[0].addr, map[0].size), (0, 0x9fc00));
        assert_eq!(
            (map[1].addr, map[1].size),
            (0x10_0000, (256 << 20) - 0x10_0000)
        );
        assert!(map.iter().all(|e| e.type_ == E820_RAM));
        let big = memory_map(&[(0, 0xc000_0000), (1 << 32, 1 << 30)]);
        assert_eq!(big.len(), 3);
        assert_eq!((big[2].addr, big[2].size), (1 << 32, 1 << 30));
    }

    #[test]
    fn start_info_is_written_where_the_guest_reads_it() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let at = write_start_info(&mem, &[(0, 2 << 20)], "console=ttyS0").unwrap();
        assert_eq!(at.0, layout::PVH_INFO_START);
        let info: HvmStartInfo = mem.read_obj(at).unwrap();
        assert_eq!(info.magic, START_INFO_MAGIC);
        assert_eq!(info.version, 1);
        assert_eq!(info.memmap_entries, 2);
        let e: HvmMemmapEntry = mem.read_obj(GuestAddress(info.memmap_paddr + 24)).unwrap();
        assert_eq!((e.addr, e.size, e.type_), (0x10_0000, 0x10_0000, E820_RAM));
        let mut line = [0u8; 14];
        mem.read_slice(&mut line, GuestAddress(info.cmdline_paddr))
            .unwrap();
        assert_eq!(&line, b"console=ttyS0\0");
    }
}
