//! Side by side on one machine, in one run: the Linux kernel forwarding
//! between network namespaces, edgefwd forwarding between TAPs, and a plain
//! one-read-one-write TAP relay. Each moves traffic between the same two
//! host namespaces; the table gives each figure with its ratio to the
//! kernel's.
//!
//! `sudo cargo bench --bench netns` (root: namespaces, TAPs; needs iperf3
//! and ping). `EDGEFWD_NETNS_SECS` sets each measurement's length (default
//! 5 s). Traffic stays inside the namespaces this makes and removes.
//!
//! ```text
//! kernel:  h2 ─veth─ router netns (ip_forward) ─veth─ h3
//! edgefwd: h2 ─TAP─ edgefwd (in this process, 2 workers) ─TAP─ h3,
//!          run twice: workers sleeping when idle, then busy polling
//! relay:   h2 ─TAP─ read()/write() loop, 1 thread ─TAP─ h3 (one subnet)
//! ```

#[path = "../../tests/common/mod.rs"]
mod common;
mod relay;

use std::path::Path;
use std::process::Output;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Netns;
use edgefwd_control::config::Config;
use edgefwd_control::run::{run, Control};

/// The hosts' addresses in each topology.
struct Hosts {
    h2: Netns,
    h3: Netns,
    /// h3's address, the target of every measurement.
    target: &'static str,
}

/// What one forwarder achieved.
#[derive(Clone, Copy, Default)]
struct Figures {
    tcp_gbps: f64,
    udp_pps: f64,
    rtt_median_us: f64,
}

/// The busy poll of the second edgefwd run: longer than the pings' 5 ms
/// spacing, so its workers never sleep while traffic flows.
const BUSY_POLL_US: u32 = 20_000;

fn secs() -> u32 {
    std::env::var("EDGEFWD_NETNS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_f64(v: &serde_json::Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_f64()
        .unwrap_or_else(|| panic!("iperf3 JSON has no {}", path.join(".")))
}

/// iperf3 TCP for `secs`, then 64-byte-frame UDP (18-byte payloads), then
/// 200 pings 5 ms apart.
fn measure(hosts: &Hosts) -> Figures {
    let t = secs();
    let server = hosts.h3.spawn(&["iperf3", "-s", "-1"]);
    std::thread::sleep(Duration::from_millis(300));
    let tcp = hosts.h2.exec(
        t + 20,
        &["iperf3", "-J", "-c", hosts.target, "-t", &t.to_string()],
    );
    let tcp: serde_json::Value = serde_json::from_str(&ok(&tcp, "iperf3 tcp")).unwrap();
    drop(server);
    let server = hosts.h3.spawn(&["iperf3", "-s", "-1"]);
    std::thread::sleep(Duration::from_millis(300));
    let udp = hosts.h2.exec(
        t + 20,
        &[
            "iperf3",
            "-J",
            "-u",
            "-b",
            "0",
            "-l",
            "18",
            "-c",
            hosts.target,
            "-t",
            &t.to_string(),
        ],
    );
    let udp: serde_json::Value = serde_json::from_str(&ok(&udp, "iperf3 udp")).unwrap();
    drop(server);
    let packets = json_f64(&udp, &["end", "sum", "packets"]);
    let lost = json_f64(&udp, &["end", "sum", "lost_packets"]);
    let seconds = json_f64(&udp, &["end", "sum", "seconds"]);
    let ping = hosts.h2.exec(
        30,
        &["ping", "-n", "-c", "200", "-i", "0.005", hosts.target],
    );
    let mut rtts: Vec<f64> = ok(&ping, "ping")
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(rtts.len() > 150, "too few ping replies: {}", rtts.len());
    rtts.sort_by(f64::total_cmp);
    Figures {
        tcp_gbps: json_f64(&tcp, &["end", "sum_received", "bits_per_second"]) / 1e9,
        udp_pps: (packets - lost) / seconds,
        rtt_median_us: rtts[rtts.len() / 2] * 1000.0,
    }
}

fn kernel() -> Figures {
    let (h2, r, h3) = (Netns::new("bk-h2"), Netns::new("bk-r"), Netns::new("bk-h3"));
    for (host, rdev, hdev) in [(&h2, "r2", "eth2"), (&h3, "r3", "eth3")] {
        r.ip(&["link", "add", rdev, "type", "veth", "peer", "name", hdev]);
        r.ip(&["link", "set", hdev, "netns", host.name()]);
    }
    r.address("r2", "10.0.2.1/24", None);
    r.address("r3", "10.0.3.1/24", None);
    ok(
        &r.exec(5, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]),
        "sysctl",
    );
    h2.address("eth2", "10.0.2.2/24", Some("10.0.2.1"));
    h3.address("eth3", "10.0.3.2/24", Some("10.0.3.1"));
    let hosts = Hosts {
        h2,
        h3,
        target: "10.0.3.2",
    };
    hosts.h2.wait_for_ping(hosts.target, 10);
    let f = measure(&hosts);
    drop(r);
    f
}

