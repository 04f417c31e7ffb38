//! `trace start` / `trace show` and `replay --trace`: the filter operators
//! type, and the traces the routers recorded ([`PacketTrace`]) as text and
//! JSON, with the route the FIB chose named from the RIB.

use std::fmt::Write as _;
use std::net::IpAddr;

use edgefwd_core::packet::Origin;
use edgefwd_core::pipeline::watch::{PacketTrace, TraceEnd, TraceFilter};
use edgefwd_core::port::PortId;
use edgefwd_core::stats::DropReason;
use serde_json::{json, Value};

use crate::rib::LookupRoute;

/// Parses a trace filter: terms joined by `and`: `host ADDR`, `tcp`,
/// `udp`, `icmp`, `icmp6`, `proto N`, `port N`. An empty filter passes
/// everything.
pub fn parse_filter(text: &str) -> Result<TraceFilter, String> {
    let mut f = TraceFilter::default();
    let mut words = text.split_whitespace();
    let Some(first) = words.next() else {
        return Ok(f);
    };
    term(&mut f, first, &mut words)?;
    while let Some(w) = words.next() {
        if w != "and" {
            return Err(format!("filter: expected `and` before {w:?}"));
        }
        let next = words.next().ok_or("filter: nothing after `and`")?;
        term(&mut f, next, &mut words)?;
    }
    Ok(f)
}

fn term<'a>(
    f: &mut TraceFilter,
    term: &str,
    words: &mut impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    let mut arg = |what: &str| {
        words
            .next()
            .ok_or_else(|| format!("filter: `{term}` needs {what}"))
    };
    match term {
        "host" => {
            let a = arg("an address")?;
            f.host = Some(
                a.parse()
                    .map_err(|_| format!("filter: host {a:?} is not an address"))?,
            );
        }
        "port" => {
            let p = arg("a port number")?;
            f.l4_port = Some(
                p.parse()
                    .map_err(|_| format!("filter: port {p:?} is not a port number"))?,
            );
        }
        "proto" => {
            let p = arg("a protocol number")?;
            f.protocol = Some(
                p.parse()
                    .map_err(|_| format!("filter: proto {p:?} is not a protocol number"))?,
            );
        }
        "tcp" => f.protocol = Some(6),
        "udp" => f.protocol = Some(17),
        "icmp" => f.protocol = Some(1),
        "icmp6" => f.protocol = Some(58),
        other => {
            return Err(format!(
                "filter: unknown term {other:?} (host ADDR, tcp, udp, icmp, icmp6, proto N, port N, joined by `and`)"
            ))
        }
    }
    Ok(())
}

/// A recorded trace with what the control plane adds: the worker that
/// recorded it and the route the FIB holds for its destination.
pub struct Shown<'a> {
    /// The trace.
    pub trace: &'a PacketTrace,
    /// The worker (`None` in replay).
    pub worker: Option<usize>,
    /// The route to its destination, as the FIB selects it now.
    pub route: Option<LookupRoute>,
}

fn end_json(end: &TraceEnd, port: &dyn Fn(PortId) -> String) -> Value {
    match end {
        TraceEnd::Sent { port: p } => json!({"kind": "sent", "port": port(*p)}),
        TraceEnd::Held { neighbor } => json!({"kind": "held", "neighbor": neighbor}),
        TraceEnd::Local => json!({"kind": "local"}),
        TraceEnd::HandedOff { worker } => json!({"kind": "handed_off", "worker": worker}),
        TraceEnd::Dropped { reason, stage } => {
            json!({"kind": "dropped", "reason": reason.name(), "stage": stage.name()})
        }
    }
}

