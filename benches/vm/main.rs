//! VM traffic side by side, in one run: DPDK's `dpdk-testpmd` plays the VM
//! (its virtio-user ports are what a VM's virtio-net devices are to a
//! vhost-user switch; its `net_tap` ports what a VM on a TAP is to the
//! kernel), and the switches under test move its frames.
//!
//! **VM to VM** (the Kubernetes master and worker VMs talk pod to pod over
//! the internal switch), a PVP loop: one VM holds two ports in `mac` mode
//! (each port's frames go to the other port's MAC), seeded with
//! `start tx_first 16`; the frames then circulate through the switch, so
//! the VM's received frames per second are the frames switched. Joined by
//! - edgefwd's internal switch between two `vhost-user:` ports, and the
//!   same with `vm_one_copy = false` (each frame copied in and out);
//! - a Linux bridge between the VM's two TAPs (what VMs on TAPs get from
//!   the kernel);
//! - DPDK's own io forwarding between two `net_vhost` ports (the ceiling);
//! - edgefwd's internal switch on the VM's two TAPs through their
//!   netdevs (`afxdp:`), as a VM on a TAP reaches edgefwd without
//!   vhost-user.
//!
//! **VM to host, routed**: the VM generates UDP (`txonly`) to a host
//! namespace, which counts what arrives on its device (and drops it at
//! ingress with nftables, so no UDP stack runs behind the count): through edgefwd
//! (VM on `vhost-user:`, host on a TAP port) and through the kernel's
//! routing (VM on a TAP, host on a veth).
//!
//! Two cores: at most two busy pollers fit, each on its own core. The VM
//! forwards on core 1 (`-l 0-1 --main-lcore 0`, its main thread, which
//! polls its prompt once forwarding, at SCHED_IDLE); edgefwd runs one
//! worker, busy polling, pinned to core 0; DPDK's switch forwards on core
//! 0. Every
//! scenario is built, measured and torn down in turn, round after round
//! (interleaved), and a figure is the median of its rounds. CPU per frame:
//! the whole machine's busy time per frame switched, and the switch's
//! share (the machine's less the VM process's own).
//!
//! `sudo cargo bench --bench vm` (root: namespaces, TAPs; needs
//! dpdk-testpmd). `EDGEFWD_VM_SECS` sets each measurement's length
//! (default 3 s) and `EDGEFWD_VM_ROUNDS` the rounds (default 3). Traffic stays inside the VMs, switches and
//! namespaces this makes and removes.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Netns;
use edgefwd_control::config::Config;
use parking_lot::Mutex;

/// Frames each VM port sends before it starts forwarding: bursts of 32.
const SEED_BURSTS: u32 = 16;
const MAC_A: &str = "02:00:00:00:aa:01";
const MAC_B: &str = "02:00:00:00:aa:02";

/// Rounds of every measurement (`EDGEFWD_VM_ROUNDS`, default 3).
fn rounds() -> usize {
    common::env_or("EDGEFWD_VM_ROUNDS", 3)
}

/// Whether a scenario is measured: all, or those whose name holds
/// `EDGEFWD_VM_ONLY` (for a look at one).
fn wanted(name: &str) -> bool {
    std::env::var("EDGEFWD_VM_ONLY").map_or(true, |w| name.contains(&w))
}

fn secs() -> u64 {
    common::env_or("EDGEFWD_VM_SECS", 3)
}

/// Busy time of the whole machine so far, in clock ticks (10 ms).
fn machine_busy() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    f.iter().sum::<u64>() - f[3] - f[4]
}

/// Pins thread `tid` to `cpu`.
fn pin(tid: u32, cpu: u32) {
    let out = Command::new("taskset")
        .args(["-pc", &cpu.to_string(), &tid.to_string()])
        .output()
        .expect("taskset");
    assert!(out.status.success(), "taskset {tid}");
}

/// A testpmd process, killed (its runtime files removed) on drop.
struct Testpmd {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<String>>,
    prefix: String,
}

