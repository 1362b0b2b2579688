//! Admission control over one resource-pool tree: reservations must fit, counting what
//! expandable pools borrow from their parents; limits must hold. Pure arithmetic, no I/O.

use std::collections::HashMap;

use strata_shared::model::{Allocation, PoolUsage, Resource, ResourceAllocation, ResourceUsage};
use uuid::Uuid;

/// What a node of the tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A resource pool.
    Pool,
    /// A VM; only powered-on VMs reserve anything.
    Vm {
        /// Powered on.
        powered_on: bool,
    },
}

/// One pool or VM.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Id.
    pub id: Uuid,
    /// Name (for messages).
    pub name: String,
    /// Parent pool; none = the root.
    pub parent: Option<Uuid>,
    /// Pool or VM.
    pub kind: NodeKind,
    /// Allocation.
    pub allocation: ResourceAllocation,
}

/// A whole tree: the root's capacity and every node under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    /// Id of the owner (host or cluster), which stands for the root.
    pub root: Uuid,
    /// Name of the owner.
    pub root_name: String,
    /// Root capacity: CPU MHz.
    pub cpu_capacity: u64,
    /// Root capacity: memory MiB.
    pub memory_capacity: u64,
    /// Pools and VMs.
    pub nodes: Vec<Node>,
}

/// Why a tree does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Shortfall {
    /// The pool (or root) that cannot hold its children.
    pub pool: String,
    /// Which resource.
    pub resource: Resource,
    /// How much is missing.
    pub short_by: u64,
    /// The full sentence.
    pub message: String,
}

fn alloc(a: &ResourceAllocation, r: Resource) -> &Allocation {
    match r {
        Resource::Cpu => &a.cpu,
        Resource::Memory => &a.memory,
    }
}

impl Tree {
    fn capacity(&self, r: Resource) -> u64 {
        match r {
            Resource::Cpu => self.cpu_capacity,
            Resource::Memory => self.memory_capacity,
        }
    }

    fn children(&self) -> HashMap<Option<Uuid>, Vec<&Node>> {
        let mut m: HashMap<Option<Uuid>, Vec<&Node>> = HashMap::new();
        for n in &self.nodes {
            m.entry(n.parent).or_default().push(n);
        }
        m
    }

    /// What each pool's children reserve (`None` = the root), and what each node takes
    /// from its parent.
    fn reserved(&self, r: Resource) -> (HashMap<Option<Uuid>, u64>, HashMap<Uuid, u64>) {
        let kids = self.children();
        let mut by_children = HashMap::new();
        let mut takes = HashMap::new();
        fn walk(
            kids: &HashMap<Option<Uuid>, Vec<&Node>>,
            at: Option<Uuid>,
            r: Resource,
            depth: usize,
            by_children: &mut HashMap<Option<Uuid>, u64>,
            takes: &mut HashMap<Uuid, u64>,
        ) -> u64 {
            let mut sum = 0u64;
            if depth > 64 {
                return 0;
            }
            for n in kids.get(&at).map(Vec::as_slice).unwrap_or(&[]) {
                let a = alloc(&n.allocation, r);
                let t = match n.kind {
                    NodeKind::Vm { powered_on } => {
                        if powered_on {
                            a.reservation
                        } else {
                            0
                        }
                    }
                    NodeKind::Pool => {
                        let inner = walk(kids, Some(n.id), r, depth + 1, by_children, takes);
                        if a.expandable_reservation {
                            a.reservation.max(inner)
                        } else {
                            a.reservation
                        }
                    }
                };
                takes.insert(n.id, t);
                sum = sum.saturating_add(t);
            }
            by_children.insert(at, sum);
            sum
        }
        walk(&kids, None, r, 0, &mut by_children, &mut takes);
        (by_children, takes)
    }

