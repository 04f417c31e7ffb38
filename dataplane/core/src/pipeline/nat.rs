//! nat44-in and nat44-out: where the NAT table meets packets.
//!
//! nat44-in is the stage after ip4-input for packets addressed to an
//! external address: a reply to a mapping (or a hairpinned packet from
//! inside) gets its inside destination and goes on to the lookup like any
//! transit packet; everything else stays the appliance's own (a ping to the
//! external address is answered). nat44-out runs between ip-lookup and
//! ip-rewrite for packets leaving by an outside port: an inside source gets
//! the external address and its mapping's port. Both run before the TTL
//! decrement and after the MTU check, so the ICMP errors those produce
//! quote the packet as its sender wrote it.

use std::net::Ipv4Addr;

use super::handoff::{address_owner, hand_off};
use super::icmp::{self, v4};
use super::{Output, Scratch, Tables};
use crate::nat::{
    icmp_checksum_ok, parse, set_endpoint, translate_error, End, Flow, Parsed, Proto, Sum,
};
use crate::packet::view::Ipv4View;
use crate::packet::{Next, Origin, Packet, Resume};
use crate::port::PortId;
use crate::stats::DropReason;
use crate::time::Time;

/// True when `dst` is a NAT instance's external address.
pub(super) fn is_external(t: &Tables, dst: Ipv4Addr) -> bool {
    t.nat.iter().any(|n| n.config().external == dst)
}

/// nat44-in over a burst: the packets ip4-input found addressed to an
/// external address (their headers already checked).
pub(super) fn input_stage(t: &mut Tables, out: &mut Output, pkts: &mut [Packet]) {
    for p in pkts.iter_mut() {
        if p.meta.next == Next::Nat44Hairpin {
            p.meta.next = hairpin_target(t, out.now, p);
            continue;
        }
        if p.meta.next != Next::Nat44In {
            continue;
        }
        let Some(h) = Ipv4View::new_checked(p.l3()) else {
            p.meta.next = Next::Drop(DropReason::Ip4Malformed);
            continue;
        };
        let (src, dst, ttl, proto, hl) = (h.src(), h.dst(), h.ttl(), h.protocol(), h.header_len());
        let fragment = h.more_fragments() || h.frag_offset() != 0;
        p.meta.next = match input(t, out, p, (src, dst), ttl) {
            Some(next) => next,
            None => {
                let mirrored = t.mirrors.has(p.meta.iface);
                super::ip4_input::deliver_local(
                    p,
                    proto,
                    fragment,
                    hl,
                    mirrored,
                    &mut out.stats.local,
                )
            }
        };
    }
}

