//! AF_XDP ports (`afxdp:IFNAME[@NETNS]`): a NIC or veth whose frames an
//! XDP program hands to edgefwd's sockets before the kernel's stack sees
//! them, instead of a `recvfrom` and two copies a frame on AF_PACKET.
//!
//! One socket per queue of the interface, up to one per worker (worker
//! `i` uses socket `i % sockets`); each has its own UMEM of [`FRAMES`]
//! 2 KiB frames, half lent to the kernel to receive into (the fill ring),
//! half for sending. A burst takes the rx ring's descriptors, copies each
//! frame into a buffer of the worker's pool and gives the frame back to
//! the fill ring at once; a transmit copies each packet into a free frame
//! and kicks the socket once per burst. So a frame is copied once each
//! way in zero-copy mode (drivers that have it) and the kernel adds one in
//! copy mode (veth, generic XDP). A queue without a socket passes its
//! frames to the kernel.
//!
//! The program and its BPF link live as long as the device: dropping it
//! detaches the program, and the interface is the kernel's again.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use edgefwd_core::packet::Packet;
use edgefwd_core::port::LinkState;
use parking_lot::Mutex;

use crate::binding::netns_path;
use crate::device::{
    plain_frames, BufSource, Capabilities, Device, DeviceCounts, QueueIo, Readiness, Received,
    RxStatus,
};
use crate::link::LinkProbe;
use crate::sys::xdp::{XdpProgram, Xsk, FRAME};
use crate::sys::IfSocket;

/// UMEM frames per socket.
pub const FRAMES: usize = 4096;
/// Entries of each ring.
const RING: u32 = 2048;
/// Frames the kernel sends per kick in copy mode (at most).
const KICK_BATCH: u32 = 32;
/// Kicks per burst at most.
const MAX_KICKS: u32 = 16;

/// One socket and its free transmit frames.
struct Queue {
    xsk: Xsk,
    tx_free: Vec<u64>,
    descs: Vec<libc::xdp_desc>,
    addrs: Vec<u64>,
}

/// An open AF_XDP port.
pub struct AfXdp {
    name: String,
    queues: Vec<Mutex<Queue>>,
    fds: Vec<std::os::fd::RawFd>,
    copy_mode: bool,
    probe: Mutex<LinkProbe>,
    rx_bad: AtomicU64,
    tx_failed: AtomicU64,
    // Dropped last: the sockets leave the map before the program goes.
    _prog: XdpProgram,
}

