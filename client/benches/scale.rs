//! Frame times of the desktop client with 40,000 VMs on 2,500 hosts (25 clusters, 100
//! datastores of 25 hosts each, 800 templates, NICs on 200 taps): scrolling each inventory
//! view (Hosts & Clusters, VMs & Templates, Datastores, Networks), typing into its filter,
//! the frame after a rename (the view's tree is rebuilt), scrolling the 40,000-row VM table, and
//! frames that each apply a burst of `inventory.changed` deltas. Runs the real app's `ui` on
//! a headless egui context (layout and tessellation, no GPU). Target: p99 < 16 ms for
//! every one of them, the frame that rebuilds a tree after a change of its shape included.
//!
//! `cargo bench -p strata-client --bench scale`

use std::time::{Duration, Instant};

use egui::{Event, Modifiers, MouseWheelSource, MouseWheelUnit, PointerButton, Pos2, RawInput};
use strata_client::app::model::{InventoryModel, Selection};
use strata_client::app::panels::tree::InventoryView;
use strata_client::app::{ConnState, Settings, StrataApp, Tab};
use strata_shared::model::{
    BootSpec, ClusterInfo, ConnectionState, DatacenterInfo, DatastoreInfo, Engine, HostInfo,
    Inventory, InventoryChange, InventoryObject, Machine, NicSpec, PowerState, VmInfo, VmSpec,
};
use uuid::Uuid;

const HOSTS: usize = 2_500;
const VMS: usize = 40_000;
const CLUSTERS: usize = 25;
const HOSTS_PER_DATASTORE: usize = 25;
const TAPS: usize = 200;

fn inventory() -> (Inventory, Uuid) {
    let dc = Uuid::new_v4();
    let clusters: Vec<ClusterInfo> = (0..CLUSTERS)
        .map(|i| ClusterInfo {
            id: Uuid::new_v4(),
            name: format!("cluster-{i:02}"),
            datacenter: dc,
        })
        .collect();
    let hosts: Vec<HostInfo> = (0..HOSTS)
        .map(|i| HostInfo {
            id: Uuid::new_v4(),
            name: format!("host-{i:04}"),
            address: format!("10.0.{}.{}:9443", i / 250, i % 250),
            datacenter: dc,
            cluster: Some(clusters[i % CLUSTERS].id),
            thumbprint: String::new(),
            connection_state: ConnectionState::Connected,
            state_reason: None,
            facts: None,
        })
        .collect();
    let datastores: Vec<DatastoreInfo> = (0..HOSTS / HOSTS_PER_DATASTORE)
        .map(|d| DatastoreInfo {
            id: Uuid::new_v4(),
            name: format!("ds-{d:03}"),
            datacenter: dc,
            capacity_bytes: 1 << 40,
            free_bytes: 1 << 39,
            hosts: hosts[d * HOSTS_PER_DATASTORE..(d + 1) * HOSTS_PER_DATASTORE]
                .iter()
                .map(|h| h.id)
                .collect(),
            inaccessible_on: Vec::new(),
        })
        .collect();
    let vms: Vec<VmInfo> = (0..VMS)
        .map(|i| VmInfo {
            id: Uuid::new_v4(),
            name: format!("vm-{i:05}"),
            host: Some(hosts[i % HOSTS].id),
            pool: None,
            datastore: format!("ds-{:03}", (i % HOSTS) / HOSTS_PER_DATASTORE),
            spec: VmSpec {
                vcpus: 1 + (i % 8) as u32,
                memory_mib: 256 << (i % 4),
                engine: Engine::Qemu,
                machine: Machine::Microvm,
                boot: BootSpec {
                    kernel: "/k".into(),
                    initrd: None,
                    cmdline: String::new(),
                },
                allocation: Default::default(),
                disks: Vec::new(),
                template: i % 50 == 0,
                nics: if i % 7 == 0 {
                    Vec::new()
                } else {
                    vec![NicSpec {
                        tap: format!("tap-{}", i % TAPS),
                        mac: None,
                    }]
                },
            },
            power_state: if i % 3 == 0 {
                PowerState::PoweredOff
            } else {
                PowerState::PoweredOn
            },
            running_engine: None,
            pid: None,
            created_ms: 0,
        })
        .collect();
    (
        Inventory {
            datacenters: vec![DatacenterInfo {
                id: dc,
                name: "Datacenter".into(),
            }],
            clusters,
            hosts,
            datastores,
            pools: Vec::new(),
            vms,
        },
        dc,
    )
}

struct Bench {
    ctx: egui::Context,
    app: StrataApp,
    time: f64,
}

impl Bench {
    fn frame(&mut self, events: Vec<Event>) -> Duration {
        self.time += 1.0 / 60.0;
        let input = RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                Pos2::ZERO,
                egui::vec2(1280.0, 800.0),
            )),
            time: Some(self.time),
            events,
            ..Default::default()
        };
        let start = Instant::now();
        let out = self.ctx.run_ui(input, |ui| self.app.ui(ui));
        let _ = self.ctx.tessellate(out.shapes, out.pixels_per_point);
        start.elapsed()
    }

    fn click(&mut self, pos: Pos2) {
        self.frame(vec![Event::PointerMoved(pos)]);
        self.frame(vec![
            Event::PointerButton {
                pos,
                button: PointerButton::Primary,
                pressed: true,
                modifiers: Modifiers::NONE,
            },
            Event::PointerButton {
                pos,
                button: PointerButton::Primary,
                pressed: false,
                modifiers: Modifiers::NONE,
            },
        ]);
    }
}

