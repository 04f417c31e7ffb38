//! Property tests: every header edgefwd writes, for random inputs, parses
//! back (etherparse) to what it must say, with valid checksums at every
//! layer (`check_frame`). Covered: the forwarding rewrite (MACs, TTL,
//! IPv4 checksum), ICMPv4 time exceeded with the quoted packet, ICMPv4 and
//! ICMPv6 echo replies, ARP replies, neighbour advertisements, and the
//! segments cut from a TCP super-packet.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use edgefwd_control::config::Config;
use edgefwd_control::rib::{PortsUp, Rib};
use edgefwd_core::packet::check::check_frame;
use edgefwd_core::packet::offload::{segment, Offload, F_NEEDS_CSUM, GSO_TCPV4};
use edgefwd_core::packet::Packet;
use edgefwd_core::pipeline::Router;
use edgefwd_core::time::Time;
use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ethernet2Header, Icmpv4Type, Icmpv6Type,
    LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
};
use proptest::prelude::*;

const CFG: &str = r#"
[[port]]
name = "Port2"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.1/24", "2001:db8:2::1/64"]

[[port]]
name = "Port3"
mac = "02:00:00:00:03:01"
addresses = ["10.0.3.1/24"]

[[neighbor]]
interface = "Port2"
address = "10.0.2.2"
mac = "02:00:00:00:22:02"

[[neighbor]]
interface = "Port2"
address = "2001:db8:2::2"
mac = "02:00:00:00:22:02"

[[neighbor]]
interface = "Port3"
address = "10.0.3.2"
mac = "02:00:00:00:33:02"
"#;
const PORT2_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const PORT3_MAC: [u8; 6] = [2, 0, 0, 0, 3, 1];
const HOST2_MAC: [u8; 6] = [2, 0, 0, 0, 0x22, 2];
const HOST3_MAC: [u8; 6] = [2, 0, 0, 0, 0x33, 2];
const HOST2: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const HOST3: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 2);

fn router() -> Router {
    let cfg = Config::parse(CFG).unwrap();
    let rib = Rib::from_config(&cfg, PortsUp::All);
    let (fib, _) = rib.build_fib();
    rib.router(&cfg, Arc::new(fib), &cfg.router_config())
}

/// Feeds one frame on Port2; returns what each port sent.
fn through(frame: &[u8]) -> [Vec<Vec<u8>>; 2] {
    let mut r = router();
    let mut burst: Vec<Packet> = Vec::new();
    let now = Time::from_duration(Duration::from_secs(1));
    r.receive(&mut burst, 0, now, frame);
    r.process(&mut burst, now);
    let mut out = [Vec::new(), Vec::new()];
    for (port, o) in out.iter_mut().enumerate() {
        r.drain_tx(port as u16, |p| o.push(p.buf.frame().to_vec()));
    }
    out
}

