//! NAT both ways on structured input: a sequence of packets from two VMs
//! out through Port2 (TCP, UDP, ICMP echo, any ports, flags and payload),
//! and replies from outside to whatever external port an earlier packet
//! left with, all within one second (no timer runs out).
//!
//! Invariants: no panic; the accounting identity; every frame sent valid
//! at every layer (checksums included); one external port per inside
//! endpoint (endpoint-independent mapping) and never one for two (no port
//! overloading); a reply that gets in arrives at exactly the inside
//! endpoint that sent, from exactly the remote it answers.
#![no_main]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::OnceLock;

use edgefwd_fuzz::{assert_valid, Appliance, Rig};
use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

const CFG: &str = r#"
[[port]]
name = "Port2"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.15/24"]
gateway = "10.0.2.1"
[[port]]
name = "vm1"
switch = "internal"
[[port]]
name = "vm2"
switch = "internal"
[[switch]]
name = "internal"
kind = "internal"
address = "172.28.0.1/24"
mac = "02:00:00:00:28:01"
nat = "Port2"
[nat]
port_range = "60000-60015"
max_sessions = 64
max_sessions_per_host = 24
[[neighbor]]
interface = "Port2"
address = "10.0.2.1"
mac = "02:00:00:00:99:01"
[[neighbor]]
interface = "internal"
address = "172.28.0.10"
mac = "02:00:00:00:28:10"
[[neighbor]]
interface = "internal"
address = "172.28.0.11"
mac = "02:00:00:00:28:11"
"#;
const EXT: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const PORT2_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0x99, 1];
const GW_IF_MAC: [u8; 6] = [2, 0, 0, 0, 0x28, 1];

/// One packet of the sequence.
#[derive(Arbitrary, Debug)]
enum Step {
    /// From a VM to a remote host.
    Out {
        vm2: bool,
        proto: u8,
        sport: u16,
        remote: u8,
        dport: u16,
        flags: u8,
        payload: u8,
    },
    /// From a remote host to the external port the `of`-th outbound packet
    /// left with (or to `port` when there is none).
    In {
        of: u8,
        from_other_port: bool,
        flags: u8,
        port: u16,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Tcp,
    Udp,
    Echo,
}

type End = (Ipv4Addr, u16);

/// A frame from MAC `smac` to `dmac` (the pair), `src` to `dst`.
fn frame(
    kind: Kind,
    (smac, dmac): ([u8; 6], [u8; 6]),
    src: End,
    dst: End,
    flags: u8,
    len: u8,
    reply: bool,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(smac, dmac).ipv4(src.0.octets(), dst.0.octets(), 64);
    let payload = vec![0x5a; usize::from(len)];
    let mut v = Vec::new();
    match kind {
        Kind::Tcp => {
            let mut t = b.tcp(src.1, dst.1, 1, 65535);
            if flags & 2 != 0 {
                t = t.syn();
            }
            if flags & 1 != 0 {
                t = t.fin();
            }
            if flags & 4 != 0 {
                t = t.rst();
            }
            if flags & 16 != 0 {
                t = t.ack(1);
            }
            t.write(&mut v, &payload)
        }
        Kind::Udp => b.udp(src.1, dst.1).write(&mut v, &payload),
        Kind::Echo if reply => b.icmpv4_echo_reply(dst.1, 1).write(&mut v, &payload),
        Kind::Echo => b.icmpv4_echo_request(src.1, 1).write(&mut v, &payload),
    }
    .unwrap();
    v
}

/// (kind, source, destination) of a frame edgefwd sent.
fn ends(f: &[u8]) -> Option<(Kind, End, End)> {
    let s = SlicedPacket::from_ethernet(f).ok()?;
    let Some(NetSlice::Ipv4(ip)) = &s.net else {
        return None;
    };
    let (a, b) = (ip.header().source_addr(), ip.header().destination_addr());
    match &s.transport {
        Some(TransportSlice::Tcp(t)) => {
            Some((Kind::Tcp, (a, t.source_port()), (b, t.destination_port())))
        }
        Some(TransportSlice::Udp(u)) => {
            Some((Kind::Udp, (a, u.source_port()), (b, u.destination_port())))
        }
        Some(TransportSlice::Icmpv4(i)) => match i.icmp_type() {
            Icmpv4Type::EchoRequest(e) | Icmpv4Type::EchoReply(e) => {
                Some((Kind::Echo, (a, e.id), (b, e.id)))
            }
            _ => None,
        },
        _ => None,
    }
}

fn appliance() -> &'static Appliance {
    static A: OnceLock<Appliance> = OnceLock::new();
    A.get_or_init(|| Appliance::new(CFG))
}

