//! The resource pool editor: a window that creates a resource pool, edits one, or edits a
//! VM's resource allocation. CPU and memory each have shares, a reservation (expandable for
//! pools) and a limit. What the parent can still give is shown live from `pool.usage` (the
//! app fetches it on the network side); values that cannot work are refused before anything
//! is sent, with the reason next to the field and OK disabled. The server's answer comes
//! back as [`EditorState::finished`].

use strata_shared::model::{
    validate_name, Allocation, ObjectKind, ObjectRef, PoolCreateParams, PoolUpdateParams,
    PowerState, Resource, ResourceAllocation, Shares, SharesLevel, VmAllocationParams,
};
use uuid::Uuid;

use super::super::model::{InventoryModel, UsageCache};
use super::super::net::PoolOp;
use super::super::theme;
use super::form;

/// Largest value the API takes for a reservation or a limit (2^40).
const MAX_VALUE: u64 = 1 << 40;
/// Custom shares range.
const SHARES_RANGE: std::ops::RangeInclusive<u64> = 1..=1_000_000;

/// What the editor changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditTarget {
    /// A new pool in the tree of a standalone host or cluster.
    NewPool {
        /// The standalone host or cluster.
        owner: Uuid,
        /// Parent pool; none = directly under the owner.
        parent: Option<Uuid>,
    },
    /// An existing pool.
    Pool(Uuid),
    /// A VM's allocation.
    Vm(Uuid),
}

/// The text fields and choices of one resource, as typed.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceForm {
    /// Reservation, as typed.
    pub reservation: String,
    /// Limit, as typed (ignored when unlimited).
    pub limit: String,
    /// No limit.
    pub unlimited: bool,
    /// Share level.
    pub shares: SharesLevel,
    /// Custom shares, as typed.
    pub custom: String,
    /// Expandable reservation (pools only).
    pub expandable: bool,
}

impl ResourceForm {
    /// The form showing an allocation.
    pub fn from_allocation(a: &Allocation) -> Self {
        ResourceForm {
            reservation: a.reservation.to_string(),
            limit: a.limit.map(|l| l.to_string()).unwrap_or_default(),
            unlimited: a.limit.is_none(),
            shares: a.shares.level,
            custom: a.shares.custom.unwrap_or(4000).to_string(),
            expandable: a.expandable_reservation,
        }
    }
}

/// What the parent can give one resource of the edited object, from `pool.usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    /// The most the object may reserve: what its parent has unreserved plus what the object
    /// already takes from it.
    pub available: u64,
    /// What the object's own children reserve (pools only).
    pub children_need: u64,
}

/// Why a resource's fields cannot be sent, per field, in words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors {
    /// Next to the reservation.
    pub reservation: Option<String>,
    /// Next to the limit.
    pub limit: Option<String>,
    /// Next to the shares.
    pub shares: Option<String>,
}

impl FieldErrors {
    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.reservation.is_none() && self.limit.is_none() && self.shares.is_none()
    }
}

/// How one resource's checks came out: the allocation when it can be sent, the errors
/// otherwise, and a warning that does not block (a powered-off VM's reservation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// The allocation, when every field is valid.
    pub allocation: Option<Allocation>,
    /// Field errors.
    pub errors: FieldErrors,
    /// A note that does not block OK.
    pub warning: Option<String>,
}

fn parse_amount(text: &str, what: &str, unit: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("Enter the {what} in {unit}"));
    }
    if let Some(rest) = t.strip_prefix('-') {
        if rest.trim().parse::<u64>().is_ok() {
            return Err(format!("The {what} cannot be negative"));
        }
    }
    let v: u64 = t
        .parse()
        .map_err(|_| format!("{t:?} is not a whole number of {unit}"))?;
    if v > MAX_VALUE {
        return Err(format!("The {what} can be at most {MAX_VALUE} {unit}"));
    }
    Ok(v)
}

