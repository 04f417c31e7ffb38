//! vhost-user ports (`vhost-user:PATH`, or `vhost-user:PATH?client`): a VM
//! (QEMU, cloud-hypervisor, DPDK's virtio-user) shares its memory with
//! edgefwd over a Unix socket, and the workers read and fill its virtio-net
//! queues themselves, with no syscall per frame and no kernel in between.
//!
//! One thread per port speaks the protocol (the `vhost` crate's backend
//! side, [`session`]): it maps guest memory and sets the rings up. The
//! data path is the workers': worker `i` takes frames from queue pair `i`'s
//! transmit ring and sends into pair `i % pairs`' receive ring, each under
//! that ring's lock, taken once a burst. While a worker is taking frames
//! the guest's kicks are off (notification suppression, `EVENT_IDX` when
//! agreed); when its ring runs dry it asks for them again and sleeps. A
//! worker polls one epoll of its own per port that holds the kicks of its
//! rings, so the guest's kick wakes it directly, whatever fds the frontend
//! passes on each (re)connection.
//!
//! A frontend that goes away (the VM stopped, or restarted) takes the link
//! down; the next one brings it up. Nothing else stops.
//!
//! Offered: virtio 1.0, mergeable receive buffers, indirect descriptors,
//! event index, multiqueue (a pair per worker), and with `offload`
//! checksum offload and TSO both ways (the virtio-net header edgefwd's TAP
//! offload code already carries). Protocol: `MQ`, `REPLY_ACK`,
//! `CONFIGURE_MEM_SLOTS`. Not offered: `ACCESS_PLATFORM` (no IOTLB),
//! migration, config space.
//!
//! The `vhost-user-backend` crate is not used: its epoll threads call the
//! backend with the rings on each kick, which would put a thread hop
//! between the guest and the workers.

#[cfg(feature = "fuzzing")]
pub mod harness;
mod session;
mod tails;
mod virtq;

pub(crate) use tails::Tails;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use edgefwd_core::packet::offload::{Offload, GSO_ECN, GSO_TCPV4, GSO_TCPV6};
use edgefwd_core::packet::Packet;
use edgefwd_core::port::LinkState;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use parking_lot::Mutex;
use vhost::vhost_user::message::VhostUserVirtioFeatures;
use vhost::vhost_user::{BackendReqHandler, Error as VhostError};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_MQ, VIRTIO_NET_F_MRG_RXBUF,
};
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

use crate::device::{
    plain_frames, BufSource, Capabilities, Device, DeviceCounts, QueueIo, Readiness, Received,
    RxStatus,
};
use crate::tap::GSO_MAX_FRAME;
use session::Session;
use virtq::{Guest, PutError, Vq, NET_HDR_LEN};

/// Entries a ring may have.
const MAX_QUEUE_SIZE: u16 = 1024;
/// How often the protocol thread looks for a frontend (or the stop flag).
const POLL_EVERY: Duration = Duration::from_millis(50);
/// Polls of an empty transmit ring before its kicks are asked for again:
/// a guest that sends in bursts finds the worker still polling instead of
/// paying a kick (a syscall each side) for every burst, as a ring the
/// worker has just emptied is likely to fill again within microseconds.
const EMPTY_POLLS: u32 = 64;
/// Protocol errors in a row after which a frontend is dropped.
const MAX_ERRORS: u32 = 16;

const fn bit(b: u32) -> u64 {
    1 << b
}

const F_EVENT_IDX: u64 = bit(VIRTIO_RING_F_EVENT_IDX);
const F_MRG_RXBUF: u64 = bit(VIRTIO_NET_F_MRG_RXBUF);
const F_VERSION_1: u64 = bit(VIRTIO_F_VERSION_1);
const F_GUEST_CSUM: u64 = bit(VIRTIO_NET_F_GUEST_CSUM);
const F_GUEST_TSO4: u64 = bit(VIRTIO_NET_F_GUEST_TSO4);
const F_GUEST_TSO6: u64 = bit(VIRTIO_NET_F_GUEST_TSO6);
const F_GUEST_ECN: u64 = bit(VIRTIO_NET_F_GUEST_ECN);
const F_BASE: u64 = F_VERSION_1
    | F_MRG_RXBUF
    | F_EVENT_IDX
    | bit(VIRTIO_RING_F_INDIRECT_DESC)
    | bit(VIRTIO_NET_F_MQ)
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
const F_OFFLOAD: u64 = bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_HOST_ECN)
    | F_GUEST_CSUM
    | F_GUEST_TSO4
    | F_GUEST_TSO6
    | F_GUEST_ECN;

