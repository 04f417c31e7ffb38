//! Whole-pipeline tests on in-memory ports (STYLE.md 6).

use super::*;
use crate::fib::Route;
use crate::packet::check::check_frame;
use crate::port::PortInfo;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use std::net::{Ipv4Addr, Ipv6Addr};

const P2: PortId = 0;
const P3: PortId = 1;
const P2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 2, 1]);
const P3_MAC: MacAddr = MacAddr([2, 0, 0, 0, 3, 1]);
const GW_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0x99, 1]);
const R1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0x20, 1]);
const HOST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0x20, 0x50]);

fn router() -> Router {
    router_with(RouterConfig::default(), 1500)
}

pub(super) fn router_with(cfg: RouterConfig, p3_mtu: u16) -> Router {
    let ports = PortTable::new(vec![
        PortInfo {
            name: "Port2".into(),
            mac: P2_MAC,
            v4: vec!["10.0.2.15/24".parse().unwrap()],
            v6: vec!["2001:db8:2::15/64".parse().unwrap()],
            mtu: 1500,
            up: true,
        },
        PortInfo {
            name: "Port3".into(),
            mac: P3_MAC,
            v4: vec!["192.168.20.10/24".parse().unwrap()],
            v6: vec!["2001:db8:20::10/64".parse().unwrap()],
            mtu: p3_mtu,
            up: true,
        },
    ]);
    let route = |prefix: &str, port, nh: Option<&str>, metric| Route {
        prefix: prefix.parse().unwrap(),
        port,
        next_hop: nh.map(|n| n.parse().unwrap()),
        metric,
    };
    let routes = vec![
        route("10.0.2.0/24", P2, None, 0),
        route("192.168.20.0/24", P3, None, 0),
        route("2001:db8:2::/64", P2, None, 0),
        route("2001:db8:20::/64", P3, None, 0),
        route("0.0.0.0/0", P2, Some("10.0.2.1"), 0),
        route("192.168.21.0/24", P3, Some("192.168.20.1"), 100),
    ];
    let (fib, _) = Fib::build(&routes, |_| true);
    let mut r = Router::new(ports, Arc::new(fib), &cfg);
    r.add_static_neighbor(P3, "192.168.20.1".parse().unwrap(), R1_MAC);
    r
}

fn t(ms: u64) -> Time {
    Time(ms * 1_000_000)
}

fn feed(r: &mut Router, port: PortId, at: Time, frames: &[Vec<u8>]) {
    let mut burst = Vec::new();
    for f in frames {
        r.receive(&mut burst, port, at, f);
    }
    r.process(&mut burst, at);
    assert!(burst.is_empty());
}

fn sent(r: &mut Router, port: PortId) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    r.drain_tx(port, |p| out.push(p.buf.frame().to_vec()));
    for f in &out {
        check_frame(f).unwrap_or_else(|e| panic!("malformed output frame: {e}: {f:02x?}"));
    }
    out
}

fn assert_identity(r: &Router) {
    let s = r.stats();
    assert_eq!(s.received(), s.ended() + r.held() as u64);
}

fn drops(r: &Router, reason: DropReason) -> u64 {
    r.stats().drops_by_reason()[reason as usize]
}

fn udp4(src_mac: MacAddr, dst_mac: MacAddr, src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv4(src, dst, ttl)
        .udp(4000, 53)
        .write(&mut v, b"edgefwd test payload")
        .unwrap();
    v
}

fn ipv4_of(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr, u8, u8) {
    let s = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Ipv4(ip)) = s.net else {
        panic!("not IPv4")
    };
    let h = ip.header();
    (
        h.source_addr(),
        h.destination_addr(),
        h.ttl(),
        h.protocol().0,
    )
}