/// Checks one resource's fields. `headroom` is what the parent can give (none while it is
/// unknown: the server still checks); `binding` says whether exceeding it is an error (a
/// powered-off VM only reserves at power-on, so there it is a warning).
pub fn check_resource(
    form: &ResourceForm,
    resource: Resource,
    is_pool: bool,
    headroom: Option<Headroom>,
    binding: bool,
    parent_name: &str,
) -> Checked {
    let unit = resource.unit();
    let mut out = Checked::default();
    let reservation = parse_amount(&form.reservation, "reservation", unit)
        .map_err(|e| out.errors.reservation = Some(e))
        .ok();
    let limit = if form.unlimited {
        Some(None)
    } else if form.limit.trim().is_empty() {
        out.errors.limit = Some(format!("Enter a limit in {unit}, or tick Unlimited"));
        None
    } else {
        parse_amount(&form.limit, "limit", unit)
            .map_err(|e| out.errors.limit = Some(e))
            .ok()
            .map(Some)
    };
    let custom = if form.shares == SharesLevel::Custom {
        match form.custom.trim().parse::<u64>() {
            Ok(v) if SHARES_RANGE.contains(&v) => u32::try_from(v).ok(),
            _ => {
                out.errors.shares = Some(format!(
                    "Custom shares must be a whole number from {} to {}",
                    SHARES_RANGE.start(),
                    SHARES_RANGE.end()
                ));
                None
            }
        }
    } else {
        None
    };
    if let (Some(r), Some(Some(l))) = (reservation, limit) {
        if r > l {
            out.errors.reservation = Some(format!(
                "The reservation ({r} {unit}) is above the limit ({l} {unit})"
            ));
        }
    }
    let expandable = is_pool && form.expandable;
    if let (Some(r), Some(h)) = (reservation, headroom) {
        if r > h.available {
            let msg = format!(
                "Only {} {unit} can be reserved: that is what {parent_name} has unreserved",
                h.available
            );
            if binding {
                if out.errors.reservation.is_none() {
                    out.errors.reservation = Some(msg);
                }
            } else {
                out.warning = Some(format!("Powering the VM on will be refused. {msg}."));
            }
        }
        if is_pool && h.children_need > 0 {
            if !expandable && r < h.children_need && out.errors.reservation.is_none() {
                out.errors.reservation = Some(format!(
                    "Its pools and VMs already reserve {} {unit}: reserve at least that, or \
                     make the reservation expandable",
                    h.children_need
                ));
            }
            if let Some(Some(l)) = limit {
                if l < h.children_need && out.errors.limit.is_none() {
                    out.errors.limit = Some(format!(
                        "Its pools and VMs already reserve {} {unit}, more than this limit",
                        h.children_need
                    ));
                }
            }
        }
    }
    if out.errors.is_empty() {
        if let (Some(r), Some(l)) = (reservation, limit) {
            out.allocation = Some(Allocation {
                reservation: r,
                limit: l,
                shares: Shares {
                    level: form.shares,
                    custom,
                },
                expandable_reservation: expandable,
            });
        }
    }
    out
}

/// Checks a pool name: the API's rules, and no sibling with the same name.
pub fn check_name(
    name: &str,
    inv: &InventoryModel,
    sibling_parent: Uuid,
    itself: Option<Uuid>,
) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("Enter a name".into());
    }
    validate_name("resource pool", name).map_err(|e| {
        let mut e = e;
        if let Some(first) = e.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        e
    })?;
    let taken = inv
        .child_pools(sibling_parent)
        .iter()
        .filter(|id| Some(**id) != itself)
        .filter_map(|id| inv.pools.get(id))
        .any(|p| p.name == name);
    if taken {
        return Err(format!("A resource pool named {name} is already there"));
    }
    Ok(())
}

/// The editor's answer after a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum EditorAction {
    /// Send this change.
    Submit {
        /// The change.
        op: Box<PoolOp>,
        /// In words, for Recent Tasks.
        label: String,
        /// The object it is about.
        target: Option<ObjectRef>,
    },
    /// Close without changing anything.
    Cancel,
}

