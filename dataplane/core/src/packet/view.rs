//! Small typed views over header bytes, for the fields the pipeline reads on
//! the hot path and rewrites in place.
//!
//! Each view has one checked constructor; after it, no accessor can panic.
//! Getters work on any `AsRef<[u8]>`, setters only on `AsMut<[u8]>`, and every
//! setter keeps the header checksum right (RFC 1624).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::MacAddr;

/// Field offsets of the IPv4 header.
mod v4 {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const ID: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const MIN_LEN: usize = 20;
}

/// An IPv4 header whose length (IHL) fits the slice.
pub struct Ipv4View<T>(T);

impl<T: AsRef<[u8]>> Ipv4View<T> {
    /// Checks that `b` holds a whole IPv4 header (version 4, IHL ≥ 5, IHL
    /// bytes present); nothing else.
    pub fn new_checked(b: T) -> Option<Self> {
        let s = b.as_ref();
        let first = *s.first()?;
        let ihl = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || ihl < v4::MIN_LEN || s.len() < ihl {
            return None;
        }
        Some(Ipv4View(b))
    }

    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }

    fn be16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.b()[at], self.b()[at + 1]])
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[v4::VER_IHL] & 0x0f) * 4
    }

    /// The header bytes.
    pub fn header(&self) -> &[u8] {
        &self.b()[..self.header_len()]
    }

    /// Total length field.
    pub fn total_len(&self) -> u16 {
        self.be16(v4::TOTAL_LEN)
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.b()[v4::TTL]
    }

    /// Protocol number.
    pub fn protocol(&self) -> u8 {
        self.b()[v4::PROTO]
    }

    /// Don't-fragment flag.
    pub fn dont_fragment(&self) -> bool {
        self.b()[v4::FLAGS_FRAG] & 0x40 != 0
    }

    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        self.be16(v4::FLAGS_FRAG) & 0x1fff
    }

    /// More-fragments flag.
    pub fn more_fragments(&self) -> bool {
        self.b()[v4::FLAGS_FRAG] & 0x20 != 0
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        let b = self.b();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        let b = self.b();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    /// True when the header checksum is right.
    pub fn checksum_ok(&self) -> bool {
        checksum::verify(self.header())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4View<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.0.as_mut()
    }

    fn csum(&self) -> u16 {
        self.be16(v4::CSUM)
    }

    fn set_csum(&mut self, c: u16) {
        self.bm()[v4::CSUM..v4::CSUM + 2].copy_from_slice(&c.to_be_bytes());
    }

    /// Decrements the TTL, updating the checksum incrementally. Returns the
    /// new TTL, or `None` (and changes nothing) when the TTL is already 0 or 1,
    /// which the caller must answer with ICMP time exceeded.
    #[must_use]
    #[inline]
    pub fn decrement_ttl(&mut self) -> Option<u8> {
        let ttl = self.ttl();
        if ttl <= 1 {
            return None;
        }
        self.bm()[v4::TTL] = ttl - 1;
        // The TTL is the high byte of its 16-bit word: the word drops by
        // 0x0100, so the checksum rises by 0x0100 with the end-around carry
        // (RFC 1624, as Linux's ip_decrease_ttl does it). The same value as
        // checksum::update16 for every checksum, 0xffff folding to 0.
        let c = u32::from(self.csum()) + 0x0100;
        self.set_csum((c + u32::from(c >= 0xffff)) as u16);
        Some(ttl - 1)
    }

    /// Sets the source address, updating the checksum incrementally.
    pub fn set_src(&mut self, a: Ipv4Addr) {
        let old = u32::from(self.src());
        self.bm()[v4::SRC..v4::SRC + 4].copy_from_slice(&a.octets());
        let c = checksum::update32(self.csum(), old, u32::from(a));
        self.set_csum(c);
    }

    /// Sets the destination address, updating the checksum incrementally.
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        let old = u32::from(self.dst());
        self.bm()[v4::DST..v4::DST + 4].copy_from_slice(&a.octets());
        let c = checksum::update32(self.csum(), old, u32::from(a));
        self.set_csum(c);
    }

    /// Sets the total length (the checksum is left for the caller).
    pub fn set_total_len(&mut self, len: u16) {
        self.bm()[v4::TOTAL_LEN..v4::TOTAL_LEN + 2].copy_from_slice(&len.to_be_bytes());
    }

    /// Sets the identification (the checksum is left for the caller).
    pub fn set_id(&mut self, id: u16) {
        self.bm()[v4::ID..v4::ID + 2].copy_from_slice(&id.to_be_bytes());
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_csum(0);
        let c = checksum::checksum(self.header());
        self.set_csum(c);
    }
}

/// Field offsets of the IPv6 header.
mod v6 {
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
    pub const LEN: usize = 40;
}

/// A fixed IPv6 header present in full.
pub struct Ipv6View<T>(T);

