//! What a replay did, for people (a text report) and for scripts (JSON, the
//! shape in ARCHITECTURE.md §5).

use edgefwd_core::fib::Selection;
use edgefwd_core::nat::SessionView;
use edgefwd_core::pipeline::Router;
use edgefwd_core::stats::{DropReason, Stats};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::counters::{by_reason, Counters, DropCounts, Ports, Totals};
use crate::rib::{Rib, RouteView};

/// Routes listed in the text report at most (a full table is summarised).
const MAX_ROUTES_SHOWN: usize = 40;

/// One NAT session, as `replay --json` and `nat sessions --json` show it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct NatSessionReport {
    /// `tcp`, `udp` or `icmp`.
    pub protocol: String,
    /// Inside `ADDRESS:PORT` (ICMP: the echo id).
    pub inside: String,
    /// External `ADDRESS:PORT`.
    pub external: String,
    /// Remote `ADDRESS:PORT` (ICMP: port 0).
    pub remote: String,
    /// `active`, or the TCP state.
    pub state: String,
    /// Seconds before it expires without traffic.
    pub expires_in: u64,
}

impl From<&SessionView> for NatSessionReport {
    fn from(s: &SessionView) -> Self {
        let ep = |(a, p): (std::net::Ipv4Addr, u16)| format!("{a}:{p}");
        NatSessionReport {
            protocol: s.proto.name().to_owned(),
            inside: ep(s.inside),
            external: ep(s.external),
            remote: ep(s.remote),
            state: s.state.to_owned(),
            expires_in: s.expires_in.as_secs(),
        }
    }
}

impl NatSessionReport {
    /// The sessions of every NAT instance of `routers` (one per worker),
    /// now, in order.
    pub fn of(routers: &[Router]) -> Vec<NatSessionReport> {
        let mut all: Vec<_> = routers
            .iter()
            .flat_map(|r| r.nat().iter().flat_map(|n| n.sessions(r.now())))
            .collect();
        all.sort_by_key(|s| (s.proto, s.inside, s.remote));
        all.iter().map(NatSessionReport::from).collect()
    }

    /// One line for a terminal.
    pub fn line(&self) -> String {
        format!(
            "{:<4} {:<21} as {:<21} with {:<21} {} ({} s left)",
            self.protocol, self.inside, self.external, self.remote, self.state, self.expires_in
        )
    }
}

/// Traffic through one next-hop group.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NextHopReport {
    /// `PORT via GATEWAY` (or `PORT on-link`) for each ECMP member.
    pub members: Vec<String>,
    /// Packets forwarded through it.
    pub packets: u64,
}

/// One neighbour entry.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NeighborReport {
    /// Port name.
    pub interface: String,
    /// IP address.
    pub address: IpAddr,
    /// MAC, when resolved.
    pub mac: Option<String>,
    /// static, reachable, stale or incomplete.
    pub state: String,
}

/// The whole report: the counters as `stats` has them, and what only a
/// replay shows.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Totals.
    pub packets: Totals,
    /// Drops by reason (non-zero ones).
    pub drops: DropCounts,
    /// Per-port counters by port name, in port order.
    pub ports: Ports,
    /// Packets the appliance made but could not send, by reason.
    pub generated_dropped: DropCounts,
    /// ICMP errors held back by the rate limit.
    pub icmp_rate_limited: u64,
    /// Every route and whether the FIB selected it.
    pub routes: Vec<RouteView>,
    /// Traffic per next hop.
    pub next_hops: Vec<NextHopReport>,
    /// The neighbour table at the end.
    pub neighbors: Vec<NeighborReport>,
    /// NAT sessions at the end of the trace.
    pub nat: Vec<NatSessionReport>,
    /// Each service's counters (when there are services).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceReport>,
    /// Output file per port.
    pub outputs: BTreeMap<String, PathBuf>,
    /// Inputs that could not be read to the end.
    pub warnings: Vec<String>,
}

