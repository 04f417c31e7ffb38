//! ip-lookup: the FIB lookup (longest prefix, then metric, then flow hash
//! among ECMP members), the egress MTU check, and the source address of
//! generated errors.

use std::net::IpAddr;

use super::icmp::{self, v4, v6};
use super::{flow, Router};
use crate::packet::view::{Ipv4View, Ipv6View};
use crate::packet::{Next, Origin, Packet};
use crate::stats::DropReason;

pub(super) fn run(r: &mut Router, pkts: &mut [Packet]) {
    let fib = r.fib.clone();
    for p in pkts.iter_mut().filter(|p| p.meta.next == Next::IpLookup) {
        p.meta.next = handle(r, &fib, p);
    }
}

fn handle(r: &mut Router, fib: &crate::fib::Fib, p: &mut Packet) -> Next {
    let l3 = p.l3();
    let (dst, v6) = match l3.first().map(|b| b >> 4) {
        Some(4) => match Ipv4View::new_checked(l3) {
            Some(h) => (IpAddr::V4(h.dst()), false),
            None => return Next::Drop(DropReason::Ip4Malformed),
        },
        _ => match Ipv6View::new_checked(l3) {
            Some(h) => (IpAddr::V6(h.dst()), true),
            None => return Next::Drop(DropReason::Ip6Malformed),
        },
    };
    let Some((group_id, group)) = fib.lookup(dst) else {
        if v6 {
            icmp::error6(r, p, v6::DEST_UNREACH, 0, 0);
        } else {
            icmp::error4(r, p, v4::DEST_UNREACH, v4::CODE_NET_UNREACH, 0);
        }
        return Next::Drop(DropReason::NoRoute);
    };
    let adj = group.pick(if group.members.len() > 1 {
        flow::hash(l3)
    } else {
        0
    });
    let Some(port) = r.ports.get(adj.port) else {
        return Next::Drop(DropReason::PortDown);
    };
    if !port.up {
        return Next::Drop(DropReason::PortDown);
    }
    let mtu = usize::from(port.mtu);
    if p.meta.needs_source {
        let src = match dst {
            IpAddr::V4(d) => port.source_v4(d).map(IpAddr::V4),
            IpAddr::V6(d) => port.source_v6(d).map(IpAddr::V6),
        };
        let Some(src) = src else {
            return Next::Drop(DropReason::NoRoute);
        };
        icmp::finish_source(p, src);
    }
    let len = p.l3().len();
    if len > mtu {
        if p.meta.origin == Origin::Generated {
            return Next::Drop(DropReason::MtuExceeded);
        }
        if v6 {
            icmp::error6(r, p, v6::PACKET_TOO_BIG, 0, mtu as u32);
            return Next::Drop(DropReason::MtuExceeded);
        }
        let df = Ipv4View::new_checked(p.l3()).is_some_and(|h| h.dont_fragment());
        if !df {
            return Next::Drop(DropReason::FragmentationUnsupported);
        }
        icmp::error4(r, p, v4::DEST_UNREACH, v4::CODE_FRAG_NEEDED, mtu as u32);
        return Next::Drop(DropReason::MtuExceeded);
    }
    if let Some(h) = r.group_hits.get_mut(group_id as usize) {
        *h += 1;
    }
    p.meta.tx_port = adj.port;
    p.meta.neighbor = Some(adj.next_hop.unwrap_or(dst));
    Next::IpRewrite
}