/// nat44-in for `p`, from `src` to `dst`, one of the appliance's addresses
/// (ip4-input read both, and the TTL): `None` when NAT leaves it to local
/// delivery.
fn input(
    t: &mut Tables,
    out: &mut Output,
    p: &mut Packet,
    (src, dst): (Ipv4Addr, Ipv4Addr),
    ttl: u8,
) -> Option<Next> {
    let i = t.nat.iter().position(|n| n.config().external == dst)?;
    let ip = usize::from(p.meta.l3);
    let (outside, external) = (t.nat[i].config().outside, t.nat[i].config().external);
    let hairpin = t.nat[i].is_inside(src);
    if p.meta.iface == outside && hairpin {
        // An inside source cannot arrive from outside: a spoofed packet
        // must not make mappings or reach the inside as if hairpinned.
        return Some(Next::Drop(DropReason::SpoofedSource));
    }
    if p.meta.iface != outside && !hairpin {
        return None;
    }
    let translate = match parse(p.l3()) {
        Parsed::Fragment => return Some(Next::Drop(DropReason::NatFragment)),
        Parsed::Other => return None,
        // A ping to the external address is for the appliance.
        Parsed::Flow {
            proto: Proto::Icmp,
            request: true,
            ..
        } => return None,
        Parsed::Error { src: q_src, .. } if q_src.0 != external || hairpin => return None,
        translate => translate,
    };
    // The flow's owner translates it: for a hairpin the sender's (it holds
    // the sender's mapping), else the holder of the external port.
    let owner = match translate {
        _ if hairpin => Some(address_owner(src, t.workers)),
        Parsed::Flow { proto, dst, .. } => t.nat[i].claims().owner(proto, dst.1),
        Parsed::Error { proto, src, .. } => t.nat[i].claims().owner(proto, src.1),
        Parsed::Fragment | Parsed::Other => None,
    };
    // A port no mapping holds, on an outside port with a host mirror, is
    // the host's own traffic (its sockets, its routing daemons).
    if owner.is_none() && !hairpin && t.mirrors.has(outside) {
        return None;
    }
    if let Some(next) = hand_off(t, p, owner, Resume::Nat44In) {
        return Some(next);
    }
    if ttl <= 1 {
        icmp::error4(out, p, v4::TIME_EXCEEDED, 0, 0);
        return Some(Next::Drop(DropReason::TtlExpired));
    }
    let now = out.now;
    let sum = Sum::of(&p.meta.offload);
    match translate {
        Parsed::Flow {
            proto,
            src,
            dst,
            flags,
            ..
        } => {
            if hairpin {
                // The sender's own mapping first: the target sees the
                // external address and port, as from outside (REQ-9).
                let table = t.nat[i].table_mut();
                let ext = match table.outbound(proto, src, (external, dst.1), flags, now) {
                    Ok(ext) => ext,
                    Err(reason) => return Some(Next::Drop(reason)),
                };
                set_endpoint(p.buf.frame_mut(), ip, End::Src, (external, ext), sum);
                // The target's mapping may live on another worker.
                let target = t.nat[i].claims().owner(proto, dst.1);
                if let Some(next) = hand_off(t, p, target, Resume::Nat44Hairpin) {
                    return Some(next);
                }
                let table = t.nat[i].table_mut();
                let to = match table.inbound(proto, dst.1, (external, ext), flags, now) {
                    Ok(to) => to,
                    Err(reason) => return Some(Next::Drop(reason)),
                };
                set_endpoint(p.buf.frame_mut(), ip, End::Dst, to, sum);
            } else {
                match t.nat[i].table_mut().inbound(proto, dst.1, src, flags, now) {
                    Ok(to) => set_endpoint(p.buf.frame_mut(), ip, End::Dst, to, sum),
                    Err(reason) => return Some(Next::Drop(reason)),
                }
            }
        }
        Parsed::Error {
            proto,
            src: q_src,
            dst: q_dst,
            inner,
        } => {
            // The quoted packet left from external port q_src.1 to q_dst.
            if !icmp_checksum_ok(p.l3()) {
                return Some(Next::Drop(DropReason::IcmpMalformed));
            }
            let Some(to) = t.nat[i].table().peek_inbound(proto, q_src.1, q_dst.0, now) else {
                return Some(Next::Drop(DropReason::NatNoSession));
            };
            translate_error(p.l3_mut(), Some((End::Dst, to.0)), inner, End::Src, to);
        }
        Parsed::Fragment | Parsed::Other => {}
    }
    p.meta.nat_in = true;
    Some(Next::IpLookup)
}

/// The second half of a hairpin another worker began (it gave the packet
/// the sender's external address and port): the target's mapping gives it
/// its inside destination.
fn hairpin_target(t: &mut Tables, now: Time, p: &mut Packet) -> Next {
    let Some(dst) = Ipv4View::new_checked(p.l3()).map(|h| h.dst()) else {
        return Next::Drop(DropReason::Ip4Malformed);
    };
    let Some(i) = t.nat.iter().position(|n| n.config().external == dst) else {
        return Next::Drop(DropReason::NatNoSession);
    };
    let Parsed::Flow {
        proto,
        src,
        dst,
        flags,
        ..
    } = parse(p.l3())
    else {
        return Next::Drop(DropReason::NatNoSession);
    };
    let (ip, sum) = (usize::from(p.meta.l3), Sum::of(&p.meta.offload));
    match t.nat[i].table_mut().inbound(proto, dst.1, src, flags, now) {
        Ok(to) => {
            set_endpoint(p.buf.frame_mut(), ip, End::Dst, to, sum);
            p.meta.nat_in = true;
            Next::IpLookup
        }
        Err(reason) => Next::Drop(reason),
    }
}

