//! The Intel MultiProcessor Specification 1.4 table: describes the vCPUs (one processor
//! entry each, vCPU 0 the bootstrap processor), the IOAPIC and the ISA interrupt routing, so
//! a guest can find and start its application processors. It lives in the EBDA, which the
//! memory map leaves out of RAM.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::vmm::layout;

/// MP floating pointer signature.
pub const FLOATING_SIGNATURE: &[u8; 4] = b"_MP_";
/// MP configuration table signature.
pub const CONFIG_SIGNATURE: &[u8; 4] = b"PCMP";
/// Specification revision 1.4.
pub const SPEC_REV: u8 = 4;
/// Local APIC base address.
pub const APIC_DEFAULT_BASE: u32 = 0xfee0_0000;
/// IOAPIC base address.
pub const IOAPIC_DEFAULT_BASE: u32 = 0xfec0_0000;
/// LAPIC version reported (integrated APIC).
const APIC_VERSION: u8 = 0x14;
/// IOAPIC version reported.
const IOAPIC_VERSION: u8 = 0x11;
/// Where the table goes: the start of the EBDA.
pub const MPTABLE_START: u64 = layout::EBDA_START;
/// Room the EBDA leaves for it (up to 0xa0000).
pub const MPTABLE_MAX: usize = (0xa_0000 - layout::EBDA_START) as usize;
/// Legacy IRQs routed through the IOAPIC.
const ISA_IRQS: u8 = 16;

/// Why the table could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum MpTableError {
    /// Too many vCPUs for the space (or for 8-bit APIC ids).
    #[error("an MP table for {0} vCPUs does not fit")]
    TooManyCpus(u32),
    /// Guest memory rejected the write.
    #[error("writing the MP table failed: {0}")]
    Write(#[from] vm_memory::GuestMemoryError),
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// Builds the floating pointer followed by the configuration table, for `cpus` vCPUs, as it
/// sits at guest address `base`.
pub fn build(cpus: u32, base: u64) -> Result<Vec<u8>, MpTableError> {
    if cpus == 0 || cpus > 254 {
        return Err(MpTableError::TooManyCpus(cpus));
    }
    let ioapic_id = cpus as u8 + 1;
    // Entries first (the header needs their count and length).
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for id in 0..cpus as u8 {
        entries.push(0); // processor
        entries.push(id); // local APIC id
        entries.push(APIC_VERSION);
        entries.push(if id == 0 { 0x3 } else { 0x1 }); // enabled, bootstrap processor
        entries.extend_from_slice(&0x600u32.to_le_bytes()); // CPU signature (family 6)
        entries.extend_from_slice(&0x201u32.to_le_bytes()); // features: FPU, APIC
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0]); // bus 0
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]); // IOAPIC, enabled
    entries.extend_from_slice(&IOAPIC_DEFAULT_BASE.to_le_bytes());
    count += 1;
    for irq in 0..ISA_IRQS {
        // I/O interrupt: INT, conforming polarity/trigger, ISA bus 0 IRQ n -> IOAPIC pin n.
        entries.extend_from_slice(&[3, 0, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // Local interrupts: ExtINT on LINT0 and NMI on LINT1 of every local APIC.
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let header_len = 44;
    let table_len = header_len + entries.len();
    let mut table = Vec::with_capacity(table_len);
    table.extend_from_slice(CONFIG_SIGNATURE);
    table.extend_from_slice(&(table_len as u16).to_le_bytes());
    table.push(SPEC_REV);
    table.push(0); // checksum, below
    table.extend_from_slice(b"STRATA  ");
    table.extend_from_slice(b"STRATA-VMX  ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&APIC_DEFAULT_BASE.to_le_bytes());
    table.extend_from_slice(&0u16.to_le_bytes()); // extended table length
    table.push(0); // extended table checksum
    table.push(0);
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut out = Vec::with_capacity(16 + table_len);
    let config_addr = u32::try_from(base + 16).map_err(|_| MpTableError::TooManyCpus(cpus))?;
    out.extend_from_slice(FLOATING_SIGNATURE);
    out.extend_from_slice(&config_addr.to_le_bytes());
    out.push(1); // length in 16-byte units
    out.push(SPEC_REV);
    out.push(0); // checksum, below
    out.extend_from_slice(&[0; 5]); // features: a configuration table is present
    out[10] = checksum(&out[..16]);
    out.extend_from_slice(&table);
    if out.len() > MPTABLE_MAX {
        return Err(MpTableError::TooManyCpus(cpus));
    }
    Ok(out)
}

/// Writes the MP table for `cpus` vCPUs at [`MPTABLE_START`].
pub fn write(mem: &GuestMemoryMmap, cpus: u32) -> Result<(), MpTableError> {
    let bytes = build(cpus, MPTABLE_START)?;
    mem.write_slice(&bytes, GuestAddress(MPTABLE_START))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn floating_pointer_and_table_follow_the_spec() {
        let t = build(4, MPTABLE_START).unwrap();
        // Floating pointer: 16 bytes, checksum 0, points right after itself.
        assert_eq!(&t[..4], FLOATING_SIGNATURE);
        assert_eq!(sum(&t[..16]), 0);
        assert_eq!(t[8], 1);
        assert_eq!(t[9], SPEC_REV);
        let ptr = u32::from_le_bytes([t[4], t[5], t[6], t[7]]) as u64;
        assert_eq!(ptr, MPTABLE_START + 16);
        assert_eq!(ptr % 16, 0, "16-byte aligned");
        // Configuration table: length and checksum cover header + entries.
        let c = &t[16..];
        assert_eq!(&c[..4], CONFIG_SIGNATURE);
        let len = u16::from_le_bytes([c[4], c[5]]) as usize;
        assert_eq!(len, c.len());
        assert_eq!(sum(&c[..len]), 0);
        let count = u16::from_le_bytes([c[34], c[35]]) as usize;
        assert_eq!(
            u32::from_le_bytes([c[36], c[37], c[38], c[39]]),
            APIC_DEFAULT_BASE
        );
        // Walk the entries: sizes by type, processors with the BSP first.
        let mut at = 44;
        let mut cpus = Vec::new();
        for _ in 0..count {
            let size = match c[at] {
                0 => 20,
                1..=4 => 8,
                other => panic!("unknown entry type {other}"),
            };
            if c[at] == 0 {
                cpus.push((c[at + 1], c[at + 3]));
            }
            at += size;
        }
        assert_eq!(at, len, "entries fill the table exactly");
        assert_eq!(cpus, vec![(0, 3), (1, 1), (2, 1), (3, 1)]);
        assert!(t.len() <= MPTABLE_MAX);
    }

    #[test]
    fn refuses_what_cannot_be_described() {
        assert!(build(0, MPTABLE_START).is_err());
        assert!(build(255, MPTABLE_START).is_err());
        assert!(build(32, MPTABLE_START).is_ok());
    }
}
