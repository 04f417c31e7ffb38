//! The host's own traffic through a port's host mirror, end to end: a
//! namespace plays the appliance's host (the mirror `m2` lives there), a
//! second one the network on Port2. The host's kernel is the oracle: its
//! sockets accept what edgefwd punts, its ARP/NDP and ping work through
//! what edgefwd injects, and its link state shows the carrier edgefwd
//! gives it.
//!
//! ```text
//!  app: m2 10.0.2.1 fd00:2::1 (mirror) ┐
//!                                       edgefwd Port2 ── p2 h2 10.0.2.2 fd00:2::2
//! ```

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::host_rig::{other_defaults, wait_for, Rig};
use edgefwd_control::api::{call, Command};
use serde_json::Value;

const TEST: &str = "host_mirror";

#[test]
fn host_mirror_carries_the_hosts_own_traffic() {
    if !common::need_root_and_ping(TEST) {
        return;
    }
    let rig = Rig::start("hm");

    // The kernel side has the port's MAC, MTU and addresses, and is up.
    let link = rig.link();
    assert_eq!(link["address"], "02:00:00:00:02:01", "{link}");
    assert_eq!(link["mtu"], 1500, "{link}");
    let addrs = rig.app.ip(&["-j", "addr", "show", "m2"]);
    for a in ["10.0.2.1", "fd00:2::1"] {
        assert!(addrs.contains(a), "{a} missing on m2: {addrs}");
    }

    // TCP to the port's address reaches a listener on the host, both
    // families, intact.
    for dst in ["10.0.2.1:2222", "[fd00:2::1]:2223"] {
        let dst: SocketAddr = dst.parse().unwrap();
        let t = common::tcp_transfer(&rig.h2, &rig.app, dst, 4 << 20);
        assert_eq!(t.bytes, 4 << 20, "to {dst}");
        assert!(t.intact, "to {dst}: sha256 differs");
    }
    // The host's own pings: its ARP/NDP requests and echo requests leave
    // through Port2, the answers come back to it.
    for target in ["10.0.2.2", "fd00:2::2"] {
        let out = rig
            .app
            .exec(15, &["ping", "-n", "-c", "3", "-W", "2", target]);
        assert!(
            out.status.success(),
            "the host's ping of {target}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let neigh = rig.app.ip(&["neigh", "show", "dev", "m2"]);
    assert!(
        neigh.contains("10.0.2.2"),
        "the host learned no neighbour: {neigh}"
    );
    // edgefwd still answers pings to its address itself.
    assert!(rig
        .h2
        .exec(10, &["ping", "-n", "-c", "2", "-W", "2", "fd00:2::1"])
        .status
        .success());

    let s = rig.stats();
    let (punted, injected) = (
        s["packets"]["punted"].as_u64().unwrap(),
        s["packets"]["injected"].as_u64().unwrap(),
    );
    assert!(punted > 100 && injected > 100, "{}", s["packets"]);
    let mirror = &s["ports"]["Port2/host"];
    assert_eq!(mirror["tx"].as_u64(), Some(punted), "{s}");
    // What the host sent before Port2 was up was dropped as port_down.
    let early = mirror["drops"].as_u64().unwrap();
    assert_eq!(mirror["rx"].as_u64(), Some(injected + early), "{s}");
    assert_eq!(
        mirror["drop_reasons"]["port_down"].as_u64().unwrap_or(0),
        early,
        "{s}"
    );
    assert_eq!(s["drops"]["local_unsupported"].as_u64(), None, "{s}");

    // The mirror's carrier follows the port: Port2 unbound, the host sees
    // its link without carrier; bound again, with.
    call(
        &rig.socket,
        Command::PortUnbind {
            port: "Port2".into(),
        },
    )
    .expect("unbind");
    wait_for(
        || flags(&rig.link()).contains(&"NO-CARRIER".to_owned()),
        "carrier off",
    );
    call(
        &rig.socket,
        Command::PortBind {
            port: "Port2".into(),
            binding: format!("tap:p2@{}", rig.h2.name()),
        },
    )
    .expect("bind");
    // The TAP is made anew, down: still no carrier until it is up.
    rig.h2.wait_for_device("p2");
    std::thread::sleep(Duration::from_millis(300));
    assert!(flags(&rig.link()).contains(&"NO-CARRIER".to_owned()));
    rig.h2.ip(&["link", "set", "p2", "up"]);
    wait_for(
        || !flags(&rig.link()).contains(&"NO-CARRIER".to_owned()),
        "carrier on",
    );

    let mut rig = rig;
    let summary = rig.daemon.stop().expect("daemon");
    common::assert_identity(&summary);
}

fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Installs `routes` (`ip route` argument lists) in the host's namespace
/// with one `ip -batch`.
fn install(rig: &Rig, verb: &str, routes: &[String]) {
    let script: String = routes
        .iter()
        .map(|r| format!("route {verb} {r}\n"))
        .collect();
    rig.app.batch(false, &script);
}

/// Random routes through the mirror: IPv4 in 198.18.0.0/15 and IPv6 in
/// 2001:db8::/32, several metrics per prefix now and then, some ECMP,
/// under the protocols routing daemons use. Returns the routes and
/// addresses to ask about (inside them and around them).
fn random_routes(rng: &mut StdRng, n: usize) -> (Vec<String>, Vec<IpAddr>) {
    let protos = ["static", "bird", "zebra", "boot", "bgp"];
    let (mut routes, mut addrs) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    while routes.len() < n {
        let v6 = rng.gen_bool(0.25);
        let prefix: IpNet = if v6 {
            let a = Ipv6Addr::from((0x2001_0db8u128 << 96) | (rng.gen::<u128>() >> 32));
            IpNet::V6(Ipv6Net::new(a, rng.gen_range(40..=64)).unwrap().trunc())
        } else {
            let a = Ipv4Addr::from(0xc612_0000 | (rng.gen::<u32>() & 0x0001_ffff));
            IpNet::V4(Ipv4Net::new(a, rng.gen_range(16..=28)).unwrap().trunc())
        };
        let metric = [1u32, 10, 20][rng.gen_range(0..3)];
        if !seen.insert((prefix, metric)) {
            continue;
        }
        let gw = |i: u8| {
            if v6 {
                format!("fd00:2::{i}")
            } else {
                format!("10.0.2.{i}")
            }
        };
        let via = if rng.gen_bool(0.1) {
            format!("nexthop via {} dev m2 nexthop via {} dev m2", gw(2), gw(3))
        } else {
            format!("via {} dev m2", gw(rng.gen_range(2..5)))
        };
        let proto = protos[rng.gen_range(0..protos.len())];
        routes.push(format!("{prefix} proto {proto} metric {metric} {via}"));
        for _ in 0..4 {
            addrs.push(inside(rng, prefix));
        }
    }
    for _ in 0..n {
        addrs.push(IpAddr::V4(Ipv4Addr::from(
            0xc612_0000 | (rng.gen::<u32>() & 0x0001_ffff),
        )));
    }
    (routes, addrs)
}

fn inside(rng: &mut StdRng, p: IpNet) -> IpAddr {
    match p {
        IpNet::V4(n) => {
            let host = rng.gen::<u32>() & !u32::from(n.netmask());
            IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | host))
        }
        IpNet::V6(n) => {
            let host = rng.gen::<u128>() & !u128::from(n.netmask());
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | host))
        }
    }
}

