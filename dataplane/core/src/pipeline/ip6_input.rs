//! ip6-input: validates IPv6 headers, handles neighbour discovery and echo
//! for the appliance's addresses, and catches hop-limit expiry.
//!
//! NDP messages are accepted only with hop limit 255 (RFC 4861 §7.1), so they
//! cannot come from off-link. Multicast the appliance listens to: all-nodes,
//! all-routers and the solicited-node groups of the receiving port.

use etherparse::Ipv6HeaderSlice;
use std::net::{IpAddr, Ipv6Addr};

use super::icmp::{self, v6};
use super::ip_rewrite::{self, Share};
use super::nd::{self, NA, ND_HOP_LIMIT, NS};
use super::{transmit, Output, Tables};
use crate::neigh::Entry;
use crate::packet::{MacAddr, Next, Origin, Packet};
use crate::stats::DropReason;

const NH_ICMPV6: u8 = 58;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

pub(super) fn run(t: &mut Tables, out: &mut Output, pkts: &mut [Packet]) {
    for p in pkts.iter_mut().filter(|p| p.meta.next == Next::Ip6Input) {
        p.meta.next = handle(t, out, p);
    }
}

fn handle(t: &mut Tables, out: &mut Output, p: &mut Packet) -> Next {
    let l3 = p.l3();
    let Ok(h) = Ipv6HeaderSlice::from_slice(l3) else {
        return Next::Drop(DropReason::Ip6Malformed);
    };
    let total = 40 + usize::from(h.payload_length());
    if total > l3.len() {
        return Next::Drop(DropReason::Ip6Malformed);
    }
    let (src, dst, hop) = (h.source_addr(), h.destination_addr(), h.hop_limit());
    p.buf.set_len(usize::from(p.meta.l3) + total);

    if listens_to(t, p.meta.iface, dst) {
        if super::service::is_hairpin_reply(t, p, out.now) {
            return Next::IpLookup;
        }
        return deliver_local(t, out, p, src, dst, hop);
    }
    // Solicitations for a load balancer's address on its port are the
    // appliance's to answer, whether to its group or (unreachability
    // detection) to the address itself.
    if !t.svc.is_empty()
        && (t.svc.announces_group(p.meta.iface, dst)
            || (is_solicitation(p.l3()) && t.svc.announces(p.meta.iface, IpAddr::V6(dst))))
    {
        return deliver_local(t, out, p, src, dst, hop);
    }
    // Link-local multicast and link-local unicast that are not edgefwd's
    // are the host's (its link-local address, its routing protocols).
    if t.mirrors.has(p.meta.iface)
        && !src.is_multicast()
        && ((dst.is_multicast() && dst.segments()[0] & 0xff0f == 0xff02)
            || dst.is_unicast_link_local())
    {
        return Next::Punt;
    }
    if src.is_multicast()
        || src.is_unspecified()
        || src.is_loopback()
        || t.ports.is_local(IpAddr::V6(src))
    {
        return Next::Drop(DropReason::BadSource);
    }
    if dst.is_multicast() || dst.is_unspecified() || dst.is_loopback() {
        return Next::Drop(DropReason::NotRoutable);
    }
    if dst.is_unicast_link_local() || src.is_unicast_link_local() {
        return Next::Drop(DropReason::LinkLocal);
    }
    if hop <= 1 {
        icmp::error6(out, p, v6::TIME_EXCEEDED, 0, 0);
        return Next::Drop(DropReason::TtlExpired);
    }
    Next::IpLookup
}

/// True when `l3` is a neighbour solicitation (ICMPv6 right after the
/// header).
fn is_solicitation(l3: &[u8]) -> bool {
    l3.get(6) == Some(&NH_ICMPV6) && l3.get(40) == Some(&NS)
}

/// Local delivery of `p` (its header already checked), as ip6-input
/// delivers: what svc-in gives back when a packet it was handed is the
/// appliance's after all.
pub(super) fn deliver_to_appliance(t: &mut Tables, out: &mut Output, p: &mut Packet) -> Next {
    match Ipv6HeaderSlice::from_slice(p.l3()) {
        Ok(h) => {
            let (src, dst, hop) = (h.source_addr(), h.destination_addr(), h.hop_limit());
            deliver_local(t, out, p, src, dst, hop)
        }
        Err(_) => Next::Drop(DropReason::Ip6Malformed),
    }
}

