//! A scripted tour for documentation screenshots (`strata-client --tour DIR`): walks through
//! the connect dialog, the trust prompt and the main views, saves each as a PNG taken with
//! egui's own screenshot command, then closes the window.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dialogs::{Dialog, DialogRequest};
use super::model::Selection;
use super::net::Secret;
use super::panels::new_vm::{DiskRow, NewVmPreset};
use super::panels::pool_editor::{EditTarget, EditorState};
use super::panels::tree::InventoryView;
use super::{Command, ConnState, StrataApp, Tab};

/// How long a view settles before it is captured.
const SETTLE: Duration = Duration::from_millis(800);
/// How long the whole tour may take.
const LIMIT: Duration = Duration::from_secs(150);

const SHOT_NONE: u8 = 0;
const SHOT_PENDING: u8 = 1;
const SHOT_SAVED: u8 = 2;
const SHOT_FAILED: u8 = 3;

/// Errors of the tour.
#[derive(Debug, thiserror::Error)]
pub enum TourError {
    /// A PNG could not be written.
    #[error("cannot write screenshot {path}: {reason}")]
    Write {
        /// File.
        path: PathBuf,
        /// Cause.
        reason: String,
    },
}

/// The tour's progress.
pub struct Tour {
    dir: PathBuf,
    url: String,
    username: String,
    password: Secret,
    step: usize,
    step_ready_at: Option<Instant>,
    shot: Arc<AtomicU8>,
    started: Instant,
    /// A host agent not in the inventory, for the Add Host dialog's certificate.
    new_host: Option<String>,
    /// Files written so far.
    pub written: Vec<PathBuf>,
    /// Set when the tour failed.
    pub failure: Option<String>,
}

struct Step {
    file: &'static str,
    /// Runs every frame until `ready` holds (e.g. to ask for data the step shows).
    prepare: fn(&mut StrataApp, &Tour),
    ready: fn(&StrataApp, &Tour) -> bool,
    setup: fn(&mut StrataApp),
}

fn nothing(_: &mut StrataApp, _: &Tour) {}

/// The demo VM's performance samples, when fetched.
fn demo_samples(app: &StrataApp) -> usize {
    match demo_vm(app) {
        Some(Selection::Vm(id)) => match app.model.stats.get(id) {
            Some(Ok(v)) => v.len(),
            _ => 0,
        },
        _ => 0,
    }
}

fn first_host(app: &StrataApp) -> Option<Selection> {
    app.model
        .inventory
        .hosts
        .keys()
        .next()
        .map(|h| Selection::Host(*h))
}

fn first_dc(app: &StrataApp) -> Option<Selection> {
    app.model
        .inventory
        .datacenters
        .keys()
        .next()
        .map(|d| Selection::Datacenter(*d))
}

fn demo_vm(app: &StrataApp) -> Option<Selection> {
    let vms = &app.model.inventory.vms;
    vms.values()
        .find(|v| v.name == "demo")
        .or_else(|| vms.values().next())
        .map(|v| Selection::Vm(v.id))
}

fn pool_named(app: &StrataApp, name: &str) -> Option<uuid::Uuid> {
    app.model
        .inventory
        .pools
        .values()
        .find(|p| p.name == name)
        .map(|p| p.id)
}

/// The standalone host or cluster that holds the demo's pools.
fn pool_owner(app: &StrataApp) -> Option<uuid::Uuid> {
    pool_named(app, "Production")
        .and_then(|p| app.model.inventory.pools.get(&p))
        .map(|p| p.owner)
}

/// The editor on a new pool under the demo host, filled in; `bad_limit` adds a limit below
/// the reservation, which the editor refuses.
fn open_new_pool(app: &mut StrataApp, bad_limit: bool) {
    app.editor = pool_owner(app).and_then(|owner| {
        EditorState::open(
            EditTarget::NewPool {
                owner,
                parent: None,
            },
            &app.model.inventory,
        )
    });
    if let Some(e) = app.editor.as_mut() {
        e.name = "Analytics".into();
        e.cpu.reservation = "500".into();
        e.cpu.shares = strata_shared::model::SharesLevel::High;
        e.memory.reservation = "512".into();
        e.memory.expandable = true;
        if bad_limit {
            e.cpu.unlimited = false;
            e.cpu.limit = "400".into();
        }
    }
}

