//! arp-input: answers requests for the receiving port's addresses and learns
//! neighbours.
//!
//! Like Linux with `arp_ignore=1`, only addresses of the port the request came
//! in on are answered. A new neighbour entry is made only when the sender
//! addressed us; unsolicited replies only refresh entries we already have, so
//! a flood of spoofed ARP cannot fill the table.

use etherparse::{ArpHardwareId, ArpOperation, ArpPacketSlice, EtherType};
use std::net::{IpAddr, Ipv4Addr};

use super::ip_rewrite::{self, Share};
use super::{Output, Tables};
use crate::neigh::Entry;
use crate::packet::view::set_eth_addrs;
use crate::packet::{MacAddr, Next, Origin, Packet};
use crate::stats::DropReason;

/// Length of an Ethernet/IPv4 ARP packet.
const ARP_LEN: usize = 28;

pub(super) fn run(t: &mut Tables, out: &mut Output, pkts: &mut [Packet]) {
    for p in pkts.iter_mut().filter(|p| p.meta.next == Next::ArpInput) {
        p.meta.next = handle(t, out, p);
    }
}

struct Arp {
    op: ArpOperation,
    sha: MacAddr,
    spa: Ipv4Addr,
    tpa: Ipv4Addr,
}

fn parse(l3: &[u8]) -> Option<Arp> {
    let arp = ArpPacketSlice::from_slice(l3).ok()?;
    if arp.hw_addr_type() != ArpHardwareId::ETHERNET
        || arp.proto_addr_type() != EtherType::IPV4
        || arp.hw_addr_size() != 6
        || arp.proto_addr_size() != 4
    {
        return None;
    }
    let v4 = |b: &[u8]| -> Option<Ipv4Addr> { Some(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?)) };
    Some(Arp {
        op: arp.operation(),
        sha: MacAddr::from_slice(arp.sender_hw_addr())?,
        spa: v4(arp.sender_protocol_addr())?,
        tpa: v4(arp.target_protocol_addr())?,
    })
}

fn handle(t: &mut Tables, out: &mut Output, p: &mut Packet) -> Next {
    let Some(arp) = parse(p.l3()) else {
        return Next::Drop(DropReason::ArpMalformed);
    };
    if arp.sha.is_multicast() {
        return Next::Drop(DropReason::BadSource);
    }
    let port_id = p.meta.iface;
    let Some(port) = t.ports.get(port_id) else {
        return Next::Drop(DropReason::PortDown);
    };
    let port_mac = port.mac;
    let for_us =
        port.has_address(IpAddr::V4(arp.tpa)) || t.svc.announces(port_id, IpAddr::V4(arp.tpa));
    let on_link = port.v4.iter().any(|n| n.contains(&arp.spa));
    let mut refreshed = false;
    if on_link && !arp.spa.is_unspecified() && !port.has_address(IpAddr::V4(arp.spa)) {
        let spa = IpAddr::V4(arp.spa);
        refreshed = t.neigh.lookup(port_id, spa, out.now).is_some();
        let entry = if for_us {
            Entry::Create
        } else {
            Entry::RefreshOnly
        };
        refreshed |= ip_rewrite::learn(t, out, port_id, spa, arp.sha, entry, Share::WithPeers);
    }
    match arp.op {
        ArpOperation::REQUEST if for_us => {
            reply_in_place(p, port_mac, &arp);
            out.stats.local += 1;
            p.meta.origin = Origin::Generated;
            p.meta.tx_port = port_id;
            Next::Tx
        }
        // An answer to the host's own request, once learned from.
        ArpOperation::REPLY if for_us && t.mirrors.has(port_id) => Next::Punt,
        ArpOperation::REPLY if for_us => Next::Local,
        ArpOperation::REQUEST | ArpOperation::REPLY if refreshed => Next::Local,
        ArpOperation::REQUEST | ArpOperation::REPLY => Next::Drop(DropReason::ArpNotForUs),
        _ => Next::Drop(DropReason::ArpMalformed),
    }
}

/// Turns a request into its reply: "`tpa` is at `our_mac`", sent to the asker.
fn reply_in_place(p: &mut Packet, our_mac: MacAddr, req: &Arp) {
    let l3 = usize::from(p.meta.l3);
    p.buf.set_len(l3 + ARP_LEN);
    let frame = p.buf.frame_mut();
    set_eth_addrs(frame, req.sha, our_mac);
    let a = &mut frame[l3..];
    a[6..8].copy_from_slice(&ArpOperation::REPLY.0.to_be_bytes());
    a[8..14].copy_from_slice(&our_mac.0);
    a[14..18].copy_from_slice(&req.tpa.octets());
    a[18..24].copy_from_slice(&req.sha.0);
    a[24..28].copy_from_slice(&req.spa.octets());
}
