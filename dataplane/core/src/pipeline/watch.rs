//! Watching the pipeline: a packet trace that says what each stage decided
//! (VPP's `trace add`), and dropped packets kept for capture with the
//! reason and the stage that dropped them.
//!
//! Unwatched, a burst runs exactly as before: the router picks the watched
//! or the plain run with one branch per burst (a const generic, so the
//! plain one is the stages back to back). Watched, the
//! router looks at the burst after every stage: it stamps each packet that
//! a stage dropped with that stage's name, and, for the packets being
//! traced, notes what changed (the next stage, the egress port, the next
//! hop, the headers). Only traced packets cost an allocation.

use std::fmt::Write as _;
use std::net::IpAddr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use super::Tables;
use crate::l2::L2Dest;
use crate::packet::{MacAddr, Next, Origin, Packet};
use crate::port::{PortId, PortTable};
use crate::stats::DropReason;
use crate::time::Time;

/// Where in the router a packet was when something was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Received by the device (before any stage: oversize, truncated,
    /// offload state).
    Rx,
    /// A virtual switch's input.
    L2,
    /// Plain IPv4 unicast in one pass.
    Ip4Fast,
    /// Ethernet checks and demultiplexing.
    EthInput,
    /// ARP.
    ArpInput,
    /// IPv4 validation, local delivery, TTL.
    Ip4Input,
    /// NAT, outside to inside.
    Nat44In,
    /// IPv6 validation, local delivery, hop limit.
    Ip6Input,
    /// Services: to a backend.
    SvcIn,
    /// FIB lookup and MTU.
    IpLookup,
    /// Services: a backend's reply from the service's address.
    SvcOut,
    /// NAT, inside to outside.
    Nat44Out,
    /// TTL, neighbour and MACs.
    IpRewrite,
    /// Waiting for a neighbour (ARP/NDP).
    NeighborHold,
    /// Transmit queue.
    Tx,
    /// Handing a packet to the worker that owns its flow.
    HandOff,
}

impl Stage {
    /// The stage's name (VPP style: `ip4-input`).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Rx => "rx",
            Stage::L2 => "l2",
            Stage::Ip4Fast => "ip4-fast",
            Stage::EthInput => "eth-input",
            Stage::ArpInput => "arp-input",
            Stage::Ip4Input => "ip4-input",
            Stage::Nat44In => "nat44-in",
            Stage::SvcIn => "svc-in",
            Stage::SvcOut => "svc-out",
            Stage::Ip6Input => "ip6-input",
            Stage::IpLookup => "ip-lookup",
            Stage::Nat44Out => "nat44-out",
            Stage::IpRewrite => "ip-rewrite",
            Stage::NeighborHold => "neighbor-hold",
            Stage::Tx => "tx",
            Stage::HandOff => "handoff",
        }
    }
}

/// A packet dropped on a watched port, kept for capture.
pub struct KeptDrop {
    /// The packet as it was when dropped.
    pub pkt: Packet,
    /// Why.
    pub reason: DropReason,
    /// Where.
    pub stage: Stage,
}

/// What one stage did to a traced packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceStep {
    /// The stage.
    pub stage: Stage,
    /// What it decided, in words.
    pub note: String,
}

/// How a traced packet ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceEnd {
    /// Queued for sending on a port.
    Sent {
        /// The port.
        port: PortId,
    },
    /// Held while its next hop is resolved.
    Held {
        /// The neighbour asked for.
        neighbor: Option<IpAddr>,
    },
    /// Consumed by the appliance.
    Local,
    /// Handed to the worker that owns its flow, which traces it on if it
    /// is tracing too.
    HandedOff {
        /// That worker.
        worker: u8,
    },
    /// Dropped.
    Dropped {
        /// Why.
        reason: DropReason,
        /// The stage that decided it.
        stage: Stage,
    },
}

/// One traced packet's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketTrace {
    /// Its number among the router's traced packets.
    pub seq: u64,
    /// The port it came in on (for a generated packet: the port whose
    /// traffic caused it).
    pub rx_port: PortId,
    /// When.
    pub ts: Time,
    /// Received, or made by the appliance.
    pub origin: Origin,
    /// Its headers when it arrived.
    pub headers: String,
    /// Its IP destination when it arrived (for naming the route).
    pub dst: Option<IpAddr>,
    /// What each stage that acted on it decided.
    pub steps: Vec<TraceStep>,
    /// How it ended.
    pub end: TraceEnd,
}

