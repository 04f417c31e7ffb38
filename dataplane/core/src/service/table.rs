//! A router's services: their configuration, each one's Maglev table over
//! its active backends, and the connection table of their flows.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::flows::{narrow, FlowKey, FlowTable, Timeouts};
use super::maglev::{size_for, Maglev};
use crate::nat::Proto;
use crate::packet::solicited_node;
use crate::port::PortId;

/// Reached from where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// Only from internal switches (and the appliance).
    ClusterIp,
    /// From anywhere; its address is announced (ARP) on a port.
    LoadBalancer,
}

/// A backend's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendState {
    /// Takes new flows.
    Active,
    /// Takes no new flows; its flows carry on until they end.
    Draining,
    /// Takes nothing: a UDP flow moves to a live backend with its next
    /// packet, a new TCP connection is given another, a TCP connection
    /// in the middle is dropped.
    Removed,
}

/// One backend (a pod).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Its address, reached through the FIB: a flow to a service's IPv4
    /// address goes to an IPv4 backend, one to its IPv6 address to an
    /// IPv6 one.
    pub addr: IpAddr,
    /// Its weight (1–255).
    pub weight: u32,
    /// Its lifecycle.
    pub state: BackendState,
}

/// One port of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// TCP or UDP.
    pub proto: Proto,
    /// The port clients use.
    pub port: u16,
    /// The port the backends listen on.
    pub target: u16,
}

/// A service as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Its name.
    pub name: String,
    /// Cluster IP or load balancer.
    pub kind: ServiceKind,
    /// Its addresses: one, or one of each family (dual stack).
    pub vips: Vec<IpAddr>,
    /// The port whose ARP requests and neighbour solicitations for the
    /// addresses are answered (load balancers).
    pub announce: Option<PortId>,
    /// Its ports.
    pub ports: Vec<ServicePort>,
    /// Its backends.
    pub backends: Vec<Backend>,
    /// Client-IP affinity: a client's new flows go to the backend its
    /// last one took, for this many seconds after that one (`None`: each
    /// flow by its own hash).
    pub affinity: Option<u32>,
}

/// What one service saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    /// New flows given a backend.
    pub new_flows: u64,
    /// Packets to the service and its replies.
    pub packets: u64,
    /// Their bytes (IP).
    pub bytes: u64,
    /// Drops by reason: no port, no backend, from outside (cluster IP),
    /// backend gone (TCP mid-flow), in that order.
    pub drops: [u64; 4],
    /// By backend: new flows, packets, bytes.
    pub backends: Vec<(IpAddr, [u64; 3])>,
}

impl ServiceCounters {
    /// Drop reasons' names, in [`ServiceCounters::drops`] order.
    pub const DROPS: [&'static str; 4] = [
        "service_no_port",
        "service_no_backend",
        "service_outside_cluster",
        "service_backend_gone",
    ];

    /// Adds another worker's.
    pub fn add(&mut self, o: &ServiceCounters) {
        self.new_flows += o.new_flows;
        self.packets += o.packets;
        self.bytes += o.bytes;
        for (a, b) in self.drops.iter_mut().zip(o.drops) {
            *a += b;
        }
        for (addr, c) in &o.backends {
            match self.backends.iter_mut().find(|(a, _)| a == addr) {
                Some((_, mine)) => {
                    for (a, b) in mine.iter_mut().zip(c) {
                        *a += b;
                    }
                }
                None => self.backends.push((*addr, *c)),
            }
        }
    }

    pub(crate) fn backend(&mut self, addr: IpAddr) -> &mut [u64; 3] {
        let i = match self.backends.iter().position(|(a, _)| *a == addr) {
            Some(i) => i,
            None => {
                self.backends.push((addr, [0; 3]));
                self.backends.len() - 1
            }
        };
        &mut self.backends[i].1
    }
}

/// A Maglev table over one family's active backends.
struct Balancer {
    maglev: Maglev,
    /// The active backends' addresses, by Maglev index.
    active: Vec<IpAddr>,
}

