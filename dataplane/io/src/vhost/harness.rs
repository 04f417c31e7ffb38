//! The VM data path without a frontend, for the `vhost_rings` fuzz
//! target: rings and buffers a guest wrote, whatever they hold, go through
//! the workers' own code (taking frames, leaving their tails, filling
//! them, putting them into another guest's receive ring), so that the
//! fuzzer can look for a panic or a hang and compare the frames taken
//! with a walk of its own.

use std::sync::Arc;

use edgefwd_core::packet::buf::MAX_FRAME;
use edgefwd_core::packet::PacketBuf;
use edgefwd_core::stats::DropReason;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::tails::Tails;
use super::virtq::{Guest, Vq, NET_HDR_LEN};
use crate::device::{BufSource, Received};

/// Bytes of each guest's memory.
pub const GUEST_MEM: usize = 0x10000;
/// Entries of each ring.
pub const RING_SIZE: u16 = 16;
/// Where the sending guest's transmit ring lies: descriptor table, avail
/// ring, used ring.
pub const TX_RING: (u64, u64, u64) = (0x0, 0x100, 0x200);
/// Where the receiving guest's receive ring lies.
pub const RX_RING: (u64, u64, u64) = (0x0, 0x100, 0x200);

struct Pool;

impl BufSource for Pool {
    fn take(&mut self) -> PacketBuf {
        PacketBuf::with_capacity(MAX_FRAME)
    }

    fn give_back(&mut self, _buf: PacketBuf) {}
}

fn guest(bytes: &[u8]) -> Arc<GuestMemoryMmap> {
    let map = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), GUEST_MEM)])
        .expect("anonymous guest memory");
    let n = bytes.len().min(GUEST_MEM);
    map.write_slice(&bytes[..n], GuestAddress(0))
        .expect("inside guest memory");
    Arc::new(map)
}

fn ring((desc, avail, used): (u64, u64, u64)) -> Vq {
    let mut vq = Vq::new(RING_SIZE);
    let q = &mut vq.queue;
    q.try_set_size(RING_SIZE).expect("a power of two");
    q.try_set_desc_table_address(GuestAddress(desc))
        .and_then(|()| q.try_set_avail_ring_address(GuestAddress(avail)))
        .and_then(|()| q.try_set_used_ring_address(GuestAddress(used)))
        .expect("aligned ring addresses");
    q.set_ready(true);
    vq.enabled = true;
    vq
}

/// What the path did with one guest's rings.
pub struct Outcome {
    /// Each chain taken from the sender's transmit ring, in order: its
    /// virtio-net header and frame (the tail filled in), or why it was
    /// dropped.
    pub taken: Vec<Result<Vec<u8>, DropReason>>,
    /// The sender's used index afterwards.
    pub tx_used: u16,
}

/// Takes up to a burst of frames from the transmit ring in `sender`'s
/// memory (tails left behind when `tails`), and puts them into the
/// receive ring in `receiver`'s memory (with `mergeable` buffers), the
/// frames with tails straight from the sender's memory.
pub fn run(sender: &[u8], receiver: &[u8], tails: bool, mergeable: bool) -> Outcome {
    let (from, to) = (guest(sender), guest(receiver));
    let (tx_mem, rx_mem) = (Guest::new(&from), Guest::new(&to));
    let (mut tx, mut rx) = (ring(TX_RING), ring(RX_RING));
    let mut kept = Tails::default();
    let mut out: Vec<Received> = Vec::new();
    let with = tails.then_some((&mut kept, &from));
    tx.take_frames(&tx_mem, NET_HDR_LEN, &mut Pool, 64, &mut out, with);
    let mut taken = Vec::new();
    for r in &out {
        taken.push(match r.offload {
            Ok(_) => {
                let mut whole = PacketBuf::with_capacity(MAX_FRAME);
                let frame = r.buf.frame();
                let _ = whole.fill_with(NET_HDR_LEN, |space| {
                    space[..NET_HDR_LEN].copy_from_slice(r.buf.front(NET_HDR_LEN));
                    space[NET_HDR_LEN..NET_HDR_LEN + frame.len()].copy_from_slice(frame);
                    Ok(NET_HDR_LEN + frame.len())
                });
                if let Some((at, token)) = r.buf.deferred_tail() {
                    whole.defer_tail(at, token);
                    kept.fill(&mut whole);
                }
                let mut bytes = whole.front(NET_HDR_LEN).to_vec();
                bytes.extend_from_slice(whole.frame());
                Ok(bytes)
            }
            Err(reason) => Err(reason),
        });
    }
    let mut put = rx.putter(&rx_mem);
    for (i, r) in out.iter().enumerate() {
        if r.offload.is_ok() {
            let _ = put.reserve_for(i, NET_HDR_LEN + r.buf.len(), mergeable);
        }
    }
    let mut k = 0;
    while let Some((i, slot)) = put.reserved(k) {
        k += 1;
        let mut hdr = [0u8; NET_HDR_LEN];
        let _ = put.write_buf(&slot, &mut hdr, NET_HDR_LEN, &out[i].buf, &kept);
    }
    rx.publish(&rx_mem);
    tx.publish(&tx_mem);
    let tx_used = tx_mem
        .read_obj::<u16>(GuestAddress(TX_RING.2 + 2))
        .map_or(0, u16::from_le);
    Outcome { taken, tx_used }
}