impl<T: AsRef<[u8]>> Ipv6View<T> {
    /// Checks version 6 and 40 bytes present.
    pub fn new_checked(b: T) -> Option<Self> {
        let s = b.as_ref();
        if s.len() < v6::LEN || s[0] >> 4 != 6 {
            return None;
        }
        Some(Ipv6View(b))
    }

    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }

    /// Payload length field.
    pub fn payload_len(&self) -> u16 {
        u16::from_be_bytes([self.b()[v6::PAYLOAD_LEN], self.b()[v6::PAYLOAD_LEN + 1]])
    }

    /// Next header of the fixed header.
    pub fn next_header(&self) -> u8 {
        self.b()[v6::NEXT_HEADER]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.b()[v6::HOP_LIMIT]
    }

    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        let a: [u8; 16] = self.b()[v6::SRC..v6::SRC + 16]
            .try_into()
            .unwrap_or([0; 16]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        let a: [u8; 16] = self.b()[v6::DST..v6::DST + 16]
            .try_into()
            .unwrap_or([0; 16]);
        Ipv6Addr::from(a)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6View<T> {
    /// Sets the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        self.0.as_mut()[v6::PAYLOAD_LEN..v6::PAYLOAD_LEN + 2].copy_from_slice(&len.to_be_bytes());
    }

    /// Decrements the hop limit; `None` (unchanged) when it is 0 or 1.
    #[must_use]
    pub fn decrement_hop_limit(&mut self) -> Option<u8> {
        let h = self.hop_limit();
        if h <= 1 {
            return None;
        }
        self.0.as_mut()[v6::HOP_LIMIT] = h - 1;
        Some(h - 1)
    }
}

/// Writes destination and source MACs into the first 12 bytes of a frame.
/// Returns false if the frame is shorter than that.
pub fn set_eth_addrs(frame: &mut [u8], dst: MacAddr, src: MacAddr) -> bool {
    match frame.get_mut(..12) {
        Some(h) => {
            h[..6].copy_from_slice(&dst.0);
            h[6..].copy_from_slice(&src.0);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const IP4: [u8; 20] = [
        0x45, 0x00, 0x00, 0x1c, // version 4, IHL 5, TOS, total length 28
        0x00, 0x01, 0x40, 0x00, // id 1, DF
        0x02, 0x11, 0x00, 0x00, // TTL 2, UDP, checksum (filled below)
        10, 0, 0, 1,            // source
        10, 0, 0, 2,            // destination
    ];

    fn header() -> [u8; 20] {
        let mut h = IP4;
        Ipv4View::new_checked(&mut h[..]).unwrap().fill_checksum();
        h
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid_and_stops_at_one() {
        let mut h = header();
        let mut v = Ipv4View::new_checked(&mut h[..]).unwrap();
        assert_eq!(v.decrement_ttl(), Some(1));
        assert!(v.checksum_ok());
        assert_eq!(v.decrement_ttl(), None);
        assert_eq!(v.ttl(), 1);
    }

    /// The shortcut in `decrement_ttl` against the general update, for
    /// every checksum value and a spread of TTLs and protocols.
    #[test]
    fn ttl_decrement_matches_the_general_checksum_update() {
        for csum in 0..=u16::MAX {
            for (ttl, proto) in [(2u8, 0u8), (64, 17), (255, 255), (128, 6)] {
                let mut h = IP4;
                h[8] = ttl;
                h[9] = proto;
                h[10..12].copy_from_slice(&csum.to_be_bytes());
                let mut v = Ipv4View::new_checked(&mut h[..]).unwrap();
                assert_eq!(v.decrement_ttl(), Some(ttl - 1));
                let old = u16::from_be_bytes([ttl, proto]);
                let new = u16::from_be_bytes([ttl - 1, proto]);
                let want = checksum::update16(csum, old, new);
                assert_eq!(u16::from_be_bytes([h[10], h[11]]), want, "{csum:#06x}");
            }
        }
    }

    #[test]
    fn address_rewrite_keeps_checksum_valid() {
        let mut h = header();
        let mut v = Ipv4View::new_checked(&mut h[..]).unwrap();
        v.set_src(Ipv4Addr::new(192, 168, 20, 10));
        v.set_dst(Ipv4Addr::new(8, 8, 8, 8));
        assert!(v.checksum_ok());
        assert_eq!(v.src(), Ipv4Addr::new(192, 168, 20, 10));
    }

    #[test]
    fn checked_constructor_refuses_short_or_wrong_version() {
        assert!(Ipv4View::new_checked(&IP4[..19]).is_none());
        let mut bad = IP4;
        bad[0] = 0x46; // IHL 6 needs 24 bytes
        assert!(Ipv4View::new_checked(&bad[..]).is_none());
        bad[0] = 0x65;
        assert!(Ipv4View::new_checked(&bad[..]).is_none());
        assert!(Ipv6View::new_checked(&[0x60u8; 39][..]).is_none());
    }
}
