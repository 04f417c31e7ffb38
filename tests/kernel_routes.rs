//! Route selection against the Linux kernel: the same ports, addresses and
//! routes (random prefixes, metrics, ECMP groups) installed in a fresh
//! network namespace on veth interfaces, then `ip route get` compared with
//! our lookup for thousands of addresses. No packet is sent anywhere.

mod common;

use common::Netns;

use edgefwd_control::config::Config;
use edgefwd_control::rib::{PortsUp, Rib};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const TEST: &str = "route_selection_matches_the_kernel";
const PORTS: usize = 3;

fn port_v4(i: usize) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 99, i as u8, 1), 24).unwrap()
}

fn port_v6(i: usize) -> Ipv6Net {
    Ipv6Net::new(Ipv6Addr::new(0xfd00, 0x99, i as u16, 0, 0, 0, 0, 1), 64).unwrap()
}

fn gateway(rng: &mut StdRng, port: usize, v6: bool) -> IpAddr {
    let host = rng.gen_range(2..250);
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x99, port as u16, 0, 0, 0, 0, host))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 99, port as u8, host as u8))
    }
}

fn random_prefix(rng: &mut StdRng, v6: bool) -> IpNet {
    loop {
        let p = if v6 {
            let a = Ipv6Addr::from((0x2001_0db8u128 << 96) | (rng.gen::<u128>() >> 36));
            IpNet::V6(Ipv6Net::new(a, rng.gen_range(36..=128)).unwrap().trunc())
        } else {
            let a = Ipv4Addr::from(
                0x0a00_0000 | (rng.gen::<u32>() & 0x00ff_ffff) >> rng.gen_range(0..4),
            );
            IpNet::V4(Ipv4Net::new(a, rng.gen_range(9..=32)).unwrap().trunc())
        };
        // Stay clear of the ports' own subnets (their connected routes carry
        // kernel-specific metrics).
        let overlaps = (0..PORTS).any(|i| match p {
            IpNet::V4(n) => n.contains(&port_v4(i).network()) || port_v4(i).contains(&n.network()),
            IpNet::V6(n) => n.contains(&port_v6(i).network()) || port_v6(i).contains(&n.network()),
        });
        if !overlaps {
            return p;
        }
    }
}

struct Route {
    port: usize,
    prefix: IpNet,
    next_hop: IpAddr,
    metric: u32,
}

fn random_routes(rng: &mut StdRng) -> Vec<Route> {
    let mut routes: Vec<Route> = Vec::new();
    // A default route per family, so the kernel answers every lookup.
    routes.push(Route {
        port: 0,
        prefix: "0.0.0.0/0".parse().unwrap(),
        next_hop: "10.99.0.254".parse().unwrap(),
        metric: 500,
    });
    routes.push(Route {
        port: 0,
        prefix: "::/0".parse().unwrap(),
        next_hop: "fd00:99::fe".parse().unwrap(),
        metric: 500,
    });
    for _ in 0..400 {
        let v6 = rng.gen_bool(0.4);
        let prefix = random_prefix(rng, v6);
        // One to three routes per prefix, metrics from a small set so that
        // ties (ECMP) and shadowed routes both happen.
        for _ in 0..rng.gen_range(1..=3) {
            let port = rng.gen_range(0..PORTS);
            let r = Route {
                port,
                prefix,
                next_hop: gateway(rng, port, v6),
                metric: [100, 200, 300][rng.gen_range(0..3)],
            };
            if !routes
                .iter()
                .any(|o| o.prefix == r.prefix && o.port == r.port && o.next_hop == r.next_hop)
            {
                routes.push(r);
            }
        }
    }
    routes
}

fn config(routes: &[Route]) -> String {
    let mut c = String::new();
    for i in 0..PORTS {
        let _ = write!(c, "[[port]]\nname = \"p{i}\"\nmac = \"02:00:00:00:99:{i:02x}\"\naddresses = [\"{}\", \"{}\"]\n", port_v4(i), port_v6(i));
    }
    for r in routes {
        let _ = write!(c, "[[route]]\ninterface = \"p{}\"\ndestination = \"{}\"\nnext_hop = \"{}\"\nmetric = {}\n", r.port, r.prefix, r.next_hop, r.metric);
    }
    c
}

