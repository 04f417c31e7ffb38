//! ip-lookup: the FIB lookup (longest prefix, then metric, then flow hash
//! among ECMP members), the egress MTU check, and the source address of
//! generated errors.

use std::net::{IpAddr, Ipv4Addr};

use super::icmp::{self, v4, v6};
use super::{flow, Output, Scratch, Tables};
use crate::packet::view::{Ipv4View, Ipv6View};
use crate::packet::{Next, Origin, Packet};
use crate::stats::DropReason;

pub(super) fn run(t: &Tables, out: &mut Output, s: &mut Scratch, pkts: &mut [Packet]) {
    let fib = &*t.fib;
    // IPv4 destinations are looked up for the whole burst first, in one
    // tight loop (Lpm::lookup_v4_batch); the rest of the stage then works
    // per packet with the answers.
    let (dsts, found) = (&mut s.lookup_dsts, &mut s.lookup_found);
    dsts.clear();
    dsts.extend(
        pkts.iter()
            .filter(|p| p.meta.next == Next::IpLookup)
            .filter_map(|p| Ipv4View::new_checked(p.l3()).map(|h| h.dst())),
    );
    found.clear();
    found.resize(dsts.len(), None);
    fib.lookup_v4_batch(dsts, found);
    let mut answers = dsts.iter().copied().zip(found.iter().copied());
    for p in pkts.iter_mut().filter(|p| p.meta.next == Next::IpLookup) {
        // The same test as the gathering pass, so answers stay in step.
        let pre = Ipv4View::new_checked(p.l3()).and_then(|_| answers.next());
        p.meta.next = handle(t, out, fib, p, pre);
    }
}

/// `pre`: for an IPv4 packet, its destination and the batch lookup's
/// answer; `None` otherwise (IPv6 is looked up here).
fn handle(
    t: &Tables,
    out: &mut Output,
    fib: &crate::fib::Fib,
    p: &mut Packet,
    pre: Option<(Ipv4Addr, Option<u32>)>,
) -> Next {
    let l3 = p.l3();
    let (dst, v6, found) = match pre {
        Some((d, id)) => (
            IpAddr::V4(d),
            false,
            id.and_then(|id| fib.group(id).map(|g| (id, g))),
        ),
        None if l3.first().map(|b| b >> 4) == Some(4) => {
            return Next::Drop(DropReason::Ip4Malformed)
        }
        None => match Ipv6View::new_checked(l3) {
            Some(h) => (IpAddr::V6(h.dst()), true, fib.lookup(IpAddr::V6(h.dst()))),
            None => return Next::Drop(DropReason::Ip6Malformed),
        },
    };
    let Some((group_id, group)) = found else {
        if v6 {
            icmp::error6(out, p, v6::DEST_UNREACH, 0, 0);
        } else {
            icmp::error4(out, p, v4::DEST_UNREACH, v4::CODE_NET_UNREACH, 0);
        }
        return Next::Drop(DropReason::NoRoute);
    };
    let adj = flow::pick(group, l3);
    let Some(port) = t.ports.get(adj.port) else {
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
    let Some(len) = egress_len(p) else {
        return Next::Drop(DropReason::OffloadInvalid);
    };
    if len > mtu {
        if p.meta.origin == Origin::Generated {
            return Next::Drop(DropReason::MtuExceeded);
        }
        if v6 {
            icmp::error6(out, p, v6::PACKET_TOO_BIG, 0, mtu as u32);
            return Next::Drop(DropReason::MtuExceeded);
        }
        let df = Ipv4View::new_checked(p.l3()).is_some_and(|h| h.dont_fragment());
        if !df {
            return Next::Drop(DropReason::FragmentationUnsupported);
        }
        icmp::error4(out, p, v4::DEST_UNREACH, v4::CODE_FRAG_NEEDED, mtu as u32);
        return Next::Drop(DropReason::MtuExceeded);
    }
    if let Some(h) = out.group_hits.get_mut(group_id as usize) {
        *h += 1;
    }
    p.meta.tx_port = adj.port;
    p.meta.neighbor = Some(adj.next_hop.unwrap_or(dst));
    Next::IpRewrite
}

/// The L3 length that must fit the egress MTU: the packet's own, or for a
/// super-packet (TCP segmentation offload), which leaves as segments, the
/// largest segment's. `None` when a super-packet's headers do not add up.
#[inline]
pub(super) fn egress_len(p: &Packet) -> Option<usize> {
    if p.meta.offload.is_gso() {
        p.meta
            .offload
            .segment_l3_len(p.buf.frame(), usize::from(p.meta.l3))
    } else {
        Some(p.l3().len())
    }
}
