//! Frames in and out of a VM's virtqueues (virtio-net over split rings).
//!
//! Everything the guest wrote is untrusted: descriptors are walked with
//! `virtio-queue`'s iterator (bounded by the queue size, so a loop ends)
//! and guest memory is only read and written through `vm-memory`'s checked
//! accessors. A chain that points outside guest memory, loops, is empty or
//! has the wrong direction is given back to the guest empty and counted;
//! nothing the guest posts can make a worker fail or wait.

use std::fs::File;
use std::io::Write;
use std::num::Wrapping;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use edgefwd_core::packet::offload::{Offload, VNET_HDR_LEN};
use edgefwd_core::packet::PacketBuf;
use edgefwd_core::stats::DropReason;
use edgefwd_prefetch::{prefetch_addr, prefetch_write_addr};
use virtio_queue::{AvailIter, DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    GuestRegionMmap,
};

use super::tails::{TailSource, Tails, HEAD};
use crate::device::{BufSource, Received};

/// Bytes of a guest's buffer prefetched before a frame is copied out of
/// or into it (the headers and the start of the payload; the copy streams
/// the rest).
const PREFETCH_BYTES: usize = 256;

/// Descriptors a chain may have. Guests use a few (Linux at most
/// `MAX_SKB_FRAGS + 2`), but an indirect table may hold 65,535: a longer
/// chain is refused (`oversize` on transmit, a bad chain on receive), so
/// that walking one is bounded and so are the burst's lists of them.
const MAX_CHAIN_DESCS: usize = 256;

/// The avail ring's flag by which a guest asks for no interrupts.
const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// The virtio-net header with `num_buffers` (virtio 1.0, or mergeable
/// receive buffers).
pub const NET_HDR_LEN: usize = 12;

/// Guest memory as the data path reads it: `vm-memory`'s own map and its
/// checked accessors, with its largest region asked first (a guest's
/// rings and buffers mostly lie in it; the map's own lookup is a binary
/// search behind an `Arc` for every ring and buffer access).
pub(crate) struct Guest<'m> {
    map: &'m GuestMemoryMmap,
    first: Option<&'m GuestRegionMmap>,
}

impl<'m> Guest<'m> {
    pub fn new(map: &'m GuestMemoryMmap) -> Guest<'m> {
        let first = map.iter().max_by_key(|r| r.len());
        Guest { map, first }
    }
}

impl GuestMemoryBackend for Guest<'_> {
    type R = GuestRegionMmap;

    #[inline]
    fn num_regions(&self) -> usize {
        self.map.num_regions()
    }

    #[inline]
    fn find_region(&self, addr: GuestAddress) -> Option<&GuestRegionMmap> {
        match self.first {
            Some(r) if addr >= r.start_addr() && addr <= r.last_addr() => Some(r),
            _ => self.map.find_region(addr),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &GuestRegionMmap> {
        self.map.iter()
    }
}

/// One virtqueue and what the frontend told about it.
pub(crate) struct Vq {
    /// The ring.
    pub queue: Queue,
    /// The guest's kick (guest to edgefwd): readable when it posted.
    pub kick: Option<File>,
    /// The guest's interrupt (edgefwd to guest).
    pub call: Option<File>,
    /// Set with the ring's kick and by `SET_VRING_ENABLE` (see
    /// `Session::set_vring_kick`).
    pub enabled: bool,
    /// Polls in a row that found the ring empty (transmit rings).
    pub empty_polls: u32,
    /// The guest's kicks are asked for.
    listening: bool,
    /// Chains used and not yet published, with their lengths.
    used: Vec<(u16, u32)>,
    /// Writable pieces of the chains one frame goes into.
    pieces: Vec<(GuestAddress, usize)>,
    /// A burst of transmit chains walked: head, its span of `descs`, and
    /// whether it is sound.
    walked: Vec<(u16, usize, usize, Result<(), DropReason>)>,
    /// Their readable descriptors.
    descs: Vec<(GuestAddress, usize)>,
    /// A burst's frames reserved for the guest's receive ring, by their
    /// index in the burst.
    slots: Vec<(usize, Slot)>,
}

/// Why a frame could not be put in the guest's receive queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PutError {
    /// No (or not enough) receive buffers posted.
    NoBuffers,
    /// A chain the guest posted was bad (counted, given back empty).
    BadChain,
    /// Larger than a chain without mergeable buffers holds.
    TooLarge,
}

impl Vq {
    pub fn new(max_size: u16) -> Vq {
        Vq {
            queue: Queue::new(max_size).expect("a power of two queue size"),
            kick: None,
            call: None,
            enabled: false,
            empty_polls: 0,
            listening: true,
            used: Vec::with_capacity(usize::from(max_size)),
            pieces: Vec::with_capacity(usize::from(max_size)),
            walked: Vec::with_capacity(usize::from(max_size)),
            descs: Vec::with_capacity(usize::from(max_size)),
            slots: Vec::with_capacity(usize::from(max_size)),
        }
    }

