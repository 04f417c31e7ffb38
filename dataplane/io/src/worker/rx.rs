//! The worker's receive side: which ports to poll, and a burst from one.

use std::io;
use std::sync::Arc;

use edgefwd_core::packet::{Packet, PacketBuf};
use edgefwd_core::port::PortId;
use edgefwd_core::time::Time;
use mio::unix::SourceFd;
use mio::{Interest, Poll, Token, Waker};

use super::{waker_owner, Event, Worker};
use crate::capture::Direction;
use crate::device::{Device, Readiness, RxStatus};

/// What a worker polls: per port, whether it may have frames, and the
/// device registered for it.
pub(super) struct Polled {
    ready: Vec<bool>,
    /// Ports whose devices this worker owns and that wake it themselves.
    woken: Vec<usize>,
    devices: Vec<Arc<dyn Device>>,
    waker: Arc<Waker>,
}

impl Polled {
    pub(super) fn new(waker: Arc<Waker>) -> Polled {
        Polled {
            ready: Vec::new(),
            woken: Vec::new(),
            devices: Vec::new(),
            waker,
        }
    }

    /// The devices that wake this worker themselves may have frames.
    pub(super) fn wake_owned(&mut self) {
        for &p in &self.woken {
            self.ready[p] = true;
        }
    }

    /// Port `port`'s fd is readable.
    pub(super) fn mark(&mut self, port: usize) {
        if let Some(r) = self.ready.get_mut(port) {
            *r = true;
        }
    }

    pub(super) fn any_ready(&self) -> bool {
        self.ready.iter().any(|&r| r)
    }

    pub(super) fn is_ready(&self, port: usize) -> bool {
        self.ready[port]
    }

    pub(super) fn ports(&self) -> usize {
        self.ready.len()
    }

    fn unregister(&self, poll: &Poll, port: usize, worker: usize) {
        if let Some(Readiness::Fd(fd)) = self.devices.get(port).map(|d| d.readiness(worker)) {
            let _ = poll.registry().deregister(&mut SourceFd(&fd));
        }
    }
}

impl Worker {
    /// Polls the devices of the current snapshot: a port whose device
    /// changed has the old one's fd deregistered and the new one's
    /// registered (and marked ready, as frames may be waiting already).
    pub(super) fn sync_devices(&mut self, poll: &Poll, io: &mut Polled) -> io::Result<()> {
        let snap = Arc::clone(&self.snapshot);
        io.ready.resize(snap.devices.len(), false);
        for (port, dev) in snap.devices.iter().enumerate() {
            if io.devices.get(port).is_some_and(|d| Arc::ptr_eq(d, dev)) {
                continue;
            }
            io.unregister(poll, port, self.id);
            io.woken.retain(|&p| p != port);
            match dev.readiness(self.id) {
                Readiness::Fd(fd) => {
                    poll.registry().register(
                        &mut SourceFd(&fd),
                        Token(port),
                        Interest::READABLE,
                    )?;
                    io.ready[port] = true;
                }
                Readiness::Waker => {
                    let workers = self.shared.wakers.len();
                    if waker_owner(port as PortId, workers) == self.id {
                        dev.set_waker(Arc::clone(&io.waker));
                        io.woken.push(port);
                        io.ready[port] = true;
                    }
                }
                Readiness::Never => {}
            }
            if port < io.devices.len() {
                io.devices[port] = Arc::clone(dev);
            } else {
                io.devices.push(Arc::clone(dev));
            }
        }
        Ok(())
    }

    /// Hands the frames of a burst just received on `port` to the
    /// captures.
    pub(super) fn capture_rx(&self, port: PortId, burst: &[Packet]) {
        let captures = &self.shared.captures;
        for p in burst.iter().filter(|p| p.meta.rx_port == port) {
            let ts = self.epoch_unix_ns + p.meta.ts.0;
            captures.offer(port, ts, Direction::Rx, p.buf.frame());
        }
    }

    /// True when a frame received on `port` will be switched unchanged to
    /// a port whose device sends tails left in a VM's memory: its tail may
    /// stay there until then.
    fn tail_goes_to_vm(&self, port: PortId, buf: &PacketBuf, now: Time) -> bool {
        let to = self.router.switched_to(port, buf.frame(), now);
        to.and_then(|to| self.snapshot.devices.get(usize::from(to)))
            .is_some_and(|d| d.carries_tails())
    }

    /// Takes one burst from `port` into `burst`. A port found drained is no
    /// longer ready; one whose device failed is no longer polled, and the
    /// control plane hears of it.
    pub(super) fn rx_burst(
        &mut self,
        poll: &Poll,
        io: &mut Polled,
        port: PortId,
        burst: &mut Vec<Packet>,
        now: Time,
    ) {
        let p = usize::from(port);
        let Some(dev) = io.devices.get(p) else {
            io.ready[p] = false;
            return;
        };
        let room = self.cfg.burst.saturating_sub(burst.len());
        // A VM's frames may leave their tails in its memory while nothing
        // else looks at them (see `vhost::tails`).
        self.io.tails.allow =
            self.cfg.vm_one_copy && dev.carries_tails() && !self.shared.captures.armed();
        let status = dev.rx_burst(&mut self.io, &mut self.router, room, &mut self.received);
        self.io.tails.allow = false;
        let mut received = std::mem::take(&mut self.received);
        for mut r in received.drain(..) {
            if r.buf.deferred_tail().is_some() && !self.tail_goes_to_vm(port, &r.buf, now) {
                self.io.tails.fill(&mut r.buf);
            }
            self.router
                .receive_buf(burst, port, r.at.unwrap_or(now), r.buf, r.offload);
        }
        self.received = received;
        match status {
            RxStatus::More => {}
            RxStatus::Drained => io.ready[p] = false,
            RxStatus::Failed(error) => {
                io.ready[p] = false;
                io.unregister(poll, p, self.id);
                io.woken.retain(|&w| w != p);
                let _ = self.shared.events.send(Event::DeviceFailed { port, error });
            }
        }
    }
}
