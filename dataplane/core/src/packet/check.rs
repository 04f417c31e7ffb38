//! Well-formedness of frames edgefwd sends: consistent lengths and valid
//! checksums at every layer it touches.
//!
//! Tests and fuzz targets hold output frames to this, so a rewrite that
//! forgets a checksum update is caught wherever it happens. Every checksum
//! is computed by etherparse, not by edgefwd's own checksum code, so a bug
//! there cannot hide itself.

use etherparse::{
    Icmpv4Slice, Icmpv6Slice, IpNumber, Ipv4HeaderSlice, Ipv6ExtensionSlice, Ipv6ExtensionsSlice,
    Ipv6HeaderSlice, TcpSlice, UdpSlice,
};

use super::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN, ETH_HLEN};

const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;

/// Checks an Ethernet frame at every layer; the error says what is wrong.
///
/// A router forwards a packet whose transport checksum was already wrong as
/// it is, so for forwarded traffic this holds only when it held on input;
/// [`check_headers`] is what every output frame meets.
pub fn check_frame(frame: &[u8]) -> Result<(), &'static str> {
    check(frame, Layers::All)
}

/// Checks the link and IP layers only (lengths, IPv4 header checksum).
pub fn check_headers(frame: &[u8]) -> Result<(), &'static str> {
    check(frame, Layers::LinkAndIp)
}

/// The layers a check covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layers {
    /// Link and IP: lengths, the IPv4 header checksum.
    LinkAndIp,
    /// All of them: the transport checksum too.
    All,
}

fn check(frame: &[u8], layers: Layers) -> Result<(), &'static str> {
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
        ETHERTYPE_IPV4 => check_ipv4(payload, layers),
        ETHERTYPE_IPV6 => check_ipv6(payload, layers),
        _ => Err("EtherType edgefwd never sends"),
    }
}

/// True when the Internet checksum over `bytes`, their own checksum field
/// included, verifies (etherparse's sum over the raw bytes: its typed
/// headers do not carry every bit, the IPv4 reserved flag among them).
fn sums_to_zero(bytes: &[u8]) -> bool {
    etherparse::checksum::Sum16BitWords::new()
        .add_slice(bytes)
        .ones_complement()
        == 0
}

/// Checks an IPv4 packet: header checksum, total length equal to the bytes
/// present, and with [`Layers::All`] the transport checksum of unfragmented
/// TCP/UDP/ICMP.
pub fn check_ipv4(p: &[u8], layers: Layers) -> Result<(), &'static str> {
    let h = Ipv4HeaderSlice::from_slice(p).map_err(|_| "IPv4 header invalid")?;
    if !sums_to_zero(h.slice()) {
        return Err("IPv4 header checksum wrong");
    }
    if usize::from(h.total_len()) != p.len() {
        return Err("IPv4 total length differs from the bytes sent");
    }
    if layers == Layers::LinkAndIp || h.is_fragmenting_payload() {
        return Ok(());
    }
    let seg = &p[h.slice().len()..];
    let (src, dst) = (h.source(), h.destination());
    match h.protocol().0 {
        ICMP => {
            Icmpv4Slice::from_slice(seg).map_err(|_| "ICMP message cut short")?;
            if !sums_to_zero(seg) {
                return Err("ICMP checksum wrong");
            }
            Ok(())
        }
        UDP if seg.len() >= 8 && seg[6..8] != [0, 0] => {
            let udp = UdpSlice::from_slice(seg).map_err(|_| "UDP length invalid")?;
            let want = udp
                .to_header()
                .calc_checksum_ipv4_raw(src, dst, udp.payload())
                .map_err(|_| "UDP datagram too long")?;
            if want != udp.checksum() {
                return Err("UDP checksum wrong");
            }
            Ok(())
        }
        TCP if seg.len() >= 20 => {
            let tcp = TcpSlice::from_slice(seg).map_err(|_| "TCP header invalid")?;
            let want = tcp
                .calc_checksum_ipv4(src, dst)
                .map_err(|_| "TCP segment too long")?;
            if want != tcp.checksum() {
                return Err("TCP checksum wrong");
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Checks an IPv6 packet: payload length equal to the bytes present, and
/// with [`Layers::All`] the extension header chain and the ICMPv6/TCP/UDP checksum
/// after it (routers forward extension headers unexamined, RFC 8200 §4).
///
/// With a routing header or destination options (a Mobile IPv6 home
/// address) the pseudo-header uses addresses from those headers, so the
/// transport checksum is not checked there.
pub fn check_ipv6(p: &[u8], layers: Layers) -> Result<(), &'static str> {
    let h = Ipv6HeaderSlice::from_slice(p).map_err(|_| "IPv6 header invalid")?;
    if 40 + usize::from(h.payload_length()) != p.len() {
        return Err("IPv6 payload length differs from the bytes sent");
    }
    if layers == Layers::LinkAndIp {
        return Ok(());
    }
    let (exts, proto, seg) = Ipv6ExtensionsSlice::from_slice(IpNumber(h.next_header().0), &p[40..])
        .map_err(|_| "IPv6 extension headers invalid")?;
    let moved_addresses = exts.clone().into_iter().any(|e| {
        matches!(
            e,
            Ipv6ExtensionSlice::Routing(_) | Ipv6ExtensionSlice::DestinationOptions(_)
        )
    });
    if exts.is_fragmenting_payload() || moved_addresses {
        return Ok(());
    }
    let (src, dst) = (h.source(), h.destination());
    let valid = match proto.0 {
        ICMPV6 => Icmpv6Slice::from_slice(seg)
            .map_err(|_| "ICMPv6 message cut short")?
            .is_checksum_valid(src, dst),
        UDP => {
            let udp = UdpSlice::from_slice(seg).map_err(|_| "UDP length invalid")?;
            udp.to_header()
                .calc_checksum_ipv6_raw(src, dst, udp.payload())
                .map_err(|_| "UDP datagram too long")?
                == udp.checksum()
        }
        TCP => {
            let tcp = TcpSlice::from_slice(seg).map_err(|_| "TCP header invalid")?;
            tcp.calc_checksum_ipv6(src, dst)
                .map_err(|_| "TCP segment too long")?
                == tcp.checksum()
        }
        _ => true,
    };
    if valid {
        Ok(())
    } else {
        Err("IPv6 upper-layer checksum wrong")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header with the reserved flag set and a right checksum is
    /// well formed to the check (etherparse's typed header drops that bit,
    /// so the check sums the raw bytes).
    #[test]
    fn the_reserved_flag_does_not_fool_the_header_checksum() {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let mut ip = [
            0x45, 0, 0, 20, 0x12, 0x34, 0x80, 0, 64, 253, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        // RFC 1071, by hand: fold the big-endian words, complement.
        let mut sum: u32 = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        f.extend_from_slice(&ip);
        assert_eq!(check_headers(&f), Ok(()));
        f[14 + 11] ^= 1;
        assert_eq!(check_headers(&f), Err("IPv4 header checksum wrong"));
    }
}
