//! l2: frames on switch member ports, before eth-input; and the router's
//! output on a switch's router port, at transmit.
//!
//! Input learns the source (port security first), then sends the frame up
//! to the router (addressed to the router port's MAC), across to one member
//! (a learned unicast), or everywhere (broadcast, multicast, unknown
//! unicast). A broadcast also goes up, so ARP and NDP reach the router.
//! Flooding copies the frame once per extra member; the copies are
//! `Origin::Flooded`, so the received frame itself still ends exactly once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{transmit, Output, Tables};
use crate::l2::{L2Dest, Learning, SwitchId};
use crate::packet::{
    MacAddr, Next, Origin, Packet, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN,
    ETH_HLEN,
};
use crate::port::PortId;
use crate::stats::DropReason;
use crate::time::Time;

/// Most addresses a router keeps to tell the other workers between two
/// takes; beyond it they hear of an address at its next refresh (and flood
/// to it meanwhile).
const MACS_TOLD: usize = 1024;

pub(super) fn run(t: &mut Tables, out: &mut Output, pkts: &mut [Packet]) {
    if t.l2.is_empty() {
        return;
    }
    for p in pkts.iter_mut().filter(|p| p.meta.next == Next::EthInput) {
        if let Some(sw) = t.l2.member_of(p.meta.rx_port) {
            p.meta.next = input(t, out, sw, p);
        }
    }
    send_copies(t, out);
}

fn input(t: &mut Tables, out: &mut Output, sw: SwitchId, p: &mut Packet) -> Next {
    let frame = p.buf.frame();
    let (Some(dst), Some(src), true) = (
        MacAddr::from_slice(frame),
        frame.get(6..).and_then(MacAddr::from_slice),
        frame.len() >= ETH_HLEN,
    ) else {
        return Next::Drop(DropReason::Runt);
    };
    if src.is_multicast() {
        return Next::Drop(DropReason::BadSource);
    }
    let rx = p.meta.rx_port;
    if let Some(sec) = t.l2.security(rx) {
        if !sec.allows_mac(src) || source_addr(frame).is_some_and(|a| !sec.allows_addr(a)) {
            return Next::Drop(DropReason::SpoofedSource);
        }
    }
    match t.l2.learn(sw, src, rx, out.now) {
        Err(_) => return Next::Drop(DropReason::MacTableFull),
        Ok(true) if t.workers > 1 && out.macs.len() < MACS_TOLD => {
            out.macs.push(Learning {
                switch: sw,
                mac: src,
                port: rx,
            });
        }
        Ok(_) => {}
    }
    let router_port = t.l2.router_port(sw);
    if is_router_mac(t, sw, dst) {
        p.meta.iface = router_port;
        return Next::EthInput;
    }
    match t.l2.lookup(sw, dst, out.now) {
        L2Dest::Port(port) if port == rx => Next::Drop(DropReason::L2NoDestination),
        L2Dest::Port(port) => {
            p.meta.tx_port = port;
            p.meta.switched = true;
            Next::Tx
        }
        L2Dest::Flood if dst.is_multicast() => {
            copy_to_members(t, out, sw, p, rx, Original::Kept);
            p.meta.iface = router_port;
            Next::EthInput
        }
        L2Dest::Flood => match copy_to_members(t, out, sw, p, rx, Original::ToFirst) {
            Some(first) => {
                p.meta.tx_port = first;
                p.meta.switched = true;
                Next::Tx
            }
            None => Next::Drop(DropReason::L2NoDestination),
        },
    }
}

fn is_router_mac(t: &Tables, sw: SwitchId, mac: MacAddr) -> bool {
    t.ports.get(t.l2.router_port(sw)).map(|i| i.mac) == Some(mac)
}

