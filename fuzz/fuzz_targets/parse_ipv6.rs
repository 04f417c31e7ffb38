//! The IPv6 parser (ip6-input, the extension-header walk for packets to
//! the appliance, NDP and ICMPv6) on structured packets: any source and
//! destination among the appliance's, its neighbours', multicast groups
//! and link-local ones, any hop limit, a chain of up to eight extension
//! headers of any kind, and any upper layer, with lengths and checksums
//! right or left as the fuzzer made them.
//!
//! Invariants, beside `edgefwd_fuzz::run`'s: a packet whose payload length
//! is right is never dropped as malformed; a packet valid at every layer
//! causes only frames valid at every layer; a forwarded packet leaves with
//! its extension headers and payload untouched and its hop limit less one.
#![no_main]

use std::net::Ipv6Addr;

use edgefwd_core::packet::check::check_frame;
use edgefwd_core::packet::checksum::{finish, pseudo_v6, sum};
use edgefwd_fuzz::{
    assert_valid, eth, run, DropReason, Fix, PortId, HOST_MAC, HOST_V6, OUR_V6, PORT_MAC, RX_PORTS,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Addr {
    Ours(bool),
    Host(u8),
    AllNodes,
    AllRouters,
    /// The solicited-node group of one of our addresses.
    SolicitedNode(bool),
    LinkLocal(u64),
    Unspecified,
    Raw([u8; 16]),
}

#[derive(Arbitrary, Debug)]
enum Ext {
    HopByHop(Vec<u8>),
    Routing(Vec<u8>),
    Fragment([u8; 6]),
    DestOpts(Vec<u8>),
    Auth(Vec<u8>),
    /// Any next-header value, these bytes as its header.
    Raw(u8, Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Upper {
    /// ICMPv6 with this type.
    Icmp(u8),
    Udp,
    Tcp,
    NoNext,
    Other(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    port: u8,
    src: Addr,
    dst: Addr,
    hop: u8,
    flow: u32,
    exts: Vec<Ext>,
    upper: Upper,
    payload: Vec<u8>,
    fix: Fix,
    payload_len: u16,
    pad: u8,
}

fn addr(a: &Addr) -> Ipv6Addr {
    match a {
        Addr::Ours(b) => OUR_V6[usize::from(*b)],
        Addr::Host(n) => HOST_V6[usize::from(*n) % HOST_V6.len()],
        Addr::AllNodes => "ff02::1".parse().unwrap(),
        Addr::AllRouters => "ff02::2".parse().unwrap(),
        Addr::SolicitedNode(b) => {
            let o = OUR_V6[usize::from(*b)].octets();
            Ipv6Addr::new(
                0xff02,
                0,
                0,
                0,
                0,
                1,
                0xff00 | u16::from(o[13]),
                u16::from_be_bytes([o[14], o[15]]),
            )
        }
        Addr::LinkLocal(iid) => Ipv6Addr::from((0xfe80u128 << 112) | u128::from(*iid)),
        Addr::Unspecified => Ipv6Addr::UNSPECIFIED,
        Addr::Raw(b) => Ipv6Addr::from(*b),
    }
}

/// Appends one extension header (next header `next`) and returns its own
/// next-header value.
fn push_ext(out: &mut Vec<u8>, e: &Ext, next: u8) -> u8 {
    let cut = |b: &[u8], max: usize| b[..b.len().min(max)].to_vec();
    match e {
        Ext::HopByHop(b) | Ext::Routing(b) | Ext::DestOpts(b) => {
            let body = cut(b, 62);
            let total = (2 + body.len()).div_ceil(8).max(1) * 8;
            out.extend_from_slice(&[next, (total / 8 - 1) as u8]);
            out.extend_from_slice(&body);
            out.resize(out.len() + total - 2 - body.len(), 0);
            match e {
                Ext::HopByHop(_) => 0,
                Ext::Routing(_) => 43,
                _ => 60,
            }
        }
        Ext::Fragment(b) => {
            out.extend_from_slice(&[next, 0]);
            out.extend_from_slice(b);
            44
        }
        Ext::Auth(b) => {
            let body = cut(b, 58);
            let total = (2 + body.len()).div_ceil(4).max(3) * 4;
            out.extend_from_slice(&[next, (total / 4 - 2) as u8]);
            out.extend_from_slice(&body);
            out.resize(out.len() + total - 2 - body.len(), 0);
            51
        }
        Ext::Raw(nh, b) => {
            out.push(next);
            out.extend_from_slice(&cut(b, 63));
            *nh
        }
    }
}

fuzz_target!(|i: Input| {
    let port = PortId::from(i.port) % RX_PORTS;
    let p = usize::from(port);
    let (src, dst) = (addr(&i.src), addr(&i.dst));
    let (proto, mut seg) = match i.upper {
        Upper::Icmp(t) => {
            let mut s = i.payload;
            if let Some(b) = s.first_mut() {
                *b = t;
            }
            (58u8, s)
        }
        Upper::Udp => (17, i.payload),
        Upper::Tcp => (6, i.payload),
        Upper::NoNext => (59, i.payload),
        Upper::Other(n) => (n, i.payload),
    };
    seg.truncate(1200);
    if i.fix == Fix::Everything {
        let (min, at) = match proto {
            58 => (8, Some(2)),
            17 => (8, Some(6)),
            6 => (20, Some(16)),
            _ => (0, None),
        };
        if seg.len() < min {
            seg.resize(min, 0);
        }
        if proto == 17 {
            let len = seg.len() as u16;
            seg[4..6].copy_from_slice(&len.to_be_bytes());
        }
        if proto == 6 {
            seg[12] = 0x50 | (seg[12] & 0x0f);
        }
        if let Some(at) = at {
            seg[at..at + 2].fill(0);
            let c = !finish(pseudo_v6(src, dst, proto, seg.len() as u32) + sum(&seg));
            let c = if proto == 17 && c == 0 { 0xffff } else { c };
            seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
    }
    // The chain is written back to front: each header names the next.
    let exts = &i.exts[..i.exts.len().min(8)];
    let mut next = proto;
    let mut chain: Vec<u8> = Vec::new();
    for e in exts.iter().rev() {
        let mut h = Vec::new();
        next = push_ext(&mut h, e, next);
        h.extend_from_slice(&chain);
        chain = h;
    }
    let payload_len = if i.fix == Fix::Nothing {
        i.payload_len
    } else {
        (chain.len() + seg.len()) as u16
    };
    let mut ip = Vec::with_capacity(40 + chain.len() + seg.len());
    ip.extend_from_slice(&(0x6000_0000 | (i.flow & 0x0fff_ffff)).to_be_bytes());
    ip.extend_from_slice(&payload_len.to_be_bytes());
    ip.push(next);
    ip.push(i.hop);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(&chain);
    ip.extend_from_slice(&seg);

    let mut f = eth(PORT_MAC[p], HOST_MAC[p], 0x86dd);
    f.extend_from_slice(&ip);
    let valid = i.fix == Fix::Everything && check_frame(&f).is_ok();
    f.resize(f.len() + usize::from(i.pad % 64), 0);

    let out = run(&[(port, &f)]);
    if i.fix != Fix::Nothing {
        assert_eq!(out.drops(DropReason::Ip6Malformed), 0, "{ip:02x?}");
    }
    for (to, o) in &out.sent {
        if *o == f {
            continue; // bridged as it came
        }
        if valid {
            assert_valid(*to, o);
        }
        // Only the forwarded packet leaves with the same addresses.
        let g = &o[14..];
        if i.fix != Fix::Nothing
            && o[12..14] == [0x86, 0xdd]
            && g.len() >= 40
            && g[8..40] == ip[8..40]
        {
            assert_eq!(g[40..], ip[40..], "extension headers or payload changed");
            assert_eq!(
                g[..7],
                ip[..7],
                "version, class, flow, length or next header changed"
            );
            assert_eq!(g[7], i.hop.wrapping_sub(1), "hop limit");
        }
    }
});