fn kernel_script(routes: &[Route]) -> String {
    let mut s = String::new();
    for i in 0..PORTS {
        // veth rather than dummy: the dummy module is not on every kernel.
        let _ = writeln!(s, "link add p{i} type veth peer name p{i}peer");
        let _ = writeln!(s, "link set p{i}peer up");
        let _ = writeln!(s, "link set p{i} up");
        let _ = writeln!(s, "address add {} dev p{i}", port_v4(i));
        let _ = writeln!(s, "address add {} dev p{i} nodad", port_v6(i));
    }
    // Same prefix and metric on several next hops: one multipath route.
    let mut groups: BTreeMap<(String, u32), Vec<&Route>> = BTreeMap::new();
    for r in routes {
        groups
            .entry((r.prefix.to_string(), r.metric))
            .or_default()
            .push(r);
    }
    for ((prefix, metric), members) in groups {
        if members.len() == 1 {
            let r = members[0];
            let _ = writeln!(
                s,
                "route add {prefix} via {} dev p{} metric {metric}",
                r.next_hop, r.port
            );
        } else {
            let hops: Vec<String> = members
                .iter()
                .map(|r| format!("nexthop via {} dev p{}", r.next_hop, r.port))
                .collect();
            let _ = writeln!(s, "route add {prefix} metric {metric} {}", hops.join(" "));
        }
    }
    s
}

fn sample(rng: &mut StdRng, routes: &[Route]) -> IpAddr {
    let r = &routes[rng.gen_range(0..routes.len())];
    match (r.prefix, rng.gen_bool(0.7)) {
        (IpNet::V4(p), true) => IpAddr::V4(Ipv4Addr::from(
            u32::from(p.network()) | (rng.gen::<u32>() & !u32::from(p.netmask())),
        )),
        (IpNet::V6(p), true) => IpAddr::V6(Ipv6Addr::from(
            u128::from(p.network()) | (rng.gen::<u128>() & !u128::from(p.netmask())),
        )),
        (IpNet::V4(_), false) => IpAddr::V4(Ipv4Addr::from(
            0x0a00_0000 | (rng.gen::<u32>() & 0x00ff_ffff),
        )),
        (IpNet::V6(_), false) => IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8u128 << 96) | (rng.gen::<u128>() >> 36),
        )),
    }
}

#[test]
fn route_selection_matches_the_kernel() {
    if !common::need_root(TEST) || !common::need_tool(TEST, "ip", "-V") {
        return;
    }
    let mut rng = StdRng::seed_from_u64(0xed9e);
    let routes = random_routes(&mut rng);
    let cfg = Config::parse(&config(&routes)).unwrap();
    let rib = Rib::from_config(&cfg, PortsUp::All);
    let (fib, selection) = rib.build_fib();

    let ns = Netns::new("kroutes");
    ns.batch(false, &kernel_script(&routes));

    let addrs: Vec<IpAddr> = (0..4000).map(|_| sample(&mut rng, &routes)).collect();
    // fibmatch: the whole route the kernel matched, every multipath next
    // hop included, not the one next hop its flow hash picked.
    let script: String = addrs
        .iter()
        .map(|a| format!("route get fibmatch {a}\n"))
        .collect();
    let answers = ns.batch(true, &script);
    let answers: Vec<serde_json::Value> = answers
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), addrs.len(), "one kernel answer per address");

    let (mut compared, mut ecmp, mut local) = (0, 0, 0);
    for (a, k) in addrs.iter().zip(&answers) {
        let k = &k[0];
        if k.get("type").is_some_and(|t| t != "unicast") {
            local += 1; // the kernel's own local/broadcast routes
            continue;
        }
        let hop = |h: &serde_json::Value| -> (String, Option<IpAddr>) {
            (
                h["dev"].as_str().unwrap().to_owned(),
                h.get("gateway")
                    .map(|g| g.as_str().unwrap().parse().unwrap()),
            )
        };
        let mut theirs: Vec<(String, Option<IpAddr>)> = match k.get("nexthops") {
            Some(hops) => hops.as_array().unwrap().iter().map(hop).collect(),
            None => vec![hop(k)],
        };
        theirs.sort();
        let dst = match k["dst"].as_str().unwrap() {
            "default" if a.is_ipv4() => "0.0.0.0/0".to_owned(),
            "default" => "::/0".to_owned(),
            d if d.contains('/') => d.to_owned(),
            d if a.is_ipv4() => format!("{d}/32"),
            d => format!("{d}/128"),
        };
        let dst: IpNet = dst.parse().unwrap();
        let ours = rib.lookup(&fib, &selection.selected, *a);
        let mut mine: Vec<(String, Option<IpAddr>)> = ours
            .iter()
            .map(|r| (r.interface.clone(), r.next_hop))
            .collect();
        mine.sort();
        assert_eq!(mine, theirs, "{a}: the same next hops, all of them");
        for r in &ours {
            assert_eq!(r.destination, dst, "{a}: the same prefix");
            if r.next_hop.is_some() {
                let metric = k["metric"].as_u64().unwrap_or(0);
                assert_eq!(u64::from(r.metric), metric, "{a}: the same metric");
            }
        }
        if ours.len() > 1 {
            ecmp += 1;
        }
        compared += 1;
    }
    eprintln!("{compared} addresses agree with the kernel ({ecmp} through ECMP groups), {local} kernel-local skipped");
    assert!(compared >= 3900, "too few comparable answers: {compared}");
    assert!(ecmp > 50, "the sample exercises ECMP ({ecmp})");
}
