//! One console session: a tokio task that connects (through a [`Connector`]), runs the RFB
//! client (vnc-rs), forwards what the server draws to the UI over a bounded channel, sends
//! the UI's keyboard and pointer input back, and reconnects with back-off when the connection
//! drops (VM moved to another host, host agent restarted, guest reset…).
//!
//! vnc-rs's `recv_event` holds the client's lock while it waits, so input sent from another
//! task would stall behind it: one task drives everything with `tokio::select!` instead.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vnc::{
    ClientKeyEvent, ClientMouseEvent, PixelFormat, VncClient, VncConnector, VncEncoding, VncError,
    VncEvent, X11Event,
};

use super::framebuffer::ScreenRect;
use super::keys::{self, KeyAction};
use super::transport::{Connector, Pump, TransportError};
use crate::app::net::Waker;

/// Capacity of the update channel (session → UI); a full channel slows the server down.
const UPDATE_CAPACITY: usize = 32;
/// Capacity of the input channel (UI → session).
const INPUT_CAPACITY: usize = 256;

/// What the UI asks of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleInput {
    /// A key goes down or up.
    Key(KeyAction),
    /// The pointer moved or a button changed (RFB button mask: 1 left, 2 middle, 4 right,
    /// 8/16 wheel up/down).
    Pointer {
        /// Remote x.
        x: u16,
        /// Remote y.
        y: u16,
        /// Buttons held.
        buttons: u8,
    },
    /// Press and release Ctrl+Alt+Del.
    CtrlAltDel,
    /// Ask for the whole screen again.
    Refresh,
    /// Drop the connection (if any) and connect again now, with a fresh ticket.
    Reconnect,
}

/// Where the session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleStatus {
    /// Getting a ticket, connecting, shaking hands.
    Connecting,
    /// Connected; the remote screen has this size.
    Connected {
        /// Width in pixels.
        width: u16,
        /// Height in pixels.
        height: u16,
    },
    /// The connection dropped or could not be made.
    Disconnected {
        /// Why, in words.
        reason: String,
        /// When the next attempt starts.
        retry_at: Option<Instant>,
    },
}

/// What the session reports to the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleUpdate {
    /// The session's state changed.
    Status(ConsoleStatus),
    /// The remote screen has a (new) size; the picture starts black.
    Resize {
        /// Width.
        width: u16,
        /// Height.
        height: u16,
    },
    /// New pixels for a rectangle: 4 bytes each, red, green, blue, and a byte to ignore.
    Pixels {
        /// Where.
        rect: ScreenRect,
        /// The pixels, row by row.
        rgbx: Vec<u8>,
    },
    /// CopyRect: the pixels at `src` (same size as `dst`) move to `dst`.
    Copy {
        /// Destination.
        dst: ScreenRect,
        /// Source (its size is `dst`'s).
        src: ScreenRect,
    },
    /// The guest rang the bell.
    Bell,
}

/// Reconnect delays: `first`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay after the first failure.
    pub first: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before attempt number `failures` + 1 after `failures` failures in a row.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// How a session behaves.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    /// How often to ask the server for changes.
    pub refresh_interval: Duration,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// A connection that stayed up this long resets the back-off.
    pub stable_after: Duration,
    /// Limit for connecting and the RFB handshake.
    pub connect_timeout: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            refresh_interval: Duration::from_millis(40),
            backoff: Backoff {
                first: Duration::from_secs(1),
                max: Duration::from_secs(30),
            },
            stable_after: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(20),
        }
    }
}

/// Counters for tests and diagnostics.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Input messages handed to the RFB connection without error.
    pub inputs_sent: AtomicU64,
    /// Connections that completed the RFB handshake.
    pub connections: AtomicU64,
}

/// The UI's handle on a running session; dropping it ends the session.
pub struct ConsoleSession {
    input: mpsc::Sender<ConsoleInput>,
    updates: mpsc::Receiver<ConsoleUpdate>,
    stats: Arc<SessionStats>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSession")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ConsoleSession {
    /// Starts a session on `runtime`; `waker` is called whenever an update is waiting.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        connector: Connector,
        waker: Waker,
        options: SessionOptions,
    ) -> Self {
        let (input_tx, input_rx) = mpsc::channel(INPUT_CAPACITY);
        let (update_tx, update_rx) = mpsc::channel(UPDATE_CAPACITY);
        let stats = Arc::new(SessionStats::default());
        let driver = Driver {
            connector,
            inputs: input_rx,
            out: Outbox {
                tx: update_tx,
                waker,
            },
            options,
            stats: stats.clone(),
        };
        let task = runtime.spawn(driver.run());
        ConsoleSession {
            input: input_tx,
            updates: update_rx,
            stats,
            task,
        }
    }

    /// Queues input without waiting; false when the session is gone or far behind.
    pub fn send(&self, input: ConsoleInput) -> bool {
        self.input.try_send(input).is_ok()
    }

    /// The next update, if one is waiting.
    pub fn try_recv(&mut self) -> Option<ConsoleUpdate> {
        self.updates.try_recv().ok()
    }

    /// Counters.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }
}

