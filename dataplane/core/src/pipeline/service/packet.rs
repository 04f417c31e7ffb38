//! What svc-in and svc-out read and write of a packet, IPv4 or IPv6: its
//! flow, an endpoint rewritten in place, and a TCP reset built afresh.
//!
//! IPv4 is NAT's own parser and rewriter. IPv6 has no header checksum, so
//! a rewrite updates only the transport checksum, over the pseudo-header's
//! address and the port, with the same RFC 1624 arithmetic (and, for a
//! checksum left partial by offload, the address alone). An IPv6 packet
//! whose TCP or UDP header follows extension headers is not a flow here:
//! services answer it as a packet to no port of theirs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::nat::{parse, set_endpoint as set_endpoint4, End, Parsed, Proto, Sum};
use crate::packet::checksum;
use crate::packet::view::{Ipv4View, Ipv6View};
use crate::packet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_HLEN};

use super::super::icmp::write_ipv6;

const TCP: u8 = 6;
const UDP: u8 = 17;

/// A packet's flow as services see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Seen {
    pub proto: Proto,
    pub src: (IpAddr, u16),
    pub dst: (IpAddr, u16),
    /// TCP flags (0 for others).
    pub flags: u8,
}

/// The source and destination of the IP packet `l3`.
#[inline]
pub(super) fn addrs(l3: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match l3.first()? >> 4 {
        4 => Ipv4View::new_checked(l3).map(|h| (h.src().into(), h.dst().into())),
        6 => Ipv6View::new_checked(l3).map(|h| (h.src().into(), h.dst().into())),
        _ => None,
    }
}

/// The flow of `l3`: TCP, UDP, or (IPv4) an ICMP echo.
pub(super) fn seen(l3: &[u8]) -> Option<Seen> {
    if l3.first()? >> 4 == 6 {
        return seen6(l3);
    }
    match parse(l3) {
        Parsed::Flow {
            proto,
            src,
            dst,
            flags,
            ..
        } => Some(Seen {
            proto,
            src: (src.0.into(), src.1),
            dst: (dst.0.into(), dst.1),
            flags,
        }),
        _ => None,
    }
}

fn seen6(l3: &[u8]) -> Option<Seen> {
    let h = Ipv6View::new_checked(l3)?;
    let proto = match l3[6] {
        TCP => Proto::Tcp,
        UDP => Proto::Udp,
        _ => return None,
    };
    let be16 = |at: usize| Some(u16::from_be_bytes(l3.get(at..at + 2)?.try_into().ok()?));
    let flags = match proto {
        Proto::Tcp => *l3.get(40 + 13)?,
        _ => 0,
    };
    Some(Seen {
        proto,
        src: (h.src().into(), be16(40)?),
        dst: (h.dst().into(), be16(42)?),
        flags,
    })
}

/// Rewrites one endpoint (address and port) of the packet at `ip` in `b`,
/// its checksums included. An endpoint of the other family is ignored.
pub(super) fn set_endpoint(b: &mut [u8], ip: usize, end: End, to: (IpAddr, u16), sum: Sum) {
    match to.0 {
        IpAddr::V4(a) => set_endpoint4(b, ip, end, (a, to.1), sum),
        IpAddr::V6(a) => set_endpoint6(b, ip, end, (a, to.1), sum),
    }
}

