//! The Hosts & Clusters inventory tree (datacenter › cluster › host › resource pool › VM).
//!
//! The whole tree is flattened once per layout change into a pre-order array
//! ([`FlatTree`]) whose lower-cased names sit in one text buffer. A filter is then a single
//! substring search over that buffer, or — when the query only grew, as it does while
//! typing — a re-check of the previous matches only; recent queries are remembered so a
//! backspace costs nothing. Visible rows are rebuilt only when the inventory's layout, the
//! filter or an expansion changes, and drawn with row virtualisation.
//!
//! Under a cluster: its hosts (with the VMs in no pool), then its resource pools. Under a
//! standalone host: its pools, then its VMs in no pool. Under a pool: its pools, then its VMs.

use std::collections::HashSet;
use std::ops::Range;

use egui::{Sense, Vec2};
use strata_shared::model::PowerState;
use uuid::Uuid;

use super::super::model::{natural_cmp, InventoryModel, Selection};
use super::super::net::Operation;
use super::super::{theme, Command, Tab, View, ViewCtx};
use super::pool_editor::EditTarget;

const ROW_HEIGHT: f32 = 22.0;
const INDENT: f32 = 16.0;
/// Separates names in the search buffer (names cannot contain control characters).
const SEP: char = '\u{0}';
/// No parent.
const ROOT: u32 = u32::MAX;
/// How many recent queries keep their matches.
const REMEMBERED_QUERIES: usize = 16;
/// Deepest pool nesting drawn (a corrupt parent cycle cannot recurse forever).
const MAX_POOL_DEPTH: u8 = 32;

/// One visible row.
#[derive(Debug, Clone)]
struct Row {
    depth: u8,
    sel: Selection,
    has_children: bool,
    expanded: bool,
}

/// One node of the flattened tree.
#[derive(Debug, Clone)]
struct Node {
    sel: Selection,
    depth: u8,
    parent: u32,
    /// One past the last node of this node's subtree.
    end: u32,
    /// Its lower-cased name in [`FlatTree::names`].
    name: Range<u32>,
}

/// The whole tree in pre-order, with lower-cased names in one buffer.
#[derive(Debug, Default)]
struct FlatTree {
    nodes: Vec<Node>,
    names: String,
}

impl FlatTree {
    fn build(inv: &InventoryModel) -> Self {
        let mut t = FlatTree {
            nodes: Vec::with_capacity(inv.vms.len() + inv.hosts.len() + inv.pools.len() + 64),
            names: String::with_capacity((inv.vms.len() + inv.hosts.len()) * 12),
        };
        let mut dcs: Vec<_> = inv.datacenters.values().collect();
        dcs.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        for dc in dcs {
            let d = t.open(Selection::Datacenter(dc.id), &dc.name, 0, ROOT);
            for cl in inv.clusters_in(dc.id) {
                let c = t.open(Selection::Cluster(cl.id), &cl.name, 1, d);
                for h in inv.hosts_in_cluster(cl.id) {
                    let hi = t.open(Selection::Host(h.id), &h.name, 2, c);
                    for v in inv.root_vms_on_host(h.id) {
                        t.leaf(Selection::Vm(v.id), &v.name, 3, hi);
                    }
                    t.close(hi);
                }
                t.pools(inv, cl.id, 2, c);
                t.close(c);
            }
            for h in inv.standalone_hosts(dc.id) {
                let hi = t.open(Selection::Host(h.id), &h.name, 1, d);
                t.pools(inv, h.id, 2, hi);
                for v in inv.root_vms_on_host(h.id) {
                    t.leaf(Selection::Vm(v.id), &v.name, 2, hi);
                }
                t.close(hi);
            }
            t.close(d);
        }
        t
    }

    /// The pools under `parent` (a pool, or a host or cluster for top-level pools), each
    /// with its own pools and VMs.
    fn pools(&mut self, inv: &InventoryModel, parent: Uuid, depth: u8, parent_node: u32) {
        if depth > MAX_POOL_DEPTH {
            return;
        }
        for id in inv.child_pools(parent) {
            let Some(p) = inv.pools.get(id) else { continue };
            let pi = self.open(Selection::Pool(p.id), &p.name, depth, parent_node);
            self.pools(inv, p.id, depth + 1, pi);
            for v in inv.vms_in_pool(p.id).iter().filter_map(|v| inv.vms.get(v)) {
                self.leaf(Selection::Vm(v.id), &v.name, depth + 1, pi);
            }
            self.close(pi);
        }
    }