    /// True when frames may move through it.
    pub fn live(&self) -> bool {
        self.queue.ready() && self.enabled
    }

    /// Back to what a new connection finds.
    pub fn reset(&mut self) {
        self.queue.reset();
        self.kick = None;
        self.call = None;
        self.enabled = false;
        self.empty_polls = 0;
        self.listening = true;
        self.used.clear();
    }

    /// Takes up to `max` frames the guest posted (its transmit queue) into
    /// buffers from `pool`, appending them to `out`. A frame's virtio-net
    /// header (`hdr_len` bytes) lands in front of it.
    ///
    /// With `tails` (the worker's, and the map `mem` reads), a frame
    /// longer than [`HEAD`] bytes has only those copied in: the rest is
    /// left in the guest's chain as a tail ([`Tails`]). Returns the chains
    /// taken, and whether any frame left its tail.
    pub fn take_frames(
        &mut self,
        mem: &Guest<'_>,
        hdr_len: usize,
        pool: &mut dyn BufSource,
        max: usize,
        out: &mut Vec<Received>,
        mut tails: Option<(&mut Tails, &Arc<GuestMemoryMmap>)>,
    ) -> (usize, bool) {
        // One read of the avail index for the burst. The chains are walked
        // first and their data prefetched, so the copies then find in
        // cache what the guest's core wrote last, the misses of the whole
        // burst in flight together rather than one frame's at a time.
        let Ok(chains) = self.queue.iter(mem) else {
            return (0, false);
        };
        self.walked.clear();
        self.descs.clear();
        for chain in chains.take(max) {
            let head = chain.head_index();
            let from = self.descs.len();
            let walk = walk_chain(chain, mem, &mut self.descs);
            self.walked.push((head, from, self.descs.len(), walk));
        }
        let mut deferred = false;
        for &(head, from, to, walk) in &self.walked {
            let mut buf = pool.take();
            let descs = &self.descs[from..to];
            // The chain's length matters only when its tail may stay.
            let total: usize = match (&tails, walk) {
                (Some(_), Ok(())) => descs.iter().map(|d| d.1).sum(),
                _ => 0,
            };
            let defer = total > hdr_len + HEAD
                && total - hdr_len <= buf.capacity()
                && descs.iter().all(|&(a, l)| mem.check_range(a, l));
            let space = buf.read_space(hdr_len);
            let got = if defer {
                copy_head(mem, descs, &mut space[..hdr_len + HEAD]).map(|()| total)
            } else {
                walk.and_then(|()| copy_chain(mem, descs, space))
            };
            let offload = match got {
                Ok(n) if n < hdr_len => {
                    buf.set_read(hdr_len, hdr_len);
                    Err(DropReason::Runt)
                }
                Ok(n) => {
                    buf.set_read(hdr_len, n);
                    if let (true, Some((tails, map))) = (defer, tails.as_mut()) {
                        let token = tails.keep(map, descs, hdr_len + HEAD);
                        buf.defer_tail(HEAD, token);
                        deferred = true;
                    }
                    let mut h = [0; VNET_HDR_LEN];
                    h.copy_from_slice(&buf.front(hdr_len)[..VNET_HDR_LEN]);
                    Offload::decode(&h).ok_or(DropReason::OffloadInvalid)
                }
                Err(reason) => {
                    buf.set_read(hdr_len, hdr_len);
                    Err(reason)
                }
            };
            out.push(Received {
                buf,
                offload,
                at: None,
            });
            self.used.push((head, 0));
        }
        (self.walked.len(), deferred)
    }

