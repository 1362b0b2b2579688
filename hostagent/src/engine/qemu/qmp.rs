//! A minimal QMP client: connect, negotiate, execute commands (events are skipped).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::engine::EngineError;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One QMP session.
pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

fn ctl(msg: impl Into<String>) -> EngineError {
    EngineError::Control(msg.into())
}

impl Qmp {
    /// Connects to a QMP socket and leaves capabilities negotiation done.
    pub async fn connect(path: &Path) -> Result<Self, EngineError> {
        let stream = tokio::time::timeout(IO_TIMEOUT, UnixStream::connect(path))
            .await
            .map_err(|_| ctl("QMP connect timed out"))?
            .map_err(|e| {
                ctl(format!(
                    "cannot connect to QMP socket {}: {e}",
                    path.display()
                ))
            })?;
        let (r, w) = stream.into_split();
        let mut qmp = Qmp {
            reader: BufReader::new(r),
            writer: w,
        };
        let greeting = qmp.read_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(ctl(format!("unexpected QMP greeting: {greeting}")));
        }
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    async fn read_message(&mut self) -> Result<Value, EngineError> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = tokio::time::timeout(IO_TIMEOUT, self.reader.read_line(&mut line))
                .await
                .map_err(|_| ctl("QMP read timed out"))?
                .map_err(|e| ctl(format!("QMP read failed: {e}")))?;
            if n == 0 {
                return Err(ctl("QMP connection closed"));
            }
            if line.len() > (4 << 20) {
                return Err(ctl("QMP message too large"));
            }
            if line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(&line).map_err(|e| ctl(format!("bad QMP message: {e}")));
        }
    }

    /// Executes a command and returns its `return` value.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, EngineError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        tokio::time::timeout(IO_TIMEOUT, self.writer.write_all(text.as_bytes()))
            .await
            .map_err(|_| ctl("QMP write timed out"))?
            .map_err(|e| ctl(format!("QMP write failed: {e}")))?;
        loop {
            let m = self.read_message().await?;
            if m.get("event").is_some() {
                continue;
            }
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                let desc = e
                    .get("desc")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                return Err(ctl(format!("QMP {command} failed: {desc}")));
            }
        }
    }
}

/// Connects, runs one command, disconnects.
pub async fn execute_once(
    path: &Path,
    command: &str,
    arguments: Option<Value>,
) -> Result<Value, EngineError> {
    let mut q = Qmp::connect(path).await?;
    q.execute(command, arguments).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A fake QMP peer (a test double beside the real QEMU in the end-to-end tests).
    async fn fake_qmp(listener: UnixListener) {
        let (s, _) = listener.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
            .await
            .unwrap();
        let mut line = String::new();
        while r.read_line(&mut line).await.unwrap() > 0 {
            let v: Value = serde_json::from_str(&line).unwrap();
            line.clear();
            let reply = match v["execute"].as_str().unwrap() {
                "qmp_capabilities" => "{\"return\": {}}\n".to_string(),
                "query-status" => {
                    "{\"event\": \"X\"}\n{\"return\": {\"status\": \"running\"}}\n".to_string()
                }
                _ => "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"nope\"}}\n"
                    .to_string(),
            };
            w.write_all(reply.as_bytes()).await.unwrap();
        }
    }

    #[tokio::test]
    async fn negotiates_skips_events_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(fake_qmp(listener));
        let mut q = Qmp::connect(&path).await.unwrap();
        let r = q.execute("query-status", None).await.unwrap();
        assert_eq!(r["status"], "running");
        let e = q.execute("bogus", None).await.unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
