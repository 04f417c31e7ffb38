//! ip4-fast: plain IPv4 unicast from reception to the transmit queue in one
//! pass over the burst, ahead of the staged path.
//!
//! Each stage of the staged path walks the whole burst and hands every
//! packet on through its [`Meta`](crate::packet::Meta). The packet an edge
//! router sees most (unicast IPv4 between routed ports, TTL to spare, next
//! hop resolved, no NAT or switch on the way out) needs none of that.
//! ip4-fast does the same checks with the same functions (ip4-input's
//! [`parse`] and [`addressed`], one batched FIB lookup, the ECMP flow hash,
//! the MTU check, the neighbour answer), then the TTL and MAC rewrite.
//!
//! What a packet needs after the lookup (egress port, MTU, both MACs)
//! depends, for a group of one gateway, on the group alone, so it is kept
//! per group ([`Rewrite`], VPP's adjacency rewrite) until the neighbour
//! table, a link, the FIB, the switches or NAT change, or the neighbour's
//! answer runs out. The checks themselves are then most of what a packet
//! costs (`benches/pipeline.rs` compares the two paths; the README has the
//! figures).
//!
//! It takes a packet all the way or leaves it as it was, at eth-input.
//! Everything else goes through the stages, which answer errors, translate,
//! switch, hold and count drop reasons. ip4-fast has no behaviour of its
//! own: a test runs the same traffic with it on and off and compares every
//! frame and counter.

use std::net::{IpAddr, Ipv4Addr};

use super::ip4_input::{addressed, parse, Addressed};
use super::ip_lookup::egress_len;
use super::ip_rewrite::NeighborMemo;
use super::{flow, nat, FastPath, Output, Scratch, Tables};
use crate::packet::view::{set_eth_addrs, Ipv4View};
use crate::packet::{MacAddr, Next, Packet, ETHERTYPE_IPV4, ETH_HLEN};
use crate::port::PortId;
use crate::time::Time;

/// Forwards the burst's plain IPv4 unicast packets; the rest stay at
/// eth-input.
pub(super) fn run(
    t: &Tables,
    out: &mut Output,
    s: &mut Scratch,
    fast: &mut FastPath,
    pkts: &mut [Packet],
) {
    let (at, dsts, found) = (&mut s.fast_at, &mut s.lookup_dsts, &mut s.lookup_found);
    at.clear();
    dsts.clear();
    for (i, p) in pkts.iter().enumerate() {
        if p.meta.next != Next::EthInput {
            continue;
        }
        if let Some((dst, total)) = admit(t, p) {
            at.push((i as u32, total));
            dsts.push(dst);
        }
    }
    found.clear();
    found.resize(dsts.len(), None);
    t.fib.lookup_v4_batch(dsts, found);
    let mut memo = NeighborMemo::default();
    for ((&(i, total), &dst), &id) in at.iter().zip(dsts.iter()).zip(found.iter()) {
        if let (Some(p), Some(id)) = (pkts.get_mut(i as usize), id) {
            forward(t, out, fast, p, (dst, total), id, &mut memo);
        }
    }
}

/// The destination and total length of a packet ip4-fast may take: an
/// untagged IPv4 frame to the receiving interface's own MAC, on an
/// interface without NAT, with a valid header, TTL to spare and addresses
/// that route onward, neither to a service nor from a backend.
#[inline]
fn admit(t: &Tables, p: &Packet) -> Option<(Ipv4Addr, u16)> {
    let iface = p.meta.iface;
    let port = t.ports.get(iface)?;
    let frame = p.buf.frame();
    let (dst_mac, src_mac) = (
        MacAddr::from_slice(frame)?,
        MacAddr::from_slice(&frame[6..])?,
    );
    if dst_mac != port.mac
        || src_mac.is_multicast()
        || frame.get(12..ETH_HLEN)? != ETHERTYPE_IPV4.to_be_bytes()
        || nat::is_outside(t, iface)
    {
        return None;
    }
    let h = parse(&frame[ETH_HLEN..]).ok()?;
    if h.ttl <= 1 {
        return None;
    }
    let total = u16::try_from(h.total).ok()?;
    match addressed(&t.ports, h.src, h.dst) {
        // Service traffic takes the stages (svc-in, svc-out).
        Ok(Addressed::Onward) if !t.svc.is_empty() && t.svc.concerns(h.src, h.dst) => None,
        Ok(Addressed::Onward) => Some((h.dst, total)),
        _ => None,
    }
}

