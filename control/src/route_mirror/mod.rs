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

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use edgefwd_core::port::PortId;
use edgefwd_io::Rtnl;
use mio::{Events, Interest, Poll, Token, Waker};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_APPEND, NLM_F_REPLACE};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

pub use kernel::RouteKey;

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
                .spawn(move || run(poll, by_ns, &tx, &stop, &counts))?
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

/// How far a read of an event socket got.
enum Read {
    /// The socket is empty.
    Drained,
    /// A batch's worth of messages is pending; more may wait.
    More,
    /// The socket failed.
    Failed,
}

/// One namespace's sockets and view.
struct Watch {
    netns: Option<PathBuf>,
    events: Socket,
    dump: Rtnl,
    /// Mirror device names and their ports.
    mirrors: Vec<(String, PortId)>,
    /// Interface index of each mirror present.
    ifindex: HashMap<u32, PortId>,
    /// Routes through mirrors, by key.
    routes: HashMap<RouteKey, Hops>,
    /// Keys of routes that name next-hop objects.
    nexthop_objects: HashSet<RouteKey>,
    /// Keys changed since the last batch, messages since, and when the
    /// first came.
    pending: HashSet<RouteKey>,
    messages: usize,
    since: Option<Instant>,
    resync: bool,
}

impl Watch {
    fn open(m: &MirrorSpec, rcvbuf: usize) -> io::Result<Watch> {
        let subscribe = || -> io::Result<(Socket, Rtnl)> {
            let mut s = Socket::new(NETLINK_ROUTE)?;
            s.bind(&SocketAddr::new(0, GROUPS))?;
            // Kernels without next-hop objects refuse: nothing to follow.
            let _ = s.add_membership(RTNLGRP_NEXTHOP);
            s.set_non_blocking(true)?;
            let size = libc::c_int::try_from(rcvbuf).unwrap_or(libc::c_int::MAX);
            if edgefwd_io::set_socket_option(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                size,
            )
            .is_err()
            {
                // Without CAP_NET_ADMIN: as much as rmem_max allows; an
                // overrun is repaired by a dump.
                let _ = s.set_rx_buf_sz(rcvbuf);
            }
            Ok((s, Rtnl::new()?))
        };
        let (events, dump) = match &m.netns {
            Some(ns) => edgefwd_io::in_netns(ns, subscribe)?,
            None => subscribe()?,
        };
        Ok(Watch {
            netns: m.netns.clone(),
            events,
            dump,
            mirrors: vec![(m.name.clone(), m.port)],
            ifindex: HashMap::new(),
            routes: HashMap::new(),
            nexthop_objects: HashSet::new(),
            pending: HashSet::new(),
            messages: 0,
            since: None,
            resync: true,
        })
    }

    fn ports(&self) -> Vec<PortId> {
        self.mirrors.iter().map(|(_, p)| *p).collect()
    }

    /// Notes a change of `key` (or just a message, when `None`).
    fn touch(&mut self, key: Option<RouteKey>) {
        self.messages += 1;
        self.since.get_or_insert_with(Instant::now);
        if let Some(k) = key {
            self.pending.insert(k);
        }
    }

