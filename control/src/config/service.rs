//! `[[service]]` and `[services]`: Kubernetes services, checked. Every
//! refusal names the field (`service[0].backends[2]`) and its line.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use edgefwd_core::nat::Proto;
use edgefwd_core::service::{Backend, BackendState, ServiceConfig, ServiceKind, ServicePort};
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::raw::Lines;
use super::{ConfigError, PortConfig, PortRole};

/// How long a client's affinity lasts after its last new flow, by default
/// (Kubernetes' `sessionAffinityConfig` default: three hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// Flows each router's connection table holds by default.
pub const DEFAULT_FLOWS: usize = 1 << 20;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServices {
    #[serde(default)]
    load_balancer_pool: Vec<Spanned<String>>,
    flows: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    name: Spanned<String>,
    kind: Spanned<String>,
    address: Option<Spanned<String>>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    announce: Option<Spanned<String>>,
    #[serde(default)]
    ports: Vec<RawServicePort>,
    #[serde(default)]
    backends: Vec<Spanned<String>>,
    affinity: Option<Spanned<String>>,
    affinity_timeout: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServicePort {
    protocol: Spanned<String>,
    port: Spanned<i64>,
    target_port: Option<Spanned<i64>>,
}

/// `[services]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicesPolicy {
    /// The operator's external service address ranges, first to last.
    pub pool: Vec<(IpAddr, IpAddr)>,
    /// Flows each router's connection table holds.
    pub flows: usize,
    /// True when the config has services or a `[services]` table: every
    /// port is then read by one worker, which owns the services' flows.
    pub declared: bool,
}

impl Default for ServicesPolicy {
    fn default() -> Self {
        ServicesPolicy {
            pool: Vec::new(),
            flows: DEFAULT_FLOWS,
            declared: false,
        }
    }
}

fn name_ok(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// A pool entry: `A-B` or a prefix.
fn range(s: &str) -> Result<(IpAddr, IpAddr), String> {
    if let Some((a, b)) = s.split_once('-') {
        let (a, b): (IpAddr, IpAddr) = (
            a.trim()
                .parse()
                .map_err(|_| format!("{a:?} is not an address"))?,
            b.trim()
                .parse()
                .map_err(|_| format!("{b:?} is not an address"))?,
        );
        if a.is_ipv4() != b.is_ipv4() || a > b {
            return Err(format!("{s:?} is not a range from low to high"));
        }
        return Ok((a, b));
    }
    let net: IpNet = s
        .parse()
        .map_err(|_| format!("{s:?} is neither FIRST-LAST nor a prefix"))?;
    Ok((net.network(), net.broadcast()))
}

/// Checks `[services]` and every `[[service]]`; load balancers without an
/// address get the lowest free one of the pool, in config order.
pub(super) fn services(
    l: &Lines,
    raw: &RawServices,
    list: &[RawService],
    ports: &[PortConfig],
) -> Result<(ServicesPolicy, Vec<ServiceConfig>), ConfigError> {
    let mut pool = Vec::new();
    for (i, r) in raw.load_balancer_pool.iter().enumerate() {
        let field = format!("services.load_balancer_pool[{i}]");
        pool.push(range(r.get_ref()).map_err(|e| l.at(r, field, e))?);
    }
    let flows = match &raw.flows {
        Some(f) if !(1024..=1 << 24).contains(f.get_ref()) => {
            return Err(l.at(f, "services.flows", "must be between 1024 and 16777216"));
        }
        Some(f) => *f.get_ref(),
        None => DEFAULT_FLOWS,
    };
    let list = checked(l, list, ports, &pool)?;
    Ok((
        ServicesPolicy {
            pool,
            flows,
            declared: !list.is_empty(),
        },
        list,
    ))
}

/// Checks `[[service]]` entries `text` (TOML) as the config's would be,
/// with the config's `ports` and `pool`: what `service add` does.
pub fn check_text(
    text: &str,
    ports: &[PortConfig],
    pool: &[(IpAddr, IpAddr)],
) -> Result<Vec<ServiceConfig>, ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Only {
        #[serde(default)]
        service: Vec<RawService>,
    }
    let l = Lines { text, file: None };
    let raw: Only = toml::from_str(text).map_err(|e| {
        let field = e.span().map(|s| l.field_at(&s)).unwrap_or_default();
        l.err(e.span(), field, e.message().to_owned())
    })?;
    checked(&l, &raw.service, ports, pool)
}

