//! Host mirrors: the TAP in the host kernel that stands for a port (VPP
//! linux-cp's "host interface").
//!
//! The mirror is a TAP device like a port's, read and written by the
//! workers; what makes it a mirror is its kernel side, set up here: the
//! port's MAC (so the host's frames leave with the port's source address
//! and frames for the port reach the host), the port's MTU and addresses
//! (so the host's sockets bind them, and `ip route get` agrees with
//! edgefwd), up. Its carrier follows the port's link, as a real NIC's
//! would ([`Tap::set_carrier`]).

use std::io;
use std::net::IpAddr;

use edgefwd_core::packet::MacAddr;
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::rtnl::Rtnl;
use crate::sys::IfSocket;
use crate::Tap;

/// Gives the kernel side of `tap` the port's `mac`, IP `mtu` and
/// `addresses` (and no others), and brings it up. Returns its interface
/// index in its namespace.
pub fn configure(tap: &Tap, mac: MacAddr, mtu: u16, addresses: &[IpNet]) -> io::Result<u32> {
    let name = tap.name().to_owned();
    let addresses = addresses.to_vec();
    let setup = move || -> io::Result<u32> {
        let index = IfSocket::new()?.index(&name)?;
        let mut nl = Rtnl::new()?;
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        link.attributes = vec![
            LinkAttribute::Address(mac.0.to_vec()),
            LinkAttribute::Mtu(u32::from(mtu)),
        ];
        nl.request(RouteNetlinkMessage::SetLink(link), 0)?;
        // Addresses it has that the port does not: left from an earlier
        // config. The kernel's own link-local address stays.
        let mut stale = Vec::new();
        let mut ask = AddressMessage::default();
        ask.header.index = index;
        nl.dump(RouteNetlinkMessage::GetAddress(ask), |m| {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                if a.header.index != index {
                    return;
                }
                let addr = a.attributes.iter().find_map(|at| match at {
                    AddressAttribute::Local(a) => Some(*a),
                    AddressAttribute::Address(a) => Some(*a),
                    _ => None,
                });
                if let Some(addr) = addr {
                    let net = IpNet::new(addr, a.header.prefix_len).ok();
                    let link_local = matches!(addr, IpAddr::V6(v6) if v6.is_unicast_link_local());
                    if !link_local && net.is_some_and(|n| !addresses.contains(&n)) {
                        stale.push(a);
                    }
                }
            }
        })?;
        for a in stale {
            nl.request(RouteNetlinkMessage::DelAddress(a), 0)?;
        }
        for net in &addresses {
            nl.request(
                RouteNetlinkMessage::NewAddress(address_message(index, *net)),
                NLM_F_CREATE | NLM_F_REPLACE,
            )?;
        }
        Ok(index)
    };
    match tap.netns() {
        Some(ns) => crate::sys::in_netns(ns, setup),
        None => setup(),
    }
}

fn address_message(index: u32, net: IpNet) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.index = index;
    m.header.prefix_len = net.prefix_len();
    m.header.scope = AddressScope::Universe;
    let addr = net.addr();
    match addr {
        IpAddr::V4(_) => {
            m.header.family = AddressFamily::Inet;
            m.attributes.push(AddressAttribute::Local(addr));
        }
        IpAddr::V6(_) => {
            m.header.family = AddressFamily::Inet6;
            // edgefwd owns the address already: no duplicate detection
            // holding it tentative.
            m.header.flags = AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    m.attributes.push(AddressAttribute::Address(addr));
    m
}