    /// Checks that every reservation fits and every limit holds.
    pub fn check(&self) -> Result<(), Shortfall> {
        for r in [Resource::Cpu, Resource::Memory] {
            let unit = r.unit();
            let what = match r {
                Resource::Cpu => "CPU",
                Resource::Memory => "memory",
            };
            let (by_children, takes) = self.reserved(r);
            let root_need = by_children.get(&None).copied().unwrap_or(0);
            if root_need > self.capacity(r) {
                let short = root_need - self.capacity(r);
                return Err(Shortfall {
                    pool: self.root_name.clone(),
                    resource: r,
                    short_by: short,
                    message: format!(
                        "{} has {} {unit} of {what} to reserve but {root_need} {unit} is asked for: short by {short} {unit}",
                        self.root_name,
                        self.capacity(r)
                    ),
                });
            }
            for n in self.nodes.iter().filter(|n| n.kind == NodeKind::Pool) {
                let a = alloc(&n.allocation, r);
                let need = by_children.get(&Some(n.id)).copied().unwrap_or(0);
                if !a.expandable_reservation && need > a.reservation {
                    let short = need - a.reservation;
                    return Err(Shortfall {
                        pool: n.name.clone(),
                        resource: r,
                        short_by: short,
                        message: format!(
                            "pool {} reserves {} {unit} of {what} but its children need {need} {unit}: short by {short} {unit}",
                            n.name, a.reservation
                        ),
                    });
                }
                if let Some(limit) = a.limit {
                    let total = takes.get(&n.id).copied().unwrap_or(0).max(need);
                    if total > limit {
                        return Err(Shortfall {
                            pool: n.name.clone(),
                            resource: r,
                            short_by: total - limit,
                            message: format!(
                                "pool {} is limited to {limit} {unit} of {what} but its reservations need {total} {unit}",
                                n.name
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn unreserved(
        &self,
        r: Resource,
        at: Option<Uuid>,
        by_children: &HashMap<Option<Uuid>, u64>,
        takes: &HashMap<Uuid, u64>,
        depth: usize,
    ) -> u64 {
        let used = by_children.get(&at).copied().unwrap_or(0);
        let Some(id) = at else {
            return self.capacity(r).saturating_sub(used);
        };
        let Some(n) = self.nodes.iter().find(|n| n.id == id) else {
            return 0;
        };
        let a = alloc(&n.allocation, r);
        let own = a.reservation.saturating_sub(used);
        if !a.expandable_reservation || depth > 64 {
            return own;
        }
        let taken = takes.get(&id).copied().unwrap_or(0);
        let from_parent = self.unreserved(r, n.parent, by_children, takes, depth + 1);
        let headroom = a.limit.map(|l| l.saturating_sub(taken)).unwrap_or(u64::MAX);
        own.saturating_add(from_parent.min(headroom))
    }

    /// Reserved and unreserved capacity at the root and at every pool.
    pub fn usage(&self) -> Vec<PoolUsage> {
        let cpu = self.reserved(Resource::Cpu);
        let mem = self.reserved(Resource::Memory);
        let node = |at: Option<Uuid>, name: &str, cpu_res: u64, mem_res: u64| PoolUsage {
            id: at.unwrap_or(self.root),
            name: name.to_string(),
            cpu: ResourceUsage {
                reservation: cpu_res,
                reserved_by_children: cpu.0.get(&at).copied().unwrap_or(0),
                unreserved_for_children: self.unreserved(Resource::Cpu, at, &cpu.0, &cpu.1, 0),
            },
            memory: ResourceUsage {
                reservation: mem_res,
                reserved_by_children: mem.0.get(&at).copied().unwrap_or(0),
                unreserved_for_children: self.unreserved(Resource::Memory, at, &mem.0, &mem.1, 0),
            },
        };
        let mut out = vec![node(None, "root", self.cpu_capacity, self.memory_capacity)];
        for n in self.nodes.iter().filter(|n| n.kind == NodeKind::Pool) {
            out.push(node(
                Some(n.id),
                &n.name,
                n.allocation.cpu.reservation,
                n.allocation.memory.reservation,
            ));
        }
        out
    }

    /// True when making `id` a child of `new_parent` would put it under itself.
    pub fn would_cycle(&self, id: Uuid, new_parent: Option<Uuid>) -> bool {
        let mut at = new_parent;
        let mut steps = 0;
        while let Some(p) = at {
            if p == id || steps > 1000 {
                return true;
            }
            at = self.nodes.iter().find(|n| n.id == p).and_then(|n| n.parent);
            steps += 1;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::Allocation;

    const GHZ: u64 = 1000;
    const GIB: u64 = 1024;

    fn res(cpu: u64, mem: u64, expandable: bool) -> ResourceAllocation {
        ResourceAllocation {
            cpu: Allocation {
                reservation: cpu,
                expandable_reservation: expandable,
                ..Default::default()
            },
            memory: Allocation {
                reservation: mem,
                expandable_reservation: expandable,
                ..Default::default()
            },
        }
    }

    fn pool(name: &str, parent: Option<Uuid>, a: ResourceAllocation) -> Node {
        Node {
            id: Uuid::new_v4(),
            name: name.into(),
            parent,
            kind: NodeKind::Pool,
            allocation: a,
        }
    }

    fn vm(name: &str, parent: Option<Uuid>, on: bool, a: ResourceAllocation) -> Node {
        Node {
            id: Uuid::new_v4(),
            name: name.into(),
            parent,
            kind: NodeKind::Vm { powered_on: on },
            allocation: a,
        }
    }

    /// The seed's example: a 3-host cluster with 12 GHz / 48 GiB.
    fn seed() -> (Tree, Uuid, Uuid) {
        let finance = pool("Finance", None, res(8 * GHZ, 32 * GIB, false));
        let accounting = pool(
            "Accounting",
            Some(finance.id),
            res(4 * GHZ, 16 * GIB, false),
        );
        let in_acc = vm(
            "ledger",
            Some(accounting.id),
            true,
            res(2 * GHZ, 8 * GIB, false),
        );
        let outside = vm("web", None, true, res(4 * GHZ, 16 * GIB, false));
        let (f, a) = (finance.id, accounting.id);
        let tree = Tree {
            root: Uuid::new_v4(),
            root_name: "cluster Prod".into(),
            cpu_capacity: 12 * GHZ,
            memory_capacity: 48 * GIB,
            nodes: vec![finance, accounting, in_acc, outside],
        };
        (tree, f, a)
    }

    #[test]
    fn the_seed_example_fits_exactly() {
        let (t, f, a) = seed();
        t.check().unwrap();
        let u = t.usage();
        let root = &u[0];
        assert_eq!(
            (
                root.cpu.reserved_by_children,
                root.cpu.unreserved_for_children
            ),
            (12 * GHZ, 0)
        );
        let fin = u.iter().find(|p| p.id == f).unwrap();
        assert_eq!(fin.cpu.unreserved_for_children, 4 * GHZ);
        let acc = u.iter().find(|p| p.id == a).unwrap();
        assert_eq!(
            (
                acc.cpu.reserved_by_children,
                acc.cpu.unreserved_for_children
            ),
            (2 * GHZ, 2 * GHZ)
        );
    }

    #[test]
    fn raising_accounting_while_running_fits_inside_finance() {
        let (mut t, f, a) = seed();
        let acc = t.nodes.iter_mut().find(|n| n.id == a).unwrap();
        acc.allocation.cpu.reservation = 6 * GHZ;
        t.check().unwrap();
        // Beyond Finance's own 8 GHz it does not.
        t.nodes
            .iter_mut()
            .find(|n| n.id == a)
            .unwrap()
            .allocation
            .cpu
            .reservation = 9 * GHZ;
        let e = t.check().unwrap_err();
        assert_eq!(
            (e.pool.as_str(), e.resource, e.short_by),
            ("Finance", Resource::Cpu, GHZ)
        );
        assert!(
            e.message.contains("Finance") && e.message.contains("short by 1000 MHz"),
            "{}",
            e.message
        );
        let _ = f;
    }

    #[test]
    fn a_vm_outside_cannot_take_more_than_the_rest() {
        let (mut t, _, _) = seed();
        t.nodes.push(vm("extra", None, true, res(GHZ, 0, false)));
        let e = t.check().unwrap_err();
        assert_eq!((e.pool.as_str(), e.short_by), ("cluster Prod", GHZ));
        // Powered off it reserves nothing.
        t.nodes.last_mut().unwrap().kind = NodeKind::Vm { powered_on: false };
        t.check().unwrap();
    }

    #[test]
    fn expandable_pools_borrow_from_their_parent_up_the_tree() {
        let (mut t, f, a) = seed();
        // Accounting becomes expandable: its VM may reserve beyond 4 GHz, borrowing Finance's
        // unreserved 4 GHz, but not more.
        t.nodes
            .iter_mut()
            .find(|n| n.id == a)
            .unwrap()
            .allocation
            .cpu
            .expandable_reservation = true;
        let u = t.usage();
        assert_eq!(
            u.iter()
                .find(|p| p.id == a)
                .unwrap()
                .cpu
                .unreserved_for_children,
            2 * GHZ + 4 * GHZ
        );
        t.nodes
            .push(vm("big", Some(a), true, res(6 * GHZ, 0, false)));
        t.check().unwrap();
        t.nodes.last_mut().unwrap().allocation.cpu.reservation = 6 * GHZ + 1;
        assert_eq!(t.check().unwrap_err().pool, "Finance");
        // With Finance expandable too it borrows from the root, which is full.
        t.nodes
            .iter_mut()
            .find(|n| n.id == f)
            .unwrap()
            .allocation
            .cpu
            .expandable_reservation = true;
        assert_eq!(t.check().unwrap_err().pool, "cluster Prod");
    }

    #[test]
    fn limits_bound_the_reservations_below() {
        let (mut t, f, _) = seed();
        t.nodes
            .iter_mut()
            .find(|n| n.id == f)
            .unwrap()
            .allocation
            .memory
            .limit = Some(30 * GIB);
        let e = t.check().unwrap_err();
        assert_eq!((e.resource, e.pool.as_str()), (Resource::Memory, "Finance"));
    }

    #[test]
    fn cycles_are_detected() {
        let (t, f, a) = seed();
        assert!(t.would_cycle(f, Some(a)));
        assert!(t.would_cycle(f, Some(f)));
        assert!(!t.would_cycle(a, None));
    }
}
