//! The inventory panel: four views of the inventory, switched above one shared filter box,
//! each a tree:
//! - Hosts & Clusters: datacenter › cluster › host › resource pool › VM. Under a cluster: its
//!   hosts (with the VMs in no pool), then its resource pools. Under a standalone host: its
//!   pools, then its VMs in no pool. Under a pool: its pools, then its VMs.
//! - VMs & Templates: datacenter › Virtual Machines and, separately, Templates › VM.
//! - Datastores: datacenter › datastore › the VMs whose directory is on it.
//! - Networks: datacenter › the tap names VMs' NICs use › VM, and "No network" for VMs
//!   without NICs.
//!
//! Each view's tree is flattened once per layout change into a pre-order array
//! ([`FlatTree`]) whose lower-cased names sit in one text buffer. A filter is then a single
//! substring search over that buffer, or — when the query only grew, as it does while
//! typing — a re-check of the previous matches only; recent queries are remembered so a
//! backspace costs nothing. Visible rows are rebuilt only when the inventory's layout, the
//! filter or an expansion changes, and drawn with row virtualisation. Views not shown cost
//! nothing: each is built when it is first shown after a change.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use egui::{Sense, Vec2};
use strata_shared::model::VmInfo;
use uuid::Uuid;

use super::super::actions;
use super::super::id_map::{IdBuildHasher, IdMap};
use super::super::model::{natural_cmp, InventoryModel, Selection};
use super::super::{theme, Command, View, ViewCtx};

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

/// The views of the inventory panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InventoryView {
    /// Datacenter › cluster › host › pool › VM.
    #[default]
    HostsAndClusters,
    /// Datacenter › Virtual Machines / Templates › VM.
    VmsAndTemplates,
    /// Datacenter › datastore › VM.
    Datastores,
    /// Datacenter › network › VM.
    Networks,
}

impl InventoryView {
    /// Every view, in the selector's order.
    pub const ALL: [InventoryView; 4] = [
        InventoryView::HostsAndClusters,
        InventoryView::VmsAndTemplates,
        InventoryView::Datastores,
        InventoryView::Networks,
    ];

    /// The selector's label.
    pub fn title(self) -> &'static str {
        match self {
            InventoryView::HostsAndClusters => "Hosts & Clusters",
            InventoryView::VmsAndTemplates => "VMs & Templates",
            InventoryView::Datastores => "Datastores",
            InventoryView::Networks => "Networks",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A node that is not an inventory object: a folder or a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupKind {
    /// The VMs (not templates) of a datacenter.
    Vms {
        /// The datacenter.
        datacenter: Uuid,
    },
    /// The templates of a datacenter.
    Templates {
        /// The datacenter.
        datacenter: Uuid,
    },
    /// The VMs with a NIC on a tap of this name.
    Network {
        /// The datacenter.
        datacenter: Uuid,
        /// The tap name.
        tap: String,
    },
    /// The VMs without NICs.
    NoNetwork {
        /// The datacenter.
        datacenter: Uuid,
    },
}

impl GroupKind {
    /// What the node is called.
    pub fn label(&self) -> &str {
        match self {
            GroupKind::Vms { .. } => "Virtual Machines",
            GroupKind::Templates { .. } => "Templates",
            GroupKind::Network { tap, .. } => tap,
            GroupKind::NoNetwork { .. } => "No network",
        }
    }

    /// A stable id (for remembering that it is collapsed).
    fn key(&self) -> Uuid {
        match self {
            GroupKind::Vms { datacenter } => Uuid::new_v5(datacenter, b"vms"),
            GroupKind::Templates { datacenter } => Uuid::new_v5(datacenter, b"templates"),
            GroupKind::Network { datacenter, tap } => {
                Uuid::new_v5(datacenter, format!("network:{tap}").as_bytes())
            }
            GroupKind::NoNetwork { datacenter } => Uuid::new_v5(datacenter, b"no network"),
        }
    }
}

/// What a node shows: an inventory object, or a group (an index into [`FlatTree::groups`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Object(Selection),
    Group(u32),
}

/// One visible row.
#[derive(Debug, Clone)]
struct Row {
    depth: u8,
    node: NodeKind,
    /// How many nodes its subtree holds (besides itself).
    descendants: u32,
    expanded: bool,
}

/// One node of the flattened tree.
#[derive(Debug, Clone)]
struct Node {
    node: NodeKind,
    depth: u8,
    parent: u32,
    /// One past the last node of this node's subtree.
    end: u32,
    /// Its lower-cased name in [`FlatTree::names`].
    name: Range<u32>,
}

/// A whole tree in pre-order, with lower-cased names in one buffer.
#[derive(Debug, Default)]
struct FlatTree {
    nodes: Vec<Node>,
    names: String,
    groups: Vec<GroupKind>,
}

impl FlatTree {
    fn build(inv: &InventoryModel, view: InventoryView) -> Self {
        let mut t = FlatTree {
            nodes: Vec::with_capacity(inv.vms.len() + inv.hosts.len() + inv.pools.len() + 64),
            names: String::with_capacity((inv.vms.len() + inv.hosts.len()) * 12),
            groups: Vec::new(),
        };
        let mut dcs: Vec<_> = inv.datacenters.values().collect();
        dcs.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        for dc in dcs {
            let d = t.open(
                NodeKind::Object(Selection::Datacenter(dc.id)),
                &dc.name,
                0,
                ROOT,
            );
            match view {
                InventoryView::HostsAndClusters => t.hosts_and_clusters(inv, dc.id, d),
                InventoryView::VmsAndTemplates => t.vms_and_templates(inv, dc.id, d),
                InventoryView::Datastores => t.datastores(inv, dc.id, d),
                InventoryView::Networks => t.networks(inv, dc.id, d),
            }
            t.close(d);
        }
        t
    }

