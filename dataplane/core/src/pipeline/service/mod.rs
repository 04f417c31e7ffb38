//! svc-in and svc-out: where services meet packets (IPv4 and IPv6).
//!
//! svc-in runs after ip4-input (and nat44-in) and ip6-input over packets
//! routed onward to a service address. A flow the connection table knows keeps its
//! backend while that backend is active or draining; a new flow (or a UDP
//! flow, or a new TCP connection, whose backend was removed) gets one from
//! the service's Maglev table (or its client's, with client-IP affinity);
//! a TCP segment in the middle of a connection whose backend was removed
//! is answered with a reset from the service's address. The destination
//! becomes the backend and its target port, and the lookup routes it there
//! like any packet. The client's address reaches the backend unchanged,
//! unless the client sits on the backend's own segment (hairpin): then its
//! source becomes the interface's address, the backend answers that
//! address, and svc-in (which ip4-input hands such an answer to) sends it
//! back to the client from the service.
//!
//! svc-out runs after ip-lookup, before nat44-out, over packets from a
//! backend: a reply to a flow of a service gets the service's address and
//! port back as its source, so the client sees only the service (and NAT
//! leaves it alone, as it is not an inside source).
//!
//! Each worker has its own connection table. A flow belongs to the worker
//! its client's address names (`handoff::address_owner`), which also holds
//! the client's affinity; the other workers hand it its packets both ways
//! (the reply by its destination, the client). A hairpinned flow's
//! gateway port is one that names its owner (`handoff::port_for`), so the
//! backend's answer to that port finds it.

mod packet;

use std::hash::BuildHasher;
use std::net::IpAddr;

use foldhash::fast::FixedState;

use super::handoff::{hand_off, owner_of, port_for, port_owner};
use super::{Output, Tables};
use crate::nat::{End, Proto, Sum};
use crate::packet::{Meta, Next, Origin, Packet, Resume};
use crate::service::{
    affinity_key, hairpin_key, reply_key, BackendState, Flow, FlowKey, ServiceKind,
};
use crate::stats::DropReason;
use packet::{addrs, seen, set_endpoint, tcp_segment, write_reset, Seen};

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// The flow hash Maglev picks by (fixed: every worker picks alike).
fn flow_hash(key: &FlowKey) -> u64 {
    FixedState::with_seed(0x7376_6368_6173_6801).hash_one(key)
}

/// svc-in over a burst.
pub(super) fn input(t: &mut Tables, out: &mut Output, pkts: &mut [Packet]) {
    if t.svc.is_empty() {
        return;
    }
    for p in pkts.iter_mut().filter(|p| p.meta.next == Next::IpLookup) {
        let Some((src, dst)) = addrs(p.l3()) else {
            continue;
        };
        if t.svc.is_backend(src) && t.ports.is_local(dst) {
            // An answer to a hairpinned flow: its port names the owner.
            let owner = seen(p.l3()).map(|f| port_owner(f.dst.1, t.workers));
            match hand_off(t, p, owner, Resume::SvcIn) {
                Some(next) => p.meta.next = next,
                // Handed over on its port alone, it may be for the
                // appliance after all: delivered as ip-input would.
                None if !hairpin_back(t, out, p) => p.meta.next = deliver(t, out, p),
                None => {}
            }
            continue;
        }
        if let Some(i) = t.svc.at(dst) {
            if let Some(next) = hand_off(t, p, Some(owner_of(src, t.workers)), Resume::SvcIn) {
                p.meta.next = next;
                continue;
            }
            let next = to_service(t, out, p, i);
            let bytes = p.l3().len() as u64;
            let c = t.svc.counters_mut(i);
            match next {
                Next::Drop(r) => {
                    let k = match r {
                        DropReason::ServiceNoPort => 0,
                        DropReason::ServiceNoBackend => 1,
                        DropReason::ServiceOutsideCluster => 2,
                        _ => 3,
                    };
                    c.drops[k] += 1;
                }
                _ => {
                    c.packets += 1;
                    c.bytes += bytes;
                    if let Some((_, b)) = addrs(p.l3()) {
                        let per = c.backend(b);
                        per[1] += 1;
                        per[2] += bytes;
                    }
                }
            }
            p.meta.next = next;
        }
    }
}

