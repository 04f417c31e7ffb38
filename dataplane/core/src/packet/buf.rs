//! Reusable packet buffers with headroom, and the per-packet metadata the
//! pipeline stages pass along.
//!
//! A [`PacketBuf`] is allocated once (a boxed slice of fixed size) and recycled
//! through a [`BufPool`], so the hot path never allocates. The frame sits at an
//! offset inside the buffer; the headroom in front lets a stage prepend a
//! header (a tag, an encapsulation) without moving the frame.
//!
//! A frame's tail may be left out of the buffer ([`PacketBuf::defer_tail`]):
//! a VM port copies only the headers in, and the frame's payload goes from
//! the sending VM's memory straight into the receiving VM's when a switch
//! sends it from one to the other, one copy instead of two. Only the
//! device that received it knows where the tail is; it fills it in for
//! anything else.

use std::net::IpAddr;

use super::Offload;
use crate::port::PortId;
use crate::stats::DropReason;
use crate::time::Time;

/// Bytes kept free in front of a received frame.
pub const HEADROOM: usize = 128;
/// Largest frame a buffer holds (a 9000-byte jumbo payload plus Ethernet and
/// one VLAN tag, rounded up). Larger frames are dropped as `oversize`.
pub const MAX_FRAME: usize = 9216;

/// A fixed-size frame buffer with headroom.
pub struct PacketBuf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes from this index to `end` are not in the buffer yet, and the
    /// receiving device's token for where they are.
    tail: Option<(usize, u32)>,
}

impl Default for PacketBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketBuf {
    /// A new, empty buffer for frames up to [`MAX_FRAME`] (allocates; use a
    /// [`BufPool`] on the hot path).
    pub fn new() -> Self {
        Self::with_capacity(MAX_FRAME)
    }

    /// A new, empty buffer for frames up to `max_frame` bytes.
    pub fn with_capacity(max_frame: usize) -> Self {
        PacketBuf {
            data: vec![0; HEADROOM + max_frame].into_boxed_slice(),
            start: HEADROOM,
            end: HEADROOM,
            tail: None,
        }
    }

    /// The largest frame the buffer holds.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.data.len() - HEADROOM
    }

    /// Empties the buffer, restoring the full headroom.
    #[inline]
    pub fn clear(&mut self) {
        self.start = HEADROOM;
        self.end = HEADROOM;
        self.tail = None;
    }

    /// Marks the frame's bytes from offset `at` on as not in the buffer
    /// yet: the receiving device keeps them under `token` (see the module
    /// docs). Only the headers before `at` may be read until
    /// [`PacketBuf::tail_filled`].
    pub fn defer_tail(&mut self, at: usize, token: u32) {
        if at < self.len() {
            self.tail = Some((self.start + at, token));
        }
    }

    /// The offset in the frame from which its bytes are not in the buffer
    /// yet, and the receiving device's token for them.
    #[inline]
    pub fn deferred_tail(&self) -> Option<(usize, u32)> {
        self.tail
            .map(|(at, token)| (at.saturating_sub(self.start), token))
    }

    /// Says that the deferred tail is now in the buffer.
    pub fn tail_filled(&mut self) {
        self.tail = None;
    }

    /// Copies `frame` in after the headroom. Fails (leaving the buffer empty)
    /// when the frame is larger than the buffer's capacity.
    #[inline]
    pub fn set_frame(&mut self, frame: &[u8]) -> Result<(), usize> {
        self.clear();
        if frame.len() > self.capacity() {
            return Err(frame.len());
        }
        self.data[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
        self.end = HEADROOM + frame.len();
        Ok(())
    }

    /// Fills the buffer with one read: `read` gets the space from `front`
    /// bytes before the frame's start (a device header, which lands in the
    /// headroom; see [`PacketBuf::front`]) to the end, and returns how many
    /// bytes it wrote. The frame is what follows the `front` bytes.
    pub fn fill_with(
        &mut self,
        front: usize,
        read: impl FnOnce(&mut [u8]) -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        let n = read(self.read_space(front))?;
        self.set_read(front, n);
        Ok(n)
    }

    /// Empties the buffer and returns the space one read fills, for a read
    /// made elsewhere (a batch of them): as [`PacketBuf::fill_with`] gives
    /// its `read`. [`PacketBuf::set_read`] then says how much it wrote.
    pub fn read_space(&mut self, front: usize) -> &mut [u8] {
        self.clear();
        &mut self.data[HEADROOM - front.min(HEADROOM)..]
    }

    /// Ends a read into [`PacketBuf::read_space`] (with the same `front`)
    /// that wrote `n` bytes.
    pub fn set_read(&mut self, front: usize, n: usize) {
        let from = HEADROOM - front.min(HEADROOM);
        self.end = (from + n).clamp(HEADROOM, self.data.len());
    }

    /// The `n` bytes in front of the frame (a device header read by
    /// [`PacketBuf::fill_with`]); empty if the headroom is shorter.
    pub fn front(&self, n: usize) -> &[u8] {
        self.data
            .get(self.start.wrapping_sub(n)..self.start)
            .unwrap_or(&[])
    }

    /// The frame.
    #[inline]
    pub fn frame(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// The frame, writable.
    #[inline]
    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    /// Frame length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when the buffer holds no frame.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Sets the frame length to `len` bytes from its start (growing into the
    /// tailroom, whose bytes are whatever the buffer last held). Returns false
    /// if that does not fit.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> bool {
        if self.start + len > self.data.len() {
            return false;
        }
        self.end = self.start + len;
        true
    }

    /// Grows the frame at the front by `n` bytes of headroom.
    pub fn push_front(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }

    /// Removes `n` bytes from the front of the frame.
    pub fn pull_front(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        self.start += n;
        true
    }
}

