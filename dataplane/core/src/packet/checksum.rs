//! Internet checksums (RFC 1071) and incremental updates (RFC 1624).
//!
//! A router rewrites a few fields per packet (TTL, addresses, ports); updating
//! the checksum from the old and new field values costs a few additions where
//! a full recomputation would touch the whole header or payload.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One's-complement sum of `data` as big-endian 16-bit words (not folded).
///
/// Adds 32-bit words into a 64-bit accumulator: the end-around carry makes
/// that equal to the 16-bit sum once folded (RFC 1071 §2), at half the steps.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // An IPv4 header without options, checked for every packet: five words
    // straight, without the general loop's setup.
    if let Ok(h) = <&[u8; 20]>::try_from(data) {
        let w = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
        return fold(w(0) + w(4) + w(8) + w(12) + w(16));
    }
    let words = data.chunks_exact(4);
    // The last 1–3 bytes, zero-padded, taken apart by hand: a copy of
    // variable length would be a call to memcpy.
    let tail = match *words.remainder() {
        [a] => u32::from_be_bytes([a, 0, 0, 0]),
        [a, b] => u32::from_be_bytes([a, b, 0, 0]),
        [a, b, c] => u32::from_be_bytes([a, b, c, 0]),
        _ => 0,
    };
    let acc: u64 = words
        .map(|w| u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]])))
        .sum::<u64>()
        + u64::from(tail);
    fold(acc)
}

/// Folds a sum of 32-bit words to at most 17 bits, so callers can add to it.
#[inline]
fn fold(acc: u64) -> u32 {
    let folded = (acc & 0xffff_ffff) + (acc >> 32);
    let folded = (folded & 0xffff_ffff) + (folded >> 32);
    let s = folded as u32;
    (s & 0xffff) + (s >> 16)
}

/// Folds a 32-bit sum to 16 bits and complements it: the checksum field value.
#[inline]
pub fn finish(s: u32) -> u16 {
    // Two folds bring any 32-bit value to 16 bits.
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// The checksum of `data` (the field value that makes `sum` of it all zero).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// True when `data`, checksum field included, sums to 0xffff.
#[inline]
pub fn verify(data: &[u8]) -> bool {
    checksum(data) == 0
}

/// RFC 1624 eqn. 3: the new checksum after a 16-bit field changes from `old`
/// to `new`: `HC' = ~(~HC + ~m + m')`.
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!csum) + u32::from(!old) + u32::from(new);
    finish(s)
}

/// The checksum field after an incremental update of the ICMPv4 message
/// `msg` (no pseudo-header; the field at bytes 2..4): [`update16`] cannot
/// tell data of all zeros (checksum 0xffff) from data summing to -0
/// (checksum 0), so a 0 is checked against the data. Only an echo of all
/// zeros is the first.
pub fn settle_icmp4(c: u16, msg: &[u8]) -> u16 {
    let zeros = || {
        msg.iter()
            .enumerate()
            .all(|(i, &b)| b == 0 || i == 2 || i == 3)
    };
    if c == 0 && zeros() {
        0xffff
    } else {
        c
    }
}

/// [`update16`] for a 32-bit field (an IPv4 address).
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    let c = update16(csum, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// Sum of the IPv4 pseudo-header for TCP/UDP/ICMP-less protocols.
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    sum(&src.octets()) + sum(&dst.octets()) + u32::from(proto) + u32::from(len)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1).
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u32 {
    sum(&src.octets()) + sum(&dst.octets()) + (len >> 16) + (len & 0xffff) + u32::from(next_header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // The example words of RFC 1071 §3: sum 0xddf2, checksum 0x220d.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum(&data)), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12]), 0x1200);
    }

    /// RFC 1071 as written: 16-bit words, carries folded as they come.
    fn word_by_word(data: &[u8]) -> u16 {
        let s = data
            .chunks(2)
            .map(|c| u32::from(c[0]) << 8 | u32::from(c.get(1).copied().unwrap_or(0)))
            .fold(0u32, |a, w| {
                let s = a + w;
                (s & 0xffff) + (s >> 16)
            });
        finish(s)
    }

    proptest! {
        #[test]
        fn sum_matches_word_by_word(data in proptest::collection::vec(any::<u8>(), 0..72)) {
            prop_assert_eq!(finish(sum(&data)), word_by_word(&data));
        }

        /// The 20-byte shortcut (an IPv4 header without options).
        #[test]
        fn twenty_bytes_match_word_by_word(data in any::<[u8; 20]>()) {
            prop_assert_eq!(finish(sum(&data)), word_by_word(&data));
        }

        #[test]
        fn incremental_update_matches_recomputation(
            mut data in proptest::collection::vec(any::<u8>(), 4..64),
            at in 0usize..30,
            new in any::<u16>(),
        ) {
            // Put a checksum over the first 2 bytes, then change another word.
            if data.len() % 2 == 1 { data.pop(); }
            let at = 2 + (at % ((data.len() - 2) / 2)) * 2;
            data[0] = 0; data[1] = 0;
            let c = checksum(&data);
            data[..2].copy_from_slice(&c.to_be_bytes());
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&new.to_be_bytes());
            let inc = update16(c, old, new);
            data[..2].copy_from_slice(&inc.to_be_bytes());
            prop_assert!(verify(&data));
        }
    }
}