    /// Starts putting a burst of frames in the guest's receive queue
    /// (reading its avail index once).
    pub fn putter<'a>(&'a mut self, mem: &'a Guest<'a>) -> Putter<'a> {
        self.pieces.clear();
        self.slots.clear();
        Putter {
            chains: self.queue.iter(mem).ok(),
            used: &mut self.used,
            pieces: &mut self.pieces,
            slots: &mut self.slots,
            mem,
        }
    }

    /// Publishes the chains used since the last call (their entries, then
    /// the used index once, as the guest polls that index: one store a
    /// burst, not one a frame) and interrupts the guest if it asked to be
    /// (virtio 1.0 2.6.7.2: `used_event` with `EVENT_IDX`, else the
    /// avail ring's `NO_INTERRUPT` flag). Returns false when the used ring
    /// could not be written (memory gone).
    pub fn publish(&mut self, mem: &Guest<'_>) -> bool {
        if self.used.is_empty() {
            return true;
        }
        let q = &mut self.queue;
        let (size, ring) = (q.size(), GuestAddress(q.used_ring()));
        let old = Wrapping(q.next_used());
        let mut new = old;
        let mut ok = true;
        for &(head, len) in &self.used {
            let slot = u64::from(new.0 % size.max(1));
            let mut elem = [0u8; 8];
            elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
            elem[4..].copy_from_slice(&len.to_le_bytes());
            ok &= head < size && write_guest(mem, ring.unchecked_add(4 + 8 * slot), &elem);
            new += Wrapping(1);
        }
        self.used.clear();
        q.set_next_used(new.0);
        ok &= mem
            .store(new.0.to_le(), ring.unchecked_add(2), Ordering::Release)
            .is_ok();
        // The guest's wish is read after the index is out (a full fence:
        // its reads and this store may not pass each other).
        fence(Ordering::SeqCst);
        let avail = GuestAddress(q.avail_ring());
        let notify = if q.event_idx_enabled() {
            let at = avail.unchecked_add(4 + 2 * u64::from(size));
            match mem.load::<u16>(at, Ordering::Acquire) {
                // vring_need_event: the index passed used_event.
                Ok(ev) => new - Wrapping(u16::from_le(ev)) - Wrapping(1) < new - old,
                Err(_) => true,
            }
        } else {
            mem.load::<u16>(avail, Ordering::Acquire)
                .map_or(true, |flags| {
                    u16::from_le(flags) & VRING_AVAIL_F_NO_INTERRUPT == 0
                })
        };
        if notify {
            if let Some(call) = &mut self.call {
                let _ = call.write(&1u64.to_ne_bytes());
            }
        }
        ok
    }

    /// Stops the guest's kicks while a worker is taking its frames.
    pub fn quiet(&mut self, mem: &Guest<'_>) {
        if self.listening {
            self.listening = false;
            let _ = self.queue.disable_notification(mem);
        }
    }

    /// Asks the guest to kick again; true when frames came in meanwhile
    /// (take them now: no kick will say so).
    pub fn listen(&mut self, mem: &Guest<'_>) -> bool {
        self.listening = true;
        self.queue.enable_notification(mem).unwrap_or(false)
    }
}

/// A burst of frames going into the guest's receive queue.
pub(crate) struct Putter<'a> {
    chains: Option<AvailIter<'a, &'a Guest<'a>>>,
    used: &'a mut Vec<(u16, u32)>,
    pieces: &'a mut Vec<(GuestAddress, usize)>,
    slots: &'a mut Vec<(usize, Slot)>,
    mem: &'a Guest<'a>,
}

