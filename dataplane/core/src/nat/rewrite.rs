//! Reading the translated fields of an IPv4 packet and rewriting them in
//! place with incremental checksum updates (RFC 1624).
//!
//! A transport checksum the device left partial (checksum offload: the
//! field holds the folded pseudo-header sum, not yet complemented) changes
//! with the addresses only, never with the ports, which the final sum will
//! cover; the kernel's `inet_proto_csum_replace4` does the same. An ICMP
//! error's embedded packet is rewritten with its own checksums, and the
//! outer ICMP checksum is then summed again over the whole message, which
//! the RFC 5508 quote limit keeps short.

use std::net::Ipv4Addr;

use super::Proto;
use crate::packet::checksum;
use crate::packet::icmp_types::v4 as icmp;
use crate::packet::view::Ipv4View;

/// What NAT sees of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// TCP, UDP, or an ICMP echo (its id as both ports).
    Flow {
        proto: Proto,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        /// TCP flags (0 for others).
        flags: u8,
        /// ICMP: true for an echo request, false for a reply.
        request: bool,
    },
    /// An ICMP error quoting a packet of ours.
    Error {
        /// The quoted packet's protocol.
        proto: Proto,
        /// Its source and destination.
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        /// Offset of the quoted IP header in the packet.
        inner: usize,
    },
    /// A fragment (offset or more-fragments set).
    Fragment,
    /// Something NAT does not translate (another protocol, other ICMP).
    Other,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Ports (or the echo id) of the transport header at `l4`; `None` when too
/// short (8 bytes are needed, as much as an ICMP error must quote).
fn ports(proto: Proto, b: &[u8], l4: usize) -> Option<(u16, u16)> {
    match proto {
        Proto::Tcp | Proto::Udp => Some((be16(b, l4)?, be16(b, l4 + 2)?)),
        Proto::Icmp => be16(b, l4 + 4).map(|id| (id, id)),
    }
}

/// Parses the IPv4 packet `l3` (header already validated by ip4-input).
pub(crate) fn parse(l3: &[u8]) -> Parsed {
    let Some(h) = Ipv4View::new_checked(l3) else {
        return Parsed::Other;
    };
    if h.frag_offset() != 0 || h.more_fragments() {
        return Parsed::Fragment;
    }
    let (hl, src, dst) = (h.header_len(), h.src(), h.dst());
    let Some(proto) = Proto::from_ip(h.protocol()) else {
        return Parsed::Other;
    };
    let flags = match proto {
        Proto::Tcp => l3.get(hl + 13).copied().unwrap_or(0),
        _ => 0,
    };
    if proto == Proto::Icmp {
        match l3.get(hl) {
            Some(&(icmp::ECHO_REQUEST | icmp::ECHO_REPLY)) => {}
            Some(&(icmp::DEST_UNREACH | icmp::TIME_EXCEEDED | icmp::PARAM_PROBLEM)) => {
                return parse_error(l3, hl + 8)
            }
            _ => return Parsed::Other,
        }
    }
    match ports(proto, l3, hl) {
        Some((sport, dport)) => Parsed::Flow {
            proto,
            src: (src, sport),
            dst: (dst, dport),
            flags,
            request: l3.get(hl) == Some(&icmp::ECHO_REQUEST),
        },
        None => Parsed::Other,
    }
}

fn parse_error(l3: &[u8], inner: usize) -> Parsed {
    let Some(q) = l3.get(inner..) else {
        return Parsed::Other;
    };
    let Some(&vihl) = q.first() else {
        return Parsed::Other;
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 || q.len() < ihl {
        return Parsed::Other;
    }
    let (Some(proto), Some(sa), Some(da)) = (
        Proto::from_ip(q[9]),
        q.get(12..16).and_then(|b| <[u8; 4]>::try_from(b).ok()),
        q.get(16..20).and_then(|b| <[u8; 4]>::try_from(b).ok()),
    ) else {
        return Parsed::Other;
    };
    // An error about an ICMP error is never translated (nor sent, RFC 1122).
    if proto == Proto::Icmp && !matches!(q.get(ihl), Some(&(icmp::ECHO_REQUEST | icmp::ECHO_REPLY)))
    {
        return Parsed::Other;
    }
    match ports(proto, q, ihl) {
        Some((sport, dport)) => Parsed::Error {
            proto,
            src: (Ipv4Addr::from(sa), sport),
            dst: (Ipv4Addr::from(da), dport),
            inner,
        },
        None => Parsed::Other,
    }
}

/// Which endpoint of a packet to rewrite.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Src,
    Dst,
}

