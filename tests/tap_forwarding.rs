//! edgefwd forwarding in real time on TAP devices. Network namespaces play
//! the hosts and VMs; each port's TAP is opened inside its host's namespace
//! (`tap:NAME@NETNS`), and the daemon runs in this process between them.
//! Traffic stays inside those namespaces. Needs root; CI is root.
//!
//! Topology (each test builds its own, with unique namespace names):
//!
//! ```text
//!  h2 10.0.2.2 ── Port2 10.0.2.1 ┐          ┌ Port3 10.0.3.1 ── h3 10.0.3.2
//!                                 edgefwd ──┤
//!  vm 172.28.0.10 ── vm1 172.28.0.1┘          └ Port4 10.0.4.1 ── h4 10.0.4.2
//! ```

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::appliance::{Appliance, Host};
use common::Netns;
use edgefwd_control::config::Config;
use edgefwd_control::run::{run, Control, RunSummary};
use edgefwd_core::port::LinkState;

fn counters(s: &RunSummary) -> String {
    edgefwd_control::counters::Counters::new(&s.names, Some(&s.links), &s.stats).to_text()
}

#[test]
fn ping_crosses_the_appliance_both_ways_and_from_a_vm() {
    const T: &str = "ping_crosses_the_appliance_both_ways_and_from_a_vm";
    if !common::need_root_and_ping(T) {
        return;
    }
    let app = Appliance::start("ping", &["Port2", "Port3", "vm1"], "");
    let (h2, h3, vm) = (app.host("Port2"), app.host("Port3"), app.host("vm1"));
    for (from, to) in [(h2, h3), (h3, h2), (vm, h2), (vm, h3)] {
        let (ok, out) = from.ping(&["-c", "3", "-i", "0.2", "-W", "2", &to.addr()]);
        assert!(ok, "{} -> {}: {out}", from.port, to.port);
        assert!(out.contains("ttl=63"), "one routed hop: {out}");
    }
    let (ok, out) = h2.ping(&["-c", "2", "-i", "0.2", "-W", "2", &h2.gateway()]);
    assert!(ok && out.contains("ttl=64"), "the appliance answers: {out}");
    let s = app.stop();
    common::assert_identity(&s);
    assert!(s.stats.forwarded >= 24, "{}", counters(&s));
    assert!(s.links.iter().all(|l| *l == LinkState::Up), "{:?}", s.links);
}

#[test]
fn ttl_expiry_is_answered_by_the_hop_that_saw_it() {
    const T: &str = "ttl_expiry_is_answered_by_the_hop_that_saw_it";
    if !common::need_root_and_ping(T) {
        return;
    }
    let app = Appliance::start("ttl", &["Port2", "Port3"], "");
    let (h2, h3) = (app.host("Port2"), app.host("Port3"));
    // Traceroute by hand: TTL 1 dies at the appliance, TTL 2 arrives.
    for (from, to) in [(h2, h3), (h3, h2)] {
        let (ok, out) = from.ping(&["-c", "1", "-t", "1", "-W", "2", &to.addr()]);
        assert!(!ok, "TTL 1 must not arrive: {out}");
        let expect = format!("From {} icmp_seq=1 Time to live exceeded", from.gateway());
        assert!(out.contains(&expect), "expected {expect:?} in {out}");
        let (ok, out) = from.ping(&["-c", "1", "-t", "2", "-W", "2", &to.addr()]);
        assert!(ok, "TTL 2 arrives: {out}");
    }
    let s = app.stop();
    common::assert_identity(&s);
    let expired = s
        .stats
        .ports
        .iter()
        .map(|p| p.drops[edgefwd_core::stats::DropReason::TtlExpired as usize])
        .sum::<u64>();
    assert_eq!(expired, 2);
}