#[test]
fn forwards_with_ttl_decrement_and_neighbour_macs() {
    let mut r = router();
    let f = udp4(GW_MAC, P2_MAC, [8, 8, 8, 8], [192, 168, 21, 7], 64);
    feed(&mut r, P2, t(0), &[f]);
    let out = sent(&mut r, P3);
    assert_eq!(out.len(), 1);
    assert_eq!(
        &out[0][..6],
        &R1_MAC.0,
        "next hop's MAC from the static entry"
    );
    assert_eq!(&out[0][6..12], &P3_MAC.0);
    assert_eq!(ipv4_of(&out[0]).2, 63);
    assert_eq!(r.stats().forwarded, 1);
    assert_identity(&r);
}

/// ip-rewrite keeps the last neighbour answer for the rest of a burst;
/// packets to different next hops, resolved or not, interleaved in one
/// burst, must each still get their own.
#[test]
fn one_burst_to_several_next_hops_gets_each_its_own_mac() {
    let mut r = router();
    let host2 = MacAddr([2, 0, 0, 0, 0x20, 0x51]);
    r.add_static_neighbor(P3, "192.168.20.51".parse().unwrap(), host2);
    let dsts = [[192, 168, 21, 7], [192, 168, 20, 51], [192, 168, 20, 52]];
    let frames: Vec<Vec<u8>> = (0..9)
        .map(|i| udp4(GW_MAC, P2_MAC, [8, 8, 8, 8], dsts[i % 3], 64))
        .collect();
    feed(&mut r, P2, t(0), &frames);
    let out = sent(&mut r, P3);
    let (udp, arp): (Vec<_>, Vec<_>) = out.iter().partition(|f| f[12..14] == [8, 0]);
    assert_eq!(udp.len(), 6, "the packets to resolved next hops");
    for f in udp {
        let want = match ipv4_of(f).1.octets() {
            [192, 168, 21, 7] => R1_MAC,
            [192, 168, 20, 51] => host2,
            other => panic!("forwarded to {other:?}, which is not resolved"),
        };
        assert_eq!(&f[..6], &want.0);
    }
    assert_eq!(arp.len(), 1, "one request for 192.168.20.52");
    assert_eq!(&arp[0][38..42], &[192, 168, 20, 52]);
    assert_eq!(r.held(), 3);
    assert_identity(&r);
}

#[test]
fn unresolved_next_hop_is_held_then_released_by_the_arp_reply() {
    let mut r = router();
    let f = udp4(HOST_MAC, P3_MAC, [192, 168, 20, 50], [1, 1, 1, 1], 64);
    feed(&mut r, P3, t(0), &[f.clone(), f]);
    let out = sent(&mut r, P2);
    assert_eq!(out.len(), 1, "one ARP request for two held packets");
    assert_eq!(&out[0][12..14], &[0x08, 0x06]);
    assert_eq!(&out[0][38..42], &[10, 0, 2, 1], "asks for the gateway");
    assert_eq!(&out[0][28..32], &[10, 0, 2, 15], "from Port2's address");
    assert_eq!(r.held(), 2);
    assert_identity(&r);

    let mut reply = Vec::new();
    PacketBuilder::ethernet2(GW_MAC.0, P2_MAC.0)
        .arp(
            etherparse::ArpPacket::new(
                etherparse::ArpHardwareId::ETHERNET,
                etherparse::EtherType::IPV4,
                etherparse::ArpOperation::REPLY,
                &GW_MAC.0,
                &[10, 0, 2, 1],
                &P2_MAC.0,
                &[10, 0, 2, 15],
            )
            .unwrap(),
        )
        .write(&mut reply)
        .unwrap();
    feed(&mut r, P2, t(10), &[reply]);
    let out = sent(&mut r, P2);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|f| f[..6] == GW_MAC.0 && ipv4_of(f).2 == 63));
    assert_eq!(r.held(), 0);
    assert_eq!(r.stats().local, 1);
    assert_identity(&r);
}