/// The open editor.
#[derive(Debug, Clone)]
pub struct EditorState {
    /// What it edits.
    pub target: EditTarget,
    /// Pool name, as typed (pools only).
    pub name: String,
    /// CPU fields.
    pub cpu: ResourceForm,
    /// Memory fields.
    pub memory: ResourceForm,
    /// The server's refusal of the last OK, in words.
    pub server_error: Option<String>,
    /// Token of the change sent and not yet answered.
    pub pending: Option<u64>,
}

/// Where the edited object sits: its tree's owner, its parent node (the owner for the
/// root) and the parent in words.
struct Place {
    owner: Uuid,
    parent_node: Uuid,
    parent_name: String,
    /// The object's own id (none for a new pool).
    itself: Option<Uuid>,
}

impl EditorState {
    /// Opens the editor on `target`, filled from the inventory; `None` when the object is
    /// gone.
    pub fn open(target: EditTarget, inv: &InventoryModel) -> Option<Self> {
        let (name, alloc) = match target {
            EditTarget::NewPool { .. } => (String::new(), ResourceAllocation::default()),
            EditTarget::Pool(id) => {
                let p = inv.pools.get(&id)?;
                (p.name.clone(), p.allocation)
            }
            EditTarget::Vm(id) => {
                let v = inv.vms.get(&id)?;
                (v.name.clone(), v.spec.allocation)
            }
        };
        Some(EditorState {
            target,
            name,
            cpu: ResourceForm::from_allocation(&alloc.cpu),
            memory: ResourceForm::from_allocation(&alloc.memory),
            server_error: None,
            pending: None,
        })
    }

    /// The standalone host or cluster whose usage the editor shows.
    pub fn owner(&self, inv: &InventoryModel) -> Option<Uuid> {
        self.place(inv).map(|p| p.owner)
    }

    fn is_pool(&self) -> bool {
        !matches!(self.target, EditTarget::Vm(_))
    }

    fn place(&self, inv: &InventoryModel) -> Option<Place> {
        let (owner, parent, itself) = match self.target {
            EditTarget::NewPool { owner, parent } => (owner, parent, None),
            EditTarget::Pool(id) => {
                let p = inv.pools.get(&id)?;
                (p.owner, p.parent, Some(id))
            }
            EditTarget::Vm(id) => {
                let v = inv.vms.get(&id)?;
                let owner = inv.pool_owner(super::super::model::Selection::Vm(id))?;
                let parent = if inv.vm_in_root(v) { None } else { v.pool };
                (owner, parent, Some(id))
            }
        };
        Some(Place {
            owner,
            parent_node: parent.unwrap_or(owner),
            parent_name: inv.pool_parent_name(owner, parent),
            itself,
        })
    }

    /// What the parent can give one resource, or `None` while unknown.
    fn headroom(
        &self,
        inv: &InventoryModel,
        usage: &UsageCache,
        place: &Place,
        r: Resource,
    ) -> Option<Headroom> {
        let pick = |u: &strata_shared::model::PoolUsage| match r {
            Resource::Cpu => u.cpu,
            Resource::Memory => u.memory,
        };
        let parent = pick(usage.node(place.owner, place.parent_node)?);
        let (takes, children_need) = match self.target {
            EditTarget::NewPool { .. } => (0, 0),
            EditTarget::Pool(id) => {
                let own = pick(usage.node(place.owner, id)?);
                let expandable = inv.pools.get(&id).is_some_and(|p| match r {
                    Resource::Cpu => p.allocation.cpu.expandable_reservation,
                    Resource::Memory => p.allocation.memory.expandable_reservation,
                });
                let takes = if expandable {
                    own.reservation.max(own.reserved_by_children)
                } else {
                    own.reservation
                };
                (takes, own.reserved_by_children)
            }
            EditTarget::Vm(id) => {
                let v = inv.vms.get(&id)?;
                let a = match r {
                    Resource::Cpu => v.spec.allocation.cpu,
                    Resource::Memory => v.spec.allocation.memory,
                };
                let on = v.power_state == PowerState::PoweredOn;
                (if on { a.reservation } else { 0 }, 0)
            }
        };
        Some(Headroom {
            available: parent.unreserved_for_children.saturating_add(takes),
            children_need,
        })
    }