/// What a packet's transport checksum field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sum {
    /// The checksum of the whole segment.
    Complete,
    /// A partial one (the pseudo-header's) left for the device to finish
    /// (checksum offload).
    Partial,
}

impl Sum {
    /// What a packet with offload state `off` carries.
    pub(crate) fn of(off: &crate::packet::Offload) -> Sum {
        if off.needs_csum() {
            Sum::Partial
        } else {
            Sum::Complete
        }
    }
}

/// Rewrites one endpoint (address and port, or echo id) of the packet at
/// `ip` in `b`, both checksums included.
pub(crate) fn set_endpoint(b: &mut [u8], ip: usize, end: End, to: (Ipv4Addr, u16), sum: Sum) {
    let Some(mut h) = Ipv4View::new_checked(&mut b[ip..]) else {
        return;
    };
    let (hl, proto) = (h.header_len(), h.protocol());
    let end_at = ip + usize::from(h.total_len());
    let old = match end {
        End::Src => h.src(),
        End::Dst => h.dst(),
    };
    match end {
        End::Src => h.set_src(to.0),
        End::Dst => h.set_dst(to.0),
    }
    let Some(proto) = Proto::from_ip(proto) else {
        return;
    };
    let l4 = ip + hl;
    let (port_at, csum_at, pseudo) = match (proto, end) {
        (Proto::Tcp, End::Src) => (l4, l4 + 16, true),
        (Proto::Tcp, End::Dst) => (l4 + 2, l4 + 16, true),
        (Proto::Udp, End::Src) => (l4, l4 + 6, true),
        (Proto::Udp, End::Dst) => (l4 + 2, l4 + 6, true),
        (Proto::Icmp, _) => (l4 + 4, l4 + 2, false),
    };
    let Some(old_port) = be16(b, port_at) else {
        return;
    };
    b[port_at..port_at + 2].copy_from_slice(&to.1.to_be_bytes());
    // A quoted transport header may be cut before its checksum; a UDP
    // checksum of 0 means none.
    let Some(c) = be16(b, csum_at) else {
        return;
    };
    if proto == Proto::Udp && c == 0 {
        return;
    }
    let mut c = c;
    if sum == Sum::Partial {
        if pseudo {
            c = !checksum::update32(!c, u32::from(old), u32::from(to.0));
        }
    } else {
        if pseudo {
            c = checksum::update32(c, u32::from(old), u32::from(to.0));
        }
        c = checksum::update16(c, old_port, to.1);
        if proto == Proto::Udp && c == 0 {
            c = 0xffff;
        }
        if proto == Proto::Icmp {
            let msg = b.get(l4..end_at.min(b.len())).unwrap_or(&[]);
            c = checksum::settle_icmp4(c, msg);
        }
    }
    b[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Whether the ICMP message in `l3` carries a valid checksum. An error is
/// checked before its quote is rewritten: summing a damaged message again
/// would pass the damage on as valid.
pub(crate) fn icmp_checksum_ok(l3: &[u8]) -> bool {
    Ipv4View::new_checked(l3).is_some_and(|h| {
        let total = usize::from(h.total_len()).min(l3.len());
        l3.get(h.header_len()..total)
            .is_some_and(|msg| msg.len() >= 8 && checksum::verify(msg))
    })
}

/// Translates the ICMP error `l3` (its checksum already checked): the outer
/// header's `outer` address when given, the quoted packet's (at `inner`)
/// `end` endpoint to `to`, then the message's checksum summed again.
pub(crate) fn translate_error(
    l3: &mut [u8],
    outer: Option<(End, Ipv4Addr)>,
    inner: usize,
    end: End,
    to: (Ipv4Addr, u16),
) {
    if let (Some((which, addr)), Some(mut h)) = (outer, Ipv4View::new_checked(&mut *l3)) {
        match which {
            End::Src => h.set_src(addr),
            End::Dst => h.set_dst(addr),
        }
    }
    set_endpoint(l3, inner, end, to, Sum::Complete);
    refill_icmp_checksum(l3);
}

/// Sums an ICMP message's checksum again after its quote changed.
fn refill_icmp_checksum(l3: &mut [u8]) {
    let Some(h) = Ipv4View::new_checked(&*l3) else {
        return;
    };
    let (hl, total) = (h.header_len(), usize::from(h.total_len()).min(l3.len()));
    if total < hl + 4 {
        return;
    }
    let msg = &mut l3[hl..total];
    msg[2..4].fill(0);
    let c = checksum::checksum(msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
}
