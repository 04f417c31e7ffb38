//! The RIB: every route with its kind (connected, default, static), compiled
//! into a FIB snapshot by the dataplane's selection.
//!
//! The RIB is where route provenance lives; the FIB only knows prefixes and
//! next-hop groups. Answers that need both (`route lookup`, `route show`)
//! come from here.
//!
//! The running daemon changes it one route at a time: routes are chained by
//! prefix, so a change selects again among that prefix's routes only and
//! hands the result to a [`FibWriter`]; nothing costs the size of the table.

use edgefwd_core::fib::{Adjacency, Fib, FibWriter, Route, Selection};
use edgefwd_core::nat::PortClaims;
use edgefwd_core::pipeline::{Router, RouterConfig};
use edgefwd_core::port::{PortId, PortInfo, PortTable};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Bound;
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
    /// Mirrored from the host kernel's routes through a port's host
    /// mirror (a routing daemon's, `ip route`'s); never journaled.
    Kernel,
}

impl RouteKind {
    /// The kind's name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Static => "static",
            RouteKind::Connected => "connected",
            RouteKind::Default => "default",
            RouteKind::Kernel => "kernel",
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

/// End of a prefix's chain of routes.
const NONE: u32 = u32::MAX;

/// A link change touching more prefixes than this recompiles the whole FIB
/// (as fast as that many single changes, and it leaves no backlog for the
/// writer's other copy).
const RELINK_MAX: usize = 4096;

/// All routes and ports.
#[derive(Clone, Debug)]
pub struct Rib {
    ports: PortTable,
    routes: Vec<RibRoute>,
    /// Each prefix's first route, in prefix order (for `route show`'s
    /// pages); `next[i]` is the one after route `i`.
    heads: BTreeMap<IpNet, u32>,
    next: Vec<u32>,
    /// Whether the FIB uses each route, as of [`Rib::compile`] and the
    /// changes since (all false before the first compile).
    selected: Vec<bool>,
}

/// Which ports a RIB made from the config counts as up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortsUp {
    /// Every port (replay and offline lookups).
    All,
    /// Every port but those bound to `none` (the daemon, before it has
    /// asked the devices).
    Bound,
}

impl Rib {
    /// The RIB a config describes, with the ports `up` counts as up.
    pub fn from_config(cfg: &Config, up: PortsUp) -> Rib {
        Rib::from_config_with(cfg, &cfg.routes, up)
    }

    /// [`Rib::from_config`] with `custom` in place of the config's
    /// `[[route]]`s (the daemon's routes as changed at run time).
    pub fn from_config_with(cfg: &Config, custom: &[RouteConfig], up: PortsUp) -> Rib {
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
                up: up == PortsUp::All
                    || p.bind != Binding::None
                    || matches!(p.role, PortRole::Gateway { .. }),
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
        let mut rib = Rib {
            ports: PortTable::new(ports),
            routes: Vec::new(),
            heads: BTreeMap::new(),
            next: Vec::new(),
            selected: Vec::new(),
        };
        rib.extend_with(routes);
        rib
    }

    /// The ports.
    pub fn ports(&self) -> &PortTable {
        &self.ports
    }

    /// All routes.
    pub fn routes(&self) -> &[RibRoute] {
        &self.routes
    }

    /// Adds routes of `kind` without selecting among them (bulk loads;
    /// [`Rib::compile`] or [`Rib::build_fib`] next).
    pub fn extend(&mut self, routes: impl IntoIterator<Item = Route>, kind: RouteKind) {
        self.extend_with(routes.into_iter().map(|route| RibRoute { route, kind }));
    }

    fn extend_with(&mut self, routes: impl IntoIterator<Item = RibRoute>) {
        let routes = routes.into_iter();
        self.routes.reserve(routes.size_hint().0);
        for r in routes {
            self.push(r);
        }
    }

    /// Appends a route to the list and to its prefix's chain.
    fn push(&mut self, r: RibRoute) -> u32 {
        let i = self.routes.len() as u32;
        let head = self.heads.entry(r.route.prefix).or_insert(NONE);
        self.next.push(*head);
        *head = i;
        self.routes.push(r);
        self.selected.push(false);
        i
    }