impl Putter<'_> {
    /// Takes the chains for a frame of `total` bytes (header included): one
    /// chain, or with `mergeable` buffers as many as it needs. The first
    /// lines of its buffers are prefetched for writing, so that a burst's
    /// frames are reserved first and written after, their lines (last
    /// touched by the guest's core) on their way meanwhile. Nothing is
    /// taken from the ring when it fails for want of buffers.
    pub fn reserve(&mut self, total: usize, mergeable: bool) -> Result<Slot, PutError> {
        let Some(chains) = self.chains.as_mut() else {
            return Err(PutError::NoBuffers);
        };
        let (used_from, pieces_from) = (self.used.len(), self.pieces.len());
        let mut room = 0;
        while room < total {
            let taken = self.used.len() - used_from;
            if !mergeable && taken > 0 {
                rewind(chains, self.used, used_from);
                self.pieces.truncate(pieces_from);
                return Err(PutError::TooLarge);
            }
            let Some(chain) = chains.next() else {
                rewind(chains, self.used, used_from);
                self.pieces.truncate(pieces_from);
                return Err(PutError::NoBuffers);
            };
            let head = chain.head_index();
            match writable_pieces(chain, total - room, self.pieces) {
                Some(n) => {
                    room += n;
                    self.used.push((head, n as u32));
                }
                None => {
                    // This chain and any taken before it for the frame go
                    // back empty; the frame is not put.
                    give_back_empty(&mut self.used[used_from..]);
                    self.used.push((head, 0));
                    self.pieces.truncate(pieces_from);
                    return Err(PutError::BadChain);
                }
            }
        }
        for &(addr, len) in &self.pieces[pieces_from..] {
            if let Ok(s) = self.mem.get_slice(addr, len.min(PREFETCH_BYTES)) {
                let p = s.ptr_guard_mut().as_ptr();
                for off in (0..s.len()).step_by(64) {
                    prefetch_write_addr(p.wrapping_add(off));
                }
            }
        }
        Ok(Slot {
            used: used_from..self.used.len(),
            pieces: pieces_from..self.pieces.len(),
        })
    }

    /// Writes a frame (`hdr`, then `frame`, then `tail`'s bytes if it has
    /// one left in another guest's memory) into the chains `slot` holds,
    /// with their number in the header's `num_buffers`.
    pub fn write(
        &mut self,
        slot: &Slot,
        hdr: &mut [u8; NET_HDR_LEN],
        hdr_len: usize,
        frame: &[u8],
        tail: Option<(&TailSource<'_>, usize)>,
    ) -> Result<(), PutError> {
        let total = hdr_len + frame.len() + tail.map_or(0, |t| t.1);
        let buffers = slot.used.len() as u16;
        hdr[10..12].copy_from_slice(&buffers.to_le_bytes());
        let span = Span {
            hdr,
            hdr_len,
            frame,
            tail: tail.map(|t| t.0),
        };
        let mut at = 0;
        for &(addr, len) in &self.pieces[slot.pieces.clone()] {
            let end = (at + len).min(total);
            if !span.write(self.mem, addr, at, end) {
                // A buffer outside guest memory.
                give_back_empty(&mut self.used[slot.used.clone()]);
                return Err(PutError::BadChain);
            }
            at = end;
        }
        Ok(())
    }

    /// Reserves chains for frame `i` of the burst, to be written by
    /// [`Putter::reserved`] and [`Putter::write`] once the burst's frames
    /// all have theirs.
    pub fn reserve_for(&mut self, i: usize, total: usize, mergeable: bool) -> Result<(), PutError> {
        let slot = self.reserve(total, mergeable)?;
        self.slots.push((i, slot));
        Ok(())
    }

    /// Reservation `k` of [`Putter::reserve_for`]: the frame's index and its
    /// chains; `None` past the last.
    pub fn reserved(&self, k: usize) -> Option<(usize, Slot)> {
        self.slots.get(k).cloned()
    }

    /// Writes `buf`'s frame behind `hdr` into the chains `slot` holds
    /// ([`Putter::write`]), its tail, if it left one, straight from the
    /// sending guest's memory as `tails` has it; true when it did.
    pub fn write_buf(
        &mut self,
        slot: &Slot,
        hdr: &mut [u8; NET_HDR_LEN],
        hdr_len: usize,
        buf: &PacketBuf,
        tails: &Tails,
    ) -> Result<bool, PutError> {
        let frame = buf.frame();
        let Some((at, token)) = buf.deferred_tail() else {
            return self.write(slot, hdr, hdr_len, frame, None).map(|()| false);
        };
        // A tail of another burst cannot be (`Tails::release` runs after
        // every flush); it would be refused rather than sent.
        let src = tails.source(token).ok_or(PutError::BadChain)?;
        let tail = Some((&src, frame.len() - at));
        self.write(slot, hdr, hdr_len, &frame[..at], tail)
            .map(|()| true)
    }

    /// Puts one frame at once: [`Putter::reserve`] and [`Putter::write`].
    pub fn put(
        &mut self,
        hdr: &mut [u8; NET_HDR_LEN],
        hdr_len: usize,
        frame: &[u8],
        mergeable: bool,
    ) -> Result<(), PutError> {
        let slot = self.reserve(hdr_len + frame.len(), mergeable)?;
        self.write(&slot, hdr, hdr_len, frame, None)
    }
}

