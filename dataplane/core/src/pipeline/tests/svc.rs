//! Services in the pipeline, named after what they prove: a load balancer
//! on Port2 (10.0.2.100, TCP 80 and UDP 53) with three backends on Port3.

use super::*;
use crate::nat::Proto;
use crate::service::{Backend, BackendState, ServiceConfig, ServiceKind, ServicePort};

const VIP: [u8; 4] = [10, 0, 2, 100];
const BACKENDS: [[u8; 4]; 3] = [[192, 168, 20, 51], [192, 168, 20, 52], [192, 168, 20, 53]];

pub(super) fn service(kind: ServiceKind, states: [BackendState; 3]) -> ServiceConfig {
    ServiceConfig {
        name: "web".into(),
        kind,
        vips: vec![IpAddr::from(VIP)],
        announce: Some(P2),
        ports: vec![
            ServicePort {
                proto: Proto::Tcp,
                port: 80,
                target: 8080,
            },
            ServicePort {
                proto: Proto::Udp,
                port: 53,
                target: 5353,
            },
        ],
        backends: BACKENDS
            .iter()
            .zip(states)
            .map(|(a, state)| Backend {
                addr: IpAddr::from(*a),
                weight: 1,
                state,
            })
            .collect(),
        affinity: None,
    }
}

const ACTIVE: [BackendState; 3] = [BackendState::Active; 3];

fn balancer(kind: ServiceKind) -> Router {
    let mut r = router();
    for (i, b) in BACKENDS.iter().enumerate() {
        r.add_static_neighbor(P3, IpAddr::from(*b), MacAddr([2, 0, 0, 0, 0x51, i as u8]));
    }
    r.add_static_neighbor(P2, "10.0.2.1".parse().unwrap(), GW_MAC);
    r.set_services(vec![service(kind, ACTIVE)], vec![false, true], 1 << 16);
    r
}

/// A client's packet from the internet (through the gateway) to the VIP.
fn to_vip(client: u32, sport: u16, tcp_flags: Option<u8>) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(GW_MAC.0, P2_MAC.0).ipv4(
        (0xc633_6400 + client).to_be_bytes(),
        VIP,
        64,
    );
    match tcp_flags {
        Some(f) => {
            let mut b = b.tcp(sport, 80, 1, 1000);
            if f & 0x02 != 0 {
                b = b.syn();
            }
            if f & 0x10 != 0 {
                b = b.ack(1);
            }
            b.write(&mut v, b"").unwrap();
        }
        None => b.udp(sport, 53).write(&mut v, b"q").unwrap(),
    }
    v
}

/// (destination address, destination port) of each frame sent on Port3.
fn backends_hit(r: &mut Router) -> Vec<(Ipv4Addr, u16)> {
    sent(r, P3)
        .iter()
        .map(|f| {
            let s = SlicedPacket::from_ethernet(f).unwrap();
            let dport = match s.transport {
                Some(TransportSlice::Udp(u)) => u.destination_port(),
                Some(TransportSlice::Tcp(t)) => t.destination_port(),
                _ => 0,
            };
            (ipv4_of(f).1, dport)
        })
        .collect()
}

#[test]
fn a_new_flow_goes_to_a_backend_and_its_reply_comes_from_the_vip() {
    let mut r = balancer(ServiceKind::LoadBalancer);
    feed(&mut r, P2, t(0), &[to_vip(1, 4000, None)]);
    let out = sent(&mut r, P3);
    assert_eq!(out.len(), 1);
    let (src, dst, _, _) = ipv4_of(&out[0]);
    assert_eq!(
        src,
        Ipv4Addr::new(198, 51, 100, 1),
        "the client's address reaches the pod"
    );
    assert!(BACKENDS.contains(&dst.octets()));
    // The backend answers the client: it leaves Port2 from the VIP.
    let mac = MacAddr([
        2,
        0,
        0,
        0,
        0x51,
        BACKENDS.iter().position(|b| *b == dst.octets()).unwrap() as u8,
    ]);
    let mut reply = Vec::new();
    PacketBuilder::ethernet2(mac.0, P3_MAC.0)
        .ipv4(dst.octets(), [198, 51, 100, 1], 64)
        .udp(5353, 4000)
        .write(&mut reply, b"a")
        .unwrap();
    feed(&mut r, P3, t(10), &[reply]);
    let out = sent(&mut r, P2);
    assert_eq!(out.len(), 1);
    let s = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(TransportSlice::Udp(u)) = s.transport else {
        panic!("UDP")
    };
    assert_eq!(
        (ipv4_of(&out[0]).0, u.source_port()),
        (Ipv4Addr::from(VIP), 53)
    );
    assert_identity(&r);
}