    fn hosts_and_clusters(&mut self, inv: &InventoryModel, dc: Uuid, d: u32) {
        for cl in inv.clusters_in(dc) {
            let c = self.object(Selection::Cluster(cl.id), &cl.name, 1, d);
            for h in inv.hosts_in_cluster(cl.id) {
                let hi = self.object(Selection::Host(h.id), &h.name, 2, c);
                for v in inv.root_vms_on_host(h.id) {
                    self.object(Selection::Vm(v.id), &v.name, 3, hi);
                }
                self.close(hi);
            }
            self.pools(inv, cl.id, 2, c);
            self.close(c);
        }
        for h in inv.standalone_hosts(dc) {
            let hi = self.object(Selection::Host(h.id), &h.name, 1, d);
            self.pools(inv, h.id, 2, hi);
            for v in inv.root_vms_on_host(h.id) {
                self.object(Selection::Vm(v.id), &v.name, 2, hi);
            }
            self.close(hi);
        }
    }

    /// The VMs of a datacenter, sorted by name (the model keeps that order).
    fn dc_vms<'a>(inv: &'a InventoryModel, dc: Uuid) -> impl Iterator<Item = &'a VmInfo> + 'a {
        // With one datacenter every host is in it.
        let single = inv.datacenters.len() == 1;
        inv.vms_by_name()
            .iter()
            .filter_map(|id| inv.vms.get(id))
            .filter(move |v| match v.host {
                None => false,
                Some(_) if single => true,
                Some(h) => inv.hosts.get(&h).is_some_and(|h| h.datacenter == dc),
            })
    }

    fn vms_and_templates(&mut self, inv: &InventoryModel, dc: Uuid, d: u32) {
        // One pass over the VMs (each read once), then the two folders.
        let mut vms = Vec::new();
        let mut templates = Vec::new();
        for v in Self::dc_vms(inv, dc) {
            let list = if v.spec.template {
                &mut templates
            } else {
                &mut vms
            };
            list.push((v.id, v.name.as_str()));
        }
        for (kind, list) in [
            (GroupKind::Vms { datacenter: dc }, vms),
            (GroupKind::Templates { datacenter: dc }, templates),
        ] {
            let g = self.group(kind, 1, d);
            self.vm_nodes(&list, 2, g);
            self.close(g);
        }
    }

    /// A node per VM `(id, name)`, in the order given.
    fn vm_nodes(&mut self, vms: &[(Uuid, &str)], depth: u8, parent: u32) {
        for (id, name) in vms {
            self.object(Selection::Vm(*id), name, depth, parent);
        }
    }

