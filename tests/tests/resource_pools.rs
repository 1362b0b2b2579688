//! Resource pools end to end: admission control through the manager's API, and enforcement
//! on the host measured on real busy VMs (cgroups).

use std::time::Duration;

use strata_shared::api::manager as m;
use strata_shared::model::*;
use strata_shared::{Client, ErrorCode};
use strata_tests::{bins, power_on, task_ok, wait_console, Lab, READY_MARKER};
use uuid::Uuid;

fn cpu(
    reservation: u64,
    limit: Option<u64>,
    level: SharesLevel,
    expandable: bool,
) -> ResourceAllocation {
    ResourceAllocation {
        cpu: Allocation {
            reservation,
            limit,
            shares: Shares {
                level,
                custom: None,
            },
            expandable_reservation: expandable,
        },
        memory: Allocation::default(),
    }
}

async fn pool(
    c: &Client,
    name: &str,
    owner: Option<Uuid>,
    parent: Option<Uuid>,
    a: ResourceAllocation,
) -> Result<PoolInfo, strata_shared::ClientError> {
    c.call::<m::PoolCreate>(PoolCreateParams {
        name: name.into(),
        owner,
        parent,
        allocation: a,
    })
    .await
}

fn code(e: strata_shared::ClientError) -> ErrorCode {
    e.code()
        .unwrap_or_else(|| panic!("expected a coded error, got {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_control_through_the_api() {
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    let usage = c
        .call::<m::PoolUsageGet>(IdParams { id: lab.host })
        .await
        .unwrap();
    let capacity = usage[0].cpu.reservation;
    assert!(capacity >= 1000, "host CPU capacity {capacity} MHz");

    let finance = pool(
        c,
        "Finance",
        Some(lab.host),
        None,
        cpu(capacity / 2, None, SharesLevel::Normal, false),
    )
    .await
    .unwrap();
    let acc = pool(
        c,
        "Accounting",
        None,
        Some(finance.id),
        cpu(capacity / 4, None, SharesLevel::High, false),
    )
    .await
    .unwrap();
    // A second child that does not fit in Finance is refused, naming Finance and the shortfall.
    let e = pool(
        c,
        "Audit",
        None,
        Some(finance.id),
        cpu(capacity / 4 + 100, None, SharesLevel::Normal, false),
    )
    .await
    .unwrap_err();
    let msg = e.to_string();
    assert_eq!(code(e), ErrorCode::InsufficientResources);
    assert!(
        msg.contains("Finance") && msg.contains("short by 100 MHz"),
        "{msg}"
    );
    // Bad values: clear errors, nothing created.
    let e = pool(
        c,
        "Bad",
        Some(lab.host),
        None,
        cpu(500, Some(100), SharesLevel::Normal, false),
    )
    .await
    .unwrap_err();
    assert_eq!(code(e), ErrorCode::InvalidArgument);
    let e = c
        .call_raw("pool.create", serde_json::json!({"name": "Neg", "owner": lab.host, "allocation": {"cpu": {"reservation": -5}}}))
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::InvalidParams);
    let e = pool(
        c,
        "Finance",
        Some(lab.host),
        None,
        ResourceAllocation::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(code(e), ErrorCode::Conflict, "sibling names are unique");
    let e = c
        .call::<m::PoolMove>(PoolMoveParams {
            id: finance.id,
            parent: Some(acc.id),
        })
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::InvalidArgument, "no cycles");
    assert_eq!(
        c.call::<m::PoolList>(PoolListParams::default())
            .await
            .unwrap()
            .len(),
        2
    );

    // A VM outside the pools can reserve only what the root has left, and only when powered on.
    let vm = lab.create_guest_vm("outside", 1).await;
    let too_much = cpu(
        capacity - capacity / 2 + 1,
        None,
        SharesLevel::Normal,
        false,
    );
    c.call::<m::VmSetAllocation>(VmAllocationParams {
        id: vm,
        allocation: too_much,
    })
    .await
    .unwrap();
    let e = c
        .call::<m::VmPowerOn>(IdParams { id: vm })
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::InsufficientResources);
    let fits = cpu(capacity - capacity / 2, None, SharesLevel::Normal, false);
    c.call::<m::VmSetAllocation>(VmAllocationParams {
        id: vm,
        allocation: fits,
    })
    .await
    .unwrap();
    power_on(c, vm).await;
    // The host enforces memory limits on the VM's process: set one live and read it back
    // from the VM's cgroup.
    let mut with_mem = fits;
    with_mem.memory.limit = Some(200);
    c.call::<m::VmSetAllocation>(VmAllocationParams {
        id: vm,
        allocation: with_mem,
    })
    .await
    .unwrap();
    let leaf = std::path::Path::new("/sys/fs/cgroup/memory/strata")
        .join(lab.host.simple().to_string())
        .join(format!("vm-{}", vm.simple()));
    if std::path::Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        let limit = std::fs::read_to_string(leaf.join("memory.limit_in_bytes")).unwrap();
        assert_eq!(limit.trim(), (200u64 << 20).to_string());
        let pid = std::fs::read_to_string(lab.datastore().join("outside/vmm.pid")).unwrap();
        let procs = std::fs::read_to_string(leaf.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l.trim() == pid.trim()),
            "the VM's process is in its leaf"
        );
    }
    c.call::<m::VmSetAllocation>(VmAllocationParams {
        id: vm,
        allocation: fits,
    })
    .await
    .unwrap();
    // Now the root is full: raising Finance is refused while the VM runs…
    let e = c
        .call::<m::PoolUpdate>(PoolUpdateParams {
            id: finance.id,
            name: None,
            allocation: Some(cpu(capacity / 2 + 1, None, SharesLevel::Normal, false)),
        })
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::InsufficientResources);
    // …but Accounting may grow inside Finance while running, live.
    let grown = c
        .call::<m::PoolUpdate>(PoolUpdateParams {
            id: acc.id,
            name: None,
            allocation: Some(cpu(capacity / 2, None, SharesLevel::High, false)),
        })
        .await
        .unwrap();
    assert_eq!(grown.allocation.cpu.reservation, capacity / 2);
    let usage = c
        .call::<m::PoolUsageGet>(IdParams { id: lab.host })
        .await
        .unwrap();
    assert_eq!(usage[0].cpu.unreserved_for_children, 0);

    // A pool with a VM in it is not deleted unless its children move up.
    let t = c
        .call::<m::VmPowerOff>(m::PowerOffParams {
            id: vm,
            hard: true,
            timeout_secs: None,
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    c.call::<m::VmSetAllocation>(VmAllocationParams {
        id: vm,
        allocation: ResourceAllocation::default(),
    })
    .await
    .unwrap();
    let moved = c
        .call::<m::VmMove>(VmMoveParams {
            id: vm,
            pool: Some(acc.id),
        })
        .await
        .unwrap();
    assert_eq!(moved.pool, Some(acc.id));
    let e = c
        .call::<m::PoolDelete>(PoolDeleteParams {
            id: acc.id,
            move_children_to_parent: false,
        })
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::InvalidState);
    c.call::<m::PoolDelete>(PoolDeleteParams {
        id: acc.id,
        move_children_to_parent: true,
    })
    .await
    .unwrap();
    assert_eq!(
        c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap().pool,
        Some(finance.id)
    );

    let events = c
        .call::<m::EventList>(EventListParams::default())
        .await
        .unwrap();
    for k in [
        "pool.created",
        "pool.updated",
        "pool.deleted",
        "vm.reconfigured",
    ] {
        assert!(events.iter().any(|e| e.kind == k), "missing {k}");
    }
    // Read-only users cannot change pools.
    c.call::<m::UserCreate>(UserCreateParams {
        username: "ro".into(),
        password: strata_tests::PASSWORD.into(),
        role: Role::ReadOnly,
    })
    .await
    .unwrap();
    let ro = lab.server.client("ro").await;
    assert_eq!(
        code(
            pool(
                &ro,
                "X",
                Some(lab.host),
                None,
                ResourceAllocation::default()
            )
            .await
            .unwrap_err()
        ),
        ErrorCode::NoPermission
    );
}

