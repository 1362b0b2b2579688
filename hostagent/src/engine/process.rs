//! Watching VM processes that are not our children (they are detached so they outlive the
//! agent): liveness by pid, identity by command line, and hard kills.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// True when a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if kill(Pid::from_raw(raw), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .map(|rest| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// True when process `pid` is alive and its command line mentions `needle` (guards against
/// a recycled pid belonging to something else).
pub fn alive_with_arg(pid: u32, needle: &str) -> bool {
    if !alive(pid) {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) => raw
            .split(|b| *b == 0)
            .any(|arg| String::from_utf8_lossy(arg).contains(needle)),
        Err(_) => false,
    }
}

/// Reads a pid file.
pub fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Sends SIGKILL.
pub fn kill_hard(pid: u32) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
    }
}

/// Waits until `pid` is gone; false on timeout.
pub async fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while alive(pid) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sees_a_process_live_and_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(alive(pid));
        // Right after spawn the child may still be inside execve: its command line reads
        // empty for a moment, so wait for it.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !alive_with_arg(pid, "30") && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(alive_with_arg(pid, "30"));
        assert!(!alive_with_arg(pid, "not-in-cmdline"));
        kill_hard(pid);
        let _ = child.wait();
        assert!(wait_gone(pid, Duration::from_secs(5)).await);
        assert!(!alive(pid));
    }
}