#[test]
fn unanswered_arp_drops_held_packets_after_three_requests() {
    let mut r = router();
    let f = udp4(HOST_MAC, P3_MAC, [192, 168, 20, 50], [1, 1, 1, 1], 64);
    feed(&mut r, P3, t(0), &[f]);
    for s in 1..=3 {
        r.tick(t(s * 1000));
    }
    assert_eq!(sent(&mut r, P2).len(), 3, "three ARP requests");
    assert_eq!(drops(&r, DropReason::NeighborUnresolved), 1);
    assert_identity(&r);
}

#[test]
fn ttl_expiry_is_answered_with_time_exceeded_from_the_ingress_side() {
    let mut r = router();
    let host_mac = MacAddr([2, 0, 0, 0, 0x20, 0x51]);
    r.add_static_neighbor(P3, "192.168.20.51".parse().unwrap(), host_mac);
    let f = udp4(host_mac, P3_MAC, [192, 168, 20, 51], [8, 8, 8, 8], 1);
    feed(&mut r, P3, t(0), std::slice::from_ref(&f));
    let out = sent(&mut r, P3);
    assert_eq!(out.len(), 1);
    let (src, dst, ttl, proto) = ipv4_of(&out[0]);
    assert_eq!(
        (src, dst, ttl, proto),
        (
            Ipv4Addr::new(192, 168, 20, 10),
            Ipv4Addr::new(192, 168, 20, 51),
            64,
            1
        )
    );
    let icmp = &out[0][34..];
    assert_eq!((icmp[0], icmp[1]), (11, 0));
    assert_eq!(&icmp[8..28], &f[14..34], "quotes the offending header");
    assert_eq!(drops(&r, DropReason::TtlExpired), 1);
    assert_eq!(r.stats().generated, 1);
    assert_identity(&r);
}

#[test]
fn icmp_errors_are_rate_limited_per_port() {
    let mut r = router();
    r.add_static_neighbor(P3, "192.168.20.51".parse().unwrap(), HOST_MAC);
    let f = udp4(HOST_MAC, P3_MAC, [192, 168, 20, 51], [8, 8, 8, 8], 1);
    feed(&mut r, P3, t(0), &vec![f.clone(); 30]);
    assert_eq!(sent(&mut r, P3).len(), 10, "burst of 10");
    feed(&mut r, P3, t(1000), &vec![f; 30]);
    assert_eq!(sent(&mut r, P3).len(), 10, "10 per second");
    assert_eq!(r.stats().icmp_rate_limited, 40);
    assert_identity(&r);
}

#[test]
fn bad_ipv4_checksum_and_runts_are_dropped_by_name() {
    let mut r = router();
    let mut f = udp4(GW_MAC, P2_MAC, [8, 8, 8, 8], [192, 168, 21, 7], 64);
    f[24] ^= 0xff;
    feed(&mut r, P2, t(0), &[f, vec![0u8; 10]]);
    assert_eq!(drops(&r, DropReason::Ip4BadChecksum), 1);
    assert_eq!(drops(&r, DropReason::Runt), 1);
    assert!(sent(&mut r, P3).is_empty());
    assert_identity(&r);
}

#[test]
fn frames_for_other_macs_and_vlans_are_dropped() {
    let mut r = router();
    let f = udp4(
        GW_MAC,
        MacAddr([2, 9, 9, 9, 9, 9]),
        [8, 8, 8, 8],
        [192, 168, 21, 7],
        64,
    );
    let mut tagged = Vec::new();
    PacketBuilder::ethernet2(GW_MAC.0, P2_MAC.0)
        .single_vlan(etherparse::VlanId::try_new(10).unwrap())
        .ipv4([8, 8, 8, 8], [192, 168, 21, 7], 64)
        .udp(1, 2)
        .write(&mut tagged, &[])
        .unwrap();
    feed(&mut r, P2, t(0), &[f, tagged]);
    assert_eq!(drops(&r, DropReason::NotOurMac), 1);
    assert_eq!(drops(&r, DropReason::VlanUnsupported), 1);
    assert_identity(&r);
}

