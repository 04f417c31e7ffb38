//! Neighbour discovery messages the appliance sends: ARP requests (RFC 826)
//! and IPv6 neighbour solicitations and advertisements (RFC 4861 §4.3, §4.4),
//! gratuitous and unsolicited ones included.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::icmp::{checksum6, write_ipv6};
pub(super) use crate::packet::solicited_node;
use crate::packet::view::set_eth_addrs;
use crate::packet::{MacAddr, PacketBuf, ETHERTYPE_ARP, ETHERTYPE_IPV6, ETH_HLEN};
use crate::port::PortInfo;

/// ICMPv6 neighbour solicitation.
pub(super) const NS: u8 = 135;
/// ICMPv6 neighbour advertisement.
pub(super) const NA: u8 = 136;
/// NDP option: source link-layer address.
pub(super) const OPT_SOURCE_LL: u8 = 1;
/// NDP option: target link-layer address.
pub(super) const OPT_TARGET_LL: u8 = 2;
/// Hop limit every NDP message carries (and must arrive with).
pub(super) const ND_HOP_LIMIT: u8 = 255;

/// Writes an ARP request or neighbour solicitation for `addr` from `port`
/// into `buf`. False when the port has no address of that family.
pub(super) fn build_solicit(buf: &mut PacketBuf, port: &PortInfo, addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => match port.source_v4(a) {
            Some(src) => {
                arp_request(buf, port.mac, src, a);
                true
            }
            None => false,
        },
        IpAddr::V6(a) => match port.source_v6(a) {
            Some(src) => {
                let dst = solicited_node(a);
                ndp(
                    buf,
                    MacAddr::ipv6_multicast(dst),
                    port.mac,
                    src,
                    dst,
                    NS,
                    0,
                    a,
                    OPT_SOURCE_LL,
                );
                true
            }
            None => false,
        },
    }
}

/// A gratuitous ARP for `addr` (a request from and for it, broadcast):
/// the neighbours' caches learn it is at `mac`.
pub(super) fn build_gratuitous(buf: &mut PacketBuf, mac: MacAddr, addr: Ipv4Addr) {
    arp_request(buf, mac, addr, addr);
}

/// An unsolicited neighbour advertisement for `addr` (RFC 4861 7.2.6:
/// to all nodes, Override set, Solicited clear; Router set, as the
/// appliance routes): the neighbours' caches learn it is at `mac`.
pub(super) fn build_unsolicited_advert(buf: &mut PacketBuf, mac: MacAddr, addr: Ipv6Addr) {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    // Router, Override.
    let flags = 0xa000_0000;
    ndp(
        buf,
        MacAddr::ipv6_multicast(all_nodes),
        mac,
        addr,
        all_nodes,
        NA,
        flags,
        addr,
        OPT_TARGET_LL,
    );
}

fn arp_request(buf: &mut PacketBuf, mac: MacAddr, src: Ipv4Addr, target: Ipv4Addr) {
    buf.set_len(ETH_HLEN + 28);
    let f = buf.frame_mut();
    set_eth_addrs(f, MacAddr::BROADCAST, mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    #[rustfmt::skip]
    f[14..22].copy_from_slice(&[
        0, 1,       // hardware: Ethernet
        0x08, 0,    // protocol: IPv4
        6, 4,       // address sizes
        0, 1,       // operation: request
    ]);
    f[22..28].copy_from_slice(&mac.0);
    f[28..32].copy_from_slice(&src.octets());
    f[32..38].fill(0);
    f[38..42].copy_from_slice(&target.octets());
}

/// Writes a neighbour advertisement for our `target`, answering a
/// solicitation from `to` (`to_mac`).
pub(super) fn build_advert(
    buf: &mut PacketBuf,
    port: &PortInfo,
    target: Ipv6Addr,
    to: Ipv6Addr,
    to_mac: MacAddr,
) {
    // Router, Solicited, Override.
    let flags = 0xe000_0000;
    ndp(
        buf,
        to_mac,
        port.mac,
        target,
        to,
        NA,
        flags,
        target,
        OPT_TARGET_LL,
    );
}

#[allow(clippy::too_many_arguments)]
fn ndp(
    buf: &mut PacketBuf,
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    typ: u8,
    flags: u32,
    target: Ipv6Addr,
    opt: u8,
) {
    const PLEN: usize = 32;
    buf.set_len(ETH_HLEN + 40 + PLEN);
    let f = buf.frame_mut();
    set_eth_addrs(f, dst_mac, src_mac);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let h = &mut f[ETH_HLEN..];
    write_ipv6(h, PLEN as u16, 58, ND_HOP_LIMIT, src, dst);
    let m = &mut h[40..40 + PLEN];
    m[0] = typ;
    m[1] = 0;
    m[2..4].fill(0);
    m[4..8].copy_from_slice(&flags.to_be_bytes());
    m[8..24].copy_from_slice(&target.octets());
    m[24] = opt;
    m[25] = 1; // option length in units of 8 bytes
    m[26..32].copy_from_slice(&src_mac.0);
    let c = checksum6(src, dst, m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
}

/// The link-layer address in an NDP option of type `want` (options start at
/// `options`), if present and well formed.
pub(super) fn link_addr_option(mut options: &[u8], want: u8) -> Option<MacAddr> {
    while options.len() >= 2 {
        let len = usize::from(options[1]) * 8;
        if len == 0 || len > options.len() {
            return None;
        }
        if options[0] == want && len >= 8 {
            return MacAddr::from_slice(&options[2..8]);
        }
        options = &options[len..];
    }
    None
}
