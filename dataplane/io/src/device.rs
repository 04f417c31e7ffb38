//! The port device interface: what every kind of port does for the
//! workers and the replay, and nothing else.
//!
//! Modelled on smoltcp's `phy::Device` and VPP's device classes, but in
//! bursts: a device receives up to a burst of frames into buffers from the
//! caller's pool ([`BufSource`]) and transmits a burst of packets, each
//! call with the calling worker's own I/O state ([`QueueIo`]: its queue
//! index, its io_uring ring, scratch space). A device is shared by every
//! worker (`&self`); one with several queues gives each worker its own.
//! Errors on the hot path are counts and drop reasons, never strings.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use edgefwd_core::packet::offload::{self, Offload};
use edgefwd_core::packet::{Packet, PacketBuf};
use edgefwd_core::pipeline::Router;
use edgefwd_core::port::LinkState;
use edgefwd_core::stats::DropReason;
use edgefwd_core::time::Time;
use mio::Waker;

use crate::sys::Ring;

/// A frame a device received, in a buffer from the caller's pool.
pub struct Received {
    /// The frame.
    pub buf: PacketBuf,
    /// Its offload state, or why the frame cannot be used (counted as
    /// received and dropped under that reason).
    pub offload: Result<Offload, DropReason>,
    /// When it arrived, for a device with its own clock (a capture);
    /// `None`: now.
    pub at: Option<Time>,
}

impl Received {
    /// `frame` copied into a buffer from `pool`, plain; one too large for
    /// a buffer is received as `oversize`.
    pub fn copied(pool: &mut dyn BufSource, frame: &[u8]) -> Received {
        let mut buf = pool.take();
        let offload = match buf.set_frame(frame) {
            Ok(()) => Ok(Offload::default()),
            Err(_) => Err(DropReason::Oversize),
        };
        Received {
            buf,
            offload,
            at: None,
        }
    }
}

/// How far a receive got.
#[derive(Debug)]
pub enum RxStatus {
    /// The burst is full; more frames may be waiting.
    More,
    /// The queue is empty for now.
    Drained,
    /// The device failed (removed, or an error other than "try again"); it
    /// is not polled again.
    Failed(io::Error),
}

/// What a worker polls to learn that a queue has frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// This file descriptor becomes readable.
    Fd(RawFd),
    /// The device wakes the worker given by [`Device::set_waker`] itself
    /// (its own I/O threads read the frames).
    Waker,
    /// Never ready on its own: driven directly (captures, tests), or down.
    Never,
}

/// What a device does for the frames it carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Takes and gives frames with partial checksums to finish.
    pub checksum: bool,
    /// Takes and gives TCP super-packets (TSO/GSO) to segment.
    pub tso: bool,
    /// Coalesces received segments into super-packets (GRO).
    pub gro: bool,
    /// Largest frame it hands over (0: as large as the link's MTU allows).
    pub max_frame: usize,
}

/// Frames a device lost on its own, before a worker saw them or after it
/// let them go (devices with I/O threads of their own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    /// Received, then dropped because its queue to the workers was full.
    pub rx_queue_full: u64,
    /// Received longer than the largest frame.
    pub rx_oversize: u64,
    /// Queued for transmission, then refused by the device.
    pub tx_failed: u64,
}

/// Where a device gets buffers to receive into and returns those it did
/// not use: the worker's packet pool.
pub trait BufSource {
    /// An empty buffer.
    fn take(&mut self) -> PacketBuf;
    /// A buffer not used after all.
    fn give_back(&mut self, buf: PacketBuf);
}

impl BufSource for Router {
    fn take(&mut self) -> PacketBuf {
        self.take_buf()
    }

    fn give_back(&mut self, buf: PacketBuf) {
        self.recycle(buf);
    }
}

/// Largest frame a segment of a super-packet makes (jumbo MTU and headers).
const SEGMENT_MAX: usize = 9216 + 18;