    /// Dumps links and routes and takes them as the truth.
    fn resync(&mut self, counts: &MirrorCounts) -> io::Result<()> {
        counts.resyncs.fetch_add(1, Ordering::Relaxed);
        self.resync = false;
        let mut links = Vec::new();
        self.dump
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()), |m| {
                if let RouteNetlinkMessage::NewLink(l) = m {
                    links.push(l);
                }
            })?;
        self.ifindex.clear();
        for l in &links {
            self.link(l, true);
        }
        let mut fresh: HashMap<RouteKey, Hops> = HashMap::new();
        let mut objects = HashSet::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut ask = RouteMessage::default();
            ask.header.address_family = family;
            let mut got = Vec::new();
            self.dump.dump(RouteNetlinkMessage::GetRoute(ask), |m| {
                if let RouteNetlinkMessage::NewRoute(r) = m {
                    got.push(r);
                }
            })?;
            for r in &got {
                if let Some((key, hops, object)) = self.through_mirrors(r) {
                    if object {
                        objects.insert(key);
                    }
                    if !hops.is_empty() {
                        let e = fresh.entry(key).or_default();
                        for h in hops {
                            if !e.contains(&h) {
                                e.push(h);
                            }
                        }
                    }
                }
            }
        }
        // Mark and sweep: every key that differs is pending.
        let keys: Vec<RouteKey> = self.routes.keys().chain(fresh.keys()).copied().collect();
        for k in keys {
            if self.routes.get(&k) != fresh.get(&k) {
                self.touch(Some(k));
            }
        }
        self.routes = fresh;
        self.nexthop_objects = objects;
        Ok(())
    }

    /// A route message's key and its next hops through mirrors, and
    /// whether it names a next-hop object; `None` when the mirror does
    /// not take it.
    fn through_mirrors(&self, r: &RouteMessage) -> Option<(RouteKey, Hops, bool)> {
        let k = kernel::read(r)?;
        if !k.eligible {
            return Some((k.key, Vec::new(), false));
        }
        let hops: Hops = k
            .hops
            .iter()
            .filter_map(|&(oif, gw)| self.ifindex.get(&oif).map(|&p| (p, gw)))
            .collect();
        Some((k.key, hops, k.nexthop_object && k.hops.is_empty()))
    }

    /// A link message: tracks mirrors' indices; a mirror that went down or
    /// away lost routes silently, so the next step is a dump.
    fn link(&mut self, l: &LinkMessage, present: bool) {
        let Some(name) = l.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.as_str()),
            _ => None,
        }) else {
            return;
        };
        let Some(&(_, port)) = self.mirrors.iter().find(|(n, _)| n == name) else {
            return;
        };
        let index = l.header.index;
        let up = l.header.flags.contains(LinkFlags::Up);
        if present {
            let was = self.ifindex.insert(index, port);
            if !up && was.is_some() {
                self.resync = true;
            }
        } else {
            self.ifindex.remove(&index);
            self.resync = true;
        }
    }

    fn address_gone(&mut self, a: &AddressMessage) {
        if self.ifindex.contains_key(&a.header.index) {
            self.resync = true;
        }
    }

    fn route(&mut self, r: &RouteMessage, flags: u16, added: bool) {
        let Some((key, hops, object)) = self.through_mirrors(r) else {
            return;
        };
        if object {
            self.nexthop_objects.insert(key);
        } else if !added {
            self.nexthop_objects.remove(&key);
        }
        let v6 = key.0.addr().is_ipv6();
        let now = self.routes.get(&key).cloned().unwrap_or_default();
        let next: Hops = if added {
            // IPv6 adds next hops to a key unless it replaces it; IPv4's
            // message states the key's whole route.
            if v6 && flags & NLM_F_REPLACE == 0 && (flags & NLM_F_APPEND != 0 || !now.is_empty()) {
                let mut n = now.clone();
                for h in hops {
                    if !n.contains(&h) {
                        n.push(h);
                    }
                }
                n
            } else {
                hops
            }
        } else if v6 && !hops.is_empty() {
            now.iter().filter(|h| !hops.contains(h)).copied().collect()
        } else {
            Vec::new()
        };
        if next != now {
            if next.is_empty() {
                self.routes.remove(&key);
            } else {
                self.routes.insert(key, next);
            }
            self.touch(Some(key));
        } else {
            self.touch(None);
        }
    }

    /// Reads datagrams until the socket is empty or a batch's worth of
    /// messages is pending.
    fn read(&mut self, buf: &mut [u8], counts: &MirrorCounts) -> Read {
        loop {
            if self.messages >= BATCH_MESSAGES {
                return Read::More;
            }
            let n = match self.events.recv(&mut &mut buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    counts.overruns.fetch_add(1, Ordering::Relaxed);
                    self.resync = true;
                    continue;
                }
                Err(e) => {
                    tracing::warn!("route mirror: {e}");
                    return Read::Failed;
                }
            };
            let mut at = 0;
            while at + 16 <= n {
                let b = &buf[at..n];
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                if len < 16 || len > b.len() {
                    break;
                }
                at += len.next_multiple_of(4);
                counts.events.fetch_add(1, Ordering::Relaxed);
                // Route messages carry their next-hop objects' next hops
                // and follow a replaced object; a deleted one takes its
                // routes without a word, so its deletion means a dump.
                if u16::from_ne_bytes([b[4], b[5]]) == RTM_DELNEXTHOP {
                    self.resync = true;
                    continue;
                }
                let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&b[..len]) else {
                    continue;
                };
                let flags = m.header.flags;
                if let NetlinkPayload::InnerMessage(m) = m.payload {
                    match m {
                        RouteNetlinkMessage::NewRoute(r) => self.route(&r, flags, true),
                        RouteNetlinkMessage::DelRoute(r) => self.route(&r, flags, false),
                        RouteNetlinkMessage::NewLink(l) => self.link(&l, true),
                        RouteNetlinkMessage::DelLink(l) => self.link(&l, false),
                        RouteNetlinkMessage::DelAddress(a) => self.address_gone(&a),
                        _ => {}
                    }
                }
            }
        }
    }

    /// The pending batch, if it is due (or `force`d).
    fn take_batch(&mut self, force: bool) -> Option<Batch> {
        let since = self.since?;
        if !force && self.messages < BATCH_MESSAGES && since.elapsed() < BATCH_DELAY {
            return None;
        }
        self.since = None;
        self.messages = 0;
        if self.pending.is_empty() {
            return None;
        }
        let changes = self
            .pending
            .drain()
            .map(|k| (k, self.routes.get(&k).cloned().unwrap_or_default()))
            .collect();
        Some(Batch {
            ports: self.ports(),
            changes,
            since,
        })
    }

    /// When its pending batch falls due.
    fn due(&self) -> Option<Instant> {
        self.since.map(|s| s + BATCH_DELAY)
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
                    Read::Failed => return,
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
