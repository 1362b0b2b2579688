//! The host's resource pools as a cgroup hierarchy: `strata/<host id>/pool-…/vm-…`, cgroup v2
//! where mounted, v1 `cpu` + `memory` controllers otherwise. Shares become cpu.shares /
//! cpu.weight, CPU limits a CFS quota, memory limits memory.max / memory.limit_in_bytes,
//! memory reservations memory.min (v2). A pool or VM with a CPU limit is also confined to as
//! many CPUs as its limit needs (cpuset): CFS shares divide time per CPU run queue, so without
//! that, two busy siblings under a limited parent would each get their own CPU and be
//! throttled alike, whatever their shares. A VM's process (all its threads) lives in its leaf.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use strata_shared::model::{HostResources, HostVmResources};
use tracing::{debug, warn};
use uuid::Uuid;

/// Errors writing the hierarchy.
#[derive(Debug, thiserror::Error)]
#[error("cgroup {path}: {source}")]
pub struct CgroupError {
    /// File or directory.
    pub path: PathBuf,
    /// Cause.
    pub source: std::io::Error,
}

/// Which cgroup file systems the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Unified hierarchy.
    V2(PathBuf),
    /// Separate cpu and memory hierarchies.
    V1 {
        /// cpu controller mount.
        cpu: PathBuf,
        /// memory controller mount (may be absent).
        memory: Option<PathBuf>,
        /// cpuset controller mount (may be absent).
        cpuset: Option<PathBuf>,
    },
    /// No usable cgroups: settings are kept but not enforced.
    Unavailable,
}

impl Layout {
    /// Detects the layout from /proc/self/mounts.
    pub fn detect() -> Layout {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        Self::from_mounts(&mounts)
    }

    /// Parses mount table text.
    pub fn from_mounts(mounts: &str) -> Layout {
        let mut cpu = None;
        let mut memory = None;
        let mut cpuset = None;
        for line in mounts.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                continue;
            }
            match f[2] {
                "cgroup2" if f[1] == "/sys/fs/cgroup" => return Layout::V2(PathBuf::from(f[1])),
                "cgroup" => {
                    let opts: Vec<&str> = f[3].split(',').collect();
                    if opts.contains(&"cpu") {
                        cpu = Some(PathBuf::from(f[1]));
                    }
                    if opts.contains(&"memory") {
                        memory = Some(PathBuf::from(f[1]));
                    }
                    if opts.contains(&"cpuset") {
                        cpuset = Some(PathBuf::from(f[1]));
                    }
                }
                _ => {}
            }
        }
        match cpu {
            Some(cpu) => Layout::V1 {
                cpu,
                memory,
                cpuset,
            },
            None => Layout::Unavailable,
        }
    }
}

/// CFS period used for limits, µs.
pub const CFS_PERIOD_US: u64 = 100_000;

/// What to write for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Shares (cpu.shares scale, 1024 ≈ one normal vCPU).
    pub cpu_shares: u64,
    /// CFS quota per period, µs; none = unlimited.
    pub cpu_quota_us: Option<u64>,
    /// Memory limit, bytes.
    pub memory_max: Option<u64>,
    /// Memory guarantee, bytes (v2 only).
    pub memory_min: u64,
    /// CPUs the node may run on (a cpuset list such as `0-1`); none = all of its parent's.
    pub cpus: Option<String>,
}

/// Turns MHz limits into CFS quota for a host with `mhz_per_cpu`.
pub fn quota_us(limit_mhz: Option<u64>, mhz_per_cpu: u64) -> Option<u64> {
    limit_mhz.map(|l| (l.saturating_mul(CFS_PERIOD_US) / mhz_per_cpu.max(1)).max(1000))
}

/// The hierarchy of one host agent.
#[derive(Debug, Clone)]
pub struct Cgroups {
    layout: Layout,
    base: PathBuf,
    mhz_per_cpu: u64,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError {
        path: path.to_path_buf(),
        source,
    })
}

impl Cgroups {
    /// Uses `layout` with everything under `strata/<host>`.
    pub fn new(layout: Layout, host: Uuid, mhz_per_cpu: u64) -> Self {
        Self {
            layout,
            base: PathBuf::from("strata").join(host.simple().to_string()),
            mhz_per_cpu,
        }
    }

