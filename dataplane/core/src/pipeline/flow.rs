//! Flow hash for ECMP: the same flow always takes the same path.
//!
//! IPv4 hashes addresses, protocol and, for unfragmented TCP/UDP, the ports
//! (fragments of one datagram must not be split across paths, and only the
//! first carries ports). IPv6 hashes addresses, flow label and next header
//! (RFC 6438).

use crate::fib::{Adjacency, NextHopGroup};

const TCP: u8 = 6;
const UDP: u8 = 17;

fn mix(mut h: u32, v: u32) -> u32 {
    h ^= v.wrapping_mul(0x9e37_79b1);
    h = h.rotate_left(13);
    h.wrapping_mul(5).wrapping_add(0xe654_6b64)
}

fn finalize(mut h: u32) -> u32 {
    // murmur3's finalizer spreads every input bit over the output.
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

fn word(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        .unwrap_or(0)
}

/// The member of `group` the flow of an IP packet (starting at its L3
/// header) takes; the hash is computed only when there is a choice.
#[inline]
pub(super) fn pick(group: &NextHopGroup, l3: &[u8]) -> Adjacency {
    group.pick(if group.members.len() > 1 { hash(l3) } else { 0 })
}

/// Hash of the flow an IP packet (starting at its L3 header) belongs to.
pub(super) fn hash(l3: &[u8]) -> u32 {
    let Some(&first) = l3.first() else { return 0 };
    let mut h = 0;
    if first >> 4 == 4 && l3.len() >= 20 {
        let proto = l3[9];
        h = mix(h, word(l3, 12));
        h = mix(h, word(l3, 16));
        h = mix(h, u32::from(proto));
        let unfragmented = word(l3, 4) & 0x3fff == 0;
        let ihl = usize::from(first & 0x0f) * 4;
        if unfragmented && (proto == TCP || proto == UDP) {
            h = mix(h, word(l3, ihl));
        }
    } else if l3.len() >= 40 {
        for at in (8..40).step_by(4) {
            h = mix(h, word(l3, at));
        }
        h = mix(h, word(l3, 0) & 0x000f_ffff);
        h = mix(h, u32::from(l3[6]));
    }
    finalize(h)
}
