//! Side by side on one machine, in one run: the Linux kernel forwarding
//! between network namespaces, edgefwd forwarding between TAPs (as
//! configured by default; busy polling; and with a syscall per frame
//! instead of io_uring batches), and a plain one-read-one-write TAP relay.
//! Each moves traffic between two host namespaces of its own; the table
//! gives each figure with its ratio to the kernel's and to the relay's,
//! and the CPU time the forwarder's own threads spent per UDP frame
//! forwarded (the kernel's forwarding runs in softirqs of any thread, so
//! it has none).
//!
//! All the topologies are built first and then measured in interleaved
//! rounds (every round measures each forwarder once), so a slow spell of
//! this shared machine hits all of them alike; a figure is the median of
//! its rounds (RTT: of all its pings at one spacing).
//!
//! `sudo cargo bench --bench netns` (root: namespaces, TAPs; needs iperf3
//! ping and nft). `EDGEFWD_NETNS_SECS` sets the length of each throughput
//! round (default 2 s; three rounds). Traffic stays inside the namespaces
//! this makes and removes.
//!
//! ```text
//! kernel:  h2 ─veth─ router netns (ip_forward) ─veth─ h3
//! NAT:     vm ─veth─ router netns (nftables masquerade) ─veth─ inet, and
//!          vm ─TAP─ edgefwd (internal switch, NAT out of Port2) ─TAP─
//!          inet with 1 and 2 workers (reported, not targeted: the two
//!          cores are shared with iperf3 and the hosts' own stacks)
//! edgefwd: h2 ─TAP─ edgefwd (in this process) ─TAP─ h3, three times: as
//!          configured by default (a worker per core, sleeping when idle,
//!          TAP frames through io_uring); one worker with busy_poll_us =
//!          BUSY_POLL_US; and the default with io_uring = false
//! veths:   h2 ─veth─ edgefwd on afxdp: (and on afpacket:) ports ─veth─
//!          h3, the hosts sending plain frames (neither socket kind
//!          carries offload state)
//! relay:   h2 ─TAP─ read()/write() loop, 1 thread ─TAP─ h3 (one subnet)
//! ```

#[path = "../chart.rs"]
mod chart;
#[path = "../../tests/common/mod.rs"]
mod common;
mod relay;

use std::process::Output;

use common::Netns;
use edgefwd_control::config::Config;

/// The busy poll of the second edgefwd: longer than the pings' 5 ms
/// spacing, so its worker never sleeps while traffic flows. It runs one
/// worker: a polling worker keeps its core, and the hosts need the other
/// (with two polling workers on two cores, the added RTT measured twice
/// as much).
const BUSY_POLL_US: u32 = 20_000;
/// Throughput rounds per forwarder.
const ROUNDS: usize = 3;
/// Ping rounds per forwarder.
const PING_ROUNDS: usize = 5;
/// The spacings of the pings (`ping -i`, s) and pings per round at each.
/// 5 ms apart, the cores go idle between pings, and on a virtual machine
/// each ping then costs tens of µs more, which swing even the kernel's own
/// RTT from run to run (15 to 53 µs measured, against 7 µs 0.2 ms apart);
/// 0.2 ms apart, what a forwarder adds is its own path.
const PING_SPACINGS: [(&str, usize); 2] = [("0.005", 40), ("0.0002", 200)];

/// One forwarder's topology, running.
struct Topology {
    name: &'static str,
    /// What forwards; declared first, so it stops before the namespaces go.
    forwarder: Forwarder,
    h2: Netns,
    h3: Netns,
    /// h3's address, the target of every measurement.
    target: &'static str,
    /// h3's device, whose received frames count what was forwarded to it.
    h3_dev: &'static str,
    /// The forwarder's threads in this process (none for the kernel).
    threads: Vec<u32>,
}

enum Forwarder {
    Kernel {
        /// The router namespace.
        _router: Netns,
    },
    Edgefwd {
        daemon: common::Daemon,
        _dir: tempfile::TempDir,
        /// The namespace its ports bind in, when not the hosts'.
        _edge: Option<Netns>,
    },
    Relay(relay::Relay),
}

/// One forwarder's figures: a sample per round.
#[derive(Default)]
struct Samples {
    tcp_gbps: Vec<f64>,
    udp_pps: Vec<f64>,
    /// The forwarder's CPU per frame forwarded in the UDP rounds, µs.
    udp_cpu_us: Vec<f64>,
    /// RTTs at each of [`PING_SPACINGS`], µs.
    rtt_us: [Vec<f64>; PING_SPACINGS.len()],
}