impl AfXdp {
    /// Attaches to `name` in namespace `netns` with up to `workers`
    /// sockets (as many as it has queues).
    pub fn open(name: &str, netns: Option<&str>, workers: usize) -> io::Result<AfXdp> {
        let name_owned = name.to_owned();
        let open = move || -> io::Result<(XdpProgram, Vec<Xsk>, LinkProbe)> {
            let ifindex = IfSocket::new()?.index(&name_owned)?;
            let wanted = workers.max(1) as u32;
            let prog = XdpProgram::attach(ifindex, wanted)?;
            let mut socks = Vec::new();
            for q in 0..wanted {
                match Xsk::open(ifindex, q, FRAMES, RING) {
                    Ok(x) => {
                        prog.register(q, x.fd())?;
                        socks.push(x);
                    }
                    // No such queue: the interface has fewer than workers.
                    Err(e) if q > 0 && e.raw_os_error() == Some(libc::EINVAL) => break,
                    Err(e) => return Err(e),
                }
            }
            Ok((prog, socks, LinkProbe::new(&name_owned)?))
        };
        let (prog, socks, probe) = match netns.map(netns_path) {
            Some(ns) => crate::sys::in_netns(&ns, open)?,
            None => open()?,
        };
        let copy_mode = socks.iter().any(|x| x.copy_mode);
        let fds = socks.iter().map(Xsk::fd).collect();
        let queues = socks
            .into_iter()
            .map(|xsk| {
                let half = (xsk.frames() / 2) as u64;
                let rx: Vec<u64> = (0..half).map(|i| i * FRAME as u64).collect();
                let filled = xsk.fill.produce(rx.iter().copied());
                debug_assert_eq!(filled as u64, half.min(u64::from(RING)));
                let tx_free = (half..half * 2).map(|i| i * FRAME as u64).collect();
                Mutex::new(Queue {
                    xsk,
                    tx_free,
                    descs: Vec::with_capacity(RING as usize),
                    addrs: Vec::with_capacity(RING as usize),
                })
            })
            .collect();
        Ok(AfXdp {
            name: name.to_owned(),
            queues,
            fds,
            copy_mode,
            probe: Mutex::new(probe),
            rx_bad: AtomicU64::new(0),
            tx_failed: AtomicU64::new(0),
            _prog: prog,
        })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sockets (queues) in use.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// True when the kernel copies frames (no zero-copy driver).
    pub fn copy_mode(&self) -> bool {
        self.copy_mode
    }

    fn queue(&self, worker: usize) -> &Mutex<Queue> {
        &self.queues[worker % self.queues.len()]
    }
}

impl Device for AfXdp {
    fn kind(&self) -> &'static str {
        "afxdp"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_frame: FRAME,
            ..Capabilities::default()
        }
    }

    fn readiness(&self, queue: usize) -> Readiness {
        Readiness::Fd(self.fds[queue % self.fds.len()])
    }

    fn rx_burst(
        &self,
        io: &mut QueueIo,
        pool: &mut dyn BufSource,
        max: usize,
        out: &mut Vec<Received>,
    ) -> RxStatus {
        let mut q = self.queue(io.queue).lock();
        let q = &mut *q;
        q.descs.clear();
        let got = q.xsk.rx.consume(max as u32, &mut q.descs);
        q.addrs.clear();
        for d in &q.descs {
            match q.xsk.frame(d.addr, d.len as usize) {
                Some(f) => out.push(Received::copied(pool, f)),
                None => {
                    // A descriptor outside the UMEM: never from a sane
                    // kernel; counted, and its frame not given back.
                    self.rx_bad.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            // The frame's start (aligned mode: addresses may carry an
            // offset into the frame).
            q.addrs.push(d.addr - d.addr % FRAME as u64);
        }
        q.xsk.fill.produce(q.addrs.iter().copied());
        if q.xsk.fill.needs_wakeup() {
            q.xsk.kick_rx();
        }
        if got as usize >= max {
            RxStatus::More
        } else {
            RxStatus::Drained
        }
    }

    fn tx_burst(&self, io: &mut QueueIo, pkts: &mut [Packet]) -> u64 {
        let mut guard = self.queue(io.queue).lock();
        let q = &mut *guard;
        // Frames the kernel has sent are free again.
        q.addrs.clear();
        q.xsk.completion.consume(RING, &mut q.addrs);
        q.tx_free.append(&mut q.addrs);
        q.descs.clear();
        let mut failed = 0;
        for p in pkts.iter_mut() {
            let (xsk, tx_free, descs) = (&mut q.xsk, &mut q.tx_free, &mut q.descs);
            let sent = plain_frames(p, &mut io.scratch, |f| {
                if f.len() > FRAME {
                    return Err(io::Error::other("frame larger than a UMEM frame"));
                }
                let addr = tx_free
                    .pop()
                    .ok_or_else(|| io::Error::other("no free tx frame"))?;
                match xsk.frame_mut(addr) {
                    Some(frame) => frame[..f.len()].copy_from_slice(f),
                    None => return Err(io::Error::other("tx frame outside the UMEM")),
                }
                descs.push(libc::xdp_desc {
                    addr,
                    len: f.len() as u32,
                    options: 0,
                });
                Ok(())
            });
            failed += u64::from(sent.is_err());
        }
        let n = q.xsk.tx.produce(q.descs.iter().copied());
        // What the ring had no room for: its frames are free again.
        for d in &q.descs[n as usize..] {
            q.tx_free.push(d.addr);
            failed += 1;
        }
        if n > 0 && self.copy_mode {
            // In copy mode each kick sends at most a small batch (the
            // kernel's per-call budget): kick until the ring is taken.
            for _ in 0..n.div_ceil(KICK_BATCH).min(MAX_KICKS) {
                q.xsk.kick_tx();
                if q.xsk.tx.pending() == 0 {
                    break;
                }
            }
        } else if n > 0 && q.xsk.tx.needs_wakeup() {
            q.xsk.kick_tx();
        }
        self.tx_failed.fetch_add(failed, Ordering::Relaxed);
        failed
    }

    fn link(&self) -> LinkState {
        self.probe.lock().state()
    }

    fn counts(&self) -> DeviceCounts {
        DeviceCounts {
            rx_oversize: self.rx_bad.load(Ordering::Relaxed),
            tx_failed: self.tx_failed.load(Ordering::Relaxed),
            ..DeviceCounts::default()
        }
    }
}
