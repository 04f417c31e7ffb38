//! The RIB: every route with its kind (connected, default, static), compiled
//! into a FIB snapshot by the dataplane's selection.
//!
//! The RIB is where route provenance lives; the FIB only knows prefixes and
//! next-hop groups. Answers that need both (`route lookup`, `route show`)
//! come from here.

use edgefwd_dataplane::fib::{Fib, Route, Selection};
use edgefwd_dataplane::pipeline::{Router, RouterConfig};
use edgefwd_dataplane::port::{PortId, PortInfo, PortTable};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;

use crate::config::{Binding, Config, PortRole, RouteConfig};

/// Where a route comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// Added by the operator.
    Static,
    /// From a port address.
    Connected,
    /// From a port's `gateway`.
    Default,
}

impl RouteKind {
    /// The kind's name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Static => "static",
            RouteKind::Connected => "connected",
            RouteKind::Default => "default",
        }
    }
}

/// A route with its provenance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RibRoute {
    /// The route.
    pub route: Route,
    /// Its kind.
    pub kind: RouteKind,
}

/// One selected route, as `route lookup` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupRoute {
    /// Matched prefix.
    pub destination: IpNet,
    /// Egress port name.
    pub interface: String,
    /// Gateway (`None` when directly connected).
    pub next_hop: Option<IpAddr>,
    /// Metric.
    pub metric: u32,
}

/// One route as `route show` and reports list it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    /// Egress port name.
    pub interface: String,
    /// Destination prefix.
    pub destination: IpNet,
    /// Gateway (`None` when directly connected).
    pub next_hop: Option<IpAddr>,
    /// Metric.
    pub metric: u32,
    /// Where it comes from.
    pub kind: RouteKind,
    /// True when the FIB uses it.
    pub selected: bool,
}

/// All routes and ports.
#[derive(Clone, Debug)]
pub struct Rib {
    ports: PortTable,
    routes: Vec<RibRoute>,
}

impl Rib {
    /// The RIB a config describes. Every port counts as up unless `live` is
    /// set, in which case ports bound to `none` are down (in `replay` and in
    /// offline lookups every port is up).
    pub fn from_config(cfg: &Config, live: bool) -> Rib {
        Rib::from_config_with(cfg, &cfg.routes, live)
    }

    /// [`Rib::from_config`] with `custom` in place of the config's
    /// `[[route]]`s (the daemon's routes as changed at run time).
    pub fn from_config_with(cfg: &Config, custom: &[RouteConfig], live: bool) -> Rib {
        let ports = cfg
            .ports
            .iter()
            .map(|p| PortInfo {
                name: p.name.clone(),
                mac: p.mac,
                v4: p
                    .addresses
                    .iter()
                    .filter_map(|a| match a {
                        IpNet::V4(n) => Some(*n),
                        IpNet::V6(_) => None,
                    })
                    .collect::<Vec<Ipv4Net>>(),
                v6: p
                    .addresses
                    .iter()
                    .filter_map(|a| match a {
                        IpNet::V6(n) => Some(*n),
                        IpNet::V4(_) => None,
                    })
                    .collect::<Vec<Ipv6Net>>(),
                mtu: p.mtu,
                // A switch's gateway interface has no device: it is up.
                up: !live || p.bind != Binding::None || matches!(p.role, PortRole::Gateway { .. }),
            })
            .collect();
        let id = |name: &str| {
            cfg.port(name)
                .map(|(i, _)| i as PortId)
                .unwrap_or(PortId::MAX)
        };
        let mut routes = Vec::new();
        for (i, p) in cfg.ports.iter().enumerate() {
            for a in &p.addresses {
                routes.push(RibRoute {
                    route: Route {
                        prefix: a.trunc(),
                        port: i as PortId,
                        next_hop: None,
                        metric: 0,
                    },
                    kind: RouteKind::Connected,
                });
            }
            if let Some(gw) = p.gateway {
                let any: IpNet = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" }
                    .parse()
                    .unwrap_or_default();
                routes.push(RibRoute {
                    route: Route {
                        prefix: any,
                        port: i as PortId,
                        next_hop: Some(gw),
                        metric: p.gateway_metric,
                    },
                    kind: RouteKind::Default,
                });
            }
        }
        for r in custom {
            routes.push(RibRoute {
                route: Route {
                    prefix: r.destination,
                    port: id(&r.interface),
                    next_hop: r.next_hop,
                    metric: r.metric,
                },
                kind: RouteKind::Static,
            });
        }
        Rib {
            ports: PortTable::new(ports),
            routes,
        }
    }

    /// The ports.
    pub fn ports(&self) -> &PortTable {
        &self.ports
    }

    /// All routes.
    pub fn routes(&self) -> &[RibRoute] {
        &self.routes
    }

    /// Adds routes of `kind` (bulk loads: `route add --file`, benches).
    pub fn extend(&mut self, routes: impl IntoIterator<Item = Route>, kind: RouteKind) {
        self.routes
            .extend(routes.into_iter().map(|route| RibRoute { route, kind }));
    }

    /// Marks a port's link up or down; routes through a down port leave
    /// the next FIB built.
    pub fn set_link(&mut self, port: PortId, up: bool) {
        self.ports.set_up(port, up);
    }

