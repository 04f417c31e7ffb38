//! The TOML config (ARCHITECTURE.md §4): parsing with serde, then validation
//! into typed values.
//!
//! Unknown fields are errors. Every error names the field (`route[2].next_hop`)
//! and, when the file has one, the line, so an operator can fix the file
//! without guessing. Validation builds a new [`Config`] and never touches
//! running state: a refused config changes nothing.

use edgefwd_dataplane::packet::MacAddr;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Default burst size.
pub const DEFAULT_BURST: usize = 64;
/// Default per-port queue depth.
pub const DEFAULT_QUEUE_DEPTH: usize = 1024;
/// Default IP MTU.
pub const DEFAULT_MTU: u16 = 1500;
/// Metric of a custom route when the config gives none (as Windows does).
pub const DEFAULT_METRIC: u32 = 256;
/// Largest metric accepted.
pub const MAX_METRIC: u32 = 65535;

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
    /// Packets per burst.
    pub burst: usize,
    /// Per-port queue depth.
    pub queue_depth: usize,
    /// ICMP errors per second per port.
    pub icmp_rate: u32,
    /// ICMP error burst per port.
    pub icmp_burst: u32,
}

/// `[control]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlConfig {
    /// Control socket path.
    pub socket: Option<PathBuf>,
    /// Group allowed on the socket.
    pub group: Option<String>,
    /// Persisted state file.
    pub state: Option<PathBuf>,
}

/// How a port is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// A TAP device.
    Tap(String),
    /// A real NIC through AF_PACKET.
    AfPacket(String),
    /// Fed and drained by `replay`.
    Pcap,
    /// Administratively down.
    None,
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
    /// Ports in file order (their index is their port id).
    pub ports: Vec<PortConfig>,
    /// Custom routes.
    pub routes: Vec<RouteConfig>,
    /// Static neighbours.
    pub neighbors: Vec<NeighborConfig>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    workers: Option<usize>,
    burst: Option<Spanned<usize>>,
    queue_depth: Option<Spanned<usize>>,
    icmp_rate: Option<u32>,
    icmp_burst: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<PathBuf>,
    group: Option<String>,
    state: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: Spanned<String>,
    bind: Option<Spanned<String>>,
    mac: Option<Spanned<String>>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    gateway: Option<Spanned<String>>,
    #[serde(default)]
    gateway_metric: Option<Spanned<u32>>,
    mtu: Option<Spanned<u16>>,
    switch: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RawSwitch {
    name: Spanned<String>,
    kind: Option<String>,
    address: Option<String>,
    nat: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    interface: Spanned<String>,
    destination: Spanned<String>,
    next_hop: Option<Spanned<String>>,
    metric: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbor {
    interface: Spanned<String>,
    address: Spanned<String>,
    mac: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    dataplane: RawDataplane,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    port: Vec<RawPort>,
    #[serde(default)]
    switch: Vec<RawSwitch>,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    neighbor: Vec<RawNeighbor>,
}

/// Turns byte spans into 1-based lines.
struct Lines<'a> {
    text: &'a str,
    file: Option<PathBuf>,
}

