//! Screenshot of the Console tab with a real VM screen, without a manager or host agent:
//! starts QEMU (TCG, no disk, so SeaBIOS shows "No bootable device") with VNC on a unix
//! socket, shows the desktop client with a small made-up inventory whose VM `demo` is
//! running, points its console at QEMU's socket, and saves the window as a PNG once the
//! screen has arrived. Run it under Xvfb: `scripts/console-screenshot` does.
//!
//! Usage: `console_screenshot [OUT.png]` (default `screenshots/12-console.png`).

#[cfg(unix)]
fn main() -> anyhow::Result<()> {
    unix::main()
}

#[cfg(not(unix))]
fn main() {
    eprintln!("console_screenshot needs a unix socket for QEMU's VNC server");
}

#[cfg(unix)]
mod unix {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context};
    use strata_client::app::console::{Connector, ConsoleStatus};
    use strata_client::app::model::{InventoryModel, Selection};
    use strata_client::app::{theme, ConnState, Settings, StrataApp, Tab};
    use strata_shared::model::{
        BootSpec, ConnectionState, DatacenterInfo, Engine, HostInfo, Inventory, Machine,
        PowerState, VmInfo, VmSpec,
    };
    use uuid::Uuid;

    /// How long the screen settles after the picture arrives.
    const SETTLE: Duration = Duration::from_millis(1500);
    /// How long the whole run may take.
    const LIMIT: Duration = Duration::from_secs(60);

    /// QEMU, killed on drop.
    struct Qemu(Child);

    impl Drop for Qemu {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn vm(name: &str, host: Uuid, power: PowerState, vcpus: u32, memory_mib: u64) -> VmInfo {
        VmInfo {
            id: Uuid::new_v4(),
            name: name.into(),
            host: Some(host),
            pool: None,
            datastore: "datastore1".into(),
            spec: VmSpec {
                vcpus,
                memory_mib,
                engine: Engine::Qemu,
                machine: Machine::Q35,
                boot: BootSpec {
                    kernel: "/var/lib/strata/kernels/vmlinuz".into(),
                    initrd: None,
                    cmdline: String::new(),
                },
                allocation: Default::default(),
                disks: Vec::new(),
                template: false,
                nics: Vec::new(),
            },
            power_state: power,
            running_engine: None,
            pid: None,
            created_ms: 0,
        }
    }

    /// The client, as if logged in to a manager that knows one host and three VMs, showing
    /// the Console tab of `demo`.
    fn app(sock: PathBuf) -> StrataApp {
        let dc = Uuid::new_v4();
        let host = HostInfo {
            id: Uuid::new_v4(),
            name: "host-01".into(),
            address: "127.0.0.1:9443".into(),
            datacenter: dc,
            cluster: None,
            thumbprint: String::new(),
            connection_state: ConnectionState::Connected,
            state_reason: None,
            facts: None,
        };
        let demo = vm("demo", host.id, PowerState::PoweredOn, 1, 256);
        let vms = vec![
            demo.clone(),
            vm("web01", host.id, PowerState::PoweredOff, 2, 512),
            vm("db01", host.id, PowerState::PoweredOff, 4, 1024),
        ];
        let mut app = StrataApp::new(Settings::default());
        app.model.inventory = InventoryModel::from_snapshot(Inventory {
            datacenters: vec![DatacenterInfo {
                id: dc,
                name: "Datacenter".into(),
            }],
            hosts: vec![host],
            vms,
            ..Default::default()
        });
        app.conn = ConnState::Connected {
            address: "127.0.0.1:8443".into(),
            username: "admin".into(),
        };
        app.selection = Some(Selection::Vm(demo.id));
        app.tab = Tab::Console;
        app.set_console_connector(Box::new(move |_| Connector::unix(sock.clone())));
        app
    }

    const SHOT_NONE: u8 = 0;
    const SHOT_PENDING: u8 = 1;
    const SHOT_SAVED: u8 = 2;
    const SHOT_FAILED: u8 = 3;

    struct Shooter {
        app: StrataApp,
        out: PathBuf,
        started: Instant,
        ready_at: Option<Instant>,
        shot: Arc<AtomicU8>,
        failure: Arc<std::sync::Mutex<Option<String>>>,
    }

    impl Shooter {
        fn fail(&self, why: String) {
            if let Ok(mut f) = self.failure.lock() {
                *f = Some(why);
            }
        }
    }

    impl eframe::App for Shooter {
        fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
            let ctx = ui.ctx().clone();
            self.app.ui(ui);
            ctx.request_repaint_after(Duration::from_millis(50));
            match self.shot.load(Ordering::Acquire) {
                SHOT_SAVED => {
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    return;
                }
                SHOT_FAILED => {
                    self.fail(format!("could not save {}", self.out.display()));
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    return;
                }
                SHOT_PENDING => return,
                _ => {}
            }
            if self.started.elapsed() > LIMIT {
                self.fail(format!(
                    "the console did not show QEMU's screen within {LIMIT:?} (status: {:?})",
                    self.app.console.view.status()
                ));
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                return;
            }
            let view = &self.app.console.view;
            let ready = matches!(
                view.status(),
                Some(ConsoleStatus::Connected {
                    width: 720,
                    height: 400
                })
            ) && view.framebuffer().is_some_and(|f| !f.is_black());
            match self.ready_at {
                None if ready => self.ready_at = Some(Instant::now()),
                Some(t) if t.elapsed() >= SETTLE => {
                    self.shot.store(SHOT_PENDING, Ordering::Release);
                    let (out, flag, waker) = (self.out.clone(), self.shot.clone(), ctx.clone());
                    ctx.request_screenshot(move |image| {
                        let saved = save_png(&out, &image);
                        if let Err(e) = &saved {
                            eprintln!("{e:#}");
                        }
                        let state = if saved.is_ok() {
                            SHOT_SAVED
                        } else {
                            SHOT_FAILED
                        };
                        flag.store(state, Ordering::Release);
                        waker.request_repaint();
                    });
                }
                _ => {}
            }
        }
    }

    fn save_png(path: &std::path::Path, image: &egui::ColorImage) -> anyhow::Result<()> {
        let [w, h] = image.size;
        let rgba: Vec<u8> = image
            .pixels
            .iter()
            .flat_map(|p| [p.r(), p.g(), p.b(), 255])
            .collect();
        let buf = image::RgbaImage::from_raw(w as u32, h as u32, rgba)
            .context("the screenshot has the wrong size")?;
        buf.save_with_format(path, image::ImageFormat::Png)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn main() -> anyhow::Result<()> {
        let out = PathBuf::from(
            std::env::args()
                .nth(1)
                .unwrap_or_else(|| "screenshots/12-console.png".into()),
        );
        let dir = tempfile::tempdir()?;
        let sock = dir.path().join("vnc.sock");
        let child = Command::new("qemu-system-x86_64")
            .args(["-machine", "q35", "-accel", "tcg", "-m", "64"])
            .args([
                "-display",
                "none",
                "-nodefaults",
                "-no-user-config",
                "-vga",
                "std",
            ])
            .arg("-vnc")
            .arg(format!("unix:{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start qemu-system-x86_64 (scripts/setup installs it)")?;
        let _qemu = Qemu(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sock.exists() {
            if Instant::now() > deadline {
                bail!("QEMU's VNC socket did not appear");
            }
            std::thread::sleep(Duration::from_millis(50));
        }

        let failure = Arc::new(std::sync::Mutex::new(None));
        let failure_in = failure.clone();
        let options = eframe::NativeOptions {
            viewport: egui::ViewportBuilder::default()
                .with_title("Strata")
                .with_inner_size([1280.0, 800.0]),
            ..Default::default()
        };
        eframe::run_native(
            "Strata console screenshot",
            options,
            Box::new(move |cc| {
                theme::apply(&cc.egui_ctx);
                Ok(Box::new(Shooter {
                    app: app(sock),
                    out: out.clone(),
                    started: Instant::now(),
                    ready_at: None,
                    shot: Arc::new(AtomicU8::new(SHOT_NONE)),
                    failure: failure_in,
                }))
            }),
        )
        .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
        let failed = failure.lock().ok().and_then(|f| f.clone());
        match failed {
            Some(f) => bail!("{f}"),
            None => Ok(()),
        }
    }
}
