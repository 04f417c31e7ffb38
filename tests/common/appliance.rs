//! An appliance in real time on TAP devices, for the end-to-end tests.
//! Network namespaces play the hosts and VMs; each port's TAP is opened
//! inside its host's namespace (`tap:NAME@NETNS`), and the daemon runs in
//! this process between them. Traffic stays inside those namespaces.
//!
//! ```text
//!  h2 10.0.2.2 ── Port2 10.0.2.1 ┐          ┌ Port3 10.0.3.1 ── h3 10.0.3.2
//!                                 edgefwd ──┤
//!  vm 172.28.0.10 ── vm1 172.28.0.1┘          └ Port4 10.0.4.1 ── h4 10.0.4.2
//! ```

use std::path::PathBuf;
use std::time::Duration;

use edgefwd_control::config::Config;
use edgefwd_control::run::{Control, RunSummary};
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{Daemon, Netns};

/// One host namespace on one appliance port.
pub struct Host {
    pub ns: Netns,
    pub dev: &'static str,
    pub port: &'static str,
    pub subnet: &'static str,
}

impl Host {
    pub fn gateway(&self) -> String {
        format!("{}.1", self.subnet)
    }

    pub fn addr(&self) -> String {
        let last = if self.port == "vm1" { 10 } else { 2 };
        format!("{}.{last}", self.subnet)
    }

    /// The IPv6 prefix of the host's segment (`fd00:N::/64`, N from its
    /// IPv4 subnet's third byte).
    fn prefix6(&self) -> String {
        format!("fd00:{}:", self.subnet.rsplit('.').next().unwrap_or("0"))
    }

    /// The appliance's IPv6 address on the host's segment.
    pub fn gateway6(&self) -> String {
        format!("{}:1", self.prefix6())
    }

    /// The host's IPv6 address, once [`Host::configure_v6`] gave it.
    pub fn addr6(&self) -> String {
        format!("{}:2", self.prefix6())
    }

    pub fn port_toml(&self) -> String {
        let i = match self.port {
            "Port2" => 2,
            "Port3" => 3,
            "Port4" => 4,
            _ => 5,
        };
        format!(
            "[[port]]\nname = \"{}\"\nbind = \"tap:{}@{}\"\nmac = \"02:00:00:00:0{i}:01\"\naddresses = [\"{}/24\", \"{}/64\"]\n\n",
            self.port,
            self.dev,
            self.ns.name(),
            self.gateway(),
            self.gateway6(),
        )
    }

    /// Gives the host its IPv6 address (no duplicate detection, so it is
    /// usable at once) and a default route through the appliance.
    pub fn configure_v6(&self) {
        let cidr = format!("{}/64", self.addr6());
        self.ns
            .ip(&["addr", "add", &cidr, "dev", self.dev, "nodad"]);
        let gw = self.gateway6();
        self.ns
            .ip(&["-6", "route", "replace", "default", "via", &gw]);
        self.ns.wait_for_ping(&gw, 5);
    }

    /// Addresses the host side of the TAP once the daemon has made it.
    pub fn configure(&self) {
        self.ns.wait_for_device(self.dev);
        let cidr = format!("{}/24", self.addr());
        self.ns.address(self.dev, &cidr, Some(&self.gateway()));
    }