fn checked(
    l: &Lines,
    list: &[RawService],
    ports: &[PortConfig],
    pool: &[(IpAddr, IpAddr)],
) -> Result<Vec<ServiceConfig>, ConfigError> {
    let ours: HashSet<IpAddr> = ports
        .iter()
        .flat_map(|p| p.addresses.iter().map(|a| a.addr()))
        .collect();
    let mut names = HashSet::new();
    let mut taken: HashSet<IpAddr> = HashSet::new();
    // Addresses given explicitly are taken before the pool hands any out.
    for (i, s) in list.iter().enumerate() {
        for (a, f) in given(s, i) {
            let addr = address(l, a, &f)?;
            if ours.contains(&addr) {
                return Err(l.at(a, f, format!("{addr} is an address of a port")));
            }
            if !taken.insert(addr) {
                return Err(l.at(a, f, format!("{addr} is another service's address")));
            }
        }
    }
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let f = |k: &str| format!("service[{i}].{k}");
        let name = s.name.get_ref();
        if !name_ok(name) {
            return Err(l.at(&s.name, f("name"), "must be 1-63 of a-z, 0-9, '-' and '.'"));
        }
        if !names.insert(name.clone()) {
            return Err(l.at(&s.name, f("name"), format!("{name:?} is used twice")));
        }
        let kind = match s.kind.get_ref().as_str() {
            "load-balancer" => ServiceKind::LoadBalancer,
            "cluster-ip" => ServiceKind::ClusterIp,
            other => {
                return Err(l.at(
                    &s.kind,
                    f("kind"),
                    format!("{other:?} is not load-balancer or cluster-ip"),
                ))
            }
        };
        let affinity = match s.affinity.as_ref().map(|a| (a, a.get_ref().as_str())) {
            None | Some((_, "none")) => None,
            Some((_, "client-ip")) => Some(match &s.affinity_timeout {
                Some(t) => u32::try_from(*t.get_ref())
                    .ok()
                    .filter(|t| (1..=86_400).contains(t))
                    .ok_or_else(|| {
                        l.at(
                            t,
                            f("affinity_timeout"),
                            "must be between 1 and 86400 seconds",
                        )
                    })?,
                None => DEFAULT_AFFINITY_TIMEOUT,
            }),
            Some((a, other)) => {
                return Err(l.at(
                    a,
                    f("affinity"),
                    format!("{other:?} is not none or client-ip"),
                ))
            }
        };
        if let (None, Some(t)) = (affinity, &s.affinity_timeout) {
            return Err(l.at(
                t,
                f("affinity_timeout"),
                "only with affinity = \"client-ip\"",
            ));
        }
        let mut backends: Vec<Backend> = Vec::new();
        for (j, b) in s.backends.iter().enumerate() {
            let fb = format!("service[{i}].backends[{j}]");
            let backend = backend(b.get_ref()).map_err(|e| l.at(b, fb.clone(), e))?;
            if backends.iter().any(|o| o.addr == backend.addr) {
                return Err(l.at(b, fb, format!("{} is listed twice", backend.addr)));
            }
            backends.push(backend);
        }
        if s.address.is_some() && !s.addresses.is_empty() {
            return Err(l.at(
                &s.addresses[0],
                f("addresses"),
                "give address or addresses, not both",
            ));
        }
        let mut vips: Vec<IpAddr> = Vec::new();
        for (a, field) in given(s, i) {
            let addr = address(l, a, &field)?;
            if vips.iter().any(|v| v.is_ipv4() == addr.is_ipv4()) {
                return Err(l.at(a, field, "at most one address of each family"));
            }
            vips.push(addr);
        }
        if vips.is_empty() {
            if kind == ServiceKind::ClusterIp {
                return Err(l.err(
                    Some(s.name.span()),
                    f("address"),
                    "a cluster-ip service needs an address",
                ));
            }
            // One of each family its backends have (IPv4 without any).
            let mut families: Vec<bool> = [true, false]
                .into_iter()
                .filter(|&v4| backends.iter().any(|b| b.addr.is_ipv4() == v4))
                .collect();
            if families.is_empty() {
                families.push(true);
            }
            for v4 in families {
                let Some(a) = free_address(pool, v4, &taken, &ours) else {
                    let family = family(v4);
                    return Err(l.err(
                        Some(s.name.span()),
                        "services.load_balancer_pool",
                        format!("no free {family} address left for service {name:?}"),
                    ));
                };
                taken.insert(a);
                vips.push(a);
            }
        }
        for (j, b) in backends.iter().enumerate() {
            if let Some(why) = family_refusal(&vips, b.addr, "the service") {
                let field = format!("service[{i}].backends[{j}]");
                return Err(l.at(&s.backends[j], field, why));
            }
        }
        let announce = match (&s.announce, kind) {
            (Some(a), ServiceKind::ClusterIp) => {
                return Err(l.at(a, f("announce"), "a cluster-ip service is not announced"))
            }
            (None, ServiceKind::ClusterIp) => None,
            (Some(a), ServiceKind::LoadBalancer) => {
                let Some(p) = ports
                    .iter()
                    .position(|p| &p.name == a.get_ref() && p.role == PortRole::Routed)
                else {
                    return Err(l.at(
                        a,
                        f("announce"),
                        format!("{:?} is not a routed port", a.get_ref()),
                    ));
                };
                Some(p as u16)
            }
            (None, ServiceKind::LoadBalancer) => {
                let holder = ports.iter().position(|p| {
                    p.role == PortRole::Routed
                        && p.addresses
                            .iter()
                            .any(|n| vips.iter().any(|v| n.contains(v)))
                });
                let Some(p) = holder else {
                    return Err(l.err(
                        Some(s.name.span()),
                        f("announce"),
                        format!(
                            "no port's subnet holds {}: name the port to announce it on",
                            vips[0]
                        ),
                    ));
                };
                Some(p as u16)
            }
        };
        if s.ports.is_empty() {
            return Err(l.err(
                Some(s.name.span()),
                f("ports"),
                "a service needs at least one port",
            ));
        }
        let mut sports = Vec::new();
        for (j, p) in s.ports.iter().enumerate() {
            let fp = |k: &str| format!("service[{i}].ports[{j}].{k}");
            let proto = match p.protocol.get_ref().as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                other => {
                    return Err(l.at(
                        &p.protocol,
                        fp("protocol"),
                        format!("{other:?} is not tcp or udp"),
                    ))
                }
            };
            let port = port_number(l, &p.port, &fp("port"))?;
            let target = match &p.target_port {
                Some(t) => port_number(l, t, &fp("target_port"))?,
                None => port,
            };
            if sports
                .iter()
                .any(|q: &ServicePort| q.proto == proto && q.port == port)
            {
                return Err(l.at(
                    &p.port,
                    fp("port"),
                    format!("{} {port} is used twice", p.protocol.get_ref()),
                ));
            }
            sports.push(ServicePort {
                proto,
                port,
                target,
            });
        }
        out.push(ServiceConfig {
            name: name.clone(),
            kind,
            vips,
            announce,
            ports: sports,
            backends,
            affinity,
        });
    }
    Ok(out)
}