#[test]
fn tcp_transfer_of_50_mb_arrives_intact() {
    const T: &str = "tcp_transfer_of_50_mb_arrives_intact";
    if !common::need_root_and_ping(T) {
        return;
    }
    const LEN: usize = 50 << 20;
    let app = Appliance::start("tcp", &["Port2", "Port3"], "");
    let (h2, h3) = (app.host("Port2"), app.host("Port3"));
    let started = Instant::now();
    let (n, intact) = tcp_transfer(h2, h3, LEN);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{T}: {n} bytes in {secs:.2} s ({:.2} Gbit/s)",
        n as f64 * 8.0 / secs / 1e9
    );
    assert_eq!(n, LEN);
    assert!(intact, "sha256 of what arrived");
    let s = app.stop();
    common::assert_identity(&s);
}

#[test]
fn tcp_transfer_without_offloads_moves_plain_frames_intact() {
    const T: &str = "tcp_transfer_without_offloads_moves_plain_frames_intact";
    if !common::need_root_and_ping(T) {
        return;
    }
    const LEN: usize = 10 << 20;
    let app = Appliance::start_tuned("plain", &["Port2", "Port3"], "offload = false\n", "");
    let (h2, h3) = (app.host("Port2"), app.host("Port3"));
    let (n, intact) = tcp_transfer(h2, h3, LEN);
    assert_eq!(n, LEN);
    assert!(intact, "sha256 of what arrived");
    let s = app.stop();
    common::assert_identity(&s);
    // Without offloads every frame fits the MTU: at least a frame per
    // 1500 bytes went through, none of them a super-packet.
    assert!(s.stats.forwarded as usize >= LEN / 1500, "{}", counters(&s));
}

