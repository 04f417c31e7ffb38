//! eth-input: L2 checks and demultiplexing by EtherType.
//!
//! Routed ports carry untagged frames; a priority tag (VLAN 0) is accepted,
//! any other tag is dropped as `vlan_unsupported` until ports carry VLANs.

use etherparse::{Ethernet2HeaderSlice, SingleVlanHeaderSlice};

use crate::packet::{
    MacAddr, Next, Packet, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN, ETH_HLEN,
};
use crate::port::PortTable;
use crate::stats::DropReason;

/// EtherType of an 802.1ad (QinQ) service tag.
const ETHERTYPE_QINQ: u16 = 0x88a8;

pub(super) fn run(ports: &PortTable, pkts: &mut [Packet]) {
    for p in pkts.iter_mut().filter(|p| p.meta.next == Next::EthInput) {
        p.meta.next = classify(ports, p);
    }
}

fn classify(ports: &PortTable, p: &mut Packet) -> Next {
    let frame = p.buf.frame();
    let Ok(eth) = Ethernet2HeaderSlice::from_slice(frame) else {
        return Next::Drop(DropReason::Runt);
    };
    let Some(port) = ports.get(p.meta.iface) else {
        return Next::Drop(DropReason::PortDown);
    };
    let dst = MacAddr(eth.destination());
    if !dst.is_multicast() && dst != port.mac {
        return Next::Drop(DropReason::NotOurMac);
    }
    if MacAddr(eth.source()).is_multicast() {
        return Next::Drop(DropReason::BadSource);
    }
    let mut ethertype = eth.ether_type().0;
    let mut l3 = ETH_HLEN;
    if ethertype == ETHERTYPE_VLAN {
        let Ok(tag) = SingleVlanHeaderSlice::from_slice(&frame[ETH_HLEN..]) else {
            return Next::Drop(DropReason::Runt);
        };
        if tag.vlan_identifier().value() != 0 {
            return Next::Drop(DropReason::VlanUnsupported);
        }
        ethertype = tag.ether_type().0;
        l3 += 4;
    }
    p.meta.l3 = l3 as u16;
    match ethertype {
        ETHERTYPE_ARP => Next::ArpInput,
        ETHERTYPE_IPV4 => Next::Ip4Input,
        ETHERTYPE_IPV6 => Next::Ip6Input,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ => Next::Drop(DropReason::VlanUnsupported),
        _ => Next::Drop(DropReason::UnknownEthertype),
    }
}