fn wheel(dy: f32) -> Event {
    Event::MouseWheel {
        unit: MouseWheelUnit::Point,
        delta: egui::vec2(0.0, dy),
        phase: egui::TouchPhase::Move,
        source: MouseWheelSource::Unknown,
        modifiers: Modifiers::NONE,
    }
}

fn report(name: &str, mut times: Vec<Duration>) -> bool {
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let (median, p99, max) = (pct(0.5), pct(0.99), times[times.len() - 1]);
    println!(
        "{name:<54} frames {:>4}  median {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        times.len(),
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    p99 < Duration::from_millis(16)
}

fn backspace() -> Event {
    Event::Key {
        key: egui::Key::Backspace,
        physical_key: None,
        pressed: true,
        repeat: false,
        modifiers: Modifiers::NONE,
    }
}

/// One inventory view: its first frame (the tree is built), scrolling, typing into the
/// filter, and frames that apply 200 power-state deltas each.
fn tree_benches(b: &mut Bench, view: InventoryView, round: usize, template: &[VmInfo]) -> bool {
    let name = view.title();
    let mut ok = true;
    b.app.set_inventory_view(view);
    // A layout change (here a rename) rebuilds the shown view's tree on its next frame.
    let mut times = Vec::new();
    for (k, vm) in template.iter().enumerate().take(10) {
        let mut v = vm.clone();
        v.name = format!("{}-renamed-{round}-{k}", v.name);
        b.app.model.inventory.apply(InventoryChange::Upsert {
            object: Box::new(InventoryObject::Vm(v)),
        });
        times.push(b.frame(Vec::new()));
    }
    // Held to the target too: a burst of creations or renames rebuilds on every frame.
    ok &= report(&format!("{name}: frame rebuilding the tree (once)"), times);
    // Scroll the tree (pointer over it), down then up.
    let over_tree = Pos2::new(130.0, 300.0);
    b.frame(vec![Event::PointerMoved(over_tree)]);
    let times: Vec<Duration> = (0..300)
        .map(|i| b.frame(vec![wheel(if i < 150 { -400.0 } else { 300.0 })]))
        .collect();
    ok &= report(&format!("{name}: scroll"), times);

    // Type into the filter, one character per frame, then erase.
    b.click(Pos2::new(130.0, 106.0));
    let mut times = Vec::new();
    for _ in 0..3 {
        for c in ["v", "m", "-", "1", "2", "3"] {
            times.push(b.frame(vec![Event::Text(c.into())]));
        }
        for _ in 0..6 {
            times.push(b.frame(vec![backspace()]));
        }
    }
    ok &= report(&format!("{name}: filter, a keystroke per frame"), times);
    // Leave the filter box.
    b.click(Pos2::new(700.0, 500.0));

    // Frames that each apply 200 power-state deltas.
    let mut times = Vec::new();
    for f in 0..100 {
        for (k, vm) in template.iter().enumerate().skip((f * 200) % 800).take(200) {
            let mut v = b.app.model.inventory.vms[&vm.id].clone();
            v.power_state = if (f + k) % 2 == 0 {
                PowerState::PoweredOn
            } else {
                PowerState::PoweredOff
            };
            b.app.model.inventory.apply(InventoryChange::Upsert {
                object: Box::new(InventoryObject::Vm(v)),
            });
        }
        times.push(b.frame(Vec::new()));
    }
    ok &= report(&format!("{name}: 200 inventory deltas per frame"), times);
    ok
}

fn main() {
    let (inv, dc) = inventory();
    let vm_ids: Vec<Uuid> = inv.vms.iter().map(|v| v.id).collect();
    let template: Vec<VmInfo> = inv.vms.iter().take(1000).cloned().collect();
    let mut app = StrataApp::new(Settings::default());
    let t = Instant::now();
    app.model.inventory = InventoryModel::from_snapshot(inv);
    println!(
        "model: {HOSTS} hosts, {VMS} VMs loaded in {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    app.conn = ConnState::Connected {
        address: "bench:8443".into(),
        username: "admin".into(),
    };
    app.selection = Some(Selection::Datacenter(dc));
    let mut b = Bench {
        ctx: egui::Context::default(),
        app,
        time: 0.0,
    };
    for _ in 0..5 {
        b.frame(Vec::new());
    }
    let mut ok = true;

    for (round, view) in InventoryView::ALL.into_iter().enumerate() {
        ok &= tree_benches(&mut b, view, round, &template);
    }
    b.app.set_inventory_view(InventoryView::HostsAndClusters);

    // The VM table of the datacenter: all 40,000 VMs.
    b.app.tab = Tab::VirtualMachines;
    b.frame(Vec::new());
    let over_table = Pos2::new(700.0, 350.0);
    b.frame(vec![Event::PointerMoved(over_table)]);
    let times: Vec<Duration> = (0..300)
        .map(|i| b.frame(vec![wheel(if i < 150 { -600.0 } else { 450.0 })]))
        .collect();
    ok &= report("VM table: scroll (40k rows)", times);

    let mut times = Vec::new();
    for f in 0..100 {
        let id = vm_ids[f * 37 % vm_ids.len()];
        if let Some(mut v) = b.app.model.inventory.vms.get(&id).cloned() {
            v.power_state = PowerState::PoweredOff;
            b.app.model.inventory.apply(InventoryChange::Upsert {
                object: Box::new(InventoryObject::Vm(v)),
            });
        }
        times.push(b.frame(Vec::new()));
    }
    ok &= report("VM table: one delta per frame", times);

    println!(
        "{}",
        if ok {
            "all p99 < 16 ms"
        } else {
            "some p99 >= 16 ms"
        }
    );
}