/// Where a packet came from, for the accounting identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Received on a port: it ends forwarded, local or dropped.
    Received,
    /// Made by edgefwd itself (ICMP errors, echo replies, ARP/NDP): counted as
    /// `generated` when sent.
    Generated,
    /// A copy a switch made to flood a frame to one more member port: counted
    /// as `flooded` when sent; outside the identity, like generated packets.
    Flooded,
}

/// The stage a packet goes to next, or how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// eth-input: L2 checks and demultiplexing.
    EthInput,
    /// arp-input.
    ArpInput,
    /// ip4-input: validation, local delivery, TTL.
    Ip4Input,
    /// nat44-in: addressed to a NAT external address: translated back to
    /// the inside, or delivered locally.
    Nat44In,
    /// nat44-in, second half of a hairpin: the sender's owner gave it its
    /// external source; the target's owner gives it its inside destination.
    Nat44Hairpin,
    /// ip6-input: validation, local delivery (NDP, echo), hop limit.
    Ip6Input,
    /// ip-lookup: FIB lookup and MTU check.
    IpLookup,
    /// ip-rewrite: TTL decrement, neighbour, MACs.
    IpRewrite,
    /// Next hop not resolved yet: to be held while ARP/NDP asks for it.
    Resolve,
    /// Ready to transmit on `meta.tx_port`.
    Tx,
    /// Consumed by the appliance (counted as `local`).
    Local,
    /// For the host: sent to its interface's host mirror (counted as
    /// `punted`), or dropped as `local_unsupported` without one.
    Punt,
    /// Dropped under a reason.
    Drop(DropReason),
    /// Its flow belongs to worker `to`, which goes on with it `at` a stage.
    HandOff {
        /// The owning worker.
        to: u8,
        /// Where it resumes.
        at: Resume,
    },
}

/// Where a packet handed to another worker resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// nat44-in (an inbound flow's owner holds its port).
    Nat44In,
    /// nat44-in's second half of a hairpin.
    Nat44Hairpin,
    /// svc-in (a client's owner holds its service flows).
    SvcIn,
    /// svc-out and nat44-out, after ip-lookup (the owner holds the reply's
    /// service flow, or the outbound flow's mapping).
    Out,
}

impl Resume {
    /// The packet's next stage on the worker it was handed to (svc-in
    /// takes what ip4-input sent to ip-lookup; svc-out and nat44-out pick
    /// up what ip-lookup sent to ip-rewrite).
    pub fn next(self) -> Next {
        match self {
            Resume::Nat44In => Next::Nat44In,
            Resume::Nat44Hairpin => Next::Nat44Hairpin,
            Resume::SvcIn => Next::IpLookup,
            Resume::Out => Next::IpRewrite,
        }
    }
}

impl Next {
    /// True when a pipeline stage has yet to handle the packet (not a
    /// final disposition).
    #[inline]
    pub fn is_stage(self) -> bool {
        !matches!(
            self,
            Next::Resolve
                | Next::Tx
                | Next::Local
                | Next::Punt
                | Next::Drop(_)
                | Next::HandOff { .. }
        )
    }
}

/// Per-packet metadata carried between stages.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    /// Port the packet arrived on (for generated packets: the port whose
    /// traffic caused them).
    pub rx_port: PortId,
    /// The routed interface the packet arrived on: `rx_port` itself, or for
    /// a frame that came through a switch, the switch's interface to the
    /// router (an internal switch's gateway, an external switch's uplink).
    pub iface: PortId,
    /// True when nat-in gave the packet its inside destination.
    pub nat_in: bool,
    /// True when a switch chose `tx_port` (a member's device): the frame
    /// leaves as it is, without another L2 lookup.
    pub switched: bool,
    /// Egress port, once looked up.
    pub tx_port: PortId,
    /// Next stage or final disposition.
    pub next: Next,
    /// Received or generated.
    pub origin: Origin,
    /// Offset of the L3 header in the frame.
    pub l3: u16,
    /// Address whose link-layer address the rewrite needs (gateway or the
    /// destination itself when directly connected).
    pub neighbor: Option<IpAddr>,
    /// For generated packets: the source address is still to be chosen from
    /// the egress port and the checksums finished (ICMP errors).
    pub needs_source: bool,
    /// Arrival time.
    pub ts: Time,
    /// Checksum and segmentation offload state from the receiving device.
    pub offload: Offload,
    /// Times it was handed from one worker to another (at most two: a
    /// hairpin's sender's owner, then its target's).
    pub hops: u8,
}

