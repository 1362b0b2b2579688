//! Host network endpoints: tap devices (a VM NIC's host side) and raw packet sockets on an
//! interface (an uplink, or a test's view of a tap). Frames are whole Ethernet frames.

pub mod mac;
pub mod packet;
pub mod tap;

/// Longest interface name Linux accepts (IFNAMSIZ less the NUL).
pub const IFNAME_MAX: usize = 15;

/// Something that carries whole Ethernet frames, one per call, without blocking.
pub trait FrameIo: Send {
    /// Reads one frame into `buf`; `Err(WouldBlock)` when none is waiting. A frame longer
    /// than `buf` is truncated.
    fn recv_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Sends one frame.
    fn send_frame(&mut self, frame: &[u8]) -> std::io::Result<()>;
}

/// Checks an interface name: 1..=15 bytes, none of `/`, whitespace, `:` or control
/// characters, not `.` or `..`.
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(format!(
            "interface name {name:?} must be 1 to {IFNAME_MAX} bytes long"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not an interface name"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "interface name {name:?} must not contain '/', ':', spaces or control characters"
        ));
    }
    Ok(())
}

/// Copies an interface name into the NUL-padded `ifr_name` of a `struct ifreq`.
fn ifr_name(name: &str) -> Result<[u8; 16], String> {
    check_ifname(name)?;
    let mut out = [0u8; 16];
    out[..name.len()].copy_from_slice(name.as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        assert!(check_ifname("tap0").is_ok());
        assert!(check_ifname("vm-web01.0").is_ok());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("0123456789abcdef").is_err());
        assert!(check_ifname("a/b").is_err());
        assert!(check_ifname("a b").is_err());
        assert!(check_ifname("..").is_err());
        assert_eq!(&ifr_name("tap0").unwrap()[..5], b"tap0\0");
    }
}