    /// Runs every check; `Ok` carries what OK would send.
    pub fn validate(
        &self,
        inv: &InventoryModel,
        usage: &UsageCache,
    ) -> (Option<String>, Checked, Checked) {
        let Some(place) = self.place(inv) else {
            let gone = Checked::default();
            return (
                Some("The object no longer exists".into()),
                gone.clone(),
                gone,
            );
        };
        let name_error = if self.is_pool() {
            check_name(&self.name, inv, place.parent_node, place.itself).err()
        } else {
            None
        };
        let binding = match self.target {
            EditTarget::Vm(id) => inv
                .vms
                .get(&id)
                .is_some_and(|v| v.power_state == PowerState::PoweredOn),
            _ => true,
        };
        let check = |form: &ResourceForm, r: Resource| {
            check_resource(
                form,
                r,
                self.is_pool(),
                self.headroom(inv, usage, &place, r),
                binding,
                &place.parent_name,
            )
        };
        (
            name_error,
            check(&self.cpu, Resource::Cpu),
            check(&self.memory, Resource::Memory),
        )
    }

    /// The change OK sends, when everything is valid.
    pub fn submission(&self, inv: &InventoryModel, usage: &UsageCache) -> Option<EditorAction> {
        let (name_error, cpu, memory) = self.validate(inv, usage);
        if name_error.is_some() {
            return None;
        }
        let allocation = ResourceAllocation {
            cpu: cpu.allocation?,
            memory: memory.allocation?,
        };
        let obj = |kind, id, name: &str| ObjectRef {
            kind,
            id,
            name: name.to_string(),
        };
        Some(match self.target {
            EditTarget::NewPool { owner, parent } => {
                let target = match parent {
                    Some(p) => inv.pools.get(&p).map(|x| obj(ObjectKind::Pool, p, &x.name)),
                    None => inv
                        .clusters
                        .get(&owner)
                        .map(|c| obj(ObjectKind::Cluster, owner, &c.name))
                        .or_else(|| {
                            inv.hosts
                                .get(&owner)
                                .map(|h| obj(ObjectKind::Host, owner, &h.name))
                        }),
                };
                EditorAction::Submit {
                    op: Box::new(PoolOp::Create(PoolCreateParams {
                        name: self.name.clone(),
                        owner: parent.is_none().then_some(owner),
                        parent,
                        allocation,
                    })),
                    label: format!("Create resource pool {}", self.name),
                    target,
                }
            }
            EditTarget::Pool(id) => {
                let old = inv.pools.get(&id)?;
                EditorAction::Submit {
                    op: Box::new(PoolOp::Update(PoolUpdateParams {
                        id,
                        name: (old.name != self.name).then(|| self.name.clone()),
                        allocation: Some(allocation),
                    })),
                    label: format!("Edit resource pool {}", self.name),
                    target: Some(obj(ObjectKind::Pool, id, &old.name)),
                }
            }
            EditTarget::Vm(id) => {
                let v = inv.vms.get(&id)?;
                EditorAction::Submit {
                    op: Box::new(PoolOp::VmAllocation(VmAllocationParams { id, allocation })),
                    label: "Edit VM resource allocation".into(),
                    target: Some(obj(ObjectKind::Vm, id, &v.name)),
                }
            }
        })
    }

