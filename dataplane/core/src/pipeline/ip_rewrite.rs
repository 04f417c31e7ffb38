//! ip-rewrite: TTL / hop-limit decrement with an incremental checksum update,
//! then the MAC rewrite from the neighbour table, in place over the burst.
//! A packet whose next hop is not resolved yet leaves as `Resolve` and is
//! handed to [`hold`], which queues it on that neighbour and sends a request.

use std::net::IpAddr;

use super::{solicit, transmit, Output, Tables};
use crate::neigh::{Entry, NeighTable, Resolution};
use crate::packet::view::{set_eth_addrs, Ipv4View, Ipv6View};
use crate::packet::{MacAddr, Next, Origin, Packet};
use crate::port::PortId;
use crate::stats::DropReason;
use crate::time::Time;

pub(super) fn run(t: &mut Tables, out: &mut Output, pkts: &mut [Packet]) {
    let mut memo = NeighborMemo::default();
    for p in pkts.iter_mut().filter(|p| p.meta.next == Next::IpRewrite) {
        p.meta.next = rewrite(t, out, p, &mut memo);
    }
}

/// The last neighbour looked up in a burst: port, address, answer (with
/// the time it holds until). Most packets of a burst go to the same next
/// hop (the default gateway), so the answer is kept for the rest of the
/// burst; the neighbour table does not change while a stage runs.
#[derive(Default)]
pub(super) struct NeighborMemo(Option<(PortId, IpAddr, Answer)>);

/// A neighbour's MAC and the time until which it holds, if resolved.
type Answer = Option<(MacAddr, Time)>;

impl NeighborMemo {
    /// The MAC of `addr` on `port`, if known and fresh.
    #[inline]
    pub(super) fn mac(
        &mut self,
        neigh: &NeighTable,
        port: PortId,
        addr: IpAddr,
        now: Time,
    ) -> Option<MacAddr> {
        self.entry(neigh, port, addr, now).map(|(mac, _)| mac)
    }

    /// [`NeighborMemo::mac`] and the time until which it holds.
    #[inline]
    pub(super) fn entry(
        &mut self,
        neigh: &NeighTable,
        port: PortId,
        addr: IpAddr,
        now: Time,
    ) -> Answer {
        match self.0 {
            Some((p, a, answer)) if p == port && a == addr => answer,
            _ => {
                let answer = neigh.lookup_until(port, addr, now);
                self.0 = Some((port, addr, answer));
                answer
            }
        }
    }
}

fn rewrite(t: &mut Tables, out: &mut Output, p: &mut Packet, memo: &mut NeighborMemo) -> Next {
    if p.meta.origin == Origin::Received && !decrement(p) {
        return Next::Drop(DropReason::TtlExpired);
    }
    let Some(next_hop) = p.meta.neighbor else {
        return Next::Drop(DropReason::NoRoute);
    };
    match memo.mac(&t.neigh, p.meta.tx_port, next_hop, out.now) {
        Some(mac) => {
            write_macs(t, p, mac);
            Next::Tx
        }
        None => Next::Resolve,
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

fn write_macs(t: &Tables, p: &mut Packet, mac: MacAddr) {
    let src = t
        .ports
        .get(p.meta.tx_port)
        .map(|p| p.mac)
        .unwrap_or_default();
    set_eth_addrs(p.buf.frame_mut(), mac, src);
}

/// Holds a packet until its next hop resolves; the first packet for a
/// neighbour sends the request.
pub(super) fn hold(t: &mut Tables, out: &mut Output, pkt: Packet) {
    let (port, Some(next_hop)) = (pkt.meta.tx_port, pkt.meta.neighbor) else {
        return out.drop_packet(pkt, DropReason::NoRoute);
    };
    match t.neigh.resolve(port, next_hop, pkt, out.now) {
        Resolution::Ready(pkt, mac) => send(t, out, pkt, mac),
        Resolution::Held { probe } => {
            if probe {
                solicit(t, out, port, next_hop);
            }
        }
        Resolution::Refused(pkt, reason) => out.drop_packet(pkt, reason),
    }
}

/// Neighbours learned and kept for [`Router::take_learned`] between two
/// calls; more in one burst (an ARP storm) are not passed on.
const LEARNED_LIMIT: usize = 256;

/// Who else hears of a neighbour answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Share {
    /// Kept for [`Router::take_learned`], whether or not this table took
    /// it: a peer may be the one waiting for it.
    WithPeers,
    /// Not passed on (it came from a peer).
    No,
}

/// Records that `addr` on `port` is at `mac` (see [`NeighTable::learn`] for
/// `entry`) and sends the packets that were waiting for it. True when
/// some were.
///
/// [`NeighTable::learn`]: crate::neigh::NeighTable::learn
pub(super) fn learn(
    t: &mut Tables,
    out: &mut Output,
    port: PortId,
    addr: IpAddr,
    mac: MacAddr,
    entry: Entry,
    share: Share,
) -> bool {
    let queue = t.neigh.learn(port, addr, mac, out.now, entry);
    if share == Share::WithPeers && out.learned.len() < LEARNED_LIMIT {
        out.learned.push((port, addr, mac));
    }
    let Some(queue) = queue else {
        return false;
    };
    for held in queue {
        send(t, out, held, mac);
    }
    true
}

/// Writes the MACs (next hop's, egress port's) and queues the packet.
pub(super) fn send(t: &Tables, out: &mut Output, mut pkt: Packet, mac: MacAddr) {
    write_macs(t, &mut pkt, mac);
    transmit(t, out, pkt);
}
