//! The fast FIB (Poptrie) against the reference (the tree-bitmap crate) on
//! the real routing tables: one address in every /24 of the IPv4 space
//! (every address with EDGEFWD_FULL_SCAN=1), and random plus in-prefix
//! addresses for IPv6. Each route gets its own value, so the two must agree
//! on the exact prefix matched, not just on a next hop. Distinct values on
//! a full table need 32-bit leaves; a second build with values below
//! [`NARROW`] checks the 16-bit leaves that real FIBs (few next-hop groups)
//! get.

mod common;

use edgefwd_control::ribfile;
use edgefwd_core::fib::{Adjacency, Fib, FibWriter, Lpm, PoptrieLpm, Route, TreeBitmapLpm};
use ipnet::IpNet;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Values are taken modulo this for the build with 16-bit leaves.
const NARROW: u32 = 65_000;

/// `routes` with values modulo [`NARROW`].
fn narrowed<P: Copy>(routes: &[(P, u32)]) -> Vec<(P, u32)> {
    routes.iter().map(|&(p, v)| (p, v % NARROW)).collect()
}

/// A shared table with a distinct value per route.
fn load(test: &str, name: &str) -> Option<ribfile::Entries> {
    let path = common::need_data(test, &format!("rib/{name}"))?;
    Some(ribfile::entries(&ribfile::load(&path).unwrap(), |i| {
        i as u32
    }))
}

#[test]
fn ipv4_every_slash24_on_every_real_table() {
    const TEST: &str = "ipv4_every_slash24_on_every_real_table";
    let full = std::env::var_os("EDGEFWD_FULL_SCAN").is_some();
    for name in [
        "ipv4-fullview-2023.txt",
        "ipv4-ris-20100701.txt",
        "ipv4-ris-20020722.txt",
        "ipv4-maewest.txt",
    ] {
        let Some(ribfile::Entries { v4, .. }) = load(TEST, name) else {
            return;
        };
        let fast = PoptrieLpm::build(&v4, &[]);
        let narrow = PoptrieLpm::build(&narrowed(&v4), &[]);
        let reference = TreeBitmapLpm::build(&v4, &[]);
        let mut rng = StdRng::seed_from_u64(24);
        let mut routed = 0u64;
        let mut check = |a: Ipv4Addr| {
            let want = reference.lookup_v4(a);
            assert_eq!(fast.lookup_v4(a), want, "{name}: {a}");
            assert_eq!(narrow.lookup_v4(a), want.map(|v| v % NARROW), "{name}: {a}");
            routed += u64::from(want.is_some());
        };
        if full {
            (0..=u32::MAX).for_each(|a| check(Ipv4Addr::from(a)));
        } else {
            (0..1u32 << 24).for_each(|n| check(Ipv4Addr::from((n << 8) | rng.gen_range(0..256))));
        }
        eprintln!(
            "{name}: {} routes, {routed} routed addresses agree, {} KiB ({} KiB with 16-bit leaves)",
            v4.len(),
            fast.memory_bytes() / 1024,
            narrow.memory_bytes() / 1024
        );
        assert!(routed > 0);
    }
}

#[test]
fn ipv6_random_and_in_prefix_addresses_on_every_real_table() {
    const TEST: &str = "ipv6_random_and_in_prefix_addresses_on_every_real_table";
    for name in ["ipv6-fullview-2023.txt", "ipv6-as293-20210117.txt"] {
        let Some(ribfile::Entries { v6, .. }) = load(TEST, name) else {
            return;
        };
        let fast = PoptrieLpm::build(&[], &v6);
        let narrow = PoptrieLpm::build(&[], &narrowed(&v6));
        let reference = TreeBitmapLpm::build(&[], &v6);
        let mut rng = StdRng::seed_from_u64(6);
        for i in 0..2_000_000 {
            let a = if i % 2 == 0 {
                // Inside a random prefix, at a random host.
                let (p, _) = v6[rng.gen_range(0..v6.len())];
                Ipv6Addr::from(
                    u128::from(p.network()) | (rng.gen::<u128>() & !u128::from(p.netmask())),
                )
            } else {
                // Anywhere in 2000::/3, where the routes are.
                Ipv6Addr::from((1u128 << 125) | (rng.gen::<u128>() >> 3))
            };
            let want = reference.lookup_v6(a);
            assert_eq!(fast.lookup_v6(a), want, "{name}: {a}");
            assert_eq!(narrow.lookup_v6(a), want.map(|v| v % NARROW), "{name}: {a}");
        }
        eprintln!(
            "{name}: {} routes agree on 2M addresses, {} KiB",
            v6.len(),
            fast.memory_bytes() / 1024
        );
    }
}