/// `services` as `[[service]]` TOML entries (the form [`check_text`]
/// reads), each address written out, announced on the port named.
pub fn to_toml(services: &[ServiceConfig], ports: &[PortConfig]) -> String {
    let mut out = String::new();
    for s in services {
        out += &entry_toml(s, ports);
    }
    out
}

/// One `[[service]]` entry.
pub fn entry_toml(s: &ServiceConfig, ports: &[PortConfig]) -> String {
    let q = |v: &str| toml::Value::String(v.to_owned()).to_string();
    let mut out = format!(
        "[[service]]\nname = {}\nkind = {}\n",
        q(&s.name),
        q(match s.kind {
            ServiceKind::LoadBalancer => "load-balancer",
            ServiceKind::ClusterIp => "cluster-ip",
        }),
    );
    match s.vips.as_slice() {
        [one] => out += &format!("address = {}\n", q(&one.to_string())),
        many => {
            let all: Vec<String> = many.iter().map(|v| q(&v.to_string())).collect();
            out += &format!("addresses = [{}]\n", all.join(", "));
        }
    }
    if let Some(p) = s.announce.and_then(|p| ports.get(usize::from(p))) {
        out += &format!("announce = {}\n", q(&p.name));
    }
    let sports: Vec<String> = s
        .ports
        .iter()
        .map(|p| {
            format!(
                "{{ protocol = {}, port = {}, target_port = {} }}",
                q(p.proto.name()),
                p.port,
                p.target
            )
        })
        .collect();
    out += &format!("ports = [{}]\n", sports.join(", "));
    let backends: Vec<String> = s
        .backends
        .iter()
        .map(|b| q(&format!("{} weight={}", b.addr, b.weight)))
        .collect();
    out += &format!("backends = [{}]\n", backends.join(", "));
    if let Some(t) = s.affinity {
        out += &format!("affinity = \"client-ip\"\naffinity_timeout = {t}\n");
    }
    out.push('\n');
    out
}

