//! Workers: the threads that move frames between the port devices and the
//! pipeline in real time.
//!
//! Each worker owns one [`Router`] and one queue of every TAP (queue `i` for
//! worker `i`, so no two workers touch the same fd and a flow, hashed to one
//! queue by the kernel, stays in order on one worker). It waits for
//! readiness with mio (edge-triggered), then takes one burst from each ready
//! port in turn until every port is drained to `WouldBlock`; each burst runs
//! through the pipeline and what it queued goes out at once.
//!
//! A TAP has no batch read or write of its own: a `read` or `write` moves
//! one frame (offloads make that up to 64 KiB). So TAP frames move through
//! an io_uring ring ([`Ring`]): a batch of reads (as many as the port's
//! last batch found frames for, doubling while every read finds one, so a
//! quiet port costs a few reads that find nothing) and all of a port's
//! queued writes, each batch for one syscall, which halved the CPU a
//! 64-byte frame costs a worker here. Where the kernel refuses io_uring,
//! or the config says not to, each frame is a syscall as before. AF_PACKET
//! ports do their syscalls on their own I/O threads (see `port::afpacket`).
//!
//! Sleeping in `epoll_wait` costs a wake-up per frame that arrives while the
//! worker sleeps: tens of microseconds on a virtual machine, where a halted
//! vCPU must be woken through the hypervisor. With `busy_poll` set, a worker
//! that has just seen frames keeps asking without sleeping (`epoll_wait`
//! with a zero timeout, one syscall for all its fds) until no frame has come
//! for that long, as DPDK and VPP poll and as Linux's `busy_poll` does for
//! sockets: lower latency for a core kept busy while traffic flows.
//!
//! The control plane never stops a worker: it publishes a new [`Snapshot`]
//! (FIB, link states, devices) through an `ArcSwap`, which each worker picks
//! up between bursts without a lock. A worker's counters are copied out
//! every 100 ms (a `try_lock`, skipped when the reader holds it) for
//! `stats`.
//!
//! Each worker has its own neighbour table; the ARP or NDP answer to one
//! worker's request may arrive on another's queue, so workers pass the
//! answers they see to each other through bounded lock-free inboxes and
//! wake the receiver.

use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::Sender;
use crossbeam_queue::ArrayQueue;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;

use crate::fib::Fib;
use crate::nat::SessionView;
use crate::packet::offload::{self, Offload};
use crate::packet::{MacAddr, Packet, PacketBuf};
use crate::pipeline::Router;
use crate::port::{AfPacket, PortId, Ring, Tap};
use crate::stats::{DropReason, Stats};
use crate::time::Time;

/// What a port is bound to, for the workers.
pub enum Device {
    /// A TAP device.
    Tap(Tap),
    /// A NIC through AF_PACKET.
    AfPacket(AfPacket),
    /// Nothing: the port is administratively down.
    Down,
}

impl Device {
    fn rx_fd(&self, worker: usize) -> Option<RawFd> {
        match self {
            Device::Tap(t) if worker < t.queues() => Some(t.fd(worker)),
            _ => None,
        }
    }
}

/// The worker that owns an AF_PACKET port's rx (its queue is not per
/// worker): worker 0 for a port in [`Snapshot::single`], else one by port.
pub fn afpacket_owner(port: PortId, workers: usize, single: bool) -> usize {
    if single {
        0
    } else {
        usize::from(port) % workers.max(1)
    }
}

/// The token of a worker's waker.
const WAKE: Token = Token(usize::MAX);

/// What the dataplane forwards with; replaced whole by the control plane.
pub struct Snapshot {
    /// The FIB.
    pub fib: Arc<Fib>,
    /// Link state of each port, by [`PortId`].
    pub links: Vec<bool>,
    /// Ports only worker 0 reads, by [`PortId`]: switch members, uplinks
    /// and NAT outside ports, whose MAC and NAT tables live in worker 0's
    /// router (their TAPs have one queue; an AF_PACKET one is owned by 0).
    pub single: Vec<bool>,
    /// Each port's device, by [`PortId`]. A port rebound at run time gets a
    /// new one; workers move their polling to it when they pick up the
    /// snapshot, and the old device closes when the last of them lets go.
    pub devices: Vec<Arc<Device>>,
}

