//! On-disk leases in the spirit of VMFS locks: one file per powered-on VM, holding the owner
//! host and a heartbeat counter the owner renews. Creation is atomic (O_EXCL); a lease held by
//! another host is broken only after its heartbeat has been seen standing still for the whole
//! lease time plus a safety margin, judged by the breaker's own observation (never by
//! comparing clocks of different hosts). A host that cannot renew stops its VM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// File name of a VM's lease inside its directory.
pub const LEASE_FILE: &str = ".strata-lease";

/// Timing of leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How often the owner renews.
    pub renew: Duration,
    /// How long a lease lives without renewal.
    pub lease: Duration,
    /// Extra time a breaker waits beyond `lease`.
    pub margin: Duration,
}

impl LeaseTiming {
    /// Renewal at a fifth of the lease time, a margin of half of it.
    pub fn for_lease(lease: Duration) -> Self {
        Self {
            renew: lease / 5,
            lease,
            margin: lease / 2,
        }
    }
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            renew: Duration::from_secs(2),
            lease: Duration::from_secs(10),
            margin: Duration::from_secs(5),
        }
    }
}

/// What a lease file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRecord {
    /// Owner host id.
    pub owner: Uuid,
    /// Owner host name (for messages).
    pub owner_name: String,
    /// Heartbeat: increases on every renewal.
    pub counter: u64,
    /// This acquisition (a host may hold a VM's lease again later: only the instance that
    /// took it renews or releases it).
    pub instance: Uuid,
    /// Lease time the owner promises to renew within, ms.
    pub lease_ms: u64,
    /// Owner's clock at the last renewal, Unix ms (informational only).
    pub renewed_ms: i64,
}

/// Why a lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another host holds it and renews it.
    #[error("the VM is in use by host {owner_name} ({owner}); its lease is being renewed")]
    Held {
        /// Owner id.
        owner: Uuid,
        /// Owner name.
        owner_name: String,
    },
    /// Another host won a race for an expired lease.
    #[error("host {owner_name} took the VM's lease first")]
    Lost {
        /// Winner name.
        owner_name: String,
    },
    /// The lease file could not be read or written (storage trouble).
    #[error("lease {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LeaseError + '_ {
    move |source| LeaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One host's view of the leases it takes.
#[derive(Debug, Clone)]
pub struct LeaseHolder {
    /// This host's id.
    pub host: Uuid,
    /// This host's name.
    pub name: String,
    /// Timing.
    pub timing: LeaseTiming,
}

/// Reads a lease file; `Ok(None)` when there is none. A torn or foreign file reads as `Err`.
pub fn read(path: &Path) -> Result<Option<LeaseRecord>, LeaseError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LeaseError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other(e),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

impl LeaseHolder {
    fn record(&self, counter: u64, instance: Uuid) -> LeaseRecord {
        LeaseRecord {
            owner: self.host,
            owner_name: self.name.clone(),
            counter,
            instance,
            lease_ms: self.timing.lease.as_millis() as u64,
            renewed_ms: strata_shared::now_ms(),
        }
    }

    fn bytes(rec: &LeaseRecord) -> Vec<u8> {
        serde_json::to_vec(rec).unwrap_or_default()
    }

    /// Replaces the lease file atomically (temp file + rename).
    fn replace(
        &self,
        path: &Path,
        counter: u64,
        instance: Uuid,
    ) -> Result<LeaseRecord, LeaseError> {
        use std::io::Write;
        let rec = self.record(counter, instance);
        let tmp = path.with_file_name(format!("{LEASE_FILE}.{}.tmp", self.host.simple()));
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&Self::bytes(&rec))
            .and_then(|_| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        Ok(rec)
    }

    /// Takes the lease at `path` without waiting: free → ours; ours → renewed; held by a host
    /// whose lease still looks live → `Held`; apparently stale → [`LeaseHolder::take_over`].
    pub fn acquire(&self, path: &Path) -> Result<LeaseRecord, LeaseError> {
        if let Some(created) = self.create_exclusive(path)? {
            return Ok(created);
        }
        match self.read_settled(path)? {
            None => self.acquire_fresh(path),
            // Ours from an earlier start whose VM is gone (the agent checked): a new instance.
            Some(r) if r.owner == self.host => self.replace(path, r.counter + 1, Uuid::new_v4()),
            Some(r) if self.looks_live(&r) => Err(LeaseError::Held {
                owner: r.owner,
                owner_name: r.owner_name,
            }),
            Some(_) => self.take_over(path),
        }
    }