    fn datastores(&mut self, inv: &InventoryModel, dc: Uuid, d: u32) {
        let stores = inv.datastores_in(dc);
        // Which datastore a VM's (host, datastore name) is; one pass over the VMs in name
        // order then fills every datastore already sorted.
        let mut mounts: IdMap<Vec<(&str, usize)>> = IdMap::default();
        for (i, ds) in stores.iter().enumerate() {
            for h in &ds.hosts {
                mounts.entry(*h).or_default().push((ds.name.as_str(), i));
            }
        }
        let mut lists: Vec<Vec<(Uuid, &str)>> = vec![Vec::new(); stores.len()];
        for v in Self::dc_vms(inv, dc) {
            let Some(on_host) = v.host.and_then(|h| mounts.get(&h)) else {
                continue;
            };
            if let Some((_, i)) = on_host.iter().find(|(n, _)| *n == v.datastore) {
                lists[*i].push((v.id, v.name.as_str()));
            }
        }
        for (ds, vms) in stores.iter().zip(lists) {
            let di = self.object(Selection::Datastore(ds.id), &ds.name, 1, d);
            self.vm_nodes(&vms, 2, di);
            self.close(di);
        }
    }

    fn networks(&mut self, inv: &InventoryModel, dc: Uuid, d: u32) {
        let mut by_tap: HashMap<&str, Vec<(Uuid, &str)>, IdBuildHasher> = HashMap::default();
        let mut none = Vec::new();
        for v in Self::dc_vms(inv, dc) {
            let vm = (v.id, v.name.as_str());
            match v.spec.nics.as_slice() {
                [] => none.push(vm),
                nics => {
                    for n in nics {
                        by_tap.entry(n.tap.as_str()).or_default().push(vm);
                    }
                }
            }
        }
        let mut taps: Vec<(&str, Vec<(Uuid, &str)>)> = by_tap.into_iter().collect();
        taps.sort_by(|a, b| natural_cmp(a.0, b.0));
        for (tap, vms) in taps {
            let g = self.group(
                GroupKind::Network {
                    datacenter: dc,
                    tap: tap.to_string(),
                },
                1,
                d,
            );
            self.vm_nodes(&vms, 2, g);
            self.close(g);
        }
        let g = self.group(GroupKind::NoNetwork { datacenter: dc }, 1, d);
        self.vm_nodes(&none, 2, g);
        self.close(g);
    }

    /// The pools under `parent` (a pool, or a host or cluster for top-level pools), each
    /// with its own pools and VMs.
    fn pools(&mut self, inv: &InventoryModel, parent: Uuid, depth: u8, parent_node: u32) {
        if depth > MAX_POOL_DEPTH {
            return;
        }
        for id in inv.child_pools(parent) {
            let Some(p) = inv.pools.get(id) else { continue };
            let pi = self.object(Selection::Pool(p.id), &p.name, depth, parent_node);
            self.pools(inv, p.id, depth + 1, pi);
            for v in inv.vms_in_pool(p.id).iter().filter_map(|v| inv.vms.get(v)) {
                self.object(Selection::Vm(v.id), &v.name, depth + 1, pi);
            }
            self.close(pi);
        }
    }

    fn object(&mut self, sel: Selection, name: &str, depth: u8, parent: u32) -> u32 {
        self.open(NodeKind::Object(sel), name, depth, parent)
    }

    fn group(&mut self, kind: GroupKind, depth: u8, parent: u32) -> u32 {
        let i = self.groups.len() as u32;
        let label = kind.label().to_string();
        self.groups.push(kind);
        self.open(NodeKind::Group(i), &label, depth, parent)
    }