/// The traces as `trace show --json` prints them.
pub fn to_json(traces: &[Shown], names: &[String]) -> Value {
    let port = |p: PortId| names.get(usize::from(p)).cloned().unwrap_or_default();
    let packets: Vec<Value> = traces
        .iter()
        .map(|s| {
            let t = s.trace;
            json!({
                "seq": t.seq,
                "worker": s.worker,
                "port": port(t.rx_port),
                "time_ns": t.ts.0,
                "origin": if t.origin == Origin::Received { "received" } else { "generated" },
                "headers": t.headers,
                "destination": t.dst,
                "route": s.route.as_ref().map(|r| json!({
                    "destination": r.destination,
                    "interface": r.interface,
                    "next_hop": r.next_hop,
                    "metric": r.metric,
                })),
                "steps": t.steps.iter().map(|st| json!({"stage": st.stage.name(), "note": st.note})).collect::<Vec<_>>(),
                "end": end_json(&t.end, &port),
            })
        })
        .collect();
    json!({ "packets": packets })
}

/// The traces as `trace show` prints them, VPP style, one block a packet,
/// from what [`to_json`] made (the CLI has only that).
pub fn to_text(v: &Value) -> String {
    let mut out = String::new();
    let packets = v["packets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if packets.is_empty() {
        out.push_str("no packets traced\n");
    }
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    for p in packets {
        let _ = write!(out, "Packet {}", p["seq"]);
        if let Some(w) = p["worker"].as_u64() {
            let _ = write!(out, " (worker {w})");
        }
        let origin = if p["origin"] == "received" {
            format!("received on {}", s(&p["port"]))
        } else {
            format!("made by the appliance (for {})", s(&p["port"]))
        };
        // UTC time of day, as tcpdump prints it.
        let ns = p["time_ns"].as_u64().unwrap_or(0);
        let day = (ns / 1_000_000_000) % 86_400;
        let _ = writeln!(
            out,
            " at {:02}:{:02}:{:02}.{:06}, {origin}",
            day / 3600,
            day / 60 % 60,
            day % 60,
            ns % 1_000_000_000 / 1000
        );
        let _ = writeln!(out, "  {}", s(&p["headers"]));
        for st in p["steps"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let _ = writeln!(out, "  {:<13} {}", s(&st["stage"]), s(&st["note"]));
        }
        let r = &p["route"];
        if r.is_object() {
            let via = r["next_hop"]
                .as_str()
                .map_or_else(|| "directly connected".to_owned(), |n| format!("via {n}"));
            let _ = writeln!(
                out,
                "  {:<13} {} {via} on {} metric {}",
                "route",
                s(&r["destination"]),
                s(&r["interface"]),
                r["metric"]
            );
        }
        let e = &p["end"];
        let end = match e["kind"].as_str().unwrap_or_default() {
            "sent" => format!("sent on {}", s(&e["port"])),
            "held" => format!("held for next hop {}", s(&e["neighbor"])),
            "dropped" => format!("dropped at {}: {}", s(&e["stage"]), s(&e["reason"])),
            "handed_off" => format!("handed to worker {}, the owner of its flow", e["worker"]),
            _ => "for the appliance".to_owned(),
        };
        let _ = writeln!(out, "  => {end}\n");
    }
    out
}

/// The destination whose route a trace should name: a routed packet's.
pub fn routed_destination(t: &PacketTrace) -> Option<IpAddr> {
    match t.end {
        TraceEnd::Sent { .. } | TraceEnd::Held { .. } => t.dst,
        TraceEnd::Dropped {
            reason:
                DropReason::MtuExceeded
                | DropReason::FragmentationUnsupported
                | DropReason::PortDown
                | DropReason::NeighborUnresolved
                | DropReason::TxQueueFull,
            ..
        } => t.dst,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_refuse_by_name() {
        assert_eq!(parse_filter("").unwrap(), TraceFilter::default());
        let f = parse_filter("host 10.0.2.2 and tcp and port 80").unwrap();
        assert_eq!(f.host, Some("10.0.2.2".parse().unwrap()));
        assert_eq!((f.protocol, f.l4_port), (Some(6), Some(80)));
        assert_eq!(parse_filter("icmp6").unwrap().protocol, Some(58));
        assert_eq!(parse_filter("proto 47").unwrap().protocol, Some(47));
        for (bad, says) in [
            ("host", "needs an address"),
            ("host ten", "not an address"),
            ("tcp udp", "expected `and`"),
            ("tcp and", "nothing after"),
            ("port 70000", "not a port number"),
            ("vlan 5", "unknown term"),
        ] {
            let e = parse_filter(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