impl Drop for ConsoleSession {
    fn drop(&mut self) {
        // Dropping the task drops the RFB client, which stops its own tasks.
        self.task.abort();
    }
}

struct Outbox {
    tx: mpsc::Sender<ConsoleUpdate>,
    waker: Waker,
}

impl Outbox {
    /// Sends an update; false when the UI side is gone.
    async fn send(&self, update: ConsoleUpdate) -> bool {
        let ok = self.tx.send(update).await.is_ok();
        (self.waker)();
        ok
    }
}

/// How one connection ended.
enum End {
    /// The UI is gone: stop.
    Stop,
    /// The user asked to reconnect.
    Reconnect,
    /// The connection failed or dropped.
    Dropped {
        reason: String,
        /// How long it was connected, if it got that far.
        connected_for: Option<Duration>,
    },
}

struct Driver {
    connector: Connector,
    inputs: mpsc::Receiver<ConsoleInput>,
    out: Outbox,
    options: SessionOptions,
    stats: Arc<SessionStats>,
}

/// Runs `fut` while also driving the transport's pump; records the pump's result when it ends.
async fn with_pump<F: Future>(
    fut: F,
    pump: &mut Pump,
    pump_result: &mut Option<Result<(), TransportError>>,
) -> F::Output {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            r = &mut fut => return r,
            r = &mut *pump, if pump_result.is_none() => *pump_result = Some(r),
        }
    }
}

fn rect(r: vnc::Rect) -> ScreenRect {
    ScreenRect::new(r.x, r.y, r.width, r.height)
}