    /// True when settings are enforced.
    pub fn available(&self) -> bool {
        self.layout != Layout::Unavailable
    }

    /// Relative path of each pool and VM leaf.
    fn paths(&self, res: &HostResources) -> (HashMap<Uuid, PathBuf>, HashMap<Uuid, PathBuf>) {
        let mut pools: HashMap<Uuid, PathBuf> = HashMap::new();
        for p in &res.pools {
            let parent = p
                .parent
                .and_then(|x| pools.get(&x).cloned())
                .unwrap_or_else(|| self.base.clone());
            pools.insert(p.id, parent.join(format!("pool-{}", p.id.simple())));
        }
        let vms = res
            .vms
            .iter()
            .map(|v| {
                let parent = v
                    .pool
                    .and_then(|x| pools.get(&x).cloned())
                    .unwrap_or_else(|| self.base.clone());
                (v.vm, parent.join(format!("vm-{}", v.vm.simple())))
            })
            .collect();
        (pools, vms)
    }

    fn dirs(&self, rel: &Path) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V2(root) => vec![root.join(rel)],
            Layout::V1 {
                cpu,
                memory,
                cpuset,
            } => {
                let mut v = vec![cpu.join(rel)];
                v.extend(memory.iter().chain(cpuset.iter()).map(|m| m.join(rel)));
                v
            }
            Layout::Unavailable => vec![],
        }
    }

    fn ensure(&self, rel: &Path) -> Result<(), CgroupError> {
        if let Layout::V2(root) = &self.layout {
            // Controllers must be enabled in every ancestor's subtree_control.
            let mut at = root.clone();
            for part in rel.components() {
                let _ = std::fs::write(at.join("cgroup.subtree_control"), "+cpu +memory +cpuset");
                at = at.join(part);
                if !at.exists() {
                    std::fs::create_dir(&at).map_err(|source| CgroupError {
                        path: at.clone(),
                        source,
                    })?;
                }
            }
            return Ok(());
        }
        for d in self.dirs(rel) {
            std::fs::create_dir_all(&d).map_err(|source| CgroupError {
                path: d.clone(),
                source,
            })?;
        }
        if let Layout::V1 {
            cpuset: Some(root), ..
        } = &self.layout
        {
            // A v1 cpuset takes no tasks until its cpus and mems are set: start each new
            // level with its parent's.
            let mut at = root.clone();
            for part in rel.components() {
                let parent = at.clone();
                at = at.join(part);
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let mine = std::fs::read_to_string(at.join(f)).unwrap_or_default();
                    if mine.trim().is_empty() {
                        let theirs = std::fs::read_to_string(parent.join(f)).unwrap_or_default();
                        write(&at.join(f), theirs.trim())?;
                    }
                }
            }
        }
        Ok(())
    }

    fn set(&self, rel: &Path, s: &Settings) -> Result<(), CgroupError> {
        self.ensure(rel)?;
        match &self.layout {
            Layout::V2(root) => {
                let d = root.join(rel);
                // cpu.weight 1..10000 with 100 = normal; shares use 1024 = normal.
                let weight = (s.cpu_shares * 100 / 1024).clamp(1, 10_000);
                write(&d.join("cpu.weight"), &weight.to_string())?;
                let max = s
                    .cpu_quota_us
                    .map(|q| format!("{q} {CFS_PERIOD_US}"))
                    .unwrap_or(format!("max {CFS_PERIOD_US}"));
                write(&d.join("cpu.max"), &max)?;
                write(
                    &d.join("memory.max"),
                    &s.memory_max.map(|b| b.to_string()).unwrap_or("max".into()),
                )?;
                write(&d.join("memory.min"), &s.memory_min.to_string())?;
                write(&d.join("cpuset.cpus"), s.cpus.as_deref().unwrap_or(""))?;
            }
            Layout::V1 {
                cpu,
                memory,
                cpuset,
            } => {
                if let (Some(cs), Some(cpus)) = (cpuset, &s.cpus) {
                    write(&cs.join(rel).join("cpuset.cpus"), cpus)?;
                }
                let d = cpu.join(rel);
                write(
                    &d.join("cpu.shares"),
                    &s.cpu_shares.clamp(2, 262_144).to_string(),
                )?;
                write(&d.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
                let quota = s
                    .cpu_quota_us
                    .map(|q| q.to_string())
                    .unwrap_or_else(|| "-1".into());
                write(&d.join("cpu.cfs_quota_us"), &quota)?;
                if let Some(m) = memory {
                    let lim = s
                        .memory_max
                        .map(|b| b.to_string())
                        .unwrap_or_else(|| "-1".into());
                    write(&m.join(rel).join("memory.limit_in_bytes"), &lim)?;
                }
            }
            Layout::Unavailable => {}
        }
        Ok(())
    }

    fn vm_settings(&self, v: &HostVmResources, cpus: &[u32]) -> Settings {
        Settings {
            cpu_shares: shares_to_cgroup(v.cpu_shares),
            cpu_quota_us: quota_us(v.cpu_limit_mhz, self.mhz_per_cpu),
            memory_max: v.memory_limit_mib.map(|m| m << 20),
            memory_min: v.memory_reservation_mib << 20,
            cpus: Some(format_cpu_list(cpus)),
        }
    }

    /// Every node's path and settings, pools (parents first) then VMs.
    fn plan(&self, res: &HostResources) -> Vec<(PathBuf, Settings)> {
        let (pools, vms) = self.paths(res);
        let all = online_cpus();
        let mut sets: HashMap<Uuid, Vec<u32>> = HashMap::new();
        let mut out = Vec::new();
        for p in &res.pools {
            let Some(rel) = pools.get(&p.id) else {
                continue;
            };
            let parent = p
                .parent
                .and_then(|x| sets.get(&x).cloned())
                .unwrap_or_else(|| all.clone());
            let cpus = confine(&parent, p.cpu_limit_mhz, self.mhz_per_cpu);
            let s = Settings {
                cpu_shares: shares_to_cgroup(p.cpu_shares),
                cpu_quota_us: quota_us(p.cpu_limit_mhz, self.mhz_per_cpu),
                memory_max: p.memory_limit_mib.map(|m| m << 20),
                memory_min: p.memory_reservation_mib << 20,
                cpus: Some(format_cpu_list(&cpus)),
            };
            sets.insert(p.id, cpus);
            out.push((rel.clone(), s));
        }
        for v in &res.vms {
            let Some(rel) = vms.get(&v.vm) else { continue };
            let parent = v
                .pool
                .and_then(|x| sets.get(&x).cloned())
                .unwrap_or_else(|| all.clone());
            let cpus = confine(&parent, v.cpu_limit_mhz, self.mhz_per_cpu);
            out.push((rel.clone(), self.vm_settings(v, &cpus)));
        }
        out
    }

    /// Creates and configures every pool and VM leaf. Errors are collected, not fatal.
    pub fn apply(&self, res: &HostResources) -> Vec<CgroupError> {
        let mut errors = Vec::new();
        if !self.available() {
            return errors;
        }
        if let Err(e) = self.ensure(&self.base) {
            errors.push(e);
            return errors;
        }
        let plan = self.plan(res);
        // Children first (a parent's CPU set cannot shrink below its children's), then
        // parents first (a child's cannot grow beyond its parent's); only the second pass counts.
        for (rel, s) in plan.iter().rev() {
            let _ = self.set(rel, s);
        }
        for (rel, s) in &plan {
            if let Err(e) = self.set(rel, s) {
                errors.push(e);
            }
        }
        errors
    }

    /// Moves a VM's process (all its threads) into its leaf, creating a default leaf when the
    /// manager has not described the VM yet.
    pub fn place(&self, res: &HostResources, vm: Uuid, pid: u32) -> Result<(), CgroupError> {
        if !self.available() {
            return Ok(());
        }
        let (_, vms) = self.paths(res);
        let rel = match vms.get(&vm) {
            Some(r) => r.clone(),
            None => {
                let rel = self.base.join(format!("vm-{}", vm.simple()));
                self.ensure(&rel)?;
                rel
            }
        };
        for d in self.dirs(&rel) {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        debug!(%vm, pid, path = %rel.display(), "VM placed in its cgroup");
        Ok(())
    }

    /// Removes leaves and pools that are empty and no longer described (best effort).
    pub fn prune(&self, res: &HostResources) {
        let (pools, vms) = self.paths(res);
        let keep: Vec<PathBuf> = pools.values().chain(vms.values()).cloned().collect();
        for root in self.dirs(&self.base) {
            prune_dir(&root, &root, &keep, &self.base);
        }
    }
}

fn prune_dir(dir: &Path, root: &Path, keep: &[PathBuf], base: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        prune_dir(&p, root, keep, base);
        let rel = base.join(p.strip_prefix(root).unwrap_or(&p));
        if !keep.contains(&rel) {
            if let Err(err) = std::fs::remove_dir(&p) {
                debug!(path = %p.display(), error = %err, "cgroup kept (not empty)");
            }
        }
    }
}