#[test]
fn metric_failover_moves_traffic_within_a_second_and_back() {
    const T: &str = "metric_failover_moves_traffic_within_a_second_and_back";
    if !common::need_root_and_ping(T) {
        return;
    }
    let routes = "[[route]]\ninterface = \"Port3\"\ndestination = \"10.9.9.0/24\"\nnext_hop = \"10.0.3.2\"\nmetric = 100\n\n\
                  [[route]]\ninterface = \"Port4\"\ndestination = \"10.9.9.0/24\"\nnext_hop = \"10.0.4.2\"\nmetric = 200\n";
    let app = Appliance::start("fo", &["Port2", "Port3", "Port4"], routes);
    let (h2, h3, h4) = (app.host("Port2"), app.host("Port3"), app.host("Port4"));
    // The service address lives on both far hosts.
    for h in [h3, h4] {
        h.ns.ip(&["addr", "add", "10.9.9.9/32", "dev", "lo"]);
    }
    let probe = || h2.ping(&["-c", "1", "-W", "0.2", "10.9.9.9"]).0;
    // Through the metric-100 route.
    let (r3, r4) = (h3.rx_packets(), h4.rx_packets());
    assert!(probe(), "10.9.9.9 answers through Port3");
    assert!(
        h3.rx_packets() > r3 && h4.rx_packets() == r4,
        "metric 100 route used"
    );

    // Port3's link goes down: within 1 s traffic takes the metric-200 route.
    h3.ns.ip(&["link", "set", h3.dev, "down"]);
    let down_at = Instant::now();
    let r4 = h4.rx_packets();
    let moved = loop {
        if probe() && h4.rx_packets() > r4 {
            break down_at.elapsed();
        }
        assert!(
            down_at.elapsed() < Duration::from_secs(5),
            "traffic never moved to Port4"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("{T}: moved to the metric-200 route after {moved:?}");
    assert!(moved < Duration::from_secs(1), "failover took {moved:?}");

    // Back up: traffic returns to Port3.
    h3.ns.ip(&["link", "set", h3.dev, "up"]);
    h3.ns
        .ip(&["route", "replace", "default", "via", &h3.gateway()]);
    let up_at = Instant::now();
    let returned = loop {
        let r3 = h3.rx_packets();
        if probe() && h3.rx_packets() > r3 {
            break up_at.elapsed();
        }
        assert!(
            up_at.elapsed() < Duration::from_secs(5),
            "traffic never returned to Port3"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("{T}: back on the metric-100 route after {returned:?}");
    let s = app.stop();
    common::assert_identity(&s);
}

#[test]
fn a_vanished_tap_takes_its_port_down_and_the_others_keep_forwarding() {
    const T: &str = "a_vanished_tap_takes_its_port_down_and_the_others_keep_forwarding";
    if !common::need_root_and_ping(T) {
        return;
    }
    let app = Appliance::start("gone", &["Port2", "Port3", "vm1"], "");
    let (h2, h3, vm) = (app.host("Port2"), app.host("Port3"), app.host("vm1"));
    assert!(vm.ping(&["-c", "1", "-W", "2", &h2.addr()]).0);
    vm.ns.ip(&["link", "del", vm.dev]);
    let (ok, out) = h2.ping(&["-c", "3", "-i", "0.2", "-W", "2", &h3.addr()]);
    assert!(ok, "Port2 to Port3 still forwards: {out}");
    common::wait_for_link(&app.socket, "vm1", "gone");
    let (ok, _) = h2.ping(&["-c", "1", "-W", "1", &vm.addr()]);
    assert!(!ok, "nothing answers for the vanished VM");
    let s = app.stop();
    common::assert_identity(&s);
    assert_eq!(s.links, [LinkState::Up, LinkState::Up, LinkState::Gone]);
}

/// The sum over the daemon's workers (threads `edgefwd-w*` of this
/// process) of what `read` makes of each one's `/proc` entry `file`.
fn workers_sum(file: &str, read: impl Fn(&str) -> u64) -> u64 {
    common::threads_named("edgefwd-w")
        .into_iter()
        .map(|id| {
            read(
                &std::fs::read_to_string(format!("/proc/self/task/{id}/{file}"))
                    .unwrap_or_default(),
            )
        })
        .sum()
}

/// CPU time the daemon's workers have used so far.
fn workers_cpu() -> Duration {
    let ticks: u64 = common::threads_named("edgefwd-w")
        .into_iter()
        .map(common::thread_cpu_ticks)
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Read and write syscalls the daemon's workers have made so far (`syscr`
/// and `syscw` of each thread's `/proc` io file; io_uring's reads and
/// writes are not among them).
fn workers_read_write_syscalls() -> u64 {
    workers_sum("io", |io| {
        io.lines()
            .filter(|l| l.starts_with("syscr:") || l.starts_with("syscw:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    })
}

/// Counts the `io_uring_enter` calls the daemon's workers make while `f`
/// runs, with the kernel's syscall tracepoint in a tracing instance of this
/// test's own (tracefs; mounted here if it is not).
fn io_uring_enters(tag: &str, f: impl FnOnce()) -> u64 {
    let root = Path::new("/sys/kernel/tracing");
    if !root.join("instances").exists() {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tracefs", "nodev"])
            .arg(root)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tracefs");
    }
    let inst = root.join(format!("instances/efw-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir(&inst);
    std::fs::create_dir(&inst).expect("a tracing instance");
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0.join("tracing_on"), "0");
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _remove = Remove(inst.clone());
    let event = inst.join("events/syscalls/sys_enter_io_uring_enter");
    let filter: Vec<String> = common::threads_named("edgefwd-w")
        .into_iter()
        .map(|t| format!("common_pid == {t}"))
        .collect();
    assert!(!filter.is_empty(), "no worker threads");
    std::fs::write(inst.join("buffer_size_kb"), "8192").unwrap();
    std::fs::write(event.join("filter"), filter.join(" || ")).unwrap();
    std::fs::write(event.join("enable"), "1").unwrap();
    f();
    std::fs::write(event.join("enable"), "0").unwrap();
    let trace = std::fs::read_to_string(inst.join("trace")).unwrap();
    assert!(
        !trace.contains("LOST"),
        "the trace buffer overflowed; make it larger"
    );
    trace.lines().filter(|l| !l.starts_with('#')).count() as u64
}

/// Frames the hosts' sides of the TAPs sent and received: every frame the
/// daemon read from or wrote to a TAP, counted by the kernel.
fn tap_frames(hosts: &[&Host]) -> u64 {
    hosts
        .iter()
        .map(|h| {
            let read = |what: &str| {
                let path = format!("/sys/class/net/{}/statistics/{what}", h.dev);
                let out = h.ns.exec(5, &["cat", &path]);
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
            };
            read("rx_packets") + read("tx_packets")
        })
        .sum()
}

#[test]
fn tap_frames_move_through_io_uring_not_a_syscall_each() {
    const T: &str = "tap_frames_move_through_io_uring_not_a_syscall_each";
    if !common::need_root_and_ping(T) {
        return;
    }
    // io_uring_enter calls per TAP frame moved (read or written), counted
    // by the kernel, for 1000 pings each way in flights of 16.
    let app = Appliance::start_alone("uring", &["Port2", "Port3"], "io_uring = true\n");
    let (h2, h3) = (app.host("Port2"), app.host("Port3"));
    let frames = tap_frames(&[h2, h3]);
    let calls = workers_read_write_syscalls();
    let enters = io_uring_enters("uring", || {
        let (ok, out) = h2.ping(&["-f", "-l", "16", "-c", "1000", "-W", "2", &h3.addr()]);
        assert!(ok, "{out}");
    });
    let calls = workers_read_write_syscalls() - calls;
    let frames = tap_frames(&[h2, h3]) - frames;
    let s = app.stop();
    common::assert_identity(&s);
    let per_frame = enters as f64 / frames as f64;
    eprintln!(
        "{T}: {enters} io_uring_enter calls and {calls} read/write syscalls for {frames} TAP frames ({per_frame:.3} enters a frame)"
    );
    assert!(frames >= 4000, "{frames} frames");
    // The frames go through the ring (no read or write syscall each)...
    assert!(
        enters > 0 && (calls as f64) < 0.1 * frames as f64,
        "{calls} read/write syscalls, {enters} ring submissions"
    );
    // ...in batches: a submission per frame read and per frame written
    // would be 1.0.
    assert!(
        per_frame < 0.5,
        "frames move in batches, not a submission each: {per_frame}"
    );
}

#[test]
fn busy_polling_workers_spin_while_frames_come_and_sleep_after() {
    const T: &str = "busy_polling_workers_spin_while_frames_come_and_sleep_after";
    if !common::need_root_and_ping(T) {
        return;
    }
    let app = Appliance::start_alone("spin", &["Port2", "Port3"], "busy_poll_us = 20000\n");
    let (h2, h3) = (app.host("Port2"), app.host("Port3"));
    // A ping every 5 ms, well within the 20 ms poll: the worker that takes
    // them never sleeps.
    let (cpu, started) = (workers_cpu(), Instant::now());
    let (ok, out) = h2.ping(&["-c", "200", "-i", "0.005", "-W", "2", &h3.addr()]);
    let (busy, wall) = (workers_cpu().saturating_sub(cpu), started.elapsed());
    assert!(ok, "{out}");
    // Quiet: a worker sleeps 20 ms after the last frame.
    std::thread::sleep(Duration::from_millis(500));
    let (cpu, started) = (workers_cpu(), Instant::now());
    std::thread::sleep(Duration::from_secs(1));
    let (idle, quiet) = (workers_cpu().saturating_sub(cpu), started.elapsed());
    eprintln!(
        "{T}: workers used {busy:?} of CPU in {wall:?} of pings, {idle:?} in {quiet:?} of quiet"
    );
    // Spinning takes most of a core even on a loaded machine; sleeping
    // workers wake only for their 10 ms tick.
    assert!(
        busy.as_secs_f64() > 0.3 * wall.as_secs_f64(),
        "did not spin: {busy:?} in {wall:?}"
    );
    assert!(
        idle.as_secs_f64() < 0.15 * quiet.as_secs_f64(),
        "did not sleep: {idle:?} in {quiet:?}"
    );
    let s = app.stop();
    common::assert_identity(&s);
}

/// Sends `len` bytes from `from` to `to` port 5001; the bytes that
/// arrived and whether their sha256 matches.
fn tcp_transfer(from: &Host, to: &Host, len: usize) -> (usize, bool) {
    let dst: SocketAddr = format!("{}:5001", to.addr()).parse().unwrap();
    let t = common::tcp_transfer(&from.ns, &to.ns, dst, len);
    (t.bytes, t.intact)
}

#[test]
fn an_afpacket_port_forwards_to_a_tap_and_back() {
    const T: &str = "an_afpacket_port_forwards_to_a_tap_and_back";
    if !common::need_root_and_ping(T) || !common::need_tool(T, "ethtool", "--version") {
        return;
    }
    // Port2 is a veth pair: the router's end in a namespace of its own, read
    // through AF_PACKET; the host's end in h2.
    let (r, h2) = (Netns::new("af-r"), Netns::new("af-h2"));
    r.ip(&[
        "link",
        "add",
        "r2",
        "address",
        "02:00:00:00:02:01",
        "type",
        "veth",
        "peer",
        "name",
        "eth2",
    ]);
    r.ip(&["link", "set", "eth2", "netns", h2.name()]);
    r.ip(&["link", "set", "r2", "up"]);
    // A veth hands over frames with unfinished checksums and super-frames
    // when its sender offloads; a NIC's receive path never does.
    let off = h2.exec(5, &["ethtool", "-K", "eth2", "tx", "off"]);
    assert!(
        off.status.success(),
        "{}",
        String::from_utf8_lossy(&off.stderr)
    );
    let port2 = format!(
        "[[port]]\nname = \"Port2\"\nbind = \"afpacket:r2@{}\"\nmac = \"02:00:00:00:02:01\"\naddresses = [\"10.0.2.1/24\"]\n",
        r.name()
    );
    let app = Appliance::start("af", &["Port3"], &port2);
    let host2 = Host {
        ns: h2,
        dev: "eth2",
        port: "Port2",
        subnet: "10.0.2",
    };
    host2.configure();
    let h3 = app.host("Port3");
    host2.ns.wait_for_ping(&host2.gateway(), 5);
    for (from, to) in [(&host2, h3), (h3, &host2)] {
        let (ok, out) = from.ping(&["-c", "3", "-i", "0.2", "-W", "2", &to.addr()]);
        assert!(
            ok && out.contains(" 0% packet loss"),
            "{} -> {}: {out}",
            from.port,
            to.port
        );
    }
    // From the TAP (super-packets) to the NIC: cut into segments here.
    let started = Instant::now();
    let (n, intact) = tcp_transfer(h3, &host2, 8 << 20);
    eprintln!("{T}: 8 MiB in {:?}", started.elapsed());
    assert_eq!(n, 8 << 20);
    assert!(intact, "sha256 of what arrived");
    let s = app.stop();
    common::assert_identity(&s);
    eprintln!("{}", counters(&s));
    assert_eq!(s.stats.ports[1].tx_errors, 0, "{}", counters(&s));
    drop(host2);
    drop(r);
}

/// A TAP opened in one namespace and then moved (and renamed) into
/// another, as CNI plugins and orchestrators hand devices to pods and VMs:
/// the port follows it, reports its link there, and forwards.
#[test]
fn a_tap_moved_to_another_namespace_keeps_forwarding() {
    const T: &str = "a_tap_moved_to_another_namespace_keeps_forwarding";
    if !common::need_root_and_ping(T) {
        return;
    }
    let (stage, h2) = (Netns::new("mv-stage"), Netns::new("mv-h2"));
    let port2 = format!(
        "[[port]]\nname = \"Port2\"\nbind = \"tap:p2@{}\"\nmac = \"02:00:00:00:02:01\"\naddresses = [\"10.0.2.1/24\"]\n",
        stage.name()
    );
    let app = Appliance::start("mv", &["Port3"], &port2);
    stage.wait_for_device("p2");
    stage.ip(&["link", "set", "p2", "up"]);
    common::wait_for_link(&app.socket, "Port2", "up");
    // Moving a device takes it down; the daemon sees that in its new home.
    stage.ip(&["link", "set", "p2", "netns", h2.name(), "name", "eth9"]);
    common::wait_for_link(&app.socket, "Port2", "admin-down");
    let host2 = Host {
        ns: h2,
        dev: "eth9",
        port: "Port2",
        subnet: "10.0.2",
    };
    host2.configure();
    common::wait_for_link(&app.socket, "Port2", "up");
    host2.ns.wait_for_ping(&host2.gateway(), 5);
    let h3 = app.host("Port3");
    let (ok, out) = host2.ping(&["-c", "3", "-i", "0.2", "-W", "2", &h3.addr()]);
    assert!(ok, "through the moved TAP: {out}");
    let s = app.stop();
    common::assert_identity(&s);
    assert_eq!(s.links, [LinkState::Up, LinkState::Up]);
    drop(host2);
    drop(stage);
}

/// A worker that fails while forwarding is noticed within a second: the
/// daemon stops with an error that names it, instead of leaving its share
/// of the flows unread.
#[test]
fn a_failed_worker_stops_the_daemon_with_its_error() {
    const T: &str = "a_failed_worker_stops_the_daemon_with_its_error";
    if !common::need_root_and_ping(T) {
        return;
    }
    let mut app = Appliance::start("wfail", &["Port2", "Port3"], "");
    let (ok, out) =
        app.host("Port2")
            .ping(&["-c", "2", "-i", "0.2", "-W", "2", &app.host("Port3").addr()]);
    assert!(ok, "{out}");
    let failed_at = Instant::now();
    app.daemon.fail_worker(1);
    let ended = app.daemon.ended_within(Duration::from_secs(1));
    let noticed = failed_at.elapsed();
    let Some(Err(e)) = ended else {
        panic!("the daemon did not stop with an error within 1 s");
    };
    eprintln!("{T}: noticed in {noticed:?}: {e}");
    let e = e.to_string();
    assert!(
        e.contains("worker 1") && e.contains("failure injected"),
        "{e}"
    );
}

/// An ARP flood on a TAP: 200,000 requests for the appliance from as many
/// senders, then a host on another port nobody has talked to yet is pinged
/// through the appliance, which must resolve it: a full neighbour table
/// never stops forwarding. One worker, so the flood and the ping meet the
/// same table.
#[test]
fn an_arp_flood_leaves_room_for_new_neighbours() {
    const T: &str = "an_arp_flood_leaves_room_for_new_neighbours";
    if !common::need_root_and_ping(T) {
        return;
    }
    let h2 = Netns::new("arpf-h2");
    let port2 = format!(
        "[[port]]\nname = \"Port2\"\nbind = \"tap:p2@{}\"\nmac = \"02:00:00:00:02:01\"\naddresses = [\"10.0.2.1/24\", \"100.64.0.1/10\"]\n",
        h2.name()
    );
    let app = Appliance::start_tuned("arpf", &["Port3"], "workers = 1", &port2);
    let host2 = Host {
        ns: h2,
        dev: "p2",
        port: "Port2",
        subnet: "10.0.2",
    };
    host2.configure();
    host2.ns.wait_for_ping(&host2.gateway(), 5);
    let sent = host2.ns_flood_arp(200_000);
    assert_eq!(sent, 200_000);
    // Replies from the appliance show the flood was read, not dropped at
    // the TAP.
    let replies = host2.rx_packets();
    eprintln!("{T}: {replies} frames back on h2");
    assert!(replies > 100_000, "{replies} replies");
    // h3 took a new address: the appliance has never seen it.
    let h3 = app.host("Port3");
    h3.ns.ip(&["addr", "add", "10.0.3.3/24", "dev", h3.dev]);
    let (ok, out) = host2.ping(&["-c", "3", "-i", "0.2", "-W", "2", "10.0.3.3"]);
    assert!(ok, "after the flood: {out}");
    let s = app.stop();
    common::assert_identity(&s);
    drop(host2);
}

/// 10,000 route changes through the control socket while pings cross the
/// appliance every 2 ms: the changes touch other prefixes, so not one ping
/// may be lost to them.
#[test]
fn ten_thousand_route_changes_under_traffic_lose_nothing() {
    const T: &str = "ten_thousand_route_changes_under_traffic_lose_nothing";
    if !common::need_root_and_ping(T) {
        return;
    }
    let app = Appliance::start("live", &["Port2", "Port3"], "");
    let (h2, h3) = (app.host("Port2"), app.host("Port3"));
    let target = h3.addr();
    let pinger = std::thread::scope(|s| {
        let pinger = s.spawn(|| {
            let out = h2.ns.exec(
                60,
                &[
                    "ping", "-n", "-q", "-c", "5000", "-i", "0.002", "-W", "2", &target,
                ],
            );
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        });
        let started = Instant::now();
        let mut changes = 0;
        'outer: for round in 0.. {
            for i in 0..100u32 {
                let dest = format!("10.{}.{}.0/24", 100 + (round / 2) % 50, i);
                let cmd = if round % 2 == 0 {
                    edgefwd_control::api::Command::RouteAdd {
                        routes: vec![edgefwd_control::api::RouteSpec {
                            interface: "Port3".into(),
                            destination: dest,
                            next_hop: Some("10.0.3.2".into()),
                            metric: Some(100),
                        }],
                    }
                } else {
                    edgefwd_control::api::Command::RouteRemove {
                        interface: "Port3".into(),
                        destination: dest,
                        next_hop: None,
                    }
                };
                edgefwd_control::api::call(&app.socket, cmd).expect("route change");
                changes += 1;
                if changes == 10_000 {
                    break 'outer;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(120), "bounded");
        }
        eprintln!("{T}: 10000 changes in {:?}", started.elapsed());
        pinger.join().unwrap()
    });
    let (ok, out) = pinger;
    assert!(ok && out.contains(" 0% packet loss"), "{out}");
    let s = app.stop();
    common::assert_identity(&s);
}

/// `port bind` moves a port to another TAP while running: traffic follows
/// the new device, the old one goes away; `port unbind` takes the port down.
#[test]
fn a_port_rebinds_to_another_tap_at_run_time() {
    const T: &str = "a_port_rebinds_to_another_tap_at_run_time";
    if !common::need_root_and_ping(T) {
        return;
    }
    let app = Appliance::start("bind", &["Port2", "Port3"], "");
    let (h2, h3) = (app.host("Port2"), app.host("Port3"));
    assert!(h2.ping(&["-c", "1", "-W", "2", &h3.addr()]).0);
    let new = Host {
        ns: Netns::new("bind-p3b"),
        dev: "p3",
        port: "Port3",
        subnet: "10.0.3",
    };
    let call = |cmd| edgefwd_control::api::call(&app.socket, cmd);
    let bind = format!("tap:p3@{}", new.ns.name());
    call(edgefwd_control::api::Command::PortBind {
        port: "Port3".into(),
        binding: bind.clone(),
    })
    .expect("port bind");
    new.configure();
    let deadline = Instant::now() + Duration::from_secs(5);
    let before = new.rx_packets();
    while !(h2.ping(&["-c", "1", "-W", "0.3", &new.addr()]).0 && new.rx_packets() > before) {
        assert!(
            Instant::now() < deadline,
            "traffic never reached the new TAP"
        );
    }
    // The old TAP closes once the workers let go of it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while h3
        .ns
        .exec(5, &["ip", "link", "show", "p3"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "the old TAP is still there");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ports = call(edgefwd_control::api::Command::PortShow {}).unwrap();
    assert_eq!(ports["ports"][1]["bind"], bind.as_str());
    assert_eq!(ports["ports"][1]["link"], "up");

    call(edgefwd_control::api::Command::PortUnbind {
        port: "Port3".into(),
    })
    .expect("port unbind");
    let ports = call(edgefwd_control::api::Command::PortShow {}).unwrap();
    assert_eq!(ports["ports"][1]["bind"], "none");
    assert_eq!(ports["ports"][1]["link"], "admin-down");
    let (ok, _) = h2.ping(&["-c", "1", "-W", "1", &new.addr()]);
    assert!(!ok, "an unbound port forwards nothing");
    let s = app.stop();
    common::assert_identity(&s);
    drop(new);
}

#[test]
fn a_port_that_cannot_be_opened_is_named_with_its_binding() {
    let toml = "[[port]]\nname = \"Port2\"\nbind = \"tap:p2@efw-no-such-netns\"\nmac = \"02:00:00:00:02:01\"\naddresses = [\"10.0.2.1/24\"]\n";
    let cfg = Config::parse(toml).unwrap();
    let err = match run(&cfg, Path::new("test"), &Control::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened a TAP in a namespace that does not exist"),
    };
    assert!(
        err.starts_with("port Port2 (bind tap:p2@efw-no-such-netns): ")
            && err.contains("/run/netns/efw-no-such-netns"),
        "{err}"
    );
}