/// The threads named `prefix` that are not in `before`: a forwarder's own,
/// told apart from those of forwarders started before it. Asked once the
/// forwarder has moved frames (a thread names itself once it runs).
fn threads_since(prefix: &str, before: &[u32]) -> Vec<u32> {
    let mut now = common::threads_named(prefix);
    now.retain(|id| !before.contains(id));
    assert!(!now.is_empty(), "no {prefix}* threads started");
    now
}

/// User and system CPU time of `threads` so far, in µs.
fn cpu_us(threads: &[u32]) -> f64 {
    let ticks: u64 = threads.iter().map(|&id| common::thread_cpu_ticks(id)).sum();
    ticks as f64 * 10_000.0
}

fn secs() -> u32 {
    common::env_or("EDGEFWD_NETNS_SECS", 2)
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

impl Topology {
    /// iperf3 from h2 to h3 for `secs` with `args`; its JSON report.
    fn iperf3(&self, args: &[&str]) -> serde_json::Value {
        let t = secs();
        let server = self.h3.spawn(&["iperf3", "-s", "-1"]);
        self.h3.wait_for_listener(5201);
        let mut cmd = vec!["iperf3", "-J", "-c", self.target, "-t"];
        let t_arg = t.to_string();
        cmd.push(&t_arg);
        cmd.extend_from_slice(args);
        let out = self.h2.exec(t + 20, &cmd);
        drop(server);
        serde_json::from_str(&ok(&out, &format!("{}: iperf3 {args:?}", self.name))).unwrap()
    }

    fn tcp_gbps(&self) -> f64 {
        let r = self.iperf3(&[]);
        json_f64(&r, &["end", "sum_received", "bits_per_second"]) / 1e9
    }

    /// 64-byte frames (18-byte UDP payloads) delivered per second, and
    /// the forwarder's CPU per frame it forwarded meanwhile, in µs (NaN
    /// for the kernel, whose forwarding runs in softirqs of any thread).
    fn udp_pps(&self) -> (f64, f64) {
        let (cpu, frames) = (cpu_us(&self.threads), self.h3_frames());
        let r = self.iperf3(&["-u", "-b", "0", "-l", "18"]);
        let (cpu, frames) = (cpu_us(&self.threads) - cpu, self.h3_frames() - frames);
        let packets = json_f64(&r, &["end", "sum", "packets"]);
        let lost = json_f64(&r, &["end", "sum", "lost_packets"]);
        let pps = (packets - lost) / json_f64(&r, &["end", "sum", "seconds"]);
        let per_frame = if self.threads.is_empty() || frames <= 0.0 {
            f64::NAN
        } else {
            cpu / frames
        };
        (pps, per_frame)
    }

    /// Frames h3's device has received so far.
    fn h3_frames(&self) -> f64 {
        let path = format!("/sys/class/net/{}/statistics/rx_packets", self.h3_dev);
        let out = self.h3.exec(5, &["cat", &path]);
        ok(&out, &format!("{}: {path}", self.name))
            .trim()
            .parse()
            .unwrap_or(f64::NAN)
    }

    /// RTTs of `pings` pings `interval` seconds apart, in µs.
    fn rtts_us(&self, (interval, pings): (&str, usize)) -> Vec<f64> {
        let count = pings.to_string();
        let out = self.h2.exec(
            30,
            &["ping", "-n", "-c", &count, "-i", interval, self.target],
        );
        let rtts: Vec<f64> = ok(&out, &format!("{}: ping", self.name))
            .lines()
            .filter_map(|l| l.split("time=").nth(1))
            .filter_map(|t| t.split_whitespace().next()?.parse::<f64>().ok())
            .map(|ms| ms * 1000.0)
            .collect();
        assert!(
            rtts.len() * 4 > pings * 3,
            "{}: too few ping replies: {}",
            self.name,
            rtts.len()
        );
        rtts
    }

    /// Stops the forwarder and prints what it counted.
    fn stop(self) {
        match self.forwarder {
            Forwarder::Kernel { .. } => {}
            Forwarder::Edgefwd { mut daemon, .. } => {
                let summary = daemon.stop().expect("daemon failed");
                let s = &summary.stats;
                println!(
                    "{} counters: in {} forwarded {} (ip4-fast {}) local {} dropped {} (tx_errors {})",
                    self.name,
                    s.received(),
                    s.forwarded,
                    s.fast_path,
                    s.local,
                    s.dropped(),
                    s.ports.iter().map(|p| p.tx_errors).sum::<u64>()
                );
            }
            Forwarder::Relay(relay) => println!("{}: {} frames", self.name, relay.stop()),
        }
    }
}

fn kernel() -> Topology {
    let [h2, r, h3] = common::kernel_router("bk");
    Topology {
        name: "kernel",
        forwarder: Forwarder::Kernel { _router: r },
        h2,
        h3,
        target: "10.0.3.2",
        h3_dev: "eth3",
        threads: Vec::new(),
    }
}

/// edgefwd on TAPs with `dataplane` as its `[dataplane]` section.
fn edgefwd(name: &'static str, tag: &str, dataplane: &str) -> Topology {
    let (h2, h3) = (
        Netns::new(&format!("{tag}-h2")),
        Netns::new(&format!("{tag}-h3")),
    );
    let dir = common::temp_dir("netns-bench");
    let toml = format!(
        "[dataplane]\n{dataplane}\n[control]\nsocket = \"{}\"\n\n\
         [[port]]\nname = \"Port2\"\nbind = \"tap:p2@{}\"\nmac = \"02:00:00:00:02:01\"\naddresses = [\"10.0.2.1/24\"]\n\n\
         [[port]]\nname = \"Port3\"\nbind = \"tap:p3@{}\"\nmac = \"02:00:00:00:03:01\"\naddresses = [\"10.0.3.1/24\"]\n",
        dir.path().join("control.sock").display(),
        h2.name(),
        h3.name()
    );
    let before = common::threads_named("edgefwd-w");
    let daemon = common::Daemon::start(Config::parse(&toml).unwrap());
    h2.wait_for_device("p2");
    h3.wait_for_device("p3");
    h2.address("p2", "10.0.2.2/24", Some("10.0.2.1"));
    h3.address("p3", "10.0.3.2/24", Some("10.0.3.1"));
    h2.wait_for_ping("10.0.3.2", 10);
    let threads = threads_since("edgefwd-w", &before);
    Topology {
        name,
        forwarder: Forwarder::Edgefwd {
            daemon,
            _dir: dir,
            _edge: None,
        },
        h2,
        h3,
        target: "10.0.3.2",
        h3_dev: "p3",
        threads,
    }
}

/// edgefwd on veths bound by `kind` (`afxdp` or `afpacket`): each host's
/// veth peer sits in an edge namespace the ports bind in. Neither socket
/// kind carries offload state, so the hosts send plain frames (no TSO, no
/// checksum offload), which costs their TCP what the kernel's own veths
/// do not pay.
fn edgefwd_veth(name: &'static str, tag: &str, kind: &str) -> Topology {
    let edge = Netns::new(&format!("{tag}-edge"));
    let (h2, h3) = (
        Netns::new(&format!("{tag}-h2")),
        Netns::new(&format!("{tag}-h3")),
    );
    let dir = common::temp_dir("netns-bench");
    let mut ports = String::new();
    for (i, h) in [(2, &h2), (3, &h3)] {
        let x = format!("x{i}");
        common::veth_to_host(&edge, h, &x);
        let link: serde_json::Value =
            serde_json::from_str(&edge.ip(&["-j", "link", "show", &x])).unwrap();
        let mac = link[0]["address"].as_str().unwrap().to_owned();
        ports += &format!(
            "[[port]]\nname = \"Port{i}\"\nbind = \"{kind}:{x}@{}\"\nmac = \"{mac}\"\naddresses = [\"10.0.{i}.1/24\"]\n\n",
            edge.name()
        );
    }
    let toml = format!(
        "[dataplane]\nworkers = 2\n[control]\nsocket = \"{}\"\n\n{ports}",
        dir.path().join("control.sock").display(),
    );
    h2.address("eth0", "10.0.2.2/24", Some("10.0.2.1"));
    h3.address("eth0", "10.0.3.2/24", Some("10.0.3.1"));
    let before = common::threads_named("edgefwd-w");
    let daemon = common::Daemon::start(Config::parse(&toml).unwrap());
    h2.wait_for_ping("10.0.3.2", 10);
    let threads = threads_since("edgefwd-w", &before);
    Topology {
        name,
        forwarder: Forwarder::Edgefwd {
            daemon,
            _dir: dir,
            _edge: Some(edge),
        },
        h2,
        h3,
        target: "10.0.3.2",
        h3_dev: "eth0",
        threads,
    }
}

/// The NAT path: a VM namespace on the internal switch reaching an
/// internet namespace behind Port2, masqueraded. By the kernel: a router
/// namespace with nftables masquerade.
fn kernel_nat() -> Topology {
    let (vm, r, inet) = (
        Netns::new("bkn-vm"),
        Netns::new("bkn-r"),
        Netns::new("bkn-in"),
    );
    for (host, rdev, hdev) in [(&vm, "rv", "eth0"), (&inet, "ri", "eth1")] {
        r.ip(&["link", "add", rdev, "type", "veth", "peer", "name", hdev]);
        r.ip(&["link", "set", hdev, "netns", host.name()]);
    }
    r.address("rv", "172.28.0.1/24", None);
    r.address("ri", "10.0.2.1/24", Some("10.0.2.2"));
    ok(
        &r.exec(5, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]),
        "sysctl",
    );
    let rules = "table ip nat {
 chain post {
  type nat hook postrouting priority srcnat;
  oifname \"ri\" masquerade
 }
}
";
    let path = std::env::temp_dir().join("edgefwd-bkn.nft");
    std::fs::write(&path, rules).unwrap();
    ok(&r.exec(10, &["nft", "-f", path.to_str().unwrap()]), "nft");
    vm.address("eth0", "172.28.0.10/24", Some("172.28.0.1"));
    inet.address("eth1", "10.0.2.2/24", None);
    vm.wait_for_ping("10.0.2.2", 10);
    Topology {
        name: "kernel, NAT",
        forwarder: Forwarder::Kernel { _router: r },
        h2: vm,
        h3: inet,
        target: "10.0.2.2",
        h3_dev: "eth1",
        threads: Vec::new(),
    }
}

