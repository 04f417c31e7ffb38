//! ip4-input: validates IPv4 headers (etherparse for the structure, our own
//! checksum check, which etherparse does not do), delivers what is addressed
//! to the appliance (what is addressed to a NAT external address goes to
//! nat44-in first), and catches TTL expiry before the lookup.
//!
//! [`parse`] and [`addressed`] are also ip4-fast's checks, so both paths
//! accept exactly the same packets.

use std::net::Ipv4Addr;

use etherparse::Ipv4HeaderSlice;

use super::icmp::{self, v4};
use super::{nat, Output, Tables};
use crate::packet::{checksum, Next, Origin, Packet};
use crate::port::PortTable;
use crate::stats::DropReason;

pub(super) fn run(t: &Tables, out: &mut Output, pkts: &mut [Packet]) {
    for p in pkts.iter_mut().filter(|p| p.meta.next == Next::Ip4Input) {
        p.meta.next = handle(t, out, p);
    }
}

/// The fields of a valid IPv4 header that the stages after it need.
pub(super) struct Header {
    /// Header length in bytes.
    pub hl: usize,
    /// Total length: the packet without Ethernet padding.
    pub total: usize,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Time to live.
    pub ttl: u8,
    /// Protocol number.
    pub proto: u8,
    /// Not the first fragment, or not the only one.
    pub fragment: bool,
}

/// Checks the IPv4 header at the start of `l3`: structure, lengths that fit
/// the frame, and the checksum.
#[inline]
pub(super) fn parse(l3: &[u8]) -> Result<Header, DropReason> {
    let h = Ipv4HeaderSlice::from_slice(l3).map_err(|_| DropReason::Ip4Malformed)?;
    let hl = h.slice().len();
    let total = usize::from(h.total_len());
    if total < hl || total > l3.len() {
        return Err(DropReason::Ip4Malformed);
    }
    if !checksum::verify(h.slice()) {
        return Err(DropReason::Ip4BadChecksum);
    }
    Ok(Header {
        hl,
        total,
        src: h.source_addr(),
        dst: h.destination_addr(),
        ttl: h.ttl(),
        proto: h.protocol().0,
        fragment: h.is_fragmenting_payload(),
    })
}

/// Where the addresses alone send an IPv4 packet.
pub(super) enum Addressed {
    /// To one of the appliance's addresses.
    Local,
    /// Elsewhere: to the lookup.
    Onward,
}

/// Checks a packet's addresses: martian or spoofed sources and destinations
/// that are never routed are refused; the rest are local or onward.
#[inline]
pub(super) fn addressed(
    ports: &PortTable,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> Result<Addressed, DropReason> {
    let ([s0, s1, ..], [d0, d1, ..]) = (src.octets(), dst.octets());
    // Martian sources: 0/8, 127/8, and 224/3 (multicast, class E, broadcast).
    if s0 == 0 || s0 == 127 || s0 >= 224 || ports.is_local_v4(src) {
        return Err(DropReason::BadSource);
    }
    if ports.is_local_v4(dst) {
        return Ok(Addressed::Local);
    }
    if d0 == 0 || d0 == 127 || d0 >= 224 || ports.is_subnet_broadcast(dst) {
        return Err(DropReason::NotRoutable);
    }
    if (d0, d1) == (169, 254) || (s0, s1) == (169, 254) {
        return Err(DropReason::LinkLocal);
    }
    Ok(Addressed::Onward)
}

fn handle(t: &Tables, out: &mut Output, p: &mut Packet) -> Next {
    let h = match parse(p.l3()) {
        Ok(h) => h,
        Err(reason) => return Next::Drop(reason),
    };
    // Drop Ethernet padding: the packet is what its total length says.
    p.buf.set_len(usize::from(p.meta.l3) + h.total);
    match addressed(&t.ports, h.src, h.dst) {
        // Broadcasts and multicasts are the host's (DHCP, routing
        // protocols), when it has a mirror here.
        Err(DropReason::NotRoutable)
            if (h.dst.is_broadcast()
                || h.dst.is_multicast()
                || t.ports.is_subnet_broadcast(h.dst))
                && t.mirrors.has(p.meta.iface) =>
        {
            Next::Punt
        }
        Err(reason) => Next::Drop(reason),
        Ok(Addressed::Local) if nat::is_external(t, h.dst) => Next::Nat44In,
        Ok(Addressed::Local) if super::service::is_hairpin_reply(t, p, out.now) => Next::IpLookup,
        Ok(Addressed::Local) => {
            let mirrored = t.mirrors.has(p.meta.iface);
            deliver_local(p, h.proto, h.fragment, h.hl, mirrored, &mut out.stats.local)
        }
        Ok(Addressed::Onward) if h.ttl <= 1 => {
            icmp::error4(out, p, v4::TIME_EXCEEDED, 0, 0);
            Next::Drop(DropReason::TtlExpired)
        }
        Ok(Addressed::Onward) => Next::IpLookup,
    }
}

/// Echo requests are answered. The rest goes to the host when the
/// interface has a mirror (`mirrored`); without one, other ICMP is
/// consumed and anything else has no service behind it.
pub(super) fn deliver_local(
    p: &mut Packet,
    proto: u8,
    fragment: bool,
    hl: usize,
    mirrored: bool,
    local: &mut u64,
) -> Next {
    if proto != 1 || fragment {
        return if mirrored {
            Next::Punt
        } else {
            Next::Drop(DropReason::LocalUnsupported)
        };
    }
    let msg = &p.l3()[hl..];
    if msg.len() < 8 || !checksum::verify(msg) {
        return Next::Drop(DropReason::IcmpMalformed);
    }
    if msg[0] != v4::ECHO_REQUEST {
        return if mirrored { Next::Punt } else { Next::Local };
    }
    icmp::echo_reply4(p, hl);
    *local += 1;
    p.meta.origin = Origin::Generated;
    Next::IpLookup
}
