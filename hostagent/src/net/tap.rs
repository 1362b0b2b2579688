//! A tap device opened through /dev/net/tun (`IFF_TAP | IFF_NO_PI`): each read is one
//! Ethernet frame the host sent to the VM, each write one frame from the VM. Opened
//! non-blocking and close-on-exec.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::FrameIo;

/// `TUNSETIFF` = `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// Why a tap could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name is not a valid interface name.
    #[error("{0}")]
    Name(String),
    /// /dev/net/tun could not be opened.
    #[error("cannot open /dev/net/tun: {0}")]
    Open(std::io::Error),
    /// The kernel refused to attach to the tap.
    #[error("cannot attach to tap {name}: {source}")]
    Attach {
        /// The interface.
        name: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (a union of 24 bytes).
#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An attached tap device.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Attaches to tap `name` (created, non-persistent, when it does not exist; the host
    /// agent or an administrator usually creates it beforehand).
    pub fn open(name: &str) -> Result<Self, TapError> {
        let mut req = IfReqFlags {
            name: super::ifr_name(name).map_err(TapError::Name)?,
            flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::Open)?;
        // SAFETY: TUNSETIFF reads (and may write back) a `struct ifreq`; `req` is a live,
        // properly sized and aligned `ifreq` prefix (name + flags + padding to 40 bytes)
        // that outlives the call, and the fd is the tun device just opened.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReqFlags) };
        if rc < 0 {
            return Err(TapError::Attach {
                name: name.to_string(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Self {
            file,
            name: name.to_string(),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl FrameIo for Tap {
    fn recv_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }

    fn send_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let n = self.file.write(frame)?;
        if n != frame.len() {
            return Err(std::io::Error::other("the tap took part of a frame"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_before_any_system_call() {
        assert!(matches!(Tap::open("a/b"), Err(TapError::Name(_))));
        assert!(matches!(Tap::open(""), Err(TapError::Name(_))));
    }
}