/// Which packets to trace: a small filter over the headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// Only packets arriving on this port.
    pub port: Option<PortId>,
    /// Only packets with this source or destination address.
    pub host: Option<IpAddr>,
    /// Only this IP protocol (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub protocol: Option<u8>,
    /// Only packets with this TCP/UDP source or destination port.
    pub l4_port: Option<u16>,
}

impl TraceFilter {
    /// True when `pkt` passes.
    pub fn matches(&self, pkt: &Packet) -> bool {
        if self.port.is_some_and(|p| p != pkt.meta.rx_port) {
            return false;
        }
        if self.host.is_none() && self.protocol.is_none() && self.l4_port.is_none() {
            return true;
        }
        let Ok(s) = SlicedPacket::from_ethernet(pkt.buf.frame()) else {
            return false;
        };
        let (src, dst, proto) = match &s.net {
            Some(NetSlice::Ipv4(ip)) => (
                IpAddr::V4(ip.header().source_addr()),
                IpAddr::V4(ip.header().destination_addr()),
                ip.header().protocol().0,
            ),
            Some(NetSlice::Ipv6(ip)) => (
                IpAddr::V6(ip.header().source_addr()),
                IpAddr::V6(ip.header().destination_addr()),
                ip.payload().ip_number.0,
            ),
            _ => return false,
        };
        if self.host.is_some_and(|h| h != src && h != dst) {
            return false;
        }
        if self.protocol.is_some_and(|p| p != proto) {
            return false;
        }
        if let Some(port) = self.l4_port {
            let ports = match &s.transport {
                Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
                Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
                _ => return false,
            };
            if ports.0 != port && ports.1 != port {
                return false;
            }
        }
        true
    }
}

/// What the router watches: ports whose drops are kept, and a trace.
#[derive(Default)]
pub struct Watch {
    /// By rx port: keep what is dropped there (empty: keep nothing).
    pub(super) keep_drops: Vec<bool>,
    /// Kept drops, until taken.
    pub(super) kept: Vec<KeptDrop>,
    /// Packets still to trace, and which.
    pub(super) trace_left: u64,
    pub(super) filter: TraceFilter,
    /// Finished traces, until taken.
    pub(super) traces: Vec<PacketTrace>,
    next_seq: u64,
    /// Per position in the burst being run: the stage that dropped it, and
    /// its trace if it is traced.
    stamps: Vec<Option<Stage>>,
    open: Vec<Option<Open>>,
}

/// A trace being written: the packet's state after the last stage.
struct Open {
    trace: PacketTrace,
    last: Seen,
}

/// What the tracer compares stage to stage.
#[derive(Clone, PartialEq, Eq)]
struct Seen {
    next: Next,
    iface: PortId,
    tx_port: PortId,
    neighbor: Option<IpAddr>,
    dst_mac: Option<crate::packet::MacAddr>,
    headers: String,
}

impl Seen {
    fn of(pkt: &Packet) -> Seen {
        Seen {
            next: pkt.meta.next,
            iface: pkt.meta.iface,
            tx_port: pkt.meta.tx_port,
            neighbor: pkt.meta.neighbor,
            dst_mac: crate::packet::MacAddr::from_slice(pkt.buf.frame()),
            headers: headers(pkt.buf.frame()),
        }
    }
}

/// Most kept drops held at once; more are counted only.
pub const KEPT_MAX: usize = 256;
/// Most finished traces held at once.
pub const TRACES_MAX: usize = 1024;

impl Watch {
    /// True when there is nothing to watch.
    pub fn is_idle(&self) -> bool {
        self.trace_left == 0 && self.keep_drops.iter().all(|k| !k)
    }

    /// True when a drop of a packet with `meta` is to be kept.
    pub(super) fn keeps(&self, rx_port: PortId, origin: Origin) -> bool {
        origin == Origin::Received
            && self.kept.len() < KEPT_MAX
            && self.keep_drops.get(usize::from(rx_port)) == Some(&true)
    }

