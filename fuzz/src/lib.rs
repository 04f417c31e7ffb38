//! What the fuzz targets share: the appliance they attack, a way to run
//! frames through a fresh router over it (and its twin without the fast
//! path), and the invariants every run keeps.
//!
//! The appliance is the demo's three routed ports plus an internal switch
//! (vm1 and vm2, NAT out of Port2) and an external switch (vm3) bridged
//! onto Port4, with a dual-stack load balancer (10.0.2.100 and
//! 2001:db8:2::100, backends of both families) and a cluster IP, so frames
//! reach svc-in and svc-out too. Static neighbours on every port let
//! forwarded packets leave at once instead of waiting on ARP, so a
//! target's frames reach the rewrite and transmit stages on their first
//! pass.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use edgefwd_control::config::Config;
use edgefwd_control::demo;
use edgefwd_control::rib::{PortsUp, Rib};
use edgefwd_core::fib::Fib;
use edgefwd_core::packet::check::{check_frame, check_headers};
use edgefwd_core::packet::Packet;
use edgefwd_core::pipeline::{Router, RouterConfig};
pub use edgefwd_core::port::PortId;
pub use edgefwd_core::stats::DropReason;
use edgefwd_core::stats::Stats;
use edgefwd_core::time::Time;
use libfuzzer_sys::arbitrary::{self, Arbitrary};

/// Ports 3-5 (vm1, vm2, vm3), the gateway interface "internal" (6), and
/// neighbours on each routed port.
const EXTRA: &str = r#"
[[port]]
name = "vm1"
switch = "internal"
allowed_mac = "02:00:00:00:28:10"
allowed_addresses = ["172.28.0.10"]
[[port]]
name = "vm2"
switch = "internal"
[[port]]
name = "vm3"
switch = "external"
[[switch]]
name = "internal"
kind = "internal"
address = "172.28.0.1/24"
mac = "02:00:00:00:28:01"
nat = "Port2"
[[switch]]
name = "external"
kind = "external"
uplink = "Port4"
mac_limit = 8
[nat]
filtering = "endpoint-independent"
# Small tables: each input builds a fresh router.
max_sessions = 256
[[neighbor]]
interface = "Port2"
address = "10.0.2.1"
mac = "02:00:00:00:99:01"
[[neighbor]]
interface = "Port2"
address = "2001:db8:2::1"
mac = "02:00:00:00:99:01"
[[neighbor]]
interface = "Port3"
address = "192.168.20.50"
mac = "02:00:00:00:20:50"
[[neighbor]]
interface = "Port3"
address = "2001:db8:20::50"
mac = "02:00:00:00:20:50"
[[neighbor]]
interface = "internal"
address = "172.28.0.10"
mac = "02:00:00:00:28:10"
[[neighbor]]
interface = "internal"
address = "172.28.0.11"
mac = "02:00:00:00:28:11"
[[route]]
interface = "Port2"
destination = "::/0"
next_hop = "2001:db8:2::1"
[services]
flows = 1024
[[service]]
name = "web"
kind = "load-balancer"
addresses = ["10.0.2.100", "2001:db8:2::100"]
ports = [{ protocol = "tcp", port = 80, target_port = 8080 }, { protocol = "udp", port = 53 }]
backends = ["192.168.20.50", "172.28.0.11", "2001:db8:20::50"]
[[service]]
name = "dns"
kind = "cluster-ip"
address = "10.96.0.10"
ports = [{ protocol = "udp", port = 53 }]
backends = ["172.28.0.11"]
"#;

/// The uplink: default gateway 10.0.2.1, NAT outside port.
pub const PORT2: PortId = 0;
/// The camera network, 192.168.20.0/24.
pub const PORT3: PortId = 1;
/// The lab network, also the external switch's uplink.
pub const PORT4: PortId = 2;
/// A VM on the internal switch with port security (its MAC and 172.28.0.10).
pub const VM1: PortId = 3;
/// A VM on the internal switch without port security.
pub const VM2: PortId = 4;
/// A VM on the external switch.
pub const VM3: PortId = 5;
/// Ports frames can arrive on (the gateway interface has no device).
pub const RX_PORTS: PortId = 6;