    /// The server answered the change sent with `token`: `true` when the editor should
    /// close.
    pub fn finished(&mut self, token: u64, result: &Result<(), String>) -> bool {
        if self.pending != Some(token) {
            return false;
        }
        self.pending = None;
        match result {
            Ok(()) => true,
            Err(e) => {
                self.server_error = Some(e.clone());
                false
            }
        }
    }

    fn title(&self, inv: &InventoryModel) -> String {
        match self.target {
            EditTarget::NewPool { .. } => "New Resource Pool".into(),
            EditTarget::Pool(id) => format!(
                "Edit Resource Pool {}",
                inv.pools.get(&id).map(|p| p.name.as_str()).unwrap_or("")
            ),
            EditTarget::Vm(id) => format!(
                "Edit Resource Allocation of {}",
                inv.vms.get(&id).map(|v| v.name.as_str()).unwrap_or("")
            ),
        }
    }

    /// Draws the window; returns what the user decided this frame.
    pub fn show(
        &mut self,
        ctx: &egui::Context,
        inv: &InventoryModel,
        usage: &UsageCache,
    ) -> Option<EditorAction> {
        let mut action = None;
        let (name_error, cpu, memory) = self.validate(inv, usage);
        let place = self.place(inv);
        form::dialog(ctx, self.title(inv), "pool_editor", 620.0, |ui| {
            if let Some(place) = &place {
                ui.horizontal(|ui| {
                    ui.weak(match self.target {
                        EditTarget::NewPool { .. } => "Created in",
                        _ => "In",
                    });
                    ui.label(&place.parent_name);
                });
                self.capacity_line(ui, usage, place);
            }
            if self.is_pool() {
                egui::Grid::new("pool_editor_name")
                    .num_columns(3)
                    .min_col_width(130.0)
                    .spacing([10.0, 6.0])
                    .show(ui, |ui| {
                        let l = ui.label("Name");
                        ui.add(egui::TextEdit::singleline(&mut self.name).desired_width(200.0))
                            .labelled_by(l.id);
                        error_text(ui, name_error.as_deref());
                        ui.end_row();
                    });
            }
            ui.add_space(6.0);
            let is_pool = self.is_pool();
            resource_section(ui, "CPU", Resource::Cpu, &mut self.cpu, &cpu, is_pool);
            resource_section(
                ui,
                "Memory",
                Resource::Memory,
                &mut self.memory,
                &memory,
                is_pool,
            );
            if let Some(e) = &self.server_error {
                egui::Frame::new()
                    .fill(theme::ERROR_BG)
                    .inner_margin(6.0)
                    .corner_radius(4.0)
                    .show(ui, |ui| {
                        ui.set_width(ui.available_width());
                        ui.colored_label(theme::ERROR, e);
                    });
            }
            ui.add_space(4.0);
            ui.horizontal(|ui| {
                let valid =
                    name_error.is_none() && cpu.allocation.is_some() && memory.allocation.is_some();
                let ok = ui.add_enabled(
                    valid && self.pending.is_none(),
                    egui::Button::new("OK").min_size(egui::vec2(72.0, 0.0)),
                );
                let ok = if valid {
                    ok
                } else {
                    ok.on_disabled_hover_text("Correct the fields marked in red first")
                };
                if ok.clicked() {
                    action = self.submission(inv, usage);
                }
                if ui
                    .add(egui::Button::new("Cancel").min_size(egui::vec2(72.0, 0.0)))
                    .clicked()
                {
                    action = Some(EditorAction::Cancel);
                }
                if self.pending.is_some() {
                    ui.spinner();
                    ui.label("Applying…");
                }
            });
        });
        action
    }