fn listens_to(t: &Tables, port: u16, dst: Ipv6Addr) -> bool {
    if !dst.is_multicast() {
        return t.ports.is_local(IpAddr::V6(dst));
    }
    dst == ALL_NODES
        || dst == ALL_ROUTERS
        || t.ports
            .get(port)
            .is_some_and(|p| p.v6.iter().any(|n| nd::solicited_node(n.addr()) == dst))
}

fn deliver_local(
    t: &mut Tables,
    out: &mut Output,
    p: &mut Packet,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop: u8,
) -> Next {
    let mirrored = t.mirrors.has(p.meta.iface);
    let unsupported = if mirrored {
        Next::Punt
    } else {
        Next::Drop(DropReason::LocalUnsupported)
    };
    let Some((proto, at)) = icmp::upper_layer6(p.l3()) else {
        return unsupported;
    };
    if proto != NH_ICMPV6 {
        return unsupported;
    }
    let msg = &p.l3()[at..];
    if msg.len() < 8 || icmp::checksum6(src, dst, msg) != 0 {
        return Next::Drop(DropReason::IcmpMalformed);
    }
    match msg[0] {
        NS | NA if hop != ND_HOP_LIMIT || msg.len() < 24 => Next::Drop(DropReason::IcmpMalformed),
        // A solicitation for another target (the host's link-local
        // address shares its solicited-node group), and advertisements
        // once learned from (answers to the host's own solicitations).
        NS => match solicitation(t, out, p, src, at) {
            Next::Drop(DropReason::ArpNotForUs) if mirrored => Next::Punt,
            next => next,
        },
        NA => match advertisement(t, out, p, at) {
            Next::Local if mirrored => Next::Punt,
            next => next,
        },
        v6::ECHO_REQUEST if !dst.is_multicast() => {
            icmp::echo_reply6(p, at);
            out.stats.local += 1;
            p.meta.origin = Origin::Generated;
            Next::IpLookup
        }
        _ if mirrored => Next::Punt,
        _ => Next::Local,
    }
}

fn target(msg: &[u8]) -> Ipv6Addr {
    let t: [u8; 16] = msg[8..24].try_into().unwrap_or([0; 16]);
    Ipv6Addr::from(t)
}

fn solicitation(
    t: &mut Tables,
    out: &mut Output,
    p: &mut Packet,
    src: Ipv6Addr,
    at: usize,
) -> Next {
    let port_id = p.meta.iface;
    let msg = &p.l3()[at..];
    let target = target(msg);
    let Some(port) = t.ports.get(port_id) else {
        return Next::Drop(DropReason::PortDown);
    };
    if !port.has_address(IpAddr::V6(target)) && !t.svc.announces(port_id, IpAddr::V6(target)) {
        return Next::Drop(DropReason::ArpNotForUs);
    }
    if src.is_unspecified() {
        // Duplicate address detection by another node: nothing to learn.
        return Next::Local;
    }
    let eth_src = MacAddr::from_slice(&p.buf.frame()[6..12]).unwrap_or_default();
    let mac = nd::link_addr_option(&msg[24..], nd::OPT_SOURCE_LL).unwrap_or(eth_src);
    let mut buf = out.pool.get();
    nd::build_advert(&mut buf, port, target, src, mac);
    ip_rewrite::learn(
        t,
        out,
        port_id,
        IpAddr::V6(src),
        mac,
        Entry::Create,
        Share::WithPeers,
    );
    let mut meta = p.meta;
    meta.origin = Origin::Generated;
    meta.tx_port = port_id;
    transmit(t, out, Packet { buf, meta });
    Next::Local
}

fn advertisement(t: &mut Tables, out: &mut Output, p: &mut Packet, at: usize) -> Next {
    let msg = &p.l3()[at..];
    let target = target(msg);
    let eth_src = MacAddr::from_slice(&p.buf.frame()[6..12]).unwrap_or_default();
    let mac = nd::link_addr_option(&msg[24..], nd::OPT_TARGET_LL).unwrap_or(eth_src);
    ip_rewrite::learn(
        t,
        out,
        p.meta.iface,
        IpAddr::V6(target),
        mac,
        Entry::RefreshOnly,
        Share::WithPeers,
    );
    Next::Local
}
