//! Ethernet MAC addresses: parsing, printing and the locally administered addresses Strata
//! gives VM NICs.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// A locally administered unicast address derived from `seed` (stable for a VM id):
    /// 52:54:00 (the prefix QEMU and libvirt use) and three bytes of `seed`.
    pub fn derived(seed: &[u8]) -> Self {
        // FNV-1a: deterministic across builds and hosts, unlike std's hasher.
        let mut h: u32 = 0x811c_9dc5;
        for b in seed {
            h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
        }
        let [a, b, c, _] = h.to_be_bytes();
        MacAddr([0x52, 0x54, 0x00, a, b, c])
    }

    /// True for group (multicast or broadcast) addresses.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = String;

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`); refuses multicast addresses, which a NIC
    /// cannot have.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a MAC address like 52:54:00:12:34:56");
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(&parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        let mac = MacAddr(out);
        if mac.is_multicast() {
            return Err(format!("{s} is a multicast address, not a NIC's"));
        }
        Ok(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_derives() {
        let m: MacAddr = "52:54:00:AB:cd:0e".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:0e");
        assert_eq!("52-54-00-ab-cd-0e".parse::<MacAddr>().unwrap(), m);
        assert!("01:00:5e:00:00:01".parse::<MacAddr>().is_err());
        assert!("52:54:00:ab:cd".parse::<MacAddr>().is_err());
        assert!("52:54:00:ab:cd:0g".parse::<MacAddr>().is_err());
        assert!("52:54:00:ab:cd:012".parse::<MacAddr>().is_err());
        let a = MacAddr::derived(b"vm-1");
        assert_eq!(a, MacAddr::derived(b"vm-1"));
        assert_ne!(a, MacAddr::derived(b"vm-2"));
        assert!(!a.is_multicast());
        assert_eq!(a.0[..3], [0x52, 0x54, 0x00]);
    }
}