/// The NAT path through edgefwd with `workers` workers: the VM's TAP a
/// member of the internal switch, NATed out of Port2.
fn edgefwd_nat(name: &'static str, tag: &str, workers: usize) -> Topology {
    let (vm, inet) = (
        Netns::new(&format!("{tag}-vm")),
        Netns::new(&format!("{tag}-in")),
    );
    let dir = common::temp_dir("netns-bench");
    let toml = format!(
        "[dataplane]\nworkers = {workers}\n[control]\nsocket = \"{}\"\n\n\
         [[port]]\nname = \"Port2\"\nbind = \"tap:p2@{}\"\nmac = \"02:00:00:00:02:01\"\naddresses = [\"10.0.2.1/24\"]\ngateway = \"10.0.2.2\"\n\n\
         [[port]]\nname = \"vm1\"\nbind = \"tap:vm1@{}\"\nswitch = \"internal\"\n\n\
         [[switch]]\nname = \"internal\"\nkind = \"internal\"\naddress = \"172.28.0.1/24\"\nnat = \"Port2\"\n",
        dir.path().join("control.sock").display(),
        inet.name(),
        vm.name()
    );
    let before = common::threads_named("edgefwd-w");
    let daemon = common::Daemon::start(Config::parse(&toml).unwrap());
    inet.wait_for_device("p2");
    vm.wait_for_device("vm1");
    inet.address("p2", "10.0.2.2/24", None);
    vm.address("vm1", "172.28.0.10/24", Some("172.28.0.1"));
    vm.wait_for_ping("10.0.2.2", 10);
    let threads = threads_since("edgefwd-w", &before);
    Topology {
        name,
        forwarder: Forwarder::Edgefwd {
            daemon,
            _dir: dir,
            _edge: None,
        },
        h2: vm,
        h3: inet,
        target: "10.0.2.2",
        h3_dev: "p2",
        threads,
    }
}

