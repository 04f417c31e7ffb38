//! Routes mirrored from the kernel (issue 27; VPP linux-cp's `linux-nl`):
//! what routing daemons (BIRD, FRR, dhclient, `ip route`) install in the
//! host kernel through a port's host mirror becomes a `kernel` route of
//! that port in the RIB.
//!
//! One thread (`edgefwd-routes`) watches every namespace that holds a
//! mirror: an rtnetlink socket subscribed to links, addresses and IPv4 and
//! IPv6 routes, read with mio. It first dumps (links, then routes), takes
//! the result as the whole truth (mark and sweep against what it had),
//! then applies what arrived meanwhile and since, in order. Every message
//! of a key (prefix and metric) states that key's whole value, so replaying
//! messages older than the dump converges too.
//!
//! Netlink loses messages when its socket overruns (`ENOBUFS`): the socket
//! asks for a large buffer (`SO_RCVBUFFORCE`), and an overrun makes the
//! thread dump again. The kernel also deletes routes without a message
//! (a mirror set down drops its IPv4 routes; an address removed drops the
//! routes through it): a mirror going down or losing an address makes the
//! thread dump again too, and so does a deleted next-hop object (route
//! messages carry their objects' next hops, but the routes through a
//! deleted object go silently).
//!
//! Changes leave in batches, coalesced by key: one per 2,048 messages or
//! 10 ms after the first, whichever comes first; the control thread applies
//! a batch to the RIB and publishes the FIB once.

mod kernel;
mod watch;

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use edgefwd_core::port::PortId;
use mio::{Events, Interest, Poll, Token, Waker};

pub use kernel::RouteKey;
use watch::{Read, Watch};

/// Messages after which a batch leaves.
pub const BATCH_MESSAGES: usize = 2048;
/// Time after its first message after which a batch leaves.
pub const BATCH_DELAY: Duration = Duration::from_millis(10);
/// How long the thread lets messages gather while they stream in.
const GATHER: Duration = Duration::from_millis(1);
/// Receive buffer each event socket forces.
pub const RCVBUF: usize = 64 << 20;

/// `RTMGRP_LINK`, `RTMGRP_IPV4_IFADDR`, `RTMGRP_IPV4_ROUTE`,
/// `RTMGRP_IPV6_IFADDR`, `RTMGRP_IPV6_ROUTE` (`linux/rtnetlink.h`).
const GROUPS: u32 = 0x1 | 0x10 | 0x40 | 0x100 | 0x400;
/// `RTNLGRP_NEXTHOP`: next-hop objects (a group past 31, joined by
/// membership).
const RTNLGRP_NEXTHOP: u32 = 32;
/// `RTM_DELNEXTHOP`: a next-hop object deleted, and with it, silently,
/// the routes through it (or a member of a group whose routes change).
const RTM_DELNEXTHOP: u16 = 105;
const WAKE: Token = Token(usize::MAX);

/// A mirror to watch: the port it mirrors, its device name and namespace.
#[derive(Clone, Debug)]
pub struct MirrorSpec {
    /// The port (not the mirror port): routes through the mirror are
    /// routes through it.
    pub port: PortId,
    /// The mirror's device name.
    pub name: String,
    /// Its namespace file (`None`: ours).
    pub netns: Option<PathBuf>,
}

/// A key's routes now: its next hops, each a port and a gateway (none:
/// gone).
pub type Hops = Vec<(PortId, Option<IpAddr>)>;

/// Changes of one namespace's kernel routes.
#[derive(Debug)]
pub struct Batch {
    /// The ports whose mirrors live in that namespace: a key's kernel
    /// routes through them are replaced by the change's.
    pub ports: Vec<PortId>,
    /// Each changed key with its routes now.
    pub changes: Vec<(RouteKey, Hops)>,
    /// When its first message arrived, for the sync lag.
    pub since: Instant,
}

/// What the thread has seen, for `host show`.
#[derive(Debug, Default)]
pub struct MirrorCounts {
    /// Netlink messages read (links, addresses, routes).
    pub events: AtomicU64,
    /// Socket overruns (`ENOBUFS`).
    pub overruns: AtomicU64,
    /// Dumps taken (the first, and after each overrun or silent deletion).
    pub resyncs: AtomicU64,
    /// Batches sent.
    pub batches: AtomicU64,
    /// Kernel route keys mirrored now.
    pub routes: AtomicU64,
    /// Routes that name a next-hop object without carrying its next hops
    /// (`net.ipv4.nexthop_compat_mode` off), not mirrored.
    pub nexthop_objects: AtomicU64,
    /// Microseconds from a batch's first message to its FIB publish (set
    /// by whoever applies it).
    pub last_lag_us: AtomicU64,
    /// The thread has stopped (a socket or its poll failed: logged); the
    /// kernel routes mirrored stay as they were.
    pub stopped: AtomicBool,
}

