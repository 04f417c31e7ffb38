//! TAP devices: each port is one device, with one queue (fd) per worker when
//! there is more than one worker (`IFF_MULTI_QUEUE`: the kernel spreads
//! flows over the queues, each worker reads and writes its own).
//!
//! With offloads on (`IFF_VNET_HDR` and `TUNSETOFFLOAD`), every frame carries
//! a virtio-net header and TCP moves as 64 KiB super-packets: one read and
//! one write carry what would otherwise be forty-odd frames, which is what a
//! TAP forwarder is paid in (ARCHITECTURE.md §6: a TAP read or write costs
//! more than our whole pipeline). [`Tap::recv_batch`] and
//! [`Tap::send_batch`] move a batch of frames for one syscall through an
//! io_uring [`Ring`]; [`Tap::recv`] and [`Tap::send`] are one syscall each,
//! for where io_uring is refused.
//!
//! A batch of reads is as many as the queue's last batch found frames for,
//! doubling while every read finds one, so a quiet queue costs a few reads
//! that find nothing.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use edgefwd_core::packet::offload::{self, Offload, VNET_HDR_LEN};
use edgefwd_core::packet::{Packet, PacketBuf};
use edgefwd_core::port::LinkState;
use edgefwd_core::stats::DropReason;
use parking_lot::Mutex;

use crate::binding::netns_path;
use crate::device::{
    plain_frames, BufSource, Capabilities, Device, QueueIo, Readiness, Received, RxStatus,
};
use crate::link::LinkProbe;
use crate::sys::{self, Ring};

/// Reads a batch starts with on a queue that has been quiet.
const MIN_READS: usize = 4;
/// Reads one batch makes at most.
const MAX_READS: usize = 256;

/// Largest frame a super-packet makes: a 64 KiB IP packet, Ethernet and a
/// VLAN tag.
pub const GSO_MAX_FRAME: usize = 65535 + 18;

/// An open TAP device.
pub struct Tap {
    name: String,
    netns: Option<PathBuf>,
    queues: Vec<File>,
    vnet: bool,
    /// Reads the next batch on each queue makes (see the module docs).
    reads: Vec<AtomicUsize>,
    probe: Mutex<LinkProbe>,
}

