//! The TOML config (ARCHITECTURE.md §4): parsing with serde, then validation
//! into typed values.
//!
//! Unknown fields are errors. Every error names the field (`route[2].next_hop`)
//! and, when the file has one, the line, so an operator can fix the file
//! without guessing. Validation builds a new [`Config`] and never touches
//! running state: a refused config changes nothing.

use edgefwd_core::l2::{PortSecurity, SwitchConfig, Switching};
use edgefwd_core::nat::{NatConfig, NatPolicy};
use edgefwd_core::packet::MacAddr;
use edgefwd_core::pipeline::RouterConfig;
use edgefwd_core::port::PortId;
pub use edgefwd_io::Binding;
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default burst size.
pub const DEFAULT_BURST: usize = 64;
/// Default per-port queue depth.
pub const DEFAULT_QUEUE_DEPTH: usize = 1024;
/// Most worker threads accepted.
pub const MAX_WORKERS: usize = 64;
/// Longest busy poll accepted, in microseconds (one second).
pub const MAX_BUSY_POLL_US: u64 = 1_000_000;
/// Default IP MTU.
pub const DEFAULT_MTU: u16 = 1500;
/// Metric of a custom route when the config gives none (as Windows does).
pub const DEFAULT_METRIC: u32 = 256;
/// Largest metric accepted.
pub const MAX_METRIC: u32 = 65535;
/// Smallest netlink receive buffer accepted (a tiny one overruns often,
/// which the route mirror repairs; tests use it to force overruns).
pub const NETLINK_BUFFER_MIN: usize = 4096;
/// Largest netlink receive buffer accepted.
pub const NETLINK_BUFFER_MAX: usize = 1 << 30;

/// A config refused, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when read from one.
    pub file: Option<PathBuf>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field (`port[1].mac`), or empty for a whole-file error.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(l)) => write!(f, "{}:{l}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(l)) => write!(f, "line {l}: ")?,
            (None, None) => {}
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// `[dataplane]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Worker threads (`None`: one per core).
    pub workers: Option<usize>,
    /// Checksum and segmentation offload on TAP ports (virtio-net headers).
    pub offload: bool,
    /// Packets per burst.
    pub burst: usize,
    /// Per-port queue depth.
    pub queue_depth: usize,
    /// Microseconds a worker keeps polling after its last frame before it
    /// sleeps (0: at once).
    pub busy_poll_us: u64,
    /// TAP frames read and written in batches through io_uring (else, or
    /// where the kernel refuses io_uring, a syscall per frame).
    pub io_uring: bool,
    /// A frame switched from one `vhost-user:` port to another has its
    /// payload copied once, from the sending VM's memory straight into the
    /// receiving VM's (else into a worker's buffer and out again).
    pub vm_one_copy: bool,
    /// ICMP errors per second per port.
    pub icmp_rate: u32,
    /// ICMP error burst per port.
    pub icmp_burst: u32,
    /// Packets per second each worker punts to host mirrors.
    pub punt_rate: u32,
}

/// `[control]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlConfig {
    /// Control socket path.
    pub socket: Option<PathBuf>,
    /// Group allowed on the socket.
    pub group: Option<String>,
    /// Persisted state file.
    pub state: Option<PathBuf>,
    /// Where Prometheus metrics are served (off when `None`).
    pub metrics: Option<MetricsAddr>,
    /// Receive buffer of the route mirror's netlink sockets, in bytes.
    pub netlink_buffer: usize,
}

