//! The FIB against a naive oracle: a linear scan over all routes.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What the FIB must answer for `a`: the adjacencies of the lowest-metric
/// routes (on up ports) of the longest matching prefix.
fn oracle(routes: &[Route], up: &[bool], a: IpAddr) -> Option<Vec<Adjacency>> {
    let usable = routes
        .iter()
        .filter(|r| up[r.port as usize] && r.prefix.contains(&a));
    let longest = usable.clone().map(|r| r.prefix.prefix_len()).max()?;
    let at_len = usable.filter(|r| r.prefix.prefix_len() == longest);
    let best = at_len.clone().map(|r| r.metric).min()?;
    let mut m: Vec<Adjacency> = at_len
        .filter(|r| r.metric == best)
        .map(|r| Adjacency {
            port: r.port,
            next_hop: r.next_hop,
        })
        .collect();
    m.sort();
    m.dedup();
    Some(m)
}

fn random_v4_prefix(rng: &mut StdRng) -> IpNet {
    // Few distinct high bits so that prefixes overlap often.
    let addr = Ipv4Addr::from(rng.gen::<u32>() & 0xc3ff_ffff);
    let len = rng.gen_range(0..=32);
    IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc())
}

fn random_v6_prefix(rng: &mut StdRng) -> IpNet {
    let addr = Ipv6Addr::from(rng.gen::<u128>() & !(0x3fu128 << 120));
    let len = rng.gen_range(0..=128);
    IpNet::V6(Ipv6Net::new(addr, len).unwrap().trunc())
}

fn random_routes(rng: &mut StdRng, n: usize, v6: bool) -> Vec<Route> {
    let mut routes = Vec::new();
    while routes.len() < n {
        let prefix = if v6 {
            random_v6_prefix(rng)
        } else {
            random_v4_prefix(rng)
        };
        // Several routes per prefix: different metrics, sometimes equal (ECMP).
        for _ in 0..rng.gen_range(1..=3) {
            let gw = if v6 {
                IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, rng.gen_range(1..5)))
            } else {
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, rng.gen_range(1..5)))
            };
            routes.push(Route {
                prefix,
                port: rng.gen_range(0..4),
                next_hop: if rng.gen_bool(0.8) { Some(gw) } else { None },
                metric: rng.gen_range(0..4) * 100,
            });
        }
    }
    routes
}

fn sample_address(rng: &mut StdRng, routes: &[Route]) -> IpAddr {
    // Half inside a known prefix (at a random offset), half anywhere.
    let r = &routes[rng.gen_range(0..routes.len())];
    match (r.prefix, rng.gen_bool(0.5)) {
        (IpNet::V4(p), true) => {
            let host = rng.gen::<u32>() & !u32::from(p.netmask());
            IpAddr::V4(Ipv4Addr::from(u32::from(p.network()) | host))
        }
        (IpNet::V6(p), true) => {
            let host = rng.gen::<u128>() & !u128::from(p.netmask());
            IpAddr::V6(Ipv6Addr::from(u128::from(p.network()) | host))
        }
        (IpNet::V4(_), false) => IpAddr::V4(Ipv4Addr::from(rng.gen::<u32>() & 0xc3ff_ffff)),
        (IpNet::V6(_), false) => IpAddr::V6(Ipv6Addr::from(rng.gen::<u128>() & !(0x3fu128 << 120))),
    }
}

fn check_against_oracle<L: Lpm + 'static>(seed: u64, v6: bool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let routes = random_routes(&mut rng, 300, v6);
    let up: Vec<bool> = (0..4).map(|p| p != 3 || seed % 2 == 0).collect();
    let (fib, sel) = Fib::build_with::<L>(&routes, |p| up[p as usize]);
    for (i, r) in routes.iter().enumerate() {
        if !up[r.port as usize] {
            assert!(!sel.selected[i], "route on a down port selected: {r:?}");
        }
    }
    for _ in 0..3000 {
        let a = sample_address(&mut rng, &routes);
        let got = fib.lookup(a).map(|(_, g)| g.members.clone());
        assert_eq!(got, oracle(&routes, &up, a), "seed {seed}, address {a}");
    }
}

#[test]
fn ipv4_matches_naive_oracle() {
    for seed in 0..8 {
        check_against_oracle::<TreeBitmapLpm>(seed, false);
        check_against_oracle::<PoptrieLpm>(seed, false);
    }
}

#[test]
fn ipv6_matches_naive_oracle() {
    for seed in 0..8 {
        check_against_oracle::<TreeBitmapLpm>(seed, true);
        check_against_oracle::<PoptrieLpm>(seed, true);
    }
}

#[test]
fn metric_then_failover_then_return() {
    let p: IpNet = "192.168.21.0/24".parse().unwrap();
    let via = |port, gw: &str, metric| Route {
        prefix: p,
        port,
        next_hop: Some(gw.parse().unwrap()),
        metric,
    };
    let routes = vec![via(1, "192.168.20.1", 100), via(2, "192.168.30.1", 200)];
    let a: IpAddr = "192.168.21.7".parse().unwrap();
    let (fib, sel) = Fib::build(&routes, |_| true);
    assert_eq!(fib.lookup(a).unwrap().1.members[0].port, 1);
    assert_eq!(sel.selected, vec![true, false]);
    let (fib, sel) = Fib::build(&routes, |port| port != 1);
    assert_eq!(fib.lookup(a).unwrap().1.members[0].port, 2);
    assert_eq!(sel.selected, vec![false, true]);
}

#[test]
fn equal_metrics_share_by_flow_hash() {
    let p: IpNet = "0.0.0.0/0".parse().unwrap();
    let routes: Vec<Route> = (0..2)
        .map(|i| Route {
            prefix: p,
            port: i,
            next_hop: Some(IpAddr::V4(Ipv4Addr::new(10, 0, i as u8, 1))),
            metric: 5,
        })
        .collect();
    let (fib, _) = Fib::build(&routes, |_| true);
    let (_, g) = fib.lookup("1.2.3.4".parse().unwrap()).unwrap();
    assert_eq!(g.members.len(), 2);
    let picked: std::collections::HashSet<_> = (0..64u32)
        .map(|h| g.pick(h.wrapping_mul(0x9e37_79b9)).port)
        .collect();
    assert_eq!(picked.len(), 2, "both members carry traffic");
    assert_eq!(g.pick(7), g.pick(7), "a flow sticks to one member");
}

#[test]
fn identical_adjacency_sets_share_one_group() {
    let routes: Vec<Route> = ["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"]
        .iter()
        .map(|p| Route {
            prefix: p.parse().unwrap(),
            port: 0,
            next_hop: Some("10.0.0.1".parse().unwrap()),
            metric: 0,
        })
        .collect();
    let (fib, _) = Fib::build(&routes, |_| true);
    assert_eq!(fib.groups().len(), 1);
}