/// MAC of each port frames can arrive on (the VMs': the internal gateway's,
/// their router; vm3's: Port4's), indexed by port.
pub const PORT_MAC: [[u8; 6]; 6] = [
    [2, 0, 0, 0, 2, 1],
    [2, 0, 0, 0, 3, 1],
    [2, 0, 0, 0, 4, 1],
    [2, 0, 0, 0, 0x28, 1],
    [2, 0, 0, 0, 0x28, 1],
    [2, 0, 0, 0, 4, 1],
];
/// MAC of the host sending on each port (vm1's is the one it is allowed).
pub const HOST_MAC: [[u8; 6]; 6] = [
    [2, 0, 0, 0, 0x99, 1],
    [2, 0, 0, 0, 0x20, 0x50],
    [2, 0, 0, 0, 0x30, 1],
    [2, 0, 0, 0, 0x28, 0x10],
    [2, 0, 0, 0, 0x28, 0x11],
    [2, 0, 0, 0, 0x30, 0x77],
];
/// IPv4 address of the host sending on each port.
pub const HOST_V4: [Ipv4Addr; 6] = [
    Ipv4Addr::new(10, 0, 2, 1),
    Ipv4Addr::new(192, 168, 20, 50),
    Ipv4Addr::new(192, 168, 30, 1),
    Ipv4Addr::new(172, 28, 0, 10),
    Ipv4Addr::new(172, 28, 0, 11),
    Ipv4Addr::new(192, 168, 30, 77),
];
/// The appliance's own IPv4 address on each port (the VMs': the gateway's).
pub const OUR_V4: [Ipv4Addr; 6] = [
    Ipv4Addr::new(10, 0, 2, 15),
    Ipv4Addr::new(192, 168, 20, 10),
    Ipv4Addr::new(192, 168, 30, 10),
    Ipv4Addr::new(172, 28, 0, 1),
    Ipv4Addr::new(172, 28, 0, 1),
    Ipv4Addr::new(192, 168, 30, 10),
];
/// IPv4 destinations worth aiming at: each port's far side and beyond,
/// a NATed VM, the sensors behind a route, and nowhere in particular.
pub const FAR_V4: [Ipv4Addr; 6] = [
    Ipv4Addr::new(198, 51, 100, 7),
    Ipv4Addr::new(192, 168, 20, 50),
    Ipv4Addr::new(192, 168, 21, 7),
    Ipv4Addr::new(172, 28, 0, 10),
    Ipv4Addr::new(192, 168, 30, 77),
    Ipv4Addr::new(192, 168, 20, 99),
];
/// The appliance's IPv6 addresses (Port2, Port3).
pub const OUR_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x15),
    Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 0x10),
];
/// IPv6 hosts: Port2's gateway, a camera on Port3, one far away.
pub const HOST_V6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 0x50),
    Ipv6Addr::new(0x2001, 0xdb8, 0xfe, 0, 0, 0, 0, 7),
];

/// An appliance's config, RIB and FIB, built once per process; each input
/// gets a fresh router over them.
pub struct Appliance {
    cfg: Config,
    rib: Rib,
    fib: Arc<Fib>,
}

impl Appliance {
    /// The appliance a TOML config describes.
    pub fn new(toml: &str) -> Self {
        let cfg = Config::parse(toml).expect("fuzz config");
        let rib = Rib::from_config(&cfg, PortsUp::All);
        let fib = Arc::new(rib.build_fib().0);
        Appliance { cfg, rib, fib }
    }
}

/// The fuzz appliance (see the module docs).
fn appliance() -> &'static Appliance {
    static APPLIANCE: OnceLock<Appliance> = OnceLock::new();
    APPLIANCE.get_or_init(|| Appliance::new(&format!("{}{EXTRA}", demo::CONFIG)))
}

/// A fresh router over the appliance, fed one frame at a time, beside a
/// twin with the fast path off: the two must send the same frames and
/// count the same (ip4-fast only ever changes speed).
pub struct Rig {
    router: Router,
    staged: Router,
    burst: Vec<Packet>,
    steps: u64,
    /// Every frame fed, to tell frames a switch passed on unchanged.
    fed: Vec<Vec<u8>>,
    sent: Vec<(PortId, Vec<u8>)>,
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

impl Rig {
    /// A router on the fuzz appliance, with empty tables (but the static
    /// neighbours).
    pub fn new() -> Self {
        Self::on(appliance())
    }