impl Lines<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn err(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: span.map(|s| self.line(s)),
            field: field.into(),
            message: message.into(),
        }
    }

    fn at<T>(
        &self,
        v: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.err(Some(v.span()), field, message)
    }
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
            let msg = e.message().to_owned();
            lines.err(e.span(), "", msg)
        })?;
        validate(raw, &lines)
    }

    /// The port named `name` and its index.
    pub fn port(&self, name: &str) -> Option<(usize, &PortConfig)> {
        self.ports.iter().enumerate().find(|(_, p)| p.name == name)
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn parse_binding(s: &str) -> Option<Binding> {
    match s.split_once(':') {
        Some(("tap", n)) if valid_ifname(n) => Some(Binding::Tap(n.to_owned())),
        Some(("afpacket", n)) if valid_ifname(n) => Some(Binding::AfPacket(n.to_owned())),
        None if s == "pcap" => Some(Binding::Pcap),
        None if s == "none" => Some(Binding::None),
        _ => None,
    }
}

/// Linux interface names: 1 to 15 bytes, no '/', ':' or white space.
fn valid_ifname(n: &str) -> bool {
    !n.is_empty() && n.len() <= 15 && !n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

fn validate(raw: RawConfig, l: &Lines) -> Result<Config, ConfigError> {
    let dp = &raw.dataplane;
    let burst = match &dp.burst {
        Some(b) if !(1..=256).contains(b.get_ref()) => {
            return Err(l.at(b, "dataplane.burst", "must be between 1 and 256"));
        }
        Some(b) => *b.get_ref(),
        None => DEFAULT_BURST,
    };
    let queue_depth = match &dp.queue_depth {
        Some(q) if !(1..=1 << 20).contains(q.get_ref()) => {
            return Err(l.at(q, "dataplane.queue_depth", "must be between 1 and 1048576"));
        }
        Some(q) => *q.get_ref(),
        None => DEFAULT_QUEUE_DEPTH,
    };
    let dataplane = DataplaneConfig {
        workers: dp.workers,
        burst,
        queue_depth,
        icmp_rate: dp.icmp_rate.unwrap_or(10),
        icmp_burst: dp.icmp_burst.unwrap_or(10),
    };
    if let Some(s) = raw.switch.first() {
        return Err(l.at(
            &s.name,
            "switch[0]",
            "virtual switches are not supported yet",
        ));
    }

    let mut ports: Vec<PortConfig> = Vec::new();
    let mut macs = HashSet::new();
    let mut addrs = HashSet::new();
    for (i, p) in raw.port.iter().enumerate() {
        let f = |name: &str| format!("port[{i}].{name}");
        let name = p.name.get_ref();
        if !valid_name(name) {
            return Err(l.at(
                &p.name,
                f("name"),
                format!("{name:?} is not a valid port name (1-32 of A-Z a-z 0-9 - _ .)"),
            ));
        }
        if ports.iter().any(|q| &q.name == name) {
            return Err(l.at(&p.name, f("name"), format!("duplicate port {name:?}")));
        }
        if let Some(s) = &p.switch {
            return Err(l.at(s, f("switch"), "virtual switches are not supported yet"));
        }
        let bind = match &p.bind {
            Some(b) => parse_binding(b.get_ref()).ok_or_else(|| {
                l.at(
                    b,
                    f("bind"),
                    format!(
                        "{:?}: expected tap:NAME, afpacket:IFNAME, pcap or none",
                        b.get_ref()
                    ),
                )
            })?,
            None => Binding::Pcap,
        };
        let mac_s = p.mac.as_ref().ok_or_else(|| {
            l.at(
                &p.name,
                f("mac"),
                "missing (a routed port needs a MAC address)",
            )
        })?;
        let mac: MacAddr = mac_s
            .get_ref()
            .parse()
            .map_err(|e| l.at(mac_s, f("mac"), format!("{:?}: {e}", mac_s.get_ref())))?;
        if mac.is_multicast() || mac == MacAddr::ZERO {
            return Err(l.at(mac_s, f("mac"), format!("{mac} is not a unicast address")));
        }
        if !macs.insert(mac) {
            return Err(l.at(mac_s, f("mac"), format!("duplicate MAC {mac}")));
        }
        let mut addresses = Vec::new();
        for (j, a) in p.addresses.iter().enumerate() {
            let field = format!("port[{i}].addresses[{j}]");
            let net: IpNet = a.get_ref().parse().map_err(|_| {
                l.at(
                    a,
                    &field,
                    format!("{:?} is not ADDRESS/LENGTH", a.get_ref()),
                )
            })?;
            let host = net.addr();
            if host.is_multicast()
                || host.is_unspecified()
                || host.is_loopback()
                || (net.prefix_len() < net.max_prefix_len() - 1
                    && (host == net.network() || host == net.broadcast())
                    && host.is_ipv4())
            {
                return Err(l.at(a, &field, format!("{net} is not a usable host address")));
            }
            if !addrs.insert(host) {
                return Err(l.at(a, &field, format!("duplicate address {host}")));
            }
            addresses.push(net);
        }
        let mtu = match &p.mtu {
            Some(m) => {
                let min = if addresses.iter().any(|a| a.addr().is_ipv6()) {
                    1280
                } else {
                    576
                };
                if !(min..=9000).contains(m.get_ref()) {
                    return Err(l.at(m, f("mtu"), format!("must be between {min} and 9000")));
                }
                *m.get_ref()
            }
            None => DEFAULT_MTU,
        };
        let gateway = match &p.gateway {
            Some(g) => {
                let gw: IpAddr = g.get_ref().parse().map_err(|_| {
                    l.at(
                        g,
                        f("gateway"),
                        format!("{:?} is not an IP address", g.get_ref()),
                    )
                })?;
                if !on_link(&addresses, gw) {
                    return Err(l.at(
                        g,
                        f("gateway"),
                        format!("{gw} is not on a subnet of {name}"),
                    ));
                }
                Some(gw)
            }
            None => None,
        };
        let gateway_metric = match &p.gateway_metric {
            Some(m) if *m.get_ref() > MAX_METRIC => {
                return Err(l.at(
                    m,
                    f("gateway_metric"),
                    format!("must be at most {MAX_METRIC}"),
                ))
            }
            Some(m) => *m.get_ref(),
            None => 0,
        };
        ports.push(PortConfig {
            name: name.clone(),
            bind,
            mac,
            addresses,
            gateway,
            gateway_metric,
            mtu,
        });
    }

    let find_port = |s: &Spanned<String>, field: String| -> Result<&PortConfig, ConfigError> {
        ports
            .iter()
            .find(|p| &p.name == s.get_ref())
            .ok_or_else(|| l.at(s, field, format!("unknown interface {:?}", s.get_ref())))
    };

    let mut routes: Vec<RouteConfig> = Vec::new();
    for (i, r) in raw.route.iter().enumerate() {
        let f = |name: &str| format!("route[{i}].{name}");
        let port = find_port(&r.interface, f("interface"))?;
        let destination = parse_prefix(r.destination.get_ref())
            .map_err(|m| l.at(&r.destination, f("destination"), m))?;
        let next_hop = match &r.next_hop {
            Some(n) => {
                let nh: IpAddr = n.get_ref().parse().map_err(|_| {
                    l.at(
                        n,
                        f("next_hop"),
                        format!("{:?} is not an IP address", n.get_ref()),
                    )
                })?;
                if nh.is_ipv4() != destination.addr().is_ipv4() {
                    return Err(l.at(
                        n,
                        f("next_hop"),
                        format!("{nh} is not of the destination's address family"),
                    ));
                }
                if !on_link(&port.addresses, nh) {
                    return Err(l.at(
                        n,
                        f("next_hop"),
                        format!("{nh} is not on a subnet of {}", port.name),
                    ));
                }
                if port.addresses.iter().any(|a| a.addr() == nh) {
                    return Err(l.at(
                        n,
                        f("next_hop"),
                        format!("{nh} is {}'s own address", port.name),
                    ));
                }
                Some(nh)
            }
            None => None,
        };
        let metric = match &r.metric {
            Some(m) if !(0..=i64::from(MAX_METRIC)).contains(m.get_ref()) => {
                return Err(l.at(
                    m,
                    f("metric"),
                    format!("{} is out of range 0..={MAX_METRIC}", m.get_ref()),
                ));
            }
            Some(m) => *m.get_ref() as u32,
            None => DEFAULT_METRIC,
        };
        let route = RouteConfig {
            interface: port.name.clone(),
            destination,
            next_hop,
            metric,
        };
        if routes.iter().any(|o| {
            o.interface == route.interface
                && o.destination == route.destination
                && o.next_hop == route.next_hop
        }) {
            return Err(l.at(
                &r.destination,
                f("destination"),
                format!(
                    "duplicate route {destination} via {} on {}",
                    fmt_nh(next_hop),
                    port.name
                ),
            ));
        }
        routes.push(route);
    }

    let mut neighbors: Vec<NeighborConfig> = Vec::new();
    for (i, n) in raw.neighbor.iter().enumerate() {
        let f = |name: &str| format!("neighbor[{i}].{name}");
        let port = find_port(&n.interface, f("interface"))?;
        let address: IpAddr = n.address.get_ref().parse().map_err(|_| {
            l.at(
                &n.address,
                f("address"),
                format!("{:?} is not an IP address", n.address.get_ref()),
            )
        })?;
        if !on_link(&port.addresses, address) {
            return Err(l.at(
                &n.address,
                f("address"),
                format!("{address} is not on a subnet of {}", port.name),
            ));
        }
        let mac: MacAddr = n
            .mac
            .get_ref()
            .parse()
            .map_err(|e| l.at(&n.mac, f("mac"), format!("{:?}: {e}", n.mac.get_ref())))?;
        if mac.is_multicast() || mac == MacAddr::ZERO {
            return Err(l.at(&n.mac, f("mac"), format!("{mac} is not a unicast address")));
        }
        if neighbors
            .iter()
            .any(|o| o.interface == port.name && o.address == address)
        {
            return Err(l.at(
                &n.address,
                f("address"),
                format!("duplicate neighbor {address} on {}", port.name),
            ));
        }
        neighbors.push(NeighborConfig {
            interface: port.name.clone(),
            address,
            mac,
        });
    }

    Ok(Config {
        dataplane,
        control: ControlConfig {
            socket: raw.control.socket,
            group: raw.control.group,
            state: raw.control.state,
        },
        ports,
        routes,
        neighbors,
    })
}

fn fmt_nh(nh: Option<IpAddr>) -> String {
    nh.map_or_else(|| "on-link".to_owned(), |a| a.to_string())
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

#[cfg(test)]
mod tests;