#[test]
fn maglev_removing_a_backend_moves_no_surviving_flow() {
    let mut r = balancer(ServiceKind::LoadBalancer);
    let syns: Vec<_> = (0..300)
        .map(|i| to_vip(i, 10_000 + i as u16, Some(0x02)))
        .collect();
    feed(&mut r, P2, t(0), &syns);
    let before = backends_hit(&mut r);
    assert_eq!(before.len(), 300);
    let gone = Ipv4Addr::from(BACKENDS[1]);
    r.set_services(
        vec![service(
            ServiceKind::LoadBalancer,
            [
                BackendState::Active,
                BackendState::Removed,
                BackendState::Active,
            ],
        )],
        vec![false, true],
        1 << 16,
    );
    let acks: Vec<_> = (0..300)
        .map(|i| to_vip(i, 10_000 + i as u16, Some(0x10)))
        .collect();
    feed(&mut r, P2, t(1000), &acks);
    let after = backends_hit(&mut r);
    let survivors: Vec<_> = before.iter().filter(|(b, _)| *b != gone).copied().collect();
    assert_eq!(
        after, survivors,
        "every flow to a surviving backend kept it"
    );
    let cut = before.len() - survivors.len();
    assert!(cut > 50, "{cut} flows were on the removed backend");
    assert_eq!(drops(&r, DropReason::ServiceBackendGone), cut as u64);
    // Their clients hear a reset from the VIP at once.
    let resets = sent(&mut r, P2);
    assert_eq!(resets.len(), cut);
    for f in &resets {
        let s = SlicedPacket::from_ethernet(f).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = s.transport else {
            panic!("TCP")
        };
        assert_eq!(ipv4_of(f).0, Ipv4Addr::from(VIP));
        assert_eq!(tcp.source_port(), 80);
        assert!(tcp.rst() && !tcp.ack(), "a reset");
        assert_eq!(tcp.sequence_number(), 1, "the segment's acknowledgment");
    }
}

#[test]
fn udp_flow_to_removed_backend_moves_within_one_packet() {
    let mut r = balancer(ServiceKind::LoadBalancer);
    let first: Vec<_> = (0..200).map(|i| to_vip(i, 20_000, None)).collect();
    feed(&mut r, P2, t(0), &first);
    let before = backends_hit(&mut r);
    let gone = Ipv4Addr::from(BACKENDS[0]);
    r.set_services(
        vec![service(
            ServiceKind::LoadBalancer,
            [
                BackendState::Removed,
                BackendState::Active,
                BackendState::Active,
            ],
        )],
        vec![false, true],
        1 << 16,
    );
    feed(&mut r, P2, t(1000), &first);
    let after = backends_hit(&mut r);
    assert_eq!(after.len(), 200, "no packet lost");
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(a.0, gone);
        if b.0 != gone {
            assert_eq!(a, b, "a flow whose backend lives keeps it");
        }
    }
}

#[test]
fn drain_admits_no_new_flow() {
    let mut r = balancer(ServiceKind::LoadBalancer);
    let old: Vec<_> = (0..200).map(|i| to_vip(i, 30_000, None)).collect();
    feed(&mut r, P2, t(0), &old);
    let before = backends_hit(&mut r);
    let draining = Ipv4Addr::from(BACKENDS[2]);
    r.set_services(
        vec![service(
            ServiceKind::LoadBalancer,
            [
                BackendState::Active,
                BackendState::Active,
                BackendState::Draining,
            ],
        )],
        vec![false, true],
        1 << 16,
    );
    feed(&mut r, P2, t(1000), &old);
    assert_eq!(
        backends_hit(&mut r),
        before,
        "existing flows carry on, the draining one's too"
    );
    let new: Vec<_> = (1000..1600).map(|i| to_vip(i, 30_001, None)).collect();
    feed(&mut r, P2, t(1000), &new);
    let hit = backends_hit(&mut r);
    assert_eq!(hit.len(), 600);
    assert!(
        hit.iter().all(|(b, _)| *b != draining),
        "no new flow on the draining backend"
    );
}

