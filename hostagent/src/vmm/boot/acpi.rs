//! ACPI tables for the Linux boot path: RSDP → XSDT → FADT (→ DSDT) and MADT, placed in the
//! BIOS area at [`ACPI_START`] (guest RAM the E820 map leaves out, where Linux also looks for
//! an RSDP; the zero page's `acpi_rsdp_addr` points at it as well). Kernels that ignore MP
//! tables (Debian's cloud kernel) find their vCPUs and IOAPIC in the MADT.
//!
//! The machine is "hardware-reduced" ACPI (no SCI, PM timer or fixed-function registers);
//! the DSDT holds no AML: the virtio-mmio devices are named on the kernel command line
//! (`virtio_mmio.device=`), which works with or without ACPI. Written by hand (the rust-vmm
//! `acpi_tables` crate would add a dependency for five small static tables; its AML builder
//! is what to reach for when the DSDT describes devices).

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::mptable::{APIC_DEFAULT_BASE, IOAPIC_DEFAULT_BASE};

/// Where the tables start (the RSDP, 16-byte aligned, in 0xe0000..0xfffff).
pub const ACPI_START: u64 = 0x000e_0000;
/// Room for them: up to the end of the BIOS area.
pub const ACPI_MAX: usize = (0x10_0000 - ACPI_START) as usize;
/// Most vCPUs the tables describe (8-bit APIC ids, the IOAPIC takes the next one).
pub const MAX_CPUS: u32 = 254;

/// OEM id in every table.
const OEM_ID: &[u8; 6] = b"STRATA";
/// OEM table id in every table.
const OEM_TABLE_ID: &[u8; 8] = b"STRATAVM";
/// Creator id.
const CREATOR_ID: &[u8; 4] = b"STRA";
/// Length of a system description table header.
pub const HEADER_LEN: usize = 36;
/// FADT length for revision 6 (up to the hypervisor vendor identity).
pub const FADT_LEN: usize = 276;
/// FADT flags bit: hardware-reduced ACPI.
pub const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;
/// IA-PC boot architecture flag: an 8042 keyboard controller is present.
pub const IAPC_8042: u16 = 1 << 1;
/// IA-PC boot architecture flag: no VGA (the display is a linear framebuffer).
pub const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
/// MADT flag: the machine also has dual 8259 PICs.
pub const MADT_PCAT_COMPAT: u32 = 1;

/// Why the tables could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// Too many vCPUs for 8-bit APIC ids.
    #[error("ACPI tables for {0} vCPUs are not supported (1 to {MAX_CPUS})")]
    Cpus(u32),
    /// Guest memory rejected the write.
    #[error("writing the ACPI tables failed: {0}")]
    Write(#[from] vm_memory::GuestMemoryError),
}

/// The byte that makes `bytes` sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// A system description table: the 36-byte header (length and checksum filled by
/// [`Sdt::finish`]) then the body.
struct Sdt(Vec<u8>);

impl Sdt {
    fn new(signature: &[u8; 4], revision: u8) -> Self {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(signature);
        b.extend_from_slice(&0u32.to_le_bytes()); // length, below
        b.push(revision);
        b.push(0); // checksum, below
        b.extend_from_slice(OEM_ID);
        b.extend_from_slice(OEM_TABLE_ID);
        b.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
        b.extend_from_slice(CREATOR_ID);
        b.extend_from_slice(&1u32.to_le_bytes()); // creator revision
        Self(b)
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[4..8].copy_from_slice(&len.to_le_bytes());
        self.0[9] = checksum(&self.0);
        self.0
    }
}

/// The DSDT: a header and no AML (see the module notes).
fn dsdt() -> Vec<u8> {
    Sdt::new(b"DSDT", 2).finish()
}

/// The FADT (revision 6.5): hardware-reduced, pointing at the DSDT.
fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut t = Sdt::new(b"FACP", 6);
    t.0.resize(FADT_LEN, 0);
    // 32-bit DSDT address (offset 40) and its 64-bit twin X_DSDT (offset 140).
    t.0[40..44].copy_from_slice(&(dsdt_addr as u32).to_le_bytes());
    t.0[140..148].copy_from_slice(&dsdt_addr.to_le_bytes());
    // IAPC_BOOT_ARCH (offset 109).
    t.0[109..111].copy_from_slice(&(IAPC_8042 | IAPC_VGA_NOT_PRESENT).to_le_bytes());
    // Flags (offset 112).
    t.0[112..116].copy_from_slice(&FADT_HW_REDUCED_ACPI.to_le_bytes());
    // FADT minor version (offset 131): 6.5.
    t.0[131] = 5;
    // Hypervisor vendor identity (offset 268).
    t.0[268..276].copy_from_slice(b"STRATAVM");
    t.finish()
}

