//! The `service` commands against the running daemon: what `service show`
//! prints, and backend changes (`service backend add|remove|drain`), which
//! are journaled as the service's whole backend list.

use std::net::IpAddr;

use edgefwd_core::service::{Backend, BackendState, ServiceConfig, ServiceKind};
use serde_json::{json, Value};

use crate::config::Config;
use crate::store::{ServiceChanges, StoredBackend};

/// The services in force: the config's, less those removed at run time,
/// with those added (checked again beside them) and the backend lists
/// changed at run time.
pub fn current(cfg: &Config, changes: &ServiceChanges) -> Result<Vec<ServiceConfig>, String> {
    let mut out: Vec<ServiceConfig> = cfg
        .services
        .iter()
        .filter(|s| !changes.removed.contains(&s.name))
        .cloned()
        .collect();
    if !changes.added.is_empty() {
        let text = format!(
            "{}{}",
            crate::config::services_toml(&out, &cfg.ports),
            changes.added.values().cloned().collect::<String>()
        );
        let all = crate::config::check_services(&text, &cfg.ports, &cfg.services_policy.pool)
            .map_err(|e| format!("services added at run time: {e}"))?;
        out = all;
    }
    for (name, list) in &changes.backends {
        let Some(s) = out.iter_mut().find(|s| &s.name == name) else {
            return Err(format!("backends of unknown service {name:?}"));
        };
        s.backends = list.iter().map(backend).collect();
    }
    Ok(out)
}

/// True when `a` and `b` are one service, whatever their backends.
fn same_service(a: &ServiceConfig, b: &ServiceConfig) -> bool {
    (&a.name, a.kind, &a.vips, a.announce, &a.ports, a.affinity)
        == (&b.name, b.kind, &b.vips, b.announce, &b.ports, b.affinity)
}

/// What turns the config's services into `current` ones (a config service
/// removed and another of its name added is both).
pub fn changes(cfg: &Config, current: &[ServiceConfig]) -> ServiceChanges {
    let mut c = ServiceChanges::default();
    for s in &cfg.services {
        match current.iter().find(|n| same_service(n, s)) {
            None => c.removed.push(s.name.clone()),
            Some(n) if n.backends != s.backends => {
                c.backends.insert(n.name.clone(), stored(n));
            }
            Some(_) => {}
        }
    }
    for n in current {
        if !cfg.services.iter().any(|s| same_service(s, n)) {
            c.added
                .insert(n.name.clone(), crate::config::entry_toml(n, &cfg.ports));
            c.backends.insert(n.name.clone(), stored(n));
        }
    }
    c
}

/// A refusal of `service add`'s entry (checked after `existing` others)
/// naming the flag rather than the entry's field.
pub fn flag_of(e: &crate::config::ConfigError, existing: usize) -> String {
    let field = e
        .field
        .strip_prefix(&format!("service[{existing}]."))
        .unwrap_or(&e.field);
    let flag = match field.split(['[', '.']).next().unwrap_or("") {
        "name" => "NAME".to_owned(),
        "ports" => "--port".to_owned(),
        "backends" => "--backend".to_owned(),
        "address" | "addresses" => "--address".to_owned(),
        "" => String::new(),
        other if other.starts_with("services") => field.to_owned(),
        other => format!("--{other}"),
    };
    if flag.is_empty() {
        e.message.clone()
    } else {
        format!("{flag}: {}", e.message)
    }
}

fn backend(b: &StoredBackend) -> Backend {
    Backend {
        addr: b.address,
        weight: b.weight,
        state: if b.draining {
            BackendState::Draining
        } else {
            BackendState::Active
        },
    }
}

/// A service's backends as stored.
pub fn stored(s: &ServiceConfig) -> Vec<StoredBackend> {
    s.backends
        .iter()
        .map(|b| StoredBackend {
            address: b.addr,
            weight: b.weight,
            draining: b.state == BackendState::Draining,
        })
        .collect()
}

/// What a backend change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Adds a backend (or sets the weight of one, active again).
    Add,
    /// Removes one: no new flows; UDP flows move, TCP mid-flow resets.
    Remove,
    /// Drains one: no new flows, its flows carry on.
    Drain,
}

impl Action {
    /// Parses the CLI's word.
    pub fn parse(s: &str) -> Result<Action, String> {
        match s {
            "add" => Ok(Action::Add),
            "remove" => Ok(Action::Remove),
            "drain" => Ok(Action::Drain),
            other => Err(format!("{other:?} is not add, remove or drain")),
        }
    }
}

/// `service`'s backends after `action` on `address`, or why not.
pub fn change(
    s: &ServiceConfig,
    address: &str,
    action: Action,
    weight: Option<u32>,
) -> Result<Vec<Backend>, String> {
    let addr: IpAddr = address
        .parse()
        .map_err(|_| format!("{address:?} is not an address"))?;
    if let Some(why) = crate::config::family_refusal(&s.vips, addr, &s.name) {
        return Err(why);
    }
    if let Some(w) = weight {
        if !(1..=255).contains(&w) {
            return Err(format!("--weight: {w} is not between 1 and 255"));
        }
    }
    let mut list = s.backends.clone();
    let at = list.iter().position(|b| b.addr == addr);
    match (action, at) {
        (Action::Add, Some(i)) => {
            list[i].state = BackendState::Active;
            if let Some(w) = weight {
                list[i].weight = w;
            }
        }
        (Action::Add, None) => list.push(Backend {
            addr,
            weight: weight.unwrap_or(1),
            state: BackendState::Active,
        }),
        (Action::Remove, Some(i)) => {
            list.remove(i);
        }
        (Action::Drain, Some(i)) => list[i].state = BackendState::Draining,
        (_, None) => return Err(format!("{addr} is not a backend of {}", s.name)),
    }
    Ok(list)
}