/// The watching thread; stopped on drop.
pub struct RouteMirror {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    counts: Arc<MirrorCounts>,
}

impl RouteMirror {
    /// Starts watching the namespaces of `mirrors`; batches arrive on the
    /// receiver. A namespace that cannot be watched is an error.
    pub fn start(
        mirrors: &[MirrorSpec],
        rcvbuf: usize,
    ) -> io::Result<(RouteMirror, Receiver<Batch>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let mut by_ns: Vec<Watch> = Vec::new();
        for m in mirrors {
            match by_ns.iter_mut().find(|w| w.netns == m.netns) {
                Some(w) => w.mirrors.push((m.name.clone(), m.port)),
                None => by_ns.push(Watch::open(m, rcvbuf)?),
            }
        }
        for (i, w) in by_ns.iter_mut().enumerate() {
            poll.registry()
                .register(&mut w.events, Token(i), Interest::READABLE)?;
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(MirrorCounts::default());
        let thread = {
            let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
            std::thread::Builder::new()
                .name("edgefwd-routes".to_owned())
                .spawn(move || {
                    run(poll, by_ns, &tx, &stop, &counts);
                    counts.stopped.store(true, Ordering::Relaxed);
                })?
        };
        Ok((
            RouteMirror {
                stop,
                waker,
                thread: Some(thread),
                counts,
            },
            rx,
        ))
    }

    /// What it has seen.
    pub fn counts(&self) -> &Arc<MirrorCounts> {
        &self.counts
    }
}

impl Drop for RouteMirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    mut poll: Poll,
    mut watches: Vec<Watch>,
    tx: &Sender<Batch>,
    stop: &AtomicBool,
    counts: &MirrorCounts,
) {
    let mut events = Events::with_capacity(16);
    let mut buf = vec![0u8; 1 << 20];
    let mut next_retry = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        for w in &mut watches {
            if w.resync && Instant::now() >= next_retry {
                // Whatever arrived before the dump is replayed after it.
                if let Err(e) = w.resync(counts) {
                    tracing::warn!("route mirror: dump failed ({e}); retrying");
                    w.resync = true;
                    next_retry = Instant::now() + Duration::from_millis(100);
                }
            }
            while let Some(b) = w.take_batch(w.messages >= BATCH_MESSAGES) {
                send(tx, b, counts);
            }
        }
        counts.routes.store(
            watches.iter().map(|w| w.routes.len() as u64).sum(),
            Ordering::Relaxed,
        );
        counts.nexthop_objects.store(
            watches.iter().map(|w| w.nexthop_objects.len() as u64).sum(),
            Ordering::Relaxed,
        );
        let wait = if watches.iter().any(|w| w.resync) {
            Some(Duration::from_millis(100))
        } else {
            watches
                .iter()
                .filter_map(Watch::due)
                .min()
                .map(|d| d.saturating_duration_since(Instant::now()))
        };
        if let Err(e) = poll.poll(&mut events, wait) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!("route mirror stopped: {e}");
            return;
        }
        let mut streaming = false;
        for ev in events.iter() {
            let Some(w) = watches.get_mut(ev.token().0) else {
                continue;
            };
            streaming |= w.since.is_some();
            // Readiness is edge-triggered: read until the socket is empty,
            // a batch leaving every BATCH_MESSAGES messages.
            loop {
                match w.read(&mut buf, counts) {
                    Read::Drained => break,
                    Read::More => {
                        if let Some(b) = w.take_batch(true) {
                            send(tx, b, counts);
                        }
                    }
                    Read::Failed => {
                        tracing::warn!("route mirror stopped: its netlink socket failed");
                        return;
                    }
                }
            }
        }
        for w in &mut watches {
            if let Some(b) = w.take_batch(false) {
                send(tx, b, counts);
            }
        }
        // While messages stream in (an installer adding a table one route
        // at a time), let them gather for a moment: waking for each one
        // costs this thread and the installer a context switch a message.
        if streaming {
            std::thread::sleep(GATHER);
        }
    }
}

fn send(tx: &Sender<Batch>, b: Batch, counts: &MirrorCounts) {
    counts.batches.fetch_add(1, Ordering::Relaxed);
    let _ = tx.send(b);
}