/// The chains a frame was given, by their spans of the burst's used
/// entries and writable pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    used: std::ops::Range<usize>,
    pieces: std::ops::Range<usize>,
}

/// Puts back the chains taken for a frame that did not fit.
fn rewind(chains: &mut AvailIter<'_, &Guest<'_>>, used: &mut Vec<(u16, u32)>, from: usize) {
    for _ in from..used.len() {
        chains.go_to_previous_position();
    }
    used.truncate(from);
}

/// Marks chains as given back with nothing written.
fn give_back_empty(used: &mut [(u16, u32)]) {
    for u in used {
        u.1 = 0;
    }
}

/// Appends a transmit chain's readable descriptors to `descs`,
/// prefetching the start of each buffer; why the chain is refused, if it
/// is.
fn walk_chain(
    chain: DescriptorChain<&Guest<'_>>,
    mem: &Guest<'_>,
    descs: &mut Vec<(GuestAddress, usize)>,
) -> Result<(), DropReason> {
    let (mut count, mut open) = (0usize, false);
    for d in chain {
        count += 1;
        open = d.has_next();
        if d.is_write_only() {
            return Err(DropReason::VirtioBadDescriptor);
        }
        if count > MAX_CHAIN_DESCS {
            return Err(DropReason::Oversize);
        }
        let len = d.len() as usize;
        if let Ok(s) = mem.get_slice(d.addr(), len.min(PREFETCH_BYTES)) {
            let p = s.ptr_guard().as_ptr();
            for off in (0..s.len()).step_by(64) {
                prefetch_addr(p.wrapping_add(off));
            }
        }
        descs.push((d.addr(), len));
    }
    // The iterator stops at a loop (after as many descriptors as the
    // queue holds), at a `next` outside the table, and at a descriptor it
    // cannot read: each leaves the last one it gave with `next` set.
    if count == 0 || open {
        return Err(DropReason::VirtioBadDescriptor);
    }
    Ok(())
}

/// Copies a walked transmit chain's data into `space`; how many bytes.
fn copy_chain(
    mem: &Guest<'_>,
    descs: &[(GuestAddress, usize)],
    space: &mut [u8],
) -> Result<usize, DropReason> {
    let mut n = 0;
    for &(addr, len) in descs {
        let Some(to) = space.get_mut(n..n + len) else {
            return Err(DropReason::Oversize);
        };
        if !read_guest(mem, addr, to) {
            return Err(DropReason::VirtioBadDescriptor);
        }
        n += len;
    }
    Ok(n)
}

