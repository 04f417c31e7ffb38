//! IPv6 and dual-stack services in the pipeline: a load balancer on Port2
//! at 10.0.2.100 and 2001:db8:2::100 (TCP 80 to 8080, UDP 53 to 5353),
//! with three IPv4 and three IPv6 backends on Port3. Every frame sent is
//! held to `check_frame` (etherparse's checksums) by `sent`.

use super::*;
use crate::service::{Backend, BackendState, ServiceConfig, ServiceKind};

const VIP4: [u8; 4] = [10, 0, 2, 100];
const VIP6: &str = "2001:db8:2::100";
const CLIENT6: &str = "2001:db8:2::99";

fn vip6() -> Ipv6Addr {
    VIP6.parse().unwrap()
}

fn backends6() -> [Ipv6Addr; 3] {
    ["2001:db8:20::51", "2001:db8:20::52", "2001:db8:20::53"].map(|a| a.parse().unwrap())
}

fn backend_mac(i: usize) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0x61, i as u8])
}

fn service(states6: [BackendState; 3]) -> ServiceConfig {
    let v4 = (51..54).map(|i| Backend {
        addr: IpAddr::from([192, 168, 20, i]),
        weight: 1,
        state: BackendState::Active,
    });
    let v6 = backends6()
        .into_iter()
        .zip(states6)
        .map(|(a, state)| Backend {
            addr: a.into(),
            weight: 1,
            state,
        });
    // The IPv4 tests' load balancer (ports TCP 80 to 8080, UDP 53 to
    // 5353, announced on Port2), with both addresses and both families'
    // backends.
    ServiceConfig {
        vips: vec![IpAddr::from(VIP4), vip6().into()],
        backends: v4.chain(v6).collect(),
        ..super::svc::service(ServiceKind::LoadBalancer, [BackendState::Active; 3])
    }
}

fn balancer() -> Router {
    let mut r = router();
    for (i, b) in backends6().into_iter().enumerate() {
        r.add_static_neighbor(P3, b.into(), backend_mac(i));
    }
    for i in 0..3u8 {
        r.add_static_neighbor(
            P3,
            IpAddr::from([192, 168, 20, 51 + i]),
            backend_mac(usize::from(i)),
        );
    }
    r.add_static_neighbor(P2, CLIENT6.parse().unwrap(), GW_MAC);
    r.set_services(
        vec![service([BackendState::Active; 3])],
        vec![false, true],
        1 << 16,
    );
    r
}

/// A TCP segment (`flags`: SYN 0x02, ACK 0x10) or, without flags, a UDP
/// datagram, from `src` to `dst`, as `from` sends it to `to`.
fn seg6(
    (from, to): (MacAddr, MacAddr),
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    flags: Option<u8>,
) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(from.0, to.0).ipv6(src.0.octets(), dst.0.octets(), 64);
    match flags {
        Some(f) => {
            let mut b = b.tcp(src.1, dst.1, 1, 1000);
            if f & 0x02 != 0 {
                b = b.syn();
            }
            if f & 0x10 != 0 {
                b = b.ack(1);
            }
            b.write(&mut v, b"hello").unwrap();
        }
        None => b.udp(src.1, dst.1).write(&mut v, b"q").unwrap(),
    }
    v
}

fn client(sport: u16, flags: Option<u8>) -> Vec<u8> {
    let port = if flags.is_some() { 80 } else { 53 };
    let src = (CLIENT6.parse().unwrap(), sport);
    seg6((GW_MAC, P2_MAC), src, (vip6(), port), flags)
}

/// Source and destination endpoints of an IPv6 TCP or UDP frame.
fn endpoints6(frame: &[u8]) -> ((Ipv6Addr, u16), (Ipv6Addr, u16)) {
    let s = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Ipv6(ip)) = s.net else {
        panic!("not IPv6")
    };
    let h = ip.header();
    let (sp, dp) = match s.transport {
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        _ => panic!("not TCP or UDP"),
    };
    ((h.source_addr(), sp), (h.destination_addr(), dp))
}

#[test]
fn an_ipv6_flow_goes_to_an_ipv6_backend_and_its_reply_comes_from_the_vip() {
    let mut r = balancer();
    feed(&mut r, P2, t(0), &[client(4000, Some(0x02))]);
    let out = sent(&mut r, P3);
    assert_eq!(out.len(), 1);
    let (src, dst) = endpoints6(&out[0]);
    assert_eq!(
        src,
        (CLIENT6.parse().unwrap(), 4000),
        "the client reaches the pod"
    );
    let i = backends6()
        .iter()
        .position(|b| *b == dst.0)
        .expect("an IPv6 backend");
    assert_eq!(dst.1, 8080);
    assert_eq!(&out[0][..6], &backend_mac(i).0);

    // The backend's SYN-ACK leaves Port2 from the VIP's port 80.
    let reply = seg6((backend_mac(i), P3_MAC), dst, src, Some(0x12));
    feed(&mut r, P3, t(10), &[reply]);
    let out = sent(&mut r, P2);
    assert_eq!(out.len(), 1);
    assert_eq!(endpoints6(&out[0]), ((vip6(), 80), src));
    assert_eq!(r.services().counters().next().unwrap().1.new_flows, 1);
    assert_identity(&r);
}

