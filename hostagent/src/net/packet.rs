//! A raw `AF_PACKET` socket bound to one interface: it sees every frame that crosses the
//! interface (both ways) and sends whole Ethernet frames out of it. This is how a host
//! side speaks to a tap (tests) or an uplink NIC.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::FrameIo;

/// Why a packet socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// The interface name is invalid or no such interface exists.
    #[error("no interface {0}")]
    NoInterface(String),
    /// A socket call failed.
    #[error("{what}: {source}")]
    Socket {
        /// The step.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
}

fn last(what: &'static str) -> PacketError {
    PacketError::Socket {
        what,
        source: std::io::Error::last_os_error(),
    }
}

/// A raw packet socket on one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens a socket for all protocols (`ETH_P_ALL`) bound to interface `name`.
    pub fn bind(name: &str) -> Result<Self, PacketError> {
        super::check_ifname(name).map_err(|_| PacketError::NoInterface(name.to_string()))?;
        let c_name =
            std::ffi::CString::new(name).map_err(|_| PacketError::NoInterface(name.to_string()))?;
        // SAFETY: `c_name` is a valid NUL-terminated string for the call's duration.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index == 0 {
            return Err(PacketError::NoInterface(name.to_string()));
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::c_int::from(proto),
            )
        };
        if raw < 0 {
            return Err(last("socket(AF_PACKET)"));
        }
        // SAFETY: `raw` is a new socket fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = index as i32;
        // SAFETY: `addr` is a properly initialised sockaddr_ll and the length passed is its
        // size; the fd is the socket we own.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last("bind(AF_PACKET)"));
        }
        Ok(Self { fd })
    }

    /// Waits up to `limit` for a frame; `Ok(None)` when none came.
    pub fn recv_timeout(
        &mut self,
        buf: &mut [u8],
        limit: Duration,
    ) -> std::io::Result<Option<usize>> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(limit.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd, count 1.
        let rc = unsafe { libc::poll(&mut p, 1, ms) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if rc == 0 {
            return Ok(None);
        }
        self.recv_frame(buf).map(Some)
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl FrameIo for PacketSocket {
    fn recv_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((n as usize).min(buf.len()))
    }

    fn send_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        // SAFETY: `frame` is a valid readable buffer of `frame.len()` bytes; the socket is
        // bound, so no destination address is needed.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_interfaces_are_refused() {
        assert!(matches!(
            PacketSocket::bind("nosuchif-zz9"),
            Err(PacketError::NoInterface(_))
        ));
    }
}
