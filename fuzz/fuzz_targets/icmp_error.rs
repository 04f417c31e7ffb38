//! ICMP errors with embedded packets through NAT, both ways: a VM opens a
//! flow (TCP, UDP or echo) out of Port2; then either a host outside sends
//! an error about the packet that left, or the VM sends one about the reply
//! it got. Any error type and code, any quote length, one byte of the
//! message damaged (with or without a checksum to match), or an error about
//! an error.
//!
//! Invariants, beside `edgefwd_fuzz::run`'s: a valid message causes only
//! frames valid at every layer; an error that gets through quotes exactly the inside view
//! (inbound: the VM's own endpoint to the remote, outer destination the VM)
//! or exactly the outside view (outbound: from the remote to the external
//! endpoint, outer source the external address); an error with a wrong
//! checksum, or about an error, never gets through; an undamaged error with
//! a full quote from a usable source always does.
#![no_main]

use std::net::Ipv4Addr;

use edgefwd_core::packet::check::check_frame;
use edgefwd_fuzz::{
    assert_valid, checksum, Rig, HOST_MAC, HOST_V4, OUR_V4, PORT2, PORT_MAC, VM1, VM2,
};
use etherparse::PacketBuilder;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Kind {
    Udp,
    Tcp,
    Echo,
}

#[derive(Arbitrary, Debug)]
enum From {
    /// The remote host itself.
    Remote,
    /// One of a few routers on the way.
    Router(u8),
    /// Any address at all (martian, the appliance's own, an inside one).
    Raw([u8; 4]),
}

const ROUTERS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 0, 2, 1),
    Ipv4Addr::new(203, 0, 113, 1),
    Ipv4Addr::new(192, 0, 2, 254),
];

#[derive(Arbitrary, Debug)]
struct Input {
    kind: Kind,
    vm2: bool,
    sport: u16,
    remote: u8,
    dport: u16,
    /// The error comes from outside (else from the VM).
    inbound: bool,
    from: From,
    typ: u8,
    code: u8,
    /// Bytes 4..8 of the error (unused, pointer or next-hop MTU).
    rest: [u8; 4],
    /// Bytes of the quoted packet kept after its IP header.
    quote: u8,
    /// The error quotes an error about the packet instead.
    nested: bool,
    /// One byte of the ICMP message XORed, and whether the checksum is
    /// then made to match.
    damage: Option<(u8, u8, bool)>,
}

type End = (Ipv4Addr, u16);

fn flow(kind: Kind, smac: [u8; 6], dmac: [u8; 6], src: End, dst: End, reply: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(smac, dmac).ipv4(src.0.octets(), dst.0.octets(), 64);
    let mut v = Vec::new();
    let payload = b"fuzz";
    match kind {
        Kind::Tcp if reply => b
            .tcp(src.1, dst.1, 7, 1000)
            .syn()
            .ack(1)
            .write(&mut v, payload),
        Kind::Tcp => b.tcp(src.1, dst.1, 1, 1000).syn().write(&mut v, payload),
        Kind::Udp => b.udp(src.1, dst.1).write(&mut v, payload),
        Kind::Echo if reply => b.icmpv4_echo_reply(dst.1, 1).write(&mut v, payload),
        Kind::Echo => b.icmpv4_echo_request(src.1, 1).write(&mut v, payload),
    }
    .expect("flow frame");
    v
}