/// Copies the first `space.len()` bytes of a walked transmit chain into
/// `space` (the chain is known to be longer).
fn copy_head(
    mem: &Guest<'_>,
    descs: &[(GuestAddress, usize)],
    space: &mut [u8],
) -> Result<(), DropReason> {
    let mut n = 0;
    for &(addr, len) in descs {
        let k = len.min(space.len() - n);
        if !read_guest(mem, addr, &mut space[n..n + k]) {
            return Err(DropReason::VirtioBadDescriptor);
        }
        n += k;
        if n == space.len() {
            break;
        }
    }
    Ok(())
}

/// Appends a receive chain's writable pieces to `pieces`, up to `want`
/// bytes; how many bytes it holds (up to `want`), or `None` for a bad
/// chain (readable descriptors, a loop, a descriptor it cannot read).
fn writable_pieces(
    chain: DescriptorChain<&Guest<'_>>,
    want: usize,
    pieces: &mut Vec<(GuestAddress, usize)>,
) -> Option<usize> {
    let from = pieces.len();
    let (mut n, mut count, mut open) = (0usize, 0usize, false);
    for d in chain {
        count += 1;
        open = d.has_next();
        let len = d.len() as usize;
        // Where it points is checked by the write (a failed one gives
        // the chains back empty).
        if !d.is_write_only() || count > MAX_CHAIN_DESCS {
            pieces.truncate(from);
            return None;
        }
        if n < want && len > 0 {
            pieces.push((d.addr(), len.min(want - n)));
            n += len.min(want - n);
        }
        if n >= want {
            open = false;
            break;
        }
    }
    if count == 0 || open {
        pieces.truncate(from);
        return None;
    }
    Some(n)
}

/// What a frame put in a guest is made of: its virtio-net header, the
/// frame (or its head), and its tail in another guest's memory.
struct Span<'a> {
    hdr: &'a [u8; NET_HDR_LEN],
    hdr_len: usize,
    frame: &'a [u8],
    tail: Option<&'a TailSource<'a>>,
}

impl Span<'_> {
    /// Writes bytes `at..end` of it to `addr`.
    fn write(&self, mem: &Guest<'_>, addr: GuestAddress, at: usize, end: usize) -> bool {
        let (hdr_len, head) = (self.hdr_len, self.hdr_len + self.frame.len());
        let mut ok = true;
        let mut addr = addr;
        if at < hdr_len {
            let h = &self.hdr[at..end.min(hdr_len)];
            ok &= write_guest(mem, addr, h);
            addr = addr.unchecked_add(h.len() as u64);
        }
        if end > hdr_len && at < head {
            let f = &self.frame[at.max(hdr_len) - hdr_len..end.min(head) - hdr_len];
            ok &= write_guest(mem, addr, f);
            addr = addr.unchecked_add(f.len() as u64);
        }
        if end > head {
            let from = at.max(head);
            ok &= self
                .tail
                .is_some_and(|t| t.copy_to(from - head, mem, addr, end - from));
        }
        ok
    }
}

/// Copies guest memory at `addr` into `to`: one checked slice when the
/// range lies in one region, else piece by piece; false when any of it is
/// outside guest memory.
fn read_guest(mem: &Guest<'_>, addr: GuestAddress, to: &mut [u8]) -> bool {
    match mem.get_slice(addr, to.len()) {
        Ok(s) => s.copy_to(to) == to.len(),
        Err(_) => mem.read_slice(to, addr).is_ok(),
    }
}

/// Copies `from` into guest memory at `addr`, as [`read_guest`] reads.
fn write_guest(mem: &Guest<'_>, addr: GuestAddress, from: &[u8]) -> bool {
    match mem.get_slice(addr, from.len()) {
        Ok(s) => {
            s.copy_from(from);
            true
        }
        Err(_) => mem.write_slice(from, addr).is_ok(),
    }
}