    /// Frames the host's side of the TAP has received.
    pub fn rx_packets(&self) -> u64 {
        let path = format!("/sys/class/net/{}/statistics/rx_packets", self.dev);
        let out = self.ns.exec(5, &["cat", &path]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Sends `n` ARP requests for the gateway's second address
    /// (100.64.0.1) from as many senders in 100.64.0.0/10, each with its
    /// own MAC, through an AF_PACKET socket on the host's side of the TAP,
    /// paced so the TAP's queue keeps up. Returns how many were sent.
    pub fn ns_flood_arp(&self, n: u32) -> u32 {
        super::with_raw_sender(self.ns.name(), self.dev, |tx| {
            let mut sent = 0;
            for i in 0..n {
                let mac = [2, 0x77, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1];
                let sender = std::net::Ipv4Addr::from(0x6440_0002 + i);
                let mut f = Vec::with_capacity(42);
                f.extend_from_slice(&[0xff; 6]);
                f.extend_from_slice(&mac);
                f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
                f.extend_from_slice(&mac);
                f.extend_from_slice(&sender.octets());
                f.extend_from_slice(&[0; 6]);
                f.extend_from_slice(&[100, 64, 0, 1]);
                if let Some(Ok(())) = tx.send_to(&f, None) {
                    sent += 1;
                }
                if i % 256 == 255 {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            sent
        })
        .expect("ARP flood")
    }

    /// `ping` from this host; true when every echo was answered.
    pub fn ping(&self, args: &[&str]) -> (bool, String) {
        self.ns.ping(args)
    }
}

/// The daemon running in this process; stopped (and joined) on drop, before
/// the namespaces go.
pub struct Appliance {
    pub daemon: Daemon,
    pub hosts: Vec<Host>,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
    /// Dropped last, once the daemon's workers are joined.
    _threads: Threads,
}

/// Tests that measure the daemon's worker threads find them by name
/// (`edgefwd-w*`) among all of this process's threads, so they run alone:
/// every other appliance holds this lock shared, theirs holds it
/// exclusively.
static WORKER_THREADS: RwLock<()> = RwLock::new(());

/// An appliance's hold on [`WORKER_THREADS`].
pub enum Threads {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

impl Threads {
    pub fn take(alone: bool) -> Threads {
        if alone {
            Threads::Alone(WORKER_THREADS.write())
        } else {
            Threads::Shared(WORKER_THREADS.read())
        }
    }
}

impl Appliance {
    /// Hosts for `ports` (of "Port2", "Port3", "Port4", "vm1"), the daemon
    /// with `extra` config, then the hosts addressed.
    pub fn start(tag: &str, ports: &[&'static str], extra: &str) -> Appliance {
        Self::start_tuned(tag, ports, "", extra)
    }

    /// [`Appliance::start_tuned`] with no other appliance running in this
    /// process while it runs, for measuring its worker threads.
    pub fn start_alone(tag: &str, ports: &[&'static str], dataplane: &str) -> Appliance {
        Self::start_with(
            tag,
            ports,
            dataplane,
            "",
            "",
            Threads::take(true),
            Control::default(),
        )
    }

    /// [`Appliance::start`] with the daemon polling link state rather than
    /// following the kernel's link notifications.
    pub fn start_polling(tag: &str, ports: &[&'static str], extra: &str) -> Appliance {
        let polling = Control {
            poll_links: true,
            ..Control::default()
        };
        Self::start_with(tag, ports, "", "", extra, Threads::take(false), polling)
    }

    /// [`Appliance::start`] with `control` lines added to `[control]`.
    pub fn start_with_control(tag: &str, ports: &[&'static str], control: &str) -> Appliance {
        Self::start_with(
            tag,
            ports,
            "",
            control,
            "",
            Threads::take(false),
            Control::default(),
        )
    }

    /// [`Appliance::start`] with `dataplane` lines added to `[dataplane]`.
    pub fn start_tuned(
        tag: &str,
        ports: &[&'static str],
        dataplane: &str,
        extra: &str,
    ) -> Appliance {
        Self::start_with(
            tag,
            ports,
            dataplane,
            "",
            extra,
            Threads::take(false),
            Control::default(),
        )
    }

    fn start_with(
        tag: &str,
        ports: &[&'static str],
        dataplane: &str,
        control: &str,
        extra: &str,
        threads: Threads,
        daemon: Control,
    ) -> Appliance {
        let hosts: Vec<Host> = ports
            .iter()
            .map(|&port| {
                let (dev, subnet) = match port {
                    "Port2" => ("p2", "10.0.2"),
                    "Port3" => ("p3", "10.0.3"),
                    "Port4" => ("p4", "10.0.4"),
                    _ => ("vm1", "172.28.0"),
                };
                Host {
                    ns: Netns::new(&format!("{tag}-{dev}")),
                    dev,
                    port,
                    subnet,
                }
            })
            .collect();
        let dir = super::temp_dir(tag);
        let socket = dir.path().join("control.sock");
        // Two workers unless the test says otherwise.
        let workers = if dataplane.contains("workers") {
            ""
        } else {
            "workers = 2\n"
        };
        let mut toml = format!(
            "[dataplane]\n{workers}{dataplane}\n[control]\nsocket = \"{}\"\n{control}\n\n",
            socket.display()
        );
        for h in &hosts {
            toml += &h.port_toml();
        }
        toml += extra;
        let cfg = Config::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let daemon = Daemon::start_with(cfg, daemon);
        let app = Appliance {
            daemon,
            hosts,
            socket,
            _dir: dir,
            _threads: threads,
        };
        for h in &app.hosts {
            h.configure();
        }
        // The daemon sees each link come up within its probe period; the
        // appliance answering a host's ping shows that host's port is up.
        for h in &app.hosts {
            h.ns.wait_for_ping(&h.gateway(), 5);
        }
        app
    }

    pub fn host(&self, port: &str) -> &Host {
        self.hosts.iter().find(|h| h.port == port).unwrap()
    }

    pub fn stop(mut self) -> RunSummary {
        self.daemon.stop().expect("daemon failed")
    }
}