fn to_service(t: &mut Tables, out: &mut Output, p: &mut Packet, i: usize) -> Next {
    let Some(Seen {
        proto,
        src,
        dst,
        flags,
    }) = seen(p.l3())
    else {
        return Next::Drop(DropReason::ServiceNoPort);
    };
    let vip = dst.0;
    let kind = t.svc.config(i).kind;
    let internal = p.meta.origin != Origin::Received || t.svc.is_internal(p.meta.iface);
    if kind == ServiceKind::ClusterIp && !internal {
        return Next::Drop(DropReason::ServiceOutsideCluster);
    }
    let Some(port) = t
        .svc
        .config(i)
        .ports
        .iter()
        .find(|sp| sp.proto == proto && sp.port == dst.1)
        .copied()
    else {
        return Next::Drop(DropReason::ServiceNoPort);
    };
    let proto_n = proto.ip_number();
    let key = FlowKey::new(proto_n, src, dst);
    let now = out.now.whole_secs();
    let known = t.svc.flows.lookup(&key, now, flags).map(|f| {
        let addr = f.address();
        (addr, t.svc.state_of(i, addr), f.aux)
    });
    // The backend, and the endpoint the client is sourced from when not
    // its own: a hairpinned client's gateway address and port, or its own
    // address with another port (a clash, see `clash_port`).
    let (backend, source) = match known {
        Some((addr, BackendState::Active | BackendState::Draining, hp)) => {
            let hp_port = hp.checked_sub(1).map(|p| p as u16);
            let gw = hp_port.and_then(|_| hairpin_gateway(t, p.meta.iface, addr));
            let source = hp_port.map(|p| (gw.unwrap_or(src.0), p));
            if proto == Proto::Tcp && flags & (SYN | ACK) == SYN && gw.is_none() {
                // A new connection on the tuple of a closed one: its reply
                // entry starts afresh too (svc-out takes a backend's SYN
                // on a closed entry for another connection's).
                let service = (i, dst);
                note_reply(t, proto_n, (addr, port.target), src, service, source, now);
            }
            (addr, source)
        }
        // A TCP connection in its middle cannot move: its new backend
        // would answer with a reset.
        Some((_, BackendState::Removed, _))
            if proto == Proto::Tcp && flags & (SYN | ACK) != SYN =>
        {
            t.svc.flows.remove(&key);
            if flags & RST == 0 {
                reset(out, p, dst, src);
            }
            return Next::Drop(DropReason::ServiceBackendGone);
        }
        _ => {
            let affinity = t.svc.config(i).affinity;
            let sticky = affinity.and_then(|_| {
                let a = t.svc.flows.peek(&affinity_key(src.0, vip), now)?.address();
                (t.svc.state_of(i, a) == BackendState::Active).then_some(a)
            });
            let picked = sticky.or_else(|| t.svc.pick(i, vip.is_ipv4(), flow_hash(&key)));
            let Some(addr) = picked else {
                return Next::Drop(DropReason::ServiceNoBackend);
            };
            if let Some(seconds) = affinity {
                let entry = Flow::to(i as u32, addr, 0);
                t.svc
                    .flows
                    .insert_for(affinity_key(src.0, vip), entry, now, seconds);
            }
            let target = (addr, port.target);
            let hp = hairpin_gateway(t, p.meta.iface, addr)
                .and_then(|gw| hairpin_port(t, proto_n, target, gw, src, now));
            let remap = match hp {
                None => clash_port(t, proto_n, target, src, (i, vip, dst.1), now),
                Some(_) => None,
            };
            let source = hp.or(remap.map(|p| (src.0, p)));
            let aux = source.map_or(0, |(_, p)| u32::from(p) + 1);
            t.svc
                .flows
                .insert(key, Flow::to(i as u32, addr, aux), now, flags);
            match hp {
                Some(gw) => {
                    // The reply comes to the gateway address: note who it
                    // is for (service port and client port; client address).
                    let aux = reply_aux(dst.1, Some(src.1));
                    let k = hairpin_key(proto_n, (addr, port.target), gw);
                    t.svc
                        .flows
                        .insert(k, Flow::to(i as u32, src.0, aux), now, 0);
                }
                None => note_reply(t, proto_n, target, src, (i, dst), source, now),
            }
            let c = t.svc.counters_mut(i);
            c.new_flows += 1;
            c.backend(addr)[0] += 1;
            (addr, source)
        }
    };
    let ip = usize::from(p.meta.l3);
    let sum = Sum::of(&p.meta.offload);
    set_endpoint(p.buf.frame_mut(), ip, End::Dst, (backend, port.target), sum);
    if let Some(from) = source {
        // The client shares the backend's segment (the reply would go
        // straight back past the service: from the gateway, it returns),
        // or its port clashed.
        set_endpoint(p.buf.frame_mut(), ip, End::Src, from, sum);
    }
    // Let in through a NAT outside port like a translated reply.
    p.meta.nat_in = true;
    Next::IpLookup
}