/// One worker's I/O state, lent to each device call.
pub struct QueueIo {
    /// The worker's queue of each device (worker `i` uses queue `i`).
    pub queue: usize,
    /// The worker's io_uring ring, if the kernel allows one: a batch of
    /// reads or writes for one syscall. A device that finds it cannot use
    /// it takes it away (`None`), and everyone falls back to a syscall a
    /// frame.
    pub ring: Option<Ring>,
    /// Room to cut a super-packet into segments for a device without TSO.
    pub scratch: Vec<u8>,
    /// Frame tails the burst being run left in VMs' memory.
    pub(crate) tails: crate::vhost::Tails,
    /// Buffers lent to a batch of reads, and what each read gave.
    pub(crate) rx_bufs: Vec<PacketBuf>,
    pub(crate) rx_results: Vec<io::Result<Result<Offload, DropReason>>>,
}

impl QueueIo {
    /// The I/O state of worker `queue`, with a ring of `ring_depth` when
    /// asked for and allowed.
    pub fn new(queue: usize, ring_depth: Option<usize>) -> QueueIo {
        let ring = ring_depth.and_then(|d| match Ring::new(d) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(
                    worker = queue,
                    error = %e,
                    "io_uring unavailable: one syscall per TAP frame"
                );
                None
            }
        });
        QueueIo {
            queue,
            ring,
            scratch: vec![0; SEGMENT_MAX],
            tails: crate::vhost::Tails::default(),
            rx_bufs: Vec::new(),
            rx_results: Vec::new(),
        }
    }
}

/// A port's device.
pub trait Device: Send + Sync {
    /// Its kind, as bindings name it (`tap`, `afpacket`, `pcap`, `none`).
    fn kind(&self) -> &'static str;

    /// Its offloads and largest frame.
    fn capabilities(&self) -> Capabilities;

    /// What worker `queue` polls for frames.
    fn readiness(&self, queue: usize) -> Readiness;

    /// Sets the waker of the worker that reads a [`Readiness::Waker`]
    /// device. Others ignore it.
    fn set_waker(&self, waker: Arc<Waker>) {
        let _ = waker;
    }

    /// Receives up to `max` frames on `io`'s queue into buffers from
    /// `bufs`, appending them to `out`.
    fn rx_burst(
        &self,
        io: &mut QueueIo,
        bufs: &mut dyn BufSource,
        max: usize,
        out: &mut Vec<Received>,
    ) -> RxStatus;

    /// Transmits `pkts` in order on `io`'s queue; returns how many the
    /// device refused. A device without checksum offload or TSO gets each
    /// packet made plain first ([`plain_frames`]).
    fn tx_burst(&self, io: &mut QueueIo, pkts: &mut [Packet]) -> u64;

    /// True for a device that may leave a received frame's tail in its
    /// sender's memory and sends such tails left by devices of its kind
    /// (vhost-user: `vhost::tails`). A wrapper does not pass it through,
    /// so a wrapped device gets whole frames.
    fn carries_tails(&self) -> bool {
        false
    }

    /// Its link state now (a few syscalls at most; not for the packet path).
    fn link(&self) -> LinkState;

    /// Frames it lost on its own (see [`DeviceCounts`]).
    fn counts(&self) -> DeviceCounts {
        DeviceCounts::default()
    }

    /// What only this kind of device knows, named, for `port show` (a VM
    /// port's sessions and frames per queue pair, say); none by default.
    fn details(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// The [`Device`] methods a wrapper (a device around `self.inner`) passes
/// through unchanged: its kind, capabilities, readiness, waker and own
/// counts. The wrapper writes the rest.
macro_rules! delegate_to_inner {
    () => {
        fn kind(&self) -> &'static str {
            self.inner.kind()
        }

        fn capabilities(&self) -> $crate::device::Capabilities {
            self.inner.capabilities()
        }

        fn readiness(&self, queue: usize) -> $crate::device::Readiness {
            self.inner.readiness(queue)
        }

        fn set_waker(&self, waker: std::sync::Arc<mio::Waker>) {
            self.inner.set_waker(waker);
        }

        fn counts(&self) -> $crate::device::DeviceCounts {
            self.inner.counts()
        }

        fn details(&self) -> Vec<(String, u64)> {
            self.inner.details()
        }
    };
}
pub(crate) use delegate_to_inner;

/// Hands a packet to `out` as a device without offloads needs it: a
/// super-packet as the segments cut here (in `scratch`), a partial
/// checksum finished.
pub fn plain_frames(
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