/// The New VM wizard on the demo host, filled in; `refused` types values it refuses.
fn open_new_vm(app: &mut StrataApp, refused: bool) {
    let host = first_host(app).map(|s| s.id());
    app.dialog = Dialog::open(
        DialogRequest::NewVm(NewVmPreset {
            host,
            ..Default::default()
        }),
        &app.model.inventory,
    );
    if let Some(Dialog::NewVm(d)) = app.dialog.as_mut() {
        d.name = "web02".into();
        d.vcpus = "2".into();
        d.memory = "512".into();
        d.engine = strata_shared::model::Engine::Qemu;
        d.disks = vec![DiskRow {
            size: "2048".into(),
            ..Default::default()
        }];
        d.tap = "tap-web".into();
        d.cmdline = "quiet".into();
        d.power_on = true;
        if refused {
            d.name = "demo".into();
            d.vcpus = "0".into();
            d.memory = "8".into();
            d.engine = strata_shared::model::Engine::Native;
            d.disks = vec![
                DiskRow {
                    size: "0".into(),
                    ..Default::default()
                },
                DiskRow {
                    size: "1024".into(),
                    format: strata_shared::model::DiskFormat::Qcow2,
                    ..Default::default()
                },
            ];
            d.tap = "tap web".into();
        }
    }
}

/// The Add Host dialog with the spare agent's address (its certificate is fetched in
/// `prepare`).
fn add_host_ready(app: &StrataApp) -> bool {
    match &app.dialog {
        Some(Dialog::AddHost(d)) => d.current_thumbprint().is_some() || d.fetch_error.is_some(),
        _ => false,
    }
}

fn first_datastore(app: &StrataApp) -> Option<Selection> {
    let inv = &app.model.inventory;
    let mut ds: Vec<_> = inv.datastores.values().collect();
    ds.sort_by(|a, b| super::model::natural_cmp(&a.name, &b.name));
    ds.first().map(|d| Selection::Datastore(d.id))
}