/// Something a worker tells the control plane.
#[derive(Debug)]
pub enum Event {
    /// A port's device failed (removed, or an error other than "try again"):
    /// its fd is no longer polled.
    DeviceFailed {
        /// The port.
        port: PortId,
        /// What the read returned.
        error: io::Error,
    },
}

/// State shared by the workers and the control plane.
pub struct Shared {
    /// The current snapshot.
    pub snapshot: ArcSwap<Snapshot>,
    /// Set to make every worker finish.
    pub stop: AtomicBool,
    /// Each worker's counters, as last copied out.
    pub stats: Vec<Mutex<Stats>>,
    /// Where workers report device failures.
    pub events: Sender<Event>,
    /// Each worker's inbox of neighbour answers seen by the others.
    pub neighbors: Vec<ArrayQueue<Learned>>,
    /// Each worker's waker, set when it starts.
    pub wakers: Vec<OnceLock<Arc<Waker>>>,
    /// Raised by the control plane to ask every worker for its NAT
    /// sessions (`nat sessions`): a generation number.
    pub nat_wanted: AtomicU64,
    /// Each worker's answer, tagged with the generation it answers.
    pub nat_dumps: Vec<Mutex<NatDump>>,
    /// Fault injection: worker `i` fails with an error when bit `i` is
    /// set, as one whose device or poller broke would (tests of the
    /// daemon's supervision).
    pub fail: Arc<AtomicU64>,
}

/// A worker's NAT sessions, copied out on request.
#[derive(Debug, Default)]
pub struct NatDump {
    /// The request ([`Shared::nat_wanted`]) this answers.
    pub generation: u64,
    /// The sessions of the worker's NAT tables then.
    pub sessions: Vec<SessionView>,
}

/// A neighbour answer passed between workers: port, address, MAC.
pub type Learned = (PortId, IpAddr, MacAddr);

/// Capacity of a worker's neighbour inbox; answers beyond it are dropped
/// (the neighbour is asked again).
pub const NEIGHBOR_INBOX: usize = 1024;

/// Tunables of a worker.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Frames taken from one port before turning to the next.
    pub burst: usize,
    /// How long to keep polling without sleeping after the last frame
    /// (zero: sleep at once).
    pub busy_poll: Duration,
    /// Read and write TAP frames in batches through io_uring (falling back
    /// to a syscall per frame where the kernel refuses it); false: always a
    /// syscall per frame.
    pub io_uring: bool,
}

const TICK: Duration = Duration::from_millis(10);
/// Operations one io_uring submission holds.
const RING_DEPTH: usize = 256;
/// Fewest reads a batch asks for.
const MIN_READS: usize = 4;
const PUBLISH: Duration = Duration::from_millis(100);
/// Largest frame a segment of a super-packet makes (jumbo MTU and headers).
const SEGMENT_MAX: usize = 9216 + 18;

/// One worker thread's state.
pub struct Worker {
    id: usize,
    router: Router,
    shared: Arc<Shared>,
    cfg: WorkerConfig,
    snapshot: Arc<Snapshot>,
    epoch: Instant,
    scratch: Vec<u8>,
    learned: Vec<Learned>,
    nat_served: u64,
    /// The ring for batched TAP I/O, once the worker runs (none: a syscall
    /// per frame).
    ring: Option<Ring>,
    /// Buffers lent to a batch of reads, and what each read gave.
    rx_bufs: Vec<PacketBuf>,
    rx_results: Vec<io::Result<Result<Offload, DropReason>>>,
    /// Per port, the reads its next batch asks for: the burst size while
    /// frames keep coming, fewer after a drain, so a quiet port costs few
    /// reads that find nothing.
    rx_reads: Vec<usize>,
}

/// What a worker polls: per port, whether it may have frames, and the
/// device registered for it.
struct Polled {
    ready: Vec<bool>,
    /// AF_PACKET ports this worker owns (readied by the waker).
    woken: Vec<usize>,
    devices: Vec<Arc<Device>>,
    waker: Arc<Waker>,
}

enum Rx {
    /// The port has nothing more for now.
    Drained,
    /// A full burst was read; there may be more.
    More,
    /// The device failed.
    Failed(io::Error),
}

