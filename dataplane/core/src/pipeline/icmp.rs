//! ICMP and ICMPv6 messages the appliance makes: errors (time exceeded,
//! unreachable, fragmentation needed / packet too big) and echo replies.
//!
//! Errors follow RFC 1812 §4.3.2: none about an ICMP error, a non-first
//! fragment, or a packet from an unusable source; they quote as much of the
//! offending packet as fits in 576 bytes (IPv4) or 1280 bytes (IPv6, RFC
//! 4443), and are rate-limited per port. Their source address is chosen once
//! the egress port is known (an address of the port they leave by), so they
//! are built with `needs_source` and finished by [`finish_source`].

use etherparse::{IpNumber, Ipv6ExtensionsSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Output;
use crate::packet::checksum;
use crate::packet::view::{Ipv4View, Ipv6View};
use crate::packet::{Meta, Next, Origin, Packet, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_HLEN};

pub(super) use crate::packet::icmp_types::{v4, v6};

const PROTO_ICMP: u8 = 1;
const NH_ICMPV6: u8 = 58;
/// Largest ICMPv4 error datagram (RFC 1812 §4.3.2.3).
const V4_ERROR_MAX: usize = 576;
/// Largest ICMPv6 error datagram (RFC 4443 §2.4 (c)).
const V6_ERROR_MAX: usize = 1280;
/// TTL / hop limit of packets the appliance originates.
pub(super) const DEFAULT_TTL: u8 = 64;

/// Queues an ICMPv4 error about `orig` (`rest` fills bytes 4..8: unused, or
/// the next-hop MTU).
pub(super) fn error4(out: &mut Output, orig: &Packet, typ: u8, code: u8, rest: u32) {
    let l3 = orig.l3();
    let Some(ip) = Ipv4View::new_checked(l3) else {
        return;
    };
    let hl = ip.header_len();
    let about_error = ip.protocol() == PROTO_ICMP
        && !matches!(
            l3.get(hl),
            Some(&(v4::ECHO_REPLY | v4::ECHO_REQUEST | 13 | 14))
        );
    let src = ip.src();
    if orig.meta.origin != Origin::Received
        || ip.frag_offset() != 0
        || about_error
        || src.is_unspecified()
        || src.is_multicast()
        || src.is_broadcast()
        || !out.limiters[usize::from(orig.meta.iface)].allow(out.now)
    {
        if orig.meta.origin == Origin::Received && !about_error && ip.frag_offset() == 0 {
            out.stats.icmp_rate_limited += 1;
        }
        return;
    }
    let quote = l3.len().min(V4_ERROR_MAX - 28);
    let total = 20 + 8 + quote;
    let mut buf = out.pool.get();
    buf.set_len(ETH_HLEN + total);
    let f = buf.frame_mut();
    f[..12].fill(0);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let h = &mut f[ETH_HLEN..];
    #[rustfmt::skip]
    h[..20].copy_from_slice(&[
        0x45, 0xc0,                              // version 4, IHL 5, DSCP CS6 (network control)
        (total >> 8) as u8, total as u8,         // total length
        0, 0, 0, 0,                              // id, flags, fragment offset
        DEFAULT_TTL, PROTO_ICMP, 0, 0,           // TTL, protocol, checksum (set with the source)
        0, 0, 0, 0,                              // source (chosen at lookup)
        0, 0, 0, 0,                              // destination (below)
    ]);
    h[16..20].copy_from_slice(&src.octets());
    h[20] = typ;
    h[21] = code;
    h[22..24].fill(0);
    h[24..28].copy_from_slice(&rest.to_be_bytes());
    h[28..28 + quote].copy_from_slice(&l3[..quote]);
    let c = checksum::checksum(&h[20..total]);
    h[22..24].copy_from_slice(&c.to_be_bytes());
    push_generated(out, orig, buf);
}

/// Queues an ICMPv6 error about `orig`.
pub(super) fn error6(out: &mut Output, orig: &Packet, typ: u8, code: u8, rest: u32) {
    let l3 = orig.l3();
    let Some(ip) = Ipv6View::new_checked(l3) else {
        return;
    };
    let src = ip.src();
    let about_error = upper_layer6(l3)
        .is_none_or(|(nh, at)| nh == NH_ICMPV6 && l3.get(at).is_none_or(|t| *t < 128));
    if orig.meta.origin != Origin::Received
        || about_error
        || src.is_unspecified()
        || src.is_multicast()
        || !out.limiters[usize::from(orig.meta.iface)].allow(out.now)
    {
        if orig.meta.origin == Origin::Received && !about_error {
            out.stats.icmp_rate_limited += 1;
        }
        return;
    }
    let quote = l3.len().min(V6_ERROR_MAX - 48);
    let plen = 8 + quote;
    let mut buf = out.pool.get();
    buf.set_len(ETH_HLEN + 40 + plen);
    let f = buf.frame_mut();
    f[..12].fill(0);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let h = &mut f[ETH_HLEN..];
    write_ipv6(
        h,
        plen as u16,
        NH_ICMPV6,
        DEFAULT_TTL,
        Ipv6Addr::UNSPECIFIED,
        src,
    );
    h[40] = typ;
    h[41] = code;
    h[42..44].fill(0);
    h[44..48].copy_from_slice(&rest.to_be_bytes());
    h[48..48 + quote].copy_from_slice(&l3[..quote]);
    push_generated(out, orig, buf);
}

fn push_generated(out: &mut Output, orig: &Packet, buf: crate::packet::PacketBuf) {
    let mut meta = Meta::received(orig.meta.rx_port, out.now);
    meta.iface = orig.meta.iface;
    meta.origin = Origin::Generated;
    meta.next = Next::IpLookup;
    meta.needs_source = true;
    out.generated.push(Packet { buf, meta });
}

/// Writes a fixed IPv6 header.
pub(super) fn write_ipv6(h: &mut [u8], plen: u16, nh: u8, hop: u8, src: Ipv6Addr, dst: Ipv6Addr) {
    h[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    h[4..6].copy_from_slice(&plen.to_be_bytes());
    h[6] = nh;
    h[7] = hop;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
}

/// The upper-layer protocol of an IPv6 packet and its offset in `l3`, after
/// the extension headers. `None` when the chain is malformed or the packet
/// is a non-first fragment.
pub(super) fn upper_layer6(l3: &[u8]) -> Option<(u8, usize)> {
    let nh = *l3.get(6)?;
    let payload = l3.get(40..)?;
    let (exts, proto, rest) = Ipv6ExtensionsSlice::from_slice(IpNumber(nh), payload).ok()?;
    if exts.is_fragmenting_payload() {
        return None;
    }
    Some((proto.0, l3.len() - rest.len()))
}

/// The ICMPv6 checksum of `icmp` between `src` and `dst`.
pub(super) fn checksum6(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> u16 {
    checksum::finish(
        checksum::pseudo_v6(src, dst, NH_ICMPV6, icmp.len() as u32) + checksum::sum(icmp),
    )
}

/// Sets the source of a generated error and finishes its checksums.
pub(super) fn finish_source(p: &mut Packet, src: IpAddr) {
    let l3 = p.l3_mut();
    match src {
        IpAddr::V4(a) => {
            l3[12..16].copy_from_slice(&a.octets());
            if let Some(mut v) = Ipv4View::new_checked(&mut *l3) {
                v.fill_checksum();
            }
        }
        IpAddr::V6(a) => {
            l3[8..24].copy_from_slice(&a.octets());
            let dst = Ipv6View::new_checked(&*l3)
                .map(|v| v.dst())
                .unwrap_or(Ipv6Addr::UNSPECIFIED);
            l3[42..44].fill(0);
            let c = checksum6(a, dst, &l3[40..]);
            l3[42..44].copy_from_slice(&c.to_be_bytes());
        }
    }
    p.meta.needs_source = false;
}

/// Turns a validated echo request (ICMP at `icmp` in `l3`) into its reply.
pub(super) fn echo_reply4(p: &mut Packet, icmp: usize) {
    let l3 = p.l3_mut();
    let (src, dst): (Ipv4Addr, Ipv4Addr) = match Ipv4View::new_checked(&*l3) {
        Some(v) => (v.src(), v.dst()),
        None => return,
    };
    // Swapping the addresses leaves every checksum unchanged.
    l3[12..16].copy_from_slice(&dst.octets());
    l3[16..20].copy_from_slice(&src.octets());
    let old_ttl = u16::from_be_bytes([l3[8], l3[9]]);
    l3[8] = DEFAULT_TTL;
    let c = checksum::update16(
        u16::from_be_bytes([l3[10], l3[11]]),
        old_ttl,
        u16::from_be_bytes([l3[8], l3[9]]),
    );
    l3[10..12].copy_from_slice(&c.to_be_bytes());
    retype(&mut l3[icmp..], v4::ECHO_REPLY);
}

/// Turns a validated ICMPv6 echo request (at `icmp` in `l3`) into its reply.
pub(super) fn echo_reply6(p: &mut Packet, icmp: usize) {
    let l3 = p.l3_mut();
    let src: [u8; 16] = l3[8..24].try_into().unwrap_or([0; 16]);
    l3.copy_within(24..40, 8);
    l3[24..40].copy_from_slice(&src);
    l3[7] = DEFAULT_TTL;
    retype(&mut l3[icmp..], v6::ECHO_REPLY);
}

/// Changes an ICMP type, updating its checksum incrementally.
fn retype(icmp: &mut [u8], typ: u8) {
    let old = u16::from_be_bytes([icmp[0], icmp[1]]);
    icmp[0] = typ;
    let c = checksum::update16(
        u16::from_be_bytes([icmp[2], icmp[3]]),
        old,
        u16::from_be_bytes([icmp[0], icmp[1]]),
    );
    let c = if typ == v4::ECHO_REPLY {
        checksum::settle_icmp4(c, icmp)
    } else {
        c
    };
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
}
