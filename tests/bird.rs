//! A real routing daemon through edgefwd: BIRD on the appliance's host
//! (namespace `app`) peers over Port2's host mirror with BIRD upstream (in
//! `h2`, on Port2's network); the upstream announces 1,000 routes, then the
//! whole shared IPv4 table; the host's BIRD installs them in its kernel,
//! and edgefwd mirrors them. The host kernel's `ip route get` is the
//! oracle, before and after the session drops (when edgefwd's configured
//! worse default takes over).

mod common;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::host_rig::{other_defaults, Rig};
use common::Spawned;
use ipnet::Ipv4Net;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TEST: &str = "bird_routes_reach_the_fib_and_leave_with_the_session";

/// The upstream's config: a BGP speaker announcing `prefixes` (static
/// blackholes) with itself as next hop.
fn upstream_conf(prefixes: &[Ipv4Net]) -> String {
    let mut s = String::from(
        r#"router id 10.0.2.2;
protocol device { }
protocol bgp peer_app {
    local 10.0.2.2 as 65002;
    neighbor 10.0.2.1 as 65001;
    hold time 9;
    ipv4 { import none; export all; next hop self; };
}
protocol static upstream_routes {
    ipv4;
"#,
    );
    s.reserve(prefixes.len() * 32);
    for p in prefixes {
        let _ = writeln!(s, "    route {p} blackhole;");
    }
    s.push_str("}\n");
    s
}

/// The appliance host's config: learns over BGP, installs in its kernel.
const APPLIANCE_CONF: &str = r#"router id 10.0.2.1;
protocol device { }
protocol kernel {
    ipv4 { import none; export all; };
}
protocol bgp peer_up {
    local 10.0.2.1 as 65001;
    neighbor 10.0.2.2 as 65002;
    hold time 9;
    ipv4 { import all; export none; };
}
"#;

/// Public prefixes of a shared table (none of the test's own ranges).
fn table(limit: usize) -> Vec<Ipv4Net> {
    let Some(path) = common::need_data(TEST, "rib/ipv4-fullview-2023.txt") else {
        panic!("the shared table is needed");
    };
    let ours: [Ipv4Net; 4] = [
        "10.0.0.0/8".parse().unwrap(),
        "192.0.2.0/24".parse().unwrap(),
        "0.0.0.0/8".parse().unwrap(),
        "127.0.0.0/8".parse().unwrap(),
    ];
    let mut seen = HashSet::new();
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse::<Ipv4Net>().ok())
        .map(|n| n.trunc())
        .filter(|n| n.prefix_len() > 0)
        .filter(|n| !ours.iter().any(|o| o.contains(n) || n.contains(o)))
        .filter(|n| seen.insert(*n))
        .take(limit)
        .collect()
}

/// `birdc` against the daemon at `sock`; its output.
fn birdc(sock: &Path, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("30")
        .arg("birdc")
        .arg("-s")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

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
    let dir = common::temp_dir("bird");
    let (up_sock, app_sock) = (dir.path().join("up.ctl"), dir.path().join("app.ctl"));
    let (up_conf, app_conf) = (dir.path().join("up.conf"), dir.path().join("app.conf"));

    let full = table(usize::MAX);
    let first: Vec<Ipv4Net> = full.iter().copied().take(1000).collect();
    std::fs::write(&up_conf, upstream_conf(&first)).unwrap();
    std::fs::write(&app_conf, APPLIANCE_CONF).unwrap();
    let bird = |ns: &common::Netns, conf: &Path, sock: &Path| -> Spawned {
        let (conf, sock) = (conf.display().to_string(), sock.display().to_string());
        ns.spawn(&[
            "bird",
            "-f",
            "-c",
            &conf,
            "-s",
            &sock,
            "-P",
            &format!("{sock}.pid"),
        ])
    };
    let _up = bird(&rig.h2, &up_conf, &up_sock);
    let _app = bird(&rig.app, &app_conf, &app_sock);

    let mut rng = StdRng::seed_from_u64(27);
    let took = rig.wait_for_kernel_routes(1000, 60);
    eprintln!("1,000 BGP routes in edgefwd's FIB {took:?} after the daemons started");
    let addrs = addresses(&mut rng, &first, 10_000);
    rig.agree_with_kernel_or(&addrs, &configured, 10);

    // The whole table, announced by reconfiguring the upstream.
    std::fs::write(&up_conf, upstream_conf(&full)).unwrap();
    let started = Instant::now();
    let said = birdc(&up_sock, &["configure"]);
    assert!(said.contains("Reconfigured"), "birdc configure: {said}");
    let took = rig.wait_for_kernel_routes(full.len() as u64, 600);
    eprintln!(
        "{} BGP routes in edgefwd's FIB {:?} after the upstream announced them ({took:?} waited)",
        full.len(),
        started.elapsed()
    );
    let addrs = addresses(&mut rng, &full, 10_000);
    rig.agree_with_kernel_or(&addrs, &configured, 30);
    let show = birdc(&app_sock, &["show", "protocols"]);
    assert!(show.contains("Established"), "the session held: {show}");

    // The session drops: the host's BIRD withdraws everything from its
    // kernel, and edgefwd's configured default takes over.
    let said = birdc(&up_sock, &["disable", "peer_app"]);
    assert!(said.contains("disabled"), "birdc disable: {said}");
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
