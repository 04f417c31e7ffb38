//! Virtual switches and NAT in real time on TAP devices (root; CI is root).
//! Each VM and host is a network namespace with its own TAP; the daemon
//! runs in this process with two workers. Traffic stays inside these
//! namespaces.
//!
//! ```text
//!  vm1 172.28.0.10 ┐                                        ┌ inet 10.0.2.2
//!  vm2 172.28.0.11 ┴ internal (172.28.0.1) ─NAT─ Port2 10.0.2.1┘   + 198.51.100.1
//!  vm3 10.0.3.10 ─── external ─┬─ Port3 10.0.3.1
//!                              └─ h3 10.0.3.2 (Port3's wire)
//! ```

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use common::Netns;
use edgefwd_control::api::{self, Command};
use edgefwd_control::config::Config;
use edgefwd_control::run::RunSummary;
use edgefwd_io::binding::netns_path;
use edgefwd_io::in_netns;

const INET: &str = "198.51.100.1";
const EXT: &str = "10.0.2.1";

/// A namespace with one TAP, its address and gateway.
struct Node {
    ns: Netns,
    dev: &'static str,
    addr: &'static str,
    gateway: &'static str,
}

impl Node {
    fn run(&self, secs: u32, cmd: &[&str]) -> (bool, String) {
        let out = self.ns.exec(secs, cmd);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    fn ping(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = vec!["ping", "-n"];
        cmd.extend_from_slice(args);
        self.run(15, &cmd)
    }

    fn within<T: Send>(&self, f: impl FnOnce() -> std::io::Result<T> + Send) -> T {
        in_netns(&netns_path(self.ns.name()), f).unwrap()
    }
}

/// The appliance with every node; stopped on drop, before the namespaces.
struct Appliance {
    daemon: common::Daemon,
    nodes: Vec<(&'static str, Node)>,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Appliance {
    fn start(tag: &str, nat: &str) -> Appliance {
        let node = |name: &'static str, addr, gateway| {
            (
                name,
                Node {
                    ns: Netns::new(&format!("{tag}-{name}")),
                    dev: name,
                    addr,
                    gateway,
                },
            )
        };
        let nodes = vec![
            node("inet", "10.0.2.2/24", ""),
            node("vm1", "172.28.0.10/24", "172.28.0.1"),
            node("vm2", "172.28.0.11/24", "172.28.0.1"),
            node("h3", "10.0.3.2/24", "10.0.3.1"),
            node("vm3", "10.0.3.10/24", "10.0.3.1"),
        ];
        let ns = |name: &str| {
            nodes
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap()
                .1
                .ns
                .name()
                .to_owned()
        };
        let dir = common::temp_dir(tag);
        let socket = dir.path().join("control.sock");
        let toml = format!(
            r#"[dataplane]
workers = 2
[control]
socket = "{sock}"
[[port]]
name = "Port2"
bind = "tap:inet@{inet}"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.1/24"]
gateway = "10.0.2.2"
[[port]]
name = "Port3"
bind = "tap:h3@{h3}"
mac = "02:00:00:00:03:01"
addresses = ["10.0.3.1/24"]
[[port]]
name = "vm1"
bind = "tap:vm1@{vm1}"
switch = "internal"
[[port]]
name = "vm2"
bind = "tap:vm2@{vm2}"
switch = "internal"
[[port]]
name = "vm3"
bind = "tap:vm3@{vm3}"
switch = "external"
[[switch]]
name = "internal"
kind = "internal"
address = "172.28.0.1/24"
nat = "Port2"
[[switch]]
name = "external"
kind = "external"
uplink = "Port3"
{nat}
"#,
            sock = socket.display(),
            inet = ns("inet"),
            h3 = ns("h3"),
            vm1 = ns("vm1"),
            vm2 = ns("vm2"),
            vm3 = ns("vm3"),
        );
        let cfg = Config::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let daemon = common::Daemon::start(cfg);
        let app = Appliance {
            daemon,
            nodes,
            socket,
            _dir: dir,
        };
        for (_, n) in &app.nodes {
            n.ns.wait_for_device(n.dev);
            let gw = (!n.gateway.is_empty()).then_some(n.gateway);
            n.ns.address(n.dev, n.addr, gw);
        }
        // The internet: 198.51.100.1 lives on its loopback.
        app.node("inet")
            .ns
            .ip(&["addr", "add", "198.51.100.1/32", "dev", "lo"]);
        app.node("vm1").ns.wait_for_ping("172.28.0.1", 5);
        app.node("h3").ns.wait_for_ping("10.0.3.1", 5);
        app
    }