#[test]
fn answers_arp_and_ping_for_its_address() {
    let mut r = router();
    let mut req = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC.0, MacAddr::BROADCAST.0)
        .arp(
            etherparse::ArpPacket::new(
                etherparse::ArpHardwareId::ETHERNET,
                etherparse::EtherType::IPV4,
                etherparse::ArpOperation::REQUEST,
                &HOST_MAC.0,
                &[192, 168, 20, 50],
                &[0; 6],
                &[192, 168, 20, 10],
            )
            .unwrap(),
        )
        .write(&mut req)
        .unwrap();
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC.0, P3_MAC.0)
        .ipv4([192, 168, 20, 50], [192, 168, 20, 10], 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut ping, b"ping")
        .unwrap();
    feed(&mut r, P3, t(0), &[req, ping]);
    let out = sent(&mut r, P3);
    assert_eq!(out.len(), 2);
    assert_eq!(&out[0][..6], &HOST_MAC.0);
    assert_eq!(&out[0][20..22], &[0, 2], "ARP reply");
    assert_eq!(&out[0][22..28], &P3_MAC.0);
    let (src, dst, _, proto) = ipv4_of(&out[1]);
    assert_eq!(
        (src, dst, proto),
        (
            Ipv4Addr::new(192, 168, 20, 10),
            Ipv4Addr::new(192, 168, 20, 50),
            1
        )
    );
    assert_eq!(out[1][34], 0, "echo reply");
    assert_eq!(&out[1][..6], &HOST_MAC.0, "learned from the ARP request");
    assert_eq!((r.stats().local, r.stats().generated), (2, 2));
    assert_identity(&r);
}

#[test]
fn df_packet_over_the_egress_mtu_gets_fragmentation_needed() {
    let mut r = router_with(RouterConfig::default(), 1000);
    let mut f = Vec::new();
    PacketBuilder::ethernet2(GW_MAC.0, P2_MAC.0)
        .ipv4([8, 8, 8, 8], [192, 168, 21, 7], 64)
        .udp(1, 2)
        .write(&mut f, &[0u8; 1200])
        .unwrap();
    // etherparse sets DF by default? Make sure it is set, and fix the checksum.
    f[20] |= 0x40;
    let mut h = crate::packet::view::Ipv4View::new_checked(&mut f[14..]).unwrap();
    h.fill_checksum();
    r.add_static_neighbor(P2, "10.0.2.1".parse().unwrap(), GW_MAC);
    feed(&mut r, P2, t(0), &[f]);
    let out = sent(&mut r, P2);
    assert_eq!(out.len(), 1);
    let icmp = &out[0][34..];
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1000, "next-hop MTU");
    assert!(out[0].len() - 14 <= 576);
    assert_eq!(drops(&r, DropReason::MtuExceeded), 1);
    assert_identity(&r);
}

fn icmp6_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop: u8,
    msg: &mut [u8],
) -> Vec<u8> {
    let c = super::icmp::checksum6(src, dst, msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv6(src.octets(), dst.octets(), hop)
        .write(&mut v, etherparse::IpNumber(58), msg)
        .unwrap();
    v
}

#[test]
fn ipv6_neighbour_solicitation_is_answered_and_forwarding_resolves_by_ndp() {
    let mut r = router();
    let host: Ipv6Addr = "2001:db8:20::50".parse().unwrap();
    let ours: Ipv6Addr = "2001:db8:20::10".parse().unwrap();
    let mut ns = [0u8; 32];
    ns[0] = 135;
    ns[8..24].copy_from_slice(&ours.octets());
    ns[24] = 1;
    ns[25] = 1;
    ns[26..32].copy_from_slice(&HOST_MAC.0);
    let group = super::nd::solicited_node(ours);
    let f = icmp6_frame(
        HOST_MAC,
        MacAddr::ipv6_multicast(group),
        host,
        group,
        255,
        &mut ns,
    );
    feed(&mut r, P3, t(0), &[f]);
    let out = sent(&mut r, P3);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0][54], 136, "neighbour advertisement");
    assert_eq!(&out[0][..6], &HOST_MAC.0);
    assert_identity(&r);

    // Forwarding towards a Port2 neighbour solicits it first.
    let mut v = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC.0, P3_MAC.0)
        .ipv6(
            host.octets(),
            "2001:db8:2::99".parse::<Ipv6Addr>().unwrap().octets(),
            64,
        )
        .udp(1, 2)
        .write(&mut v, b"x")
        .unwrap();
    feed(&mut r, P3, t(10), &[v]);
    let out = sent(&mut r, P2);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0][54], 135, "neighbour solicitation");
    assert_eq!(r.held(), 1);
    assert_identity(&r);
}