/// The member a frame received on member `rx` goes across to, as [`input`]
/// decides it, when that is known from its destination alone: a unicast
/// address learned on another member (not the router's). `None` for
/// anything else (a frame for the router, flooded, or not on a switch).
/// Learning within the burst (by this frame or an earlier one) may still
/// move the address to another member, or to `rx` (the frame is then
/// dropped); it never makes the frame flood or go up to the router.
pub(super) fn unicast_member(t: &Tables, rx: PortId, frame: &[u8], now: Time) -> Option<PortId> {
    let sw = t.l2.member_of(rx)?;
    let dst = MacAddr::from_slice(frame)?;
    if dst.is_multicast() || is_router_mac(t, sw, dst) {
        return None;
    }
    match t.l2.lookup(sw, dst, now) {
        L2Dest::Port(port) if port != rx => Some(port),
        _ => None,
    }
}

/// Sends the router's output on router port of `sw` down the switch: to the
/// member that has the destination MAC, else to every member.
pub(super) fn output(t: &Tables, out: &mut Output, sw: SwitchId, mut pkt: Packet) {
    let dst = MacAddr::from_slice(pkt.buf.frame()).unwrap_or(MacAddr::BROADCAST);
    pkt.meta.switched = true;
    match t.l2.lookup(sw, dst, out.now) {
        L2Dest::Port(port) => {
            pkt.meta.tx_port = port;
            transmit(t, out, pkt);
        }
        L2Dest::Flood => {
            // The router is not a member: no port to leave out.
            match copy_to_members(t, out, sw, &pkt, PortId::MAX, Original::ToFirst) {
                Some(first) => {
                    pkt.meta.tx_port = first;
                    transmit(t, out, pkt);
                }
                None => out.drop_packet(pkt, DropReason::L2NoDestination),
            }
            send_copies(t, out);
        }
    }
}

/// Where the original of a flooded packet goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Original {
    /// To the first member: it gets no copy.
    ToFirst,
    /// Elsewhere (the router): every member gets a copy.
    Kept,
}

/// Queues a copy of `p` for every member of `sw` that is up, except
/// `except`; with [`Original::ToFirst`], the first such member gets no copy
/// but is returned, for the original.
fn copy_to_members(
    t: &Tables,
    out: &mut Output,
    sw: SwitchId,
    p: &Packet,
    except: PortId,
    original: Original,
) -> Option<PortId> {
    debug_assert!(
        p.buf.deferred_tail().is_none(),
        "a frame without its tail flooded"
    );
    let mut first = None;
    for i in 0..t.l2.members(sw).len() {
        let m = t.l2.members(sw)[i];
        if m == except || !t.ports.get(m).is_some_and(|info| info.up) {
            continue;
        }
        if original == Original::ToFirst && first.is_none() {
            first = Some(m);
            continue;
        }
        let mut buf = out.pool.get();
        if buf.set_frame(p.buf.frame()).is_err() {
            out.pool.put(buf);
            continue;
        }
        let mut meta = p.meta;
        meta.origin = Origin::Flooded;
        meta.tx_port = m;
        meta.switched = true;
        meta.next = Next::Tx;
        out.flooded.push(Packet { buf, meta });
    }
    first
}

fn send_copies(t: &Tables, out: &mut Output) {
    let mut copies = std::mem::take(&mut out.flooded);
    for c in copies.drain(..) {
        transmit(t, out, c);
    }
    out.flooded = copies;
}

/// The source address of an IPv4, IPv6 or ARP frame (untagged or priority
/// tagged); `None` for anything else or too short to say.
fn source_addr(frame: &[u8]) -> Option<IpAddr> {
    let be16 = |i: usize| Some(u16::from_be_bytes(frame.get(i..i + 2)?.try_into().ok()?));
    let (mut ethertype, mut l3) = (be16(12)?, ETH_HLEN);
    if ethertype == ETHERTYPE_VLAN {
        ethertype = be16(16)?;
        l3 += 4;
    }
    let bytes = |at: usize, n: usize| frame.get(l3 + at..l3 + at + n);
    match ethertype {
        ETHERTYPE_IPV4 => Some(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(bytes(12, 4)?).ok()?,
        ))),
        ETHERTYPE_ARP => Some(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(bytes(14, 4)?).ok()?,
        ))),
        ETHERTYPE_IPV6 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes(8, 16)?).ok()?,
        ))),
        _ => None,
    }
}
