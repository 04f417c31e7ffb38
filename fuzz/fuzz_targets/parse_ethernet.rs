//! The Ethernet/VLAN parser (eth-input and the switches' L2 stage) on
//! structured frames: any destination and source MAC, a stack of 802.1Q and
//! 802.1ad tags, any EtherType and payload, cut anywhere.
//!
//! Invariants, beside `edgefwd_fuzz::run`'s: a frame shorter than an
//! Ethernet header is dropped as `runt` and nothing is sent; a routed port
//! neither forwards nor answers a unicast frame for another MAC, nor a
//! frame tagged with a VLAN id (only priority tags, VLAN 0, are taken).
#![no_main]

use edgefwd_fuzz::{eth, run, DropReason, PortId, HOST_MAC, PORT2, PORT3, PORT_MAC, RX_PORTS};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Dst {
    Ours,
    Broadcast,
    /// 01:00:5e / 33:33 style group addresses.
    Multicast([u8; 5]),
    Other([u8; 6]),
}

#[derive(Arbitrary, Debug)]
enum Src {
    Host,
    Other([u8; 6]),
}

#[derive(Arbitrary, Debug)]
struct Tag {
    /// An 802.1ad service tag rather than 802.1Q.
    qinq: bool,
    /// Priority, drop eligible, VLAN id.
    tci: u16,
}

#[derive(Arbitrary, Debug)]
enum EtherType {
    Ipv4,
    Arp,
    Ipv6,
    Other(u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    port: u8,
    dst: Dst,
    src: Src,
    tags: Vec<Tag>,
    ethertype: EtherType,
    payload: Vec<u8>,
    /// Cut the frame to this many bytes.
    cut: Option<u8>,
}

fuzz_target!(|i: Input| {
    let port = PortId::from(i.port) % RX_PORTS;
    let p = usize::from(port);
    let dst = match i.dst {
        Dst::Ours => PORT_MAC[p],
        Dst::Broadcast => [0xff; 6],
        Dst::Multicast(m) => [0x01, m[0], m[1], m[2], m[3], m[4]],
        Dst::Other(m) => m,
    };
    let src = match i.src {
        Src::Host => HOST_MAC[p],
        Src::Other(m) => m,
    };
    let ethertype = match i.ethertype {
        EtherType::Ipv4 => 0x0800,
        EtherType::Arp => 0x0806,
        EtherType::Ipv6 => 0x86dd,
        EtherType::Other(t) => t,
    };
    let tags = &i.tags[..i.tags.len().min(3)];
    let first = tags.first().map(|t| if t.qinq { 0x88a8 } else { 0x8100 });
    let mut f = eth(dst, src, first.unwrap_or(ethertype));
    for (n, t) in tags.iter().enumerate() {
        f.extend_from_slice(&t.tci.to_be_bytes());
        let next = match tags.get(n + 1) {
            Some(t) if t.qinq => 0x88a8,
            Some(_) => 0x8100,
            None => ethertype,
        };
        f.extend_from_slice(&u16::to_be_bytes(next));
    }
    f.extend_from_slice(&i.payload[..i.payload.len().min(1500)]);
    if let Some(cut) = i.cut {
        f.truncate(usize::from(cut));
    }

    let out = run(&[(port, &f)]);
    if f.len() < 14 {
        assert_eq!(out.drops(DropReason::Runt), 1, "runt frame not counted");
        assert!(out.sent.is_empty(), "a runt frame caused output");
    }
    if port == PORT2 || port == PORT3 {
        let not_ours = dst[0] & 1 == 0 && dst != PORT_MAC[p];
        let vlan = f.len() >= 16
            && first == Some(0x8100)
            && u16::from_be_bytes([f[14], f[15]]) & 0x0fff != 0;
        let qinq = first == Some(0x88a8);
        if not_ours || vlan || qinq {
            assert_eq!(out.stats.forwarded + out.stats.local, 0, "{i:?}");
            assert!(out.sent.is_empty(), "sent {:02x?}", out.sent);
        }
    }
});