impl Worker {
    /// Worker `id` (which picks its TAP queues) running `router`.
    pub fn new(id: usize, router: Router, shared: Arc<Shared>, cfg: WorkerConfig) -> Self {
        let snapshot = shared.snapshot.load_full();
        let mut w = Worker {
            id,
            router,
            shared,
            cfg,
            snapshot: snapshot.clone(),
            epoch: Instant::now(),
            scratch: vec![0; SEGMENT_MAX],
            learned: Vec::new(),
            nat_served: 0,
            ring: None,
            rx_bufs: Vec::new(),
            rx_results: Vec::new(),
            rx_reads: Vec::new(),
        };
        w.apply(&snapshot);
        w
    }

    fn now(&self) -> Time {
        Time::from_duration(self.epoch.elapsed())
    }

    fn apply(&mut self, snap: &Snapshot) {
        self.router.set_fib(snap.fib.clone());
        for (port, &up) in snap.links.iter().enumerate() {
            self.router.set_link(port as PortId, up);
        }
    }

    /// Passes the neighbour answers this worker saw to the others, and takes
    /// theirs.
    fn share_neighbors(&mut self) {
        self.router.take_learned(&mut self.learned);
        if !self.learned.is_empty() {
            for (i, inbox) in self.shared.neighbors.iter().enumerate() {
                if i == self.id {
                    continue;
                }
                for &l in &self.learned {
                    let _ = inbox.push(l);
                }
                // Wake the peer: it may be holding packets for this answer.
                if let Some(w) = self.shared.wakers[i].get() {
                    let _ = w.wake();
                }
            }
            self.learned.clear();
        }
        if let Some(inbox) = self.shared.neighbors.get(self.id) {
            while let Some((port, addr, mac)) = inbox.pop() {
                self.router.learn_neighbor(port, addr, mac);
            }
        }
    }

    /// Answers a pending request for the NAT sessions (checked on every
    /// wake-up and tick, so an answer takes at most a tick).
    fn serve_nat(&mut self) {
        let wanted = self.shared.nat_wanted.load(Ordering::Acquire);
        if wanted == self.nat_served {
            return;
        }
        self.nat_served = wanted;
        let now = self.router.now();
        let sessions = self
            .router
            .nat()
            .iter()
            .flat_map(|n| n.sessions(now))
            .collect();
        if let Some(slot) = self.shared.nat_dumps.get(self.id) {
            *slot.lock() = NatDump {
                generation: wanted,
                sessions,
            };
        }
    }

    /// Picks up a new snapshot; true when there was one.
    fn refresh(&mut self) -> bool {
        let cur = self.shared.snapshot.load();
        if Arc::ptr_eq(&cur, &self.snapshot) {
            return false;
        }
        let snap = Arc::clone(&cur);
        drop(cur);
        self.apply(&snap);
        // A port on a new device may face other hosts: what was learned
        // through the old one no longer holds.
        for (port, dev) in snap.devices.iter().enumerate() {
            if self
                .snapshot
                .devices
                .get(port)
                .is_some_and(|old| !Arc::ptr_eq(old, dev))
            {
                self.router.forget_neighbors(port as PortId);
            }
        }
        self.snapshot = snap;
        true
    }

