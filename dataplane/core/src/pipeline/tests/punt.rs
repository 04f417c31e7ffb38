//! Punt and inject through a host mirror, on in-memory ports.

use super::*;

const MIRROR: PortId = 2;

/// The test router with a third port, Port2's host mirror.
fn mirrored(cfg: RouterConfig) -> Router {
    let r = router_with(cfg.clone(), 1500);
    let mut ports: Vec<PortInfo> = r.ports().iter().map(|(_, p)| p.clone()).collect();
    ports.push(PortInfo {
        name: "Port2/host".into(),
        mac: P2_MAC,
        v4: Vec::new(),
        v6: Vec::new(),
        mtu: 1500,
        up: true,
    });
    let routes = vec![Route {
        prefix: "10.0.2.0/24".parse().unwrap(),
        port: P2,
        next_hop: None,
        metric: 0,
    }];
    let (fib, _) = Fib::build(&routes, |_| true);
    let mut r = Router::new(PortTable::new(ports), Arc::new(fib), &cfg);
    r.set_mirrors(&[(P2, MIRROR)]);
    r
}

fn tcp_syn(dst: [u8; 4], port: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(GW_MAC.0, P2_MAC.0)
        .ipv4([10, 0, 2, 1], dst, 64)
        .tcp(40000, port, 1, 64240)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    v
}

fn icmp_echo(reply: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(GW_MAC.0, P2_MAC.0).ipv4([10, 0, 2, 1], [10, 0, 2, 15], 64);
    let b = if reply {
        b.icmpv4_echo_reply(7, 1)
    } else {
        b.icmpv4_echo_request(7, 1)
    };
    b.write(&mut v, b"ping").unwrap();
    v
}

#[test]
fn what_edgefwd_does_not_answer_goes_to_the_mirror_unchanged() {
    let mut r = mirrored(RouterConfig::default());
    let syn = tcp_syn([10, 0, 2, 15], 22);
    let reply = icmp_echo(true);
    feed(&mut r, P2, t(0), &[syn.clone(), reply.clone()]);
    assert_eq!(sent(&mut r, MIRROR), vec![syn, reply]);
    assert!(sent(&mut r, P2).is_empty());
    assert_eq!(r.stats().punted, 2);
    assert_eq!(drops(&r, DropReason::LocalUnsupported), 0);
    assert_identity(&r);
}

#[test]
fn echo_requests_stay_edgefwds() {
    let mut r = mirrored(RouterConfig::default());
    feed(&mut r, P2, t(0), &[icmp_echo(false)]);
    assert!(sent(&mut r, MIRROR).is_empty());
    let out = sent(&mut r, P2);
    assert_eq!(out.len(), 1, "answered by edgefwd");
    assert_eq!(r.stats().punted, 0);
}

#[test]
fn without_a_mirror_the_same_is_local_unsupported() {
    let mut r = router();
    feed(&mut r, P2, t(0), &[tcp_syn([10, 0, 2, 15], 22)]);
    assert_eq!(drops(&r, DropReason::LocalUnsupported), 1);
    assert_eq!(r.stats().punted, 0);
}

#[test]
fn the_hosts_frames_leave_by_the_port_as_they_are() {
    let mut r = mirrored(RouterConfig::default());
    // Even one the pipeline would route elsewhere or drop: the host chose.
    let frame = udp4(P2_MAC, GW_MAC, [10, 0, 2, 15], [192, 168, 21, 7], 1);
    feed(&mut r, MIRROR, t(0), std::slice::from_ref(&frame));
    assert_eq!(sent(&mut r, P2), vec![frame]);
    assert_eq!(r.stats().injected, 1);
    assert_eq!(r.stats().forwarded, 1);
    assert_identity(&r);
}

#[test]
fn punting_beyond_the_rate_is_dropped_as_punt_dropped() {
    let cfg = RouterConfig {
        punt_rate: 10,
        punt_burst: 10,
        ..RouterConfig::default()
    };
    let mut r = mirrored(cfg);
    let flood: Vec<Vec<u8>> = (0..100)
        .map(|i| tcp_syn([10, 0, 2, 15], 1000 + i))
        .collect();
    feed(&mut r, P2, t(0), &flood);
    assert_eq!(sent(&mut r, MIRROR).len(), 10);
    assert_eq!(drops(&r, DropReason::PuntDropped), 90);
    // A second later, ten more.
    feed(&mut r, P2, t(1000), &flood[..20]);
    assert_eq!(sent(&mut r, MIRROR).len(), 10);
    assert_identity(&r);
}

#[test]
fn a_mirror_down_drops_punts_as_port_down() {
    let mut r = mirrored(RouterConfig::default());
    r.set_link(MIRROR, false);
    feed(&mut r, P2, t(0), &[tcp_syn([10, 0, 2, 15], 22)]);
    assert_eq!(drops(&r, DropReason::PortDown), 1);
    assert_identity(&r);
}