/// Sends an admitted packet (its destination and total length, as
/// [`admit`] found them) to the member of group `id` its flow picks, if
/// that port is up and plain (no switch, no NAT), the packet fits its MTU
/// and its neighbour is resolved.
#[inline]
fn forward(
    t: &Tables,
    out: &mut Output,
    fast: &mut FastPath,
    p: &mut Packet,
    (dst, total): (Ipv4Addr, u16),
    id: u32,
    memo: &mut NeighborMemo,
) {
    // The kept rewrite is used where it lies: copying it out costs more
    // than the rest of its use.
    let made = (t.neigh.version(), fast.topology);
    let fresh;
    let w = match fast.rewrites.get(id as usize) {
        Some(w) if w.made == made && out.now < w.until => w,
        _ => match rewrite(t, out.now, fast, p, dst, id, memo) {
            Some(w) => {
                fresh = w;
                &fresh
            }
            None => return,
        },
    };
    // ip4-input's padding trim, which the staged path would do as well.
    p.buf.set_len(ETH_HLEN + usize::from(total));
    p.meta.l3 = ETH_HLEN as u16;
    if egress_len(p).is_none_or(|len| len > usize::from(w.mtu)) {
        return;
    }
    // Admitted with TTL above 1, so the decrement cannot fail.
    let decremented = Ipv4View::new_checked(p.l3_mut()).and_then(|mut h| h.decrement_ttl());
    debug_assert!(decremented.is_some());
    set_eth_addrs(p.buf.frame_mut(), w.dst_mac, w.src_mac);
    p.meta.tx_port = w.port;
    p.meta.neighbor = Some(w.next_hop);
    p.meta.next = Next::Tx;
    out.stats.fast_path += 1;
    if let Some(h) = out.group_hits.get_mut(id as usize) {
        *h += 1;
    }
}

/// How a packet leaves by one adjacency: port, MTU, MAC rewrite. Kept per
/// next-hop group when it depends on the group alone (one member, through
/// a gateway), like VPP's rewrite strings on its adjacencies.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rewrite {
    /// The neighbour-table version and router topology it was made under
    /// (the topology count starts at 1, so the default's 0 is never
    /// current).
    made: (u64, u64),
    /// When the neighbour's answer runs out.
    until: Time,
    port: PortId,
    mtu: u16,
    dst_mac: MacAddr,
    src_mac: MacAddr,
    next_hop: IpAddr,
}

impl Default for Rewrite {
    fn default() -> Self {
        Rewrite {
            made: (u64::MAX, 0),
            until: Time(0),
            port: 0,
            mtu: 0,
            dst_mac: MacAddr::ZERO,
            src_mac: MacAddr::ZERO,
            next_hop: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }
}

/// The rewrite for a packet of group `id` when no current one is kept:
/// worked out from the group, the port and the neighbour table, and kept
/// when it depends on the group alone. A kept one stops being current
/// when something it depends on changed since `made` (neighbours, links,
/// FIB, switches, NAT) or its neighbour answer runs out.
#[inline]
fn rewrite(
    t: &Tables,
    now: Time,
    fast: &mut FastPath,
    p: &Packet,
    dst: Ipv4Addr,
    id: u32,
    memo: &mut NeighborMemo,
) -> Option<Rewrite> {
    let made = (t.neigh.version(), fast.topology);
    let group = t.fib.group(id)?;
    let adj = flow::pick(group, p.buf.frame().get(ETH_HLEN..)?);
    let port = t.ports.get(adj.port)?;
    if !port.up || t.l2.router_of(adj.port).is_some() || nat::is_outside(t, adj.port) {
        return None;
    }
    let next_hop = adj.next_hop.unwrap_or(IpAddr::V4(dst));
    let (dst_mac, until) = memo.entry(&t.neigh, adj.port, next_hop, now)?;
    let w = Rewrite {
        made,
        until,
        port: adj.port,
        mtu: port.mtu,
        dst_mac,
        src_mac: port.mac,
        next_hop,
    };
    if group.members.len() == 1 && adj.next_hop.is_some() {
        if let Some(kept) = fast.rewrites.get_mut(id as usize) {
            *kept = w;
        }
    }
    Some(w)
}