/// The MADT: one enabled local APIC per vCPU (APIC id = ACPI processor uid = vCPU index),
/// the IOAPIC (id `cpus`+1, as in the MP table, GSIs from 0: ISA IRQ n is GSI n, so no
/// interrupt source override is needed) and NMI on LINT1 of every local APIC.
fn madt(cpus: u32) -> Vec<u8> {
    let mut t = Sdt::new(b"APIC", 6);
    t.0.extend_from_slice(&APIC_DEFAULT_BASE.to_le_bytes());
    t.0.extend_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
    for id in 0..cpus as u8 {
        // Processor Local APIC: type 0, length 8, uid, APIC id, flags (enabled).
        t.0.extend_from_slice(&[0, 8, id, id]);
        t.0.extend_from_slice(&1u32.to_le_bytes());
    }
    // I/O APIC: type 1, length 12, id, reserved, address, GSI base.
    t.0.extend_from_slice(&[1, 12, cpus as u8 + 1, 0]);
    t.0.extend_from_slice(&IOAPIC_DEFAULT_BASE.to_le_bytes());
    t.0.extend_from_slice(&0u32.to_le_bytes());
    // Local APIC NMI: type 4, length 6, every processor (0xff), flags, LINT1.
    t.0.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]);
    t.finish()
}

/// The XSDT listing `tables` (64-bit addresses).
fn xsdt(tables: &[u64]) -> Vec<u8> {
    let mut t = Sdt::new(b"XSDT", 1);
    for a in tables {
        t.0.extend_from_slice(&a.to_le_bytes());
    }
    t.finish()
}

/// The RSDP (revision 2, 36 bytes) pointing at the XSDT.
fn rsdp(xsdt_addr: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(36);
    r.extend_from_slice(b"RSD PTR ");
    r.push(0); // checksum of the first 20 bytes, below
    r.extend_from_slice(OEM_ID);
    r.push(2); // revision: ACPI 2.0+
    r.extend_from_slice(&0u32.to_le_bytes()); // no RSDT
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt_addr.to_le_bytes());
    r.push(0); // extended checksum, below
    r.extend_from_slice(&[0; 3]);
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

/// Pads `v` to a multiple of `align`.
fn align(v: &mut Vec<u8>, align: usize) {
    let n = v.len().next_multiple_of(align);
    v.resize(n, 0);
}

/// Builds all tables for `cpus` vCPUs as one block that sits at guest address `base`
/// (16-byte aligned): RSDP, XSDT, FADT, MADT, DSDT.
pub fn build(cpus: u32, base: u64) -> Result<Vec<u8>, AcpiError> {
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(AcpiError::Cpus(cpus));
    }
    let rsdp_len: usize = 36;
    let xsdt_len = HEADER_LEN + 2 * 8;
    let madt_len = madt(cpus).len();
    let at = |off: usize| base + off as u64;
    let xsdt_off = rsdp_len.next_multiple_of(16);
    let fadt_off = (xsdt_off + xsdt_len).next_multiple_of(16);
    let madt_off = (fadt_off + FADT_LEN).next_multiple_of(16);
    let dsdt_off = (madt_off + madt_len).next_multiple_of(16);

    let mut out = rsdp(at(xsdt_off));
    align(&mut out, 16);
    out.extend(xsdt(&[at(fadt_off), at(madt_off)]));
    align(&mut out, 16);
    out.extend(fadt(at(dsdt_off)));
    align(&mut out, 16);
    out.extend(madt(cpus));
    align(&mut out, 16);
    out.extend(dsdt());
    debug_assert_eq!(out.len(), dsdt_off + HEADER_LEN);
    if out.len() > ACPI_MAX {
        return Err(AcpiError::Cpus(cpus));
    }
    Ok(out)
}