    /// The name of a port.
    pub fn port_name(&self, id: PortId) -> &str {
        self.ports.get(id).map_or("?", |p| p.name.as_str())
    }

    /// A router over these ports forwarding with `fib`, with the config's
    /// static neighbours, switches and NAT installed.
    pub fn router(&self, cfg: &Config, fib: Arc<Fib>, rcfg: &RouterConfig) -> Router {
        let mut router = Router::new(self.ports.clone(), fib, rcfg);
        router.set_switching(cfg.switching());
        router.set_nat(cfg.nat_configs());
        for n in &cfg.neighbors {
            if let Some(port) = self.ports.by_name(&n.interface) {
                router.add_static_neighbor(port, n.address, n.mac);
            }
        }
        router
    }

    /// Compiles the FIB from the routes whose port is up.
    pub fn build_fib(&self) -> (Fib, Selection) {
        let routes: Vec<Route> = self.routes.iter().map(|r| r.route.clone()).collect();
        Fib::build(&routes, |p| self.ports.get(p).is_some_and(|p| p.up))
    }

    /// Every route with whether the FIB selected it, ordered by destination
    /// then metric.
    pub fn show(&self, selection: &Selection) -> Vec<RouteView> {
        let mut v: Vec<RouteView> = self
            .routes
            .iter()
            .zip(&selection.selected)
            .map(|(r, s)| RouteView {
                interface: self.port_name(r.route.port).to_owned(),
                destination: r.route.prefix,
                next_hop: r.route.next_hop,
                metric: r.route.metric,
                kind: r.kind,
                selected: *s,
            })
            .collect();
        v.sort_by(|a, b| {
            (
                a.destination.addr().is_ipv6(),
                a.destination.network(),
                a.destination.prefix_len(),
                a.metric,
            )
                .cmp(&(
                    b.destination.addr().is_ipv6(),
                    b.destination.network(),
                    b.destination.prefix_len(),
                    b.metric,
                ))
        });
        v
    }

    /// The routes the FIB selects for `addr`: the longest selected prefix
    /// containing it and its lowest-metric routes (several under ECMP).
    pub fn lookup(&self, fib: &Fib, selection: &Selection, addr: IpAddr) -> Vec<LookupRoute> {
        if fib.lookup(addr).is_none() {
            return Vec::new();
        }
        // One pass: the selected routes of the longest prefix holding addr.
        let mut best: Vec<&Route> = Vec::new();
        let mut len = 0;
        for (r, _) in self
            .routes
            .iter()
            .zip(&selection.selected)
            .filter(|(r, s)| **s && r.route.prefix.contains(&addr))
        {
            let l = r.route.prefix.prefix_len();
            if best.is_empty() || l > len {
                best.clear();
                len = l;
            }
            if l == len {
                best.push(&r.route);
            }
        }
        let mut out: Vec<LookupRoute> = best
            .into_iter()
            .map(|r| LookupRoute {
                destination: r.prefix,
                interface: self.port_name(r.port).to_owned(),
                next_hop: r.next_hop,
                metric: r.metric,
            })
            .collect();
        out.sort_by(|a, b| (&a.interface, a.next_hop).cmp(&(&b.interface, b.next_hop)));
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[[port]]
name = "Port2"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.15/24"]
gateway = "10.0.2.1"
[[port]]
name = "Port3"
mac = "02:00:00:00:03:01"
addresses = ["192.168.20.10/24"]
[[port]]
name = "Port4"
bind = "none"
mac = "02:00:00:00:04:01"
addresses = ["192.168.30.10/24"]
[[route]]
interface = "Port3"
destination = "192.168.21.0/24"
next_hop = "192.168.20.1"
metric = 200
[[route]]
interface = "Port4"
destination = "192.168.21.0/24"
next_hop = "192.168.30.1"
metric = 100
"#;

    fn lookup(live: bool, a: &str) -> Vec<LookupRoute> {
        let rib = Rib::from_config(&Config::parse(CFG).unwrap(), live);
        let (fib, sel) = rib.build_fib();
        rib.lookup(&fib, &sel, a.parse().unwrap())
    }

    #[test]
    fn kind_names_match_their_json() {
        for k in [RouteKind::Static, RouteKind::Connected, RouteKind::Default] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.name());
        }
    }

    #[test]
    fn connected_default_and_static_routes() {
        let r = lookup(false, "10.0.2.99");
        assert_eq!(
            (r[0].interface.as_str(), r[0].next_hop, r[0].metric),
            ("Port2", None, 0)
        );
        let r = lookup(false, "8.8.8.8");
        assert_eq!(r[0].destination.to_string(), "0.0.0.0/0");
        assert_eq!(r[0].next_hop, Some("10.0.2.1".parse().unwrap()));
    }

    #[test]
    fn lower_metric_wins_unless_its_port_is_down() {
        let r = lookup(false, "192.168.21.7");
        assert_eq!(
            (r.len(), r[0].interface.as_str(), r[0].metric),
            (1, "Port4", 100)
        );
        let r = lookup(true, "192.168.21.7");
        assert_eq!(
            (r.len(), r[0].interface.as_str(), r[0].metric),
            (1, "Port3", 200)
        );
    }
}
