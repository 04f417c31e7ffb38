//! Well-formedness of frames edgefwd sends: consistent lengths and valid
//! checksums at every layer it touches.
//!
//! Tests and fuzz targets hold every output frame to this, so a rewrite that
//! forgets a checksum update is caught wherever it happens.

use etherparse::{IpNumber, Ipv4HeaderSlice, Ipv6ExtensionsSlice, Ipv6HeaderSlice};

use super::checksum::{finish, pseudo_v4, pseudo_v6, sum, verify};
use super::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN, ETH_HLEN};

const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;

/// Checks an Ethernet frame; the error says what is wrong.
pub fn check_frame(frame: &[u8]) -> Result<(), &'static str> {
    if frame.len() < ETH_HLEN {
        return Err("shorter than an Ethernet header");
    }
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let mut l3 = ETH_HLEN;
    if ethertype == ETHERTYPE_VLAN {
        let tag = frame.get(14..18).ok_or("VLAN tag cut short")?;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        l3 = 18;
    }
    let payload = &frame[l3..];
    match ethertype {
        ETHERTYPE_ARP if payload.len() >= 28 => Ok(()),
        ETHERTYPE_ARP => Err("ARP packet cut short"),
        ETHERTYPE_IPV4 => check_ipv4(payload),
        ETHERTYPE_IPV6 => check_ipv6(payload),
        _ => Err("EtherType edgefwd never sends"),
    }
}

/// Checks an IPv4 packet (header checksum, total length equal to the bytes
/// present, transport checksum of unfragmented TCP/UDP/ICMP).
pub fn check_ipv4(p: &[u8]) -> Result<(), &'static str> {
    let h = Ipv4HeaderSlice::from_slice(p).map_err(|_| "IPv4 header invalid")?;
    if !verify(h.slice()) {
        return Err("IPv4 header checksum wrong");
    }
    if usize::from(h.total_len()) != p.len() {
        return Err("IPv4 total length differs from the bytes sent");
    }
    if h.is_fragmenting_payload() {
        return Ok(());
    }
    let l4 = &p[h.slice().len()..];
    let pseudo = || {
        pseudo_v4(
            h.source_addr(),
            h.destination_addr(),
            h.protocol().0,
            l4.len() as u16,
        )
    };
    match h.protocol().0 {
        ICMP if !verify(l4) => Err("ICMP checksum wrong"),
        UDP if l4.len() >= 8 && l4[6..8] != [0, 0] && finish(pseudo() + sum(l4)) != 0 => {
            Err("UDP checksum wrong")
        }
        TCP if l4.len() >= 20 && finish(pseudo() + sum(l4)) != 0 => Err("TCP checksum wrong"),
        _ => Ok(()),
    }
}

/// Checks an IPv6 packet (payload length equal to the bytes present,
/// ICMPv6/TCP/UDP checksum after the extension headers).
pub fn check_ipv6(p: &[u8]) -> Result<(), &'static str> {
    let h = Ipv6HeaderSlice::from_slice(p).map_err(|_| "IPv6 header invalid")?;
    if 40 + usize::from(h.payload_length()) != p.len() {
        return Err("IPv6 payload length differs from the bytes sent");
    }
    let (exts, proto, l4) = Ipv6ExtensionsSlice::from_slice(IpNumber(h.next_header().0), &p[40..])
        .map_err(|_| "IPv6 extension headers invalid")?;
    if exts.is_fragmenting_payload() {
        return Ok(());
    }
    let pseudo = pseudo_v6(
        h.source_addr(),
        h.destination_addr(),
        proto.0,
        l4.len() as u32,
    );
    match proto.0 {
        ICMPV6 | TCP | UDP if finish(pseudo + sum(l4)) != 0 => {
            Err("IPv6 upper-layer checksum wrong")
        }
        _ => Ok(()),
    }
}
