//! ip-rewrite: TTL / hop-limit decrement with an incremental checksum update,
//! then the MAC rewrite from the neighbour table. A packet whose next hop is
//! not resolved yet is held on that neighbour and a request goes out.

use super::Router;
use crate::neigh::Resolution;
use crate::packet::view::{set_eth_addrs, Ipv4View, Ipv6View};
use crate::packet::{MacAddr, Origin, Packet};
use crate::stats::DropReason;

pub(super) fn run(r: &mut Router, mut pkt: Packet) {
    if pkt.meta.origin == Origin::Received && !decrement(&mut pkt) {
        return r.drop_packet(pkt, DropReason::TtlExpired);
    }
    let Some(next_hop) = pkt.meta.neighbor else {
        return r.drop_packet(pkt, DropReason::NoRoute);
    };
    let port = pkt.meta.tx_port;
    // The common case by reference; only a miss hands the packet over.
    if let Some(mac) = r.neigh.lookup(port, next_hop, r.now) {
        return send(r, pkt, mac);
    }
    match r.neigh.resolve(port, next_hop, pkt, r.now) {
        Resolution::Ready(pkt, mac) => send(r, pkt, mac),
        Resolution::Held { probe } => {
            if probe {
                r.solicit(port, next_hop);
            }
        }
        Resolution::Refused(pkt, reason) => r.drop_packet(pkt, reason),
    }
}

/// Decrements TTL or hop limit; false when it would reach zero.
fn decrement(pkt: &mut Packet) -> bool {
    let l3 = pkt.l3_mut();
    match l3.first().map(|b| b >> 4) {
        Some(4) => Ipv4View::new_checked(l3)
            .and_then(|mut h| h.decrement_ttl())
            .is_some(),
        _ => Ipv6View::new_checked(l3)
            .and_then(|mut h| h.decrement_hop_limit())
            .is_some(),
    }
}

/// Writes the MACs (next hop's, egress port's) and queues the packet.
pub(super) fn send(r: &mut Router, mut pkt: Packet, mac: MacAddr) {
    let src = r
        .ports
        .get(pkt.meta.tx_port)
        .map(|p| p.mac)
        .unwrap_or_default();
    set_eth_addrs(pkt.buf.frame_mut(), mac, src);
    r.transmit(pkt);
}