/// `[control] metrics`: a TCP address (`127.0.0.1:9469`, `[::1]:9469`) or
/// a Unix socket path (absolute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsAddr {
    /// A TCP address and port.
    Tcp(std::net::SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl MetricsAddr {
    /// Parses the config's text.
    pub fn parse(s: &str) -> Result<MetricsAddr, String> {
        if s.starts_with('/') {
            return Ok(MetricsAddr::Unix(PathBuf::from(s)));
        }
        s.parse().map(MetricsAddr::Tcp).map_err(|_| {
            format!(
                "{s:?} is neither ADDRESS:PORT (127.0.0.1:9469, [::1]:9469) nor an absolute path"
            )
        })
    }
}

impl std::fmt::Display for MetricsAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsAddr::Tcp(a) => write!(f, "{a}"),
            MetricsAddr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One `[[port]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// Name (`Port2`).
    pub name: String,
    /// Binding.
    pub bind: Binding,
    /// MAC address.
    pub mac: MacAddr,
    /// Addresses with prefix length.
    pub addresses: Vec<IpNet>,
    /// Default gateway.
    pub gateway: Option<IpAddr>,
    /// Metric of the default route via `gateway`.
    pub gateway_metric: u32,
    /// IP MTU.
    pub mtu: u16,
    /// Routed, a switch member, or a switch's gateway interface.
    pub role: PortRole,
}

/// What a port is to the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRole {
    /// A routed port with addresses of its own.
    Routed,
    /// A member of a switch (`port.switch`): no addresses; optional port
    /// security (`allowed_mac`, `allowed_addresses`).
    Member {
        /// The switch.
        switch: String,
        /// What the port may send from.
        security: PortSecurity,
    },
    /// An internal switch's gateway interface, made from its `[[switch]]`
    /// (named after it, after the config's ports, with no device).
    Gateway {
        /// The switch.
        switch: String,
    },
    /// A routed port's host mirror, made from its `host` (named
    /// `PORT/host`, after the switches' interfaces): a TAP in the host
    /// kernel with the port's MAC, MTU and addresses, for the host's own
    /// traffic.
    Mirror {
        /// The port it mirrors.
        of: String,
    },
}

/// Suffix of a host mirror's port name (`Port2/host`); a `/` is in no
/// configured port's name.
pub const MIRROR_SUFFIX: &str = "/host";

/// `[[switch]]` `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchKind {
    /// VMs behind a gateway interface of the appliance, NATed out.
    Internal,
    /// VMs bridged onto an uplink port's network.
    External,
}

/// One `[[switch]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchSpec {
    /// Name (also its gateway interface's, for an internal switch).
    pub name: String,
    /// Internal or external.
    pub kind: SwitchKind,
    /// Internal: the port it NATs out through.
    pub nat: Option<String>,
    /// External: the routed port whose network it bridges onto.
    pub uplink: Option<String>,
    /// MAC-table size.
    pub mac_limit: usize,
    /// MAC aging time.
    pub aging: Duration,
}

/// One `[[route]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// Egress port name.
    pub interface: String,
    /// Destination prefix.
    pub destination: IpNet,
    /// Gateway (`None`: the destination is on the link).
    pub next_hop: Option<IpAddr>,
    /// Metric.
    pub metric: u32,
}

impl RouteConfig {
    /// True when `other` is the same route: a route's identity is its
    /// interface, destination and next hop (the metric is not part of it).
    pub fn same_route(&self, other: &RouteConfig) -> bool {
        self.interface == other.interface
            && self.destination == other.destination
            && self.next_hop == other.next_hop
    }
}

/// One `[[neighbor]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborConfig {
    /// Port name.
    pub interface: String,
    /// IP address.
    pub address: IpAddr,
    /// Its MAC.
    pub mac: MacAddr,
}