    fn open(&mut self, sel: Selection, name: &str, depth: u8, parent: u32) -> u32 {
        let start = self.names.len() as u32;
        if name.is_ascii() {
            self.names
                .extend(name.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        } else {
            self.names.push_str(&name.to_lowercase());
        }
        let end = self.names.len() as u32;
        self.names.push(SEP);
        let i = self.nodes.len() as u32;
        self.nodes.push(Node {
            sel,
            depth,
            parent,
            end: i + 1,
            name: start..end,
        });
        i
    }

    fn leaf(&mut self, sel: Selection, name: &str, depth: u8, parent: u32) {
        self.open(sel, name, depth, parent);
    }

    fn close(&mut self, i: u32) {
        let end = self.nodes.len() as u32;
        if let Some(n) = self.nodes.get_mut(i as usize) {
            n.end = end;
        }
    }

    fn name(&self, i: u32) -> &str {
        let r = &self.nodes[i as usize].name;
        self.names
            .get(r.start as usize..r.end as usize)
            .unwrap_or("")
    }

    /// Indices of the nodes whose name contains `needle` (lower-case): one pass over the
    /// name buffer.
    fn search(&self, needle: &str) -> Vec<u32> {
        let mut out = Vec::new();
        if needle.contains(SEP) {
            return out;
        }
        let mut node = 0usize;
        for (at, _) in self.names.match_indices(needle) {
            let at = at as u32;
            while node < self.nodes.len() && self.nodes[node].name.end < at {
                node += 1;
            }
            if let Some(n) = self.nodes.get(node) {
                if n.name.start <= at && out.last() != Some(&(node as u32)) {
                    out.push(node as u32);
                }
            }
        }
        out
    }

    /// The nodes among `candidates` whose name contains `needle`.
    fn refine(&self, candidates: &[u32], needle: &str) -> Vec<u32> {
        candidates
            .iter()
            .copied()
            .filter(|i| self.name(*i).contains(needle))
            .collect()
    }

    /// Rows without a filter: everything but the insides of collapsed nodes.
    fn rows(&self, collapsed: &HashSet<Uuid>) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut i = 0usize;
        while i < self.nodes.len() {
            let n = &self.nodes[i];
            let has_children = n.end as usize > i + 1;
            let expanded = !collapsed.contains(&n.sel.id());
            rows.push(Row {
                depth: n.depth,
                sel: n.sel,
                has_children,
                expanded,
            });
            i = if has_children && !expanded {
                n.end as usize
            } else {
                i + 1
            };
        }
        rows
    }

    /// Rows for a filter: the matches, their ancestors, and the direct children of a
    /// matching host or pool; everything open.
    fn filtered_rows(&self, matched: &[u32]) -> Vec<Row> {
        let n = self.nodes.len();
        let mut hit = vec![false; n];
        for &i in matched {
            if let Some(h) = hit.get_mut(i as usize) {
                *h = true;
            }
        }
        // A node with a matching descendant shows too (children come after parents).
        let mut below = vec![false; n];
        for i in (0..n).rev() {
            let p = self.nodes[i].parent;
            if (hit[i] || below[i]) && p != ROOT {
                below[p as usize] = true;
            }
        }
        let mut rows = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let parent_hit = node.parent != ROOT
                && hit[node.parent as usize]
                && matches!(
                    self.nodes[node.parent as usize].sel,
                    Selection::Host(_) | Selection::Pool(_)
                );
            if hit[i] || below[i] || parent_hit {
                rows.push(Row {
                    depth: node.depth,
                    sel: node.sel,
                    has_children: node.end as usize > i + 1,
                    expanded: true,
                });
            }
        }
        rows
    }
}

/// State of the inventory tree.
#[derive(Debug, Default)]
pub struct TreeView {
    filter: String,
    /// Nodes the user collapsed (everything starts expanded).
    collapsed: HashSet<Uuid>,
    flat: FlatTree,
    flat_for: Option<u64>,
    /// Recent queries and their matches, newest last, for the current [`FlatTree`].
    recent: Vec<(String, Vec<u32>)>,
    rows: Vec<Row>,
    built_for: Option<(u64, String, usize)>,
    collapse_version: usize,
}