/// The gateway address a client arriving on `iface` is sourced from when
/// `backend` lies behind that same interface (hairpin), else `None`.
fn hairpin_gateway(t: &Tables, iface: crate::port::PortId, backend: IpAddr) -> Option<IpAddr> {
    let (_, group) = t.fib.lookup(backend)?;
    if group.members.first()?.port != iface {
        return None;
    }
    let port = t.ports.get(iface)?;
    match backend {
        IpAddr::V4(b) => port.source_v4(b).map(IpAddr::V4),
        IpAddr::V6(b) => port.source_v6(b).map(IpAddr::V6),
    }
}

/// A port of `gw` for a hairpinned flow from `client` to `backend`, one
/// that names this worker: the client's own if it does and is free, else
/// the next such free one (at most 64 tried).
fn hairpin_port(
    t: &Tables,
    proto: u8,
    backend: (IpAddr, u16),
    gw: IpAddr,
    client: (IpAddr, u16),
    now: u32,
) -> Option<(IpAddr, u16)> {
    let step = t.workers.max(1) as u16;
    let mut port = if t.workers > 1 {
        port_for(client.1, t.worker, t.workers)
    } else {
        client.1
    };
    for _ in 0..64 {
        match t
            .svc
            .flows
            .peek(&hairpin_key(proto, backend, (gw, port)), now)
        {
            None => return Some((gw, port)),
            Some(f) if f.address() == client.0 && reply_ports(f.aux).1 == Some(client.1) => {
                return Some((gw, port));
            }
            Some(_) if step > 1 => port = port_for(port.wrapping_add(step), t.worker, t.workers),
            Some(_) => port = port.wrapping_add(1).max(1024),
        }
    }
    None
}

/// Records the reply entry of `client`'s flow to service `i` at
/// `service` (address, port), served by `backend`: the backend answers
/// the client, or the endpoint the client was sourced from (`source`,
/// its port remapped), and the answer comes from the service.
fn note_reply(
    t: &mut Tables,
    proto: u8,
    backend: (IpAddr, u16),
    client: (IpAddr, u16),
    (i, service): (usize, (IpAddr, u16)),
    source: Option<(IpAddr, u16)>,
    now: u32,
) {
    let key = reply_key(proto, backend, source.unwrap_or(client));
    let aux = reply_aux(service.1, source.map(|_| client.1));
    let entry = Flow::to(i as u32, service.0, aux);
    t.svc.flows.insert(key, entry, now, 0);
}

/// A reply entry's `aux` (a hairpinned reply's too): the service port the
/// client came to, and the client's own port when the backend sees
/// another (a hairpin's gateway port, a remapped one).
fn reply_aux(vport: u16, client_port: Option<u16>) -> u32 {
    u32::from(vport) << 16 | u32::from(client_port.unwrap_or(0))
}

/// What [`reply_aux`] holds.
fn reply_ports(aux: u32) -> (u16, Option<u16>) {
    ((aux >> 16) as u16, Some(aux as u16).filter(|&p| p != 0))
}