/// CPU time (user + system) of a process and its threads, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit(')').next().unwrap();
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn vm_pid(lab: &Lab, name: &str) -> u32 {
    std::fs::read_to_string(lab.datastore().join(name).join("vmm.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// CPU seconds each process used per wall second over `secs`.
async fn measure(pids: &[u32], secs: u64) -> Vec<f64> {
    let before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let t = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let wall = t.elapsed().as_secs_f64();
    pids.iter()
        .zip(before)
        .map(|(p, b)| (cpu_ticks(*p) - b) as f64 / 100.0 / wall)
        .collect()
}

async fn burn(c: &Client, vm: Uuid) {
    let (_, off) = wait_console(c, vm, 0, READY_MARKER, Duration::from_secs(120))
        .await
        .unwrap();
    c.call::<m::VmConsoleSend>(m::ConsoleSendParams {
        id: vm,
        data: "while :; do :; done &\necho burning-$((40+2))\n".into(),
    })
    .await
    .unwrap();
    wait_console(c, vm, off, "burning-42", Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_limits_and_live_edits_are_enforced_on_busy_vms() {
    assert!(
        std::path::Path::new("/sys/fs/cgroup/cpu/cpu.shares").exists()
            || std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        "this test needs a writable cgroup cpu controller (run as root)"
    );
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    let mhz = c
        .call::<m::HostGet>(IdParams { id: lab.host })
        .await
        .unwrap()
        .facts
        .unwrap()
        .cpu_mhz as u64;
    // One core's worth for the parent, split 2:1 between two sibling pools.
    let parent = pool(
        c,
        "Constrained",
        Some(lab.host),
        None,
        cpu(0, Some(mhz), SharesLevel::Normal, true),
    )
    .await
    .unwrap();
    let high = pool(
        c,
        "High",
        None,
        Some(parent.id),
        cpu(0, None, SharesLevel::High, true),
    )
    .await
    .unwrap();
    let normal = pool(
        c,
        "Normal",
        None,
        Some(parent.id),
        cpu(0, None, SharesLevel::Normal, true),
    )
    .await
    .unwrap();
    let a = lab.create_guest_vm("busy-a", 1).await;
    let b = lab.create_guest_vm("busy-b", 1).await;
    c.call::<m::VmMove>(VmMoveParams {
        id: a,
        pool: Some(high.id),
    })
    .await
    .unwrap();
    c.call::<m::VmMove>(VmMoveParams {
        id: b,
        pool: Some(normal.id),
    })
    .await
    .unwrap();
    power_on(c, a).await;
    power_on(c, b).await;
    burn(c, a).await;
    burn(c, b).await;
    let pids = [vm_pid(&lab, "busy-a"), vm_pid(&lab, "busy-b")];

    let r = measure(&pids, 6).await;
    let ratio = r[0] / r[1];
    eprintln!(
        "shares 2:1 → CPU {:.2} vs {:.2} cores, ratio {ratio:.2}",
        r[0], r[1]
    );
    assert!(
        (1.7..=2.3).contains(&ratio),
        "expected about 2:1, got {ratio:.2} ({r:?})"
    );
    assert!(
        r[0] + r[1] <= 1.15,
        "the parent's one-core limit holds: {r:?}"
    );

    // A live share change moves the ratio without restarting either VM.
    let t0 = std::time::Instant::now();
    c.call::<m::PoolUpdate>(PoolUpdateParams {
        id: normal.id,
        name: None,
        allocation: Some(cpu(0, None, SharesLevel::High, true)),
    })
    .await
    .unwrap();
    eprintln!("live edit acknowledged after {:?}", t0.elapsed());
    let r = measure(&pids, 6).await;
    let ratio = r[0] / r[1];
    let shared_a = r[0];
    eprintln!(
        "shares 1:1 → CPU {:.2} vs {:.2} cores, ratio {ratio:.2}",
        r[0], r[1]
    );
    assert!(
        (0.8..=1.25).contains(&ratio),
        "expected about 1:1, got {ratio:.2}"
    );
    assert_eq!(
        pids,
        [vm_pid(&lab, "busy-a"), vm_pid(&lab, "busy-b")],
        "no VM restarted"
    );

    // When one goes idle the other takes the spare capacity (shares are work-conserving).
    c.call::<m::VmConsoleSend>(m::ConsoleSendParams {
        id: b,
        data: "kill %1\n".into(),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = measure(&pids, 5).await;
    eprintln!("B idle → CPU {:.2} vs {:.2} cores", r[0], r[1]);
    assert!(
        r[0] >= 1.6 * shared_a && r[1] <= 0.1,
        "A takes the idle capacity: {r:?} (had {shared_a:.2})"
    );
    let uncapped = r[0];

    // A CPU limit on a VM caps it near the limit.
    let limit = mhz / 4;
    c.call::<m::VmSetAllocation>(VmAllocationParams {
        id: a,
        allocation: cpu(0, Some(limit), SharesLevel::Normal, false),
    })
    .await
    .unwrap();
    let r = measure(&pids, 5).await;
    let want = limit as f64 / mhz as f64;
    eprintln!(
        "limit {limit} MHz → CPU {:.2} cores (want ≈ {want:.2})",
        r[0]
    );
    assert!(
        r[0] <= want + 0.08 && r[0] <= 0.6 * uncapped,
        "capped near its limit: {r:?}"
    );

    // A reservation holds under contention even with fewer shares: A (low shares) reserves
    // three quarters of the constrained core against B (high shares).
    c.call::<m::VmConsoleSend>(m::ConsoleSendParams {
        id: b,
        data: "while :; do :; done &\n".into(),
    })
    .await
    .unwrap();
    let reserved = mhz * 3 / 4;
    c.call::<m::VmSetAllocation>(VmAllocationParams {
        id: a,
        allocation: cpu(reserved, None, SharesLevel::Low, false),
    })
    .await
    .unwrap();
    c.call::<m::VmSetAllocation>(VmAllocationParams {
        id: b,
        allocation: cpu(0, None, SharesLevel::High, false),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = measure(&pids, 6).await;
    let frac = r[0] / (r[0] + r[1]);
    eprintln!(
        "reservation {reserved} MHz, low shares vs high → CPU {:.2} vs {:.2} cores ({:.0} % for A)",
        r[0],
        r[1],
        frac * 100.0
    );
    assert!(frac >= 0.65, "the reservation holds: {r:?}");

    for vm in [a, b] {
        let t = c
            .call::<m::VmPowerOff>(m::PowerOffParams {
                id: vm,
                hard: true,
                timeout_secs: None,
            })
            .await
            .unwrap();
        task_ok(c, t).await;
    }
}

fn stored_pool_limit(agent: &strata_tests::Daemon, pool: Uuid) -> Option<u64> {
    let text = std::fs::read_to_string(agent.data_dir.join("resources.json")).ok()?;
    let res: HostResources = serde_json::from_str(&text).ok()?;
    res.pools
        .iter()
        .find(|p| p.id == pool)
        .and_then(|p| p.cpu_limit_mhz)
}

async fn wait_limit(agent: &strata_tests::Daemon, pool: Uuid, want: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stored_pool_limit(agent, pool) != Some(want) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "host kept {:?}, want {want}",
            stored_pool_limit(agent, pool)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_pool_is_divided_among_the_hosts_that_run_its_vms() {
    strata_tests::require_qemu();
    let bins = bins!();
    let dir = tempfile::Builder::new()
        .prefix("strata-e2e")
        .tempdir_in(strata_tests::scratch_root())
        .unwrap();
    let agents = [
        strata_tests::Daemon::agent(&bins, &dir.path().join("a1"), 0),
        strata_tests::Daemon::agent(&bins, &dir.path().join("a2"), 0),
    ];
    let server = strata_tests::Daemon::server(&bins, &dir.path().join("server"), 0, &[]);
    let c = server.client("admin").await;
    let cluster = c
        .call::<m::ClusterCreate>(ClusterCreateParams {
            name: "Prod".into(),
            datacenter: None,
        })
        .await
        .unwrap();
    let mut hosts = Vec::new();
    for a in &agents {
        let t = c
            .call::<m::HostAdd>(HostAddParams {
                address: a.address.clone(),
                username: "root".into(),
                password: strata_tests::PASSWORD.into(),
                thumbprint: Some(a.thumbprint.clone()),
                cluster: Some(cluster.id),
            })
            .await
            .unwrap();
        let h: HostInfo = serde_json::from_value(task_ok(&c, t).await.result.unwrap()).unwrap();
        hosts.push(h.id);
    }
    // Pools of clustered hosts belong to the cluster.
    let e = pool(&c, "X", Some(hosts[0]), None, ResourceAllocation::default())
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::InvalidArgument);
    let p = pool(
        &c,
        "Web",
        Some(cluster.id),
        None,
        cpu(0, Some(2000), SharesLevel::Normal, true),
    )
    .await
    .unwrap();
    let g = strata_tests::guest();
    let mut vms = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let spec = VmSpec {
            vcpus: 1,
            memory_mib: 128,
            engine: Engine::Qemu,
            machine: Machine::Microvm,
            boot: BootSpec {
                kernel: g.kernel.display().to_string(),
                initrd: Some(g.initrd.display().to_string()),
                cmdline: String::new(),
            },
            allocation: Default::default(),
            disks: Vec::new(),
            template: false,
            nics: Vec::new(),
        };
        let t = c
            .call::<m::VmCreate>(m::VmCreateParams {
                name: format!("web{i}"),
                host: *h,
                datastore: None,
                spec,
            })
            .await
            .unwrap();
        let vm: VmInfo = serde_json::from_value(task_ok(&c, t).await.result.unwrap()).unwrap();
        c.call::<m::VmMove>(VmMoveParams {
            id: vm.id,
            pool: Some(p.id),
        })
        .await
        .unwrap();
        vms.push(vm.id);
    }
    // Only host 1 runs a VM of the pool: it gets the whole limit, host 2 none of it.
    power_on(&c, vms[0]).await;
    wait_limit(&agents[0], p.id, 2000).await;
    wait_limit(&agents[1], p.id, 0).await;
    // Both run one: the limit is split evenly.
    power_on(&c, vms[1]).await;
    wait_limit(&agents[0], p.id, 1000).await;
    wait_limit(&agents[1], p.id, 1000).await;
    let usage = c
        .call::<m::PoolUsageGet>(IdParams { id: cluster.id })
        .await
        .unwrap();
    assert_eq!(usage[0].name, "root");
    for vm in vms {
        let t = c
            .call::<m::VmPowerOff>(m::PowerOffParams {
                id: vm,
                hard: true,
                timeout_secs: None,
            })
            .await
            .unwrap();
        task_ok(&c, t).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pool_announces_where_its_children_went() {
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    let a = pool(
        c,
        "Outer",
        Some(lab.host),
        None,
        ResourceAllocation::default(),
    )
    .await
    .unwrap();
    let b = pool(c, "Inner", None, Some(a.id), ResourceAllocation::default())
        .await
        .unwrap();
    let vm = lab.create_guest_vm("movee", 1).await;
    c.call::<m::VmMove>(VmMoveParams {
        id: vm,
        pool: Some(a.id),
    })
    .await
    .unwrap();
    c.call::<m::InventorySubscribe>(Empty {}).await.unwrap();
    let mut notes = c.notifications();
    c.call::<m::PoolDelete>(PoolDeleteParams {
        id: a.id,
        move_children_to_parent: true,
    })
    .await
    .unwrap();
    let (mut pool_moved, mut vm_moved, mut removed) = (false, false, false);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(pool_moved && vm_moved && removed) {
        let n = tokio::time::timeout_at(deadline, notes.recv())
            .await
            .expect("the deltas arrive")
            .unwrap();
        if n.method != "inventory.changed" {
            continue;
        }
        match serde_json::from_value::<InventoryChange>(n.params).unwrap() {
            InventoryChange::Upsert { object } => match *object {
                InventoryObject::Pool(p) if p.id == b.id => {
                    assert_eq!(p.parent, None, "Inner moved up to the root");
                    pool_moved = true;
                }
                InventoryObject::Vm(v) if v.id == vm => {
                    assert_eq!(v.pool, None, "the VM moved up to the root");
                    vm_moved = true;
                }
                _ => {}
            },
            InventoryChange::Remove { id, .. } => removed |= id == a.id,
        }
    }
}