    fn open(&mut self, node: NodeKind, name: &str, depth: u8, parent: u32) -> u32 {
        let start = self.names.len() as u32;
        if name.is_ascii() {
            self.names.push_str(name);
            if let Some(tail) = self.names.get_mut(start as usize..) {
                tail.make_ascii_lowercase();
            }
        } else {
            self.names.push_str(&name.to_lowercase());
        }
        let end = self.names.len() as u32;
        self.names.push(SEP);
        let i = self.nodes.len() as u32;
        self.nodes.push(Node {
            node,
            depth,
            parent,
            end: i + 1,
            name: start..end,
        });
        i
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

    /// The id a node is remembered by when collapsed.
    fn key(&self, node: NodeKind) -> Uuid {
        match node {
            NodeKind::Object(sel) => sel.id(),
            NodeKind::Group(g) => self
                .groups
                .get(g as usize)
                .map(GroupKind::key)
                .unwrap_or_default(),
        }
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
            let descendants = n.end - i as u32 - 1;
            let expanded = !collapsed.contains(&self.key(n.node));
            rows.push(Row {
                depth: n.depth,
                node: n.node,
                descendants,
                expanded,
            });
            i = if descendants > 0 && !expanded {
                n.end as usize
            } else {
                i + 1
            };
        }
        rows
    }

    /// Rows for a filter: the matches, their ancestors, and the direct children of a
    /// matching host, pool, datastore, folder or network; everything open.
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
                    self.nodes[node.parent as usize].node,
                    NodeKind::Object(
                        Selection::Host(_) | Selection::Pool(_) | Selection::Datastore(_)
                    ) | NodeKind::Group(_)
                );
            if hit[i] || below[i] || parent_hit {
                rows.push(Row {
                    depth: node.depth,
                    node: node.node,
                    descendants: node.end - i as u32 - 1,
                    expanded: true,
                });
            }
        }
        rows
    }
}

/// One view's tree and what is open in it.
#[derive(Debug, Default)]
struct ViewState {
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

/// State of the inventory panel.
#[derive(Debug, Default)]
pub struct TreeView {
    filter: String,
    view: InventoryView,
    states: [ViewState; 4],
}

impl TreeView {
    /// The view shown.
    pub fn view(&self) -> InventoryView {
        self.view
    }

    /// Shows another view (the filter stays).
    pub fn set_view(&mut self, view: InventoryView) {
        self.view = view;
    }

    #[cfg(test)]
    fn state(&self) -> &ViewState {
        &self.states[self.view.index()]
    }

    fn rebuild(&mut self, inv: &InventoryModel) {
        let needle = self.filter.trim().to_lowercase();
        let view = self.view;
        let st = &mut self.states[view.index()];
        let key = (inv.layout_generation, needle.clone(), st.collapse_version);
        if st.built_for.as_ref() == Some(&key) {
            return;
        }
        if st.flat_for != Some(inv.layout_generation) {
            st.flat = FlatTree::build(inv, view);
            st.flat_for = Some(inv.layout_generation);
            st.recent.clear();
        }
        st.rows = if needle.is_empty() {
            st.flat.rows(&st.collapsed)
        } else {
            let matched = st.matches(&needle);
            st.flat.filtered_rows(&matched)
        };
        st.built_for = Some(key);
    }
}

impl ViewState {
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
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().item_spacing.x = 4.0;
            for v in InventoryView::ALL {
                if ui.selectable_label(self.view == v, v.title()).clicked() {
                    self.view = v;
                }
            }
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
        let st = &self.states[self.view.index()];
        if st.rows.is_empty() {
            ui.weak(if self.filter.trim().is_empty() {
                "The inventory is empty."
            } else {
                "Nothing matches the filter."
            });
            return;
        }
        let mut toggle: Option<Uuid> = None;
        egui::ScrollArea::both()
            .id_salt(("inventory_tree", self.view.index()))
            .auto_shrink([false, false])
            .show_rows(ui, ROW_HEIGHT, st.rows.len(), |ui, range| {
                for row in &st.rows[range] {
                    ui.horizontal(|ui| {
                        ui.set_height(ROW_HEIGHT);
                        if let Some(key) = draw_row(ui, row, &st.flat, inv, cx) {
                            toggle = Some(key);
                        }
                    });
                }
            });
        if let Some(id) = toggle {
            let st = &mut self.states[self.view.index()];
            if !st.collapsed.remove(&id) {
                st.collapsed.insert(id);
            }
            st.collapse_version += 1;
        }
    }
}