/// A validated config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `[dataplane]`.
    pub dataplane: DataplaneConfig,
    /// `[control]`.
    pub control: ControlConfig,
    /// Ports in file order (their index is their port id), then one
    /// gateway interface per internal switch.
    pub ports: Vec<PortConfig>,
    /// Virtual switches.
    pub switches: Vec<SwitchSpec>,
    /// `[nat]`: how every NAT instance behaves.
    pub nat: NatPolicy,
    /// Custom routes.
    pub routes: Vec<RouteConfig>,
    /// Static neighbours.
    pub neighbors: Vec<NeighborConfig>,
    /// `[services]`.
    pub services_policy: ServicesPolicy,
    /// Kubernetes services (`[[service]]`), addresses from the pool given.
    pub services: Vec<edgefwd_core::service::ServiceConfig>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_owned()),
            line: None,
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse_with_name(&text, Some(path.to_owned()))
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Self::parse_with_name(text, None)
    }

    fn parse_with_name(text: &str, file: Option<PathBuf>) -> Result<Config, ConfigError> {
        let lines = Lines { text, file };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let field = e.span().map(|s| lines.field_at(&s)).unwrap_or_default();
            lines.err(e.span(), field, e.message())
        })?;
        validate(raw, &lines)
    }

    /// The dataplane tunables this config sets.
    pub fn router_config(&self) -> RouterConfig {
        RouterConfig {
            icmp_rate: self.dataplane.icmp_rate,
            icmp_burst: self.dataplane.icmp_burst,
            punt_rate: self.dataplane.punt_rate,
            tx_queue_depth: self.dataplane.queue_depth,
            ..RouterConfig::default()
        }
    }

    /// The virtual switches as the dataplane takes them.
    pub fn switching(&self) -> Switching {
        let id = |name: &str| self.port(name).map(|(i, _)| i as PortId);
        let mut switches = Vec::new();
        for sw in &self.switches {
            let mut members: Vec<PortId> = self
                .ports
                .iter()
                .enumerate()
                .filter(|(_, p)| matches!(&p.role, PortRole::Member { switch, .. } if *switch == sw.name))
                .map(|(i, _)| i as PortId)
                .collect();
            let router_port = match sw.kind {
                SwitchKind::Internal => id(&sw.name),
                SwitchKind::External => sw.uplink.as_deref().and_then(id),
            };
            let Some(router_port) = router_port else {
                continue;
            };
            if sw.kind == SwitchKind::External {
                members.push(router_port);
            }
            switches.push(SwitchConfig {
                name: sw.name.clone(),
                router_port,
                members,
                mac_limit: sw.mac_limit,
                aging: sw.aging,
            });
        }
        let security: Vec<(PortId, PortSecurity)> = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match &p.role {
                PortRole::Member { security, .. } if *security != PortSecurity::default() => {
                    Some((i as PortId, security.clone()))
                }
                _ => None,
            })
            .collect();
        Switching::new(self.ports.len(), &switches, &security)
    }

    /// By port: the interfaces a cluster IP answers (internal switches'
    /// gateway interfaces).
    pub fn internal_interfaces(&self) -> Vec<bool> {
        self.ports
            .iter()
            .map(|p| match &p.role {
                PortRole::Gateway { switch } => self
                    .switches
                    .iter()
                    .any(|s| &s.name == switch && s.kind == SwitchKind::Internal),
                _ => false,
            })
            .collect()
    }

    /// The NAT instances: one per outside port, translating the subnets of
    /// the internal switches that name it.
    pub fn nat_configs(&self) -> Vec<NatConfig> {
        let mut out: Vec<NatConfig> = Vec::new();
        for sw in self
            .switches
            .iter()
            .filter(|s| s.kind == SwitchKind::Internal)
        {
            let (Some(nat), Some((_, gw))) = (&sw.nat, self.port(&sw.name)) else {
                continue;
            };
            let Some((outside, port)) = self.port(nat) else {
                continue;
            };
            let Some(external) = port.addresses.iter().find_map(|a| match a {
                IpNet::V4(n) => Some(n.addr()),
                IpNet::V6(_) => None,
            }) else {
                continue;
            };
            let inside = gw.addresses.iter().filter_map(|a| match a {
                IpNet::V4(n) => Some(n.trunc()),
                IpNet::V6(_) => None,
            });
            let outside = outside as PortId;
            if let Some(n) = out.iter_mut().find(|n| n.outside == outside) {
                n.inside.extend(inside);
                continue;
            }
            out.push(NatConfig {
                outside,
                external,
                inside: inside.collect(),
                policy: self.nat.clone(),
            });
        }
        out
    }

    /// `(port, mirror)` pairs of port ids: the host mirrors.
    pub fn mirrors(&self) -> Vec<(PortId, PortId)> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(m, p)| match &p.role {
                PortRole::Mirror { of } => self.port(of).map(|(i, _)| (i as PortId, m as PortId)),
                _ => None,
            })
            .collect()
    }

    /// The port named `name` and its index.
    pub fn port(&self, name: &str) -> Option<(usize, &PortConfig)> {
        self.ports.iter().enumerate().find(|(_, p)| p.name == name)
    }
}

/// True when `a` lies in one of the subnets of `addresses`.
pub fn on_link(addresses: &[IpNet], a: IpAddr) -> bool {
    addresses.iter().any(|n| n.contains(&a))
}

/// Parses a destination prefix: `ADDRESS/LENGTH` with host bits zero.
pub fn parse_prefix(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s
        .parse()
        .map_err(|_| format!("{s:?} is not PREFIX/LENGTH"))?;
    if net.trunc() != net {
        return Err(format!(
            "{net} has host bits set (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(net)
}

mod fields;
mod raw;
mod service;
mod switch;
mod validate;

pub use service::{
    check_text as check_services, entry_toml, family_refusal, to_toml as services_toml,
    ServicesPolicy, DEFAULT_FLOWS,
};
pub use validate::{check_route, RouteError, RouteField};

use raw::{Lines, RawConfig};
use validate::validate;

#[cfg(test)]
mod tests;
