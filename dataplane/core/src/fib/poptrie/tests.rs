use super::*;

/// Routes written as text, parsed.
fn routes<P: std::str::FromStr>(r: &[(&str, u32)]) -> Vec<(P, u32)>
where
    P::Err: std::fmt::Debug,
{
    r.iter().map(|(p, v)| (p.parse().unwrap(), *v)).collect()
}

fn lpm(v4: &[(&str, u32)], v6: &[(&str, u32)]) -> PoptrieLpm {
    PoptrieLpm::build(&routes(v4), &routes(v6))
}

#[test]
fn nested_prefixes_at_every_depth() {
    let t = lpm(
        &[
            ("0.0.0.0/0", 0),
            ("10.0.0.0/8", 1),
            ("10.1.0.0/16", 2),
            ("10.1.2.0/24", 3),
            ("10.1.2.3/32", 4),
            ("10.1.2.128/25", 5),
        ],
        &[("::/0", 0), ("2001:db8::/32", 1), ("2001:db8::1/128", 2)],
    );
    let q = |a: &str| t.lookup_v4(a.parse().unwrap());
    assert_eq!(q("9.9.9.9"), Some(0));
    assert_eq!(q("10.9.9.9"), Some(1));
    assert_eq!(q("10.1.9.9"), Some(2));
    assert_eq!(q("10.1.2.9"), Some(3));
    assert_eq!(q("10.1.2.3"), Some(4));
    assert_eq!(q("10.1.2.200"), Some(5));
    assert_eq!(q("10.1.2.127"), Some(3));
    let q6 = |a: &str| t.lookup_v6(a.parse().unwrap());
    assert_eq!(q6("2001:db8::1"), Some(2));
    assert_eq!(q6("2001:db8::2"), Some(1));
    assert_eq!(q6("2002::"), Some(0));
}

/// The batch walk answers exactly as single lookups, for bursts of
/// every length around the lane count, on prefixes of every length.
#[test]
fn batch_matches_single() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let v4: Vec<(Ipv4Net, u32)> = (0..5000)
        .map(|i| {
            let len = (next() % 33) as u8;
            let net = Ipv4Net::new(Ipv4Addr::from(next() as u32), len)
                .unwrap()
                .trunc();
            (net, i)
        })
        .collect();
    let mut v4: Vec<_> = v4
        .into_iter()
        .collect::<std::collections::HashMap<_, _>>()
        .into_iter()
        .collect();
    v4.sort();
    // IPv6: prefixes under 2001:db8::/32, so lookups go deep.
    let v6: std::collections::HashMap<Ipv6Net, u32> = (0..2000)
        .map(|i| {
            let a = (0x2001_0db8u128 << 96) | (u128::from(next()) << 32);
            let len = 32 + (next() % 97) as u8;
            (Ipv6Net::new(Ipv6Addr::from(a), len).unwrap().trunc(), i)
        })
        .collect();
    let v6: Vec<_> = v6.into_iter().collect();
    let t = PoptrieLpm::build(&v4, &v6);
    // Half the addresses inside a prefix, so every depth is walked.
    let addrs: Vec<Ipv4Addr> = (0..3000)
        .map(|i| {
            let r = next() as u32;
            if i % 2 == 0 {
                let (p, _) = v4[r as usize % v4.len()];
                Ipv4Addr::from(u32::from(p.network()) | (r & !u32::from(p.netmask())))
            } else {
                Ipv4Addr::from(r)
            }
        })
        .collect();
    let addrs6: Vec<Ipv6Addr> = (0..3000)
        .map(|_| {
            let (p, _) = v6[next() as usize % v6.len()];
            let host = (u128::from(next()) << 64 | u128::from(next())) & !u128::from(p.netmask());
            Ipv6Addr::from(u128::from(p.network()) | host)
        })
        .collect();
    for len in [0, 1, 31, 32, 33, 64, 100, 3000] {
        let mut out = vec![Some(u32::MAX); len];
        t.lookup_v4_batch(&addrs[..len], &mut out);
        for (a, o) in addrs.iter().zip(&out) {
            assert_eq!(*o, t.lookup_v4(*a), "{a} in a burst of {len}");
        }
        t.lookup_v6_batch(&addrs6[..len], &mut out);
        for (a, o) in addrs6.iter().zip(&out) {
            assert_eq!(*o, t.lookup_v6(*a), "{a} in a burst of {len}");
        }
    }
}

/// A value past 16 bits arriving by update turns the family's narrow
/// leaves wide, and every answer stays right.
#[test]
fn a_wide_value_widens_the_leaves() {
    let v4: Vec<(Ipv4Net, u32)> = routes(&[("10.0.0.0/8", 1), ("10.1.2.0/24", 2)]);
    let (mut t4, t6) = tries(&v4, &[]);
    let mut t = PoptrieLpm::from_tries(&t4, &t6).with_headroom();
    assert!(matches!(t.v4, Table::Narrow(_)));
    let (key, len) = v4_key(&"10.1.2.128/25".parse().unwrap());
    t4.insert(key, len, 70_000 + 1);
    t.update(&t4, &t6, &[(key, len)], &[]);
    assert!(matches!(t.v4, Table::Wide(_)));
    let addrs: Vec<Ipv4Addr> = ["10.1.2.200", "10.1.2.1", "10.9.9.9", "11.0.0.1"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let want = [Some(70_000), Some(2), Some(1), None];
    let mut out = [None; 4];
    t.lookup_v4_batch(&addrs, &mut out);
    assert_eq!(out, want);
    for (a, w) in addrs.iter().zip(want) {
        assert_eq!(t.lookup_v4(*a), w, "{a}");
    }
}

#[test]
fn empty_tables_have_no_route() {
    let t = lpm(&[], &[]);
    assert_eq!(t.lookup_v4(Ipv4Addr::new(1, 2, 3, 4)), None);
    assert_eq!(t.lookup_v6(Ipv6Addr::LOCALHOST), None);
    // Only default routes: the one-bit direct tables answer them.
    let t = lpm(&[("0.0.0.0/0", 3)], &[("::/0", 4)]);
    assert_eq!(t.lookup_v4(Ipv4Addr::new(255, 1, 2, 3)), Some(3));
    assert_eq!(t.lookup_v6(Ipv6Addr::LOCALHOST), Some(4));
    assert!(t.memory_bytes() < 64, "{} bytes", t.memory_bytes());
}

#[test]
fn last_child_of_a_node() {
    // Child 63 of a node exercises the all-bits mask.
    let t = lpm(&[("10.255.252.0/22", 7), ("10.255.255.255/32", 8)], &[]);
    assert_eq!(t.lookup_v4("10.255.255.255".parse().unwrap()), Some(8));
    assert_eq!(t.lookup_v4("10.255.255.254".parse().unwrap()), Some(7));
    assert_eq!(t.lookup_v4("10.255.251.255".parse().unwrap()), None);
}