    /// A router on appliance `a`.
    pub fn on(a: &Appliance) -> Self {
        let rcfg = RouterConfig {
            buffers: 8,
            ..a.cfg.router_config()
        };
        let staged = RouterConfig {
            fast_path: false,
            ..rcfg.clone()
        };
        // One port secret for both NAT tables, so the twins choose the same
        // external ports (and a crash replays the same way).
        let router = |rcfg: &RouterConfig| {
            let mut r = a.rib.router(&a.cfg, a.fib.clone(), rcfg);
            let mut nat = a.cfg.nat_configs();
            for n in &mut nat {
                n.policy.port_secret = Some(0x6564_6765_6677_6421);
            }
            r.set_nat(nat);
            r
        };
        Rig {
            router: router(&rcfg),
            staged: router(&staged),
            burst: Vec::new(),
            steps: 0,
            fed: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Feeds `frame` on `port` (modulo the ports there are) in a burst of
    /// its own, one millisecond after the last, and returns what was sent
    /// because of it.
    pub fn feed(&mut self, port: PortId, frame: &[u8]) -> Vec<(PortId, Vec<u8>)> {
        let now = Time(1_000_000 * self.steps);
        self.steps += 1;
        self.fed.push(frame.to_vec());
        for r in [&mut self.router, &mut self.staged] {
            r.receive(&mut self.burst, port % RX_PORTS, now, frame);
            r.process(&mut self.burst, now);
        }
        self.drain()
    }

    fn drain(&mut self) -> Vec<(PortId, Vec<u8>)> {
        let sent = |r: &mut Router| {
            let mut out = Vec::new();
            for port in 0..RX_PORTS {
                r.drain_tx(port, |p| out.push((port, p.buf.frame().to_vec())));
            }
            out
        };
        let out = sent(&mut self.router);
        assert_eq!(out, sent(&mut self.staged), "ip4-fast sent otherwise");
        for (port, f) in &out {
            // A switch passes frames between members as they came (it does
            // not look above L2); everything the router wrote must be valid.
            if self.fed.contains(f) {
                continue;
            }
            if let Err(e) = check_headers(f) {
                panic!("malformed frame sent on port {port}: {e}: {f:02x?}");
            }
        }
        self.sent.extend(out.iter().cloned());
        out
    }

    /// Lets pending work finish (packets waiting on a neighbour are
    /// dropped) and checks the accounting identity.
    pub fn finish(mut self) -> Outcome {
        self.router.finish();
        self.staged.finish();
        self.drain();
        let stats = self.router.stats().clone();
        assert_eq!(stats.received(), stats.ended(), "accounting identity");
        let without_fast = Stats {
            fast_path: 0,
            ..stats.clone()
        };
        assert_eq!(
            format!("{without_fast:?}"),
            format!("{:?}", self.staged.stats()),
            "ip4-fast counted otherwise"
        );
        Outcome {
            sent: self.sent,
            stats,
        }
    }
}

/// What came out of a run.
pub struct Outcome {
    /// Every frame sent, with the port it left by, in order.
    pub sent: Vec<(PortId, Vec<u8>)>,
    /// The router's counters at the end.
    pub stats: Stats,
}

impl Outcome {
    /// Packets dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.stats.drops_by_reason()[reason as usize]
    }
}

/// Runs `frames` (ingress port, frame) through a fresh [`Rig`] and
/// finishes it.
///
/// Every run keeps these invariants: no panic, the accounting identity,
/// every frame sent well-formed at the link and IP layers (or a frame fed
/// passed on unchanged by a switch), and the same frames and counters with
/// the fast path off.
pub fn run(frames: &[(PortId, &[u8])]) -> Outcome {
    let mut rig = Rig::new();
    for &(port, frame) in frames {
        rig.feed(port, frame);
    }
    rig.finish()
}

/// An Ethernet header from `src` to `dst` carrying `ethertype`.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(1514);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// An IPv4 address a structured input picks, relative to the port it
/// arrives on.
#[derive(Arbitrary, Debug)]
pub enum V4 {
    /// The appliance's address on the port.
    Ours,
    /// The host's own address on the port.
    Host,
    /// One of [`FAR_V4`].
    Far(u8),
    Raw([u8; 4]),
}

impl V4 {
    /// The address, for a frame arriving on `port`.
    pub fn on(&self, port: PortId) -> Ipv4Addr {
        let p = usize::from(port % RX_PORTS);
        match self {
            V4::Ours => OUR_V4[p],
            V4::Host => HOST_V4[p],
            V4::Far(n) => FAR_V4[usize::from(*n) % FAR_V4.len()],
            V4::Raw(b) => Ipv4Addr::from(*b),
        }
    }
}

/// How much of a built packet a structured input gets right.
#[derive(Arbitrary, Debug, PartialEq)]
pub enum Fix {
    /// Lengths and checksums as the fuzzer wrote them.
    Nothing,
    /// The IP header's lengths (and IPv4 header checksum) right.
    Header,
    /// Those, and the transport length and checksum.
    Everything,
}

/// Panics unless `frame`, sent on `port` because of a frame valid at every
/// layer, is valid at every layer too.
pub fn assert_valid(port: PortId, frame: &[u8]) {
    if let Err(e) = check_frame(frame) {
        panic!("valid frame in, invalid frame out on port {port}: {e}: {frame:02x?}");
    }
}

/// The Internet checksum of `b`.
pub fn checksum(b: &[u8]) -> u16 {
    edgefwd_core::packet::checksum::checksum(b)
}