    /// Runs until [`Shared::stop`] is set; returns the router (with its
    /// final counters) after dropping what still waits for a neighbour.
    pub fn run(mut self) -> io::Result<Router> {
        if self.cfg.io_uring {
            match Ring::new(RING_DEPTH) {
                Ok(ring) => {
                    self.rx_bufs.reserve(self.cfg.burst);
                    self.rx_results.reserve(self.cfg.burst);
                    self.ring = Some(ring);
                }
                Err(e) => tracing::warn!(
                    worker = self.id,
                    error = %e,
                    "io_uring unavailable: one syscall per TAP frame"
                ),
            }
        }
        let mut poll = Poll::new()?;
        let shared = Arc::clone(&self.shared);
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let _ = shared.wakers[self.id].set(Arc::clone(&waker));
        let mut io = Polled {
            ready: Vec::new(),
            woken: Vec::new(),
            devices: Vec::new(),
            waker,
        };
        self.sync_devices(&poll, &mut io)?;
        let mut events = Events::with_capacity(64);
        let mut burst: Vec<Packet> = Vec::with_capacity(self.cfg.burst);
        let (mut last_tick, mut last_publish) = (Instant::now(), Instant::now());
        let mut last_frame: Option<Instant> = None;
        while !shared.stop.load(Ordering::Relaxed) {
            if shared.fail.load(Ordering::Relaxed) & (1 << (self.id % 64)) != 0 {
                return Err(io::Error::other("failure injected"));
            }
            let spinning = !self.cfg.busy_poll.is_zero()
                && last_frame.is_some_and(|t| t.elapsed() < self.cfg.busy_poll);
            let timeout = if spinning { Duration::ZERO } else { TICK };
            match poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for e in events.iter() {
                if e.token() == WAKE {
                    // An AF_PACKET rx queue has frames, a peer passed
                    // neighbour answers, or the control plane published a
                    // snapshot (taken now, so that the FIB copy it replaced
                    // is let go for the writer to edit).
                    if self.refresh() {
                        self.sync_devices(&poll, &mut io)?;
                    }
                    for &p in &io.woken {
                        io.ready[p] = true;
                    }
                    self.share_neighbors();
                    self.serve_nat();
                    self.flush();
                } else if let Some(r) = io.ready.get_mut(e.token().0) {
                    *r = true;
                }
            }
            // One burst from each ready port in turn, until all are drained.
            while io.ready.iter().any(|&r| r) && !shared.stop.load(Ordering::Relaxed) {
                if self.refresh() {
                    self.sync_devices(&poll, &mut io)?;
                }
                for port in 0..io.ready.len() {
                    if !io.ready[port] {
                        continue;
                    }
                    // One clock read per burst (a few per frame would show).
                    let at = Instant::now();
                    let now = Time::from_duration(at - self.epoch);
                    match self.rx_burst(port as PortId, &mut burst, now) {
                        Rx::More => {}
                        Rx::Drained => io.ready[port] = false,
                        Rx::Failed(error) => {
                            io.ready[port] = false;
                            if let Some(fd) = io.devices[port].rx_fd(self.id) {
                                let _ = poll.registry().deregister(&mut SourceFd(&fd));
                            }
                            let _ = shared.events.send(Event::DeviceFailed {
                                port: port as PortId,
                                error,
                            });
                        }
                    }
                    if !burst.is_empty() {
                        last_frame = Some(at);
                    }
                    self.router.process(&mut burst, now);
                    self.share_neighbors();
                    self.flush();
                }
            }
            let at = Instant::now();
            if at - last_tick >= TICK {
                last_tick = at;
                if self.refresh() {
                    self.sync_devices(&poll, &mut io)?;
                }
                self.router.tick(self.now());
                self.serve_nat();
                self.share_neighbors();
                self.flush();
            }
            if at - last_publish >= PUBLISH {
                last_publish = at;
                self.publish(false);
            }
        }
        self.router.finish();
        self.flush();
        self.publish(true);
        Ok(self.router)
    }

    /// Polls the devices of the current snapshot: a port whose device
    /// changed has the old one's fd deregistered and the new one's
    /// registered (and marked ready, as frames may be waiting already).
    fn sync_devices(&mut self, poll: &Poll, io: &mut Polled) -> io::Result<()> {
        let snap = Arc::clone(&self.snapshot);
        let n = snap.devices.len();
        io.ready.resize(n, false);
        for (port, dev) in snap.devices.iter().enumerate() {
            if io.devices.get(port).is_some_and(|d| Arc::ptr_eq(d, dev)) {
                continue;
            }
            if let Some(fd) = io.devices.get(port).and_then(|d| d.rx_fd(self.id)) {
                let _ = poll.registry().deregister(&mut SourceFd(&fd));
            }
            io.woken.retain(|&p| p != port);
            if let Some(fd) = dev.rx_fd(self.id) {
                poll.registry()
                    .register(&mut SourceFd(&fd), Token(port), Interest::READABLE)?;
                io.ready[port] = true;
            }
            if let Device::AfPacket(a) = &**dev {
                let single = snap.single.get(port).copied().unwrap_or(false);
                if afpacket_owner(port as PortId, self.shared.wakers.len(), single) == self.id {
                    a.set_waker(Arc::clone(&io.waker));
                    io.woken.push(port);
                    io.ready[port] = true;
                }
            }
            if port < io.devices.len() {
                io.devices[port] = Arc::clone(dev);
            } else {
                io.devices.push(Arc::clone(dev));
            }
        }
        Ok(())
    }

