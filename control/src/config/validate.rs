//! Validation: raw config values to typed ones, refusing anything an
//! operator could not have meant, with the field and line.

use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;
use toml::Spanned;

use super::fields::{ip_address, unicast_mac, valid_name};
use super::raw::{Lines, RawConfig, RawPort};
use super::switch;
use super::{
    on_link, parse_prefix, Binding, Config, ConfigError, ControlConfig, DataplaneConfig,
    MetricsAddr, NeighborConfig, PortConfig, PortRole, RouteConfig, DEFAULT_BURST, DEFAULT_METRIC,
    DEFAULT_MTU, DEFAULT_QUEUE_DEPTH, MAX_BUSY_POLL_US, MAX_METRIC, MAX_WORKERS, MIRROR_SUFFIX,
    NETLINK_BUFFER_MAX, NETLINK_BUFFER_MIN,
};

pub(super) fn validate(raw: RawConfig, l: &Lines) -> Result<Config, ConfigError> {
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
    let busy_poll_us = match &dp.busy_poll_us {
        Some(b) if *b.get_ref() > MAX_BUSY_POLL_US => {
            return Err(l.at(
                b,
                "dataplane.busy_poll_us",
                format!("must be between 0 and {MAX_BUSY_POLL_US}"),
            ));
        }
        b => b.as_ref().map_or(0, |b| *b.get_ref()),
    };
    let workers = match &dp.workers {
        Some(w) if !(1..=MAX_WORKERS).contains(w.get_ref()) => {
            return Err(l.at(
                w,
                "dataplane.workers",
                format!("must be between 1 and {MAX_WORKERS}"),
            ));
        }
        w => w.as_ref().map(|w| *w.get_ref()),
    };
    let dataplane = DataplaneConfig {
        workers,
        offload: dp.offload.unwrap_or(true),
        burst,
        queue_depth,
        busy_poll_us,
        io_uring: dp.io_uring.unwrap_or(true),
        vm_one_copy: dp.vm_one_copy.unwrap_or(true),
        icmp_rate: dp.icmp_rate.unwrap_or(10),
        icmp_burst: dp.icmp_burst.unwrap_or(10),
        punt_rate: dp
            .punt_rate
            .unwrap_or(edgefwd_core::pipeline::punt::PUNT_RATE),
    };
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
        let bind = match &p.bind {
            Some(b) => Binding::parse(b.get_ref()).ok_or_else(|| {
                l.at(
                    b,
                    f("bind"),
                    format!(
                        "{:?}: expected tap:NAME, tap:NAME@NETNS, afpacket:IFNAME, afxdp:IFNAME, pcap or none",
                        b.get_ref()
                    ),
                )
            })?,
            None => Binding::Pcap,
        };
        if let Some(sw) = &p.switch {
            ports.push(switch::member(l, i, p, sw, bind)?);
            continue;
        }
        if let Some(a) = &p.allowed_mac {
            return Err(l.at(
                a,
                f("allowed_mac"),
                "only a switch member has port security",
            ));
        }
        if let Some(a) = p.allowed_addresses.first() {
            return Err(l.at(
                a,
                f("allowed_addresses"),
                "only a switch member has port security",
            ));
        }
        let mac_s = p.mac.as_ref().ok_or_else(|| {
            l.at(
                &p.name,
                f("mac"),
                "missing (a routed port needs a MAC address)",
            )
        })?;
        let mac = unicast_mac(l, mac_s, f("mac"))?;
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
                let gw = ip_address(l, g, f("gateway"))?;
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
            role: PortRole::Routed,
        });
    }
    let switches = switch::switches(l, &raw.switch, &mut ports, &mut macs, &mut addrs)?;
    mirrors(l, &raw.port, &mut ports)?;
    let nat = switch::nat(l, &raw.nat)?;

    let find_port = |s: &Spanned<String>, field: String| -> Result<&PortConfig, ConfigError> {
        ports
            .iter()
            .find(|p| &p.name == s.get_ref())
            .ok_or_else(|| l.at(s, field, format!("unknown interface {:?}", s.get_ref())))
    };

    let mut routes: Vec<RouteConfig> = Vec::new();
    for (i, r) in raw.route.iter().enumerate() {
        let route = check_route(
            &ports,
            |r| routes.iter().any(|o| o.same_route(r)),
            r.interface.get_ref(),
            r.destination.get_ref(),
            r.next_hop.as_ref().map(|n| n.get_ref().as_str()),
            r.metric.as_ref().map(|m| *m.get_ref()),
        )
        .map_err(|e| {
            let span = match e.field {
                RouteField::Interface => r.interface.span(),
                RouteField::Destination => r.destination.span(),
                RouteField::NextHop => r
                    .next_hop
                    .as_ref()
                    .map_or(r.destination.span(), |n| n.span()),
                RouteField::Metric => r.metric.as_ref().map_or(r.destination.span(), |m| m.span()),
            };
            l.err(
                Some(span),
                format!("route[{i}].{}", e.field.name()),
                e.message,
            )
        })?;
        routes.push(route);
    }

    let mut neighbors: Vec<NeighborConfig> = Vec::new();
    for (i, n) in raw.neighbor.iter().enumerate() {
        let f = |name: &str| format!("neighbor[{i}].{name}");
        let port = find_port(&n.interface, f("interface"))?;
        let address = ip_address(l, &n.address, f("address"))?;
        if !on_link(&port.addresses, address) {
            return Err(l.at(
                &n.address,
                f("address"),
                format!("{address} is not on a subnet of {}", port.name),
            ));
        }
        let mac = unicast_mac(l, &n.mac, f("mac"))?;
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

    let declared = raw.services.is_some() || !raw.service.is_empty();
    let (mut services_policy, services) =
        super::service::services(l, &raw.services.unwrap_or_default(), &raw.service, &ports)?;
    services_policy.declared = declared;
    let metrics = match &raw.control.metrics {
        Some(m) => {
            Some(MetricsAddr::parse(m.get_ref()).map_err(|e| l.at(m, "control.metrics", e))?)
        }
        None => None,
    };
    let netlink_buffer = match &raw.control.netlink_buffer {
        Some(b) if !(NETLINK_BUFFER_MIN..=NETLINK_BUFFER_MAX).contains(b.get_ref()) => {
            return Err(l.at(
                b,
                "control.netlink_buffer",
                format!("must be between {NETLINK_BUFFER_MIN} and {NETLINK_BUFFER_MAX} bytes"),
            ))
        }
        Some(b) => *b.get_ref(),
        None => crate::route_mirror::RCVBUF,
    };
    Ok(Config {
        dataplane,
        control: ControlConfig {
            socket: raw.control.socket,
            group: raw.control.group,
            state: raw.control.state,
            metrics,
            netlink_buffer,
        },
        ports,
        switches,
        nat,
        routes,
        neighbors,
        services_policy,
        services,
    })
}

