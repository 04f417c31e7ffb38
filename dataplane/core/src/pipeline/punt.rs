//! punt and inject: the host's own traffic through a port's host mirror.
//!
//! A port may have a mirror, a TAP in the host kernel with the port's MAC
//! and addresses (VPP's linux-cp pair). What arrives for the port's
//! addresses that edgefwd does not answer itself (everything but ARP and
//! NDP for them and echo requests) is punted: sent to the mirror unchanged,
//! so the host's sockets, DHCP client and routing daemons see it as if
//! they owned the port. Replies to the host's own ARP and NDP requests
//! are punted once edgefwd has learned from them. What the host sends on
//! the mirror is injected: sent out of the port as it is, with no
//! routing, NAT or switching of its own (the host chose the next hop).
//!
//! Punting is policed per worker (a token bucket), and the mirror's
//! transmit queue bounds it: a flood at the appliance's address costs the
//! host what the policer lets through, counted as `punt_dropped` beyond.

use super::{transmit, Output, Tables};
use crate::packet::buf::Next;
use crate::packet::Packet;
use crate::port::PortId;
use crate::stats::DropReason;

/// Default punt rate per worker, in packets per second.
pub const PUNT_RATE: u32 = 100_000;
/// Default punt burst per worker.
pub const PUNT_BURST: u32 = 2048;

/// Which ports have a host mirror, and which ports are mirrors.
#[derive(Clone, Debug, Default)]
pub struct Mirrors {
    /// By port: its mirror.
    mirror: Vec<Option<PortId>>,
    /// By port: the port it is the mirror of.
    of: Vec<Option<PortId>>,
}

impl Mirrors {
    /// Mirrors for `ports` ports from `(port, mirror)` pairs.
    pub fn new(ports: usize, pairs: &[(PortId, PortId)]) -> Mirrors {
        let mut m = Mirrors {
            mirror: vec![None; ports],
            of: vec![None; ports],
        };
        for &(port, mirror) in pairs {
            if let (Some(a), Some(b)) = (
                m.mirror.get_mut(usize::from(port)),
                m.of.get_mut(usize::from(mirror)),
            ) {
                *a = Some(mirror);
                *b = Some(port);
            }
        }
        m
    }

    /// True when no port has a mirror.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.mirror.iter().all(Option::is_none)
    }

    /// The mirror of `port`.
    #[inline]
    pub fn mirror(&self, port: PortId) -> Option<PortId> {
        self.mirror.get(usize::from(port)).copied().flatten()
    }

    /// True when `port` has a mirror.
    #[inline]
    pub fn has(&self, port: PortId) -> bool {
        self.mirror(port).is_some()
    }

    /// The port `mirror` is the mirror of.
    #[inline]
    pub fn of(&self, mirror: PortId) -> Option<PortId> {
        self.of.get(usize::from(mirror)).copied().flatten()
    }
}

/// inject: frames received on a mirror go out of its port as they are.
pub(super) fn inject(t: &Tables, out: &mut Output, pkts: &mut [Packet]) {
    if t.mirrors.is_empty() {
        return;
    }
    for p in pkts.iter_mut().filter(|p| p.meta.next == Next::EthInput) {
        let Some(port) = t.mirrors.of(p.meta.rx_port) else {
            continue;
        };
        if !t.ports.get(port).is_some_and(|p| p.up) {
            p.meta.next = Next::Drop(DropReason::PortDown);
            continue;
        }
        p.meta.tx_port = port;
        p.meta.next = Next::Tx;
        out.stats.injected += 1;
    }
}

/// Sends a packet marked [`Next::Punt`] to the mirror of the interface it
/// came in on, within the policer and the mirror's queue.
pub(super) fn send(t: &Tables, out: &mut Output, mut pkt: Packet) {
    let Some(m) = t.mirrors.mirror(pkt.meta.iface) else {
        return out.drop_packet(pkt, DropReason::LocalUnsupported);
    };
    if !t.ports.get(m).is_some_and(|p| p.up) {
        return out.drop_packet(pkt, DropReason::PortDown);
    }
    let now = out.now;
    if out.tx[usize::from(m)].len() >= out.tx_depth || !out.punt_limit.allow(now) {
        return out.drop_packet(pkt, DropReason::PuntDropped);
    }
    pkt.meta.tx_port = m;
    out.stats.punted += 1;
    transmit(t, out, pkt);
}
