//! ip4-fast against the stages alone: the same traffic through a router
//! with it and one without must send the same frames, in the same order,
//! and count the same, whatever mix of packets it takes or leaves.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const GW2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0x99, 2]);

/// The test router (Port3 MTU 1000) plus an ECMP pair of gateways on Port3
/// for 198.51.100.0/24 and neighbours for 10.0.2.2 and the sender, fast
/// path on or off.
fn ecmp_router(fast_path: bool) -> Router {
    let mut r = router_with(
        RouterConfig {
            fast_path,
            ..RouterConfig::default()
        },
        1000,
    );
    let mut routes: Vec<Route> = Vec::new();
    for (prefix, port, nh) in [
        ("10.0.2.0/24", P2, None),
        ("192.168.20.0/24", P3, None),
        ("0.0.0.0/0", P2, Some("10.0.2.1")),
        ("192.168.21.0/24", P3, Some("192.168.20.1")),
        ("198.51.100.0/24", P3, Some("192.168.20.1")),
        ("198.51.100.0/24", P3, Some("192.168.20.2")),
        ("203.0.113.0/24", P2, Some("10.0.2.2")),
    ] {
        routes.push(Route {
            prefix: prefix.parse().unwrap(),
            port,
            next_hop: nh.map(|n| n.parse().unwrap()),
            metric: 0,
        });
    }
    r.set_fib(Arc::new(Fib::build(&routes, |_| true).0));
    r.add_static_neighbor(P3, "192.168.20.2".parse().unwrap(), GW2_MAC);
    r.add_static_neighbor(P2, "10.0.2.2".parse().unwrap(), GW_MAC);
    // The sender, which ICMP errors go back to: resolved, so that nothing
    // waits on a neighbour once the gateways have answered.
    r.add_static_neighbor(P3, "192.168.20.50".parse().unwrap(), HOST_MAC);
    r
}

/// One IPv4 frame from a random mix: mostly forwardable, with every reason
/// ip4-fast has to leave a packet to the stages mixed in.
fn frame(rng: &mut StdRng) -> (PortId, Vec<u8>) {
    let port = if rng.gen_bool(0.5) { P2 } else { P3 };
    let our_mac = if port == P2 { P2_MAC } else { P3_MAC };
    let dsts: [[u8; 4]; 12] = [
        [198, 51, 100, rng.gen()], // ECMP over two gateways
        [192, 168, 21, 7],         // one gateway on Port3
        [203, 0, 113, 9],          // resolved gateway on Port2
        [8, 8, 8, 8],              // default route, gateway unresolved
        [192, 168, 20, 77],        // connected, unresolved
        [10, 0, 2, 15],            // ours
        [192, 168, 20, 255],       // directed broadcast
        [224, 0, 0, 5],            // multicast
        [169, 254, 1, 1],          // link-local
        [127, 0, 0, 1],            // loopback
        [192, 168, 21, rng.gen()],
        [198, 51, 100, 1],
    ];
    let dst = dsts[rng.gen_range(0..dsts.len())];
    let src = match rng.gen_range(0..20) {
        0 => [127, 0, 0, 9],
        1 => [192, 168, 20, 10], // one of ours
        _ => [192, 168, 20, 50],
    };
    let ttl = [0, 1, 2, 64][rng.gen_range(0..4)];
    let payload = vec![0x5a; [20, 20, 20, 1200][rng.gen_range(0..4)]];
    let mut f = Vec::new();
    let dst_mac = match rng.gen_range(0..20) {
        0 => MacAddr([0xff; 6]),
        1 => MacAddr([2, 0, 0, 0, 0x77, 7]),
        _ => our_mac,
    };
    let src_mac = if rng.gen_range(0..20) == 0 {
        MacAddr([1, 0, 0x5e, 0, 0, 1])
    } else {
        HOST_MAC
    };
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0).ipv4(src, dst, ttl);
    let b = if rng.gen_bool(0.5) {
        b
    } else {
        // Don't fragment: too big for Port3 then needs an ICMP error.
        let mut h =
            etherparse::Ipv4Header::new(0, ttl, etherparse::IpNumber::UDP, src, dst).unwrap();
        h.dont_fragment = true;
        PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
            .ip(etherparse::IpHeaders::Ipv4(h, Default::default()))
    };
    b.udp(4000, 53).write(&mut f, &payload).unwrap();
    match rng.gen_range(0..20) {
        0 => f[24] ^= 0x40,                // bad header checksum
        1 => f.extend_from_slice(&[0; 9]), // Ethernet padding
        2 => f.truncate(30),               // runt
        3 => f[16] = 0xff,                 // total length beyond the frame
        _ => {}
    }
    (port, f)
}

