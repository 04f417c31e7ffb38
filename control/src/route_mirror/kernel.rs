//! What a route message of the kernel says, reduced to what the route
//! mirror needs: which prefix at which metric, through which interfaces
//! and gateways.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::AddressFamily;

/// A kernel route's identity in the route mirror: its prefix and metric
/// (the kernel's key in the main table, type of service aside).
pub type RouteKey = (IpNet, u32);

/// One next hop: the output interface and the gateway, if any.
pub type Hop = (u32, Option<IpAddr>);

/// A route message of the main table, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRoute {
    /// Prefix and metric.
    pub key: RouteKey,
    /// Its next hops (several for a multipath route).
    pub hops: Vec<Hop>,
    /// It names a next-hop object (`nhid`) instead of its next hops.
    pub nexthop_object: bool,
    /// A route the mirror takes when through a mirror: unicast, put
    /// there by someone other than the kernel itself.
    pub eligible: bool,
}

/// Reads `m`; `None` for a route of another table or family.
pub fn read(m: &RouteMessage) -> Option<KernelRoute> {
    let h = &m.header;
    let mut table = u32::from(h.table);
    let (mut dst, mut gateway, mut oif, mut metric) = (None, None, None, 0);
    let mut hops = Vec::new();
    let mut nexthop_object = false;
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = address(d),
            RouteAttribute::Gateway(g) => gateway = address(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::NhId(_) => nexthop_object = true,
            RouteAttribute::MultiPath(list) => {
                for nh in list {
                    let gw = nh.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => address(g),
                        _ => None,
                    });
                    hops.push((nh.interface_index, gw));
                }
            }
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let len = h.destination_prefix_length;
    let prefix = match (h.address_family, dst) {
        (AddressFamily::Inet, None) => IpNet::new(IpAddr::V4(0.into()), len).ok()?,
        (AddressFamily::Inet6, None) => IpNet::new(IpAddr::V6(0.into()), len).ok()?,
        (AddressFamily::Inet | AddressFamily::Inet6, Some(d)) => IpNet::new(d, len).ok()?,
        _ => return None,
    }
    .trunc();
    if let Some(i) = oif {
        hops.push((i, gateway));
    }
    let eligible = h.kind == RouteType::Unicast
        && !matches!(
            h.protocol,
            RouteProtocol::Kernel | RouteProtocol::IcmpRedirect
        );
    Some(KernelRoute {
        key: (prefix, metric),
        hops,
        nexthop_object,
        eligible,
    })
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}