/// A service as `service show --json` prints it.
pub fn to_json(s: &ServiceConfig, port_names: &[String]) -> Value {
    json!({
        "name": s.name,
        "kind": match s.kind { ServiceKind::LoadBalancer => "load-balancer", ServiceKind::ClusterIp => "cluster-ip" },
        "address": s.vips.first(),
        "addresses": s.vips,
        "announce": s.announce.and_then(|p| port_names.get(usize::from(p))),
        "affinity": if s.affinity.is_some() { "client-ip" } else { "none" },
        "affinity_timeout": s.affinity,
        "ports": s.ports.iter().map(|p| json!({
            "protocol": p.proto.name(),
            "port": p.port,
            "target_port": p.target,
        })).collect::<Vec<_>>(),
        "backends": s.backends.iter().map(|b| json!({
            "address": b.addr,
            "weight": b.weight,
            "state": match b.state {
                BackendState::Active => "active",
                BackendState::Draining => "draining",
                BackendState::Removed => "removed",
            },
        })).collect::<Vec<_>>(),
    })
}

/// `service show` for a person, from what [`to_json`] made.
pub fn to_text(services: &[Value]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if services.is_empty() {
        out.push_str("no services\n");
    }
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    for svc in services {
        let ports: Vec<String> = svc["ports"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|p| format!("{}/{}->{}", p["port"], s(&p["protocol"]), p["target_port"]))
            .collect();
        let _ = write!(
            out,
            "{} ({}) {} {}",
            s(&svc["name"]),
            s(&svc["kind"]),
            svc["addresses"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(s)
                .collect::<Vec<_>>()
                .join(","),
            ports.join(" ")
        );
        if let Some(a) = svc["announce"].as_str() {
            let _ = write!(out, " announced on {a}");
        }
        out.push('\n');
        for b in svc["backends"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let _ = writeln!(
                out,
                "  {:<16} weight {:<3} {}",
                s(&b["address"]),
                b["weight"],
                s(&b["state"])
            );
        }
    }
    out
}

/// `service add`'s flags as a `[[service]]` entry (the daemon checks it as
/// it checks the config's); a malformed `--port` or `--backend` is refused
/// here, naming the flag.
pub fn entry_from_flags(
    name: &str,
    kind: &str,
    addresses: &[String],
    announce: Option<&str>,
    ports: &[String],
    backends: &[String],
) -> Result<String, String> {
    let q = |v: &str| toml::Value::String(v.to_owned()).to_string();
    let mut e = format!("[[service]]\nname = {}\nkind = {}\n", q(name), q(kind));
    match addresses {
        [] => {}
        [one] => e += &format!("address = {}\n", q(one)),
        many => {
            let all: Vec<String> = many.iter().map(|a| q(a)).collect();
            e += &format!("addresses = [{}]\n", all.join(", "));
        }
    }
    if let Some(a) = announce {
        e += &format!("announce = {}\n", q(a));
    }
    let mut ps = Vec::new();
    for p in ports {
        let parts: Vec<&str> = p.split(':').collect();
        let num = |s: &str| -> Result<i64, String> {
            s.parse()
                .map_err(|_| format!("--port {p:?}: {s:?} is not a number"))
        };
        let (proto, port, target) = match parts.as_slice() {
            [proto, port] => (*proto, num(port)?, None),
            [proto, port, target] => (*proto, num(port)?, Some(num(target)?)),
            _ => {
                return Err(format!(
                    "--port {p:?}: expected PROTOCOL:PORT[:TARGET_PORT]"
                ))
            }
        };
        let mut t = format!("{{ protocol = {}, port = {port}", q(proto));
        if let Some(target) = target {
            t += &format!(", target_port = {target}");
        }
        ps.push(t + " }");
    }
    e += &format!("ports = [{}]\n", ps.join(", "));
    // An IPv6 backend's weight follows its bracketed address: [ADDR]:W.
    let bs: Vec<String> = backends
        .iter()
        .map(|b| match b.rsplit_once(':') {
            Some((addr, w)) if b.parse::<std::net::IpAddr>().is_err() => {
                let addr = addr.trim_start_matches('[').trim_end_matches(']');
                q(&format!("{addr} weight={w}"))
            }
            _ => q(b.trim_start_matches('[').trim_end_matches(']')),
        })
        .collect();
    e += &format!("backends = [{}]\n", bs.join(", "));
    Ok(e)
}

/// A page of flows as `service flows --json` prints it (the CLI asks page
/// after page while `next` is there, and prints them as one).
pub fn flows_json(flows: &[edgefwd_core::service::FlowView], next: Option<usize>) -> Value {
    json!({
        "flows": flows.iter().map(|f| json!({
            "protocol": match f.proto { 6 => "tcp", 17 => "udp", _ => "other" },
            "client": format!("{}:{}", f.client.0, f.client.1),
            "port": f.port,
            "backend": f.backend,
            "expires_in": f.expires_in,
        })).collect::<Vec<_>>(),
        "next": next,
    })
}

/// `service flows` for a person.
pub fn flows_text(flows: &[Value]) -> String {
    use std::fmt::Write as _;
    let mut out = format!("{} flows\n", flows.len());
    for f in flows {
        let _ = writeln!(
            out,
            "  {} {:<22} port {:<5} -> {:<16} expires in {} s",
            f["protocol"].as_str().unwrap_or_default(),
            f["client"].as_str().unwrap_or_default(),
            f["port"],
            f["backend"].as_str().unwrap_or_default(),
            f["expires_in"]
        );
    }
    out
}