/// Another port for `client` when the backend-side tuple of its new flow
/// to service `i` at (`vip`, `vport`) is another flow's: a live reply
/// entry from `backend` to `client` that answers for another service
/// address or port. The backend may hold that tuple in TIME_WAIT from the
/// other connection and refuse the new SYN (the client's timestamps
/// differ by destination), and the reply entry can serve only one flow;
/// so, as the kernel's NAT does on such a clash, the client is given
/// another source port: the next free one up (at most 64 tried). `None`
/// when there is no clash (or no free port).
fn clash_port(
    t: &Tables,
    proto: u8,
    backend: (IpAddr, u16),
    client: (IpAddr, u16),
    (i, vip, vport): (usize, IpAddr, u16),
    now: u32,
) -> Option<u16> {
    let ours =
        |f: &Flow| f.service == i as u32 && f.address() == vip && f.aux == reply_aux(vport, None);
    match t.svc.flows.peek(&reply_key(proto, backend, client), now) {
        Some(f) if !ours(&f) => {}
        _ => return None,
    }
    let mut port = client.1;
    for _ in 0..64 {
        port = port.wrapping_add(1).max(1024);
        let key = reply_key(proto, backend, (client.0, port));
        if t.svc.flows.peek(&key, now).is_none() {
            return Some(port);
        }
    }
    None
}

/// True when `p` (addressed to one of the appliance's own addresses) is a
/// backend's reply to a hairpinned flow: it goes on to svc-in, not to the
/// appliance.
pub(super) fn is_hairpin_reply(t: &Tables, p: &Packet, now: crate::time::Time) -> bool {
    if t.svc.is_empty() {
        return false;
    }
    let Some(Seen {
        proto, src, dst, ..
    }) = seen(p.l3())
    else {
        return false;
    };
    // Another worker's flow, from a port services target (not a ping, not
    // the backend's own connection to the appliance): svc-in hands it
    // over, and the owner looks.
    let theirs = t.workers > 1
        && proto != Proto::Icmp
        && t.svc.targets(proto.ip_number(), src.1)
        && port_owner(dst.1, t.workers) != t.worker;
    t.svc.is_backend(src.0)
        && (theirs
            || t.svc
                .flows
                .peek(&hairpin_key(proto.ip_number(), src, dst), now.whole_secs())
                .is_some())
}

/// Local delivery of `p`, addressed to the appliance.
fn deliver(t: &mut Tables, out: &mut Output, p: &mut Packet) -> Next {
    if let Some(h) = crate::packet::view::Ipv4View::new_checked(p.l3()) {
        let (proto, hl) = (h.protocol(), h.header_len());
        let fragment = h.more_fragments() || h.frag_offset() != 0;
        let mirrored = t.mirrors.has(p.meta.iface);
        return super::ip4_input::deliver_local(
            p,
            proto,
            fragment,
            hl,
            mirrored,
            &mut out.stats.local,
        );
    }
    super::ip6_input::deliver_to_appliance(t, out, p)
}

/// A backend's reply to a hairpinned flow: back from the service to its
/// client. False when there is no such flow.
fn hairpin_back(t: &mut Tables, out: &Output, p: &mut Packet) -> bool {
    let Some(Seen {
        proto,
        src,
        dst,
        flags,
    }) = seen(p.l3())
    else {
        return false;
    };
    let proto_n = proto.ip_number();
    let now = out.now.whole_secs();
    let Some(f) = t
        .svc
        .flows
        .lookup(&hairpin_key(proto_n, src, dst), now, flags)
    else {
        return false;
    };
    let (vport, port) = reply_ports(f.aux);
    let client = (f.address(), port.unwrap_or(0));
    as_service(
        t,
        p,
        f.service as usize,
        (vport, client),
        src.0,
        (proto_n, now, flags),
        true,
    );
    true
}