    fn publish(&self, wait: bool) {
        let slot = &self.shared.stats[self.id];
        let guard = if wait {
            Some(slot.lock())
        } else {
            slot.try_lock()
        };
        if let Some(mut s) = guard {
            s.clone_from(self.router.stats());
        }
    }

    fn rx_burst(&mut self, port: PortId, burst: &mut Vec<Packet>, now: Time) -> Rx {
        let snap = Arc::clone(&self.snapshot);
        let Some(dev) = snap.devices.get(usize::from(port)) else {
            return Rx::Drained;
        };
        let tap = match &**dev {
            Device::Tap(tap) => tap,
            Device::AfPacket(a) => return self.rx_afpacket(a, port, burst, now),
            Device::Down => return Rx::Drained,
        };
        if self.ring.is_some() {
            return self.rx_tap_batches(tap, port, burst, now);
        }
        for _ in 0..self.cfg.burst {
            let mut buf = self.router.take_buf();
            match tap.recv(self.id, &mut buf) {
                Ok(off) => self.router.receive_buf(burst, port, now, buf, off),
                Err(e) => {
                    self.router.recycle(buf);
                    return match e.kind() {
                        io::ErrorKind::WouldBlock => Rx::Drained,
                        io::ErrorKind::Interrupted => Rx::More,
                        _ => Rx::Failed(e),
                    };
                }
            }
        }
        Rx::More
    }

    /// [`Worker::rx_burst`] for a TAP through the ring: batches of reads
    /// until a burst is full or the queue is empty.
    fn rx_tap_batches(
        &mut self,
        tap: &Tap,
        port: PortId,
        burst: &mut Vec<Packet>,
        now: Time,
    ) -> Rx {
        let Some(ring) = self.ring.as_mut() else {
            return Rx::Drained;
        };
        loop {
            let room = self.cfg.burst.saturating_sub(burst.len());
            if room == 0 {
                return Rx::More;
            }
            let p = usize::from(port);
            if self.rx_reads.len() <= p {
                self.rx_reads.resize(p + 1, MIN_READS);
            }
            let reads = self.rx_reads[p].min(room);
            for _ in 0..reads {
                self.rx_bufs.push(self.router.take_buf());
            }
            tap.recv_batch(self.id, ring, &mut self.rx_bufs, &mut self.rx_results);
            let (mut got, mut drained, mut failed, mut refused) = (0, false, None, false);
            for (buf, r) in self.rx_bufs.drain(..).zip(self.rx_results.drain(..)) {
                match r {
                    Ok(off) => {
                        got += 1;
                        self.router.receive_buf(burst, port, now, buf, off);
                    }
                    Err(e) => {
                        self.router.recycle(buf);
                        match e.kind() {
                            io::ErrorKind::WouldBlock => drained = true,
                            io::ErrorKind::Interrupted => {}
                            _ if matches!(
                                e.raw_os_error(),
                                Some(libc::EOPNOTSUPP | libc::EINVAL)
                            ) =>
                            {
                                refused = true
                            }
                            _ => failed = failed.or(Some(e)),
                        }
                    }
                }
            }
            if refused {
                // A kernel whose TAP cannot read without waiting, or whose
                // io_uring has no plain read: the frames stay queued for
                // the syscall path.
                tracing::warn!(
                    worker = self.id,
                    "io_uring cannot read TAPs here: one syscall per TAP frame"
                );
                self.ring = None;
                return Rx::More;
            }
            self.rx_reads[p] = if got == reads {
                (reads * 2).min(self.cfg.burst)
            } else {
                (got + 1)
                    .next_power_of_two()
                    .clamp(MIN_READS, self.cfg.burst)
            };
            if let Some(e) = failed {
                return Rx::Failed(e);
            }
            if drained {
                return Rx::Drained;
            }
        }
    }

    fn rx_afpacket(
        &mut self,
        a: &AfPacket,
        port: PortId,
        burst: &mut Vec<Packet>,
        now: Time,
    ) -> Rx {
        let mut spare = None;
        for _ in 0..self.cfg.burst {
            if spare.is_none() {
                spare = Some(self.router.take_buf());
            }
            match a.recv(&mut spare) {
                Some(buf) => self
                    .router
                    .receive_buf(burst, port, now, buf, Ok(Offload::default())),
                None => {
                    if let Some(b) = spare {
                        self.router.recycle(b);
                    }
                    return match a.failure() {
                        Some(e) => Rx::Failed(io::Error::new(e.kind(), e.to_string())),
                        None => Rx::Drained,
                    };
                }
            }
        }
        if let Some(b) = spare {
            self.router.recycle(b);
        }
        Rx::More
    }