    /// Before a burst: picks the packets to trace.
    pub(super) fn begin(&mut self, pkts: &[Packet]) {
        self.stamps.clear();
        self.stamps.resize(pkts.len(), None);
        self.open.clear();
        self.open.resize_with(pkts.len(), || None);
        if self.trace_left == 0 {
            return;
        }
        for (i, p) in pkts.iter().enumerate() {
            if self.trace_left == 0 || self.traces.len() >= TRACES_MAX {
                break;
            }
            if !self.filter.matches(p) {
                continue;
            }
            self.trace_left -= 1;
            self.next_seq += 1;
            let last = Seen::of(p);
            self.open[i] = Some(Open {
                trace: PacketTrace {
                    seq: self.next_seq,
                    rx_port: p.meta.rx_port,
                    ts: p.meta.ts,
                    origin: p.meta.origin,
                    headers: last.headers.clone(),
                    dst: ip_destination(p.buf.frame()),
                    steps: Vec::new(),
                    end: TraceEnd::Local,
                },
                last,
            });
        }
    }

    /// After `stage` ran over the burst.
    pub(super) fn after(&mut self, stage: Stage, pkts: &[Packet], t: &Tables, now: Time) {
        let ports = &t.ports;
        for (i, p) in pkts.iter().enumerate() {
            if let (Next::Drop(_), Some(s @ None)) = (p.meta.next, self.stamps.get_mut(i)) {
                *s = Some(stage);
            }
            let Some(Some(open)) = self.open.get_mut(i) else {
                continue;
            };
            let seen = Seen::of(p);
            if seen != open.last {
                let mut note = describe(&open.last, &seen, ports);
                if stage == Stage::L2 {
                    note = switch_note(t, p, now, note);
                }
                open.trace.steps.push(TraceStep { stage, note });
                open.last = seen;
            }
        }
    }

    /// The stage that dropped the packet at position `i`, if one did.
    pub(super) fn stamp(&self, i: usize) -> Option<Stage> {
        self.stamps.get(i).copied().flatten()
    }

    /// After the burst's dispositions: closes the trace of the packet at
    /// position `i` with how it ended.
    pub(super) fn end(&mut self, i: usize, end: TraceEnd) {
        if let Some(open) = self.open.get_mut(i).and_then(Option::take) {
            let mut trace = open.trace;
            trace.end = end;
            self.traces.push(trace);
        }
    }

    /// True when the packet at position `i` is traced.
    pub(super) fn traced(&self, i: usize) -> bool {
        self.open.get(i).is_some_and(Option::is_some)
    }
}

/// What a switch did with a member's frame: learned its source, then sent
/// it up to the router, across to the member that has its destination, or
/// everywhere (flooded).
fn switch_note(t: &Tables, p: &Packet, now: Time, note: String) -> String {
    let frame = p.buf.frame();
    let (Some(dst), Some(src)) = (
        MacAddr::from_slice(frame),
        frame.get(6..).and_then(MacAddr::from_slice),
    ) else {
        return note;
    };
    let Some(sw) = t.l2.member_of(p.meta.rx_port) else {
        return note;
    };
    if matches!(p.meta.next, Next::Drop(_)) {
        return format!("switch: {note}");
    }
    let name = |port: PortId| {
        t.ports
            .get(port)
            .map_or_else(|| port.to_string(), |i| i.name.clone())
    };
    let learned = format!("switch: learned {src} on {}", name(p.meta.rx_port));
    let flood = matches!(t.l2.lookup(sw, dst, now), L2Dest::Flood);
    match p.meta.next {
        Next::Tx if flood => format!(
            "{learned}; {dst} unknown: flooded to every member (this copy to {})",
            name(p.meta.tx_port)
        ),
        Next::Tx => format!("{learned}; {dst} is on {}: forwarded", name(p.meta.tx_port)),
        _ if dst.is_multicast() => {
            format!("{learned}; {dst}: flooded to every member and up to the router")
        }
        _ => format!("{learned}; {dst} is the router's: up to the router"),
    }
}

/// The words for what changed between two looks at a packet.
fn describe(before: &Seen, after: &Seen, ports: &PortTable) -> String {
    let port = |p: PortId| {
        ports
            .get(p)
            .map_or_else(|| p.to_string(), |i| i.name.clone())
    };
    let mut note = String::new();
    match after.next {
        Next::Drop(r) => {
            let _ = write!(note, "drop: {}", r.name());
        }
        Next::Local => note.push_str("local: for the appliance"),
        Next::Punt => note.push_str("punt: for the host, to the port's mirror"),
        Next::Resolve => {
            let _ = write!(
                note,
                "next hop {} on {} not resolved: held, ARP/NDP asked",
                after
                    .neighbor
                    .map_or_else(|| "?".to_owned(), |a| a.to_string()),
                port(after.tx_port)
            );
        }
        Next::Tx => {
            let _ = write!(note, "out {}", port(after.tx_port));
            if let Some(n) = after.neighbor {
                let _ = write!(note, " via {n}");
            }
            if let Some(mac) = after.dst_mac {
                let _ = write!(note, " to {mac}");
            }
        }
        next => {
            let _ = write!(note, "to {}", next_name(next));
            if after.tx_port != before.tx_port || after.neighbor != before.neighbor {
                let _ = write!(note, ", out {}", port(after.tx_port));
                if let Some(n) = after.neighbor {
                    let _ = write!(note, " via {n}");
                }
            }
        }
    }
    if after.headers != before.headers {
        let _ = write!(note, "; {} -> {}", before.headers, after.headers);
    }
    note
}