fuzz_target!(|steps: Vec<Step>| {
    let mut rig = Rig::on(appliance());
    // Per outbound packet sent: (kind, inside endpoint, remote, external port).
    let mut sent: Vec<(Kind, End, End, u16)> = Vec::new();
    let mut mapping: HashMap<(Kind, End), u16> = HashMap::new();
    let mut owner: HashMap<(Kind, u16), End> = HashMap::new();
    for step in steps.iter().take(64) {
        let (port, bytes, expect) = match *step {
            Step::Out {
                vm2,
                proto,
                sport,
                remote,
                dport,
                flags,
                payload,
            } => {
                let kind = [Kind::Tcp, Kind::Udp, Kind::Echo][usize::from(proto % 3)];
                let (vm, mac) = if vm2 {
                    (Ipv4Addr::new(172, 28, 0, 11), [2, 0, 0, 0, 0x28, 0x11])
                } else {
                    (Ipv4Addr::new(172, 28, 0, 10), [2, 0, 0, 0, 0x28, 0x10])
                };
                let dport = if kind == Kind::Echo { sport } else { dport };
                let remote = (Ipv4Addr::new(198, 51, 100, remote % 4), dport);
                let f = frame(
                    kind,
                    (mac, GW_IF_MAC),
                    (vm, sport),
                    remote,
                    flags,
                    payload % 64,
                    false,
                );
                (1 + u16::from(vm2), f, Some((kind, (vm, sport), remote)))
            }
            Step::In {
                of,
                from_other_port,
                flags,
                port,
            } => {
                let f = match sent.get(usize::from(of) % sent.len().max(1)) {
                    Some(&(kind, _, remote, ext)) => {
                        let from = if from_other_port && kind != Kind::Echo {
                            (remote.0, remote.1 ^ 1)
                        } else {
                            remote
                        };
                        frame(kind, (GW_MAC, PORT2_MAC), from, (EXT, ext), flags, 8, true)
                    }
                    None => {
                        let from = (Ipv4Addr::new(198, 51, 100, 9), 53);
                        frame(
                            Kind::Udp,
                            (GW_MAC, PORT2_MAC),
                            from,
                            (EXT, port),
                            flags,
                            4,
                            true,
                        )
                    }
                };
                (0, f, None)
            }
        };
        for (p, f) in &rig.feed(port, &bytes) {
            assert_valid(*p, f);
            let Some((kind, src, dst)) = ends(f) else {
                continue;
            };
            if *p == 0 {
                // Out of Port2: translated, one port per inside endpoint.
                if let Some((k, inside, remote)) = expect {
                    // An echo's id is its "port" both ways, so only the
                    // remote address says where it went.
                    let to_remote = dst == remote || (kind == Kind::Echo && dst.0 == remote.0);
                    if src.0 == EXT && k == kind && to_remote {
                        let ext = *mapping.entry((kind, inside)).or_insert(src.1);
                        assert_eq!(ext, src.1, "endpoint-independent mapping for {inside:?}");
                        let prev = *owner.entry((kind, src.1)).or_insert(inside);
                        assert_eq!(prev, inside, "external port {} serves two endpoints", src.1);
                        sent.push((kind, inside, remote, src.1));
                    }
                }
                assert_ne!(
                    src.0.octets()[..3],
                    [172, 28, 0],
                    "an inside address left by Port2: {f:02x?}"
                );
            } else if src.0 != Ipv4Addr::new(172, 28, 0, 1) {
                // To a VM: a reply to exactly the endpoint that sent.
                let back = sent.iter().find(|(k, inside, remote, _)| {
                    *k == kind && *inside == dst && remote.0 == src.0
                });
                assert!(
                    back.is_some(),
                    "{kind:?} {src:?} -> {dst:?} reached a VM with no session"
                );
            }
        }
    }
    rig.finish();
});