/// A worker's epoll of its rings' kicks, and room to empty it.
struct Kicks {
    poll: Poll,
    events: Events,
}

/// What the protocol thread and the workers share.
pub(crate) struct Shared {
    mem: GuestMemoryAtomic<GuestMemoryMmap>,
    /// Receive ring of pair `i` at `2i`, transmit ring at `2i + 1`.
    vqs: Vec<Mutex<Vq>>,
    kicks: Vec<Mutex<Kicks>>,
    registries: Vec<Registry>,
    kick_fds: Vec<RawFd>,
    offered: u64,
    /// Features the frontend agreed to.
    features: AtomicU64,
    /// Pairs whose rings are both enabled (at least 1).
    pairs: AtomicUsize,
    connected: AtomicBool,
    /// The connection, for shutting it down from another thread.
    conn: Mutex<Option<UnixStream>>,
    tx_failed: AtomicU64,
    tx_no_buffers: AtomicU64,
    tx_bad_chain: AtomicU64,
    /// Frames sent whose tail came straight from another VM's memory.
    tx_direct: AtomicU64,
    connections: AtomicU64,
    /// Frames taken from each pair's transmit ring.
    rx_frames: Vec<AtomicU64>,
}

impl Shared {
    fn new(pairs: usize, offload: bool) -> io::Result<Shared> {
        let mut kicks = Vec::new();
        let (mut registries, mut kick_fds) = (Vec::new(), Vec::new());
        for _ in 0..pairs {
            let poll = Poll::new()?;
            registries.push(poll.registry().try_clone()?);
            kick_fds.push(poll.as_raw_fd());
            kicks.push(Mutex::new(Kicks {
                poll,
                events: Events::with_capacity(4),
            }));
        }
        Ok(Shared {
            mem: GuestMemoryAtomic::new(GuestMemoryMmap::default()),
            vqs: (0..pairs * 2)
                .map(|_| Mutex::new(Vq::new(MAX_QUEUE_SIZE)))
                .collect(),
            kicks,
            registries,
            kick_fds,
            offered: F_BASE | if offload { F_OFFLOAD } else { 0 },
            features: AtomicU64::new(0),
            pairs: AtomicUsize::new(1),
            connected: AtomicBool::new(false),
            conn: Mutex::new(None),
            tx_failed: AtomicU64::new(0),
            tx_no_buffers: AtomicU64::new(0),
            tx_bad_chain: AtomicU64::new(0),
            tx_direct: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            rx_frames: (0..pairs).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Watches ring `index`'s kick, if it is a transmit ring with one: its
    /// pair's worker wakes on it.
    fn watch(&self, index: usize, vq: &mut Vq) -> io::Result<()> {
        let Some(kick) = vq.kick.as_ref().filter(|_| index % 2 == 1) else {
            return Ok(());
        };
        let fd = kick.as_raw_fd();
        self.registries[index / 2].register(&mut SourceFd(&fd), Token(index), Interest::READABLE)
    }

    /// Stops watching a ring's kick.
    fn unwatch(&self, vq: &mut Vq) {
        if let Some(kick) = vq.kick.take() {
            let fd = kick.as_raw_fd();
            for r in &self.registries {
                let _ = r.deregister(&mut SourceFd(&fd));
            }
        }
    }

    fn count_pairs(&self) {
        let live = (0..self.vqs.len() / 2)
            .take_while(|p| self.vqs[2 * p].lock().enabled && self.vqs[2 * p + 1].lock().enabled)
            .count();
        self.pairs.store(live.max(1), Ordering::Release);
    }

    /// Forgets a frontend: rings reset, memory unmapped.
    fn disconnected(&self) {
        self.connected.store(false, Ordering::Release);
        for vq in &self.vqs {
            let mut vq = vq.lock();
            self.unwatch(&mut vq);
            vq.reset();
        }
        self.features.store(0, Ordering::Release);
        self.pairs.store(1, Ordering::Release);
        if let Ok(m) = self.mem.lock() {
            m.replace(GuestMemoryMmap::default());
        }
        *self.conn.lock() = None;
    }

    /// The virtio-net header's length under the agreed features.
    fn hdr_len(features: u64) -> usize {
        if features & (F_VERSION_1 | F_MRG_RXBUF) != 0 {
            NET_HDR_LEN
        } else {
            NET_HDR_LEN - 2
        }
    }

    /// Publishes ring `ring`'s used chains (held while their frames' tails
    /// were out).
    fn publish(&self, ring: usize) {
        let map = self.mem.memory();
        self.vqs[ring].lock().publish(&Guest::new(&map));
    }

    /// Empties worker `pair`'s epoll, so the next kick wakes it again.
    fn rearm(&self, pair: usize) {
        if let Some(mut k) = self.kicks[pair].try_lock() {
            let k = &mut *k;
            let _ = k.poll.poll(&mut k.events, Some(Duration::ZERO));
        }
    }
}

/// Whether the guest takes `off` as it is (else it gets plain frames).
fn guest_takes(features: u64, off: &Offload) -> bool {
    if off.is_plain() {
        return true;
    }
    if features & F_GUEST_CSUM == 0 {
        return false;
    }
    if !off.is_gso() {
        return true;
    }
    let needs = match off.gso_type & !GSO_ECN {
        GSO_TCPV4 => F_GUEST_TSO4,
        GSO_TCPV6 => F_GUEST_TSO6,
        _ => return false,
    } | if off.gso_type & GSO_ECN != 0 {
        F_GUEST_ECN
    } else {
        0
    };
    features & needs == needs
}

/// Where the frontend is.
enum Endpoint {
    /// edgefwd listens; the frontend connects.
    Listen(UnixListener),
    /// The frontend listens at this path; edgefwd connects.
    Connect(PathBuf),
}

/// Counts of a vhost-user port's sessions and of frames the guest could
/// not take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VhostCounts {
    /// Frontends that connected.
    pub connections: u64,
    /// Frames not sent because the guest had posted no receive buffers.
    pub tx_no_buffers: u64,
    /// Receive chains the guest posted that were bad (given back empty).
    pub tx_bad_chain: u64,
}

/// An open vhost-user port.
pub struct VhostUser {
    path: PathBuf,
    listening: bool,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl VhostUser {
    /// Listens at `path` (or, with `client`, connects to a frontend
    /// listening there) for a frontend with up to `workers` queue pairs;
    /// `offload` offers checksum offload and TSO.
    pub fn open(path: &Path, client: bool, workers: usize, offload: bool) -> io::Result<VhostUser> {
        let endpoint = if client {
            Endpoint::Connect(path.to_owned())
        } else {
            // A socket left by an earlier run is replaced.
            if std::fs::symlink_metadata(path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                std::fs::remove_file(path)?;
            }
            let l = UnixListener::bind(path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            l.set_nonblocking(true)?;
            Endpoint::Listen(l)
        };
        let shared = Arc::new(Shared::new(workers.max(1), offload)?);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            let name = format!("edgefwd-vhost-{}", path.display());
            std::thread::Builder::new()
                .name(name.chars().take(15).collect())
                .spawn(move || serve(&shared, &endpoint, &stop))?
        };
        Ok(VhostUser {
            path: path.to_owned(),
            listening: !client,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True while a frontend is connected.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    /// Its session and loss counts.
    pub fn vhost_counts(&self) -> VhostCounts {
        VhostCounts {
            connections: self.shared.connections.load(Ordering::Relaxed),
            tx_no_buffers: self.shared.tx_no_buffers.load(Ordering::Relaxed),
            tx_bad_chain: self.shared.tx_bad_chain.load(Ordering::Relaxed),
        }
    }
}

impl Drop for VhostUser {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(c) = self.shared.conn.lock().as_ref() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.listening {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The protocol thread: one frontend at a time, until stopped.
fn serve(shared: &Arc<Shared>, endpoint: &Endpoint, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        let stream = match endpoint {
            Endpoint::Listen(l) => match l.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(POLL_EVERY);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "vhost-user accept");
                    std::thread::sleep(POLL_EVERY);
                    continue;
                }
            },
            Endpoint::Connect(path) => match UnixStream::connect(path) {
                Ok(s) => s,
                Err(_) => {
                    std::thread::sleep(POLL_EVERY);
                    continue;
                }
            },
        };
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        run_session(shared, stream, stop);
    }
}

/// Serves one frontend until it goes away.
fn run_session(shared: &Arc<Shared>, stream: UnixStream, stop: &AtomicBool) {
    *shared.conn.lock() = stream.try_clone().ok();
    if stop.load(Ordering::Acquire) {
        return;
    }
    // The `vhost` crate serves a handler behind std's Mutex only.
    #[allow(clippy::disallowed_types)]
    let session = Arc::new(std::sync::Mutex::new(Session::new(Arc::clone(shared))));
    let mut handler = BackendReqHandler::from_stream(stream, session);
    shared.connections.fetch_add(1, Ordering::Relaxed);
    shared.connected.store(true, Ordering::Release);
    tracing::info!("vhost-user frontend connected");
    let mut errors = 0;
    while !stop.load(Ordering::Acquire) {
        match handler.handle_request() {
            Ok(()) => errors = 0,
            Err(
                VhostError::Disconnected
                | VhostError::PartialMessage
                | VhostError::SocketBroken(_)
                | VhostError::SocketError(_),
            ) => break,
            Err(e) => {
                tracing::warn!(error = %e, "vhost-user request refused");
                errors += 1;
                if errors >= MAX_ERRORS {
                    break;
                }
            }
        }
    }
    shared.disconnected();
    tracing::info!("vhost-user frontend gone");
}

impl Device for VhostUser {
    fn kind(&self) -> &'static str {
        "vhost-user"
    }

    fn capabilities(&self) -> Capabilities {
        let offload = self.shared.offered & F_OFFLOAD != 0;
        Capabilities {
            checksum: offload,
            tso: offload,
            gro: offload,
            max_frame: if offload { GSO_MAX_FRAME } else { 0 },
        }
    }

    fn carries_tails(&self) -> bool {
        true
    }

    fn readiness(&self, queue: usize) -> Readiness {
        Readiness::Fd(self.shared.kick_fds[queue % self.shared.kick_fds.len()])
    }

    fn rx_burst(
        &self,
        io: &mut QueueIo,
        pool: &mut dyn BufSource,
        max: usize,
        out: &mut Vec<Received>,
    ) -> RxStatus {
        let s = &*self.shared;
        let Some(vq) = s.vqs.get(2 * io.queue + 1) else {
            return RxStatus::Drained;
        };
        let features = s.features.load(Ordering::Acquire);
        let map = s.mem.memory().into_inner();
        let mem = Guest::new(&map);
        let mut vq = vq.lock();
        if !vq.live() {
            drop(vq);
            s.rearm(io.queue);
            return RxStatus::Drained;
        }
        vq.quiet(&mem);
        let hdr_len = Shared::hdr_len(features);
        let tails = io.tails.allow.then_some((&mut io.tails, &map));
        let (taken, deferred) = vq.take_frames(&mem, hdr_len, pool, max, out, tails);
        if deferred {
            // The chains go back once the burst is sent (`Tails::release`).
            io.tails.hold(&self.shared, 2 * io.queue + 1);
        } else {
            vq.publish(&mem);
        }
        s.rx_frames[io.queue].fetch_add(taken as u64, Ordering::Relaxed);
        if taken >= max {
            vq.empty_polls = 0;
            return RxStatus::More;
        }
        if taken > 0 || vq.empty_polls < EMPTY_POLLS {
            vq.empty_polls = if taken > 0 { 0 } else { vq.empty_polls + 1 };
            return RxStatus::More;
        }
        vq.empty_polls = 0;
        s.rearm(io.queue);
        if vq.listen(&mem) {
            RxStatus::More
        } else {
            RxStatus::Drained
        }
    }

    fn tx_burst(&self, io: &mut QueueIo, pkts: &mut [Packet]) -> u64 {
        let s = &*self.shared;
        let features = s.features.load(Ordering::Acquire);
        let pair = io.queue % s.pairs.load(Ordering::Acquire).max(1);
        let map = s.mem.memory();
        let mem = Guest::new(&map);
        let mut vq = s.vqs[2 * pair].lock();
        if !vq.live() {
            s.tx_failed.fetch_add(pkts.len() as u64, Ordering::Relaxed);
            return pkts.len() as u64;
        }
        let (hdr_len, mergeable) = (Shared::hdr_len(features), features & F_MRG_RXBUF != 0);
        let mut put = vq.putter(&mem);
        let mut failed = 0u64;
        let mut starved = false;
        let count = |e: PutError, starved: &mut bool| {
            match e {
                PutError::NoBuffers => {
                    s.tx_no_buffers.fetch_add(1, Ordering::Relaxed);
                    *starved = true;
                }
                PutError::BadChain => {
                    s.tx_bad_chain.fetch_add(1, Ordering::Relaxed);
                }
                PutError::TooLarge => {}
            }
            1
        };
        // The burst's frames get their chains first, and are written once
        // all have them (see `Putter::reserve`); frames a guest without
        // offloads needs cut or finished go in at once.
        for (i, p) in pkts.iter_mut().enumerate() {
            if starved {
                failed += 1;
                continue;
            }
            let off = p.meta.offload;
            let result = if guest_takes(features, &off) {
                put.reserve_for(i, hdr_len + p.buf.len(), mergeable)
            } else {
                io.tails.fill(&mut p.buf);
                let mut last = Ok(());
                let cut = plain_frames(p, &mut io.scratch, |f| {
                    let mut hdr = [0u8; NET_HDR_LEN];
                    last = put.put(&mut hdr, hdr_len, f, mergeable);
                    last.map_err(|_| io::Error::from(io::ErrorKind::WouldBlock))
                });
                match (cut, last) {
                    (Ok(()), _) => Ok(()),
                    (Err(_), Err(e)) => Err(e),
                    (Err(_), Ok(())) => Err(PutError::TooLarge),
                }
            };
            if let Err(e) = result {
                failed += count(e, &mut starved);
            }
        }
        let (mut k, mut direct) = (0, 0);
        while let Some((i, slot)) = put.reserved(k) {
            k += 1;
            let p = &pkts[i];
            let mut hdr = [0u8; NET_HDR_LEN];
            let mut h = p.meta.offload;
            if features & F_GUEST_CSUM == 0 {
                h.flags = 0;
            }
            h.encode((&mut hdr[..10]).try_into().expect("ten bytes"));
            match put.write_buf(&slot, &mut hdr, hdr_len, &p.buf, &io.tails) {
                Ok(tail) => direct += u64::from(tail),
                Err(e) => failed += count(e, &mut starved),
            }
        }
        s.tx_direct.fetch_add(direct, Ordering::Relaxed);
        vq.publish(&mem);
        s.tx_failed.fetch_add(failed, Ordering::Relaxed);
        failed
    }

    fn link(&self) -> LinkState {
        let s = &*self.shared;
        let up =
            s.connected.load(Ordering::Acquire) && s.vqs[0].lock().live() && s.vqs[1].lock().live();
        if up {
            LinkState::Up
        } else {
            LinkState::NoCarrier
        }
    }

    fn counts(&self) -> DeviceCounts {
        DeviceCounts {
            tx_failed: self.shared.tx_failed.load(Ordering::Relaxed),
            ..DeviceCounts::default()
        }
    }

    fn details(&self) -> Vec<(String, u64)> {
        let s = &*self.shared;
        let c = self.vhost_counts();
        let mut d = vec![
            ("connected".to_owned(), u64::from(self.connected())),
            ("connections".to_owned(), c.connections),
            ("features".to_owned(), s.features.load(Ordering::Relaxed)),
            (
                "queue_pairs".to_owned(),
                s.pairs.load(Ordering::Relaxed) as u64,
            ),
            ("tx_no_buffers".to_owned(), c.tx_no_buffers),
            ("tx_bad_chain".to_owned(), c.tx_bad_chain),
            ("tx_direct".to_owned(), s.tx_direct.load(Ordering::Relaxed)),
        ];
        for (i, n) in s.rx_frames.iter().enumerate() {
            d.push((format!("rx_pair{i}"), n.load(Ordering::Relaxed)));
        }
        d
    }
}