impl Driver {
    async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            if !self
                .out
                .send(ConsoleUpdate::Status(ConsoleStatus::Connecting))
                .await
            {
                return;
            }
            let (reason, connected_for) = match self.connect_and_run().await {
                End::Stop => return,
                End::Reconnect => {
                    failures = 0;
                    continue;
                }
                End::Dropped {
                    reason,
                    connected_for,
                } => (reason, connected_for),
            };
            if connected_for.is_some_and(|d| d >= self.options.stable_after) {
                failures = 0;
            }
            let delay = self.options.backoff.delay(failures);
            failures = failures.saturating_add(1);
            tracing::info!(%reason, retry_in_ms = delay.as_millis() as u64, "console disconnected");
            let retry_at = Instant::now() + delay;
            let status = ConsoleStatus::Disconnected {
                reason,
                retry_at: Some(retry_at),
            };
            if !self.out.send(ConsoleUpdate::Status(status)).await {
                return;
            }
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    input = self.inputs.recv() => match input {
                        None => return,
                        Some(ConsoleInput::Reconnect) => {
                            failures = 0;
                            break;
                        }
                        // Nothing to type into while disconnected.
                        Some(_) => {}
                    },
                }
            }
        }
    }

    async fn connect_and_run(&mut self) -> End {
        let dropped = |reason: String| End::Dropped {
            reason,
            connected_for: None,
        };
        let limit = self.options.connect_timeout;
        let conn = match tokio::time::timeout(limit, self.connector.connect()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return dropped(e.to_string()),
            Err(_) => return dropped(format!("no connection within {} s", limit.as_secs())),
        };
        tracing::debug!(peer = %conn.peer, "console connection open");
        let mut pump: Pump = conn
            .pump
            .unwrap_or_else(|| Box::pin(std::future::pending()));
        let mut pump_result = None;
        let handshake = async {
            VncConnector::<_, std::future::Ready<Result<String, VncError>>>::new(conn.stream)
                .allow_shared(true)
                .set_pixel_format(PixelFormat::rgba())
                .add_encoding(VncEncoding::Zrle)
                .add_encoding(VncEncoding::Tight)
                .add_encoding(VncEncoding::CopyRect)
                .add_encoding(VncEncoding::Raw)
                .add_encoding(VncEncoding::DesktopSizePseudo)
                .build()?
                .try_start()
                .await?
                .finish()
        };
        let handshake = tokio::time::timeout(limit, handshake);
        let vnc = match with_pump(handshake, &mut pump, &mut pump_result).await {
            Ok(Ok(vnc)) => vnc,
            Ok(Err(e)) => return dropped(describe(&e, pump_result)),
            Err(_) => return dropped(format!("no RFB handshake within {} s", limit.as_secs())),
        };
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        let since = Instant::now();
        let end = self.drive(&vnc, &mut pump, &mut pump_result).await;
        let _ = vnc.close().await;
        match end {
            Ok(end) => end,
            Err(reason) => End::Dropped {
                reason,
                connected_for: Some(since.elapsed()),
            },
        }
    }

    /// Runs a connected client until it ends: `Ok` to stop or reconnect, `Err(reason)` when
    /// the connection dropped.
    async fn drive(
        &mut self,
        vnc: &VncClient,
        pump: &mut Pump,
        pump_result: &mut Option<Result<(), TransportError>>,
    ) -> Result<End, String> {
        let mut tick = tokio::time::interval(self.options.refresh_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                input = self.inputs.recv() => {
                    let events = match input {
                        None => return Ok(End::Stop),
                        Some(ConsoleInput::Reconnect) => return Ok(End::Reconnect),
                        Some(ConsoleInput::Key(k)) => vec![key_event(k)],
                        Some(ConsoleInput::CtrlAltDel) => keys::ctrl_alt_del().into_iter().map(key_event).collect(),
                        Some(ConsoleInput::Pointer { x, y, buttons }) => vec![X11Event::PointerEvent(ClientMouseEvent {
                            position_x: x,
                            position_y: y,
                            bottons: buttons,
                        })],
                        Some(ConsoleInput::Refresh) => vec![X11Event::FullRefresh],
                    };
                    for e in events {
                        vnc.input(e).await.map_err(|e| describe(&e, pump_result.clone()))?;
                        self.stats.inputs_sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                r = &mut *pump, if pump_result.is_none() => *pump_result = Some(r),
                event = vnc.recv_event() => {
                    let event = event.map_err(|e| describe(&e, pump_result.clone()))?;
                    if !self.forward(event, pump_result).await? {
                        return Ok(End::Stop);
                    }
                }
                _ = tick.tick() => {
                    vnc.input(X11Event::Refresh).await.map_err(|e| describe(&e, pump_result.clone()))?;
                }
            }
        }
    }

    /// Passes one RFB event to the UI: `Ok(false)` when the UI is gone, `Err` when the event
    /// ends the connection.
    async fn forward(
        &mut self,
        event: VncEvent,
        pump_result: &Option<Result<(), TransportError>>,
    ) -> Result<bool, String> {
        let out = &self.out;
        Ok(match event {
            VncEvent::SetResolution(s) => {
                out.send(ConsoleUpdate::Resize {
                    width: s.width,
                    height: s.height,
                })
                .await
                    && out
                        .send(ConsoleUpdate::Status(ConsoleStatus::Connected {
                            width: s.width,
                            height: s.height,
                        }))
                        .await
            }
            VncEvent::RawImage(r, rgbx) => {
                out.send(ConsoleUpdate::Pixels {
                    rect: rect(r),
                    rgbx,
                })
                .await
            }
            VncEvent::Copy(dst, src) => {
                out.send(ConsoleUpdate::Copy {
                    dst: rect(dst),
                    src: rect(src),
                })
                .await
            }
            VncEvent::Bell => out.send(ConsoleUpdate::Bell).await,
            VncEvent::Error(message) => {
                return Err(match pump_result {
                    Some(Err(e)) => e.to_string(),
                    _ => message,
                })
            }
            other => {
                // JPEG rectangles, cursor shapes and clipboard text are never asked for.
                tracing::debug!(event = ?std::mem::discriminant(&other), "console event ignored");
                true
            }
        })
    }
}

fn key_event(k: KeyAction) -> X11Event {
    X11Event::KeyEvent(ClientKeyEvent {
        keycode: k.keysym,
        down: k.down,
    })
}

/// Why a connection ended, in words: the transport's reason when it gave one.
fn describe(e: &VncError, pump_result: Option<Result<(), TransportError>>) -> String {
    if let Some(Err(t)) = pump_result {
        return t.to_string();
    }
    match e {
        VncError::ClientNotRunning => "the console connection was closed".to_string(),
        VncError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the console connection was closed".to_string()
        }
        other => format!("RFB error: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let b = Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        let delays: Vec<u64> = (0..8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(30));
    }
}
