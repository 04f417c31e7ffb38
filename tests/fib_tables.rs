//! The fast FIB (Poptrie) against the reference (the tree-bitmap crate) on
//! the real routing tables: one address in every /24 of the IPv4 space
//! (every address with EDGEFWD_FULL_SCAN=1), and random plus in-prefix
//! addresses for IPv6. Each route gets its own value, so the two must agree
//! on the exact prefix matched, not just on a next hop.

mod common;

use edgefwd_control::ribfile;
use edgefwd_dataplane::fib::{Lpm, PoptrieLpm, TreeBitmapLpm};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::{Ipv4Addr, Ipv6Addr};

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
        let reference = TreeBitmapLpm::build(&v4, &[]);
        let mut rng = StdRng::seed_from_u64(24);
        let mut routed = 0u64;
        let mut check = |a: Ipv4Addr| {
            let want = reference.lookup_v4(a);
            assert_eq!(fast.lookup_v4(a), want, "{name}: {a}");
            routed += u64::from(want.is_some());
        };
        if full {
            (0..=u32::MAX).for_each(|a| check(Ipv4Addr::from(a)));
        } else {
            (0..1u32 << 24).for_each(|n| check(Ipv4Addr::from((n << 8) | rng.gen_range(0..256))));
        }
        eprintln!(
            "{name}: {} routes, {routed} routed addresses agree, {} KiB",
            v4.len(),
            fast.memory_bytes() / 1024
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
            assert_eq!(fast.lookup_v6(a), reference.lookup_v6(a), "{name}: {a}");
        }
        eprintln!(
            "{name}: {} routes agree on 2M addresses, {} KiB",
            v6.len(),
            fast.memory_bytes() / 1024
        );
    }
}

/// One line of the BGP update stream: announce (`A PREFIX NEXTHOP PEER`)
/// or withdraw (`W PREFIX - PEER`).
fn update(line: &str) -> Option<(bool, ipnet::IpNet, &str)> {
    let mut f = line.split_whitespace();
    let kind = f.next()?;
    let prefix = f.next()?.parse().ok()?;
    let next_hop = f.next()?;
    Some((kind == "A", prefix, next_hop))
}

/// The RIS update stream (five minutes of BGP, IPv4 and IPv6) replayed on
/// the 2010 RIS table: the FIB is rebuilt every 1,000 updates and checked
/// against the tree-bitmap crate, updated one prefix at a time, on every
/// prefix the updates touched; at the end, on one address of every /24.
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
    let mut rib4: std::collections::BTreeMap<ipnet::Ipv4Net, u32> = v4.iter().copied().collect();
    let mut rib6: std::collections::BTreeMap<ipnet::Ipv6Net, u32> = Default::default();
    let mut ref4 = treebitmap::IpLookupTable::<Ipv4Addr, u32>::new();
    let mut ref6 = treebitmap::IpLookupTable::<Ipv6Addr, u32>::new();
    for (p, v) in &rib4 {
        ref4.insert(p.network(), u32::from(p.prefix_len()), *v);
    }
    let mut hops: Vec<String> = Vec::new();
    let mut touched4: Vec<ipnet::Ipv4Net> = Vec::new();
    let mut touched6: Vec<ipnet::Ipv6Net> = Vec::new();
    let (mut announced, mut withdrawn, mut checks) = (0, 0, 0u64);
    let build = |r4: &std::collections::BTreeMap<_, _>, r6: &std::collections::BTreeMap<_, _>| {
        let v4: Vec<_> = r4.iter().map(|(p, v)| (*p, *v)).collect();
        let v6: Vec<_> = r6.iter().map(|(p, v)| (*p, *v)).collect();
        PoptrieLpm::build(&v4, &v6)
    };
    let lines: Vec<&str> = stream.lines().collect();
    for (n, chunk) in lines.chunks(1000).enumerate() {
        for line in chunk {
            let (announce, prefix, hop) =
                update(line).unwrap_or_else(|| panic!("bad line {line:?}"));
            let value = match hops.iter().position(|h| h == hop) {
                Some(i) => i as u32,
                None => {
                    hops.push(hop.to_owned());
                    (hops.len() - 1) as u32
                }
            };
            match (prefix, announce) {
                (ipnet::IpNet::V4(p), true) => {
                    rib4.insert(p, value);
                    ref4.insert(p.network(), u32::from(p.prefix_len()), value);
                    touched4.push(p);
                    announced += 1;
                }
                (ipnet::IpNet::V4(p), false) => {
                    rib4.remove(&p);
                    ref4.remove(p.network(), u32::from(p.prefix_len()));
                    touched4.push(p);
                    withdrawn += 1;
                }
                (ipnet::IpNet::V6(p), true) => {
                    rib6.insert(p, value);
                    ref6.insert(p.network(), u32::from(p.prefix_len()), value);
                    touched6.push(p);
                    announced += 1;
                }
                (ipnet::IpNet::V6(p), false) => {
                    rib6.remove(&p);
                    ref6.remove(p.network(), u32::from(p.prefix_len()));
                    touched6.push(p);
                    withdrawn += 1;
                }
            }
        }
        let fast = build(&rib4, &rib6);
        for p in &touched4 {
            for a in [p.network(), p.broadcast()] {
                let want = ref4.longest_match(a).map(|(_, _, v)| *v);
                assert_eq!(fast.lookup_v4(a), want, "after chunk {n}: {a} ({p})");
                checks += 1;
            }
        }
        for p in &touched6 {
            for a in [
                p.network(),
                Ipv6Addr::from(u128::from(p.network()) | !u128::from(p.netmask())),
            ] {
                let want = ref6.longest_match(a).map(|(_, _, v)| *v);
                assert_eq!(fast.lookup_v6(a), want, "after chunk {n}: {a} ({p})");
                checks += 1;
            }
        }
        touched4.clear();
        touched6.clear();
    }
    let fast = build(&rib4, &rib6);
    let mut rng = StdRng::seed_from_u64(16);
    for n in 0..1u32 << 24 {
        let a = Ipv4Addr::from((n << 8) | rng.gen_range(0..256));
        assert_eq!(
            fast.lookup_v4(a),
            ref4.longest_match(a).map(|(_, _, v)| *v),
            "{a}"
        );
    }
    eprintln!(
        "{TEST}: {announced} announcements, {withdrawn} withdrawals, {checks} checks on touched prefixes, every /24 at the end"
    );
    assert!(announced > 30_000 && withdrawn > 1_000);
}