/// An address family's name.
fn family(v4: bool) -> &'static str {
    if v4 {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Why `backend` cannot serve a service at `vips` (`whose` names it): it
/// is of a family the service has no address of. `None` when it can.
pub fn family_refusal(vips: &[IpAddr], backend: IpAddr, whose: &str) -> Option<String> {
    let v4 = backend.is_ipv4();
    let f = family(v4);
    (!vips.iter().any(|v| v.is_ipv4() == v4))
        .then(|| format!("{backend} is {f} and {whose} has no {f} address"))
}

/// The addresses `s` (entry `i`) gives, each with its field's name.
fn given(s: &RawService, i: usize) -> Vec<(&Spanned<String>, String)> {
    let one = s
        .address
        .iter()
        .map(|a| (a, format!("service[{i}].address")));
    let many =
        (s.addresses.iter().enumerate()).map(|(j, a)| (a, format!("service[{i}].addresses[{j}]")));
    one.chain(many).collect()
}

fn address(l: &Lines, a: &Spanned<String>, field: &str) -> Result<IpAddr, ConfigError> {
    a.get_ref()
        .parse::<IpAddr>()
        .map_err(|_| l.at(a, field, format!("{:?} is not an address", a.get_ref())))
}

/// The lowest address of the family `v4` says in `pool`, neither `taken`
/// nor `ours`.
fn free_address(
    pool: &[(IpAddr, IpAddr)],
    v4: bool,
    taken: &HashSet<IpAddr>,
    ours: &HashSet<IpAddr>,
) -> Option<IpAddr> {
    let free = |a: &IpAddr| !taken.contains(a) && !ours.contains(a);
    pool.iter().find_map(|&(lo, hi)| match (lo, hi) {
        (IpAddr::V4(lo), IpAddr::V4(hi)) if v4 => (u32::from(lo)..=u32::from(hi))
            .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
            .find(free),
        (IpAddr::V6(lo), IpAddr::V6(hi)) if !v4 => (u128::from(lo)..=u128::from(hi))
            .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
            .find(free),
        _ => None,
    })
}

fn port_number(l: &Lines, p: &Spanned<i64>, field: &str) -> Result<u16, ConfigError> {
    u16::try_from(*p.get_ref())
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| l.at(p, field, "must be between 1 and 65535"))
}

/// `ADDR` or `ADDR weight=N`.
fn backend(s: &str) -> Result<Backend, String> {
    let mut words = s.split_whitespace();
    let addr = words.next().ok_or("an empty backend")?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an address"))?;
    let mut weight = 1;
    for w in words {
        let n = w
            .strip_prefix("weight=")
            .ok_or_else(|| format!("{w:?}: expected weight=N"))?;
        weight = n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=255).contains(n))
            .ok_or_else(|| format!("weight {n:?} is not between 1 and 255"))?;
    }
    Ok(Backend {
        addr,
        weight,
        state: BackendState::Active,
    })
}