    /// The indices of `prefix`'s routes.
    fn chain(&self, prefix: &IpNet) -> impl Iterator<Item = u32> + '_ {
        let mut at = self.heads.get(prefix).copied().unwrap_or(NONE);
        std::iter::from_fn(move || {
            let i = at;
            (i != NONE).then(|| {
                at = self.next[i as usize];
                i
            })
        })
    }

    /// The link in `prefix`'s chain that holds `i` (the head or a `next`).
    fn link_to(&mut self, prefix: &IpNet, i: u32) -> Option<&mut u32> {
        let head = *self.heads.get(prefix)?;
        if head == i {
            return self.heads.get_mut(prefix);
        }
        let mut at = head;
        while self.next[at as usize] != i {
            at = self.next[at as usize];
            if at == NONE {
                return None;
            }
        }
        Some(&mut self.next[at as usize])
    }

    /// Takes route `i` out; the last route moves into its place.
    fn swap_remove(&mut self, i: u32) -> RibRoute {
        let prefix = self.routes[i as usize].route.prefix;
        let after = self.next[i as usize];
        if let Some(link) = self.link_to(&prefix, i) {
            *link = after;
        }
        if self.heads.get(&prefix) == Some(&NONE) {
            self.heads.remove(&prefix);
        }
        let last = (self.routes.len() - 1) as u32;
        if i != last {
            let moved = self.routes[last as usize].route.prefix;
            if let Some(link) = self.link_to(&moved, last) {
                *link = i;
            }
        }
        self.next.swap_remove(i as usize);
        self.selected.swap_remove(i as usize);
        self.routes.swap_remove(i as usize)
    }

    /// Compiles the FIB writer for the whole RIB and records which routes
    /// it selected.
    pub fn compile(&mut self) -> FibWriter {
        let routes = self.fib_routes();
        let (writer, selection) = FibWriter::build(&routes, |p| self.is_up(p));
        self.selected = selection.selected;
        writer
    }

    /// The routes as the FIB's selection takes them.
    fn fib_routes(&self) -> Vec<Route> {
        self.routes.iter().map(|r| r.route.clone()).collect()
    }

    fn is_up(&self, port: PortId) -> bool {
        self.ports.get(port).is_some_and(|p| p.up)
    }

    /// Selects again among `prefix`'s routes and tells `fib`.
    fn reselect(&mut self, prefix: IpNet, fib: &mut FibWriter) {
        // Each route's metric if its port is up.
        let chain: Vec<(u32, Option<u32>)> = self
            .chain(&prefix)
            .map(|i| {
                let r = &self.routes[i as usize].route;
                (i, self.is_up(r.port).then_some(r.metric))
            })
            .collect();
        let best = chain.iter().filter_map(|c| c.1).min();
        let mut members: Vec<Adjacency> = Vec::new();
        for &(i, metric) in &chain {
            let chosen = metric.is_some() && metric == best;
            if chosen {
                let r = &self.routes[i as usize].route;
                members.push(Adjacency {
                    port: r.port,
                    next_hop: r.next_hop,
                });
            }
            self.selected[i as usize] = chosen;
        }
        fib.set(prefix, &members);
    }

    /// The route a custom route's config describes.
    pub fn route_for(&self, r: &RouteConfig) -> Route {
        Route {
            prefix: r.destination,
            port: self.ports.by_name(&r.interface).unwrap_or(PortId::MAX),
            next_hop: r.next_hop,
            metric: r.metric,
        }
    }

    /// Adds one route and updates `fib` (after [`Rib::compile`]).
    pub fn add(&mut self, route: Route, kind: RouteKind, fib: &mut FibWriter) {
        let prefix = route.prefix;
        self.push(RibRoute { route, kind });
        self.reselect(prefix, fib);
    }

    /// The static routes to `prefix` through `port`.
    pub fn statics(&self, port: PortId, prefix: &IpNet) -> impl Iterator<Item = &Route> + '_ {
        self.chain(prefix)
            .map(|i| &self.routes[i as usize])
            .filter(move |r| r.kind == RouteKind::Static && r.route.port == port)
            .map(|r| &r.route)
    }

    /// Removes the static routes to `prefix` through `port` (only the one
    /// via `next_hop` when given) and updates `fib`; how many went.
    pub fn remove_static(
        &mut self,
        port: PortId,
        prefix: &IpNet,
        next_hop: Option<IpAddr>,
        fib: &mut FibWriter,
    ) -> usize {
        let gone: Vec<u32> = self
            .chain(prefix)
            .filter(|&i| {
                let r = &self.routes[i as usize];
                r.kind == RouteKind::Static
                    && r.route.port == port
                    && next_hop.is_none_or(|n| r.route.next_hop == Some(n))
            })
            .collect();
        // Highest first, so no index still to remove is the one moved.
        let mut sorted = gone.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        for i in sorted {
            self.swap_remove(i);
        }
        self.reselect(*prefix, fib);
        gone.len()
    }

    /// Replaces the kernel routes to `prefix` at `metric` through `ports`
    /// with `hops` (none: removes them), selecting again (`fib`: now) or
    /// not (`None`: a bulk change, [`Rib::compile`] next).
    pub fn set_kernel(
        &mut self,
        ports: &[PortId],
        (prefix, metric): (IpNet, u32),
        hops: &[(PortId, Option<IpAddr>)],
        fib: Option<&mut FibWriter>,
    ) {
        let mut gone: Vec<u32> = self
            .chain(&prefix)
            .filter(|&i| {
                let r = &self.routes[i as usize];
                r.kind == RouteKind::Kernel
                    && r.route.metric == metric
                    && ports.contains(&r.route.port)
            })
            .collect();
        // Highest first, so no index still to remove is the one moved.
        gone.sort_unstable_by(|a, b| b.cmp(a));
        for i in gone {
            self.swap_remove(i);
        }
        for &(port, next_hop) in hops {
            self.push(RibRoute {
                route: Route {
                    prefix,
                    port,
                    next_hop,
                    metric,
                },
                kind: RouteKind::Kernel,
            });
        }
        if let Some(fib) = fib {
            self.reselect(prefix, fib);
        }
    }

    /// The kernel routes (to carry them into a RIB built anew).
    pub fn kernel_routes(&self) -> impl Iterator<Item = &Route> + '_ {
        self.routes
            .iter()
            .filter(|r| r.kind == RouteKind::Kernel)
            .map(|r| &r.route)
    }

    /// Marks a port's link up or down and selects again the prefixes with
    /// a route through it (recompiling `fib` when they are many).
    pub fn set_link_live(&mut self, port: PortId, up: bool, fib: &mut FibWriter) {
        self.set_link(port, up);
        let mut touched: Vec<IpNet> = self
            .routes
            .iter()
            .filter(|r| r.route.port == port)
            .map(|r| r.route.prefix)
            .collect();
        touched.sort_unstable();
        touched.dedup();
        if touched.len() > RELINK_MAX {
            *fib = self.compile();
            return;
        }
        for p in touched {
            self.reselect(p, fib);
        }
    }

    /// Whether the FIB uses each route (see [`Rib::compile`]).
    pub fn selected(&self) -> &[bool] {
        &self.selected
    }

    /// The static routes, as the config would list them.
    pub fn custom_routes(&self) -> Vec<RouteConfig> {
        self.routes
            .iter()
            .filter(|r| r.kind == RouteKind::Static)
            .map(|r| RouteConfig {
                interface: self.port_name(r.route.port).to_owned(),
                destination: r.route.prefix,
                next_hop: r.route.next_hop,
                metric: r.route.metric,
            })
            .collect()
    }

    /// How many static routes there are.
    pub fn custom_count(&self) -> usize {
        self.routes
            .iter()
            .filter(|r| r.kind == RouteKind::Static)
            .count()
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
        router.set_mirrors(&cfg.mirrors());
        if !cfg.services.is_empty() {
            router.set_services(
                cfg.services.clone(),
                cfg.internal_interfaces(),
                cfg.services_policy.flows,
            );
        }
        for n in &cfg.neighbors {
            if let Some(port) = self.ports.by_name(&n.interface) {
                router.add_static_neighbor(port, n.address, n.mac);
            }
        }
        router
    }

    /// One router per worker ([`Rib::router`]), each worker `i` of
    /// `workers`, their NAT tables sharing one set of port claims per
    /// instance.
    pub fn routers(
        &self,
        cfg: &Config,
        fib: Arc<Fib>,
        rcfg: &RouterConfig,
        workers: usize,
    ) -> Vec<Router> {
        let nat = cfg.nat_configs();
        let claims: Vec<_> = nat
            .iter()
            .map(|c| Arc::new(PortClaims::new(c.policy.port_secret)))
            .collect();
        (0..workers.max(1))
            .map(|i| {
                let mut r = self.router(cfg, Arc::clone(&fib), rcfg);
                r.set_worker_nat(nat.clone(), &claims, i, workers);
                r
            })
            .collect()
    }

    /// Compiles the FIB from the routes whose port is up.
    pub fn build_fib(&self) -> (Fib, Selection) {
        let routes = self.fib_routes();
        Fib::build(&routes, |p| self.is_up(p))
    }

    /// Every route `keep` accepts, with whether the FIB selected it,
    /// ordered by destination then metric.
    pub fn show(&self, selected: &[bool], keep: impl Fn(&RibRoute) -> bool) -> Vec<RouteView> {
        self.show_page(selected, keep, None, usize::MAX, usize::MAX)
            .0
    }

    /// A page of [`Rib::show`]: the routes of the prefixes after `after`
    /// (from the first when `None`), until at least `max_routes` are listed
    /// or `max_prefixes` were looked at; and, when more follow, the last
    /// prefix looked at (the next page's `after`). A prefix's routes are
    /// never split between pages.
    pub fn show_page(
        &self,
        selected: &[bool],
        keep: impl Fn(&RibRoute) -> bool,
        after: Option<IpNet>,
        max_routes: usize,
        max_prefixes: usize,
    ) -> (Vec<RouteView>, Option<IpNet>) {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut page: Vec<RouteView> = Vec::new();
        let mut last = None;
        for (looked, (prefix, _)) in self.heads.range((from, Bound::Unbounded)).enumerate() {
            if page.len() >= max_routes || looked >= max_prefixes {
                return (page, last);
            }
            let start = page.len();
            page.extend(
                self.chain(prefix)
                    .map(|i| (&self.routes[i as usize], selected.get(i as usize)))
                    .filter(|(r, _)| keep(r))
                    .map(|(r, s)| RouteView {
                        interface: self.port_name(r.route.port).to_owned(),
                        destination: r.route.prefix,
                        next_hop: r.route.next_hop,
                        metric: r.route.metric,
                        kind: r.kind,
                        selected: s.copied().unwrap_or(false),
                    }),
            );
            page[start..].sort_by_key(|v| v.metric);
            last = Some(*prefix);
        }
        (page, None)
    }

    /// The routes the FIB selects for `addr`: the longest selected prefix
    /// containing it and its lowest-metric routes (several under ECMP).
    pub fn lookup(&self, fib: &Fib, selected: &[bool], addr: IpAddr) -> Vec<LookupRoute> {
        if fib.lookup(addr).is_none() {
            return Vec::new();
        }
        // The longest prefix holding addr with a selected route: one probe
        // of the prefix index per length, longest first.
        let longest = if addr.is_ipv4() { 32 } else { 128 };
        let mut best: Vec<&Route> = Vec::new();
        for len in (0..=longest).rev() {
            let Ok(prefix) = IpNet::new(addr, len) else {
                continue;
            };
            best.extend(
                self.chain(&prefix.trunc())
                    .filter(|&i| selected.get(i as usize).copied().unwrap_or(false))
                    .map(|i| &self.routes[i as usize].route),
            );
            if !best.is_empty() {
                break;
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

    fn lookup(up: PortsUp, a: &str) -> Vec<LookupRoute> {
        let rib = Rib::from_config(&Config::parse(CFG).unwrap(), up);
        let (fib, sel) = rib.build_fib();
        rib.lookup(&fib, &sel.selected, a.parse().unwrap())
    }

    #[test]
    fn kind_names_match_their_json() {
        for k in [RouteKind::Static, RouteKind::Connected, RouteKind::Default] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.name());
        }
    }

    #[test]
    fn connected_default_and_static_routes() {
        let r = lookup(PortsUp::All, "10.0.2.99");
        assert_eq!(
            (r[0].interface.as_str(), r[0].next_hop, r[0].metric),
            ("Port2", None, 0)
        );
        let r = lookup(PortsUp::All, "8.8.8.8");
        assert_eq!(r[0].destination.to_string(), "0.0.0.0/0");
        assert_eq!(r[0].next_hop, Some("10.0.2.1".parse().unwrap()));
    }

    #[test]
    fn lower_metric_wins_unless_its_port_is_down() {
        let r = lookup(PortsUp::All, "192.168.21.7");
        assert_eq!(
            (r.len(), r[0].interface.as_str(), r[0].metric),
            (1, "Port4", 100)
        );
        let r = lookup(PortsUp::Bound, "192.168.21.7");
        assert_eq!(
            (r.len(), r[0].interface.as_str(), r[0].metric),
            (1, "Port3", 200)
        );
    }

    /// Random adds, removals and link flaps applied one at a time agree
    /// with a RIB built from scratch: the same routes selected (route for
    /// route, by identity) and the same FIB answers.
    #[test]
    fn changes_one_at_a_time_agree_with_a_fresh_build() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let cfg = Config::parse(CFG).unwrap();
        let mut rng = StdRng::seed_from_u64(11);
        let mut rib = Rib::from_config(&cfg, PortsUp::All);
        let mut fib = rib.compile();
        let key = |r: &RibRoute| {
            (
                r.route.prefix,
                r.route.port,
                r.route.next_hop,
                r.kind.name(),
            )
        };
        for step in 0..400 {
            match rng.gen_range(0..10) {
                0 => {
                    let port = rng.gen_range(0..3);
                    let up = rng.gen_bool(0.5);
                    rib.set_link_live(port, up, &mut fib);
                }
                1..=3 if rib.custom_count() > 0 => {
                    let statics: Vec<Route> = rib
                        .routes()
                        .iter()
                        .filter(|r| r.kind == RouteKind::Static)
                        .map(|r| r.route.clone())
                        .collect();
                    let r = &statics[rng.gen_range(0..statics.len())];
                    let nh = if rng.gen_bool(0.5) { r.next_hop } else { None };
                    assert!(rib.remove_static(r.port, &r.prefix, nh, &mut fib) > 0);
                }
                _ => {
                    let port = rng.gen_range(0..3);
                    let prefix = IpNet::V4(
                        Ipv4Net::new(
                            [192, 168, rng.gen_range(20..24), rng.gen::<u8>() & 0xc0].into(),
                            rng.gen_range(22..=26),
                        )
                        .unwrap()
                        .trunc(),
                    );
                    let next_hop = Some(IpAddr::from([
                        192,
                        168,
                        20 + port as u8,
                        rng.gen_range(1..4),
                    ]));
                    if rib.statics(port, &prefix).any(|r| r.next_hop == next_hop) {
                        continue;
                    }
                    let route = Route {
                        prefix,
                        port,
                        next_hop,
                        metric: rng.gen_range(1..4) * 100,
                    };
                    rib.add(route, RouteKind::Static, &mut fib);
                }
            }
            let live = fib.publish();
            let (fresh, sel) = rib.build_fib();
            let mut got: Vec<_> = rib
                .routes()
                .iter()
                .map(key)
                .zip(rib.selected().iter().copied())
                .collect();
            let mut want: Vec<_> = rib.routes().iter().map(key).zip(sel.selected).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "step {step}");
            for _ in 0..50 {
                let a = IpAddr::from([192, 168, rng.gen_range(19..25), rng.gen()]);
                let g = |f: &Fib| f.lookup(a).map(|(_, g)| g.members.clone());
                assert_eq!(g(&live), g(&fresh), "step {step}, {a}");
            }
        }
    }

    /// Pages, followed one after the other, list exactly what one `show`
    /// does, in order, and each stops at its limits.
    #[test]
    fn pages_add_up_to_the_whole_listing() {
        let mut rib = Rib::from_config(&Config::parse(CFG).unwrap(), PortsUp::All);
        let gw = Some(IpAddr::from([192, 168, 20, 1]));
        let routes: Vec<Route> = (0..500u32)
            .flat_map(|i| {
                let prefix = IpNet::V4(Ipv4Net::new((0x0a00_0000 | (i << 8)).into(), 24).unwrap());
                // Two routes for every third prefix, one on Port4.
                let both = if i % 3 == 0 { 2 } else { 1 };
                (0..both).map(move |k| Route {
                    prefix,
                    port: 1 + k,
                    next_hop: if k == 0 {
                        gw
                    } else {
                        Some(IpAddr::from([192, 168, 30, 1]))
                    },
                    metric: 300 - 100 * u32::from(k),
                })
            })
            .collect();
        rib.extend(routes, RouteKind::Static);
        let _fib = rib.compile();
        for (port, max_routes, max_prefixes) in [(None, 7, 1000), (Some(2), 10, 40), (None, 1, 1)] {
            let keep = |r: &RibRoute| port.is_none_or(|p| r.route.port == p);
            let whole = rib.show(rib.selected(), keep);
            let mut paged = Vec::new();
            let mut after = None;
            let mut pages = 0;
            loop {
                let (page, next) =
                    rib.show_page(rib.selected(), keep, after, max_routes, max_prefixes);
                assert!(
                    page.len() <= max_routes + 1,
                    "a page holds one prefix over at most"
                );
                paged.extend(page);
                pages += 1;
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            assert_eq!(paged, whole, "{port:?}");
            assert!(pages > 1, "{port:?}: more than one page");
        }
        let whole = rib.show(rib.selected(), |_| true);
        let order: Vec<_> = whole.iter().map(|v| (v.destination, v.metric)).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "by destination, then metric");
    }
}
