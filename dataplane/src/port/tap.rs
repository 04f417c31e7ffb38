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

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;

use super::binding::netns_path;
use super::link::LinkProbe;
use super::sys::{self, Ring};
use crate::packet::offload::{Offload, VNET_HDR_LEN};
use crate::packet::{Packet, PacketBuf};
use crate::stats::DropReason;

/// Largest frame a super-packet makes: a 64 KiB IP packet, Ethernet and a
/// VLAN tag.
pub const GSO_MAX_FRAME: usize = 65535 + 18;

/// An open TAP device.
pub struct Tap {
    name: String,
    netns: Option<PathBuf>,
    queues: Vec<File>,
    vnet: bool,
}

impl Tap {
    /// Opens (creating if absent) TAP `name` in namespace `netns` (a name
    /// under /run/netns or a path; `None`: ours) with `queues` queues, with
    /// offloads when `offload`, and `depth` frames of queue per queue (the
    /// device's txqueuelen: what waits for us to read it, dropped and counted
    /// by the kernel beyond that). Returns the device and a probe of its
    /// link.
    pub fn open(
        name: &str,
        netns: Option<&str>,
        queues: usize,
        offload: bool,
        depth: usize,
    ) -> io::Result<(Tap, LinkProbe)> {
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
        let tap = Tap {
            name: name.to_owned(),
            netns,
            queues,
            vnet: offload,
        };
        Ok((tap, probe))
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file the device was opened in, if not ours.
    pub fn netns(&self) -> Option<&std::path::Path> {
        self.netns.as_deref()
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

    /// Largest frame a read can return.
    pub fn max_frame(&self, mtu: u16) -> usize {
        if self.vnet {
            GSO_MAX_FRAME
        } else {
            usize::from(mtu) + 18
        }
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