/// The adjacency standing for value `v`: a distinct next hop per value, so
/// that a FIB group names exactly one route.
fn adjacency(v: u32) -> Adjacency {
    Adjacency {
        port: 0,
        next_hop: Some(IpAddr::V6(Ipv6Addr::from(u128::from(v) + 1))),
    }
}

/// The value a FIB answers for `a` (see [`adjacency`]).
fn value(fib: &Fib, a: IpAddr) -> Option<u32> {
    let (_, g) = fib.lookup(a)?;
    match g.members[0].next_hop {
        Some(IpAddr::V6(h)) => Some((u128::from(h) - 1) as u32),
        other => panic!("unexpected next hop {other:?}"),
    }
}

/// The RIS update stream (five minutes of BGP, IPv4 and IPv6) replayed on
/// the 2010 RIS table through the daemon's incremental [`FibWriter`], each
/// update published on its own, as the daemon does. Every 1,000 updates the
/// FIB is checked against the tree-bitmap crate, updated one prefix at a
/// time, on every prefix the updates touched; at the end, on one address of
/// every /24.
#[test]
fn churn_replay_of_the_ris_update_stream_keeps_agreeing() {
    const TEST: &str = "churn_replay_of_the_ris_update_stream_keeps_agreeing";
    let Some(ribfile::Entries { v4, .. }) = load(TEST, "ipv4-ris-20100701.txt") else {
        return;
    };
    let Some(path) = common::need_data(TEST, "rib/updates-ris-20160811.1600.txt") else {
        return;
    };
    let stream = std::fs::read_to_string(path).unwrap();
    let mut ref4 = treebitmap::IpLookupTable::<Ipv4Addr, u32>::new();
    let mut ref6 = treebitmap::IpLookupTable::<Ipv6Addr, u32>::new();
    let routes: Vec<Route> = v4
        .iter()
        .map(|(p, v)| {
            ref4.insert(p.network(), u32::from(p.prefix_len()), *v);
            let a = adjacency(*v);
            Route {
                prefix: IpNet::V4(*p),
                port: a.port,
                next_hop: a.next_hop,
                metric: 0,
            }
        })
        .collect();
    let (mut writer, _) = FibWriter::build(&routes, |_| true);
    // Values for the stream's next hops start after the table's.
    let mut hops: Vec<String> = Vec::new();
    let first = v4.len() as u32;
    let mut touched: Vec<IpNet> = Vec::new();
    let (mut announced, mut withdrawn, mut checks) = (0, 0, 0u64);
    let lines: Vec<&str> = stream.lines().collect();
    for (n, chunk) in lines.chunks(1000).enumerate() {
        let mut fib = writer.current();
        for line in chunk {
            let (announce, prefix, hop) =
                ribfile::parse_update(line).unwrap_or_else(|| panic!("bad line {line:?}"));
            let v = first
                + match hops.iter().position(|h| h == hop) {
                    Some(i) => i as u32,
                    None => {
                        hops.push(hop.to_owned());
                        (hops.len() - 1) as u32
                    }
                };
            let len = u32::from(prefix.prefix_len());
            match (prefix, announce) {
                (IpNet::V4(p), true) => {
                    ref4.insert(p.network(), len, v);
                }
                (IpNet::V4(p), false) => {
                    ref4.remove(p.network(), len);
                }
                (IpNet::V6(p), true) => {
                    ref6.insert(p.network(), len, v);
                }
                (IpNet::V6(p), false) => {
                    ref6.remove(p.network(), len);
                }
            }
            if announce {
                writer.set(prefix, &[adjacency(v)]);
                announced += 1;
            } else {
                writer.set(prefix, &[]);
                withdrawn += 1;
            }
            touched.push(prefix);
            fib = writer.publish();
        }
        for p in &touched {
            for a in [p.network(), p.broadcast()] {
                let want = match a {
                    IpAddr::V4(a) => ref4.longest_match(a).map(|(_, _, v)| *v),
                    IpAddr::V6(a) => ref6.longest_match(a).map(|(_, _, v)| *v),
                };
                assert_eq!(value(&fib, a), want, "after chunk {n}: {a} ({p})");
                checks += 1;
            }
        }
        touched.clear();
    }
    let fib = writer.current();
    let mut rng = StdRng::seed_from_u64(16);
    for n in 0..1u32 << 24 {
        let a = Ipv4Addr::from((n << 8) | rng.gen_range(0..256));
        assert_eq!(
            value(&fib, IpAddr::V4(a)),
            ref4.longest_match(a).map(|(_, _, v)| *v),
            "{a}"
        );
    }
    eprintln!(
        "{TEST}: {announced} announcements, {withdrawn} withdrawals, each published; {checks} checks on touched prefixes, every /24 at the end"
    );
    assert_eq!(writer.copied(), 0, "no reader held a copy");
    assert!(announced > 30_000 && withdrawn > 1_000);
}
