//! Frame tails left in a sending VM's memory for one burst.
//!
//! A worker copies only a VM frame's headers into its buffer when the frame
//! will go across a switch to another VM unchanged (the router says so
//! before the burst runs: [`edgefwd_core::pipeline::Router::switched_to`]).
//! The rest stays in the sender's descriptors, which are given back only
//! once the burst has been sent, and the receiving port copies it from the
//! sender's memory into the receiver's: one copy of the payload, not two.
//! Anything else gets the tail filled into the buffer first.
//!
//! A tail holds the sender's memory map, so a frontend that leaves or
//! remaps its memory meanwhile cannot pull it away; every byte is still
//! read through `vm-memory`'s checked accessors.

use std::sync::Arc;

use edgefwd_core::packet::PacketBuf;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::virtq::Guest;
use super::Shared;

/// Bytes of a frame copied into the worker's buffer when its tail is left
/// behind: more than the headers any stage of a switched frame reads.
pub(crate) const HEAD: usize = 128;

/// Where a tail is: guest memory, the chain's readable pieces, and how
/// many of their bytes come before it (the virtio-net header and the
/// frame's head).
pub(crate) struct TailSource<'a> {
    pub mem: &'a GuestMemoryMmap,
    pub pieces: &'a [(GuestAddress, usize)],
    pub skip: usize,
}

impl TailSource<'_> {
    /// The guest ranges that hold `n` bytes of the tail from byte `from`
    /// of it on, in order (fewer bytes when the chain is shorter).
    fn spans(&self, from: usize, n: usize) -> impl Iterator<Item = (GuestAddress, usize)> + '_ {
        let (mut at, mut left) = (self.skip + from, n);
        self.pieces.iter().filter_map(move |&(addr, len)| {
            if at >= len {
                at -= len;
                return None;
            }
            let k = (len - at).min(left);
            let span = (addr.unchecked_add(at as u64), k);
            (at, left) = (0, left - k);
            (k > 0).then_some(span)
        })
    }

    /// Copies `n` bytes of the tail, from byte `from` of it on, into guest
    /// memory `to` at `addr`; false when any of it is outside either.
    pub fn copy_to(&self, from: usize, to: &Guest<'_>, addr: GuestAddress, n: usize) -> bool {
        let (mut addr, mut left) = (addr, n);
        for (src, k) in self.spans(from, n) {
            let copied = match (self.mem.get_slice(src, k), to.get_slice(addr, k)) {
                (Ok(s), Ok(d)) => {
                    s.copy_to_volatile_slice(d);
                    true
                }
                // A range that spans regions: through a buffer on the stack.
                _ => bounce(self.mem, src, to, addr, k),
            };
            if !copied {
                return false;
            }
            left -= k;
            addr = addr.unchecked_add(k as u64);
        }
        left == 0
    }
}

/// Copies `n` bytes from `src` in `from` to `addr` in `to` a piece at a
/// time, for ranges that span memory regions; false when any of it is
/// outside either.
fn bounce(
    from: &GuestMemoryMmap,
    src: GuestAddress,
    to: &Guest<'_>,
    addr: GuestAddress,
    n: usize,
) -> bool {
    let mut b = [0u8; 512];
    let mut done = 0;
    while done < n {
        let k = (n - done).min(b.len());
        let (s, d) = (
            src.unchecked_add(done as u64),
            addr.unchecked_add(done as u64),
        );
        if from.read_slice(&mut b[..k], s).is_err() || to.write_slice(&b[..k], d).is_err() {
            return false;
        }
        done += k;
    }
    true
}

/// One worker's tails of the burst it is running.
#[derive(Default)]
pub(crate) struct Tails {
    /// The worker lets the next receive leave tails behind.
    pub allow: bool,
    maps: Vec<Arc<GuestMemoryMmap>>,
    /// Per tail: its map, its span of `pieces`, and its `skip`.
    recs: Vec<(usize, std::ops::Range<usize>, usize)>,
    pieces: Vec<(GuestAddress, usize)>,
    /// Transmit rings whose used chains wait for the burst to be sent:
    /// the port's shared state and the ring's index.
    held: Vec<(Arc<Shared>, usize)>,
}

impl Tails {
    /// True when no tail is out.
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// Keeps a tail in `map` (the map this burst read), in `pieces` after
    /// `skip` bytes; its token.
    pub fn keep(
        &mut self,
        map: &Arc<GuestMemoryMmap>,
        pieces: &[(GuestAddress, usize)],
        skip: usize,
    ) -> u32 {
        if !self.maps.last().is_some_and(|m| Arc::ptr_eq(m, map)) {
            self.maps.push(Arc::clone(map));
        }
        let from = self.pieces.len();
        self.pieces.extend_from_slice(pieces);
        self.recs
            .push((self.maps.len() - 1, from..self.pieces.len(), skip));
        (self.recs.len() - 1) as u32
    }

    /// Holds `shared`'s ring `ring`'s used chains until [`Tails::release`].
    pub fn hold(&mut self, shared: &Arc<Shared>, ring: usize) {
        if !self
            .held
            .iter()
            .any(|(s, r)| Arc::ptr_eq(s, shared) && *r == ring)
        {
            self.held.push((Arc::clone(shared), ring));
        }
    }

    /// Where the tail of `token` is.
    pub fn source(&self, token: u32) -> Option<TailSource<'_>> {
        let (map, pieces, skip) = self.recs.get(token as usize)?;
        Some(TailSource {
            mem: &self.maps[*map],
            pieces: &self.pieces[pieces.clone()],
            skip: *skip,
        })
    }

    /// Copies `buf`'s deferred tail into it, if it has one.
    pub fn fill(&self, buf: &mut PacketBuf) {
        let Some((at, token)) = buf.deferred_tail() else {
            return;
        };
        let Some(src) = self.source(token) else {
            debug_assert!(false, "a tail outlived its burst");
            return;
        };
        let space = &mut buf.frame_mut()[at..];
        let mut done = 0;
        for (from, k) in src.spans(0, space.len()) {
            // Checked whole when the frame was taken.
            let _ = src.mem.read_slice(&mut space[done..done + k], from);
            done += k;
        }
        buf.tail_filled();
    }

    /// Gives the held chains back to their guests and forgets the tails:
    /// the burst has been sent.
    pub fn release(&mut self) {
        for (shared, ring) in self.held.drain(..) {
            shared.publish(ring);
        }
        self.recs.clear();
        self.pieces.clear();
        self.maps.clear();
    }
}