/// A frame's IP destination, if it is IP.
fn ip_destination(frame: &[u8]) -> Option<IpAddr> {
    match SlicedPacket::from_ethernet(frame).ok()?.net? {
        NetSlice::Ipv4(ip) => Some(IpAddr::V4(ip.header().destination_addr())),
        NetSlice::Ipv6(ip) => Some(IpAddr::V6(ip.header().destination_addr())),
        NetSlice::Arp(_) => None,
    }
}

/// The name of the stage `next` names.
fn next_name(next: Next) -> &'static str {
    match next {
        Next::EthInput => "eth-input",
        Next::ArpInput => "arp-input",
        Next::Ip4Input => "ip4-input",
        Next::Nat44In | Next::Nat44Hairpin => "nat44-in",
        Next::Ip6Input => "ip6-input",
        Next::IpLookup => "ip-lookup",
        Next::IpRewrite => "ip-rewrite",
        Next::Resolve => "neighbor-hold",
        Next::Tx => "tx",
        Next::Local => "local",
        Next::Punt => "punt",
        Next::Drop(_) => "drop",
        Next::HandOff { .. } => "handoff",
    }
}

/// A one-line summary of a frame's headers (tcpdump style).
pub fn headers(frame: &[u8]) -> String {
    let mut out = String::new();
    let Ok(s) = SlicedPacket::from_ethernet(frame) else {
        if frame.len() >= 14 {
            let _ = write!(
                out,
                "ethertype 0x{:02x}{:02x} (not parsed)",
                frame[12], frame[13]
            );
        } else {
            out.push_str("runt");
        }
        return out;
    };
    match &s.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let _ = write!(
                out,
                "IPv4 {} > {} ttl {}",
                h.source_addr(),
                h.destination_addr(),
                h.ttl()
            );
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let _ = write!(
                out,
                "IPv6 {} > {} hlim {}",
                h.source_addr(),
                h.destination_addr(),
                h.hop_limit()
            );
        }
        Some(NetSlice::Arp(a)) => {
            let ip = |b: &[u8]| {
                <[u8; 4]>::try_from(b).map_or_else(
                    |_| "?".to_owned(),
                    |o| std::net::Ipv4Addr::from(o).to_string(),
                )
            };
            let (sender, target) = (ip(a.sender_protocol_addr()), ip(a.target_protocol_addr()));
            let _ = match a.operation().0 {
                1 => write!(out, "ARP who-has {target} tell {sender}"),
                2 => write!(
                    out,
                    "ARP reply {sender} is-at {}",
                    crate::packet::MacAddr::from_slice(a.sender_hw_addr())
                        .map_or_else(|| "?".to_owned(), |m| m.to_string())
                ),
                op => write!(out, "ARP op {op}"),
            };
        }
        None => {
            let _ = write!(out, "ethertype 0x{:02x}{:02x}", frame[12], frame[13]);
        }
    }
    match &s.transport {
        Some(TransportSlice::Tcp(t)) => {
            let _ = write!(
                out,
                " TCP {} > {}{}{}{}{}",
                t.source_port(),
                t.destination_port(),
                if t.syn() { " SYN" } else { "" },
                if t.ack() { " ACK" } else { "" },
                if t.fin() { " FIN" } else { "" },
                if t.rst() { " RST" } else { "" },
            );
        }
        Some(TransportSlice::Udp(u)) => {
            let _ = write!(out, " UDP {} > {}", u.source_port(), u.destination_port());
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let _ = write!(out, " ICMP type {} code {}", i.type_u8(), i.code_u8());
        }
        Some(TransportSlice::Icmpv6(i)) => {
            let _ = write!(out, " ICMPv6 type {} code {}", i.type_u8(), i.code_u8());
        }
        None => {}
    }
    out
}
