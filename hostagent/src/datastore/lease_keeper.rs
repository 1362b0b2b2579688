//! The lease keeper: a small process per powered-on VM that renews the VM's lease for as long
//! as the VM process lives, so a VM whose host agent died keeps its lease (and no other host
//! may start it), while a VM whose host died loses it after lease + margin. If the lease is
//! taken by another host, or cannot be renewed for a whole lease time, the keeper kills the
//! VM: it must not keep writing to disks another host may now own.

use std::io::Write;
use std::path::PathBuf;

use uuid::Uuid;

use super::lease::{LeaseError, LeaseHolder, LeaseTiming};
use crate::engine::process;

/// What a keeper needs.
#[derive(Debug, Clone)]
pub struct KeeperArgs {
    /// The lease file.
    pub lease: PathBuf,
    /// This host's id.
    pub host: Uuid,
    /// This host's name.
    pub host_name: String,
    /// The VM process to keep the lease for.
    pub pid: u32,
    /// The lease instance the agent took for this VM process.
    pub instance: Uuid,
    /// The VM's vmm.log, where a fencing is recorded.
    pub log: PathBuf,
    /// Timing.
    pub timing: LeaseTiming,
}

/// How the keeper ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeeperExit {
    /// The VM process ended; the lease was released.
    VmEnded,
    /// The VM was killed because its lease was lost.
    Fenced(String),
}

/// Runs until the VM ends or has to be fenced (blocking).
pub fn run(args: &KeeperArgs) -> KeeperExit {
    let holder = LeaseHolder {
        host: args.host,
        name: args.host_name.clone(),
        timing: args.timing,
    };
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        if !process::alive(args.pid) {
            let _ = holder.release(&args.lease, Some(args.instance));
            return KeeperExit::VmEnded;
        }
        let fence = match holder.renew(&args.lease, args.instance) {
            Ok(_) => {
                failing_since = None;
                None
            }
            Err(LeaseError::Lost { owner_name }) => {
                Some(format!("host {owner_name} holds the VM's lease now"))
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                (since.elapsed() >= args.timing.lease).then(|| {
                    format!(
                        "its lease could not be renewed for {} s ({e})",
                        args.timing.lease.as_secs()
                    )
                })
            }
        };
        if let Some(reason) = fence {
            process::kill_hard(args.pid);
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&args.log)
            {
                let _ = writeln!(f, "strata-lease-keeper: crashed: fenced: {reason}");
            }
            return KeeperExit::Fenced(reason);
        }
        std::thread::sleep(args.timing.renew);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn args(dir: &std::path::Path, pid: u32) -> KeeperArgs {
        KeeperArgs {
            lease: dir.join(super::super::lease::LEASE_FILE),
            host: Uuid::new_v4(),
            host_name: "h".into(),
            pid,
            instance: Uuid::nil(),
            log: dir.join("vmm.log"),
            timing: LeaseTiming {
                renew: Duration::from_millis(50),
                lease: Duration::from_millis(300),
                margin: Duration::from_millis(100),
            },
        }
    }

    #[test]
    fn keeps_renewing_while_the_vm_lives_and_releases_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("1")
            .spawn()
            .unwrap();
        let a = args(dir.path(), child.id());
        let holder = LeaseHolder {
            host: a.host,
            name: a.host_name.clone(),
            timing: a.timing,
        };
        let a = KeeperArgs {
            instance: holder.acquire(&a.lease).unwrap().instance,
            ..a
        };
        let reaper = std::thread::spawn(move || child.wait());
        assert_eq!(run(&a), KeeperExit::VmEnded);
        let _ = reaper.join();
        assert!(
            super::super::lease::read(&a.lease).unwrap().is_none(),
            "released"
        );
    }

    #[test]
    fn fences_the_vm_when_another_host_took_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let a = args(dir.path(), child.id());
        let other = LeaseHolder {
            host: Uuid::new_v4(),
            name: "thief".into(),
            timing: a.timing,
        };
        other.acquire(&a.lease).unwrap();
        let reaper = std::thread::spawn(move || child.wait());
        let exit = run(&a);
        assert!(
            matches!(exit, KeeperExit::Fenced(ref r) if r.contains("thief")),
            "{exit:?}"
        );
        assert!(reaper.join().unwrap().is_ok(), "the VM process was killed");
        let log = std::fs::read_to_string(&a.log).unwrap();
        assert!(log.contains("fenced"), "{log}");
    }
}
