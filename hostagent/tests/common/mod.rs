//! What the strata-vmx process tests share: the binary, the KVM check, a VM process that is
//! killed when dropped, waiting for serial output, and control-socket requests.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use strata_hostagent::vmm::control::ControlResponse;

/// The strata-vmx binary under test.
pub const VMX: &str = env!("CARGO_BIN_EXE_strata-vmx");

/// Fails clearly when /dev/kvm is missing or not usable (tests are never silently skipped).
pub fn require_kvm() {
    assert!(
        strata_hostagent::vmm::vstate::kvm::usable(),
        "/dev/kvm is missing or not usable read-write: strata-vmx needs KVM"
    );
}

/// A strata-vmx process, killed and reaped when dropped.
pub struct Vm(pub Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the file at `path` contains `needle`; returns its text.
pub fn wait_for(path: &Path, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not seen in {limit:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends one JSON request to the control socket (waiting up to 10 s for it to appear) and
/// reads the answer.
pub fn request_json(ctl: &Path, req: serde_json::Value) -> ControlResponse {
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        match UnixStream::connect(ctl) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "control socket: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let mut w = s.try_clone().unwrap();
    writeln!(w, "{req}").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

/// Sends `{"cmd": CMD}` to the control socket and reads the answer.
pub fn request(ctl: &Path, cmd: &str) -> ControlResponse {
    request_json(ctl, serde_json::json!({ "cmd": cmd }))
}