#[test]
fn each_family_goes_to_backends_of_its_own_family() {
    let mut r = balancer();
    let v6: Vec<_> = (0..300).map(|i| client(10_000 + i, None)).collect();
    let v4: Vec<_> = (0..300u32)
        .map(|i| {
            let mut v = Vec::new();
            PacketBuilder::ethernet2(GW_MAC.0, P2_MAC.0)
                .ipv4((0xc633_6400 + i).to_be_bytes(), VIP4, 64)
                .udp(4000, 53)
                .write(&mut v, b"q")
                .unwrap();
            v
        })
        .collect();
    feed(&mut r, P2, t(0), &v6);
    feed(&mut r, P2, t(0), &v4);
    let out = sent(&mut r, P3);
    assert_eq!(out.len(), 600);
    let mut per = std::collections::HashMap::<IpAddr, usize>::new();
    for f in &out {
        let s = SlicedPacket::from_ethernet(f).unwrap();
        let dst = match s.net {
            Some(NetSlice::Ipv6(ip)) => IpAddr::V6(ip.header().destination_addr()),
            Some(NetSlice::Ipv4(ip)) => IpAddr::V4(ip.header().destination_addr()),
            _ => panic!("IP"),
        };
        *per.entry(dst).or_default() += 1;
    }
    let six: usize = backends6().iter().map(|b| per[&IpAddr::V6(*b)]).sum();
    assert_eq!(six, 300, "IPv6 clients reach IPv6 backends only");
    for (a, n) in &per {
        assert!(*n > 60, "{a} took {n} of 300: every backend takes a share");
    }
}

#[test]
fn an_ipv6_udp_flow_to_a_removed_backend_moves_and_tcp_mid_flow_gets_a_reset() {
    let mut r = balancer();
    let udp: Vec<_> = (0..200).map(|i| client(20_000 + i, None)).collect();
    let syns: Vec<_> = (0..200).map(|i| client(30_000 + i, Some(0x02))).collect();
    feed(&mut r, P2, t(0), &udp);
    feed(&mut r, P2, t(0), &syns);
    let before: Vec<_> = sent(&mut r, P3).iter().map(|f| endpoints6(f).1).collect();
    let gone = backends6()[1];
    r.set_services(
        vec![service([
            BackendState::Active,
            BackendState::Removed,
            BackendState::Active,
        ])],
        vec![false, true],
        1 << 16,
    );
    let acks: Vec<_> = (0..200).map(|i| client(30_000 + i, Some(0x10))).collect();
    feed(&mut r, P2, t(1000), &udp);
    feed(&mut r, P2, t(1000), &acks);
    let after: Vec<_> = sent(&mut r, P3).iter().map(|f| endpoints6(f).1).collect();
    let (udp_before, tcp_before) = before.split_at(200);
    assert_eq!(&after[..200].len(), &200, "no UDP packet lost");
    for (b, a) in udp_before.iter().zip(&after[..200]) {
        assert_ne!(a.0, gone, "moved with its next packet");
        if b.0 != gone {
            assert_eq!(a, b, "a flow whose backend lives keeps it");
        }
    }
    let survivors: Vec<_> = tcp_before.iter().filter(|b| b.0 != gone).copied().collect();
    assert_eq!(&after[200..], survivors.as_slice());
    let cut = tcp_before.len() - survivors.len();
    assert!(cut > 30, "{cut} connections were on the removed backend");
    let resets = sent(&mut r, P2);
    assert_eq!(resets.len(), cut);
    for f in &resets {
        let s = SlicedPacket::from_ethernet(f).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = s.transport else {
            panic!("TCP")
        };
        assert_eq!(endpoints6(f).0, (vip6(), 80), "from the VIP");
        assert!(tcp.rst() && !tcp.ack());
        assert_eq!(tcp.sequence_number(), 1, "the segment's acknowledgment");
    }
    assert_eq!(drops(&r, DropReason::ServiceBackendGone), cut as u64);
}

