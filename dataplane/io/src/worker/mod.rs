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
//! A worker knows devices only through [`Device`]: it polls what each says
//! to poll ([`Readiness`]), receives bursts and hands the router's queued
//! packets back out, lending the device its own I/O state ([`QueueIo`]:
//! its queue index and its io_uring ring, which batches a TAP's reads and
//! writes for one syscall each, since a TAP has no batch call of its own).
//! A device read by I/O threads of its own (AF_PACKET) wakes the one worker
//! that owns it instead.
//!
//! Sleeping in `epoll_wait` costs a wake-up per frame that arrives while the
//! worker sleeps, dear on a virtual machine, where a halted vCPU must be
//! woken through the hypervisor. With `busy_poll` set, a worker
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
//! wake the receiver. Stateful paths run on every worker the same way: a
//! NAT flow has one owning worker, to which the others hand its packets,
//! and switches tell each other the addresses they learn (see `handoff`).
//!
//! A port gets one burst per round, whatever it has waiting: a VM that
//! floods its queue takes no more of its worker than any other port does.

mod ask;
mod handoff;
mod rx;
mod tx;

pub use ask::{Answer, Ask, Asks};
pub use handoff::{Desk, HandOffs, Parcel, HANDOFF_QUEUE, ROUND_BURSTS};

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::Sender;
use crossbeam_queue::ArrayQueue;
use edgefwd_core::census::Census;
use edgefwd_core::fib::Fib;
use edgefwd_core::packet::{MacAddr, Packet};
use edgefwd_core::pipeline::watch::PacketTrace;
use edgefwd_core::pipeline::Router;
use edgefwd_core::port::PortId;
use edgefwd_core::service::ServiceConfig;
use edgefwd_core::time::Time;
use mio::{Events, Poll, Token, Waker};
use parking_lot::Mutex;

use crate::capture::{Captures, Direction};
use crate::device::{Device, QueueIo, Received};
use rx::Polled;

/// The worker that reads a device with I/O threads of its own (its queue
/// is not per worker, [`crate::Readiness::Waker`]): one by port.
pub fn waker_owner(port: PortId, workers: usize) -> usize {
    usize::from(port) % workers.max(1)
}

/// The token of a worker's waker.
const WAKE: Token = Token(usize::MAX);

/// What the dataplane forwards with; replaced whole by the control plane.
pub struct Snapshot {
    /// The FIB.
    pub fib: Arc<Fib>,
    /// Link state of each port, by [`PortId`].
    pub links: Vec<bool>,
    /// Each port's device, by [`PortId`]. A port rebound at run time gets a
    /// new one; workers move their polling to it when they pick up the
    /// snapshot, and the old device closes when the last of them lets go.
    pub devices: Vec<Arc<dyn Device>>,
    /// The services (unchanged from one snapshot to the next unless they
    /// changed: a worker installs them only then, keeping its flows).
    pub services: Arc<ServiceSet>,
}

/// Services as a snapshot carries them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceSet {
    /// The services.
    pub list: Vec<ServiceConfig>,
    /// By port: the interfaces cluster IPs answer.
    pub internal: Vec<bool>,
    /// Flows each worker's table holds.
    pub flows: usize,
    /// The last `service announce`: its number and the service's name.
    pub announce: (u64, String),
}

