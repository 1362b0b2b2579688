//! The control protocol between the host agent and strata-vmx: one JSON object per line on
//! a unix socket, each request answered by one response line.
//!
//! Requests: `{"cmd":"status"}`, `{"cmd":"shutdown"}` (ask the guest to power off),
//! `{"cmd":"stop"}` (end the VM now), `{"cmd":"reset"}`, `{"cmd":"pause"}`,
//! `{"cmd":"resume"}`, `{"cmd":"snapshot","dir":"/path"}`, `{"cmd":"dirty_log","enable":true}`,
//! `{"cmd":"dirty_pages"}`, `{"cmd":"key","codes":[30,158]}` (PS/2 set-1 scan codes, as the
//! guest reads them from port 0x60 with translation on), `{"cmd":"type","text":"hi\n"}`
//! (text typed on a US keyboard), `{"cmd":"screendump","path":"/x.ppm"}` (the framebuffer
//! as a binary PPM), `{"cmd":"attach_disk","path":"/d.raw"}` (hot-add into the empty
//! virtio-blk slot). Responses: `{"ok":true,"state":"running",…}` or
//! `{"ok":false,"error":"…"}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::VmmEvent;

/// Longest request line accepted, bytes.
pub const MAX_LINE: usize = 4096;

/// A request to the VMM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Report the VM's state.
    Status,
    /// Ask the guest to shut down (the power button); does not wait.
    Shutdown,
    /// Stop the VM at once; the process exits.
    Stop,
    /// Reset the VM (a cold boot in the same process id).
    Reset,
    /// Pause all vCPUs.
    Pause,
    /// Resume paused vCPUs.
    Resume,
    /// Pause the VM and write a snapshot (one stream: state, framebuffer, memory) into
    /// `dir/vm.snap`; `dir` must exist. The VM stays paused.
    Snapshot {
        /// Target directory.
        dir: std::path::PathBuf,
    },
    /// Switch dirty-page logging of guest memory on or off.
    DirtyLog {
        /// On or off.
        enable: bool,
    },
    /// Count the pages the guest wrote since the last such request (or since logging was
    /// switched on); the log restarts empty.
    DirtyPages,
    /// Press and release keys: PS/2 scan codes (set 1, make and break codes, 0xe0
    /// prefixes included) queued on the keyboard.
    Key {
        /// The bytes, in order.
        codes: Vec<u8>,
    },
    /// Write the framebuffer to `path` as a binary PPM (P6).
    Screendump {
        /// The file to create.
        path: std::path::PathBuf,
    },
    /// Type text on a US keyboard (letters, digits, punctuation, space, enter, tab; shift
    /// where needed).
    Type {
        /// The text.
        text: String,
    },
    /// Hot-add: attach the raw image at `path` (absolute) to the empty hot-add virtio-blk
    /// slot; the guest is told by a configuration-change interrupt.
    AttachDisk {
        /// The image.
        path: std::path::PathBuf,
        /// Serve it read-only.
        #[serde(default)]
        read_only: bool,
    },
}

/// What the VM is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// vCPUs run.
    Running,
    /// vCPUs are parked.
    Paused,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ControlResponse {
    /// Whether the request was carried out.
    pub ok: bool,
    /// State after the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RunState>,
    /// The VMM's pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// vCPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    /// Guest RAM, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Pages dirtied (answer to `dirty_pages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_pages: Option<u64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ControlResponse {
    /// A failure with a message.
    pub fn error(msg: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(msg.into()),
            ..Default::default()
        }
    }
}

/// Parses one request line.
pub fn parse_request(line: &str) -> Result<ControlRequest, String> {
    if line.len() > MAX_LINE {
        return Err(format!("request longer than {MAX_LINE} bytes"));
    }
    serde_json::from_str(line.trim()).map_err(|e| format!("bad request: {e}"))
}

/// Serves the control socket until the process ends: each request goes to the VMM loop
/// with a reply channel.
pub fn serve(listener: UnixListener, events: SyncSender<VmmEvent>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if let Err(e) = serve_connection(stream, &events) {
                    tracing::debug!(error = %e, "control connection ended");
                }
            }
            Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
        }
    }
}