const STEPS: &[Step] = &[
    Step {
        file: "01-connect.png",
        prepare: nothing,
        ready: |a, _| a.conn == ConnState::Disconnected,
        setup: |_| {},
    },
    Step {
        file: "02-trust-certificate.png",
        prepare: nothing,
        ready: |a, _| matches!(a.conn, ConnState::AwaitingTrust { .. }),
        setup: |_| {},
    },
    Step {
        file: "03-host-summary.png",
        prepare: nothing,
        ready: |a, _| a.is_connected() && first_host(a).is_some(),
        setup: |a| {
            a.selection = first_host(a);
            a.tab = Tab::Summary;
        },
    },
    Step {
        file: "04-vm-table.png",
        prepare: nothing,
        ready: |a, _| a.is_connected(),
        setup: |a| {
            a.selection = first_dc(a);
            a.tab = Tab::VirtualMachines;
        },
    },
    Step {
        file: "05-vm-summary.png",
        prepare: nothing,
        ready: |a, _| a.is_connected() && demo_vm(a).is_some(),
        setup: |a| {
            a.selection = demo_vm(a);
            a.tab = Tab::Summary;
        },
    },
    Step {
        file: "06-events.png",
        prepare: nothing,
        ready: |a, _| a.is_connected(),
        setup: |a| {
            a.selection = first_dc(a);
            a.tab = Tab::Events;
        },
    },
    Step {
        file: "07-resource-pool-editor.png",
        prepare: nothing,
        ready: |a, _| a.is_connected() && pool_owner(a).is_some(),
        setup: |a| {
            a.selection = pool_owner(a).map(Selection::Host);
            a.tab = Tab::Summary;
            open_new_pool(a, false);
        },
    },
    Step {
        file: "08-resource-pool-editor-refused.png",
        prepare: nothing,
        ready: |a, _| a.is_connected() && pool_owner(a).is_some(),
        setup: |a| open_new_pool(a, true),
    },
    Step {
        file: "09-resource-allocation.png",
        prepare: nothing,
        ready: |a, _| a.is_connected() && pool_owner(a).is_some(),
        setup: |a| {
            a.editor = None;
            a.selection = pool_owner(a).map(Selection::Host);
            a.tab = Tab::ResourceAllocation;
        },
    },
    Step {
        file: "10-resource-pool.png",
        prepare: nothing,
        ready: |a, _| a.is_connected() && pool_named(a, "Production").is_some(),
        setup: |a| {
            a.selection = pool_named(a, "Production").map(Selection::Pool);
            a.tab = Tab::ResourceAllocation;
        },
    },
    Step {
        file: "11-performance.png",
        prepare: |a, _| {
            if let Some(Selection::Vm(id)) = demo_vm(a) {
                a.commands.send(Command::WantStats(id));
            }
        },
        // A chart worth looking at: a minute of samples (the demo samples every 2 s).
        ready: |a, _| a.is_connected() && demo_samples(a) >= 30,
        setup: |a| {
            a.selection = demo_vm(a);
            a.tab = Tab::Performance;
        },
    },
    Step {
        file: "12-console.png",
        // The Console tab opens its session while it is shown: show it until the screen is in.
        prepare: |a, _| {
            a.selection = demo_vm(a);
            a.tab = Tab::Console;
        },
        ready: |a, _| {
            matches!(
                a.console.view.status(),
                Some(super::console::ConsoleStatus::Connected { .. })
            ) && a.console.view.uploads().full > 0
        },
        setup: |_| {},
    },
    Step {
        file: "13-new-vm-wizard.png",
        prepare: nothing,
        ready: |a, _| a.is_connected() && first_host(a).is_some(),
        setup: |a| {
            a.selection = first_dc(a);
            a.tab = Tab::Summary;
            open_new_vm(a, false);
        },
    },
    Step {
        file: "14-new-vm-wizard-refused.png",
        prepare: nothing,
        ready: |a, _| a.is_connected(),
        setup: |a| open_new_vm(a, true),
    },
    Step {
        file: "15-add-host.png",
        // Opens the dialog once and asks the spare agent for its certificate.
        prepare: |a, t| {
            if matches!(a.dialog, Some(Dialog::AddHost(_))) {
                return;
            }
            let dc = first_dc(a).map(|d| d.id());
            a.dialog = Dialog::open(
                DialogRequest::AddHost {
                    datacenter: dc,
                    cluster: None,
                },
                &a.model.inventory,
            );
            let address = t.new_host.clone();
            let token = a.token();
            if let (Some(Dialog::AddHost(d)), Some(address)) = (a.dialog.as_mut(), address) {
                d.address = address.clone();
                d.password = Secret("secret-password".into());
                d.fetching = Some(token);
                a.request(super::net::Request::HostThumbprint { address, token });
            }
        },
        ready: |a, t| add_host_ready(a) || t.new_host.is_none(),
        setup: |a| {
            if let Some(Dialog::AddHost(d)) = a.dialog.as_mut() {
                d.confirmed = d.current_thumbprint().is_some();
            }
        },
    },
    Step {
        file: "16-vms-and-templates.png",
        prepare: nothing,
        ready: |a, _| a.is_connected() && demo_vm(a).is_some(),
        setup: |a| {
            a.dialog = None;
            a.set_inventory_view(InventoryView::VmsAndTemplates);
            a.selection = first_dc(a);
            a.tab = Tab::VirtualMachines;
        },
    },
    Step {
        file: "17-datastores.png",
        prepare: nothing,
        ready: |a, _| a.is_connected() && first_datastore(a).is_some(),
        setup: |a| {
            a.set_inventory_view(InventoryView::Datastores);
            a.selection = first_datastore(a);
            a.tab = Tab::Summary;
        },
    },
    Step {
        file: "18-edit-settings.png",
        prepare: nothing,
        ready: |a, _| a.is_connected() && demo_vm(a).is_some(),
        setup: |a| {
            a.set_inventory_view(InventoryView::HostsAndClusters);
            a.selection = demo_vm(a);
            a.tab = Tab::Summary;
            if let Some(Selection::Vm(id)) = demo_vm(a) {
                a.dialog = Dialog::open(DialogRequest::EditVm(id), &a.model.inventory);
                if let Some(Dialog::VmSettings(d)) = a.dialog.as_mut() {
                    d.cmdline = "quiet loglevel=3".into();
                }
            }
        },
    },
    Step {
        file: "19-networks.png",
        prepare: nothing,
        // The VM the wizard created in 13, with its disk.
        ready: |a, _| {
            vm_named(a, "web02").is_some()
                && a.model.tasks.iter().any(|t| {
                    t.operation == "vm.diskCreate"
                        && t.state == strata_shared::model::TaskState::Success
                })
        },
        setup: |a| {
            a.dialog = None;
            a.set_inventory_view(InventoryView::Networks);
            a.selection = vm_named(a, "web02");
            a.tab = Tab::Summary;
        },
    },
    Step {
        file: "20-alarms.png",
        prepare: nothing,
        // The archive datastore's storage is gone (scripts/screenshots): its alarm is up.
        ready: |a, _| alarmed_datastore(a).is_some(),
        setup: |a| {
            a.set_inventory_view(InventoryView::Datastores);
            a.selection = alarmed_datastore(a);
            a.tab = Tab::Summary;
            a.recent.showing = super::panels::recent_tasks::Bottom::Alarms;
        },
    },
];

/// A datastore with an active alarm.
fn alarmed_datastore(app: &StrataApp) -> Option<Selection> {
    app.model
        .alarms
        .all()
        .iter()
        .find(|x| x.target.kind == strata_shared::model::ObjectKind::Datastore)
        .map(|x| Selection::Datastore(x.target.id))
}

fn vm_named(app: &StrataApp, name: &str) -> Option<Selection> {
    app.model
        .inventory
        .vms
        .values()
        .find(|v| v.name == name)
        .map(|v| Selection::Vm(v.id))
}