/// Writes the tables for `cpus` vCPUs at [`ACPI_START`]; returns the RSDP's address.
pub fn write(mem: &GuestMemoryMmap, cpus: u32) -> Result<u64, AcpiError> {
    let bytes = build(cpus, ACPI_START)?;
    mem.write_slice(&bytes, GuestAddress(ACPI_START))?;
    Ok(ACPI_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    /// The table at guest address `addr` in a block built at `base`: checks its checksum
    /// and returns it (header included).
    fn table(block: &[u8], base: u64, addr: u64, signature: &[u8; 4]) -> Vec<u8> {
        let off = (addr - base) as usize;
        assert_eq!(&block[off..off + 4], signature);
        let len = u32_at(block, off + 4) as usize;
        let t = block[off..off + len].to_vec();
        assert_eq!(
            sum(&t),
            0,
            "{} checksum",
            String::from_utf8_lossy(signature)
        );
        t
    }

    /// Follows RSDP → XSDT → FADT → DSDT and RSDP → XSDT → MADT, parsing the bytes back.
    fn walk(block: &[u8], base: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let r = &block[..36];
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(sum(&r[..20]), 0, "RSDP checksum");
        assert_eq!(sum(r), 0, "RSDP extended checksum");
        assert_eq!(r[15], 2, "revision 2");
        assert_eq!(u32_at(r, 20), 36);
        let xsdt = table(block, base, u64_at(r, 24), b"XSDT");
        let entries: Vec<u64> = xsdt[HEADER_LEN..]
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(entries.len(), 2);
        let fadt = table(block, base, entries[0], b"FACP");
        let madt = table(block, base, entries[1], b"APIC");
        let dsdt_addr = u64_at(&fadt, 140);
        assert_eq!(u64::from(u32_at(&fadt, 40)), dsdt_addr);
        let dsdt = table(block, base, dsdt_addr, b"DSDT");
        (fadt, madt, dsdt)
    }

    /// MADT entries as (type, bytes).
    fn madt_entries(madt: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = HEADER_LEN + 8;
        while at < madt.len() {
            let (ty, len) = (madt[at], madt[at + 1] as usize);
            assert!(len >= 2 && at + len <= madt.len(), "entry fits");
            out.push((ty, madt[at..at + len].to_vec()));
            at += len;
        }
        out
    }

    #[test]
    fn rsdp_leads_to_xsdt_fadt_dsdt_and_madt_with_checksums() {
        let block = build(2, ACPI_START).unwrap();
        let (fadt, madt, dsdt) = walk(&block, ACPI_START);
        assert_eq!(fadt.len(), FADT_LEN);
        assert_eq!(fadt[8], 6, "FADT major version 6");
        assert_ne!(u32_at(&fadt, 112) & FADT_HW_REDUCED_ACPI, 0);
        assert_eq!(
            u16::from_le_bytes([fadt[109], fadt[110]]),
            IAPC_8042 | IAPC_VGA_NOT_PRESENT
        );
        assert_eq!(dsdt.len(), HEADER_LEN);
        assert_eq!(u32_at(&madt, HEADER_LEN), APIC_DEFAULT_BASE);
        assert_eq!(u32_at(&madt, HEADER_LEN + 4), MADT_PCAT_COMPAT);
        assert!(block.len() <= ACPI_MAX);
        // Every table is where Linux accepts it: the RSDP 16-byte aligned in the BIOS area.
        assert_eq!(ACPI_START % 16, 0);
        assert!((0xe_0000..0x10_0000).contains(&ACPI_START));
    }

    #[test]
    fn madt_lists_one_local_apic_per_vcpu_and_the_ioapic() {
        for cpus in [1u32, 2, 4, 64, MAX_CPUS] {
            let block = build(cpus, ACPI_START).unwrap();
            let (_, madt, _) = walk(&block, ACPI_START);
            let entries = madt_entries(&madt);
            let lapics: Vec<&Vec<u8>> = entries
                .iter()
                .filter(|(t, _)| *t == 0)
                .map(|(_, e)| e)
                .collect();
            assert_eq!(lapics.len() as u32, cpus, "{cpus} local APICs");
            for (i, e) in lapics.iter().enumerate() {
                assert_eq!((e[2], e[3]), (i as u8, i as u8), "uid and APIC id");
                assert_eq!(u32_at(e, 4) & 1, 1, "enabled");
            }
            let ioapics: Vec<&Vec<u8>> = entries
                .iter()
                .filter(|(t, _)| *t == 1)
                .map(|(_, e)| e)
                .collect();
            assert_eq!(ioapics.len(), 1);
            assert_eq!(ioapics[0][2] as u32, cpus + 1, "IOAPIC id after the CPUs");
            assert_eq!(u32_at(ioapics[0], 4), IOAPIC_DEFAULT_BASE);
            assert_eq!(u32_at(ioapics[0], 8), 0, "GSI base");
            assert!(
                entries.iter().any(|(t, e)| *t == 4 && e[5] == 1),
                "NMI on LINT1"
            );
        }
    }

    #[test]
    fn bad_cpu_counts_are_refused() {
        assert!(build(0, ACPI_START).is_err());
        assert!(build(MAX_CPUS + 1, ACPI_START).is_err());
    }

    #[test]
    fn tables_land_in_guest_memory() {
        let mem = crate::vmm::vstate::memory::create_guest_memory(16 << 20).unwrap();
        let rsdp = write(&mem, 3).unwrap();
        let mut block = vec![0u8; build(3, ACPI_START).unwrap().len()];
        mem.read_slice(&mut block, GuestAddress(rsdp)).unwrap();
        let (_, madt, _) = walk(&block, rsdp);
        assert_eq!(
            madt_entries(&madt).iter().filter(|(t, _)| *t == 0).count(),
            3
        );
    }
}