fn fmt_nh(nh: Option<IpAddr>) -> String {
    nh.map_or_else(|| "on-link".to_owned(), |a| a.to_string())
}

/// The field of a route a [`RouteError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteField {
    /// `interface`.
    Interface,
    /// `destination`.
    Destination,
    /// `next_hop`.
    NextHop,
    /// `metric`.
    Metric,
}

impl RouteField {
    /// The config field's name.
    pub fn name(self) -> &'static str {
        match self {
            RouteField::Interface => "interface",
            RouteField::Destination => "destination",
            RouteField::NextHop => "next_hop",
            RouteField::Metric => "metric",
        }
    }
}

/// A custom route refused, with the field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteError {
    /// The field.
    pub field: RouteField,
    /// What is wrong.
    pub message: String,
}

/// Checks one custom route against the ports and the custom routes that
/// exist already (`exists` says whether a route with the same interface,
/// destination and next hop does): the rules of `[[route]]` and of `route
/// add` alike.
pub fn check_route(
    ports: &[PortConfig],
    exists: impl Fn(&RouteConfig) -> bool,
    interface: &str,
    destination: &str,
    next_hop: Option<&str>,
    metric: Option<i64>,
) -> Result<RouteConfig, RouteError> {
    let err = |field, message: String| RouteError { field, message };
    let port = ports.iter().find(|p| p.name == interface).ok_or_else(|| {
        err(
            RouteField::Interface,
            format!("unknown interface {interface:?}"),
        )
    })?;
    if let PortRole::Member { switch, .. } = &port.role {
        return Err(err(
            RouteField::Interface,
            format!("{interface} is a member of switch {switch:?}; route through the switch's interface"),
        ));
    }
    if let PortRole::Mirror { of } = &port.role {
        return Err(err(
            RouteField::Interface,
            format!("{interface} is the host mirror of {of}; route through {of}"),
        ));
    }
    let destination = parse_prefix(destination).map_err(|m| err(RouteField::Destination, m))?;
    let next_hop = match next_hop {
        Some(n) => {
            let nh: IpAddr = n
                .parse()
                .map_err(|_| err(RouteField::NextHop, format!("{n:?} is not an IP address")))?;
            if nh.is_ipv4() != destination.addr().is_ipv4() {
                return Err(err(
                    RouteField::NextHop,
                    format!("{nh} is not of the destination's address family"),
                ));
            }
            if !on_link(&port.addresses, nh) {
                return Err(err(
                    RouteField::NextHop,
                    format!("{nh} is not on a subnet of {}", port.name),
                ));
            }
            if port.addresses.iter().any(|a| a.addr() == nh) {
                return Err(err(
                    RouteField::NextHop,
                    format!("{nh} is {}'s own address", port.name),
                ));
            }
            Some(nh)
        }
        None => None,
    };
    let metric = match metric {
        Some(m) if !(0..=i64::from(MAX_METRIC)).contains(&m) => {
            return Err(err(
                RouteField::Metric,
                format!("{m} is out of range 0..={MAX_METRIC}"),
            ));
        }
        Some(m) => m as u32,
        None => DEFAULT_METRIC,
    };
    let route = RouteConfig {
        interface: port.name.clone(),
        destination,
        next_hop,
        metric,
    };
    if exists(&route) {
        return Err(err(
            RouteField::Destination,
            format!(
                "a route to {destination} via {} on {} exists already",
                fmt_nh(next_hop),
                port.name
            ),
        ));
    }
    Ok(route)
}

