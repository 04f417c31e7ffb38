//! A real routing daemon through edgefwd: BIRD on the appliance's host
//! (namespace `app`) peers over Port2's host mirror with BIRD upstream (in
//! `h2`, on Port2's network); the upstream announces 1,000 routes, then the
//! whole shared IPv4 table; the host's BIRD installs them in its kernel,
//! and edgefwd mirrors them. The host kernel's `ip route get` is the
//! oracle, before and after the session drops (when edgefwd's configured
//! worse default takes over).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use common::bird::Peers;
use common::host_rig::{other_defaults, Rig};
use ipnet::Ipv4Net;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TEST: &str = "bird_routes_reach_the_fib_and_leave_with_the_session";

/// Addresses to ask about: inside announced prefixes and anywhere.
fn addresses(rng: &mut StdRng, prefixes: &[Ipv4Net], n: usize) -> Vec<IpAddr> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                let p = prefixes[rng.gen_range(0..prefixes.len())];
                let host = rng.gen::<u32>() & !u32::from(p.netmask());
                IpAddr::V4(Ipv4Addr::from(u32::from(p.network()) | host))
            } else {
                IpAddr::V4(Ipv4Addr::from(rng.gen_range(0x0100_0000u32..0xdf00_0000)))
            }
        })
        .filter(|a| match a {
            IpAddr::V4(v4) => !v4.is_private() && !v4.is_loopback() && v4.octets()[0] != 192,
            IpAddr::V6(_) => true,
        })
        .collect()
}

#[test]
fn bird_routes_reach_the_fib_and_leave_with_the_session() {
    if !common::need_root(TEST) || !common::need_tool(TEST, "bird", "--version") {
        return;
    }
    let rig = Rig::start_with("bd", "", "gateway = \"10.0.2.9\"\ngateway_metric = 500");
    other_defaults(&rig.app);
    let configured = [("Port2".to_owned(), Some("10.0.2.9".parse().unwrap()))];
    let Some(full) = common::bird::shared_table(TEST) else {
        panic!("the shared table is needed");
    };
    let first: Vec<Ipv4Net> = full.iter().copied().take(1000).collect();
    let peers = Peers::start(&rig.h2, &rig.app, &first);

    let mut rng = StdRng::seed_from_u64(27);
    let took = rig.wait_for_kernel_routes(1000, 60);
    eprintln!("1,000 BGP routes in edgefwd's FIB {took:?} after the daemons started");
    let addrs = addresses(&mut rng, &first, 10_000);
    rig.agree_with_kernel_or(&addrs, &configured, 10);

    // The whole table, announced by reconfiguring the upstream.
    let started = Instant::now();
    peers.announce(&full);
    let took = rig.wait_for_kernel_routes(full.len() as u64, 600);
    eprintln!(
        "{} BGP routes in edgefwd's FIB {:?} after the upstream announced them ({took:?} waited)",
        full.len(),
        started.elapsed()
    );
    let addrs = addresses(&mut rng, &full, 10_000);
    rig.agree_with_kernel_or(&addrs, &configured, 30);
    let session = peers.session();
    assert!(
        session.contains("Established"),
        "the session held: {session}"
    );

    // The session drops: the host's BIRD withdraws everything from its
    // kernel, and edgefwd's configured default takes over.
    peers.disable();
    rig.wait_for_kernel_routes(0, 600);
    rig.agree_with_kernel_or(&addrs, &configured, 30);
    let lookup = edgefwd_control::api::call(
        &rig.socket,
        edgefwd_control::api::Command::RouteLookup {
            addresses: vec![addrs[0]],
        },
    )
    .unwrap();
    assert_eq!(lookup[0]["routes"][0]["next_hop"], "10.0.2.9", "{lookup}");
}