impl Tour {
    /// A tour that logs in to `url` as `username` and writes into `dir`.
    pub fn new(dir: PathBuf, url: String, username: String, password: String) -> Self {
        Tour {
            dir,
            url,
            username,
            password: Secret(password),
            step: 0,
            step_ready_at: None,
            shot: Arc::new(AtomicU8::new(SHOT_NONE)),
            started: Instant::now(),
            new_host: None,
            written: Vec::new(),
            failure: None,
        }
    }

    /// Shows the certificate of the host agent at `address` (not in the inventory) in the
    /// Add Host dialog's screenshot.
    pub fn with_new_host(mut self, address: Option<String>) -> Self {
        self.new_host = address;
        self
    }

    /// True when every screenshot is written or the tour failed.
    pub fn finished(&self) -> bool {
        self.step >= STEPS.len() || self.failure.is_some()
    }
}

impl StrataApp {
    /// Advances the tour by one frame (called before the frame is laid out).
    pub(super) fn drive_tour(&mut self, ctx: &egui::Context) {
        let Some(mut tour) = self.tour.take() else {
            return;
        };
        let was_finished = tour.finished();
        self.tour_frame(&mut tour, ctx);
        if tour.finished() && !was_finished {
            if let Some(f) = &tour.failure {
                tracing::error!(error = %f, "screenshot tour failed");
            } else {
                tracing::info!(files = tour.written.len(), dir = %tour.dir.display(), "screenshots written");
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        self.tour = Some(tour);
    }

    fn tour_frame(&mut self, tour: &mut Tour, ctx: &egui::Context) {
        if tour.finished() {
            return;
        }
        ctx.request_repaint_after(Duration::from_millis(50));
        if tour.started.elapsed() > LIMIT {
            tour.failure = Some(format!(
                "step {} did not become ready within {LIMIT:?} (connection: {:?}, errors: {:?})",
                STEPS[tour.step].file, self.conn, self.errors
            ));
            return;
        }
        let step = &STEPS[tour.step];
        match tour.shot.load(Ordering::Acquire) {
            SHOT_PENDING => return,
            SHOT_FAILED => {
                tour.failure = Some(format!("could not save {}", step.file));
                return;
            }
            SHOT_SAVED => {
                tour.written.push(tour.dir.join(step.file));
                tour.shot.store(SHOT_NONE, Ordering::Release);
                tour.step_ready_at = None;
                // What follows each capture.
                match tour.step {
                    0 => self.commands.send(Command::Connect {
                        url: tour.url.clone(),
                        username: tour.username.clone(),
                        password: tour.password.clone(),
                    }),
                    1 => self.commands.send(Command::TrustAndConnect),
                    // The wizard in 13 creates its VM (not powered on): 19 shows it.
                    12 => {
                        let submission = match self.dialog.as_mut() {
                            Some(Dialog::NewVm(d)) => {
                                d.power_on = false;
                                d.check(&self.model.inventory).ok()
                            }
                            _ => None,
                        };
                        if let Some(s) = submission {
                            self.dialog_act(s.into_action());
                        }
                    }
                    _ => {}
                }
                tour.step += 1;
                return;
            }
            _ => {}
        }
        match tour.step_ready_at {
            None => {
                (step.prepare)(self, tour);
                if (step.ready)(self, tour) {
                    (step.setup)(self);
                    tour.step_ready_at = Some(Instant::now());
                }
            }
            Some(t) if t.elapsed() >= SETTLE => {
                tour.shot.store(SHOT_PENDING, Ordering::Release);
                let path = tour.dir.join(step.file);
                let flag = tour.shot.clone();
                let waker = ctx.clone();
                ctx.request_screenshot(move |image| {
                    let r = save_png(&path, &image);
                    if let Err(e) = &r {
                        tracing::error!(error = %e, "screenshot not saved");
                    }
                    flag.store(
                        if r.is_ok() { SHOT_SAVED } else { SHOT_FAILED },
                        Ordering::Release,
                    );
                    waker.request_repaint();
                });
            }
            Some(_) => {}
        }
    }
}

fn save_png(path: &std::path::Path, image: &egui::ColorImage) -> Result<(), TourError> {
    let err = |reason: String| TourError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let [w, h] = image.size;
    let mut rgba = Vec::with_capacity(w * h * 4);
    for p in &image.pixels {
        rgba.extend_from_slice(&[p.r(), p.g(), p.b(), 255]);
    }
    let buf = image::RgbaImage::from_raw(w as u32, h as u32, rgba)
        .ok_or_else(|| err("the image has the wrong size".into()))?;
    buf.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| err(e.to_string()))
}
