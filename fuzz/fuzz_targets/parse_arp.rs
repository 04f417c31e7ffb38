//! The ARP parser (arp-input, and the switches' port security for ARP) on
//! a sequence of structured messages: any operation, sender and target,
//! one header field overwritten, trailing bytes, cut anywhere.
//!
//! Invariants, beside `edgefwd_fuzz::run`'s: every ARP frame the router
//! sends (a switch passes others' on as they came) is a
//! reply from the port's MAC, saying that an address of that port is at
//! that MAC, to a host that asked for exactly that address on that port's
//! segment;
//! and a well-formed request for a routed port's address from a unicast
//! sender is always answered (ARP replies are never rate-limited away).
#![no_main]

use std::net::Ipv4Addr;

use edgefwd_fuzz::{
    eth, PortId, Rig, HOST_MAC, OUR_V4, PORT2, PORT3, PORT4, PORT_MAC, RX_PORTS, V4, VM1, VM2, VM3,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Request,
    Reply,
    Other(u16),
}

#[derive(Arbitrary, Debug)]
struct Msg {
    port: u8,
    broadcast: bool,
    op: Op,
    /// The host's own MAC as the sender hardware address, else `sha`.
    from_host: bool,
    sha: [u8; 6],
    spa: V4,
    tha: [u8; 6],
    tpa: V4,
    /// One byte of the fixed header (hardware/protocol type and sizes,
    /// operation) overwritten.
    damage: Option<(u8, u8)>,
    trailer: Vec<u8>,
    cut: Option<u8>,
}

struct Sent {
    port: PortId,
    sha: [u8; 6],
    tpa: Ipv4Addr,
    /// Well-formed, from a unicast sender, for the routed port's address.
    must_answer: bool,
}

/// The L2 segment a port is on: a switch's members and its router port
/// share one (a reply to an unknown MAC is flooded to all of them).
fn segment(port: PortId) -> PortId {
    match port {
        VM3 => PORT4,
        VM2 => VM1,
        p => p,
    }
}

fuzz_target!(|msgs: Vec<Msg>| {
    let mut rig = Rig::new();
    let mut asked = Vec::new();
    for m in msgs.iter().take(16) {
        let port = u16::from(m.port) % RX_PORTS;
        let p = usize::from(port);
        let sha = if m.from_host { HOST_MAC[p] } else { m.sha };
        let (spa, tpa) = (m.spa.on(port), m.tpa.on(port));
        let dst = if m.broadcast { [0xff; 6] } else { PORT_MAC[p] };
        let mut f = eth(dst, HOST_MAC[p], 0x0806);
        let mut a = Vec::with_capacity(28);
        a.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
        let op = match m.op {
            Op::Request => 1,
            Op::Reply => 2,
            Op::Other(op) => op,
        };
        a.extend_from_slice(&u16::to_be_bytes(op));
        a.extend_from_slice(&sha);
        a.extend_from_slice(&spa.octets());
        a.extend_from_slice(&m.tha);
        a.extend_from_slice(&tpa.octets());
        if let Some((at, v)) = m.damage {
            a[usize::from(at) % 8] = v;
        }
        f.extend_from_slice(&a);
        f.extend_from_slice(&m.trailer[..m.trailer.len().min(64)]);
        if let Some(cut) = m.cut {
            f.truncate(usize::from(cut));
        }
        let intact = f.len() >= 14 + 28 && a[..8] == [0, 1, 8, 0, 6, 4, 0, 1];
        asked.push(Sent {
            port,
            sha,
            tpa,
            must_answer: intact
                && (port == PORT2 || port == PORT3)
                && sha[0] & 1 == 0
                && tpa == OUR_V4[p],
        });
        let out = rig.feed(port, &f);
        let replies: Vec<_> = out
            .iter()
            .filter(|(_, o)| o.len() >= 14 + 28 && o[12..14] == [8, 6] && *o != f)
            .collect();
        let last = asked.last().expect("just pushed");
        if last.must_answer {
            assert_eq!(replies.len(), 1, "request not answered: {m:?}");
        }
        for (out_port, r) in replies {
            let a = &r[14..];
            assert_eq!(a[..8], [0, 1, 8, 0, 6, 4, 0, 2], "not a reply: {r:02x?}");
            let op = usize::from(*out_port);
            assert_eq!(r[6..12], PORT_MAC[op], "Ethernet source");
            assert_eq!(a[8..14], PORT_MAC[op], "sender hardware address");
            let said = Ipv4Addr::new(a[14], a[15], a[16], a[17]);
            assert_eq!(said, OUR_V4[op], "an address not of port {out_port}");
            assert!(
                asked.iter().any(|q| segment(q.port) == segment(*out_port)
                    && q.tpa == said
                    && q.sha == a[18..24]
                    && r[..6] == q.sha),
                "reply to nobody who asked: {r:02x?}"
            );
        }
    }
    rig.finish();
});
