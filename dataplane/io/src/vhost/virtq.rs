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

use edgefwd_core::packet::offload::{Offload, VNET_HDR_LEN};
use edgefwd_core::stats::DropReason;
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

use crate::device::{BufSource, Received};

/// The virtio-net header with `num_buffers` (virtio 1.0, or mergeable
/// receive buffers).
pub const NET_HDR_LEN: usize = 12;

/// One virtqueue and what the frontend told about it.
pub(crate) struct Vq {
    /// The ring.
    pub queue: Queue,
    /// The guest's kick (guest to edgefwd): readable when it posted.
    pub kick: Option<File>,
    /// The guest's interrupt (edgefwd to guest).
    pub call: Option<File>,
    /// `SET_VRING_ENABLE` (or no protocol features: enabled with features).
    pub enabled: bool,
    /// Chains used and not yet published, with their lengths.
    used: Vec<(u16, u32)>,
    /// Writable pieces of the chains one frame goes into.
    pieces: Vec<(GuestAddress, usize)>,
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
            used: Vec::with_capacity(usize::from(max_size)),
            pieces: Vec::with_capacity(usize::from(max_size)),
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
        self.used.clear();
    }

    /// Takes up to `max` frames the guest posted (its transmit queue) into
    /// buffers from `pool`, appending them to `out`; returns how many
    /// chains it took. A frame's virtio-net header (`hdr_len` bytes) lands
    /// in front of it.
    pub fn take_frames(
        &mut self,
        mem: &GuestMemoryMmap,
        hdr_len: usize,
        pool: &mut dyn BufSource,
        max: usize,
        out: &mut Vec<Received>,
    ) -> usize {
        let mut taken = 0;
        while taken < max {
            let Some(chain) = self.queue.pop_descriptor_chain(mem) else {
                break;
            };
            taken += 1;
            let head = chain.head_index();
            let mut buf = pool.take();
            let space = buf.read_space(hdr_len);
            let got = read_chain(chain, mem, space);
            let offload = match got {
                Ok(n) if n < hdr_len => {
                    buf.set_read(hdr_len, hdr_len);
                    Err(DropReason::Runt)
                }
                Ok(n) => {
                    buf.set_read(hdr_len, n);
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
        taken
    }

    /// Puts one frame (`hdr` then `frame`) in the guest's receive queue:
    /// in one chain, or with `mergeable` buffers over as many as it needs
    /// (their number in the header's `num_buffers`). Nothing is taken from
    /// the ring when it fails for want of buffers.
    pub fn put_frame(
        &mut self,
        mem: &GuestMemoryMmap,
        hdr: &mut [u8; NET_HDR_LEN],
        hdr_len: usize,
        frame: &[u8],
        mergeable: bool,
    ) -> Result<(), PutError> {
        let total = hdr_len + frame.len();
        let start = self.queue.next_avail();
        let used_from = self.used.len();
        self.pieces.clear();
        let mut room = 0;
        while room < total {
            if !mergeable && self.used.len() > used_from {
                self.rewind(start, used_from);
                return Err(PutError::TooLarge);
            }
            let Some(chain) = self.queue.pop_descriptor_chain(mem) else {
                self.rewind(start, used_from);
                return Err(PutError::NoBuffers);
            };
            let head = chain.head_index();
            match writable_pieces(chain, mem, total - room, &mut self.pieces) {
                Some(n) => {
                    room += n;
                    self.used.push((head, n as u32));
                }
                None => {
                    // Given back empty; the frame is not put.
                    self.used.truncate(used_from);
                    self.used.push((head, 0));
                    return Err(PutError::BadChain);
                }
            }
        }
        let buffers = (self.used.len() - used_from) as u16;
        hdr[10..12].copy_from_slice(&buffers.to_le_bytes());
        let mut at = 0;
        for &(addr, len) in &self.pieces {
            let end = (at + len).min(total);
            let ok = write_span(mem, addr, hdr, hdr_len, frame, at, end);
            if !ok {
                // Checked when the chain was walked; memory that went away
                // since: the chains go back empty.
                for u in &mut self.used[used_from..] {
                    u.1 = 0;
                }
                return Err(PutError::BadChain);
            }
            at = end;
        }
        Ok(())
    }

    /// Publishes the chains used since the last call and interrupts the
    /// guest if it asked to be. Returns false when the used ring could not
    /// be written (memory gone).
    pub fn publish(&mut self, mem: &GuestMemoryMmap) -> bool {
        if self.used.is_empty() {
            return true;
        }
        let mut ok = true;
        for &(head, len) in &self.used {
            ok &= self.queue.add_used(mem, head, len).is_ok();
        }
        self.used.clear();
        if self.queue.needs_notification(mem).unwrap_or(true) {
            if let Some(call) = &mut self.call {
                let _ = call.write(&1u64.to_ne_bytes());
            }
        }
        ok
    }

    /// Stops the guest's kicks while a worker is taking its frames.
    pub fn quiet(&mut self, mem: &GuestMemoryMmap) {
        let _ = self.queue.disable_notification(mem);
    }

    /// Asks the guest to kick again; true when frames came in meanwhile
    /// (take them now: no kick will say so).
    pub fn listen(&mut self, mem: &GuestMemoryMmap) -> bool {
        self.queue.enable_notification(mem).unwrap_or(false)
    }

    fn rewind(&mut self, start: u16, used_from: usize) {
        self.queue.set_next_avail(start);
        self.used.truncate(used_from);
    }
}

/// Copies a transmit chain's readable descriptors into `space`; how many
/// bytes, or why the chain is refused.
fn read_chain(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    space: &mut [u8],
) -> Result<usize, DropReason> {
    let (mut n, mut count, mut open) = (0usize, 0usize, false);
    for d in chain {
        count += 1;
        open = d.has_next();
        if d.is_write_only() {
            return Err(DropReason::VirtioBadDescriptor);
        }
        let len = d.len() as usize;
        let Some(to) = space.get_mut(n..n + len) else {
            return Err(DropReason::Oversize);
        };
        if mem.read_slice(to, d.addr()).is_err() {
            return Err(DropReason::VirtioBadDescriptor);
        }
        n += len;
    }
    // The iterator stops at a loop (after as many descriptors as the
    // queue holds), at a `next` outside the table, and at a descriptor it
    // cannot read: each leaves the last one it gave with `next` set.
    if count == 0 || open {
        return Err(DropReason::VirtioBadDescriptor);
    }
    Ok(n)
}

/// Appends a receive chain's writable pieces to `pieces`, up to `want`
/// bytes; how many bytes it holds (up to `want`), or `None` for a bad
/// chain (readable descriptors, a loop, outside guest memory).
fn writable_pieces(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    want: usize,
    pieces: &mut Vec<(GuestAddress, usize)>,
) -> Option<usize> {
    let from = pieces.len();
    let (mut n, mut count, mut open) = (0usize, 0usize, false);
    for d in chain {
        count += 1;
        open = d.has_next();
        let len = d.len() as usize;
        if !d.is_write_only() || !mem.check_range(d.addr(), len, Permissions::Write) {
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

/// Writes bytes `at..end` of (header, frame) to `addr`.
fn write_span(
    mem: &GuestMemoryMmap,
    addr: GuestAddress,
    hdr: &[u8; NET_HDR_LEN],
    hdr_len: usize,
    frame: &[u8],
    at: usize,
    end: usize,
) -> bool {
    let mut ok = true;
    let mut addr = addr;
    if at < hdr_len {
        let h = &hdr[at..end.min(hdr_len)];
        ok &= mem.write_slice(h, addr).is_ok();
        addr = addr.unchecked_add(h.len() as u64);
    }
    if end > hdr_len {
        let f = &frame[at.max(hdr_len) - hdr_len..end - hdr_len];
        ok &= mem.write_slice(f, addr).is_ok();
    }
    ok
}