/// Runs the same bursts through both routers and compares everything:
/// Port3's link goes down for a while (the FIB unchanged: routes through it
/// drop as `port_down`), the neighbours for the unresolved next hops answer
/// halfway, the default gateway moves to another MAC later, and at the end
/// the clock jumps past the learned entries' lifetime. Each of these must
/// reach ip4-fast's kept rewrites as it reaches the stages.
#[test]
fn ip4_fast_changes_nothing_but_speed() {
    let mut rng = StdRng::seed_from_u64(6);
    let bursts: Vec<Vec<(PortId, Vec<u8>)>> = (0..200)
        .map(|_| (0..rng.gen_range(1..64)).map(|_| frame(&mut rng)).collect())
        .collect();
    let mut fast = ecmp_router(true);
    let mut staged = ecmp_router(false);
    let answers = [
        l2::arp(2, GW_MAC, [10, 0, 2, 1], [10, 0, 2, 15], P2_MAC),
        l2::arp(2, HOST_MAC, [192, 168, 20, 77], [192, 168, 20, 10], P3_MAC),
    ];
    let moved = l2::arp(2, GW2_MAC, [10, 0, 2, 1], [10, 0, 2, 15], P2_MAC);
    for (i, burst) in bursts.iter().enumerate() {
        let stale = if i >= 170 { 301_000 } else { 0 };
        let at = t(i as u64 * 10 + stale);
        let mut outs = Vec::new();
        for r in [&mut fast, &mut staged] {
            if i == 40 || i == 60 {
                r.set_link(P3, i == 60);
            }
            let mut pkts = Vec::new();
            if i == 170 {
                // First after the jump, before anything else can touch the
                // neighbour table: a packet for the stale gateway.
                let f = udp4(HOST_MAC, P3_MAC, [192, 168, 20, 50], [8, 8, 8, 8], 64);
                r.receive(&mut pkts, P3, at, &f);
            }
            for (port, f) in burst {
                r.receive(&mut pkts, *port, at, f);
            }
            if i == 100 {
                for (port, a) in [P2, P3].iter().zip(&answers) {
                    r.receive(&mut pkts, *port, at, a);
                }
            }
            if i == 140 {
                r.receive(&mut pkts, P2, at, &moved);
            }
            r.process(&mut pkts, at);
            outs.push((sent(r, P2), sent(r, P3)));
        }
        assert_eq!(outs[0], outs[1], "burst {i}");
    }
    fast.finish();
    staged.finish();
    let (f, s) = (fast.stats(), staged.stats());
    assert!(
        f.fast_path > f.forwarded / 2,
        "ip4-fast took only {} of {} forwarded",
        f.fast_path,
        f.forwarded
    );
    assert!(f.forwarded > f.fast_path, "the stages forwarded some too");
    assert_eq!(s.fast_path, 0);
    let without_fast = Stats {
        fast_path: 0,
        ..f.clone()
    };
    assert_eq!(format!("{without_fast:?}"), format!("{s:?}"));
    assert_eq!(fast.group_hits(), staged.group_hits());
    assert_identity(&fast);
}