#[test]
fn kernel_routes_through_the_mirror_follow_the_kernel() {
    if !common::need_root(TEST) {
        return;
    }
    let rig = Rig::start("hk");
    other_defaults(&rig.app);
    let mut rng = StdRng::seed_from_u64(27);
    let (routes, addrs) = random_routes(&mut rng, 1500);
    install(&rig, "add", &routes);
    let took = rig.agree_with_kernel(&addrs, 10);
    eprintln!("1,500 routes mirrored and agreeing within {took:?}");
    let h = rig.host();
    assert_eq!(h["netlink"]["routes"].as_u64(), Some(1500), "{h}");
    assert_eq!(h["netlink"]["watching"], true, "{h}");

    // Churn: a third deleted, a third replaced with other next hops.
    let (gone, kept) = routes.split_at(500);
    install(&rig, "del", gone);
    let replaced: Vec<String> = kept[..500]
        .iter()
        .map(|r| {
            r.replace("via 10.0.2.", "via 10.0.2.1")
                .replace("via fd00:2::", "via fd00:2::1")
        })
        .collect();
    install(&rig, "replace", &replaced);
    rig.agree_with_kernel(&addrs, 10);

    // Deletions the kernel makes without a message: the mirror set down
    // (its routes go), then up again and refilled; its addresses flushed
    // (routes through them go).
    rig.app.ip(&["link", "set", "m2", "down"]);
    rig.agree_with_kernel(&addrs, 5);
    rig.app.ip(&["link", "set", "m2", "up"]);
    let v4: Vec<String> = routes
        .iter()
        .filter(|r| !r.contains("fd00"))
        .cloned()
        .collect();
    install(&rig, "replace", &v4);
    rig.agree_with_kernel(&addrs, 10);
    rig.app
        .ip(&["addr", "flush", "dev", "m2", "scope", "global"]);
    rig.agree_with_kernel(&addrs, 5);
    let h = rig.host();
    assert!(h["netlink"]["resyncs"].as_u64().unwrap() >= 3, "{h}");
}