    /// Takes another host's lease once its heartbeat has stood still for its lease time plus
    /// our margin, as we observe it (clocks of different hosts are never compared). One
    /// breaker at a time: a `.break` file created with O_EXCL decides who may break it.
    /// Blocks (sleeps) while watching.
    pub fn take_over(&self, path: &Path) -> Result<LeaseRecord, LeaseError> {
        let Some(first) = self.read_settled(path)? else {
            return self.acquire_fresh(path);
        };
        if first.owner == self.host {
            return self.replace(path, first.counter + 1, Uuid::new_v4());
        }
        let watch =
            Duration::from_millis(first.lease_ms).max(self.timing.lease) + self.timing.margin;
        let start = Instant::now();
        while start.elapsed() < watch {
            std::thread::sleep(self.timing.renew.min(Duration::from_millis(500)));
            match self.read_settled(path)? {
                None => return self.acquire_fresh(path),
                Some(now) if now.owner != first.owner || now.counter != first.counter => {
                    return Err(LeaseError::Held {
                        owner: now.owner,
                        owner_name: now.owner_name,
                    });
                }
                Some(_) => {}
            }
        }
        let brk = path.with_file_name(format!("{LEASE_FILE}.break"));
        if let Ok(meta) = std::fs::metadata(&brk) {
            let old = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > watch * 3);
            if old {
                let _ = std::fs::remove_file(&brk);
            }
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&brk)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(LeaseError::Lost {
                    owner_name: "another host taking the VM over".into(),
                })
            }
            Err(e) => return Err(io(&brk)(e)),
        }
        let outcome = match self.read_settled(path) {
            Ok(Some(now)) if now == first => self.replace(path, first.counter + 1, Uuid::new_v4()),
            Ok(Some(now)) => Err(LeaseError::Held {
                owner: now.owner,
                owner_name: now.owner_name,
            }),
            Ok(None) => self.acquire_fresh(path),
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&brk);
        outcome
    }

    fn looks_live(&self, r: &LeaseRecord) -> bool {
        let window = r
            .lease_ms
            .saturating_add(self.timing.margin.as_millis() as u64) as i64;
        strata_shared::now_ms().saturating_sub(r.renewed_ms) < window
    }

    /// Tells at once whether another host holds a live-looking lease (no waiting): for
    /// refusing a power-on quickly. `None` when free, ours, or apparently stale.
    pub fn quick_holder(&self, path: &Path) -> Result<Option<LeaseRecord>, LeaseError> {
        Ok(self.read_settled(path)?.filter(|r| {
            r.owner != self.host
                && strata_shared::now_ms().saturating_sub(r.renewed_ms)
                    < (r.lease_ms + self.timing.margin.as_millis() as u64) as i64
        }))
    }

    /// Creates the lease file if there is none: `Some` when we made it.
    fn create_exclusive(&self, path: &Path) -> Result<Option<LeaseRecord>, LeaseError> {
        use std::io::Write;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(mut f) => {
                let rec = self.record(1, Uuid::new_v4());
                f.write_all(&Self::bytes(&rec))
                    .and_then(|_| f.sync_all())
                    .map_err(io(path))?;
                Ok(Some(rec))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(io(path)(e)),
        }
    }

    fn acquire_fresh(&self, path: &Path) -> Result<LeaseRecord, LeaseError> {
        if let Some(created) = self.create_exclusive(path)? {
            return Ok(created);
        }
        match read(path)? {
            Some(r) => Err(LeaseError::Held {
                owner: r.owner,
                owner_name: r.owner_name,
            }),
            None => Err(LeaseError::Lost {
                owner_name: "another host".into(),
            }),
        }
    }

    /// Reads, retrying briefly over a file caught mid-write by its creator.
    fn read_settled(&self, path: &Path) -> Result<Option<LeaseRecord>, LeaseError> {
        let mut last = None;
        for _ in 0..10 {
            match read(path) {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(last.unwrap_or_else(|| LeaseError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("unreadable"),
        }))
    }

    /// Renews the lease instance we hold. `Lost` when it is not ours any more (the VM must stop).
    pub fn renew(&self, path: &Path, instance: Uuid) -> Result<LeaseRecord, LeaseError> {
        match self.read_settled(path)? {
            Some(r) if r.owner == self.host && r.instance == instance => {
                self.replace(path, r.counter + 1, instance)
            }
            Some(r) => Err(LeaseError::Lost {
                owner_name: r.owner_name,
            }),
            None => Err(LeaseError::Lost {
                owner_name: "nobody (the lease file is gone)".into(),
            }),
        }
    }

    /// Gives a lease back: only ours, and with `instance`, only that acquisition.
    pub fn release(&self, path: &Path, instance: Option<Uuid>) -> Result<(), LeaseError> {
        match read(path)? {
            Some(r) if r.owner == self.host && instance.is_none_or(|i| i == r.instance) => {
                std::fs::remove_file(path).map_err(io(path))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(name: &str, ms: u64) -> LeaseHolder {
        LeaseHolder {
            host: Uuid::new_v4(),
            name: name.into(),
            timing: LeaseTiming {
                renew: Duration::from_millis(ms / 5),
                lease: Duration::from_millis(ms),
                margin: Duration::from_millis(ms / 2),
            },
        }
    }

    #[test]
    fn free_lease_is_taken_renewed_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEASE_FILE);
        let a = holder("a", 200);
        let first = a.acquire(&p).unwrap();
        assert_eq!(first.counter, 1);
        assert_eq!(a.renew(&p, first.instance).unwrap().counter, 2);
        a.release(&p, Some(first.instance)).unwrap();
        assert!(read(&p).unwrap().is_none());
    }

    #[test]
    fn only_the_instance_that_took_a_lease_renews_or_releases_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEASE_FILE);
        let a = holder("a", 200);
        let old = a.acquire(&p).unwrap();
        // The same host takes it again (its earlier VM process is gone): a new instance.
        let new = a.acquire(&p).unwrap();
        assert_ne!(old.instance, new.instance);
        assert!(matches!(
            a.renew(&p, old.instance),
            Err(LeaseError::Lost { .. })
        ));
        a.release(&p, Some(old.instance)).unwrap();
        assert_eq!(
            read(&p).unwrap().unwrap().instance,
            new.instance,
            "a stale keeper cannot release it"
        );
        assert_eq!(a.renew(&p, new.instance).unwrap().counter, new.counter + 1);
    }

    #[test]
    fn a_renewed_lease_is_never_broken() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEASE_FILE);
        let (a, b) = (holder("a", 300), holder("b", 300));
        let lease = a.acquire(&p).unwrap();
        assert!(b.quick_holder(&p).unwrap().is_some());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let renewer = {
            let (a, p, stop) = (a.clone(), p.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    a.renew(&p, lease.instance).unwrap();
                    std::thread::sleep(Duration::from_millis(60));
                }
            })
        };
        let e = b.acquire(&p).unwrap_err();
        assert!(
            matches!(e, LeaseError::Held { ref owner_name, .. } if owner_name == "a"),
            "{e}"
        );
        let e = b.take_over(&p).unwrap_err();
        assert!(
            matches!(e, LeaseError::Held { .. }),
            "a heartbeat that moves is never broken: {e}"
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        renewer.join().unwrap();
    }

    #[test]
    fn a_dead_owners_lease_is_taken_only_after_lease_plus_margin() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEASE_FILE);
        let (a, b) = (holder("a", 300), holder("b", 300));
        let lease = a.acquire(&p).unwrap();
        assert!(
            matches!(b.acquire(&p), Err(LeaseError::Held { .. })),
            "not before it expires"
        );
        let t = Instant::now();
        let got = b.take_over(&p).unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(450),
            "took over after {:?}",
            t.elapsed()
        );
        assert_eq!(got.owner, b.host);
        let e = a.renew(&p, lease.instance).unwrap_err();
        assert!(
            matches!(e, LeaseError::Lost { .. }),
            "the old owner learns it lost the VM"
        );
    }

    #[test]
    fn racing_hosts_exactly_one_wins() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join(LEASE_FILE);
            let hosts: Vec<LeaseHolder> =
                (0..4).map(|i| holder(&format!("h{i}"), 10_000)).collect();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(hosts.len()));
            let handles: Vec<_> = hosts
                .into_iter()
                .map(|h| {
                    let (p, barrier) = (p.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        h.acquire(&p).is_ok()
                    })
                })
                .collect();
            let wins = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|w| *w)
                .count();
            assert_eq!(wins, 1);
        }
    }

    #[test]
    fn racing_breakers_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEASE_FILE);
        holder("dead", 200).acquire(&p).unwrap();
        let breakers: Vec<LeaseHolder> = (0..3).map(|i| holder(&format!("b{i}"), 200)).collect();
        let handles: Vec<_> = breakers
            .into_iter()
            .map(|h| {
                let p = p.clone();
                std::thread::spawn(move || h.take_over(&p).is_ok())
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|w| *w)
            .count();
        assert_eq!(wins, 1);
    }
}