/// A neighbour solicitation for `target` from a host on Port2, to
/// `dst` (the target's solicited-node group, or the target itself).
fn solicit(target: Ipv6Addr, dst: Ipv6Addr, port_mac: MacAddr) -> Vec<u8> {
    let host: Ipv6Addr = "2001:db8:2::7".parse().unwrap();
    let mut ns = [0u8; 32];
    ns[0] = 135;
    ns[8..24].copy_from_slice(&target.octets());
    ns[24] = 1;
    ns[25] = 1;
    ns[26..32].copy_from_slice(&HOST_MAC.0);
    let mac = if dst.is_multicast() {
        MacAddr::ipv6_multicast(dst)
    } else {
        port_mac
    };
    icmp6_frame(HOST_MAC, mac, host, dst, 255, &mut ns)
}

/// The target and target link-layer address of a neighbour advertisement.
fn advert(frame: &[u8]) -> (Ipv6Addr, MacAddr, u8) {
    assert_eq!(frame[54], 136, "a neighbour advertisement");
    let target: [u8; 16] = frame[62..78].try_into().unwrap();
    assert_eq!(frame[78], 2, "target link-layer address option");
    (
        target.into(),
        MacAddr::from_slice(&frame[80..86]).unwrap(),
        frame[58],
    )
}

#[test]
fn the_ipv6_vip_is_answered_by_ndp_on_its_port_only() {
    let mut r = balancer();
    let group = super::nd::solicited_node(vip6());
    feed(&mut r, P2, t(0), &[solicit(vip6(), group, P2_MAC)]);
    let out = sent(&mut r, P2);
    assert_eq!(out.len(), 1);
    let (target, mac, flags) = advert(&out[0]);
    assert_eq!((target, mac), (vip6(), P2_MAC), "the VIP is at Port2's MAC");
    assert_eq!(flags & 0x40, 0x40, "solicited");
    // Unreachability detection asks the VIP itself.
    feed(&mut r, P2, t(1), &[solicit(vip6(), vip6(), P2_MAC)]);
    assert_eq!(sent(&mut r, P2).len(), 1, "a unicast solicitation too");
    // Not on Port3.
    feed(&mut r, P3, t(2), &[solicit(vip6(), group, P3_MAC)]);
    assert!(sent(&mut r, P3).is_empty(), "not announced on Port3");
    assert_identity(&r);
}

#[test]
fn a_dual_stack_announcement_is_three_arps_and_three_unsolicited_nas_a_second_apart() {
    let mut r = balancer();
    assert!(r.announce_service("web"));
    let (mut arps, mut nas) = (Vec::new(), Vec::new());
    for ms in (0..3500).step_by(100) {
        r.tick(t(ms));
        for f in sent(&mut r, P2) {
            match u16::from_be_bytes([f[12], f[13]]) {
                0x0806 => arps.push(ms),
                0x86dd => {
                    let (target, mac, flags) = advert(&f);
                    assert_eq!((target, mac), (vip6(), P2_MAC));
                    assert_eq!(flags & 0x60, 0x20, "override, not solicited");
                    let dst: [u8; 16] = f[38..54].try_into().unwrap();
                    assert_eq!(Ipv6Addr::from(dst), "ff02::1".parse::<Ipv6Addr>().unwrap());
                    assert_eq!(f[21], 255, "hop limit 255");
                    nas.push(ms);
                }
                other => panic!("ethertype {other:#x}"),
            }
        }
    }
    assert_eq!(arps, [0, 1000, 2000]);
    assert_eq!(nas, [0, 1000, 2000]);
}

#[test]
fn an_ipv6_client_beside_its_backend_is_hairpinned_through_the_gateway_and_back() {
    let mut r = balancer();
    // A pod on Port3 reaches its own service.
    let pod: Ipv6Addr = "2001:db8:20::99".parse().unwrap();
    let pod_mac = MacAddr([2, 0, 0, 0, 0x62, 9]);
    r.add_static_neighbor(P3, pod.into(), pod_mac);
    let q = seg6((pod_mac, P3_MAC), (pod, 5555), (vip6(), 53), None);
    feed(&mut r, P3, t(0), &[q]);
    let out = sent(&mut r, P3);
    assert_eq!(out.len(), 1);
    let (src, dst) = endpoints6(&out[0]);
    let gw: Ipv6Addr = "2001:db8:20::10".parse().unwrap();
    assert_eq!(src.0, gw, "sourced from the gateway, so the reply returns");
    let i = backends6().iter().position(|b| *b == dst.0).unwrap();
    // The backend answers the gateway; the pod hears the service.
    let a = seg6((backend_mac(i), P3_MAC), dst, src, None);
    feed(&mut r, P3, t(1), &[a]);
    let out = sent(&mut r, P3);
    assert_eq!(out.len(), 1);
    assert_eq!(endpoints6(&out[0]), ((vip6(), 53), (pod, 5555)));
    assert_eq!(&out[0][..6], &pod_mac.0);
    assert_identity(&r);
}
