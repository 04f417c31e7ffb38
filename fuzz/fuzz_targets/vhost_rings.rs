//! A VM's rings, whatever they hold, through edgefwd's VM data path: the
//! first byte picks whether frames leave their tails in the sender's memory
//! and whether the receiver has mergeable buffers; the rest is the sending
//! guest's memory (its transmit ring at the start) and the receiving
//! guest's (its receive ring at the start). It never panics or hangs;
//! every chain taken is given back; a chain a guest may post (no indirect
//! table, read-only buffers inside memory or empty, no loop) is taken as exactly the
//! bytes a plain walk of it reads, its tail filled in from the guest; any
//! other is refused.
#![no_main]

use edgefwd_io::vhost::harness::{run, GUEST_MEM, RING_SIZE, TX_RING};
use libfuzzer_sys::fuzz_target;

const NEXT: u16 = 1;
const WRITE: u16 = 2;
const INDIRECT: u16 = 4;

/// What a plain walk of a chain finds.
enum Walk {
    /// A chain a guest may post, and its bytes.
    Clean(Vec<u8>),
    /// One the data path must refuse.
    Bad,
    /// One this walk does not judge (an indirect table).
    Unjudged,
}

fn walk(mem: &[u8], head: u16) -> Walk {
    let byte = |a: usize| mem.get(a).copied().unwrap_or(0);
    let u16_at = |a: u64| u16::from_le_bytes([byte(a as usize), byte(a as usize + 1)]);
    let u32_at = |a: u64| u32::from_le_bytes(std::array::from_fn(|i| byte(a as usize + i)));
    let u64_at = |a: u64| u64::from_le_bytes(std::array::from_fn(|i| byte(a as usize + i)));
    let mut bytes = Vec::new();
    let mut i = head;
    for _ in 0..RING_SIZE {
        if i >= RING_SIZE {
            return Walk::Bad;
        }
        let d = TX_RING.0 + 16 * u64::from(i);
        let (addr, len, flags, next) = (u64_at(d), u32_at(d + 8), u16_at(d + 12), u16_at(d + 14));
        if flags & INDIRECT != 0 {
            return Walk::Unjudged;
        }
        // An empty buffer reads nothing, wherever it points.
        let end = addr.checked_add(u64::from(len));
        let outside = len > 0 && end.is_none_or(|e| e > GUEST_MEM as u64);
        if flags & WRITE != 0 || outside {
            return Walk::Bad;
        }
        bytes.extend((addr..addr + u64::from(len)).map(|a| byte(a as usize)));
        if flags & NEXT == 0 {
            return Walk::Clean(bytes);
        }
        i = next;
    }
    // More descriptors than the ring has: a loop.
    Walk::Bad
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (sender, receiver) = rest.split_at(rest.len() / 2);
    let out = run(sender, receiver, flags & 1 != 0, flags & 2 != 0);

    let byte = |a: u64| sender.get(a as usize).copied().unwrap_or(0);
    let avail_idx = u16::from_le_bytes([byte(TX_RING.1 + 2), byte(TX_RING.1 + 3)]);
    if avail_idx > RING_SIZE {
        assert!(out.taken.is_empty(), "an avail index past the ring");
        return;
    }
    assert_eq!(
        out.taken.len(),
        usize::from(avail_idx),
        "every chain posted"
    );
    if !out.taken.is_empty() {
        assert_eq!(
            usize::from(out.tx_used),
            out.taken.len(),
            "every chain given back"
        );
    }
    for (n, got) in out.taken.iter().enumerate() {
        let at = TX_RING.1 + 4 + 2 * n as u64;
        let head = u16::from_le_bytes([byte(at), byte(at + 1)]);
        match (walk(sender, head), got) {
            (Walk::Clean(want), Ok(bytes)) => {
                assert!(want == *bytes, "chain {n} taken as other bytes")
            }
            (Walk::Bad, Ok(_)) => panic!("chain {n} may not be posted, yet was taken"),
            _ => {}
        }
    }
});