/// Draws one row; returns the key of a node whose expansion the user toggled.
fn draw_row(
    ui: &mut egui::Ui,
    row: &Row,
    flat: &FlatTree,
    inv: &InventoryModel,
    cx: &mut ViewCtx<'_>,
) -> Option<Uuid> {
    let mut toggle = None;
    let name = match row.node {
        NodeKind::Object(sel) => inv.name_of(sel).unwrap_or(""),
        NodeKind::Group(g) => flat
            .groups
            .get(g as usize)
            .map(GroupKind::label)
            .unwrap_or(""),
    };
    ui.add_space(f32::from(row.depth) * INDENT);
    let (rect, resp) = ui.allocate_exact_size(Vec2::splat(14.0), Sense::click());
    if row.descendants > 0 {
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
            toggle = Some(flat.key(row.node));
        }
    }
    match row.node {
        NodeKind::Object(sel) => {
            theme::kind_icon(ui, sel, inv);
            let selected = cx.selection == Some(sel);
            let resp = ui.selectable_label(selected, name);
            if resp.clicked() {
                cx.commands.send(Command::Select(sel));
            }
            resp.context_menu(|ui| actions::object_menu(ui, sel, inv, cx));
            super::alarms::badge(ui, &cx.model.alarms, sel.id());
            if let Selection::Datastore(id) = sel {
                if let Some(d) = inv.datastores.get(&id) {
                    let (color, text) = theme::datastore_state(d);
                    if !d.inaccessible_on.is_empty() {
                        ui.colored_label(color, text);
                    }
                }
            }
        }
        NodeKind::Group(g) => {
            let Some(kind) = flat.groups.get(g as usize) else {
                return toggle;
            };
            let (shape, color) = match kind {
                GroupKind::Network { .. } => (theme::Shape::Network, theme::NETWORK),
                GroupKind::NoNetwork { .. } => (theme::Shape::Network, theme::OFF),
                _ => (theme::Shape::Folder, theme::FOLDER),
            };
            theme::icon(ui, shape, color);
            let resp = ui.selectable_label(false, name);
            if resp.clicked() && row.descendants > 0 {
                toggle = Some(flat.key(row.node));
            }
            resp.context_menu(|ui| actions::group_menu(ui, kind, inv, cx));
            ui.weak(format!("({})", row.descendants));
        }
    }
    toggle
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::{
        ConnectionState, DatacenterInfo, DatastoreInfo, HostInfo, Inventory, NicSpec, PoolInfo,
        PowerState, VmInfo,
    };

    fn vm(name: &str, host: Uuid, pool: Option<Uuid>) -> VmInfo {
        VmInfo {
            pool,
            ..crate::app::test_fixtures::vm(name, host)
        }
    }

    fn names(inv: &InventoryModel, flat: &FlatTree, rows: &[Row]) -> Vec<String> {
        rows.iter()
            .map(|r| {
                let name = match r.node {
                    NodeKind::Object(sel) => inv.name_of(sel).unwrap_or("?"),
                    NodeKind::Group(g) => flat.groups[g as usize].label(),
                };
                format!("{}{}", " ".repeat(r.depth.into()), name)
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
        let flat = FlatTree::build(&inv, InventoryView::HostsAndClusters);
        let all = flat.rows(&HashSet::new());
        assert_eq!(
            names(&inv, &flat, &all),
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
            names(&inv, &flat, &flat.rows(&collapsed)),
            ["Datacenter", " Host1", "  Prod", "  loose"]
        );
        collapsed.insert(dc);
        assert_eq!(flat.rows(&collapsed).len(), 1);

        // "web" matches pool Web and VM web1: both with their ancestors.
        let m = flat.search("web");
        assert_eq!(
            names(&inv, &flat, &flat.filtered_rows(&m)),
            ["Datacenter", " Host1", "  Prod", "   Web", "    web1"]
        );
        // A matching pool shows its direct children.
        let m = flat.search("prod");
        assert_eq!(
            names(&inv, &flat, &flat.filtered_rows(&m)),
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
                t.state().flat.rows(&HashSet::new())
            } else {
                t.state().flat.filtered_rows(&t.state().flat.search(q))
            };
            assert_eq!(
                names(&inv, &t.state().flat, &t.state().rows),
                names(&inv, &t.state().flat, &fresh),
                "query {q:?}"
            );
        }
        assert_eq!(t.state().recent.len(), 4, "each query searched once");
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
            names(&inv, &t.state().flat, &t.state().rows),
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
        assert!(names(&inv, &t.state().flat, &t.state().rows).contains(&"  Web".to_string()));
    }

    #[test]
    fn the_other_views_group_vms_by_kind_datastore_and_network() {
        let (mut inv, dc, _) = inventory();
        let host = *inv.hosts.keys().next().unwrap();
        let mut add = |name: &str, f: &dyn Fn(&mut VmInfo)| {
            let mut v = vm(name, host, None);
            f(&mut v);
            inv.apply(strata_shared::model::InventoryChange::Upsert {
                object: Box::new(strata_shared::model::InventoryObject::Vm(v)),
            });
        };
        let nic = |tap: &str| NicSpec {
            tap: tap.into(),
            mac: None,
        };
        add("base-template", &|v| v.spec.template = true);
        add("app10", &|v| {
            v.spec.nics = vec![nic("tap-web"), nic("tap-db")]
        });
        add("app2", &|v| {
            v.spec.nics = vec![nic("tap-web")];
            v.datastore = "nfs".into();
        });
        for (name, inaccessible) in [("datastore1", false), ("nfs", true)] {
            inv.apply(strata_shared::model::InventoryChange::Upsert {
                object: Box::new(strata_shared::model::InventoryObject::Datastore(
                    DatastoreInfo {
                        id: Uuid::new_v4(),
                        name: name.into(),
                        datacenter: dc,
                        capacity_bytes: 1 << 30,
                        free_bytes: 1 << 29,
                        hosts: vec![host],
                        inaccessible_on: if inaccessible {
                            vec![strata_shared::model::DatastoreProblem {
                                host,
                                problem: "gone".into(),
                            }]
                        } else {
                            Vec::new()
                        },
                    },
                )),
            });
        }
        let view = |v: InventoryView| {
            let flat = FlatTree::build(&inv, v);
            names(&inv, &flat, &flat.rows(&HashSet::new()))
        };
        assert_eq!(
            view(InventoryView::VmsAndTemplates),
            [
                "Datacenter",
                " Virtual Machines",
                "  app2",
                "  app10",
                "  db1",
                "  loose",
                "  web1",
                " Templates",
                "  base-template"
            ]
        );
        let ds = view(InventoryView::Datastores);
        assert_eq!(ds[1], " datastore1");
        assert_eq!(
            &ds[2..7],
            ["  app10", "  base-template", "  db1", "  loose", "  web1"]
        );
        assert_eq!(&ds[7..], [" nfs", "  app2"]);
        assert_eq!(
            view(InventoryView::Networks),
            [
                "Datacenter",
                " tap-db",
                "  app10",
                " tap-web",
                "  app2",
                "  app10",
                " No network",
                "  base-template",
                "  db1",
                "  loose",
                "  web1"
            ]
        );
        // The filter finds groups (and shows what they hold) and VMs in every view.
        let flat = FlatTree::build(&inv, InventoryView::VmsAndTemplates);
        assert_eq!(
            names(&inv, &flat, &flat.filtered_rows(&flat.search("templ"))),
            ["Datacenter", " Templates", "  base-template"]
        );
        let flat = FlatTree::build(&inv, InventoryView::Networks);
        assert_eq!(
            names(&inv, &flat, &flat.filtered_rows(&flat.search("app2"))),
            ["Datacenter", " tap-web", "  app2"]
        );
        // Groups collapse like objects.
        let nonet = flat
            .nodes
            .iter()
            .find(|n| matches!(n.node, NodeKind::Group(g) if flat.groups[g as usize] == GroupKind::NoNetwork { datacenter: dc }))
            .map(|n| flat.key(n.node))
            .unwrap();
        assert_eq!(flat.rows(&HashSet::from([nonet])).len(), 7);
        // Power state changes do not change the trees.
        let id = inv.vms.values().find(|v| v.name == "web1").unwrap().id;
        let mut on = inv.vms[&id].clone();
        on.power_state = PowerState::PoweredOn;
        let before = inv.layout_generation;
        inv.apply(strata_shared::model::InventoryChange::Upsert {
            object: Box::new(strata_shared::model::InventoryObject::Vm(on)),
        });
        assert_eq!(inv.layout_generation, before);
    }
}
