//! The device event loop: one thread (`events`) waiting in epoll on the fds of device
//! backends (a tap) and running each one's handler when it becomes readable. Fds are
//! watched edge-triggered: a handler reads until the fd is empty, or leaves the rest for
//! a later call it arranges itself (virtio-net does when the guest has no buffer).

use std::os::fd::{AsRawFd, RawFd};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

/// What runs when an fd is ready.
pub type Handler = Box<dyn FnMut() + Send>;

/// Why the loop could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("device event loop: {what}: {source}")]
pub struct EventLoopError {
    /// The step.
    what: &'static str,
    /// Cause.
    source: std::io::Error,
}

/// Handlers keyed by their fd's registration index; index 0 is the stop eventfd.
pub struct EventLoop {
    epoll: Epoll,
    stop: EventFd,
    handlers: Vec<Handler>,
}

impl EventLoop {
    /// An empty loop.
    pub fn new() -> Result<Self, EventLoopError> {
        let err = |what| move |source| EventLoopError { what, source };
        let epoll = Epoll::new().map_err(err("epoll_create"))?;
        let stop = EventFd::new(libc::EFD_NONBLOCK).map_err(err("eventfd"))?;
        epoll
            .ctl(
                ControlOperation::Add,
                stop.as_raw_fd(),
                EpollEvent::new(EventSet::IN, 0),
            )
            .map_err(err("epoll_ctl"))?;
        Ok(Self {
            epoll,
            stop,
            handlers: Vec::new(),
        })
    }

    /// Runs `handler` whenever `fd` becomes readable. The fd must stay open as long as the
    /// loop runs.
    pub fn add(&mut self, fd: RawFd, handler: Handler) -> Result<(), EventLoopError> {
        let data = self.handlers.len() as u64 + 1;
        self.epoll
            .ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN | EventSet::EDGE_TRIGGERED, data),
            )
            .map_err(|source| EventLoopError {
                what: "epoll_ctl",
                source,
            })?;
        self.handlers.push(handler);
        Ok(())
    }

    /// True when nothing but the stop fd is watched.
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    /// An eventfd that ends [`EventLoop::run`] when written.
    pub fn stopper(&self) -> std::io::Result<EventFd> {
        self.stop.try_clone()
    }

    /// Runs handlers until the stop eventfd is written (or epoll fails). Each handler runs
    /// once at the start too, for what was ready before the loop watched it.
    pub fn run(mut self) {
        for h in &mut self.handlers {
            h();
        }
        let mut events = vec![EpollEvent::default(); 16];
        loop {
            let n = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "device event loop: epoll_wait failed; stopping");
                    return;
                }
            };
            for ev in &events[..n] {
                match ev.data() {
                    0 => return,
                    i => {
                        if let Some(h) = usize::try_from(i - 1)
                            .ok()
                            .and_then(|i| self.handlers.get_mut(i))
                        {
                            h();
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc::sync_channel;
    use std::time::Duration;

    #[test]
    fn handlers_run_when_their_fd_is_readable_and_stop_ends_the_loop() {
        let (mut a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let (tx, rx) = sync_channel(16);
        let mut el = EventLoop::new().unwrap();
        assert!(el.is_empty());
        let fd = b.as_raw_fd();
        let mut b = b;
        el.add(
            fd,
            Box::new(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = b.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let _ = tx.send(buf[..n].to_vec());
                }
            }),
        )
        .unwrap();
        let stop = el.stopper().unwrap();
        let t = std::thread::spawn(move || el.run());
        a.write_all(b"one").unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), b"one");
        a.write_all(b"two").unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), b"two");
        stop.write(1).unwrap();
        t.join().unwrap();
    }
}