#[test]
fn ipv6_hop_limit_expiry_and_no_route_send_icmpv6_errors() {
    let mut r = router();
    let host: Ipv6Addr = "2001:db8:20::50".parse().unwrap();
    r.add_static_neighbor(P3, host.into(), HOST_MAC);
    let mk = |dst: &str, hop| {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(HOST_MAC.0, P3_MAC.0)
            .ipv6(
                host.octets(),
                dst.parse::<Ipv6Addr>().unwrap().octets(),
                hop,
            )
            .udp(1, 2)
            .write(&mut v, b"x")
            .unwrap();
        v
    };
    feed(
        &mut r,
        P3,
        t(0),
        &[mk("2001:db8:2::99", 1), mk("2001:db8:ffff::1", 64)],
    );
    let out = sent(&mut r, P3);
    assert_eq!(out.len(), 2);
    let types: Vec<u8> = out.iter().map(|f| f[54]).collect();
    assert_eq!(
        types,
        vec![3, 1],
        "time exceeded, then destination unreachable"
    );
    assert_eq!(drops(&r, DropReason::TtlExpired), 1);
    assert_eq!(drops(&r, DropReason::NoRoute), 1);
    let s = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(NetSlice::Ipv6(ip)) = s.net else {
        panic!()
    };
    assert_eq!(
        ip.header().source_addr(),
        "2001:db8:20::10".parse::<Ipv6Addr>().unwrap()
    );
    assert!(matches!(s.transport, Some(TransportSlice::Icmpv6(_))));
    assert_identity(&r);
}

#[test]
fn no_icmp_error_about_an_icmp_error() {
    let mut r = router();
    r.add_static_neighbor(P3, "192.168.20.51".parse().unwrap(), HOST_MAC);
    let mut f = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC.0, P3_MAC.0)
        .ipv4([192, 168, 20, 51], [8, 8, 8, 8], 1)
        .icmpv4(etherparse::Icmpv4Type::TimeExceeded(
            etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
        ))
        .write(&mut f, &[0x45; 28])
        .unwrap();
    feed(&mut r, P3, t(0), &[f]);
    assert!(sent(&mut r, P3).is_empty());
    assert_eq!(drops(&r, DropReason::TtlExpired), 1);
    assert_identity(&r);
}

#[test]
fn the_pool_stops_allocating_after_warm_up() {
    let mut r = router();
    let f = udp4(GW_MAC, P2_MAC, [8, 8, 8, 8], [192, 168, 21, 7], 64);
    let burst: Vec<Vec<u8>> = vec![f; 64];
    for i in 0..4 {
        feed(&mut r, P2, t(i), &burst);
        sent(&mut r, P3);
    }
    let warm = r.out.pool.allocated();
    for i in 4..100 {
        feed(&mut r, P2, t(i), &burst);
        sent(&mut r, P3);
    }
    assert_eq!(r.out.pool.allocated(), warm);
    assert_identity(&r);
}

mod fast;
mod l2;
mod punt;
mod svc;
mod svc6;
mod watch;