impl TreeView {
    fn rebuild(&mut self, inv: &InventoryModel) {
        let needle = self.filter.trim().to_lowercase();
        let key = (inv.layout_generation, needle.clone(), self.collapse_version);
        if self.built_for.as_ref() == Some(&key) {
            return;
        }
        if self.flat_for != Some(inv.layout_generation) {
            self.flat = FlatTree::build(inv);
            self.flat_for = Some(inv.layout_generation);
            self.recent.clear();
        }
        self.rows = if needle.is_empty() {
            self.flat.rows(&self.collapsed)
        } else {
            let matched = self.matches(&needle);
            self.flat.filtered_rows(&matched)
        };
        self.built_for = Some(key);
    }

    /// The matches of `needle`: remembered, refined from the longest remembered query it
    /// contains, or searched afresh.
    fn matches(&mut self, needle: &str) -> Vec<u32> {
        if let Some(i) = self.recent.iter().position(|(q, _)| q == needle) {
            let entry = self.recent.remove(i);
            let m = entry.1.clone();
            self.recent.push(entry);
            return m;
        }
        let base = self
            .recent
            .iter()
            .filter(|(q, _)| needle.contains(q.as_str()))
            .max_by_key(|(q, _)| q.len());
        let m = match base {
            Some((_, prev)) => self.flat.refine(prev, needle),
            None => self.flat.search(needle),
        };
        if self.recent.len() >= REMEMBERED_QUERIES {
            self.recent.remove(0);
        }
        self.recent.push((needle.to_string(), m.clone()));
        m
    }
}

impl View for TreeView {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCtx<'_>) {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            ui.strong("Hosts & Clusters");
        });
        ui.add_space(2.0);
        let l = ui.label("Filter");
        ui.add(
            egui::TextEdit::singleline(&mut self.filter)
                .hint_text("Filter by name")
                .desired_width(f32::INFINITY),
        )
        .labelled_by(l.id);
        ui.separator();

        let inv = &cx.model.inventory;
        self.rebuild(inv);
        if self.rows.is_empty() {
            ui.weak(if self.filter.trim().is_empty() {
                "The inventory is empty."
            } else {
                "Nothing matches the filter."
            });
            return;
        }
        let mut toggle: Option<Uuid> = None;
        egui::ScrollArea::both()
            .auto_shrink([false, false])
            .show_rows(ui, ROW_HEIGHT, self.rows.len(), |ui, range| {
                for row in &self.rows[range] {
                    let name = inv.name_of(row.sel).unwrap_or("");
                    ui.horizontal(|ui| {
                        ui.set_height(ROW_HEIGHT);
                        ui.add_space(f32::from(row.depth) * INDENT);
                        let (rect, resp) =
                            ui.allocate_exact_size(Vec2::splat(14.0), Sense::click());
                        if row.has_children {
                            let verb = if row.expanded { "Collapse" } else { "Expand" };
                            resp.widget_info(|| {
                                egui::WidgetInfo::labeled(
                                    egui::accesskit::Role::Button,
                                    true,
                                    format!("{verb} {name}"),
                                )
                            });
                            let openness = if row.expanded { 1.0 } else { 0.0 };
                            let resp = resp.with_new_rect(rect);
                            egui::collapsing_header::paint_default_icon(ui, openness, &resp);
                            if resp.clicked() {
                                toggle = Some(row.sel.id());
                            }
                        }
                        theme::kind_icon(ui, row.sel, inv);
                        let selected = cx.selection == Some(row.sel);
                        let resp = ui.selectable_label(selected, name);
                        if resp.clicked() {
                            cx.commands.send(Command::Select(row.sel));
                        }
                        context_menu(&resp, row.sel, inv, cx);
                    });
                }
            });
        if let Some(id) = toggle {
            if !self.collapsed.remove(&id) {
                self.collapsed.insert(id);
            }
            self.collapse_version += 1;
        }
    }
}

fn new_pool_item(ui: &mut egui::Ui, target: Option<EditTarget>, cx: &mut ViewCtx<'_>) {
    if let Some(t) = target {
        if ui.button("New Resource Pool…").clicked() {
            cx.commands.send(Command::OpenEditor(t));
            ui.close();
        }
    }
}