/// The host's online CPUs.
pub fn online_cpus() -> Vec<u32> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let cpus = parse_cpu_list(&text);
    if cpus.is_empty() {
        let n = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        (0..n).collect()
    } else {
        cpus
    }
}

/// Parses a kernel CPU list such as `0-3,6`.
pub fn parse_cpu_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b.min(a.saturating_add(4096)));
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// Formats CPUs as a kernel CPU list.
pub fn format_cpu_list(cpus: &[u32]) -> String {
    cpus.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The CPUs a node with `limit_mhz` may use: as many of its parent's as the limit needs.
pub fn confine(parent: &[u32], limit_mhz: Option<u64>, mhz_per_cpu: u64) -> Vec<u32> {
    match limit_mhz {
        Some(l) => {
            let n = l
                .div_ceil(mhz_per_cpu.max(1))
                .clamp(1, parent.len().max(1) as u64) as usize;
            parent.iter().take(n).copied().collect()
        }
        None => parent.to_vec(),
    }
}

/// Shares as cgroup weight. The manager already raised them so that reservations hold under
/// contention (see the manager's entitlement module); this only keeps them in range.
pub fn shares_to_cgroup(shares: u64) -> u64 {
    shares.clamp(2, 262_144)
}

/// Logs errors from [`Cgroups::apply`].
pub fn log_errors(errors: &[CgroupError]) {
    for e in errors {
        warn!(error = %e, "cannot apply a resource setting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::HostPool;

    #[test]
    fn detects_v1_and_v2() {
        let v1 = "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\ncgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n";
        assert_eq!(
            Layout::from_mounts(v1),
            Layout::V1 {
                cpu: "/sys/fs/cgroup/cpu".into(),
                memory: Some("/sys/fs/cgroup/memory".into()),
                cpuset: None,
            }
        );
        assert_eq!(
            Layout::from_mounts("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"),
            Layout::V2("/sys/fs/cgroup".into())
        );
        assert_eq!(
            Layout::from_mounts("proc /proc proc rw 0 0\n"),
            Layout::Unavailable
        );
    }

    #[test]
    fn limits_and_reservations_map_to_cgroup_values() {
        assert_eq!(quota_us(Some(1300), 2600), Some(50_000));
        assert_eq!(
            quota_us(Some(1), 2600),
            Some(1000),
            "a floor keeps the quota valid"
        );
        assert_eq!(quota_us(None, 2600), None);
        assert_eq!(shares_to_cgroup(1000), 1000);
        assert_eq!(shares_to_cgroup(1), 2);
    }

    #[test]
    fn writes_a_v2_tree_into_a_fake_mount() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let host = Uuid::new_v4();
        let cg = Cgroups::new(Layout::V2(root.clone()), host, 1000);
        let vm = HostVmResources {
            vm: Uuid::new_v4(),
            pool: None,
            cpu_shares: 2048,
            cpu_reservation_mhz: 0,
            cpu_limit_mhz: Some(500),
            memory_reservation_mib: 64,
            memory_limit_mib: None,
        };
        let res = HostResources {
            pools: vec![],
            vms: vec![vm.clone()],
        };
        assert!(cg.apply(&res).is_empty());
        let d = root
            .join("strata")
            .join(host.simple().to_string())
            .join(format!("vm-{}", vm.vm.simple()));
        assert_eq!(
            std::fs::read_to_string(d.join("cpu.weight")).unwrap(),
            "200"
        );
        assert_eq!(
            std::fs::read_to_string(d.join("cpu.max")).unwrap(),
            "50000 100000"
        );
        assert_eq!(
            std::fs::read_to_string(d.join("memory.max")).unwrap(),
            "max"
        );
        assert_eq!(
            std::fs::read_to_string(d.join("memory.min")).unwrap(),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory +cpuset"
        );
    }

    #[test]
    fn cpu_lists_and_confinement() {
        assert_eq!(parse_cpu_list("0-3,6\n"), vec![0, 1, 2, 3, 6]);
        assert_eq!(format_cpu_list(&[0, 2]), "0,2");
        assert_eq!(confine(&[0, 1, 2, 3], Some(2600), 2600), vec![0]);
        assert_eq!(confine(&[0, 1, 2, 3], Some(2601), 2600), vec![0, 1]);
        assert_eq!(confine(&[0, 1], Some(99_999), 2600), vec![0, 1]);
        assert_eq!(confine(&[4, 5], None, 2600), vec![4, 5]);
    }

    #[test]
    fn writes_a_v1_tree_into_a_fake_mount() {
        let dir = tempfile::tempdir().unwrap();
        let (cpu, mem) = (dir.path().join("cpu"), dir.path().join("memory"));
        let host = Uuid::new_v4();
        let cs = dir.path().join("cpuset");
        std::fs::create_dir_all(&cs).unwrap();
        std::fs::write(cs.join("cpuset.cpus"), "0-1").unwrap();
        std::fs::write(cs.join("cpuset.mems"), "0").unwrap();
        let cg = Cgroups::new(
            Layout::V1 {
                cpu: cpu.clone(),
                memory: Some(mem.clone()),
                cpuset: Some(cs.clone()),
            },
            host,
            2000,
        );
        let pool = HostPool {
            id: Uuid::new_v4(),
            parent: None,
            name: "p".into(),
            cpu_shares: 8000,
            cpu_reservation_mhz: 0,
            cpu_limit_mhz: Some(2000),
            memory_reservation_mib: 0,
            memory_limit_mib: Some(512),
        };
        let vm = HostVmResources {
            vm: Uuid::new_v4(),
            pool: Some(pool.id),
            cpu_shares: 1000,
            cpu_reservation_mhz: 0,
            cpu_limit_mhz: None,
            memory_reservation_mib: 0,
            memory_limit_mib: None,
        };
        let res = HostResources {
            pools: vec![pool.clone()],
            vms: vec![vm.clone()],
        };
        assert!(cg.apply(&res).is_empty());
        let pdir = cpu
            .join("strata")
            .join(host.simple().to_string())
            .join(format!("pool-{}", pool.id.simple()));
        assert_eq!(
            std::fs::read_to_string(pdir.join("cpu.shares")).unwrap(),
            "8000"
        );
        assert_eq!(
            std::fs::read_to_string(pdir.join("cpu.cfs_quota_us")).unwrap(),
            "100000"
        );
        let vdir = pdir.join(format!("vm-{}", vm.vm.simple()));
        assert_eq!(
            std::fs::read_to_string(vdir.join("cpu.cfs_quota_us")).unwrap(),
            "-1"
        );
        let mdir = mem
            .join("strata")
            .join(host.simple().to_string())
            .join(format!("pool-{}", pool.id.simple()));
        assert_eq!(
            std::fs::read_to_string(mdir.join("memory.limit_in_bytes")).unwrap(),
            (512u64 << 20).to_string()
        );
        let csdir = cs
            .join("strata")
            .join(host.simple().to_string())
            .join(format!("pool-{}", pool.id.simple()));
        assert_eq!(
            std::fs::read_to_string(csdir.join("cpuset.cpus")).unwrap(),
            "0",
            "one core for a one-core limit"
        );
        assert_eq!(
            std::fs::read_to_string(csdir.join("cpuset.mems")).unwrap(),
            "0"
        );
        cg.place(&res, vm.vm, 4242).unwrap();
        assert_eq!(
            std::fs::read_to_string(vdir.join("cgroup.procs")).unwrap(),
            "4242"
        );
    }
}