#[test]
fn clusterip_from_outside_is_dropped() {
    let mut r = balancer(ServiceKind::ClusterIp);
    feed(&mut r, P2, t(0), &[to_vip(1, 4000, None)]);
    assert!(sent(&mut r, P3).is_empty());
    assert_eq!(drops(&r, DropReason::ServiceOutsideCluster), 1);
    // From an internal interface (Port3 here) it is balanced.
    let mut v = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC.0, P3_MAC.0)
        .ipv4([192, 168, 20, 99], VIP, 64)
        .udp(4000, 53)
        .write(&mut v, b"q")
        .unwrap();
    r.add_static_neighbor(P3, "192.168.20.99".parse().unwrap(), HOST_MAC);
    feed(&mut r, P3, t(0), &[v]);
    assert_eq!(backends_hit(&mut r).len(), 1);
    assert_identity(&r);
}

#[test]
fn a_port_the_service_does_not_serve_is_dropped_by_name() {
    let mut r = balancer(ServiceKind::LoadBalancer);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(GW_MAC.0, P2_MAC.0)
        .ipv4([198, 51, 100, 1], VIP, 64)
        .udp(4000, 54)
        .write(&mut v, b"q")
        .unwrap();
    feed(&mut r, P2, t(0), &[v]);
    assert_eq!(drops(&r, DropReason::ServiceNoPort), 1);
}

#[test]
fn the_vip_is_answered_by_arp_on_its_port_only() {
    let mut r = balancer(ServiceKind::LoadBalancer);
    let req = super::l2::arp(1, HOST_MAC, [10, 0, 2, 7], VIP, MacAddr::BROADCAST);
    feed(&mut r, P2, t(0), &[req]);
    let out = sent(&mut r, P2);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][20..22], &[0, 2], "ARP reply");
    assert_eq!(&out[0][22..28], &P2_MAC.0, "the VIP is at Port2's MAC");
    assert_eq!(&out[0][28..32], &VIP);
    let req = super::l2::arp(1, HOST_MAC, [192, 168, 20, 7], VIP, MacAddr::BROADCAST);
    feed(&mut r, P3, t(0), &[req]);
    assert!(sent(&mut r, P3).is_empty(), "not announced on Port3");
}

#[test]
fn new_flows_split_evenly() {
    let mut r = balancer(ServiceKind::LoadBalancer);
    let flows: Vec<_> = (0..3000)
        .map(|i| to_vip(i, 40_000 + (i % 7) as u16, None))
        .collect();
    for chunk in flows.chunks(64) {
        feed(&mut r, P2, t(0), chunk);
    }
    let hit = backends_hit(&mut r);
    let e = hit.len() as f64 / 3.0;
    let chi2: f64 = BACKENDS
        .iter()
        .map(|b| {
            let n = hit.iter().filter(|(a, _)| a.octets() == *b).count() as f64;
            (n - e) * (n - e) / e
        })
        .sum();
    assert!(chi2 < 9.21, "chi-square {chi2:.2} (1% critical value 9.21)");
}

#[test]
fn an_announcement_is_three_gratuitous_arps_a_second_apart() {
    let mut r = balancer(ServiceKind::LoadBalancer);
    assert!(r.announce_service("web"));
    assert!(!r.announce_service("nope"));
    let mut seen = Vec::new();
    for ms in (0..=3000).step_by(250) {
        r.tick(t(ms));
        for f in sent(&mut r, P2) {
            seen.push((ms, f));
        }
    }
    let times: Vec<u64> = seen.iter().map(|(ms, _)| *ms).collect();
    assert_eq!(times, [0, 1000, 2000]);
    for (_, f) in &seen {
        let arp = etherparse::ArpPacketSlice::from_slice(&f[14..]).unwrap();
        assert_eq!(&f[..6], &MacAddr::BROADCAST.0);
        assert_eq!(arp.operation(), etherparse::ArpOperation::REQUEST);
        assert_eq!(arp.sender_hw_addr(), &P2_MAC.0);
        assert_eq!(arp.sender_protocol_addr(), &VIP, "from the VIP");
        assert_eq!(arp.target_protocol_addr(), &VIP, "for the VIP: gratuitous");
    }
    assert_eq!(r.stats().generated, 3);
    // A port coming up announces what it carries again.
    r.announce_port(P3);
    r.tick(t(5000));
    assert!(sent(&mut r, P2).is_empty(), "nothing is announced on Port3");
    r.announce_port(P2);
    r.tick(t(5000));
    assert_eq!(sent(&mut r, P2).len(), 1);
}