/// Appends a host mirror port for every routed port with a `host`.
fn mirrors(l: &Lines, raw: &[RawPort], ports: &mut Vec<PortConfig>) -> Result<(), ConfigError> {
    for (i, p) in raw.iter().enumerate() {
        let Some(h) = &p.host else {
            continue;
        };
        let field = format!("port[{i}].host");
        let port = ports
            .iter()
            .find(|q| &q.name == p.name.get_ref() && q.role == PortRole::Routed)
            .ok_or_else(|| {
                l.at(
                    h,
                    &field,
                    "only a routed port has addresses of its own for the host",
                )
            })?;
        let Some(bind @ Binding::Tap { .. }) = Binding::parse(&format!("tap:{}", h.get_ref()))
        else {
            return Err(l.at(
                h,
                &field,
                format!(
                    "{:?}: expected NAME or NAME@NETNS (an interface name of 1-15 bytes)",
                    h.get_ref()
                ),
            ));
        };
        if let Some(q) = ports.iter().find(|q| q.bind == bind) {
            return Err(l.at(
                h,
                &field,
                format!("{:?} is already the device of {}", h.get_ref(), q.name),
            ));
        }
        let mirror = PortConfig {
            name: format!("{}{MIRROR_SUFFIX}", port.name),
            bind,
            mac: port.mac,
            addresses: Vec::new(),
            gateway: None,
            gateway_metric: 0,
            mtu: port.mtu,
            role: PortRole::Mirror {
                of: port.name.clone(),
            },
        };
        ports.push(mirror);
    }
    Ok(())
}