impl Balancer {
    fn new(backends: &[Backend], v4: bool) -> Balancer {
        let live: Vec<&Backend> = backends
            .iter()
            .filter(|b| b.state == BackendState::Active && b.addr.is_ipv4() == v4)
            .collect();
        let keys: Vec<Vec<u8>> = live
            .iter()
            .map(|b| match b.addr {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            })
            .collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let weights: Vec<u32> = live.iter().map(|b| b.weight).collect();
        Balancer {
            maglev: Maglev::build(&refs, &weights, size_for(refs.len())),
            active: live.iter().map(|b| b.addr).collect(),
        }
    }
}

/// A service with its tables.
struct Service {
    cfg: ServiceConfig,
    /// IPv4's and IPv6's.
    balancers: [Balancer; 2],
    counters: ServiceCounters,
}

impl Service {
    fn new(cfg: ServiceConfig) -> Service {
        Service {
            balancers: [
                Balancer::new(&cfg.backends, true),
                Balancer::new(&cfg.backends, false),
            ],
            counters: ServiceCounters::default(),
            cfg,
        }
    }

    fn state_of(&self, addr: IpAddr) -> BackendState {
        self.cfg
            .backends
            .iter()
            .find(|b| b.addr == addr)
            .map_or(BackendState::Removed, |b| b.state)
    }
}

/// A router's services and their flows.
pub struct Services {
    list: Vec<Service>,
    by_vip: HashMap<IpAddr, usize>,
    backends: HashSet<IpAddr>,
    /// The solicited-node groups of IPv6 load balancers' addresses, by
    /// the port that announces them.
    groups: HashSet<(PortId, Ipv6Addr)>,
    /// A bit per hash of every IPv4 service and backend address: most
    /// packets learn from one bit that services are not theirs.
    filter: Vec<u64>,
    /// The (IP protocol, target port) pairs of every service's ports: a
    /// backend's packet from one of them may answer a service.
    targets: HashSet<(u8, u16)>,
    /// By port: the interfaces cluster IPs answer (internal switches').
    internal: Vec<bool>,
    /// Flows both ways: client to service, and (protocol marked) backend
    /// to client for the replies.
    pub(crate) flows: FlowTable,
}

/// Bits of [`Services::concerns`]' filter.
const FILTER_BITS: usize = 1 << 16;

/// An address's bit in the filter (a multiplicative hash).
#[inline]
fn filter_bit(a: Ipv4Addr) -> usize {
    (u32::from(a).wrapping_mul(0x9e37_79b9) >> 16) as usize
}

/// Ways of the connection table one page of `service flows` looks at.
pub const FLOWS_PAGE_WAYS: usize = 1 << 16;

/// One flow of a service, as `service flows` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowView {
    /// IP protocol.
    pub proto: u8,
    /// The client's address and port.
    pub client: (IpAddr, u16),
    /// The service port it came to.
    pub port: u16,
    /// Its backend.
    pub backend: IpAddr,
    /// Seconds it has left.
    pub expires_in: u32,
}

/// Marks a reply's key in the flow table, so that the two directions of
/// flows never meet.
const REPLY: u8 = 0x80;
/// Marks a hairpinned reply's key (to the gateway address it was sourced
/// from).
const HAIRPIN: u8 = 0x40;
/// Marks a client's affinity entry.
const AFFINITY: u8 = 0x20;

impl Services {
    /// No services, with room for `flows` flows once there are some.
    pub fn new(flows: usize) -> Services {
        Services {
            list: Vec::new(),
            by_vip: HashMap::new(),
            backends: HashSet::new(),
            groups: HashSet::new(),
            filter: vec![0; FILTER_BITS / 64],
            targets: HashSet::new(),
            internal: Vec::new(),
            // The table is allocated when the first service comes.
            flows: FlowTable::with_capacity(flows.min(1), Timeouts::default()),
        }
    }