/// One service's counters, as `replay --json` and `service show --json`
/// print them.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ServiceReport {
    /// Its name.
    pub name: String,
    /// New flows given a backend.
    pub new_flows: u64,
    /// Packets to the service and its replies.
    pub packets: u64,
    /// Their IP bytes.
    pub bytes: u64,
    /// Drops by reason (non-zero ones).
    pub drops: BTreeMap<String, u64>,
    /// By backend address: `{new_flows, packets, bytes}`.
    pub backends: BTreeMap<String, BackendReport>,
}

/// One backend's counters.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct BackendReport {
    /// New flows given it.
    pub new_flows: u64,
    /// Packets to it and its replies.
    pub packets: u64,
    /// Their IP bytes.
    pub bytes: u64,
}

impl ServiceReport {
    /// From a router's (or the workers' summed) counters.
    pub fn of(name: &str, c: &edgefwd_core::service::ServiceCounters) -> ServiceReport {
        ServiceReport {
            name: name.to_owned(),
            new_flows: c.new_flows,
            packets: c.packets,
            bytes: c.bytes,
            drops: edgefwd_core::service::ServiceCounters::DROPS
                .iter()
                .zip(c.drops)
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| ((*r).to_owned(), n))
                .collect(),
            backends: c
                .backends
                .iter()
                .map(|(a, [f, p, b])| {
                    (
                        a.to_string(),
                        BackendReport {
                            new_flows: *f,
                            packets: *p,
                            bytes: *b,
                        },
                    )
                })
                .collect(),
        }
    }
}