fn set_endpoint6(b: &mut [u8], ip: usize, end: End, to: (Ipv6Addr, u16), sum: Sum) {
    let Some(l3) = b
        .get_mut(ip..)
        .filter(|l3| Ipv6View::new_checked(l3).is_some())
    else {
        return;
    };
    let (proto, at) = (l3[6], if end == End::Src { 8 } else { 24 });
    let old: [u8; 16] = l3[at..at + 16].try_into().unwrap_or_default();
    l3[at..at + 16].copy_from_slice(&to.0.octets());
    let (port_at, csum_at) = match (proto, end) {
        (TCP, End::Src) => (40, 56),
        (TCP, End::Dst) => (42, 56),
        (UDP, End::Src) => (40, 46),
        (UDP, End::Dst) => (42, 46),
        _ => return,
    };
    let Some(l4) = l3.get_mut(..csum_at + 2) else {
        return;
    };
    let old_port = u16::from_be_bytes([l4[port_at], l4[port_at + 1]]);
    l4[port_at..port_at + 2].copy_from_slice(&to.1.to_be_bytes());
    let c = u16::from_be_bytes([l4[csum_at], l4[csum_at + 1]]);
    // A UDP checksum of 0 over IPv6 is invalid anyway (RFC 8200 8.1):
    // left for the receiver to drop.
    if proto == UDP && c == 0 {
        return;
    }
    let words = |a: [u8; 16]| {
        let mut w = [0u32; 4];
        for (w, c) in w.iter_mut().zip(a.chunks_exact(4)) {
            *w = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        w
    };
    let addr = |c: u16| {
        (words(old).into_iter())
            .zip(words(to.0.octets()))
            .fold(c, |c, (o, n)| checksum::update32(c, o, n))
    };
    let mut c = match sum {
        Sum::Partial => !addr(!c),
        Sum::Complete => checksum::update16(addr(c), old_port, to.1),
    };
    if proto == UDP && c == 0 {
        c = 0xffff;
    }
    l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
}

/// A TCP reset (20 bytes, no options) from `from` to `to` with `seq`,
/// `ack` and `flags`, as a whole Ethernet frame of the addresses' family
/// (its MAC addresses left to ip-rewrite) written into `f`; its length.
pub(super) fn write_reset(
    f: &mut [u8],
    from: (IpAddr, u16),
    to: (IpAddr, u16),
    (seq, ack, flags): (u32, u32, u8),
) -> usize {
    f[..12].fill(0);
    let (l4, pseudo) = match (from.0, to.0) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            write_ipv6(&mut f[ETH_HLEN..], 20, TCP, 64, s, d);
            (ETH_HLEN + 40, checksum::pseudo_v6(s, d, TCP, 20))
        }
        (s, d) => {
            let v4 = |a: IpAddr| match a {
                IpAddr::V4(a) => a,
                IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            let (s, d) = (v4(s), v4(d));
            f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let ip = &mut f[ETH_HLEN..ETH_HLEN + 20];
            #[rustfmt::skip]
            ip.copy_from_slice(&[
                0x45, 0, 0, 40,        // version 4, IHL 5, total length 40
                0, 0, 0x40, 0,         // id, DF
                64, TCP, 0, 0,         // TTL, TCP, checksum (below)
                0, 0, 0, 0, 0, 0, 0, 0, // source, destination (below)
            ]);
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = checksum::checksum(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            (ETH_HLEN + 20, checksum::pseudo_v4(s, d, TCP, 20))
        }
    };
    let t = &mut f[l4..l4 + 20];
    t.fill(0);
    t[0..2].copy_from_slice(&from.1.to_be_bytes());
    t[2..4].copy_from_slice(&to.1.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    let c = checksum::finish(pseudo + checksum::sum(t));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    l4 + 20
}

/// The TCP segment of `l3` (header and payload), if it is one.
pub(super) fn tcp_segment(l3: &[u8]) -> Option<&[u8]> {
    let seg = match l3.first()? >> 4 {
        4 => {
            let h = Ipv4View::new_checked(l3)?;
            (h.protocol() == TCP).then_some(())?;
            l3.get(h.header_len()..usize::from(h.total_len()))?
        }
        6 => {
            let h = Ipv6View::new_checked(l3)?;
            (l3[6] == TCP).then_some(())?;
            l3.get(40..40 + usize::from(h.payload_len()))?
        }
        _ => return None,
    };
    Some(seg).filter(|t| t.len() >= 20)
}
