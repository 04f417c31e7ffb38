//! The `service` commands against the running daemon: what `service show`
//! prints, and backend changes (`service backend add|remove|drain`), which
//! are journaled as the service's whole backend list.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use edgefwd_core::service::{Backend, BackendState, ServiceConfig, ServiceKind};
use serde_json::{json, Value};

use crate::store::StoredBackend;

/// The config's services with the backend lists changed at run time put
/// in; refused when a stored list names a service the config no longer
/// has.
pub fn with_backends(
    config: &[ServiceConfig],
    stored: &BTreeMap<String, Vec<StoredBackend>>,
) -> Result<Vec<ServiceConfig>, String> {
    let mut out = config.to_vec();
    for (name, list) in stored {
        let Some(s) = out.iter_mut().find(|s| &s.name == name) else {
            return Err(format!("backends of unknown service {name:?}"));
        };
        s.backends = list.iter().map(backend).collect();
    }
    Ok(out)
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
    let addr: Ipv4Addr = address
        .parse()
        .map_err(|_| format!("{address:?} is not an IPv4 address"))?;
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
        "address": s.vip,
        "announce": s.announce.and_then(|p| port_names.get(usize::from(p))),
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
            s(&svc["address"]),
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