fn context_menu(resp: &egui::Response, sel: Selection, inv: &InventoryModel, cx: &mut ViewCtx<'_>) {
    let show_vms = |ui: &mut egui::Ui, cx: &mut ViewCtx<'_>| {
        if ui.button("Show virtual machines").clicked() {
            cx.commands.send(Command::Select(sel));
            cx.commands.send(Command::ShowTab(Tab::VirtualMachines));
            ui.close();
        }
    };
    // A new pool goes into the tree of the standalone host or cluster.
    let new_pool = match sel {
        Selection::Pool(p) => inv.pools.get(&p).map(|x| EditTarget::NewPool {
            owner: x.owner,
            parent: Some(p),
        }),
        Selection::Host(_) | Selection::Cluster(_) => {
            inv.pool_owner(sel).map(|owner| EditTarget::NewPool {
                owner,
                parent: None,
            })
        }
        _ => None,
    };
    match sel {
        Selection::Vm(id) => {
            let power = inv.vms.get(&id).map(|v| v.power_state);
            resp.context_menu(|ui| {
                let on = power.is_some_and(PowerState::has_process);
                let off = power == Some(PowerState::PoweredOff);
                let resumable = off || power == Some(PowerState::Suspended);
                let items = [
                    (Operation::PowerOn, resumable),
                    (Operation::PowerOff, on),
                    // A suspended VM's hard power-off discards its saved state.
                    (
                        Operation::PowerOffHard,
                        on || power == Some(PowerState::Suspended),
                    ),
                    (Operation::Reset, on),
                    (Operation::Suspend, on),
                    (Operation::Pause, power == Some(PowerState::PoweredOn)),
                    (Operation::Unpause, power == Some(PowerState::Paused)),
                    (Operation::Destroy, off),
                ];
                for (op, enabled) in items {
                    if ui
                        .add_enabled(enabled, egui::Button::new(op.label()))
                        .clicked()
                    {
                        cx.commands.send(Command::Select(sel));
                        cx.commands.send(Command::Run(op, id));
                        ui.close();
                    }
                }
                ui.separator();
                if ui.button("Edit Resource Allocation…").clicked() {
                    cx.commands.send(Command::Select(sel));
                    cx.commands.send(Command::OpenEditor(EditTarget::Vm(id)));
                    ui.close();
                }
            });
        }
        Selection::Host(id) => {
            let empty = inv.vms_on_host(id).is_empty();
            resp.context_menu(|ui| {
                show_vms(ui, cx);
                new_pool_item(ui, new_pool, cx);
                if ui
                    .add_enabled(empty, egui::Button::new(Operation::RemoveHost.label()))
                    .on_disabled_hover_text("Only a host without VMs can be removed")
                    .clicked()
                {
                    cx.commands.send(Command::Run(Operation::RemoveHost, id));
                    ui.close();
                }
            });
        }
        Selection::Pool(id) => {
            resp.context_menu(|ui| {
                show_vms(ui, cx);
                new_pool_item(ui, new_pool, cx);
                if ui.button("Edit Settings…").clicked() {
                    cx.commands.send(Command::Select(sel));
                    cx.commands.send(Command::OpenEditor(EditTarget::Pool(id)));
                    ui.close();
                }
                if ui.button("Remove").clicked() {
                    cx.commands.send(Command::RemovePool(id));
                    ui.close();
                }
            });
        }
        Selection::Cluster(_) => {
            resp.context_menu(|ui| {
                show_vms(ui, cx);
                new_pool_item(ui, new_pool, cx);
            });
        }
        Selection::Datacenter(_) => {
            resp.context_menu(|ui| show_vms(ui, cx));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::{
        BootSpec, ConnectionState, DatacenterInfo, Engine, HostInfo, Inventory, Machine, PoolInfo,
        VmInfo, VmSpec,
    };

    fn vm(name: &str, host: Uuid, pool: Option<Uuid>) -> VmInfo {
        VmInfo {
            id: Uuid::new_v4(),
            name: name.into(),
            host: Some(host),
            pool,
            datastore: "datastore1".into(),
            spec: VmSpec {
                vcpus: 1,
                memory_mib: 128,
                engine: Engine::Qemu,
                machine: Machine::Microvm,
                boot: BootSpec {
                    kernel: "k".into(),
                    initrd: None,
                    cmdline: String::new(),
                },
                allocation: Default::default(),
                disks: Vec::new(),
                template: false,
                nics: Vec::new(),
            },
            power_state: PowerState::PoweredOff,
            running_engine: None,
            pid: None,
            created_ms: 0,
        }
    }

    fn names(inv: &InventoryModel, rows: &[Row]) -> Vec<String> {
        rows.iter()
            .map(|r| {
                format!(
                    "{}{}",
                    " ".repeat(r.depth.into()),
                    inv.name_of(r.sel).unwrap_or("?")
                )
            })
            .collect()
    }

    /// A standalone host with pool Prod (holding pool Web with VM web1, and VM db1) and a
    /// VM outside pools.
    fn inventory() -> (InventoryModel, Uuid, Uuid) {
        let dc = Uuid::new_v4();
        let host = HostInfo {
            id: Uuid::new_v4(),
            name: "Host1".into(),
            address: "127.0.0.1:1".into(),
            datacenter: dc,
            cluster: None,
            thumbprint: String::new(),
            connection_state: ConnectionState::Connected,
            state_reason: None,
            facts: None,
        };
        let pool = |name: &str, parent| PoolInfo {
            id: Uuid::new_v4(),
            name: name.into(),
            owner: host.id,
            parent,
            allocation: Default::default(),
        };
        let prod = pool("Prod", None);
        let web = pool("Web", Some(prod.id));
        let inv = InventoryModel::from_snapshot(Inventory {
            datacenters: vec![DatacenterInfo {
                id: dc,
                name: "Datacenter".into(),
            }],
            hosts: vec![host.clone()],
            pools: vec![web.clone(), prod.clone()],
            vms: vec![
                vm("web1", host.id, Some(web.id)),
                vm("db1", host.id, Some(prod.id)),
                vm("loose", host.id, None),
            ],
            ..Default::default()
        });
        (inv, dc, prod.id)
    }

    #[test]
    fn pools_hold_their_vms_and_a_filter_finds_them() {
        let (inv, dc, prod) = inventory();
        let flat = FlatTree::build(&inv);
        let all = flat.rows(&HashSet::new());
        assert_eq!(
            names(&inv, &all),
            [
                "Datacenter",
                " Host1",
                "  Prod",
                "   Web",
                "    web1",
                "   db1",
                "  loose"
            ]
        );
        let mut collapsed = HashSet::from([prod]);
        assert_eq!(
            names(&inv, &flat.rows(&collapsed)),
            ["Datacenter", " Host1", "  Prod", "  loose"]
        );
        collapsed.insert(dc);
        assert_eq!(flat.rows(&collapsed).len(), 1);

        // "web" matches pool Web and VM web1: both with their ancestors.
        let m = flat.search("web");
        assert_eq!(
            names(&inv, &flat.filtered_rows(&m)),
            ["Datacenter", " Host1", "  Prod", "   Web", "    web1"]
        );
        // A matching pool shows its direct children.
        let m = flat.search("prod");
        assert_eq!(
            names(&inv, &flat.filtered_rows(&m)),
            ["Datacenter", " Host1", "  Prod", "   Web", "   db1"]
        );
        // Refining the previous matches gives what a fresh search gives.
        let m = flat.search("w");
        assert_eq!(flat.refine(&m, "web1"), flat.search("web1"));
        assert!(flat.search("nomatch").is_empty());
        assert_eq!(flat.search("CENTER".to_lowercase().as_str()).len(), 1);
    }

    #[test]
    fn typing_and_erasing_reuses_previous_matches() {
        let (inv, _, _) = inventory();
        let mut t = TreeView::default();
        for q in ["w", "we", "web", "web1", "web", "we", "w", ""] {
            t.filter = q.into();
            t.rebuild(&inv);
            let fresh = if q.is_empty() {
                t.flat.rows(&HashSet::new())
            } else {
                t.flat.filtered_rows(&t.flat.search(q))
            };
            assert_eq!(names(&inv, &t.rows), names(&inv, &fresh), "query {q:?}");
        }
        assert_eq!(t.recent.len(), 4, "each query searched once");
    }

    #[test]
    fn live_changes_move_rows_without_a_reload() {
        let (mut inv, _, prod) = inventory();
        let mut t = TreeView::default();
        t.rebuild(&inv);
        let loose = inv
            .vms
            .values()
            .find(|v| v.name == "loose")
            .cloned()
            .expect("vm");
        let mut moved = loose.clone();
        moved.pool = Some(prod);
        inv.apply(strata_shared::model::InventoryChange::Upsert {
            object: Box::new(strata_shared::model::InventoryObject::Vm(moved)),
        });
        t.rebuild(&inv);
        assert_eq!(
            names(&inv, &t.rows),
            [
                "Datacenter",
                " Host1",
                "  Prod",
                "   Web",
                "    web1",
                "   db1",
                "   loose"
            ]
        );
        inv.apply(strata_shared::model::InventoryChange::Remove {
            kind: strata_shared::model::ObjectKind::Pool,
            id: prod,
        });
        t.rebuild(&inv);
        // The server moves a removed pool's children up; the pool Web now sits on the host.
        assert!(names(&inv, &t.rows).contains(&"  Web".to_string()));
    }
}