impl Meta {
    /// Metadata of a frame just received on `port` at `ts`.
    pub fn received(port: PortId, ts: Time) -> Self {
        Meta {
            rx_port: port,
            iface: port,
            switched: false,
            nat_in: false,
            tx_port: port,
            next: Next::EthInput,
            origin: Origin::Received,
            l3: crate::packet::ETH_HLEN as u16,
            neighbor: None,
            needs_source: false,
            ts,
            offload: Offload::default(),
            hops: 0,
        }
    }
}

/// A buffer and its metadata.
pub struct Packet {
    /// The frame.
    pub buf: PacketBuf,
    /// Where it is going.
    pub meta: Meta,
}

impl Packet {
    /// The L3 header and everything after it.
    #[inline]
    pub fn l3(&self) -> &[u8] {
        self.buf.frame().get(self.meta.l3 as usize..).unwrap_or(&[])
    }

    /// The L3 header and everything after it, writable.
    #[inline]
    pub fn l3_mut(&mut self) -> &mut [u8] {
        let l3 = self.meta.l3 as usize;
        self.buf.frame_mut().get_mut(l3..).unwrap_or(&mut [])
    }
}

/// A free list of buffers. Buffers are allocated only when the list is empty,
/// so after warm-up the steady state allocates nothing.
pub struct BufPool {
    free: Vec<PacketBuf>,
    allocated: usize,
    max_frame: usize,
}

impl Default for BufPool {
    fn default() -> Self {
        Self::new(0, MAX_FRAME)
    }
}

impl BufPool {
    /// A pool with `n` buffers of [`MAX_FRAME`] ready.
    pub fn with_capacity(n: usize) -> Self {
        Self::new(n, MAX_FRAME)
    }

    /// A pool with `n` buffers ready, each for frames up to `max_frame`.
    pub fn new(n: usize, max_frame: usize) -> Self {
        BufPool {
            free: (0..n)
                .map(|_| PacketBuf::with_capacity(max_frame))
                .collect(),
            allocated: n,
            max_frame,
        }
    }

    /// An empty buffer.
    #[inline]
    pub fn get(&mut self) -> PacketBuf {
        match self.free.pop() {
            Some(mut b) => {
                b.clear();
                b
            }
            None => {
                self.allocated += 1;
                PacketBuf::with_capacity(self.max_frame)
            }
        }
    }

    /// Returns a buffer to the pool.
    #[inline]
    pub fn put(&mut self, buf: PacketBuf) {
        self.free.push(buf);
    }

    /// A free buffer, if there is one (never allocates).
    pub fn take_free(&mut self) -> Option<PacketBuf> {
        self.free.pop()
    }

    /// Returns many buffers to the pool.
    pub fn put_all(&mut self, bufs: impl IntoIterator<Item = PacketBuf>) {
        self.free.extend(bufs);
    }

    /// Buffers ever allocated by this pool.
    pub fn allocated(&self) -> usize {
        self.allocated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_push_and_pull() {
        let mut b = PacketBuf::new();
        b.set_frame(&[1, 2, 3]).unwrap();
        assert!(b.push_front(2));
        assert_eq!(b.len(), 5);
        b.frame_mut()[..2].copy_from_slice(&[9, 9]);
        assert_eq!(b.frame(), &[9, 9, 1, 2, 3]);
        assert!(b.pull_front(4));
        assert_eq!(b.frame(), &[3]);
        assert!(!b.push_front(HEADROOM + 10));
    }

    #[test]
    fn oversize_frame_is_refused() {
        let mut b = PacketBuf::new();
        assert_eq!(b.set_frame(&vec![0; MAX_FRAME + 1]), Err(MAX_FRAME + 1));
        assert!(b.is_empty());
    }

    #[test]
    fn pool_recycles() {
        let mut p = BufPool::with_capacity(1);
        let a = p.get();
        let b = p.get();
        assert_eq!(p.allocated(), 2);
        p.put(a);
        p.put(b);
        let _ = p.get();
        assert_eq!(p.allocated(), 2);
    }

    #[test]
    fn a_deferred_tail_follows_the_frame_start_and_goes_with_reuse() {
        let mut b = PacketBuf::new();
        b.set_frame(&[7; 300]).unwrap();
        b.defer_tail(300, 1);
        assert_eq!(b.deferred_tail(), None, "nothing past the end to defer");
        b.defer_tail(128, 5);
        assert_eq!(b.deferred_tail(), Some((128, 5)));
        assert!(b.push_front(4));
        assert_eq!(b.deferred_tail(), Some((132, 5)), "the same bytes");
        b.tail_filled();
        assert_eq!(b.deferred_tail(), None);
        b.defer_tail(10, 2);
        b.clear();
        assert_eq!(b.deferred_tail(), None, "a reused buffer has no tail");
    }
}
