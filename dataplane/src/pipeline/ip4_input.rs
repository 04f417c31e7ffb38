//! ip4-input: validates IPv4 headers (etherparse for the structure, our own
//! checksum check, which etherparse does not do), delivers what is addressed
//! to the appliance, and catches TTL expiry before the lookup.

use etherparse::Ipv4HeaderSlice;

use super::icmp::{self, v4};
use super::{nat, Router};
use crate::packet::{checksum, Next, Origin, Packet};
use crate::stats::DropReason;

pub(super) fn run(r: &mut Router, pkts: &mut [Packet]) {
    for p in pkts.iter_mut().filter(|p| p.meta.next == Next::Ip4Input) {
        p.meta.next = handle(r, p);
    }
}

fn handle(r: &mut Router, p: &mut Packet) -> Next {
    let l3 = p.l3();
    let Ok(h) = Ipv4HeaderSlice::from_slice(l3) else {
        return Next::Drop(DropReason::Ip4Malformed);
    };
    let hl = h.slice().len();
    let total = usize::from(h.total_len());
    if total < hl || total > l3.len() {
        return Next::Drop(DropReason::Ip4Malformed);
    }
    if !checksum::verify(h.slice()) {
        return Next::Drop(DropReason::Ip4BadChecksum);
    }
    let (src, dst, ttl) = (h.source_addr(), h.destination_addr(), h.ttl());
    let (proto, fragment) = (h.protocol().0, h.is_fragmenting_payload());
    // Drop Ethernet padding: the packet is what its total length says.
    p.buf.set_len(usize::from(p.meta.l3) + total);

    let ([s0, s1, ..], [d0, d1, ..]) = (src.octets(), dst.octets());
    // Martian sources: 0/8, 127/8, and 224/3 (multicast, class E, broadcast).
    if s0 == 0 || s0 == 127 || s0 >= 224 || r.ports.is_local_v4(src) {
        return Next::Drop(DropReason::BadSource);
    }
    if r.ports.is_local_v4(dst) {
        if let Some(next) = nat::input(r, p, (src, dst), ttl) {
            return next;
        }
        return deliver_local(p, proto, fragment, hl, &mut r.stats.local);
    }
    if d0 == 0 || d0 == 127 || d0 >= 224 || r.ports.is_subnet_broadcast(dst) {
        return Next::Drop(DropReason::NotRoutable);
    }
    if (d0, d1) == (169, 254) || (s0, s1) == (169, 254) {
        return Next::Drop(DropReason::LinkLocal);
    }
    if ttl <= 1 {
        icmp::error4(r, p, v4::TIME_EXCEEDED, 0, 0);
        return Next::Drop(DropReason::TtlExpired);
    }
    Next::IpLookup
}

/// Echo requests are answered; other ICMP is consumed; anything else
/// addressed to the appliance has no service behind it.
fn deliver_local(p: &mut Packet, proto: u8, fragment: bool, hl: usize, local: &mut u64) -> Next {
    if proto != 1 || fragment {
        return Next::Drop(DropReason::LocalUnsupported);
    }
    let msg = &p.l3()[hl..];
    if msg.len() < 8 || !checksum::verify(msg) {
        return Next::Drop(DropReason::IcmpMalformed);
    }
    if msg[0] != v4::ECHO_REQUEST {
        return Next::Local;
    }
    icmp::echo_reply4(p, hl);
    *local += 1;
    p.meta.origin = Origin::Generated;
    Next::IpLookup
}
