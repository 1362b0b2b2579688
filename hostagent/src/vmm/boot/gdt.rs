//! The flat GDT a PVH entry expects (32-bit code and data, a TSS), and the segment registers
//! KVM takes from it.

use kvm_bindings::kvm_segment;

/// Packs a GDT entry from flags (access byte in bits 0..8, flags in 12..16), base and limit,
/// as the Intel SDM vol. 3 §3.4.5 lays it out.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The boot GDT: null, 32-bit flat code (0x08), flat data (0x10), TSS (0x18).
pub const BOOT_GDT: [u64; 4] = [
    gdt_entry(0, 0, 0),
    gdt_entry(0xc09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x008b, 0, 0x67),
];

/// Unpacks a GDT entry into the segment register KVM loads for selector `index * 8`.
pub fn segment_from_gdt(entry: u64, index: u8) -> kvm_segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0x000f_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base,
        limit,
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        padding: 0,
        unusable: u8::from(present == 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_gdt_matches_the_sdm_encoding() {
        // The well-known encodings of a flat 4 GiB 32-bit code and data segment.
        assert_eq!(BOOT_GDT[0], 0);
        assert_eq!(BOOT_GDT[1], 0x00cf_9b00_0000_ffff);
        assert_eq!(BOOT_GDT[2], 0x00cf_9300_0000_ffff);
        assert_eq!(BOOT_GDT[3], 0x0000_8b00_0000_0067);
    }

    #[test]
    fn segments_unpack_from_entries() {
        let cs = segment_from_gdt(BOOT_GDT[1], 1);
        assert_eq!((cs.base, cs.limit, cs.selector), (0, 0xffff_ffff, 0x08));
        assert_eq!(
            (cs.type_, cs.present, cs.dpl, cs.db, cs.s, cs.l, cs.g),
            (0xb, 1, 0, 1, 1, 0, 1)
        );
        let ds = segment_from_gdt(BOOT_GDT[2], 2);
        assert_eq!((ds.type_, ds.selector, ds.db), (0x3, 0x10, 1));
        let tr = segment_from_gdt(BOOT_GDT[3], 3);
        assert_eq!((tr.type_, tr.limit, tr.s, tr.g), (0xb, 0x67, 0, 0));
        let null = segment_from_gdt(0, 0);
        assert_eq!((null.present, null.unusable), (0, 1));
        let odd = segment_from_gdt(gdt_entry(0x4093, 0x1234_5678, 0xabcde), 5);
        assert_eq!((odd.base, odd.limit, odd.g), (0x1234_5678, 0xabcde, 0));
    }
}