#[test]
fn a_client_beside_its_backend_is_hairpinned_through_the_gateway_and_back() {
    let mut r = balancer(ServiceKind::LoadBalancer);
    r.add_static_neighbor(P3, "192.168.20.99".parse().unwrap(), HOST_MAC);
    let mut q = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC.0, P3_MAC.0)
        .ipv4([192, 168, 20, 99], VIP, 64)
        .udp(4000, 53)
        .write(&mut q, b"q")
        .unwrap();
    feed(&mut r, P3, t(0), &[q]);
    let out = sent(&mut r, P3);
    assert_eq!(out.len(), 1);
    let ((src, sport), (backend, dport)) = {
        let s = SlicedPacket::from_ethernet(&out[0]).unwrap();
        let Some(TransportSlice::Udp(u)) = s.transport else {
            panic!("UDP")
        };
        let (a, b, _, _) = ipv4_of(&out[0]);
        ((a, u.source_port()), (b, u.destination_port()))
    };
    assert_eq!(
        src,
        Ipv4Addr::new(192, 168, 20, 10),
        "sourced from the gateway, so the reply comes back"
    );
    assert_eq!(sport, 4000);
    assert_eq!(dport, 5353);
    let i = BACKENDS
        .iter()
        .position(|b| *b == backend.octets())
        .unwrap();
    let mut reply = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0x51, i as u8], P3_MAC.0)
        .ipv4(backend.octets(), [192, 168, 20, 10], 64)
        .udp(5353, 4000)
        .write(&mut reply, b"a")
        .unwrap();
    feed(&mut r, P3, t(10), &[reply]);
    let out = sent(&mut r, P3);
    assert_eq!(out.len(), 1, "{:?}", r.stats().drops_by_reason());
    let s = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(TransportSlice::Udp(u)) = s.transport else {
        panic!("UDP")
    };
    let (a, b, _, _) = ipv4_of(&out[0]);
    assert_eq!(
        (a, u.source_port()),
        (Ipv4Addr::from(VIP), 53),
        "from the service"
    );
    assert_eq!(
        (b, u.destination_port()),
        (Ipv4Addr::new(192, 168, 20, 99), 4000),
        "to its client"
    );
    assert_eq!(&out[0][..6], &HOST_MAC.0);
    assert_identity(&r);
}

#[test]
fn client_ip_affinity_keeps_a_clients_new_flows_on_one_backend() {
    let mut r = balancer(ServiceKind::LoadBalancer);
    let mut sticky = service(ServiceKind::LoadBalancer, ACTIVE);
    sticky.affinity = Some(10_800);
    r.set_services(vec![sticky.clone()], vec![false, true], 1 << 16);
    // One client, 100 flows (ports): one backend.
    let one: Vec<_> = (0..100).map(|i| to_vip(7, 50_000 + i, None)).collect();
    feed(&mut r, P2, t(0), &one);
    let hit = backends_hit(&mut r);
    assert_eq!(hit.len(), 100);
    assert!(hit.iter().all(|b| b.0 == hit[0].0), "{hit:?}");
    // Many clients: spread.
    let many: Vec<_> = (0..300).map(|i| to_vip(i, 60_000, None)).collect();
    feed(&mut r, P2, t(1000), &many);
    let spread = backends_hit(&mut r);
    let distinct: std::collections::HashSet<_> = spread.iter().map(|b| b.0).collect();
    assert_eq!(distinct.len(), 3);
    // Its backend drained: the client's next new flow goes elsewhere.
    let i = BACKENDS
        .iter()
        .position(|b| *b == hit[0].0.octets())
        .unwrap();
    let mut states = ACTIVE;
    states[i] = BackendState::Draining;
    let mut drained = service(ServiceKind::LoadBalancer, states);
    drained.affinity = Some(10_800);
    r.set_services(vec![drained], vec![false, true], 1 << 16);
    feed(&mut r, P2, t(2000), &[to_vip(7, 40_000, None)]);
    let moved = backends_hit(&mut r);
    assert_eq!(moved.len(), 1);
    assert_ne!(moved[0].0, hit[0].0);
    // Past the timeout, affinity lapses (a new pick, which may be any).
    feed(&mut r, P2, t(20_000_000), &[to_vip(7, 40_001, None)]);
    assert_eq!(backends_hit(&mut r).len(), 1);
}