#[test]
fn an_overrun_netlink_socket_is_repaired_by_a_dump() {
    if !common::need_root(TEST) {
        return;
    }
    // A 4 KiB buffer holds a few dozen messages: a batch of thousands
    // overruns it.
    let rig = Rig::start_with("ho", "netlink_buffer = 4096", "");
    other_defaults(&rig.app);
    let mut rng = StdRng::seed_from_u64(28);
    let (routes, addrs) = random_routes(&mut rng, 5000);
    install(&rig, "add", &routes);
    let took = rig.agree_with_kernel(&addrs, 10);
    let (gone, _) = routes.split_at(2500);
    install(&rig, "del", gone);
    rig.agree_with_kernel(&addrs, 10);
    let h = rig.host();
    assert!(
        h["netlink"]["overruns"].as_u64().unwrap() >= 1,
        "no overrun: {h}"
    );
    eprintln!("5,000 routes through overruns agreeing within {took:?}: {h}");
}

/// Runs `script` through `ip -force -batch` in `ns`, errors allowed (a
/// churned route may be gone already, a gateway off-link for a moment).
fn batch_lenient(ns: &str, script: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("timeout")
        .args(["60", "ip", "-n", ns, "-force", "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(script.as_bytes());
    let _ = child.wait();
}

#[test]
fn chaos_leaves_no_difference_with_the_kernel() {
    if !common::need_root(TEST) {
        return;
    }
    // An 8 KiB buffer overruns under this churn.
    let rig = Rig::start_with("hc", "netlink_buffer = 8192", "");
    other_defaults(&rig.app);
    let mut rng = StdRng::seed_from_u64(29);
    let (routes, addrs) = random_routes(&mut rng, 4000);
    install(&rig, "add", &routes);
    // Routes through next-hop objects too, flushed now and then.
    let objects = "nexthop replace id 1 via 10.0.2.2 dev m2\nnexthop replace id 2 via 10.0.2.3 dev m2\nnexthop replace id 10 group 1/2\n";
    let mut nh_routes = String::from(objects);
    let mut addrs: Vec<IpAddr> = addrs.into_iter().take(9_000).collect();
    for i in 0..250u32 {
        let net = Ipv4Net::new(Ipv4Addr::from(0xcb00_0000 | (i << 8)), 24).unwrap();
        nh_routes += &format!(
            "route replace {net} nhid {} proto static\n",
            [1, 10][i as usize % 2]
        );
        for _ in 0..4 {
            addrs.push(inside(&mut rng, IpNet::V4(net)));
        }
    }
    rig.app.batch(false, &nh_routes);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (stop, app, routes) = (stop.clone(), rig.app.name().to_owned(), routes.clone());
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(30);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut script = String::new();
                for _ in 0..500 {
                    let r = &routes[rng.gen_range(0..routes.len())];
                    let verb = ["del", "replace", "replace"][rng.gen_range(0..3)];
                    let r = if rng.gen_bool(0.5) {
                        r.replace("via 10.0.2.", "via 10.0.2.1")
                            .replace("via fd00:2::", "via fd00:2::1")
                    } else {
                        r.clone()
                    };
                    script += &format!("route {verb} {r}\n");
                }
                batch_lenient(&app, &script);
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    let mut round = 0;
    while std::time::Instant::now() < deadline {
        if round % 3 == 0 {
            rig.app.ip(&["link", "set", "m2", "down"]);
            std::thread::sleep(Duration::from_millis(50));
            rig.app.ip(&["link", "set", "m2", "up"]);
        } else if round % 3 == 1 {
            rig.app.ip(&["nexthop", "flush"]);
            std::thread::sleep(Duration::from_millis(50));
            batch_lenient(rig.app.name(), &nh_routes);
        } else {
            rig.app
                .ip(&["addr", "flush", "dev", "m2", "scope", "global"]);
            std::thread::sleep(Duration::from_millis(50));
            rig.app.ip(&["addr", "add", "10.0.2.1/24", "dev", "m2"]);
            rig.app
                .ip(&["addr", "add", "fd00:2::1/64", "dev", "m2", "nodad"]);
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(400));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
    let took = rig.agree_with_kernel(&addrs, 15);
    let h = rig.host();
    eprintln!("after {round} flaps and flushes under churn, agreeing within {took:?}: {h}");
    assert!(
        h["netlink"]["overruns"].as_u64().unwrap() >= 1,
        "no overrun: {h}"
    );
    assert!(h["netlink"]["resyncs"].as_u64().unwrap() >= 3, "{h}");
}

/// Replay with a host mirror: what edgefwd does not answer for Port2's
/// address goes to `Port2~host.pcap` unchanged; without the mirror the
/// same is `local_unsupported`.
#[test]
fn replay_punts_to_the_mirror_port() {
    use edgefwd_control::replay::{file_stem, replay_with, Input, Options, Source};
    use edgefwd_control::trace::TraceReader;
    let mut syn = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0x99, 1], [2, 0, 0, 0, 2, 1])
        .ipv4([10, 0, 2, 9], [10, 0, 2, 1], 64)
        .tcp(40000, 22, 1, 64240)
        .syn()
        .write(&mut syn, &[])
        .unwrap();
    let pcap = common::pcap_in_memory(&[(1_000_000_000, syn.clone())]);
    for host in ["host = \"m2\"", ""] {
        let toml = format!(
            "[[port]]\nname = \"Port2\"\nmac = \"02:00:00:00:02:01\"\naddresses = [\"10.0.2.1/24\"]\n{host}\n"
        );
        let cfg = edgefwd_control::config::Config::parse(&toml).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let inputs = vec![Input {
            port: "Port2".into(),
            source: Source::Bytes {
                name: "Port2".into(),
                data: pcap,
            },
        }];
        let (report, _) = replay_with(&cfg, inputs, dir.path(), &Options::default()).unwrap();
        let path = dir.path().join(format!("{}.pcap", file_stem("Port2/host")));
        if host.is_empty() {
            assert_eq!(report.drops.get("local_unsupported"), Some(&1));
            assert!(!path.exists());
            continue;
        }
        let mut r = TraceReader::open(&path).expect("the mirror's output");
        let rec = r.next_record().unwrap().expect("one frame");
        assert_eq!(rec.data, syn, "punted unchanged");
        assert_eq!(report.packets.punted, 1);
    }
}