    fn node(&self, name: &str) -> &Node {
        &self.nodes.iter().find(|(n, _)| *n == name).unwrap().1
    }

    fn stop(mut self) -> RunSummary {
        self.daemon.stop().expect("daemon failed")
    }
}

fn drops(s: &RunSummary, reason: edgefwd_core::stats::DropReason) -> u64 {
    s.stats.drops_by_reason()[reason as usize]
}

/// Sends one UDP datagram from `from` (bound to `sport`) to `to`, and
/// returns the source address `to`'s listener saw, if it arrived.
fn udp_source(
    from: &Node,
    sport: u16,
    to: &Node,
    dst: SocketAddr,
    bind: SocketAddr,
) -> Option<SocketAddr> {
    let rx = to.within(|| UdpSocket::bind(bind));
    rx.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let src: SocketAddr = format!("{}:{sport}", from.addr.split('/').next().unwrap())
        .parse()
        .unwrap();
    let tx = from.within(|| UdpSocket::bind(src));
    // A few tries: the first may wait for ARP.
    for _ in 0..3 {
        tx.send_to(b"hello through NAT", dst).unwrap();
        let mut buf = [0; 64];
        if let Ok((_, peer)) = rx.recv_from(&mut buf) {
            return Some(peer);
        }
    }
    None
}

/// Sends one datagram from each of `n` source ports of `from` to the
/// internet host, and returns the sources its listener saw.
fn udp_spread(from: &Node, inet: &Node, n: u16) -> Vec<SocketAddr> {
    let dst: SocketAddr = format!("{INET}:9100").parse().unwrap();
    let rx = inet.within(|| UdpSocket::bind(dst));
    rx.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let ip = from.addr.split('/').next().unwrap();
    let senders: Vec<UdpSocket> = (0..n)
        .map(|i| {
            let src: SocketAddr = format!("{ip}:{}", 20000 + i).parse().unwrap();
            from.within(|| UdpSocket::bind(src))
        })
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    // A few rounds: a datagram may be lost while ARP resolves.
    for _ in 0..3 {
        for s in &senders {
            s.send_to(b"spread", dst).unwrap();
        }
        let mut buf = [0; 16];
        while let Ok((_, peer)) = rx.recv_from(&mut buf) {
            seen.insert(peer);
            if seen.len() == usize::from(n) {
                return seen.into_iter().collect();
            }
        }
    }
    seen.into_iter().collect()
}

#[test]
fn vms_on_the_internal_switch_reach_the_internet_as_port2() {
    const T: &str = "vms_on_the_internal_switch_reach_the_internet_as_port2";
    if !common::need_root_and_ping(T) {
        return;
    }
    let app = Appliance::start("nat", "");
    let (vm1, vm2, inet) = (app.node("vm1"), app.node("vm2"), app.node("inet"));
    for vm in [vm1, vm2] {
        let (ok, out) = vm.ping(&["-c", "2", "-i", "0.2", "-W", "2", INET]);
        assert!(ok, "{} pings the internet: {out}", vm.dev);
    }
    // UDP from each VM arrives from Port2's address. Each listens on its
    // own port: a process another test thread forks at the moment a socket
    // closes holds it open until exec, so rebinding at once can fail.
    for (vm, port, listen) in [(vm1, 5353, 9000), (vm2, 5354, 9001)] {
        let dst: SocketAddr = format!("{INET}:{listen}").parse().unwrap();
        let peer = udp_source(vm, port, inet, dst, dst).expect("UDP arrived");
        assert_eq!(peer.ip().to_string(), EXT, "{} seen as Port2", vm.dev);
        assert_eq!(peer.port(), port, "port preserved");
    }
    // A TCP transfer from each VM, checked end to end, from Port2's
    // address.
    for (vm, port) in [(vm1, 5001), (vm2, 5002)] {
        let dst: SocketAddr = format!("{INET}:{port}").parse().unwrap();
        let t = common::tcp_transfer(&vm.ns, &inet.ns, dst, 8 << 20);
        assert_eq!(t.bytes, 8 << 20, "{}", vm.dev);
        assert!(t.intact, "sha256 of what arrived from {}", vm.dev);
        assert_eq!(t.peer.ip().to_string(), EXT, "{} seen as Port2", vm.dev);
    }
    // Many flows from one VM: the kernel spreads them over both workers'
    // TAP queues, and the NAT flows each worker does not own are handed to
    // the one that does; every datagram still arrives, from Port2.
    let arrived = udp_spread(vm1, inet, 32);
    assert_eq!(arrived.len(), 32, "every flow arrived: {arrived:?}");
    assert!(
        arrived.iter().all(|p| p.ip().to_string() == EXT),
        "{arrived:?}"
    );
    // Each worker publishes its counters every 100 ms, each on its own
    // clock: the two sides of the hand-offs agree within a period or two.
    let hand_offs = |v: &serde_json::Value| -> (u64, u64) {
        let workers = v["workers"].as_array().expect("per-worker counters");
        let sum = |k: &str| workers.iter().map(|w| w[k].as_u64().unwrap()).sum();
        (sum("handed_off"), sum("handed_in"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let v = loop {
        let v = api::call(&app.socket, Command::Stats {}).unwrap();
        let (handed, taken) = hand_offs(&v);
        if handed == taken || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let workers = v["workers"].as_array().expect("per-worker counters");
    assert_eq!(workers.len(), 2, "{v}");
    for w in workers {
        assert!(w["bursts"].as_u64().unwrap() > 0, "both workers busy: {v}");
        assert!(w["busy_seconds"].as_f64().unwrap() > 0.0, "{v}");
    }
    let (handed, taken) = hand_offs(&v);
    assert!(
        handed > 0 && handed == taken,
        "hand-off between the workers: {v}"
    );
    // The daemon shows the sessions.
    let v = api::call(&app.socket, Command::NatSessions {}).unwrap();
    let sessions = v["sessions"].as_array().unwrap();
    assert!(
        sessions
            .iter()
            .any(|s| s["inside"] == "172.28.0.10:5353" && s["external"] == "10.0.2.1:5353"),
        "{v}"
    );
    // Traceroute through the NAT: hop 1 is the gateway interface, hop 2
    // the internet host.
    let (_, hop1) = vm1.ping(&["-c", "1", "-t", "1", "-W", "2", INET]);
    assert!(
        hop1.contains("From 172.28.0.1") && hop1.contains("Time to live exceeded"),
        "{hop1}"
    );
    let (ok, hop2) = vm1.ping(&["-c", "1", "-t", "2", "-W", "2", INET]);
    assert!(ok, "{hop2}");
    // The internet cannot open a connection to a VM: not through the
    // external address, not even with a route to the inside subnet.
    let listener = vm1.within(|| TcpListener::bind("172.28.0.10:2222"));
    listener.set_nonblocking(true).unwrap();
    inet.ns.ip(&["route", "add", "172.28.0.0/24", "via", EXT]);
    for target in [format!("{EXT}:2222"), "172.28.0.10:2222".to_owned()] {
        let addr: SocketAddr = target.parse().unwrap();
        let r = inet.within(|| Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(1))));
        assert!(r.is_err(), "the internet connected to {target}");
    }
    assert!(
        listener.accept().is_err(),
        "nothing reached the VM's listener"
    );
    let s = app.stop();
    common::assert_identity(&s);
    use edgefwd_core::stats::DropReason;
    assert!(
        drops(&s, DropReason::NatNoSession) >= 1,
        "SYN to the external address"
    );
    assert!(
        drops(&s, DropReason::NatFiltered) >= 1,
        "SYN routed to the inside"
    );
}

#[test]
fn vms_talk_on_the_switch_and_hairpin_through_the_external_address() {
    const T: &str = "vms_talk_on_the_switch_and_hairpin_through_the_external_address";
    if !common::need_root_and_ping(T) {
        return;
    }
    let app = Appliance::start("hp", "[nat]\nfiltering = \"endpoint-independent\"\n");
    let (vm1, vm2, inet) = (app.node("vm1"), app.node("vm2"), app.node("inet"));
    let (ok, out) = vm1.ping(&["-c", "2", "-i", "0.2", "-W", "2", "172.28.0.11"]);
    assert!(ok, "vm1 reaches vm2 on the switch: {out}");
    // vm1's 7000 gets a mapping by talking to the internet ...
    let to_inet: SocketAddr = format!("{INET}:9000").parse().unwrap();
    udp_source(vm1, 7000, inet, to_inet, to_inet).expect("vm1 to the internet");
    // ... and vm2 reaches it through the external address, seen from it.
    let bind: SocketAddr = "172.28.0.10:7000".parse().unwrap();
    let tx_src: SocketAddr = "172.28.0.11:7001".parse().unwrap();
    let rx = vm1.within(|| {
        let s = UdpSocket::bind(bind)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        Ok(s)
    });
    let tx = vm2.within(|| UdpSocket::bind(tx_src));
    let dst: SocketAddr = format!("{EXT}:7000").parse().unwrap();
    let mut peer = None;
    for _ in 0..3 {
        tx.send_to(b"hairpin", dst).unwrap();
        let mut buf = [0; 16];
        if let Ok((_, p)) = rx.recv_from(&mut buf) {
            peer = Some(p);
            break;
        }
    }
    let peer = peer.expect("hairpinned datagram arrived");
    assert_eq!(peer.ip().to_string(), EXT, "seen from the external address");
    let s = app.stop();
    common::assert_identity(&s);
}

#[test]
fn external_switch_bridges_a_vm_onto_port3_and_the_appliance_keeps_its_address() {
    const T: &str = "external_switch_bridges_a_vm_onto_port3_and_the_appliance_keeps_its_address";
    if !common::need_root_and_ping(T) {
        return;
    }
    let app = Appliance::start("ext", "");
    let (vm3, h3, vm1) = (app.node("vm3"), app.node("h3"), app.node("vm1"));
    let (ok, out) = vm3.ping(&["-c", "2", "-i", "0.2", "-W", "2", "10.0.3.2"]);
    assert!(ok, "vm3 reaches h3 directly: {out}");
    let (ok, out) = h3.ping(&["-c", "2", "-i", "0.2", "-W", "2", "10.0.3.10"]);
    assert!(ok, "h3 reaches vm3: {out}");
    let (ok, out) = vm3.ping(&["-c", "2", "-i", "0.2", "-W", "2", "10.0.3.1"]);
    assert!(ok, "vm3 reaches the appliance: {out}");
    // Routed from the internal switch to the external one (no NAT: Port3
    // is not the NAT port).
    let (ok, out) = vm1.ping(&["-c", "2", "-i", "0.2", "-W", "2", "10.0.3.10"]);
    assert!(ok, "vm1 reaches vm3 through the router: {out}");
    let s = app.stop();
    common::assert_identity(&s);
    assert!(s.stats.forwarded > 0);
}

#[test]
fn a_flooding_vm_leaves_the_others_their_share() {
    const T: &str = "a_flooding_vm_leaves_the_others_their_share";
    if !common::need_root_and_ping(T) {
        return;
    }
    let app = Appliance::start("flood", "");
    let (vm1, vm2) = (app.node("vm1"), app.node("vm2"));
    let (ok, out) = vm2.ping(&["-c", "2", "-i", "0.2", "-W", "2", INET]);
    assert!(ok, "vm2 pings the internet: {out}");
    let stop = std::sync::atomic::AtomicBool::new(false);
    // To an address on Port3's subnet that nobody holds: edgefwd reads
    // and drops every frame (its neighbour never answers), so the flood
    // takes the worker's time and nothing else, not the egress the pings
    // share.
    let dst: SocketAddr = "10.0.3.99:9".parse().unwrap();
    let (flooded, pings) = std::thread::scope(|s| {
        // vm1 sends 64-byte frames as fast as it can, for at most 20 s.
        let flood = s.spawn(|| {
            vm1.within(|| {
                let sock = UdpSocket::bind("172.28.0.10:0")?;
                let until = std::time::Instant::now() + Duration::from_secs(20);
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && std::time::Instant::now() < until
                {
                    if sock.send_to(&[0; 18], dst).is_ok() {
                        sent += 1;
                    }
                }
                Ok(sent)
            })
        });
        std::thread::sleep(Duration::from_millis(500));
        // Meanwhile vm2's pings: 200, 5 ms apart.
        let pings = vm2.ping(&["-c", "200", "-i", "0.005", "-W", "2", INET]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (flood.join().unwrap(), pings)
    });
    let received: u32 = pings
        .1
        .split(" received")
        .next()
        .and_then(|l| l.rsplit(", ").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let vm1_rx = {
        let v = api::call(&app.socket, Command::Stats {}).unwrap();
        v["ports"]["vm1"]["rx"].as_u64().unwrap()
    };
    eprintln!(
        "flood: vm1 sent {flooded}, edgefwd took {vm1_rx}; vm2: {received} of 200 pings answered"
    );
    assert!(
        flooded > 50_000 && vm1_rx > 50_000,
        "a real flood: sent {flooded}, edgefwd took {vm1_rx}"
    );
    assert!(
        received >= 190,
        "vm2 kept its share: {received} of 200 pings answered\n{}",
        pings.1
    );
    let s = app.stop();
    common::assert_identity(&s);
}