#[test]
fn with_services_plain_traffic_still_takes_ip4_fast_and_service_traffic_the_stages() {
    let mut r = balancer(ServiceKind::LoadBalancer);
    // Plain forwarding (not to the VIP, not from a backend).
    let plain = udp4(GW_MAC, P2_MAC, [8, 8, 8, 8], [192, 168, 21, 7], 64);
    feed(&mut r, P2, t(0), &[plain]);
    assert_eq!(sent(&mut r, P3).len(), 1);
    assert_eq!(r.stats().fast_path, 1, "plain traffic took ip4-fast");
    // To the VIP: balanced by svc-in, through the stages.
    feed(&mut r, P2, t(1), &[to_vip(1, 4000, None)]);
    let hit = backends_hit(&mut r);
    assert_eq!(hit.len(), 1);
    assert!(BACKENDS.contains(&hit[0].0.octets()) && hit[0].1 == 5353);
    // From a backend: svc-out gives it the VIP back.
    let mut reply = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0x51, 0], P3_MAC.0)
        .ipv4(hit[0].0.octets(), [198, 51, 100, 1], 64)
        .udp(5353, 4000)
        .write(&mut reply, b"a")
        .unwrap();
    feed(&mut r, P3, t(2), &[reply]);
    let out = sent(&mut r, P2);
    assert_eq!(out.len(), 1);
    assert_eq!(ipv4_of(&out[0]).0, Ipv4Addr::from(VIP));
    assert_eq!(r.stats().fast_path, 1, "service traffic took the stages");
    assert_identity(&r);
}

/// A TCP segment from backend `b` (index) port 8080 to the client.
fn from_backend(b: usize, client: (u32, u16), flags: u8) -> Vec<u8> {
    let mut v = Vec::new();
    let mut t = PacketBuilder::ethernet2([2, 0, 0, 0, 0x51, b as u8], P3_MAC.0)
        .ipv4(BACKENDS[b], (0xc633_6400 + client.0).to_be_bytes(), 64)
        .tcp(8080, client.1, 500, 1000)
        .ack(2);
    if flags & 0x02 != 0 {
        t = t.syn();
    }
    if flags & 0x01 != 0 {
        t = t.fin();
    }
    t.write(&mut v, b"").unwrap();
    v
}

/// Source endpoint of each TCP frame sent on Port2.
fn sources_on_p2(r: &mut Router) -> Vec<(Ipv4Addr, u16)> {
    sent(r, P2)
        .iter()
        .map(|f| {
            let s = SlicedPacket::from_ethernet(f).unwrap();
            let Some(TransportSlice::Tcp(t)) = s.transport else {
                panic!("TCP")
            };
            (ipv4_of(f).0, t.source_port())
        })
        .collect()
}

#[test]
fn a_connection_straight_to_a_pod_on_a_closed_service_flows_ports_is_not_rewritten() {
    let mut r = balancer(ServiceKind::LoadBalancer);
    let vip = (Ipv4Addr::from(VIP), 80);
    // Through the service: opened, then closed both ways.
    feed(&mut r, P2, t(0), &[to_vip(1, 4000, Some(0x02))]);
    let (b_addr, _) = backends_hit(&mut r)[0];
    let b = BACKENDS.iter().position(|a| *a == b_addr.octets()).unwrap();
    feed(&mut r, P3, t(1), &[from_backend(b, (1, 4000), 0x12)]);
    feed(&mut r, P2, t(2), &[to_vip(1, 4000, Some(0x11))]);
    feed(&mut r, P3, t(3), &[from_backend(b, (1, 4000), 0x11)]);
    assert_eq!(sources_on_p2(&mut r), [vip, vip], "the service's answers");
    backends_hit(&mut r);

    // The same client port, straight to the pod: its answer is the pod's.
    let mut direct = Vec::new();
    PacketBuilder::ethernet2(GW_MAC.0, P2_MAC.0)
        .ipv4([198, 51, 100, 1], BACKENDS[b], 64)
        .tcp(4000, 8080, 7, 1000)
        .syn()
        .write(&mut direct, b"")
        .unwrap();
    feed(&mut r, P2, t(10), &[direct]);
    assert_eq!(backends_hit(&mut r), [(b_addr, 8080)], "routed as it is");
    feed(&mut r, P3, t(11), &[from_backend(b, (1, 4000), 0x12)]);
    assert_eq!(sources_on_p2(&mut r), [(b_addr, 8080)], "not the service's");

    // The same tuple through the service again: the service answers.
    feed(&mut r, P2, t(20), &[to_vip(1, 4000, Some(0x02))]);
    assert_eq!(backends_hit(&mut r), [(b_addr, 8080)], "the flow's backend");
    feed(&mut r, P3, t(21), &[from_backend(b, (1, 4000), 0x12)]);
    assert_eq!(sources_on_p2(&mut r), [vip]);
    assert_identity(&r);
}