/// nat-out over a burst: each instance's translatable flows are looked up
/// together ([`Table::outbound_burst`]), then rewritten.
///
/// [`Table::outbound_burst`]: crate::nat::Table::outbound_burst
pub(super) fn output(t: &mut Tables, out: &mut Output, s: &mut Scratch, pkts: &mut [Packet]) {
    if t.nat.is_empty() {
        return;
    }
    for p in pkts.iter_mut().filter(|p| p.meta.next == Next::IpRewrite) {
        if unsolicited(t, p) {
            p.meta.next = Next::Drop(DropReason::NatFiltered);
        }
    }
    let (mut flows, mut at, mut answers) = (
        std::mem::take(&mut s.nat_flows),
        std::mem::take(&mut s.nat_at),
        std::mem::take(&mut s.nat_answers),
    );
    for i in 0..t.nat.len() {
        let outside = t.nat[i].config().outside;
        flows.clear();
        at.clear();
        for (k, p) in pkts.iter_mut().enumerate() {
            if p.meta.next != Next::IpRewrite || p.meta.tx_port != outside {
                continue;
            }
            match out_one(t, out.now, i, p) {
                Out::Leave => {}
                Out::Next(next) => p.meta.next = next,
                Out::Translate(flow) => {
                    let owner = Some(address_owner(flow.src.0, t.workers));
                    if let Some(next) = hand_off(t, p, owner, Resume::Out) {
                        p.meta.next = next;
                        continue;
                    }
                    flows.push(flow);
                    at.push(k);
                }
            }
        }
        if flows.is_empty() {
            continue;
        }
        let (now, external) = (out.now, t.nat[i].config().external);
        t.nat[i]
            .table_mut()
            .outbound_burst(&flows, now, &mut answers);
        for (&k, answer) in at.iter().zip(&answers) {
            let p = &mut pkts[k];
            match *answer {
                Ok(ext) => {
                    let (ip, sum) = (usize::from(p.meta.l3), Sum::of(&p.meta.offload));
                    set_endpoint(p.buf.frame_mut(), ip, End::Src, (external, ext), sum);
                }
                Err(reason) => {
                    icmp::error4(out, p, v4::DEST_UNREACH, v4::CODE_ADMIN_PROHIBITED, 0);
                    p.meta.next = Next::Drop(reason);
                }
            }
        }
    }
    s.nat_flows = flows;
    s.nat_at = at;
    s.nat_answers = answers;
}

/// What nat-out does with one packet.
enum Out {
    /// Nothing: it leaves as it is.
    Leave,
    /// Done here: its next stage or drop.
    Next(Next),
    /// A flow to translate with the burst.
    Translate(Flow),
}

/// True when `port` is some NAT instance's outside, whose traffic nat-in
/// and nat-out filter and translate.
#[inline]
pub(super) fn is_outside(t: &Tables, port: PortId) -> bool {
    t.nat.iter().any(|n| n.config().outside == port)
}

/// True for a packet that came in by an outside port and is routed to an
/// inside address without nat-in having translated it: someone outside
/// routing to the inside subnet directly. Masquerade lets nothing
/// unsolicited in, whatever the outside routes.
fn unsolicited(t: &Tables, p: &Packet) -> bool {
    if p.meta.nat_in || p.meta.origin != Origin::Received || !is_outside(t, p.meta.iface) {
        return false;
    }
    let Some(dst) = Ipv4View::new_checked(p.l3()).map(|h| h.dst()) else {
        return false;
    };
    t.nat
        .iter()
        .any(|n| n.config().outside == p.meta.iface && n.is_inside(dst))
}

/// nat-out of `p` through instance `i`, at `now`.
fn out_one(t: &Tables, now: Time, i: usize, p: &mut Packet) -> Out {
    let Some(src) = Ipv4View::new_checked(p.l3()).map(|h| h.src()) else {
        return Out::Leave;
    };
    let external = t.nat[i].config().external;
    let inside = t.nat[i].is_inside(src);
    match parse(p.l3()) {
        Parsed::Flow {
            proto,
            src,
            dst,
            flags,
            request,
        } if inside => {
            if proto == Proto::Icmp && !request {
                return Out::Next(Next::Drop(DropReason::NatUnsupportedProtocol));
            }
            Out::Translate(Flow {
                proto,
                src,
                dst,
                flags,
            })
        }
        Parsed::Error {
            proto,
            src: q_src,
            dst: q_dst,
            inner,
        } if t.nat[i].is_inside(q_dst.0) => {
            // The quoted packet came in to inside endpoint q_dst from q_src
            // (the error comes from that inside host, or from the appliance
            // about a packet it translated).
            if !icmp_checksum_ok(p.l3()) {
                return Out::Next(Next::Drop(DropReason::IcmpMalformed));
            }
            let owner = Some(address_owner(q_dst.0, t.workers));
            if let Some(next) = hand_off(t, p, owner, Resume::Out) {
                return Out::Next(next);
            }
            let Some(ext) = t.nat[i].table().peek_outbound(proto, q_dst, q_src.0, now) else {
                return Out::Next(Next::Drop(DropReason::NatNoSession));
            };
            let outer = inside.then_some((End::Src, external));
            translate_error(p.l3_mut(), outer, inner, End::Dst, (external, ext));
            Out::Leave
        }
        Parsed::Error { .. } if inside => Out::Next(Next::Drop(DropReason::NatNoSession)),
        Parsed::Fragment if inside => Out::Next(Next::Drop(DropReason::NatFragment)),
        Parsed::Other if inside => Out::Next(Next::Drop(DropReason::NatUnsupportedProtocol)),
        _ => Out::Leave,
    }
}