fn the_one(frames: &[Vec<u8>]) -> &[u8] {
    assert_eq!(frames.len(), 1, "one frame out");
    let f = &frames[0];
    if let Err(e) = check_frame(f) {
        panic!("malformed output: {e}: {f:02x?}");
    }
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn forwarded_udp_keeps_everything_but_macs_and_ttl(
        ttl in 2u8..=255,
        tos in any::<u8>(),
        id in any::<u16>(),
        ports in any::<(u16, u16)>(),
        payload in proptest::collection::vec(any::<u8>(), 0..1400),
    ) {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(HOST2_MAC, PORT2_MAC)
            .ip(etherparse::IpHeaders::Ipv4(
                {
                    let mut h = etherparse::Ipv4Header::new(0, ttl, etherparse::IpNumber::UDP, HOST2.octets(), HOST3.octets()).unwrap();
                    h.dscp = etherparse::IpDscp::try_new(tos >> 2).unwrap();
                    h.identification = id;
                    h
                },
                Default::default(),
            ))
            .udp(ports.0, ports.1)
            .write(&mut f, &payload)
            .unwrap();
        let out = through(&f);
        let g = the_one(&out[1]);
        let p = SlicedPacket::from_ethernet(g).unwrap();
        let Some(LinkSlice::Ethernet2(eth)) = p.link else { panic!("not Ethernet") };
        prop_assert_eq!(eth.source(), PORT3_MAC);
        prop_assert_eq!(eth.destination(), HOST3_MAC);
        let Some(NetSlice::Ipv4(ip)) = p.net else { panic!("not IPv4") };
        let h = ip.header();
        prop_assert_eq!(h.ttl(), ttl - 1);
        prop_assert_eq!(h.identification(), id);
        prop_assert_eq!(h.dcp().value(), tos >> 2);
        prop_assert_eq!(&g[14 + 20..], &f[14 + 20..], "UDP header and payload untouched");
    }

    #[test]
    fn ttl_expiry_quotes_the_packet_in_a_valid_time_exceeded(
        id in any::<u16>(),
        payload in proptest::collection::vec(any::<u8>(), 0..1000),
    ) {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(HOST2_MAC, PORT2_MAC)
            .ipv4(HOST2.octets(), HOST3.octets(), 1)
            .udp(id, 53)
            .write(&mut f, &payload)
            .unwrap();
        let out = through(&f);
        prop_assert!(out[1].is_empty());
        let g = the_one(&out[0]);
        let p = SlicedPacket::from_ethernet(g).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else { panic!("not IPv4") };
        prop_assert_eq!(ip.header().source_addr(), Ipv4Addr::new(10, 0, 2, 1));
        prop_assert_eq!(ip.header().destination_addr(), HOST2);
        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else { panic!("not ICMP") };
        prop_assert!(matches!(icmp.icmp_type(), Icmpv4Type::TimeExceeded(_)));
        // At least the IP header and 8 bytes of the original (RFC 792),
        // at most what fits in 576 bytes (RFC 1812), byte for byte.
        let quoted = icmp.payload();
        let orig = &f[14..];
        prop_assert!(quoted.len() >= (20 + 8).min(orig.len()));
        prop_assert!(quoted.len() <= 576 - 20 - 8);
        prop_assert_eq!(quoted, &orig[..quoted.len()]);
    }

    #[test]
    fn echo_replies_mirror_the_request(
        id in any::<u16>(),
        seq in any::<u16>(),
        payload in proptest::collection::vec(any::<u8>(), 0..1400),
        v6 in any::<bool>(),
    ) {
        let mut f = Vec::new();
        let eth = PacketBuilder::ethernet2(HOST2_MAC, PORT2_MAC);
        if v6 {
            eth.ipv6("2001:db8:2::2".parse::<Ipv6Addr>().unwrap().octets(), "2001:db8:2::1".parse::<Ipv6Addr>().unwrap().octets(), 64)
                .icmpv6_echo_request(id, seq)
                .write(&mut f, &payload)
                .unwrap();
        } else {
            eth.ipv4(HOST2.octets(), [10, 0, 2, 1], 64)
                .icmpv4_echo_request(id, seq)
                .write(&mut f, &payload)
                .unwrap();
        }
        let out = through(&f);
        let g = the_one(&out[0]);
        let p = SlicedPacket::from_ethernet(g).unwrap();
        let Some(LinkSlice::Ethernet2(eth)) = p.link else { panic!("not Ethernet") };
        prop_assert_eq!(eth.destination(), HOST2_MAC);
        match (&p.net, &p.transport) {
            (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Icmpv4(icmp))) => {
                prop_assert_eq!(ip.header().destination_addr(), HOST2);
                let Icmpv4Type::EchoReply(e) = icmp.icmp_type() else { panic!("not a reply") };
                prop_assert_eq!((e.id, e.seq), (id, seq));
                prop_assert_eq!(icmp.payload(), &payload[..]);
            }
            (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) => {
                prop_assert_eq!(ip.header().destination_addr(), "2001:db8:2::2".parse::<Ipv6Addr>().unwrap());
                let Icmpv6Type::EchoReply(e) = icmp.icmp_type() else { panic!("not a reply") };
                prop_assert_eq!((e.id, e.seq), (id, seq));
                prop_assert_eq!(icmp.payload(), &payload[..]);
            }
            _ => panic!("not an echo reply"),
        }
    }

    #[test]
    fn arp_replies_answer_the_asker(mac in any::<[u8; 5]>(), host in 2u8..=254) {
        let sender_mac = [2, mac[0], mac[1], mac[2], mac[3], mac[4]];
        let sender = [10, 0, 2, host];
        let mut f = Vec::new();
        Ethernet2Header { source: sender_mac, destination: [0xff; 6], ether_type: EtherType::ARP }
            .write(&mut f)
            .unwrap();
        ArpPacket::new(ArpHardwareId::ETHERNET, EtherType::IPV4, ArpOperation::REQUEST,
            &sender_mac, &sender, &[0; 6], &[10, 0, 2, 1])
            .unwrap()
            .write(&mut f)
            .unwrap();
        let out = through(&f);
        let g = the_one(&out[0]);
        let p = SlicedPacket::from_ethernet(g).unwrap();
        let Some(LinkSlice::Ethernet2(eth)) = p.link else { panic!("not Ethernet") };
        prop_assert_eq!(eth.destination(), sender_mac);
        prop_assert_eq!(eth.source(), PORT2_MAC);
        let Some(NetSlice::Arp(arp)) = p.net else { panic!("not ARP") };
        prop_assert_eq!(arp.operation(), ArpOperation::REPLY);
        prop_assert_eq!(arp.sender_hw_addr(), &PORT2_MAC[..]);
        prop_assert_eq!(arp.sender_protocol_addr(), &[10, 0, 2, 1][..]);
        prop_assert_eq!(arp.target_hw_addr(), &sender_mac[..]);
        prop_assert_eq!(arp.target_protocol_addr(), &sender[..]);
    }

    #[test]
    fn neighbour_solicitations_get_a_valid_advertisement(host in 2u16..=0xfffe, mac in any::<[u8; 5]>()) {
        let sender_mac = [2, mac[0], mac[1], mac[2], mac[3], mac[4]];
        let src: Ipv6Addr = format!("2001:db8:2::{host:x}").parse().unwrap();
        let target: Ipv6Addr = "2001:db8:2::1".parse().unwrap();
        // NS body: reserved, target, source link-layer address option.
        let mut body = vec![0u8; 4];
        body.extend_from_slice(&target.octets());
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&sender_mac);
        let mut f = Vec::new();
        let mut solicited = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
        solicited[13..].copy_from_slice(&target.octets()[13..]);
        PacketBuilder::ethernet2(sender_mac, [0x33, 0x33, 0xff, 0, 0, 1])
            .ipv6(src.octets(), solicited, 255)
            .icmpv6(Icmpv6Type::Unknown { type_u8: 135, code_u8: 0, bytes5to8: [0; 4] })
            .write(&mut f, &body[4..])
            .unwrap();
        let out = through(&f);
        let g = the_one(&out[0]);
        let p = SlicedPacket::from_ethernet(g).unwrap();
        let Some(LinkSlice::Ethernet2(eth)) = p.link else { panic!("not Ethernet") };
        prop_assert_eq!(eth.destination(), sender_mac);
        let Some(NetSlice::Ipv6(ip)) = &p.net else { panic!("not IPv6") };
        prop_assert_eq!(ip.header().hop_limit(), 255);
        prop_assert_eq!(ip.header().destination_addr(), src);
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else { panic!("not ICMPv6") };
        prop_assert_eq!(icmp.type_u8(), 136, "neighbour advertisement");
        prop_assert_eq!(&icmp.payload()[..16], &target.octets()[..]);
    }

    #[test]
    fn segments_of_a_super_packet_are_whole_tcp_segments(
        mss in 536u16..=1460,
        len in 1usize..20_000,
        seq in any::<u32>(),
    ) {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
        let mut f = Vec::new();
        PacketBuilder::ethernet2(PORT3_MAC, HOST3_MAC)
            .ipv4(HOST2.octets(), HOST3.octets(), 63)
            .tcp(40000, 5201, seq, 64000)
            .ack(1)
            .write(&mut f, &payload)
            .unwrap();
        let off = Offload { flags: F_NEEDS_CSUM, gso_type: GSO_TCPV4, hdr_len: 54, gso_size: mss, csum_start: 34, csum_offset: 16 };
        let mut scratch = vec![0u8; 2000];
        let mut got = Vec::new();
        let mut expect_seq = seq;
        segment(&f, 14, &off, &mut scratch, |s| {
            check_frame(s).unwrap();
            let p = SlicedPacket::from_ethernet(s).unwrap();
            let Some(TransportSlice::Tcp(tcp)) = p.transport else { panic!("not TCP") };
            assert_eq!(tcp.sequence_number(), expect_seq);
            assert!(tcp.payload().len() <= usize::from(mss));
            expect_seq = expect_seq.wrapping_add(tcp.payload().len() as u32);
            got.extend_from_slice(tcp.payload());
        })
        .unwrap();
        prop_assert_eq!(got, payload);
    }
}

/// An echo request of all zeros (id, sequence, no payload) has checksum
/// 0xf7ff; its reply must carry 0xffff, which an incremental update alone
/// gets wrong (0). Found by the `parse_ipv4` fuzz target.
#[test]
fn an_echo_of_all_zeros_gets_a_valid_reply() {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(HOST2_MAC, PORT2_MAC)
        .ipv4(HOST2.octets(), [10, 0, 2, 1], 64)
        .icmpv4_echo_request(0, 0)
        .write(&mut f, &[])
        .unwrap();
    let out = through(&f);
    let g = the_one(&out[0]);
    assert_eq!(&g[14 + 20..], &[0, 0, 0xff, 0xff, 0, 0, 0, 0]);
}
