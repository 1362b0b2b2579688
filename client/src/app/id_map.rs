//! Maps keyed by object ids with a fast hash: the inventory's ids are random UUIDs from the
//! connected (authenticated, certificate-pinned) server, so a multiply-rotate hash of their
//! bytes spreads them well, at a fraction of SipHash's cost. With 40,000 VMs the tree's
//! rebuild does a lookup per VM, so this shows in frame times.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use uuid::Uuid;

/// FxHash-style hasher for ids.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`IdHasher`]s (also fine for short names the server sent, such as tap names).
pub type IdBuildHasher = BuildHasherDefault<IdHasher>;

/// A map from ids to `V` with [`IdHasher`].
pub type IdMap<V> = HashMap<Uuid, V, IdBuildHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn ids_that_differ_in_any_byte_hash_apart() {
        let b = BuildHasherDefault::<IdHasher>::default();
        let hash = |u: Uuid| b.hash_one(u);
        let base = [7u8; 16];
        let mut seen = std::collections::HashSet::new();
        assert!(seen.insert(hash(Uuid::from_bytes(base))));
        for i in 0..16 {
            let mut x = base;
            x[i] ^= 1;
            assert!(seen.insert(hash(Uuid::from_bytes(x))), "byte {i}");
        }
        let mut m: IdMap<u32> = IdMap::default();
        let ids: Vec<Uuid> = (0..1000).map(|_| Uuid::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            m.insert(*id, i as u32);
        }
        assert!(ids.iter().enumerate().all(|(i, id)| m[id] == i as u32));
    }
}