fn plain_relay() -> Topology {
    let (h2, h3) = (Netns::new("bn-h2"), Netns::new("bn-h3"));
    let before = common::threads_named(relay::THREAD);
    let relay = relay::Relay::start(("p2", h2.name()), ("p3", h3.name()));
    h2.address("p2", "10.0.9.2/24", None);
    h3.address("p3", "10.0.9.3/24", None);
    h2.wait_for_ping("10.0.9.3", 10);
    let threads = threads_since(relay::THREAD, &before);
    Topology {
        name: "plain relay",
        forwarder: Forwarder::Relay(relay),
        h2,
        h3,
        target: "10.0.9.3",
        h3_dev: "p3",
        threads,
    }
}

fn main() {
    const NAME: &str = "netns bench";
    if !common::need_root(NAME)
        || !common::need_tool(NAME, "iperf3", "--version")
        || !common::need_tool(NAME, "ping", "-V")
        || !common::need_tool(NAME, "nft", "--version")
        || !common::need_tool(NAME, "ethtool", "--version")
    {
        std::process::exit(1);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "netns bench: {ROUNDS} interleaved rounds of {} s per throughput figure, {PING_ROUNDS} of pings at each spacing {:?} (s, pings); {cores} cores",
        secs(),
        PING_SPACINGS
    );
    let topologies = [
        kernel(),
        edgefwd("edgefwd", "be", &format!("workers = {cores}\n")),
        edgefwd(
            "edgefwd, busy poll",
            "bb",
            &format!("workers = 1\nbusy_poll_us = {BUSY_POLL_US}\n"),
        ),
        edgefwd(
            "edgefwd, no io_uring",
            "bs",
            &format!("workers = {cores}\nio_uring = false\n"),
        ),
        edgefwd_veth("edgefwd, afxdp: veths", "bx", "afxdp"),
        edgefwd_veth("edgefwd, afpacket: veths", "bp", "afpacket"),
        kernel_nat(),
        edgefwd_nat("edgefwd, NAT, 1 worker", "bn1", 1),
        edgefwd_nat("edgefwd, NAT, 2 workers", "bn2", 2),
        plain_relay(),
    ];
    let mut samples: Vec<Samples> = topologies.iter().map(|_| Samples::default()).collect();
    for _ in 0..ROUNDS {
        for (t, s) in topologies.iter().zip(&mut samples) {
            s.tcp_gbps.push(t.tcp_gbps());
        }
    }
    for _ in 0..ROUNDS {
        for (t, s) in topologies.iter().zip(&mut samples) {
            let (pps, cpu) = t.udp_pps();
            s.udp_pps.push(pps / 1e3);
            s.udp_cpu_us.push(cpu);
        }
    }
    for _ in 0..PING_ROUNDS {
        for (t, s) in topologies.iter().zip(&mut samples) {
            for (spacing, rtts) in PING_SPACINGS.into_iter().zip(&mut s.rtt_us) {
                rtts.extend(t.rtts_us(spacing));
            }
        }
    }
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (t, s) in topologies.iter().zip(&samples) {
        println!(
            "{}: TCP Gbit/s by round [{}], UDP kpps by round [{}], forwarder CPU per UDP frame (µs) by round [{}]",
            t.name,
            list(&s.tcp_gbps),
            list(&s.udp_pps),
            list(&s.udp_cpu_us)
        );
    }
    let names: Vec<&str> = topologies.iter().map(|t| t.name).collect();
    for t in topologies {
        t.stop();
    }

    let figures: Vec<[f64; 5]> = samples
        .iter()
        .map(|s| {
            [
                common::median(&s.tcp_gbps),
                common::median(&s.udp_pps),
                common::median(&s.udp_cpu_us),
                common::median(&s.rtt_us[0]),
                common::median(&s.rtt_us[1]),
            ]
        })
        .collect();
    let (kernel, relay) = (figures[0], figures[figures.len() - 1]);
    println!();
    println!(
        "| forwarder (medians) | TCP (iperf3) Gbit/s | ×kernel | UDP 64-byte frames delivered, kpps | ×kernel | ×relay | forwarder CPU per UDP frame, µs | ×relay | ping RTT 5 ms apart, µs | added to kernel's | ping RTT 0.2 ms apart, µs | added to kernel's |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, [tcp, udp, cpu, rtt, rtt_close]) in names.iter().zip(&figures) {
        // The kernel forwards in softirqs of whatever thread: no figure.
        let cpu = if cpu.is_nan() {
            "— | —".to_owned()
        } else {
            format!("{cpu:.2} | {:.2}", cpu / relay[2])
        };
        println!(
            "| {name} | {tcp:.2} | {:.2} | {udp:.0} | {:.2} | {:.2} | {cpu} | {rtt:.0} | {:+.0} µs | {rtt_close:.0} | {:+.0} µs |",
            tcp / kernel[0],
            udp / kernel[1],
            udp / relay[1],
            rtt - kernel[3],
            rtt_close - kernel[4],
        );
    }
    let figure = |title: &str, baseline: &str, i: usize| chart::Figure {
        title: title.to_owned(),
        baseline: baseline.to_owned(),
        bars: names
            .iter()
            .zip(&figures)
            .map(|(n, f)| ((*n).to_owned(), f[i]))
            .collect(),
    };
    chart::write(
        "netns",
        &[
            figure("TCP (iperf3), Gbit/s", "kernel", 0),
            figure("UDP 64-byte frames delivered, kpps", "kernel", 1),
            figure(
                "forwarder CPU per UDP frame, µs (the kernel's is in softirqs: none)",
                "plain relay",
                2,
            ),
            figure("ping RTT, 5 ms apart, µs", "kernel", 3),
            figure("ping RTT, 0.2 ms apart, µs", "kernel", 4),
        ],
    );
}