impl Testpmd {
    /// Starts testpmd (in `ns`, if given) on lcores 0-1 with `main` as the
    /// main lcore (the other forwards), `vdevs`, and testpmd options
    /// `args`; interactive ones (`-i`) get their commands on stdin.
    fn start(ns: Option<&Netns>, tag: &str, main: u32, vdevs: &[String], args: &[&str]) -> Testpmd {
        let prefix = format!("efw-vm-{tag}-{}", std::process::id());
        // Line-buffered: its answers are read as they come.
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name(), "stdbuf", "-oL", "dpdk-testpmd"]);
                c
            }
            None => {
                let mut c = Command::new("stdbuf");
                c.args(["-oL", "dpdk-testpmd"]);
                c
            }
        };
        cmd.args(common::testpmd::eal_args(main, 1024, &prefix))
            .args(vdevs)
            .args(["--", "--total-num-mbufs=32768", "--rxd=1024", "--txd=1024"])
            .args(["--nb-cores=1"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("dpdk-testpmd");
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stderr = BufReader::new(child.stderr.take().unwrap());
        for reader in [
            Box::new(stdout) as Box<dyn BufRead + Send>,
            Box::new(stderr),
        ] {
            let sink = Arc::clone(&out);
            std::thread::spawn(move || {
                for line in reader.lines().map_while(Result::ok) {
                    let mut s = sink.lock();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let stdin = child.stdin.take();
        let t = Testpmd {
            child,
            stdin,
            out,
            prefix,
        };
        // Interactive, it says `Done` once its ports are up; else it
        // starts forwarding at once.
        let ready = if args.contains(&"-i") {
            "Done"
        } else {
            "packet forwarding - ports="
        };
        t.wait_for(ready, Duration::from_secs(20));
        t
    }

    fn text(&self) -> String {
        self.out.lock().clone()
    }

    fn wait_for(&self, what: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "testpmd never said {what:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cmd(&mut self, c: &str) {
        let stdin = self.stdin.as_mut().expect("interactive");
        writeln!(stdin, "{c}").unwrap();
        stdin.flush().unwrap();
    }

    /// Frames its `ports` ports have received so far (`show port stats`).
    fn rx_total(&mut self, ports: usize) -> u64 {
        let from = self.text().len();
        self.cmd("show port stats all");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let t = self.text();
            let new = &t[from..];
            if new.matches("Tx-pps:").count() >= ports {
                return new
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("RX-packets:"))
                    .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
                    .sum();
            }
            assert!(Instant::now() < deadline, "no port stats:\n{t}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts forwarding with `start` (a `start` command) and takes the
    /// main thread to SCHED_IDLE: once forwarding, interactive testpmd's
    /// main thread polls its prompt without sleeping, which would take
    /// half of core 0 from the switch under test.
    fn start_forwarding(&mut self, start: &str) {
        self.cmd(start);
        self.wait_for("forwarding packets/burst", Duration::from_secs(5));
        let out = Command::new("chrt")
            .args(["-i", "-p", "0", &self.pid().to_string()])
            .output()
            .expect("chrt");
        assert!(
            out.status.success(),
            "chrt: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        common::testpmd::remove_runtime(&self.prefix);
    }
}

/// An edgefwd daemon in this process, its one worker pinned to core 0.
struct Edge {
    daemon: common::Daemon,
    dir: tempfile::TempDir,
}

impl Edge {
    /// Starts edgefwd with `dataplane` (more `[dataplane]` settings) and
    /// `ports` (the `[[port]]` and `[[switch]]` sections; `{dir}` stands
    /// for its directory).
    fn start(dataplane: &str, ports: &str) -> Edge {
        let dir = common::temp_dir("vm-bench");
        let toml = format!(
            "[dataplane]\nworkers = 1\nbusy_poll_us = 20000\n{dataplane}[control]\nsocket = \"{}\"\n\n{}",
            dir.path().join("control.sock").display(),
            ports.replace("{dir}", &dir.path().display().to_string())
        );
        let before = common::threads_named("edgefwd-w");
        let daemon = common::Daemon::start(Config::parse(&toml).unwrap());
        let deadline = Instant::now() + Duration::from_secs(5);
        let worker = loop {
            let mut now = common::threads_named("edgefwd-w");
            now.retain(|t| !before.contains(t));
            if let Some(&w) = now.first() {
                break w;
            }
            assert!(Instant::now() < deadline, "no edgefwd worker");
            std::thread::sleep(Duration::from_millis(10));
        };
        pin(worker, 0);
        Edge { daemon, dir }
    }

    fn sock(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn stop(mut self) -> String {
        // Frames whose payload went straight from one VM to the other.
        let socket = self.dir.path().join("control.sock");
        let ports = edgefwd_control::api::call(&socket, edgefwd_control::api::Command::PortShow {})
            .unwrap_or_default();
        let direct: u64 = ports["ports"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|p| p["device"]["tx_direct"].as_u64())
                    .sum()
            })
            .unwrap_or(0);
        let s = self.daemon.stop().expect("daemon");
        let tx_errors: u64 = s.stats.ports.iter().map(|p| p.tx_errors).sum();
        format!(
            "in {} forwarded {} dropped {} tx_errors {} one copy {}",
            s.stats.received(),
            s.stats.forwarded,
            s.stats.dropped(),
            tx_errors,
            direct
        )
    }
}

/// The switches of the VM-to-VM loop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Switch {
    EdgefwdVhost,
    /// The same with `vm_one_copy = false`: each frame copied into a
    /// worker's buffer and out.
    EdgefwdVhostTwoCopies,
    Bridge,
    Dpdk,
    EdgefwdAfxdp,
}

impl Switch {
    /// In the order measured: DPDK and the two-copy run right after
    /// edgefwd's vhost switch, so that a round's ratios see the machine
    /// alike.
    const ALL: [Switch; 5] = [
        Switch::EdgefwdVhost,
        Switch::Dpdk,
        Switch::EdgefwdVhostTwoCopies,
        Switch::Bridge,
        Switch::EdgefwdAfxdp,
    ];

    /// Its place in [`Switch::ALL`] (and in the bench's lists of samples).
    fn index(self) -> usize {
        Switch::ALL
            .iter()
            .position(|&s| s == self)
            .expect("every switch is in ALL")
    }

    fn name(self) -> &'static str {
        match self {
            Switch::EdgefwdVhost => "edgefwd, vhost-user",
            Switch::EdgefwdVhostTwoCopies => "edgefwd, vhost-user, two copies",
            Switch::Bridge => "Linux bridge, TAPs",
            Switch::Dpdk => "DPDK io fwd, vhost",
            Switch::EdgefwdAfxdp => "edgefwd, afxdp: on TAPs",
        }
    }
}

/// One measurement: frames per second, and machine and switch CPU per
/// frame (µs).
#[derive(Clone, Copy, Default)]
struct Sample {
    pps: f64,
    machine_us: f64,
    switch_us: f64,
}

/// Measures `frames()` (a running count) for the bench's length.
fn measure(vm_pid: u32, mut frames: impl FnMut() -> u64) -> Sample {
    std::thread::sleep(Duration::from_secs(2));
    let (t0, f0, b0, v0) = (
        Instant::now(),
        frames(),
        machine_busy(),
        common::process_cpu_ticks(vm_pid),
    );
    std::thread::sleep(Duration::from_secs(secs()));
    let (f1, b1, v1) = (frames(), machine_busy(), common::process_cpu_ticks(vm_pid));
    let dt = t0.elapsed().as_secs_f64();
    let n = (f1 - f0).max(1) as f64;
    Sample {
        pps: n / dt,
        machine_us: (b1 - b0) as f64 * 10_000.0 / n,
        switch_us: (b1 - b0).saturating_sub(v1 - v0) as f64 * 10_000.0 / n,
    }
}

fn virtio_user(i: u32, path: &str, mac: &str) -> String {
    format!("--vdev=net_virtio_user{i},path={path},mac={mac},queues=1")
}

fn tap(i: u32, iface: &str, mac: &str) -> String {
    format!("--vdev=net_tap{i},iface={iface},mac={mac}")
}

/// The VM of the loop: two ports, each sending to the other's MAC.
fn loop_vm(ns: Option<&Netns>, tag: &str, vdevs: &[String]) -> Testpmd {
    let peers = [
        format!("--eth-peer=0,{MAC_B}"),
        format!("--eth-peer=1,{MAC_A}"),
    ];
    let mut args = vec!["-i", "--forward-mode=mac"];
    args.extend(peers.iter().map(String::as_str));
    Testpmd::start(ns, tag, 0, vdevs, &args)
}

fn switch_ports(bind_a: &str, bind_b: &str) -> String {
    format!(
        "[[port]]\nname = \"vm1\"\nswitch = \"internal\"\nbind = \"{bind_a}\"\n\n\
         [[port]]\nname = \"vm2\"\nswitch = \"internal\"\nbind = \"{bind_b}\"\n\n\
         [[switch]]\nname = \"internal\"\nkind = \"internal\"\naddress = \"172.28.0.1/24\"\n"
    )
}

/// Gives the kernel side of the VM's TAPs MACs of their own: `net_tap`
/// makes them the ports' MACs, the frames' sources, and a bridge drops
/// frames from its ports' own addresses.
fn own_macs(ns: &Netns) {
    ns.batch(
        false,
        "link set ta address 02:00:00:00:cc:01\nlink set tb address 02:00:00:00:cc:02\n",
    );
}

/// One VM-to-VM measurement of `sw` with `size`-byte frames.
fn vm_to_vm(sw: Switch, size: usize, round: usize) -> Sample {
    let tag = format!("{:?}{size}r{round}", sw).to_lowercase();
    let ns = Netns::new(&format!("vm{}", &tag[..tag.len().min(6)]));
    let taps = [tap(0, "ta", MAC_A), tap(1, "tb", MAC_B)];
    let (mut vm, edge, dpdk) = match sw {
        Switch::EdgefwdVhost | Switch::EdgefwdVhostTwoCopies => {
            let ports = switch_ports("vhost-user:{dir}/a.sock", "vhost-user:{dir}/b.sock");
            let one_copy = sw == Switch::EdgefwdVhost;
            let edge = Edge::start(&format!("vm_one_copy = {one_copy}\n"), &ports);
            let vdevs = [
                virtio_user(0, &edge.sock("a.sock"), MAC_A),
                virtio_user(1, &edge.sock("b.sock"), MAC_B),
            ];
            (loop_vm(None, &tag, &vdevs), Some(edge), None)
        }
        Switch::Bridge => {
            let vm = loop_vm(Some(&ns), &tag, &taps);
            own_macs(&ns);
            ns.batch(
                false,
                "link add br0 type bridge\nlink set ta master br0\nlink set tb master br0\n\
                 link set br0 up\nlink set ta up\nlink set tb up\n",
            );
            (vm, None, None)
        }
        Switch::Dpdk => {
            let dir = common::temp_dir("vm-bench-dpdk");
            let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
            let vdevs = [
                format!("--vdev=net_vhost0,iface={}", a.display()),
                format!("--vdev=net_vhost1,iface={}", b.display()),
            ];
            let sw = Testpmd::start(
                None,
                &format!("{tag}s"),
                1,
                &vdevs,
                &["--forward-mode=io", "--stats-period", "3600"],
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while !(a.exists() && b.exists()) {
                assert!(
                    Instant::now() < deadline,
                    "no net_vhost sockets:\n{}",
                    sw.text()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            let vdevs = [
                virtio_user(0, &a.display().to_string(), MAC_A),
                virtio_user(1, &b.display().to_string(), MAC_B),
            ];
            (loop_vm(None, &tag, &vdevs), None, Some((sw, dir)))
        }
        Switch::EdgefwdAfxdp => {
            let vm = loop_vm(Some(&ns), &tag, &taps);
            own_macs(&ns);
            let ports = switch_ports(
                &format!("afxdp:ta@{}", ns.name()),
                &format!("afxdp:tb@{}", ns.name()),
            );
            let edge = Edge::start("", &ports);
            (vm, Some(edge), None)
        }
    };
    let link_wait = Instant::now();
    if let Some(e) = &edge {
        for p in ["vm1", "vm2"] {
            common::wait_for_link(&e.dir.path().join("control.sock"), p, "up");
        }
    }
    while link_wait.elapsed() < Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    vm.cmd(&format!("set txpkts {size}"));
    vm.start_forwarding(&format!("start tx_first {SEED_BURSTS}"));
    let pid = vm.pid();
    let s = measure(pid, || vm.rx_total(2));
    vm.cmd("stop");
    drop(vm);
    if let Some(e) = edge {
        println!(
            "  {} {size} B round {round}: edgefwd {}",
            sw.name(),
            e.stop()
        );
    }
    drop(dpdk);
    drop(ns);
    s
}

/// The routed rows: who forwards the VM's UDP to the host.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Router {
    EdgefwdVhost,
    Kernel,
}

/// One VM-to-host measurement: frames delivered to the host per second.
fn vm_to_host(r: Router, size: usize, round: usize) -> Sample {
    let tag = format!("{:?}{size}r{round}", r).to_lowercase();
    let host = Netns::new(&format!("vh-h{}", &tag[..tag.len().min(5)]));
    let gen_args = |peer: &str| {
        vec![
            "-i".to_owned(),
            "--forward-mode=txonly".to_owned(),
            format!("--eth-peer=0,{peer}"),
            "--tx-ip=10.0.3.2,10.0.2.2".to_owned(),
        ]
    };
    let count = |host: &Netns, dev: &str| -> u64 {
        let out = host.exec(
            5,
            &[
                "cat",
                &format!("/sys/class/net/{dev}/statistics/rx_packets"),
            ],
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let (mut vm, edge, router, dev) = match r {
        Router::EdgefwdVhost => {
            let ports = format!(
                "[[port]]\nname = \"Port2\"\nbind = \"tap:p2@{}\"\nmac = \"02:00:00:00:02:01\"\naddresses = [\"10.0.2.1/24\"]\n\n\
                 [[port]]\nname = \"Port3\"\nbind = \"vhost-user:{{dir}}/vm.sock\"\nmac = \"02:00:00:00:03:01\"\naddresses = [\"10.0.3.1/24\"]\n",
                host.name()
            );
            let edge = Edge::start("", &ports);
            host.wait_for_device("p2");
            host.address("p2", "10.0.2.2/24", Some("10.0.2.1"));
            let args = gen_args("02:00:00:00:03:01");
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let vdevs = [virtio_user(0, &edge.sock("vm.sock"), MAC_A)];
            let vm = Testpmd::start(None, &tag, 0, &vdevs, &args);
            common::wait_for_link(&edge.dir.path().join("control.sock"), "Port3", "up");
            host.wait_for_ping("10.0.2.1", 5);
            (vm, Some(edge), None, "p2")
        }
        Router::Kernel => {
            let router = Netns::new(&format!("vh-r{}", &tag[..tag.len().min(5)]));
            let args = gen_args(MAC_A);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let vm = Testpmd::start(Some(&router), &tag, 0, &[tap(0, "vt", MAC_A)], &args);
            common::veth_to_host(&router, &host, "eth2");
            router.batch(
                false,
                "addr add 10.0.3.1/24 dev vt\nlink set vt up\naddr add 10.0.2.1/24 dev eth2\nlink set eth2 up\nlink set lo up\n",
            );
            router.exec(5, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            host.address("eth0", "10.0.2.2/24", Some("10.0.2.1"));
            host.wait_for_ping("10.0.2.1", 5);
            (vm, None, Some(router), "eth0")
        }
    };
    vm.cmd(&format!("set txpkts {size}"));
    // The host counts what arrives and drops it on the spot (an nftables
    // netdev ingress hook), so neither forwarder pays for its UDP stack.
    let chain = format!("{{ type filter hook ingress device {dev} priority 0; policy drop; }}");
    for nft in [
        vec!["nft", "add", "table", "netdev", "count"],
        vec!["nft", "add", "chain", "netdev", "count", "in", &chain],
    ] {
        let out = host.exec(5, &nft);
        assert!(
            out.status.success(),
            "{nft:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    vm.start_forwarding("start");
    let pid = vm.pid();
    let s = measure(pid, || count(&host, dev));
    vm.cmd("stop");
    drop(vm);
    if let Some(e) = edge {
        println!("  {r:?} {size} B round {round}: edgefwd {}", e.stop());
    }
    drop(router);
    drop(host);
    s
}

fn row(name: &str, s: &[Sample], base: &[(&str, f64)]) {
    let pps = common::median(&s.iter().map(|x| x.pps).collect::<Vec<_>>());
    let m = common::median(&s.iter().map(|x| x.machine_us).collect::<Vec<_>>());
    let w = common::median(&s.iter().map(|x| x.switch_us).collect::<Vec<_>>());
    let ratios: Vec<String> = base
        .iter()
        .map(|(n, b)| format!("{:.2}× {n}", pps / b))
        .collect();
    println!(
        "| {name} | {:.3} Mpps | {m:.3} µs | {w:.3} µs | {} |",
        pps / 1e6,
        ratios.join(", ")
    );
}

fn main() {
    const NAME: &str = "vm bench";
    if !common::need_root(NAME)
        || !common::testpmd::need_testpmd(NAME)
        || !common::need_tool(NAME, "taskset", "-V")
        || !common::need_tool(NAME, "chrt", "-V")
        || !common::need_tool(NAME, "nft", "--version")
    {
        std::process::exit(1);
    }
    println!(
        "vm bench: {} interleaved rounds of {} s per figure; VM (testpmd) forwarding on core 1, edgefwd's one worker and DPDK's switch on core 0",
        rounds(),
        secs()
    );
    let sizes = [64usize, 1500];
    let mut loops = vec![vec![Vec::new(); Switch::ALL.len()]; sizes.len()];
    let routers = [Router::EdgefwdVhost, Router::Kernel];
    let mut routed = vec![vec![Vec::new(); routers.len()]; sizes.len()];
    for round in 0..rounds() {
        for (si, &size) in sizes.iter().enumerate() {
            for (i, &sw) in Switch::ALL.iter().enumerate() {
                if !wanted(sw.name()) {
                    continue;
                }
                let s = vm_to_vm(sw, size, round);
                println!(
                    "  {} {size} B round {round}: {:.3} Mpps",
                    sw.name(),
                    s.pps / 1e6
                );
                loops[si][i].push(s);
            }
            for (i, &r) in routers.iter().enumerate() {
                if !wanted(&format!("{r:?}")) {
                    continue;
                }
                let s = vm_to_host(r, size, round);
                println!(
                    "  {r:?} {size} B round {round}: {:.3} Mpps delivered",
                    s.pps / 1e6
                );
                routed[si][i].push(s);
            }
        }
    }
    for (si, size) in sizes.iter().enumerate() {
        let samples = |sw: Switch| &loops[si][sw.index()];
        let med =
            |sw: Switch| common::median(&samples(sw).iter().map(|x| x.pps).collect::<Vec<_>>());
        let (dpdk, bridge) = (med(Switch::Dpdk), med(Switch::Bridge));
        println!("\nVM to VM, {size}-byte frames (frames switched per second; CPU per frame: machine, switch)\n");
        println!("| Switch | Rate | Machine CPU/frame | Switch CPU/frame | Ratios |");
        println!("|---|---|---|---|---|");
        for (i, sw) in Switch::ALL.iter().enumerate() {
            row(
                sw.name(),
                &loops[si][i],
                &[("bridge", bridge), ("DPDK", dpdk)],
            );
        }
        for (what, other) in [
            ("DPDK", Switch::Dpdk),
            ("edgefwd with two copies", Switch::EdgefwdVhostTwoCopies),
        ] {
            let per_round: Vec<f64> = samples(Switch::EdgefwdVhost)
                .iter()
                .zip(samples(other))
                .map(|(e, d)| e.pps / d.pps)
                .collect();
            if !per_round.is_empty() {
                let each: Vec<String> = per_round.iter().map(|r| format!("{r:.2}×")).collect();
                println!(
                    "\nedgefwd / {what}, round by round (measured back to back): {} (median {:.2}×)",
                    each.join(", "),
                    common::median(&per_round)
                );
            }
        }
        let kernel = common::median(&routed[si][1].iter().map(|x| x.pps).collect::<Vec<_>>());
        println!("\nVM to host, routed, {size}-byte frames (delivered to the host per second)\n");
        println!("| Router | Rate | Machine CPU/frame | Router CPU/frame | Ratio |");
        println!("|---|---|---|---|---|");
        for (i, r) in routers.iter().enumerate() {
            let name = match r {
                Router::EdgefwdVhost => "edgefwd, VM on vhost-user",
                Router::Kernel => "kernel, VM on a TAP",
            };
            row(name, &routed[si][i], &[("kernel", kernel)]);
        }
    }
}
