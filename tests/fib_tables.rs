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