    fn capacity_line(&self, ui: &mut egui::Ui, usage: &UsageCache, place: &Place) {
        let verb = match self.target {
            EditTarget::Vm(_) => "this VM",
            EditTarget::Pool(_) => "this pool",
            EditTarget::NewPool { .. } => "the new pool",
        };
        match usage.get(place.owner) {
            None => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.weak(format!(
                        "Reading what {} has unreserved…",
                        place.parent_name
                    ));
                });
            }
            Some(Err(e)) => {
                ui.colored_label(
                    theme::WARN,
                    format!("Cannot read the parent's capacity: {e}. The server still checks."),
                );
            }
            Some(Ok(_)) => {
                let Some(inv_parent) = usage.node(place.owner, place.parent_node) else {
                    return;
                };
                ui.horizontal_wrapped(|ui| {
                    ui.weak(format!("Unreserved in {}:", place.parent_name));
                    ui.label(format!(
                        "CPU {} MHz · memory {} MiB",
                        inv_parent.cpu.unreserved_for_children,
                        inv_parent.memory.unreserved_for_children
                    ));
                    ui.weak(format!("(what {verb} can reserve, live)"));
                });
            }
        }
        ui.add_space(4.0);
    }
}

fn error_text(ui: &mut egui::Ui, e: Option<&str>) {
    match e {
        Some(e) => {
            ui.add(egui::Label::new(egui::RichText::new(e).color(theme::ERROR)).wrap());
        }
        None => {
            ui.label("");
        }
    }
}

fn shares_text(level: SharesLevel) -> &'static str {
    match level {
        SharesLevel::Low => "Low",
        SharesLevel::Normal => "Normal",
        SharesLevel::High => "High",
        SharesLevel::Custom => "Custom",
    }
}