fn serve_connection(stream: UnixStream, events: &SyncSender<VmmEvent>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream).take(MAX_LINE as u64 + 1);
    let mut line = String::new();
    loop {
        line.clear();
        reader.set_limit(MAX_LINE as u64 + 1);
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let (written_tx, written_rx) = sync_channel(1);
        let resp = match parse_request(&line) {
            Ok(req) => {
                let (tx, rx) = sync_channel(1);
                if events.send(VmmEvent::Control(req, tx, written_rx)).is_err() {
                    return Ok(());
                }
                rx.recv_timeout(Duration::from_secs(30))
                    .unwrap_or_else(|_| ControlResponse::error("the VMM did not answer"))
            }
            Err(e) => ControlResponse::error(e),
        };
        let mut text = serde_json::to_string(&resp).unwrap_or_else(|_| "{\"ok\":false}".into());
        text.push('\n');
        let sent = out.write_all(text.as_bytes()).and_then(|_| out.flush());
        let _ = written_tx.try_send(());
        sent?;
        if !line.ends_with('\n') {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_refuses_junk() {
        assert_eq!(
            parse_request(r#"{"cmd":"status"}"#),
            Ok(ControlRequest::Status)
        );
        assert_eq!(
            parse_request(" {\"cmd\":\"shutdown\"}\n"),
            Ok(ControlRequest::Shutdown)
        );
        for (text, req) in [
            ("stop", ControlRequest::Stop),
            ("reset", ControlRequest::Reset),
            ("pause", ControlRequest::Pause),
            ("resume", ControlRequest::Resume),
        ] {
            assert_eq!(parse_request(&format!("{{\"cmd\":\"{text}\"}}")), Ok(req));
        }
        assert_eq!(
            parse_request(r#"{"cmd":"snapshot","dir":"/s"}"#),
            Ok(ControlRequest::Snapshot { dir: "/s".into() })
        );
        assert!(parse_request(r#"{"cmd":"snapshot"}"#).is_err());
        assert_eq!(
            parse_request(r#"{"cmd":"dirty_log","enable":true}"#),
            Ok(ControlRequest::DirtyLog { enable: true })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"dirty_pages"}"#),
            Ok(ControlRequest::DirtyPages)
        );
        assert_eq!(
            parse_request(r#"{"cmd":"key","codes":[30,158]}"#),
            Ok(ControlRequest::Key {
                codes: vec![30, 158]
            })
        );
        assert!(parse_request(r#"{"cmd":"key","codes":[300]}"#).is_err());
        assert_eq!(
            parse_request(r#"{"cmd":"type","text":"Hi 1\n"}"#),
            Ok(ControlRequest::Type {
                text: "Hi 1\n".into()
            })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"screendump","path":"/s.ppm"}"#),
            Ok(ControlRequest::Screendump {
                path: "/s.ppm".into()
            })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"attach_disk","path":"/d.raw"}"#),
            Ok(ControlRequest::AttachDisk {
                path: "/d.raw".into(),
                read_only: false
            })
        );
        assert!(parse_request(r#"{"cmd":"attach_disk"}"#).is_err());
        assert!(parse_request(r#"{"cmd":"explode"}"#).is_err());
        assert!(parse_request("status").is_err());
        assert!(parse_request(&" ".repeat(MAX_LINE + 1)).is_err());
    }

    #[test]
    fn responses_round_trip_and_omit_empty_fields() {
        let r = ControlResponse {
            ok: true,
            state: Some(RunState::Paused),
            ..Default::default()
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"ok":true,"state":"paused"}"#);
        assert_eq!(serde_json::from_str::<ControlResponse>(&text).unwrap(), r);
        let e = serde_json::to_string(&ControlResponse::error("no")).unwrap();
        assert_eq!(e, r#"{"ok":false,"error":"no"}"#);
    }

    #[test]
    fn a_connection_gets_one_answer_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl");
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, rx) = sync_channel(4);
        std::thread::spawn(move || serve(listener, tx));
        std::thread::spawn(move || {
            while let Ok(VmmEvent::Control(req, reply, _)) = rx.recv() {
                let _ = reply.send(ControlResponse {
                    ok: req == ControlRequest::Status,
                    ..Default::default()
                });
            }
        });
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{\"cmd\":\"status\"}\nnonsense\n{\"cmd\":\"pause\"}\n")
            .unwrap();
        let mut lines = BufReader::new(s).lines();
        let a: ControlResponse = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert!(a.ok);
        let b: ControlResponse = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert!(!b.ok && b.error.unwrap().contains("bad request"));
        let c: ControlResponse = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert!(!c.ok);
    }
}
