//! `afxdp:` ports end to end: each port is the edgefwd end of a veth pair
//! (in the namespace `edge`, with two queues), its peer a host namespace.
//! The tap_forwarding scenarios on them: ping both ways, TTL expiry, a
//! 50 MB TCP transfer checked by sha256, and metric failover when a link
//! goes down. The hosts' kernels are the oracle.
//!
//! ```text
//!  h2 10.0.2.2 ─veth─ x2 Port2 ┐
//!  h3 10.0.3.2 ─veth─ x3 Port3 ├ edgefwd (AF_XDP)
//!  h4 10.0.4.2 ─veth─ x4 Port4 ┘
//! ```

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Daemon, Netns};
use edgefwd_control::config::Config;

const TEST: &str = "afxdp";

struct Rig {
    daemon: Daemon,
    hosts: Vec<(Netns, String)>,
    edge: Netns,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// Ports `Port2`.. on `afxdp:` veths, one host each, with `extra`
    /// config.
    fn start(tag: &str, ports: &[u8], extra: &str) -> Rig {
        let edge = Netns::new(&format!("{tag}-edge"));
        let dir = common::temp_dir(tag);
        let mut toml = format!(
            "[dataplane]\nworkers = 2\n[control]\nsocket = \"{}\"\n\n",
            dir.path().join("control.sock").display()
        );
        let mut hosts = Vec::new();
        for &i in ports {
            let h = Netns::new(&format!("{tag}-h{i}"));
            let x = format!("x{i}");
            common::veth_to_host(&edge, &h, &x);
            h.address(
                "eth0",
                &format!("10.0.{i}.2/24"),
                Some(&format!("10.0.{i}.1")),
            );
            toml += &format!(
                "[[port]]\nname = \"Port{i}\"\nbind = \"afxdp:{x}@{}\"\nmac = \"02:00:00:00:0{i}:01\"\naddresses = [\"10.0.{i}.1/24\"]\n\n",
                edge.name()
            );
            hosts.push((h, format!("10.0.{i}.2")));
        }
        toml += extra;
        let cfg = Config::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let daemon = Daemon::start(cfg);
        for (i, (h, _)) in ports.iter().zip(&hosts) {
            h.wait_for_ping(&format!("10.0.{i}.1"), 5);
        }
        Rig {
            daemon,
            hosts,
            edge,
            _dir: dir,
        }
    }

    fn host(&self, i: usize) -> &Netns {
        &self.hosts[i].0
    }

    fn ping(&self, from: usize, args: &[&str]) -> (bool, String) {
        self.host(from).ping(args)
    }

    fn rx_packets(&self, i: usize) -> u64 {
        let out = self
            .host(i)
            .exec(5, &["cat", "/sys/class/net/eth0/statistics/rx_packets"]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

fn need(test: &str) -> bool {
    common::need_root_and_ping(test) && common::need_tool(test, "ethtool", "--version")
}

#[test]
fn afxdp_ports_ping_both_ways_and_expire_ttl_at_the_hop() {
    if !need(TEST) {
        return;
    }
    let mut rig = Rig::start("xp", &[2, 3], "");
    let attached = rig.edge.ip(&["link", "show", "x2"]);
    assert!(
        attached.contains("prog/xdp"),
        "edgefwd's program on x2: {attached}"
    );
    for (from, to) in [(0, 1), (1, 0)] {
        let target = rig.hosts[to].1.clone();
        let (ok, out) = rig.ping(from, &["-c", "3", "-W", "2", &target]);
        assert!(ok, "ping {target}: {out}");
        let (ok, out) = rig.ping(from, &["-c", "1", "-t", "1", "-W", "2", &target]);
        assert!(!ok, "TTL 1 must not arrive: {out}");
        let gw = format!("10.0.{}.1", from + 2);
        assert!(
            out.contains(&format!("From {gw} icmp_seq=1 Time to live exceeded")),
            "{out}"
        );
    }
    let s = rig.daemon.stop().expect("daemon");
    common::assert_identity(&s);
    // Stopped, the interface is the kernel's again.
    let detached = rig.edge.ip(&["link", "show", "x2"]);
    assert!(
        !detached.contains("prog/xdp"),
        "the program stays on x2: {detached}"
    );
    let expired: u64 = s
        .stats
        .ports
        .iter()
        .map(|p| p.drops[edgefwd_core::stats::DropReason::TtlExpired as usize])
        .sum();
    assert_eq!(expired, 2);
}

#[test]
fn afxdp_tcp_transfer_of_50_mb_arrives_intact() {
    if !need(TEST) {
        return;
    }
    const LEN: usize = 50 << 20;
    let mut rig = Rig::start("xt", &[2, 3], "");
    let started = Instant::now();
    let dst: SocketAddr = "10.0.3.2:5001".parse().unwrap();
    let t = common::tcp_transfer(rig.host(0), rig.host(1), dst, LEN);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} bytes in {secs:.2} s ({:.2} Gbit/s)",
        t.bytes,
        t.bytes as f64 * 8.0 / secs / 1e9
    );
    assert_eq!(t.bytes, LEN);
    assert!(t.intact, "sha256 of what arrived");
    let s = rig.daemon.stop().expect("daemon");
    common::assert_identity(&s);
}

#[test]
fn afxdp_metric_failover_moves_traffic_within_a_second_and_back() {
    if !need(TEST) {
        return;
    }
    let routes = "[[route]]\ninterface = \"Port3\"\ndestination = \"10.9.9.0/24\"\nnext_hop = \"10.0.3.2\"\nmetric = 100\n\n\
                  [[route]]\ninterface = \"Port4\"\ndestination = \"10.9.9.0/24\"\nnext_hop = \"10.0.4.2\"\nmetric = 200\n";
    let rig = Rig::start("xf", &[2, 3, 4], routes);
    for i in [1, 2] {
        rig.host(i).ip(&["addr", "add", "10.9.9.9/32", "dev", "lo"]);
    }
    let probe = || rig.ping(0, &["-c", "1", "-W", "0.2", "10.9.9.9"]).0;
    let (r3, r4) = (rig.rx_packets(1), rig.rx_packets(2));
    assert!(probe(), "10.9.9.9 answers through Port3");
    assert!(
        rig.rx_packets(1) > r3 && rig.rx_packets(2) == r4,
        "metric 100 route used"
    );

    rig.host(1).ip(&["link", "set", "eth0", "down"]);
    let down_at = Instant::now();
    let r4 = rig.rx_packets(2);
    let moved = loop {
        if probe() && rig.rx_packets(2) > r4 {
            break down_at.elapsed();
        }
        assert!(
            down_at.elapsed() < Duration::from_secs(5),
            "traffic never moved to Port4"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("moved to the metric-200 route after {moved:?}");
    assert!(moved < Duration::from_secs(1), "failover took {moved:?}");

    rig.host(1).ip(&["link", "set", "eth0", "up"]);
    // The link going down took the host's default route with it.
    rig.host(1)
        .ip(&["route", "replace", "default", "via", "10.0.3.1"]);
    let up_at = Instant::now();
    let r3 = rig.rx_packets(1);
    loop {
        if probe() && rig.rx_packets(1) > r3 {
            break;
        }
        assert!(
            up_at.elapsed() < Duration::from_secs(5),
            "traffic never came back to Port3"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rig = rig;
    let s = rig.daemon.stop().expect("daemon");
    common::assert_identity(&s);
}