impl Tap {
    /// Opens (creating if absent) TAP `name` in namespace `netns` (a name
    /// under /run/netns or a path; `None`: ours) with `queues` queues, with
    /// offloads when `offload`, and `depth` frames of queue per queue (the
    /// device's txqueuelen: what waits for us to read it, dropped and counted
    /// by the kernel beyond that).
    pub fn open(
        name: &str,
        netns: Option<&str>,
        queues: usize,
        offload: bool,
        depth: usize,
    ) -> io::Result<Tap> {
        let queues = queues.max(1);
        let open = || -> io::Result<(Vec<File>, LinkProbe)> {
            let mut fds = Vec::with_capacity(queues);
            for _ in 0..queues {
                let (f, actual) = sys::open_tap(name, offload, queues > 1)?;
                if actual != name {
                    return Err(io::Error::other(format!(
                        "the kernel named the device {actual:?}, not {name:?}"
                    )));
                }
                if offload {
                    sys::set_vnet_hdr_size(&f, VNET_HDR_LEN as libc::c_int)?;
                    sys::set_offload(&f, sys::TAP_OFFLOADS)?;
                }
                fds.push(f);
            }
            let probe = LinkProbe::for_tap(fds[0].try_clone()?)?;
            probe.set_txqueuelen(u32::try_from(depth).unwrap_or(u32::MAX))?;
            Ok((fds, probe))
        };
        let netns = netns.map(netns_path);
        let (queues, probe) = match &netns {
            Some(ns) => sys::in_netns(ns, open)?,
            None => open()?,
        };
        Ok(Tap {
            name: name.to_owned(),
            netns,
            reads: queues.iter().map(|_| AtomicUsize::new(MIN_READS)).collect(),
            queues,
            vnet: offload,
            probe: Mutex::new(probe),
        })
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file the device was opened in, if not ours.
    pub fn netns(&self) -> Option<&std::path::Path> {
        self.netns.as_deref()
    }

    /// Turns the carrier of its kernel side on or off.
    pub fn set_carrier(&self, on: bool) -> io::Result<()> {
        sys::set_carrier(&self.queues[0], on)
    }

    /// Number of queues.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// True when frames carry a virtio-net header (offloads on).
    pub fn offloads(&self) -> bool {
        self.vnet
    }

    /// The fd of queue `q`, for readiness polling.
    pub fn fd(&self, q: usize) -> RawFd {
        self.queues[q % self.queues.len()].as_raw_fd()
    }

    /// Reads one frame from queue `q` into `buf` (one syscall). Returns its
    /// offload state, or why the frame cannot be used: longer than the
    /// buffer (`oversize`: the read cut it), or a header describing an
    /// offload never asked for (`offload_invalid`). Errors are the device's
    /// (`WouldBlock` when the queue is empty).
    pub fn recv(&self, q: usize, buf: &mut PacketBuf) -> io::Result<Result<Offload, DropReason>> {
        let mut f = &self.queues[q % self.queues.len()];
        let n = buf.fill_with(self.front(), |b| f.read(b))?;
        Ok(self.received(buf, n))
    }

    /// [`Tap::recv`] into each of `bufs` in turn, one syscall for them all
    /// (through `ring`); what each read gave into `out`, by buffer. Reads
    /// after the queue ran empty give `WouldBlock`.
    pub fn recv_batch(
        &self,
        q: usize,
        ring: &mut Ring,
        bufs: &mut [PacketBuf],
        out: &mut Vec<io::Result<Result<Offload, DropReason>>>,
    ) {
        out.clear();
        let front = self.front();
        ring.read_each(
            self.fd(q),
            bufs,
            |b| b.read_space(front),
            |b, r| {
                out.push(r.map(|n| {
                    b.set_read(front, n);
                    self.received(b, n)
                }))
            },
        );
    }

    /// Bytes a read puts in front of the frame: the virtio-net header.
    fn front(&self) -> usize {
        if self.vnet {
            VNET_HDR_LEN
        } else {
            0
        }
    }

    /// What a read of `n` bytes into `buf` gave (see [`Tap::recv`]).
    fn received(&self, buf: &PacketBuf, n: usize) -> Result<Offload, DropReason> {
        if n >= buf.capacity() + self.front() {
            return Err(DropReason::Oversize);
        }
        if !self.vnet {
            return Ok(Offload::default());
        }
        let hdr: Option<&[u8; VNET_HDR_LEN]> = buf.front(VNET_HDR_LEN).try_into().ok();
        match (n >= VNET_HDR_LEN, hdr.and_then(Offload::decode)) {
            (true, Some(o)) => Ok(o),
            _ => Err(DropReason::OffloadInvalid),
        }
    }

    /// Writes one frame to queue `q` (one syscall), with its offload header
    /// when offloads are on. The caller makes a frame plain first (finished
    /// checksum, segments) for a TAP without offloads.
    pub fn send(&self, q: usize, frame: &[u8], off: &Offload) -> io::Result<()> {
        let mut f = &self.queues[q % self.queues.len()];
        if !self.vnet {
            return f.write(frame).map(drop);
        }
        let mut hdr = [0; VNET_HDR_LEN];
        off.encode(&mut hdr);
        let iov = [io::IoSlice::new(&hdr), io::IoSlice::new(frame)];
        f.write_vectored(&iov).map(drop)
    }

    /// [`Tap::send`] for each of `pkts` in order, one syscall for them all
    /// (through `ring`). Returns how many the device refused.
    pub fn send_batch(&self, q: usize, ring: &mut Ring, pkts: &[Packet]) -> u64 {
        let mut refused = 0;
        ring.write_each(
            self.fd(q),
            pkts.len(),
            self.front(),
            |i, hdr| {
                let p = &pkts[i];
                if let Ok(hdr) = <&mut [u8; VNET_HDR_LEN]>::try_from(hdr) {
                    p.meta.offload.encode(hdr);
                }
                p.buf.frame()
            },
            |_, r| refused += u64::from(r.is_err()),
        );
        refused
    }
}

impl Tap {
    /// [`Device::rx_burst`] through the ring: batches of reads until the
    /// burst is full or the queue is empty.
    fn rx_batches(
        &self,
        io: &mut QueueIo,
        pool: &mut dyn BufSource,
        max: usize,
        out: &mut Vec<Received>,
    ) -> RxStatus {
        let q = io.queue % self.queues.len();
        let mut got_total = 0;
        loop {
            let room = max.saturating_sub(got_total);
            if room == 0 {
                return RxStatus::More;
            }
            let Some(ring) = io.ring.as_mut() else {
                return RxStatus::More;
            };
            let reads = self.reads[q].load(Ordering::Relaxed).min(room);
            for _ in 0..reads {
                io.rx_bufs.push(pool.take());
            }
            self.recv_batch(q, ring, &mut io.rx_bufs, &mut io.rx_results);
            let (mut got, mut drained, mut failed, mut refused) = (0, false, None, false);
            for (buf, r) in io.rx_bufs.drain(..).zip(io.rx_results.drain(..)) {
                match r {
                    Ok(offload) => {
                        got += 1;
                        out.push(Received {
                            buf,
                            offload,
                            at: None,
                        });
                    }
                    Err(e) => {
                        pool.give_back(buf);
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
            got_total += got;
            if refused {
                // A kernel whose TAP cannot read without waiting, or whose
                // io_uring has no plain read: the frames stay queued for
                // the syscall path.
                tracing::warn!(
                    worker = io.queue,
                    "io_uring cannot read TAPs here: one syscall per TAP frame"
                );
                io.ring = None;
                return RxStatus::More;
            }
            let next = if got == reads {
                (reads * 2).min(MAX_READS)
            } else {
                (got + 1).next_power_of_two().clamp(MIN_READS, MAX_READS)
            };
            self.reads[q].store(next, Ordering::Relaxed);
            if let Some(e) = failed {
                return RxStatus::Failed(e);
            }
            if drained {
                return RxStatus::Drained;
            }
        }
    }

    /// Sends one packet on queue `q`: as it is with its offload header when
    /// the TAP takes offloads, else made plain first.
    fn send_one(&self, q: usize, p: &mut Packet, scratch: &mut [u8]) -> io::Result<()> {
        if self.vnet {
            return self.send(q, p.buf.frame(), &p.meta.offload);
        }
        let plain = Offload::default();
        plain_frames(p, scratch, |f| self.send(q, f, &plain))
    }

    /// Sends `pkts` on queue `q` in order, in batches through `ring`;
    /// returns how many failed. For a TAP without offloads, a frame whose
    /// partial checksum is finished here joins the batch; a super-packet,
    /// cut here into segments, goes alone between batches.
    fn send_batches(
        &self,
        q: usize,
        ring: &mut Ring,
        pkts: &mut [Packet],
        scratch: &mut [u8],
    ) -> u64 {
        let mut errors = 0;
        let mut rest = pkts;
        while !rest.is_empty() {
            let alone = if self.vnet {
                None
            } else {
                rest.iter_mut().position(|p| {
                    let off = p.meta.offload;
                    off.is_gso()
                        || (!off.is_plain() && !offload::finish_checksum(p.buf.frame_mut(), &off))
                })
            };
            let (batch, later) = rest.split_at_mut(alone.unwrap_or(rest.len()));
            errors += self.send_batch(q, ring, batch);
            let Some((p, tail)) = later.split_first_mut() else {
                break;
            };
            errors += u64::from(self.send_one(q, p, scratch).is_err());
            rest = tail;
        }
        errors
    }
}

impl Device for Tap {
    fn kind(&self) -> &'static str {
        "tap"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            checksum: self.vnet,
            tso: self.vnet,
            gro: self.vnet,
            max_frame: if self.vnet { GSO_MAX_FRAME } else { 0 },
        }
    }

    fn readiness(&self, queue: usize) -> Readiness {
        if queue < self.queues.len() {
            Readiness::Fd(self.fd(queue))
        } else {
            Readiness::Never
        }
    }

    fn rx_burst(
        &self,
        io: &mut QueueIo,
        pool: &mut dyn BufSource,
        max: usize,
        out: &mut Vec<Received>,
    ) -> RxStatus {
        if io.ring.is_some() {
            return self.rx_batches(io, pool, max, out);
        }
        for _ in 0..max {
            let mut buf = pool.take();
            match self.recv(io.queue, &mut buf) {
                Ok(offload) => out.push(Received {
                    buf,
                    offload,
                    at: None,
                }),
                Err(e) => {
                    pool.give_back(buf);
                    return match e.kind() {
                        io::ErrorKind::WouldBlock => RxStatus::Drained,
                        io::ErrorKind::Interrupted => RxStatus::More,
                        _ => RxStatus::Failed(e),
                    };
                }
            }
        }
        RxStatus::More
    }

    fn tx_burst(&self, io: &mut QueueIo, pkts: &mut [Packet]) -> u64 {
        let q = io.queue;
        if let Some(ring) = io.ring.as_mut() {
            return self.send_batches(q, ring, pkts, &mut io.scratch);
        }
        pkts.iter_mut()
            .map(|p| u64::from(self.send_one(q, p, &mut io.scratch).is_err()))
            .sum()
    }

    fn link(&self) -> LinkState {
        self.probe.lock().state()
    }
}