fn resource_section(
    ui: &mut egui::Ui,
    title: &str,
    r: Resource,
    form: &mut ResourceForm,
    checked: &Checked,
    is_pool: bool,
) {
    let unit = r.unit();
    egui::Frame::group(ui.style())
        .inner_margin(8.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.strong(format!("{title} ({unit})"));
            egui::Grid::new(("pool_editor_grid", title))
                .num_columns(3)
                .min_col_width(130.0)
                .spacing([10.0, 6.0])
                .show(ui, |ui| {
                    let l = ui.label(format!("{title} shares"));
                    ui.horizontal(|ui| {
                        let combo = egui::ComboBox::from_id_salt(("shares", title))
                            .selected_text(shares_text(form.shares))
                            .width(90.0)
                            .show_ui(ui, |ui| {
                                for level in [
                                    SharesLevel::Low,
                                    SharesLevel::Normal,
                                    SharesLevel::High,
                                    SharesLevel::Custom,
                                ] {
                                    ui.selectable_value(
                                        &mut form.shares,
                                        level,
                                        shares_text(level),
                                    );
                                }
                            });
                        combo.response.labelled_by(l.id);
                        if form.shares == SharesLevel::Custom {
                            ui.add(
                                egui::TextEdit::singleline(&mut form.custom).desired_width(80.0),
                            )
                            .labelled_by(l.id);
                        }
                    });
                    error_text(ui, checked.errors.shares.as_deref());
                    ui.end_row();

                    let l = ui.label(format!("{title} reservation"));
                    ui.add(egui::TextEdit::singleline(&mut form.reservation).desired_width(120.0))
                        .labelled_by(l.id);
                    error_text(ui, checked.errors.reservation.as_deref());
                    ui.end_row();

                    if is_pool {
                        ui.label("");
                        ui.checkbox(&mut form.expandable, "Expandable reservation")
                            .on_hover_text(
                            "Let the pool's children borrow unreserved capacity from its parent",
                        );
                        ui.label("");
                        ui.end_row();
                    }

                    let l = ui.label(format!("{title} limit"));
                    ui.horizontal(|ui| {
                        ui.add_enabled(
                            !form.unlimited,
                            egui::TextEdit::singleline(&mut form.limit).desired_width(120.0),
                        )
                        .labelled_by(l.id);
                        ui.checkbox(&mut form.unlimited, "Unlimited");
                    });
                    error_text(ui, checked.errors.limit.as_deref());
                    ui.end_row();
                });
            if let Some(w) = &checked.warning {
                ui.colored_label(theme::WARN, w);
            }
        });
    ui.add_space(6.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(res: &str, limit: Option<&str>) -> ResourceForm {
        ResourceForm {
            reservation: res.into(),
            limit: limit.unwrap_or("").into(),
            unlimited: limit.is_none(),
            shares: SharesLevel::Normal,
            custom: "4000".into(),
            expandable: false,
        }
    }

    fn check(f: &ResourceForm, headroom: Option<Headroom>) -> Checked {
        check_resource(f, Resource::Cpu, true, headroom, true, "host h1")
    }

    #[test]
    fn invalid_numbers_are_refused_in_words() {
        let c = check(&form("-5", None), None);
        assert!(c.allocation.is_none());
        assert_eq!(
            c.errors.reservation.as_deref(),
            Some("The reservation cannot be negative")
        );
        let c = check(&form("abc", None), None);
        assert!(c
            .errors
            .reservation
            .unwrap_or_default()
            .contains("not a whole number"));
        let c = check(&form("", None), None);
        assert!(c.errors.reservation.is_some());
        let c = check(&form("10", Some("")), None);
        assert!(c.errors.limit.unwrap_or_default().contains("Unlimited"));
        let c = check(&form("2000", Some("1000")), None);
        assert_eq!(
            c.errors.reservation.as_deref(),
            Some("The reservation (2000 MHz) is above the limit (1000 MHz)")
        );
        let mut f = form("0", None);
        f.shares = SharesLevel::Custom;
        f.custom = "0".into();
        assert!(check(&f, None).errors.shares.is_some());
        f.custom = "250".into();
        let a = check(&f, None).allocation.expect("valid");
        assert_eq!(a.shares.custom, Some(250));
    }

    #[test]
    fn the_parent_capacity_bounds_the_reservation() {
        let h = Headroom {
            available: 1500,
            children_need: 0,
        };
        let c = check(&form("1500", Some("3000")), Some(h));
        assert_eq!(
            c.allocation,
            Some(Allocation {
                reservation: 1500,
                limit: Some(3000),
                ..Default::default()
            })
        );
        let c = check(&form("1501", None), Some(h));
        assert!(c
            .errors
            .reservation
            .unwrap_or_default()
            .contains("Only 1500 MHz can be reserved: that is what host h1 has unreserved"));
        // A powered-off VM only warns: it reserves nothing until it powers on.
        let c = check_resource(
            &form("1501", None),
            Resource::Cpu,
            false,
            Some(h),
            false,
            "x",
        );
        assert!(c.allocation.is_some());
        assert!(c.warning.is_some());
        // A pool's children bound its own reservation unless it is expandable, and its limit.
        let need = Headroom {
            available: 5000,
            children_need: 800,
        };
        let c = check(&form("500", Some("600")), Some(need));
        assert!(c.errors.reservation.is_some());
        assert!(c.errors.limit.is_some());
        let mut f = form("500", None);
        f.expandable = true;
        assert!(check(&f, Some(need)).allocation.is_some());
    }

    #[test]
    fn names_must_be_valid_and_unique_among_siblings() {
        use strata_shared::model::{Inventory, PoolInfo};
        let host = Uuid::new_v4();
        let pool = PoolInfo {
            id: Uuid::new_v4(),
            name: "Finance".into(),
            owner: host,
            parent: None,
            allocation: Default::default(),
        };
        let inv = InventoryModel::from_snapshot(Inventory {
            pools: vec![pool.clone()],
            ..Default::default()
        });
        assert!(check_name("", &inv, host, None).is_err());
        assert!(check_name("a/b", &inv, host, None).is_err());
        assert_eq!(
            check_name("Finance", &inv, host, None),
            Err("A resource pool named Finance is already there".into())
        );
        assert!(check_name("Finance", &inv, host, Some(pool.id)).is_ok());
        assert!(check_name("Finance", &inv, pool.id, None).is_ok());
    }
}