/// A backend's answer (from `backend`) to `client` of service `i` at
/// service port `vport`: the client's flow hears of the server's flags
/// too (its SYN-ACK makes the connection established), the answer comes
/// from the service (and goes to the client itself, for a hairpinned one,
/// `to_client`), and the service and backend count it.
fn as_service(
    t: &mut Tables,
    p: &mut Packet,
    i: usize,
    (vport, client): (u16, (IpAddr, u16)),
    backend: IpAddr,
    (proto, now, flags): (u8, u32, u8),
    to_client: bool,
) {
    let Some(vip) = t.svc.vip_of(i, backend.is_ipv4()) else {
        return;
    };
    let key = FlowKey::new(proto, client, (vip, vport));
    t.svc.flows.lookup(&key, now, flags);
    let ip = usize::from(p.meta.l3);
    let sum = Sum::of(&p.meta.offload);
    set_endpoint(p.buf.frame_mut(), ip, End::Src, (vip, vport), sum);
    if to_client {
        set_endpoint(p.buf.frame_mut(), ip, End::Dst, client, sum);
    }
    let bytes = p.l3().len() as u64;
    let c = t.svc.counters_mut(i);
    c.packets += 1;
    c.bytes += bytes;
    let per = c.backend(backend);
    per[1] += 1;
    per[2] += bytes;
}

/// Answers a TCP segment from `client` to the service endpoint `from`
/// with a reset (RFC 9293 3.10.7.1: its sequence number is the segment's
/// acknowledgment, or it acknowledges the segment), so that a client
/// whose backend was removed learns at once instead of timing out.
fn reset(out: &mut Output, orig: &Packet, from: (IpAddr, u16), client: (IpAddr, u16)) {
    let Some(tcp) = tcp_segment(orig.l3()) else {
        return;
    };
    let word = |at: usize| u32::from_be_bytes([tcp[at], tcp[at + 1], tcp[at + 2], tcp[at + 3]]);
    let (seg_seq, seg_ack, flags) = (word(4), word(8), tcp[13]);
    let seg_len = (tcp.len().saturating_sub(usize::from(tcp[12] >> 4) * 4)) as u32
        + u32::from(flags & SYN != 0)
        + u32::from(flags & 0x01 != 0);
    let answer = if flags & ACK != 0 {
        (seg_ack, 0, RST)
    } else {
        (0, seg_seq.wrapping_add(seg_len), RST | ACK)
    };
    let mut buf = out.pool.get();
    buf.set_len(buf.capacity().min(128));
    let len = write_reset(buf.frame_mut(), from, client, answer);
    buf.set_len(len);
    let mut meta = Meta::received(orig.meta.rx_port, out.now);
    meta.iface = orig.meta.iface;
    meta.origin = Origin::Generated;
    meta.next = Next::IpLookup;
    out.generated.push(Packet { buf, meta });
}

/// svc-out over a burst: replies from backends get their service's
/// address back.
pub(super) fn output(t: &mut Tables, out: &mut Output, pkts: &mut [Packet]) {
    if t.svc.is_empty() {
        return;
    }
    let now = out.now.whole_secs();
    for p in pkts.iter_mut().filter(|p| p.meta.next == Next::IpRewrite) {
        let Some((src, _)) = addrs(p.l3()) else {
            continue;
        };
        if !t.svc.is_backend(src) {
            continue;
        }
        let Some(Seen {
            proto,
            src,
            dst,
            flags,
        }) = seen(p.l3())
        else {
            continue;
        };
        let proto_n = proto.ip_number();
        // A reply to a client another worker owns goes to it.
        if t.svc.targets(proto_n, src.1) {
            let owner = Some(owner_of(dst.0, t.workers));
            if let Some(next) = hand_off(t, p, owner, Resume::Out) {
                p.meta.next = next;
                continue;
            }
        }
        let key = reply_key(proto_n, src, dst);
        // A backend's SYN on the entry of a closed connection answers a
        // connection made to it directly, not through the service (a new
        // one through the service renewed the entry in svc-in): it passes
        // as it is, and the stale entry goes.
        if proto == Proto::Tcp && flags & SYN != 0 {
            if let Some(f) = t.svc.flows.peek(&key, now) {
                if f.closing() {
                    t.svc.flows.remove(&key);
                    continue;
                }
            }
        }
        let Some(f) = t.svc.flows.lookup(&key, now, flags) else {
            continue;
        };
        // A client whose port was remapped gets its own back.
        let (vport, remapped) = reply_ports(f.aux);
        let client = (dst.0, remapped.unwrap_or(dst.1));
        as_service(
            t,
            p,
            f.service as usize,
            (vport, client),
            src.0,
            (proto_n, now, flags),
            remapped.is_some(),
        );
    }
}
