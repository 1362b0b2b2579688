//! Guest RAM: anonymous mappings laid around the 32-bit MMIO hole.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::vmm::layout::{MMIO_GAP_END, MMIO_GAP_START};

/// Why guest memory could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The mapping failed.
    #[error("cannot map {mib} MiB of guest memory: {source}")]
    Map {
        /// Size asked for.
        mib: u64,
        /// Cause.
        source: vm_memory::mmap::FromRangesError,
    },
    /// The size does not fit this host's address space.
    #[error("{0} bytes of guest memory do not fit the address space")]
    TooLarge(u64),
}

/// The guest RAM ranges (start, length) for `size` bytes: from 0 up to the MMIO hole, the
/// rest from 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(u64, u64)> {
    if size <= MMIO_GAP_START {
        vec![(0, size)]
    } else {
        vec![(0, MMIO_GAP_START), (MMIO_GAP_END, size - MMIO_GAP_START)]
    }
}

/// Maps `size` bytes of guest RAM.
pub fn create_guest_memory(size: u64) -> Result<GuestMemoryMmap, MemoryError> {
    let ranges = ram_ranges(size)
        .into_iter()
        .map(|(start, len)| {
            usize::try_from(len)
                .map(|l| (GuestAddress(start), l))
                .map_err(|_| MemoryError::TooLarge(size))
        })
        .collect::<Result<Vec<_>, _>>()?;
    GuestMemoryMmap::from_ranges(&ranges).map_err(|source| MemoryError::Map {
        mib: size >> 20,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

    #[test]
    fn ram_goes_around_the_mmio_hole() {
        assert_eq!(ram_ranges(256 << 20), vec![(0, 256 << 20)]);
        assert_eq!(ram_ranges(MMIO_GAP_START), vec![(0, MMIO_GAP_START)]);
        assert_eq!(
            ram_ranges(4 << 30),
            vec![(0, MMIO_GAP_START), (1 << 32, (4 << 30) - MMIO_GAP_START)]
        );
    }

    #[test]
    fn maps_the_ranges() {
        let m = create_guest_memory(8 << 20).unwrap();
        let regions: Vec<(u64, u64)> = m.iter().map(|r| (r.start_addr().0, r.len())).collect();
        assert_eq!(regions, vec![(0, 8 << 20)]);
    }
}