impl Report {
    /// Collects the report from a router after its run.
    pub fn build(
        routers: &[Router],
        rib: &Rib,
        selection: &Selection,
        outputs: Vec<PathBuf>,
        warnings: Vec<String>,
    ) -> Report {
        // Every worker's counters; the tables as the first worker has them
        // (neighbours are shared, and services run on that one alone).
        let router = &routers[0];
        let mut s = Stats::new(0);
        let mut hits = vec![0; router.group_hits().len()];
        for r in routers {
            s.add(r.stats());
            for (h, n) in hits.iter_mut().zip(r.group_hits()) {
                *h += n;
            }
        }
        let s = &s;
        let names: Vec<String> = router.ports().iter().map(|(_, p)| p.name.clone()).collect();
        let counters = Counters::new(&names, None, s);
        let next_hops = router
            .fib()
            .groups()
            .iter()
            .zip(&hits)
            .filter(|(_, n)| **n > 0)
            .map(|(g, n)| NextHopReport {
                members: g
                    .members
                    .iter()
                    .map(|m| match m.next_hop {
                        Some(gw) => format!("{} via {gw}", rib.port_name(m.port)),
                        None => format!("{} on-link", rib.port_name(m.port)),
                    })
                    .collect(),
                packets: *n,
            })
            .collect();
        let neighbors = router
            .neighbors()
            .into_iter()
            .map(|n| NeighborReport {
                interface: rib.port_name(n.port).to_owned(),
                address: n.addr,
                mac: n.mac.map(|m| m.to_string()),
                state: n.state.to_owned(),
            })
            .collect();
        Report {
            packets: counters.packets,
            drops: counters.drops,
            ports: counters.ports,
            generated_dropped: by_reason(&s.generated_drops),
            icmp_rate_limited: s.icmp_rate_limited,
            routes: rib.show(&selection.selected, |_| true),
            next_hops,
            neighbors,
            nat: NatSessionReport::of(routers),
            services: router
                .services()
                .counters()
                .map(|(name, c)| ServiceReport::of(name, c))
                .collect(),
            outputs: names.into_iter().zip(outputs).collect(),
            warnings,
        }
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report for a person at a terminal.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let p = &self.packets;
        let _ = writeln!(o, "Packets");
        let _ = writeln!(
            o,
            "  in {} = forwarded {} + local {} + dropped {}      generated {}",
            p.received, p.forwarded, p.local, p.dropped, p.generated
        );
        if p.flooded > 0 {
            let _ = writeln!(o, "  flooded copies (switches) {}", p.flooded);
        }
        let _ = writeln!(o, "\nPorts            rx        tx   dropped  output");
        for (name, r) in self.ports.iter() {
            let Some(out) = self.outputs.get(name) else {
                continue;
            };
            let _ = writeln!(
                o,
                "  {name:<10} {:>8}  {:>8}  {:>8}  {}",
                r.rx,
                r.tx,
                r.drops,
                out.display()
            );
        }
        if !self.drops.is_empty() {
            let _ = writeln!(o, "\nDrops by reason");
            for (reason, n) in &self.drops {
                let why = DropReason::from_name(reason).map_or("", |r| r.describe());
                let _ = writeln!(o, "  {reason:<26} {n:>8}  {why}");
            }
        }
        let selected = self.routes.iter().filter(|r| r.selected).count();
        let _ = writeln!(
            o,
            "\nRoutes ({} in the RIB, {selected} selected; * = in the FIB)",
            self.routes.len()
        );
        if self.routes.len() <= MAX_ROUTES_SHOWN {
            let _ = writeln!(
                o,
                "    {:<22} {:<18} {:<10} {:>6}  kind",
                "destination", "next hop", "interface", "metric"
            );
            for r in &self.routes {
                let nh = r
                    .next_hop
                    .map_or_else(|| "on-link".to_owned(), |a| a.to_string());
                let mark = if r.selected { '*' } else { ' ' };
                let kind = r.kind.name();
                let lost = if r.selected { "" } else { "  (lost on metric)" };
                let _ = writeln!(
                    o,
                    "  {mark} {:<22} {nh:<18} {:<10} {:>6}  {kind}{lost}",
                    r.destination.to_string(),
                    r.interface,
                    r.metric
                );
            }
        } else {
            let _ = writeln!(o, "  (too many to list; see `route lookup` or --json)");
        }
        if !self.next_hops.is_empty() {
            let _ = writeln!(o, "\nRouted by next hop (forwarded and generated packets)");
            for n in &self.next_hops {
                let _ = writeln!(o, "  {:<40} {:>8}", n.members.join(" | "), n.packets);
            }
        }
        let _ = writeln!(o, "\nNeighbours");
        if self.neighbors.is_empty() {
            let _ = writeln!(o, "  (none)");
        }
        for n in &self.neighbors {
            let mac = n.mac.as_deref().unwrap_or("(unresolved)");
            let _ = writeln!(
                o,
                "  {:<10} {:<26} {mac:<18} {}",
                n.interface,
                n.address.to_string(),
                n.state
            );
        }
        if !self.nat.is_empty() {
            let _ = writeln!(o, "\nNAT sessions at the end: {}", self.nat.len());
            for n in self.nat.iter().take(20) {
                let _ = writeln!(o, "  {}", n.line());
            }
        }
        if !self.services.is_empty() {
            let _ = writeln!(o, "\nServices");
            for sv in &self.services {
                let _ = write!(
                    o,
                    "  {:<16} new flows {:>8}  packets {:>8}",
                    sv.name, sv.new_flows, sv.packets
                );
                for (reason, n) in &sv.drops {
                    let _ = write!(o, "  {reason} {n}");
                }
                o.push('\n');
                for (addr, b) in &sv.backends {
                    let _ = writeln!(
                        o,
                        "    {addr:<16} new flows {:>8}  packets {:>8}",
                        b.new_flows, b.packets
                    );
                }
            }
        }
        if p.generated > 0 || !self.generated_dropped.is_empty() || self.icmp_rate_limited > 0 {
            let _ = writeln!(o, "\nGenerated by the appliance: {} sent", p.generated);
            for (reason, n) in &self.generated_dropped {
                let _ = writeln!(o, "  not sent, {reason}: {n}");
            }
            if self.icmp_rate_limited > 0 {
                let _ = writeln!(
                    o,
                    "  ICMP errors held back by the rate limit: {}",
                    self.icmp_rate_limited
                );
            }
        }
        for w in &self.warnings {
            let _ = writeln!(o, "\nwarning: {w}");
        }
        o
    }
}