    /// True when there is no service (the stages then cost one branch).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Puts `services` in force: the flows already in the table keep
    /// their backends where those are still active or draining.
    /// `internal` marks, by port, the interfaces cluster IPs answer; the
    /// table has room for `flows` flows, each an entry for either
    /// direction (allocated with the first service).
    pub fn set(&mut self, services: Vec<ServiceConfig>, internal: Vec<bool>, flows: usize) {
        if !services.is_empty() && self.flows.capacity() < 2 * flows {
            self.flows = FlowTable::with_capacity(2 * flows, Timeouts::default());
        }
        // A service whose configuration did not change keeps its table (a
        // change to one of ten thousand rebuilds one); counters carry over
        // by name.
        let mut old: HashMap<String, Service> = self
            .list
            .drain(..)
            .map(|s| (s.cfg.name.clone(), s))
            .collect();
        self.list = services
            .into_iter()
            .map(|c| match old.remove(&c.name) {
                Some(s) if s.cfg == c => s,
                Some(s) => Service {
                    counters: s.counters,
                    ..Service::new(c)
                },
                None => Service::new(c),
            })
            .collect();
        self.by_vip = self
            .list
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.cfg.vips.iter().map(move |&v| (v, i)))
            .collect();
        self.backends = self
            .list
            .iter()
            .flat_map(|s| s.cfg.backends.iter().map(|b| b.addr))
            .collect();
        self.filter.fill(0);
        let addrs: Vec<Ipv4Addr> = (self.by_vip.keys().chain(&self.backends))
            .filter_map(|a| match a {
                IpAddr::V4(v) => Some(*v),
                IpAddr::V6(_) => None,
            })
            .collect();
        for a in addrs {
            let b = filter_bit(a);
            self.filter[b / 64] |= 1 << (b % 64);
        }
        self.targets = self
            .list
            .iter()
            .flat_map(|s| s.cfg.ports.iter().map(|p| (p.proto.ip_number(), p.target)))
            .collect();
        self.groups = self
            .announced()
            .filter_map(|(_, vip, port)| match vip {
                IpAddr::V6(v) => Some((port, solicited_node(v))),
                IpAddr::V4(_) => None,
            })
            .collect();
        self.internal = internal;
    }

    /// True when services may have to see a packet from `src` to `dst`
    /// (to a service's address, or from a backend); false for the rest,
    /// which ip4-fast may take.
    #[inline]
    pub fn concerns(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let maybe = |a: Ipv4Addr| {
            let b = filter_bit(a);
            self.filter[b / 64] & (1 << (b % 64)) != 0
        };
        (maybe(dst) && self.at(dst.into()).is_some()) || (maybe(src) && self.is_backend(src.into()))
    }

    /// The service at `vip`.
    #[inline]
    pub fn at(&self, vip: IpAddr) -> Option<usize> {
        self.by_vip.get(&vip).copied()
    }

    /// True when `addr` is some service's backend.
    #[inline]
    pub fn is_backend(&self, addr: IpAddr) -> bool {
        self.backends.contains(&addr)
    }

    /// True when a backend's packet from `port` (`proto` its IP protocol
    /// number) may answer a service: some service targets that port.
    pub fn targets(&self, proto: u8, port: u16) -> bool {
        self.targets.contains(&(proto, port))
    }

    /// True when ARP requests or neighbour solicitations for `addr` on
    /// `port` are to be answered.
    pub fn announces(&self, port: PortId, addr: IpAddr) -> bool {
        self.at(addr).is_some_and(|i| {
            let s = &self.list[i].cfg;
            s.kind == ServiceKind::LoadBalancer && s.announce == Some(port)
        })
    }

    /// True when `group` is the solicited-node group of a load balancer's
    /// IPv6 address announced on `port`.
    pub fn announces_group(&self, port: PortId, group: Ipv6Addr) -> bool {
        !self.groups.is_empty() && self.groups.contains(&(port, group))
    }

    /// Each load balancer's name, addresses and announcing port.
    pub fn announced(&self) -> impl Iterator<Item = (&str, IpAddr, PortId)> + '_ {
        self.list.iter().flat_map(|s| {
            let c = &s.cfg;
            let port = match c.kind {
                ServiceKind::LoadBalancer => c.announce,
                ServiceKind::ClusterIp => None,
            };
            port.into_iter()
                .flat_map(move |p| c.vips.iter().map(move |&v| (c.name.as_str(), v, p)))
        })
    }

    /// Live flows evicted from the full connection table so far.
    pub fn evicted(&self) -> u64 {
        self.flows.evicted()
    }

    /// Service `i`'s configuration.
    pub fn config(&self, i: usize) -> &ServiceConfig {
        &self.list[i].cfg
    }

    /// Service `i`'s address of the family `v4` says.
    pub fn vip_of(&self, i: usize, v4: bool) -> Option<IpAddr> {
        self.list[i]
            .cfg
            .vips
            .iter()
            .copied()
            .find(|v| v.is_ipv4() == v4)
    }

    /// True when a cluster IP answers a packet that came in on `iface`.
    pub fn is_internal(&self, iface: PortId) -> bool {
        self.internal.get(usize::from(iface)) == Some(&true)
    }

    /// A slice of service `name`'s flows (client to service: protocol,
    /// client, service port, backend, seconds left), from way `cursor` of
    /// the table; and where the next slice starts.
    pub fn flows_page(
        &self,
        name: &str,
        cursor: usize,
        now: u32,
    ) -> (Vec<FlowView>, Option<usize>) {
        let Some(i) = self.list.iter().position(|s| s.cfg.name == name) else {
            return (Vec::new(), None);
        };
        let mut out = Vec::new();
        let next = self.flows.scan(cursor, FLOWS_PAGE_WAYS, now, |k, f| {
            if k.proto & (REPLY | AFFINITY) == 0 && f.service as usize == i {
                out.push(FlowView {
                    proto: k.proto,
                    client: (narrow(k.client), k.client_port),
                    port: k.vip_port,
                    backend: f.address(),
                    expires_in: FlowTable::expires_in(f, now),
                });
            }
        });
        (out, next)
    }

    /// Each service's name and counters.
    pub fn counters(&self) -> impl Iterator<Item = (&str, &ServiceCounters)> {
        self.list.iter().map(|s| (s.cfg.name.as_str(), &s.counters))
    }

    /// Service `i`'s counters.
    pub(crate) fn counters_mut(&mut self, i: usize) -> &mut ServiceCounters {
        &mut self.list[i].counters
    }

    /// A new flow's backend in service `i` (its hash of the 5-tuple), of
    /// the family `v4` says.
    pub(crate) fn pick(&self, i: usize, v4: bool, hash: u64) -> Option<IpAddr> {
        let b = &self.list[i].balancers[usize::from(!v4)];
        b.maglev.pick(hash).map(|k| b.active[k as usize])
    }

    /// The state of backend `addr` in service `i`.
    pub(crate) fn state_of(&self, i: usize, addr: IpAddr) -> BackendState {
        self.list[i].state_of(addr)
    }
}

/// The key of a reply from `backend` to the gateway address `gw` that a
/// hairpinned client was sourced from.
pub(crate) fn hairpin_key(proto: u8, backend: (IpAddr, u16), gw: (IpAddr, u16)) -> FlowKey {
    FlowKey::new(proto | REPLY | HAIRPIN, backend, gw)
}

/// The key of `client`'s affinity to a backend of the service at `vip`.
pub(crate) fn affinity_key(client: IpAddr, vip: IpAddr) -> FlowKey {
    FlowKey::new(AFFINITY, (client, 0), (vip, 0))
}

/// The key of a reply from `backend` to `client`.
pub(crate) fn reply_key(proto: u8, backend: (IpAddr, u16), client: (IpAddr, u16)) -> FlowKey {
    FlowKey::new(proto | REPLY, backend, client)
}