    /// Writes out everything the router queued: a TAP's frames in batches
    /// through the ring, else one write per frame.
    fn flush(&mut self) {
        if !self.router.has_tx() {
            return;
        }
        let snap = Arc::clone(&self.snapshot);
        for (port, dev) in snap.devices.iter().enumerate() {
            let port = port as PortId;
            let mut errors = 0;
            let (id, scratch) = (self.id, &mut self.scratch);
            if let (Device::Tap(tap), Some(ring)) = (&**dev, self.ring.as_mut()) {
                self.router.drain_tx_all(port, |pkts| {
                    errors = send_batches(tap, id, ring, pkts, scratch);
                });
                if errors > 0 {
                    self.router.count_tx_errors(port, errors);
                }
                continue;
            }
            self.router.drain_tx(port, |p| {
                let sent = match &**dev {
                    Device::Tap(tap) => send(tap, id, p, scratch).is_ok(),
                    Device::AfPacket(a) => send_plain(p, scratch, |f| {
                        a.send(f)
                            .then_some(())
                            .ok_or_else(|| io::Error::other("tx queue full"))
                    })
                    .is_ok(),
                    Device::Down => false,
                };
                if !sent {
                    errors += 1;
                }
            });
            if errors > 0 {
                self.router.count_tx_errors(port, errors);
            }
        }
    }
}

/// Sends one packet on queue `q` of `tap`: as it is with its offload
/// header when the TAP takes offloads, else made plain first.
fn send(tap: &Tap, q: usize, p: &mut Packet, scratch: &mut [u8]) -> io::Result<()> {
    if tap.offloads() {
        return tap.send(q, p.buf.frame(), &p.meta.offload);
    }
    let plain = Offload::default();
    send_plain(p, scratch, |f| tap.send(q, f, &plain))
}

/// Sends `pkts` on queue `q` of `tap` in order, in batches through `ring`;
/// returns how many failed. For a TAP without offloads, a frame whose
/// partial checksum is finished here joins the batch; a super-packet, cut
/// here into segments, goes alone between batches.
fn send_batches(
    tap: &Tap,
    q: usize,
    ring: &mut Ring,
    pkts: &mut [Packet],
    scratch: &mut [u8],
) -> u64 {
    let mut errors = 0;
    let mut rest = pkts;
    while !rest.is_empty() {
        let alone = if tap.offloads() {
            None
        } else {
            rest.iter_mut().position(|p| {
                let off = p.meta.offload;
                off.is_gso()
                    || (!off.is_plain() && !offload::finish_checksum(p.buf.frame_mut(), &off))
            })
        };
        let (batch, later) = rest.split_at_mut(alone.unwrap_or(rest.len()));
        errors += tap.send_batch(q, ring, batch);
        let Some((p, tail)) = later.split_first_mut() else {
            break;
        };
        errors += u64::from(send(tap, q, p, scratch).is_err());
        rest = tail;
    }
    errors
}

/// Hands a packet to `out` as a device without offloads needs it: a
/// super-packet as the segments cut here, a partial checksum finished.
fn send_plain(
    p: &mut Packet,
    scratch: &mut [u8],
    mut out: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let off = p.meta.offload;
    if off.is_plain() {
        return out(p.buf.frame());
    }
    if off.is_gso() {
        // eth-input found where the network header starts.
        let l3 = usize::from(p.meta.l3);
        let mut result = Ok(());
        let cut = offload::segment(p.buf.frame(), l3, &off, scratch, |seg| {
            if let Err(e) = out(seg) {
                result = Err(e);
            }
        });
        return match cut {
            Some(_) => result,
            None => Err(io::Error::other("super-packet that cannot be segmented")),
        };
    }
    if !offload::finish_checksum(p.buf.frame_mut(), &off) {
        return Err(io::Error::other("checksum offsets outside the frame"));
    }
    out(p.buf.frame())
}
