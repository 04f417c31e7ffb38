//! Ports as the router sees them: identity, addresses, MTU, link state.
//!
//! How a port is bound (TAP, AF_PACKET, pcap) is not the pipeline's
//! business: the control plane builds a [`PortTable`] from the config, and
//! the devices of the `edgefwd-io` crate move frames in and out by
//! [`PortId`].

use std::fmt;

use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packet::MacAddr;

/// What a port's device says of its link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Up with carrier.
    Up,
    /// Administratively down (`ip link set … down`).
    AdminDown,
    /// Up but without carrier.
    NoCarrier,
    /// The device is gone (removed, or failed).
    Gone,
}

impl LinkState {
    /// True when traffic can flow.
    pub fn is_up(self) -> bool {
        self == LinkState::Up
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkState::Up => "up",
            LinkState::AdminDown => "admin-down",
            LinkState::NoCarrier => "no-carrier",
            LinkState::Gone => "gone",
        })
    }
}

/// Index of a port in the [`PortTable`].
pub type PortId = u16;

/// One routed port.
#[derive(Clone, Debug)]
pub struct PortInfo {
    /// Operator's name (`Port2`).
    pub name: String,
    /// The port's MAC address.
    pub mac: MacAddr,
    /// IPv4 addresses with their subnets.
    pub v4: Vec<Ipv4Net>,
    /// IPv6 addresses with their subnets.
    pub v6: Vec<Ipv6Net>,
    /// IP MTU.
    pub mtu: u16,
    /// Link up (routes through a down port leave the FIB).
    pub up: bool,
}

impl PortInfo {
    /// True when `a` is one of this port's addresses.
    pub fn has_address(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => self.v4.iter().any(|n| n.addr() == a),
            IpAddr::V6(a) => self.v6.iter().any(|n| n.addr() == a),
        }
    }

    /// The IPv4 address to use as source towards `dst` (one on the same
    /// subnet if any, else the first).
    pub fn source_v4(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.v4
            .iter()
            .find(|n| n.contains(&dst))
            .or(self.v4.first())
            .map(|n| n.addr())
    }

    /// The IPv6 address to use as source towards `dst`.
    pub fn source_v6(&self, dst: Ipv6Addr) -> Option<Ipv6Addr> {
        self.v6
            .iter()
            .find(|n| n.contains(&dst))
            .or(self.v6.first())
            .map(|n| n.addr())
    }
}

/// All ports, indexed by [`PortId`].
///
/// The addresses checked on every packet (ours, and our subnets' directed
/// broadcasts) are also kept as flat sets, which a packet checks in a few
/// nanoseconds instead of walking each port's subnet list.
#[derive(Clone, Debug, Default)]
pub struct PortTable {
    ports: Vec<PortInfo>,
    local_v4: V4Set,
    broadcast_v4: V4Set,
    local_v6: Vec<Ipv6Addr>,
}

/// A small set of IPv4 addresses, asked about for every packet. Almost every
/// answer is "no", so a 64-bit filter (one bit per address, picked by a
/// multiplicative hash) answers most of them without reading the list.
#[derive(Clone, Debug, Default)]
struct V4Set {
    filter: u64,
    addrs: Vec<Ipv4Addr>,
}

impl V4Set {
    fn bit(a: Ipv4Addr) -> u64 {
        1 << (u32::from(a).wrapping_mul(0x9e37_79b9) >> 26)
    }

    #[inline]
    fn contains(&self, a: Ipv4Addr) -> bool {
        self.filter & Self::bit(a) != 0 && self.addrs.contains(&a)
    }
}

impl FromIterator<Ipv4Addr> for V4Set {
    fn from_iter<I: IntoIterator<Item = Ipv4Addr>>(iter: I) -> Self {
        let addrs: Vec<Ipv4Addr> = iter.into_iter().collect();
        let filter = addrs.iter().fold(0, |f, &a| f | Self::bit(a));
        V4Set { filter, addrs }
    }
}

impl PortTable {
    /// A table of the given ports; their ids are their positions.
    pub fn new(ports: Vec<PortInfo>) -> Self {
        let mut t = PortTable {
            ports,
            ..Default::default()
        };
        t.index();
        t
    }

    fn index(&mut self) {
        let v4 = || self.ports.iter().flat_map(|p| p.v4.iter());
        self.local_v4 = v4().map(|n| n.addr()).collect();
        self.broadcast_v4 = v4()
            .filter(|n| n.prefix_len() < 31)
            .map(|n| n.broadcast())
            .collect();
        self.local_v6 = self
            .ports
            .iter()
            .flat_map(|p| p.v6.iter().map(|n| n.addr()))
            .collect();
    }

    /// The port with id `id`.
    pub fn get(&self, id: PortId) -> Option<&PortInfo> {
        self.ports.get(usize::from(id))
    }

    /// Number of ports.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// True when there are no ports.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Ports with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (PortId, &PortInfo)> {
        self.ports.iter().enumerate().map(|(i, p)| (i as PortId, p))
    }

    /// Sets a port's link state.
    pub fn set_up(&mut self, id: PortId, up: bool) {
        if let Some(p) = self.ports.get_mut(usize::from(id)) {
            p.up = up;
        }
    }

    /// The id of the port named `name`.
    pub fn by_name(&self, name: &str) -> Option<PortId> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as PortId)
    }

    /// True when `a` is an address of any port (the weak host model: the
    /// appliance answers for all its addresses on every port).
    #[inline]
    pub fn is_local(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => self.local_v4.contains(a),
            IpAddr::V6(a) => self.local_v6.contains(&a),
        }
    }

    /// [`PortTable::is_local`] for an IPv4 address.
    #[inline]
    pub fn is_local_v4(&self, a: Ipv4Addr) -> bool {
        self.local_v4.contains(a)
    }

    /// True when `a` is the directed broadcast of one of the ports' subnets.
    #[inline]
    pub fn is_subnet_broadcast(&self, a: Ipv4Addr) -> bool {
        self.broadcast_v4.contains(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter never hides a member, and the list still decides for
    /// addresses that share a filter bit with one.
    #[test]
    fn v4_set_answers_exactly() {
        let members: Vec<Ipv4Addr> = (0..40u32).map(|i| Ipv4Addr::from(i * 7919 + 1)).collect();
        let set: V4Set = members.iter().copied().collect();
        let mut shared_bit = 0;
        for i in 0..100_000u32 {
            let a = Ipv4Addr::from(i.wrapping_mul(2_654_435_761));
            assert_eq!(set.contains(a), members.contains(&a), "{a}");
            shared_bit += usize::from(set.filter & V4Set::bit(a) != 0 && !members.contains(&a));
        }
        assert!(shared_bit > 0, "no non-member reached the list");
        assert!(members.iter().all(|&a| set.contains(a)));
        assert!(!V4Set::default().contains(Ipv4Addr::UNSPECIFIED));
    }
}