/// An ICMP error frame from `src` to `dst` quoting the IP packet `ip`.
fn error(
    i: &Input,
    smac: [u8; 6],
    dmac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ip: &[u8],
) -> Vec<u8> {
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let quote = &ip[..ip.len().min(hl + usize::from(i.quote))];
    let mut msg = vec![i.typ, i.code, 0, 0];
    msg.extend_from_slice(&i.rest);
    msg.extend_from_slice(quote);
    let c = checksum(&msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    if let Some((at, x, fix)) = i.damage {
        let at = usize::from(at) % msg.len();
        msg[at] ^= x;
        if fix {
            msg[2..4].fill(0);
            let c = checksum(&msg);
            msg[2..4].copy_from_slice(&c.to_be_bytes());
        }
    }
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src.octets(), dst.octets(), 64)
        .write(&mut v, etherparse::IpNumber::ICMP, &msg)
        .expect("error frame");
    v
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn v4(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// (outer source, outer destination, quoted source, quoted destination) of
/// an ICMP error frame, when it is one.
fn error_ends(f: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, End, End)> {
    let ip = f.get(14..)?;
    if f[12..14] != [8, 0] || ip.get(9) != Some(&1) {
        return None;
    }
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let msg = ip.get(hl..)?;
    if !matches!(msg.first(), Some(3 | 11 | 12)) {
        return None;
    }
    let q = msg.get(8..)?;
    let qhl = usize::from(*q.first()? & 0x0f) * 4;
    let l4 = q.get(qhl..qhl + 8)?;
    let (sp, dp) = if q[9] == 1 {
        (be16(l4, 4), be16(l4, 4))
    } else {
        (be16(l4, 0), be16(l4, 2))
    };
    Some((v4(ip, 12), v4(ip, 16), (v4(q, 12), sp), (v4(q, 16), dp)))
}

fuzz_target!(|i: Input| {
    let mut rig = Rig::new();
    let (vm, vm_port) = if i.vm2 {
        (HOST_V4[4], VM2)
    } else {
        (HOST_V4[3], VM1)
    };
    let (vm_mac, gw_if_mac) = (
        HOST_MAC[usize::from(vm_port)],
        PORT_MAC[usize::from(vm_port)],
    );
    let (ext, up_mac, gw_mac) = (OUR_V4[0], PORT_MAC[0], HOST_MAC[0]);
    let sport = if i.kind == Kind::Tcp || i.kind == Kind::Udp {
        i.sport | 1
    } else {
        i.sport
    };
    let dport = if i.kind == Kind::Echo {
        sport
    } else {
        i.dport | 1
    };
    let remote = (Ipv4Addr::new(198, 51, 100, 1 + i.remote % 8), dport);

    // The flow out: what left Port2 tells the external port.
    let out = rig.feed(
        vm_port,
        &flow(i.kind, vm_mac, gw_if_mac, (vm, sport), remote, false),
    );
    let left = match &out[..] {
        [(PORT2, f)] => f.clone(),
        other => panic!("the first packet of a flow did not leave by Port2: {other:02x?}"),
    };
    let ext_port = if i.kind == Kind::Echo {
        be16(&left, 14 + 20 + 4)
    } else {
        be16(&left, 14 + 20)
    };

    let (to_port, frame, expect) = if i.inbound {
        let from = match i.from {
            From::Remote => remote.0,
            From::Router(n) => ROUTERS[usize::from(n) % ROUTERS.len()],
            From::Raw(a) => Ipv4Addr::from(a),
        };
        let mut quoted = left[14..].to_vec();
        if i.nested {
            quoted = error(&i, gw_mac, up_mac, from, ext, &quoted)[14..].to_vec();
        }
        let e = error(&i, gw_mac, up_mac, from, ext, &quoted);
        // The VM sees the error about its own packet.
        (vm_port, e, (from, vm, (vm, sport), remote))
    } else {
        let got = rig.feed(
            PORT2,
            &flow(i.kind, gw_mac, up_mac, remote, (ext, ext_port), true),
        );
        let came = match &got[..] {
            [(p, f)] if *p == vm_port => f.clone(),
            other => panic!("the reply did not reach the VM: {other:02x?}"),
        };
        let mut quoted = came[14..].to_vec();
        if i.nested {
            quoted = error(&i, vm_mac, gw_if_mac, vm, remote.0, &quoted)[14..].to_vec();
        }
        let e = error(&i, vm_mac, gw_if_mac, vm, remote.0, &quoted);
        // The remote sees the error about what it sent, from the external
        // address.
        (PORT2, e, (ext, remote.0, remote, (ext, ext_port)))
    };
    let valid_sum = i.damage.is_none_or(|(_, x, fix)| fix || x == 0);
    let sent = rig.feed(if i.inbound { PORT2 } else { vm_port }, &frame);
    let mut through = 0;
    let frame_valid = check_frame(&frame).is_ok();
    for (port, f) in &sent {
        // A router passes on a damaged packet that is not an error (and so
        // is not translated by summing again) as it came.
        if frame_valid {
            assert_valid(*port, f);
        }
        if *port != to_port {
            continue;
        }
        let Some(ends) = error_ends(f) else { continue };
        through += 1;
        assert!(valid_sum, "an error with a wrong checksum got through");
        assert!(!i.nested, "an error about an error got through");
        // The translated fields are exact; with a damaged quote, the rest
        // is what the sender wrote.
        let (translated, want) = if i.inbound {
            ((ends.1, ends.2), (expect.1, expect.2))
        } else {
            ((ends.0, ends.3), (expect.0, expect.3))
        };
        assert_eq!(translated, want, "translated wrongly: {f:02x?}");
        if i.damage.is_none_or(|(_, x, _)| x == 0) {
            assert_eq!(ends, expect, "translated wrongly: {f:02x?}");
        }
    }
    let full = i.damage.is_none_or(|(_, x, _)| x == 0)
        && !(i.inbound && matches!(i.from, From::Raw(_)))
        && !i.nested
        && matches!(i.typ, 3 | 11 | 12)
        && i.quote >= 8;
    if full {
        assert_eq!(
            through, 1,
            "an undamaged error did not get through: {frame:02x?}"
        );
    }
    rig.finish();
});