/// Something a worker tells the control plane.
#[derive(Debug)]
pub enum Event {
    /// A port's device failed (removed, or an error other than "try again"):
    /// it is no longer polled.
    DeviceFailed {
        /// The port.
        port: PortId,
        /// What the device said.
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
    pub stats: Vec<Mutex<edgefwd_core::stats::Stats>>,
    /// Where workers report device failures.
    pub events: Sender<Event>,
    /// Each worker's inbox of neighbour answers seen by the others.
    pub neighbors: Vec<ArrayQueue<Learned>>,
    /// Each worker's waker, set when it starts.
    pub wakers: Vec<OnceLock<Arc<Waker>>>,
    /// Questions to every worker (NAT sessions, traces) and their answers.
    pub asks: Asks,
    /// Live captures.
    pub captures: Captures,
    /// Fault injection: worker `i` fails with an error when bit `i` is
    /// set, as one whose device or poller broke would (tests of the
    /// daemon's supervision).
    pub fail: Arc<AtomicU64>,
    /// Each worker's time and burst counters, stored with its counters.
    pub activity: Vec<Activity>,
    /// Each worker's table gauges, as last copied out (every second).
    pub census: Vec<Mutex<Census>>,
    /// Packets, buffers and MAC addresses passed between workers.
    pub handoffs: HandOffs,
    /// Workers that have left their loop (see `Worker::drain_handoffs`).
    pub stopped: std::sync::atomic::AtomicUsize,
}

impl Shared {
    /// State for `workers` workers starting on `snapshot`.
    pub fn new(
        workers: usize,
        snapshot: Snapshot,
        events: Sender<Event>,
        fail: Arc<AtomicU64>,
    ) -> Shared {
        Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            stop: AtomicBool::new(false),
            stats: (0..workers).map(|_| Mutex::default()).collect(),
            events,
            neighbors: (0..workers)
                .map(|_| ArrayQueue::new(NEIGHBOR_INBOX))
                .collect(),
            wakers: (0..workers).map(|_| OnceLock::new()).collect(),
            asks: Asks::new(workers),
            captures: Captures::default(),
            fail,
            activity: (0..workers).map(|_| Activity::default()).collect(),
            census: (0..workers).map(|_| Mutex::default()).collect(),
            handoffs: HandOffs::new(workers),
            stopped: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

/// What a worker did with its time, as last stored (every 100 ms): read
/// without a lock by `stats`, the metrics and the watchdog.
#[derive(Debug, Default)]
pub struct Activity {
    /// Times the worker stored these, which only a live worker does: the
    /// watchdog's heartbeat.
    pub beats: AtomicU64,
    /// Nanoseconds spent outside `epoll_wait`: receiving, forwarding,
    /// sending and housekeeping.
    pub busy_ns: AtomicU64,
    /// Nanoseconds spent waiting in `epoll_wait`.
    pub idle_ns: AtomicU64,
    /// Bursts that brought at least one frame.
    pub bursts: AtomicU64,
}

impl Activity {
    /// Seconds spent outside `epoll_wait`.
    pub fn busy_seconds(&self) -> f64 {
        self.busy_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Seconds spent waiting in `epoll_wait`.
    pub fn idle_seconds(&self) -> f64 {
        self.idle_ns.load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// A worker's own running totals of [`Activity`].
#[derive(Default)]
struct Tally {
    beats: u64,
    busy: Duration,
    idle: Duration,
    bursts: u64,
}

impl Tally {
    fn store(&mut self, a: &Activity) {
        self.beats += 1;
        a.busy_ns.store(nanos(self.busy), Ordering::Relaxed);
        a.idle_ns.store(nanos(self.idle), Ordering::Relaxed);
        a.bursts.store(self.bursts, Ordering::Relaxed);
        // Last: a reader that sees the beat sees the totals with it.
        a.beats.store(self.beats, Ordering::Release);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Counts its worker among [`Shared::stopped`] when dropped: at the drain
/// at stop, or when the worker fails.
struct Stopping(Arc<Shared>);

impl Drop for Stopping {
    fn drop(&mut self) {
        self.0.stopped.fetch_add(1, Ordering::AcqRel);
    }
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
    /// Let a VM frame switched to another VM leave its payload in the
    /// sender's memory until it is sent (`vhost::tails`); false: every
    /// frame is copied into a buffer whole.
    pub vm_one_copy: bool,
}

const TICK: Duration = Duration::from_millis(10);
/// Operations one io_uring submission holds.
const RING_DEPTH: usize = 256;
const PUBLISH: Duration = Duration::from_millis(100);
/// Longest a stopping worker waits for its peers' last hand-offs.
const STOP_DRAIN: Duration = Duration::from_secs(1);
/// The table gauges are copied out every this many publishes.
const CENSUS_EVERY: u64 = 10;

/// One worker thread's state.
pub struct Worker {
    id: usize,
    router: Router,
    shared: Arc<Shared>,
    cfg: WorkerConfig,
    snapshot: Arc<Snapshot>,
    epoch: Instant,
    learned: Vec<Learned>,
    /// The last question answered ([`Asks`]).
    served: u64,
    /// The capture list this worker last set its router up for.
    captures_seen: u64,
    /// The last `service announce` done ([`ServiceSet::announce`]).
    announced: u64,
    /// The Unix time of `epoch`, in nanoseconds, for capture timestamps.
    epoch_unix_ns: u64,
    /// The worker's I/O state, lent to every device call.
    io: QueueIo,
    /// Frames a device just received, before the router takes them.
    received: Vec<Received>,
    /// This worker's side of the hand-off.
    desk: Desk,
    tally: Tally,
}

impl Worker {
    /// Worker `id` (which picks its TAP queues) running `router`.
    pub fn new(id: usize, router: Router, shared: Arc<Shared>, cfg: WorkerConfig) -> Self {
        let snapshot = shared.snapshot.load_full();
        let desk = Desk::new(id, shared.wakers.len());
        let mut w = Worker {
            id,
            router,
            shared,
            snapshot: snapshot.clone(),
            epoch: Instant::now(),
            learned: Vec::new(),
            served: 0,
            captures_seen: 0,
            announced: 0,
            epoch_unix_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, nanos),
            io: QueueIo::new(id, None),
            received: Vec::with_capacity(cfg.burst),
            desk,
            tally: Tally::default(),
            cfg,
        };
        w.apply(&snapshot, true);
        if id == 0 {
            // Starting: every load balancer on a port that is up is new.
            for (port, &up) in snapshot.links.iter().enumerate() {
                if up {
                    w.router.announce_port(port as PortId);
                }
            }
        }
        w
    }

    fn now(&self) -> Time {
        Time::from_duration(self.epoch.elapsed())
    }

    /// Installs what `snap` carries: the FIB and link states always, the
    /// services when `services` (they changed, or the worker starts).
    ///
    /// Worker 0 announces load balancers (gratuitous ARP, unsolicited NA):
    /// the addresses new in the snapshot, those of a port that came up,
    /// and one asked for by name (`service announce`).
    fn apply(&mut self, snap: &Snapshot, services: bool) {
        let announcer = self.id == 0;
        if services {
            let before: Vec<std::net::IpAddr> = self
                .router
                .services()
                .announced()
                .map(|(_, vip, _)| vip)
                .collect();
            self.router.set_services(
                snap.services.list.clone(),
                snap.services.internal.clone(),
                snap.services.flows,
            );
            if announcer {
                let new: Vec<String> = self
                    .router
                    .services()
                    .announced()
                    .filter(|(_, vip, _)| !before.contains(vip))
                    .map(|(name, _, _)| name.to_owned())
                    .collect();
                for name in new {
                    self.router.announce_service(&name);
                }
            }
        }
        self.router.set_fib(snap.fib.clone());
        for (port, &up) in snap.links.iter().enumerate() {
            let port = port as PortId;
            let was_up = self.router.ports().get(port).is_some_and(|p| p.up);
            self.router.set_link(port, up);
            if announcer && up && !was_up {
                self.router.announce_port(port);
            }
        }
        if announcer && snap.services.announce.0 != self.announced {
            self.announced = snap.services.announce.0;
            self.router.announce_service(&snap.services.announce.1);
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

    /// Hands the packets of flows other workers own to them, waking those
    /// that got some, and tells the others the MAC addresses learned.
    fn hand_off(&mut self) {
        let hand = &self.shared.handoffs;
        if self.router.has_handoffs() {
            let woke = hand.send(&mut self.desk, &mut self.router);
            for (i, w) in self.shared.wakers.iter().enumerate() {
                if woke & (1 << (i % 64)) != 0 {
                    if let Some(w) = w.get() {
                        let _ = w.wake();
                    }
                }
            }
        }
        hand.tell_macs(&mut self.desk, &mut self.router);
    }

    /// Runs what other workers handed this one (up to [`ROUND_BURSTS`]
    /// bursts), and sends their parcels back with buffers; takes in the
    /// buffers and MAC addresses they passed.
    fn serve_handed(&mut self, burst: &mut Vec<Packet>) {
        let hand = &self.shared.handoffs;
        hand.take_back(&mut self.desk, &mut self.router);
        hand.learn_macs(&self.desk, &mut self.router);
        if hand.pending(self.id) {
            hand.receive(&mut self.desk, &mut self.router, burst, self.cfg.burst);
            let now = self.now();
            self.router.process(burst, now);
            self.hand_off();
            self.flush();
        }
        if self.desk.owes() {
            let hand = &self.shared.handoffs;
            hand.give_back(&mut self.desk, &mut self.router);
        }
    }

    /// At stop: runs what peers hand over until every worker has stopped
    /// and no queue holds anything (seen twice, a millisecond apart, so a
    /// peer in the middle of a burst has handed it on), so that every
    /// handed packet is counted where it ends. Bounded by [`STOP_DRAIN`].
    fn drain_handoffs(&mut self, burst: &mut Vec<Packet>, stopping: Stopping) {
        let shared = Arc::clone(&self.shared);
        drop(stopping);
        let all = shared.wakers.len();
        let until = Instant::now() + STOP_DRAIN;
        let mut quiet = 0;
        while quiet < 2 && Instant::now() < until {
            self.serve_handed(burst);
            let done = shared.stopped.load(Ordering::Acquire) == all;
            if done && !shared.handoffs.any_pending() {
                quiet += 1;
                std::thread::sleep(Duration::from_millis(1));
            } else {
                quiet = 0;
                if !shared.handoffs.pending(self.id) {
                    std::thread::yield_now();
                }
            }
        }
    }

    /// Answers the control plane's question, if there is a new one
    /// (checked on every wake-up and tick, so an answer takes at most a
    /// tick).
    fn serve(&mut self) {
        let (router, epoch) = (&mut self.router, self.epoch_unix_ns);
        self.shared
            .asks
            .serve(self.id, &mut self.served, |ask| match ask {
                Ask::Nothing => Answer::Done,
                Ask::NatSessions => {
                    let now = router.now();
                    Answer::NatSessions(router.nat().iter().flat_map(|n| n.sessions(now)).collect())
                }
                Ask::StartTrace { count, filter } => {
                    router.start_trace(*count, filter.clone());
                    Answer::Done
                }
                // Times since the Unix epoch, as captures have them.
                Ask::ServiceFlows { name, cursor } => {
                    let now = router.now().whole_secs();
                    let (flows, next) = router.services().flows_page(name, *cursor, now);
                    Answer::ServiceFlows(flows, next)
                }
                Ask::Traces => Answer::Traces(
                    router
                        .traces()
                        .iter()
                        .map(|t| PacketTrace {
                            ts: Time(t.ts.0 + epoch),
                            ..t.clone()
                        })
                        .collect(),
                ),
            });
        let captures = self.shared.captures.generation();
        if captures != self.captures_seen {
            self.captures_seen = captures;
            let mut keep = vec![false; self.snapshot.devices.len()];
            for c in self
                .shared
                .captures
                .list()
                .iter()
                .filter(|c| c.spec().drops)
            {
                if let Some(k) = keep.get_mut(usize::from(c.spec().port)) {
                    *k = true;
                }
            }
            let none = !keep.contains(&true);
            self.router.keep_drops(&keep);
            if none {
                // What was kept for a capture that has ended goes back to
                // the pool, and with it the router's watch.
                self.router.take_kept_drops(|_| {});
            }
        }
    }

    /// Hands the packets the router kept from watched ports' drops to the
    /// captures.
    fn capture_drops(&mut self) {
        let (captures, epoch) = (&self.shared.captures, self.epoch_unix_ns);
        self.router.take_kept_drops(|k| {
            let dir = Direction::Dropped {
                reason: k.reason,
                stage: k.stage,
            };
            let ts = epoch + k.pkt.meta.ts.0;
            captures.offer(k.pkt.meta.rx_port, ts, dir, k.pkt.buf.frame());
        });
    }

    /// Picks up a new snapshot; true when there was one.
    fn refresh(&mut self) -> bool {
        let cur = self.shared.snapshot.load();
        if Arc::ptr_eq(&cur, &self.snapshot) {
            return false;
        }
        let snap = Arc::clone(&cur);
        drop(cur);
        let services = !Arc::ptr_eq(&snap.services, &self.snapshot.services);
        self.apply(&snap, services);
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

    /// Copies the counters out for `stats`, unless a reader holds them
    /// (the next period will).
    fn publish(&mut self) {
        if let Some(mut s) = self.shared.stats[self.id].try_lock() {
            s.clone_from(self.router.stats());
        }
        if let Some(a) = self.shared.activity.get(self.id) {
            self.tally.store(a);
        }
        // The gauges walk the neighbour table: once a second is enough.
        if self.tally.beats % CENSUS_EVERY == 1 {
            if let Some(mut c) = self.shared.census.get(self.id).and_then(|c| c.try_lock()) {
                *c = self.router.census();
            }
        }
    }

    /// Copies the final counters out, waiting for a reader if need be.
    fn publish_final(&self) {
        self.shared.stats[self.id]
            .lock()
            .clone_from(self.router.stats());
    }

    /// Runs until [`Shared::stop`] is set; returns the router (with its
    /// final counters) after dropping what still waits for a neighbour.
    pub fn run(mut self) -> io::Result<Router> {
        // Counted as stopped however this ends, so that the others' drain
        // at stop never waits for a worker that failed.
        let stopping = Stopping(Arc::clone(&self.shared));
        if self.cfg.io_uring {
            self.io = QueueIo::new(self.id, Some(RING_DEPTH));
        }
        let mut poll = Poll::new()?;
        let shared = Arc::clone(&self.shared);
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let _ = shared.wakers[self.id].set(Arc::clone(&waker));
        let mut io = Polled::new(waker);
        self.sync_devices(&poll, &mut io)?;
        // The first beat: this worker polls its devices.
        self.publish();
        let mut events = Events::with_capacity(64);
        let mut burst = Vec::with_capacity(self.cfg.burst);
        let (mut last_tick, mut last_publish) = (Instant::now(), Instant::now());
        let mut last_frame: Option<Instant> = None;
        while !shared.stop.load(Ordering::Relaxed) {
            if shared.fail.load(Ordering::Relaxed) & (1 << (self.id % 64)) != 0 {
                return Err(io::Error::other("failure injected"));
            }
            let spinning = !self.cfg.busy_poll.is_zero()
                && last_frame.is_some_and(|t| t.elapsed() < self.cfg.busy_poll);
            let timeout = if spinning { Duration::ZERO } else { TICK };
            let waited = Instant::now();
            match poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            let woke = Instant::now();
            self.tally.idle += woke - waited;
            for e in events.iter() {
                if e.token() == WAKE {
                    // A device with its own I/O threads has frames, a peer
                    // passed neighbour answers, or the control plane
                    // published a snapshot (taken now, so that the FIB copy
                    // it replaced is let go for the writer to edit).
                    if self.refresh() {
                        self.sync_devices(&poll, &mut io)?;
                    }
                    io.wake_owned();
                    self.share_neighbors();
                    self.serve();
                    self.flush();
                    self.serve_handed(&mut burst);
                } else {
                    io.mark(e.token().0);
                }
            }
            // One burst from each ready port in turn, until all are drained;
            // the housekeeping runs between rounds too, so that timers,
            // counters and the heartbeat keep going under a load that never
            // lets the ports drain.
            let mut busy_since = woke;
            loop {
                let at = Instant::now();
                if at - last_tick >= TICK {
                    last_tick = at;
                    if self.refresh() {
                        self.sync_devices(&poll, &mut io)?;
                    }
                    self.router.tick(self.now());
                    self.serve();
                    self.share_neighbors();
                    self.flush();
                }
                if at - last_publish >= PUBLISH {
                    last_publish = at;
                    self.tally.busy += at - busy_since;
                    busy_since = at;
                    self.publish();
                }
                self.serve_handed(&mut burst);
                let handed = shared.handoffs.pending(self.id);
                if (!io.any_ready() && !handed) || shared.stop.load(Ordering::Relaxed) {
                    self.tally.busy += at - busy_since;
                    break;
                }
                if self.refresh() {
                    self.sync_devices(&poll, &mut io)?;
                }
                for port in 0..io.ports() {
                    if !io.is_ready(port) {
                        continue;
                    }
                    // One clock read per burst (a few per frame would show).
                    let at = Instant::now();
                    let now = Time::from_duration(at - self.epoch);
                    self.rx_burst(&poll, &mut io, port as PortId, &mut burst, now);
                    if !burst.is_empty() {
                        last_frame = Some(at);
                        self.tally.bursts += 1;
                    }
                    if self.shared.captures.armed() {
                        self.capture_rx(port as PortId, &burst);
                    }
                    self.router.process(&mut burst, now);
                    self.hand_off();
                    if self.shared.captures.armed() {
                        self.capture_drops();
                    }
                    self.share_neighbors();
                    self.flush();
                }
            }
        }
        self.drain_handoffs(&mut burst, stopping);
        self.router.finish();
        self.flush();
        self.publish_final();
        Ok(self.router)
    }
}