/// edgefwd on TAPs, its workers polling `busy_poll_us` after each frame.
fn edgefwd(busy_poll_us: u32) -> Figures {
    let (h2, h3) = (Netns::new("be-h2"), Netns::new("be-h3"));
    let dir = common::temp_dir("netns-bench");
    let toml = format!(
        "[dataplane]\nbusy_poll_us = {busy_poll_us}\n\n[control]\nsocket = \"{}\"\n\n[[port]]\nname = \"Port2\"\nbind = \"tap:p2@{}\"\nmac = \"02:00:00:00:02:01\"\naddresses = [\"10.0.2.1/24\"]\n\n\
         [[port]]\nname = \"Port3\"\nbind = \"tap:p3@{}\"\nmac = \"02:00:00:00:03:01\"\naddresses = [\"10.0.3.1/24\"]\n",
        dir.path().join("control.sock").display(),
        h2.name(),
        h3.name()
    );
    let cfg = Config::parse(&toml).unwrap();
    let control = Control::default();
    let c = control.clone();
    let daemon = std::thread::spawn(move || run(&cfg, Path::new("netns bench"), &c));
    h2.wait_for_device("p2");
    h3.wait_for_device("p3");
    h2.address("p2", "10.0.2.2/24", Some("10.0.2.1"));
    h3.address("p3", "10.0.3.2/24", Some("10.0.3.1"));
    let hosts = Hosts {
        h2,
        h3,
        target: "10.0.3.2",
    };
    hosts.h2.wait_for_ping(hosts.target, 10);
    let f = measure(&hosts);
    control.stop.store(true, Ordering::Relaxed);
    let summary = daemon.join().unwrap().unwrap();
    let s = &summary.stats;
    println!(
        "edgefwd (busy_poll_us = {busy_poll_us}) counters: in {} forwarded {} (ip4-fast {}) local {} dropped {} (tx_errors {})",
        s.received(),
        s.forwarded,
        s.fast_path,
        s.local,
        s.dropped(),
        s.ports.iter().map(|p| p.tx_errors).sum::<u64>()
    );
    f
}

fn plain_relay() -> Figures {
    let (h2, h3) = (Netns::new("bn-h2"), Netns::new("bn-h3"));
    let relay = relay::Relay::start(("p2", h2.name()), ("p3", h3.name()));
    h2.address("p2", "10.0.9.2/24", None);
    h3.address("p3", "10.0.9.3/24", None);
    let hosts = Hosts {
        h2,
        h3,
        target: "10.0.9.3",
    };
    hosts.h2.wait_for_ping(hosts.target, 10);
    let f = measure(&hosts);
    let frames = relay.stop();
    println!("plain relay: {frames} frames");
    f
}

fn main() {
    const NAME: &str = "netns bench";
    if !common::need_root(NAME)
        || !common::need_tool(NAME, "iperf3", "--version")
        || !common::need_tool(NAME, "ping", "-V")
    {
        std::process::exit(1);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("netns bench: {} s per measurement, {cores} cores", secs());
    let k = kernel();
    let e = edgefwd(0);
    let b = edgefwd(BUSY_POLL_US);
    let p = plain_relay();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!();
    println!(
        "| figure | kernel | edgefwd | edgefwd/kernel | edgefwd, busy poll | busy/kernel | plain relay | edgefwd/relay |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let row = |name: &str, f: fn(&Figures) -> f64, digits: usize| {
        println!(
            "| {name} | {:.digits$} | {:.digits$} | {:.2} | {:.digits$} | {:.2} | {:.digits$} | {:.2} |",
            f(&k),
            f(&e),
            ratio(f(&e), f(&k)),
            f(&b),
            ratio(f(&b), f(&k)),
            f(&p),
            ratio(f(&e), f(&p)),
        )
    };
    row("TCP (iperf3) Gbit/s", |f| f.tcp_gbps, 2);
    row("UDP 64-byte frames delivered, kpps", |f| f.udp_pps / 1e3, 0);
    println!(
        "| ping RTT median, µs | {:.0} | {:.0} | {:+.0} µs | {:.0} | {:+.0} µs | {:.0} | {:+.0} µs |",
        k.rtt_median_us,
        e.rtt_median_us,
        e.rtt_median_us - k.rtt_median_us,
        b.rtt_median_us,
        b.rtt_median_us - k.rtt_median_us,
        p.rtt_median_us,
        e.rtt_median_us - p.rtt_median_us
    );
}