#[test]
fn a_client_port_reused_towards_the_same_pod_through_another_service_gets_another_port() {
    // Two load balancers over the same one pod.
    let mut r = balancer(ServiceKind::LoadBalancer);
    let one = |name: &str, vip: [u8; 4]| ServiceConfig {
        name: name.into(),
        vips: vec![IpAddr::from(vip)],
        backends: vec![Backend {
            addr: IpAddr::from(BACKENDS[0]),
            weight: 1,
            state: BackendState::Active,
        }],
        ..service(ServiceKind::LoadBalancer, ACTIVE)
    };
    let second = [10, 0, 2, 101];
    r.set_services(
        vec![one("web", VIP), one("web2", second)],
        vec![false, true],
        1 << 16,
    );
    let to = |vip: [u8; 4], flags: u8| {
        let mut v = Vec::new();
        let mut b = PacketBuilder::ethernet2(GW_MAC.0, P2_MAC.0)
            .ipv4([198, 51, 100, 1], vip, 64)
            .tcp(4000, 80, 1, 1000);
        if flags & 0x02 != 0 {
            b = b.syn();
        }
        b.write(&mut v, b"").unwrap();
        v
    };
    feed(&mut r, P2, t(0), &[to(VIP, 0x02)]);
    let first = sent(&mut r, P3);
    assert_eq!(first.len(), 1);
    let seen = |f: &[u8]| {
        let s = SlicedPacket::from_ethernet(f).unwrap();
        let Some(TransportSlice::Tcp(t)) = s.transport else {
            panic!("TCP")
        };
        (ipv4_of(f).0, t.source_port())
    };
    let client = Ipv4Addr::new(198, 51, 100, 1);
    assert_eq!(seen(&first[0]), (client, 4000), "the client's own port");
    // The same client port to the other service, onto the same pod: the
    // pod's tuple is taken, so it sees another port.
    feed(&mut r, P2, t(1), &[to(second, 0x02)]);
    let other = sent(&mut r, P3);
    assert_eq!(other.len(), 1);
    let (addr, port) = seen(&other[0]);
    assert_eq!(addr, client, "the client's address still reaches the pod");
    assert_ne!(port, 4000, "another port");

    // Each answer goes back to port 4000 from its own service.
    let answer = |port: u16| {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0x51, 0], P3_MAC.0)
            .ipv4(BACKENDS[0], client.octets(), 64)
            .tcp(8080, port, 500, 1000)
            .syn()
            .ack(2)
            .write(&mut v, b"")
            .unwrap();
        v
    };
    feed(&mut r, P3, t(2), &[answer(port), answer(4000)]);
    let back: Vec<_> = sent(&mut r, P2)
        .iter()
        .map(|f| {
            let s = SlicedPacket::from_ethernet(f).unwrap();
            let Some(TransportSlice::Tcp(t)) = s.transport else {
                panic!("TCP")
            };
            (
                ipv4_of(f).0,
                t.source_port(),
                ipv4_of(f).1,
                t.destination_port(),
            )
        })
        .collect();
    assert_eq!(
        back,
        [
            (Ipv4Addr::from(second), 80, client, 4000),
            (Ipv4Addr::from(VIP), 80, client, 4000),
        ]
    );
    assert_identity(&r);
}
