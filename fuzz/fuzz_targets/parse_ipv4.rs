//! The IPv4 parser (ip4-input, NAT's parser, ICMP) on structured packets:
//! any addresses among the appliance's own, its hosts' and far ones, any
//! TTL, fragment fields, protocol and options, with lengths and checksums
//! right or left as the fuzzer made them, on any port.
//!
//! Invariants, beside `edgefwd_fuzz::run`'s: a packet whose lengths and
//! header checksum are right is never dropped as malformed, whatever its
//! options; a packet valid at every layer causes only frames valid at
//! every layer (forwarded, translated, answered or an ICMP error about it);
//! a forwarded packet keeps its options, its payload and its TTL less one.
#![no_main]

use edgefwd_core::packet::check::check_frame;
use edgefwd_core::packet::checksum::{finish, pseudo_v4, sum};
use edgefwd_fuzz::{
    assert_valid, checksum, eth, run, DropReason, Fix, PortId, HOST_MAC, PORT_MAC, RX_PORTS, V4,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Proto {
    Udp,
    Tcp,
    /// ICMP with this type.
    Icmp(u8),
    Other(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    port: u8,
    src: V4,
    dst: V4,
    tos: u8,
    id: u16,
    /// Flags and fragment offset.
    frag: u16,
    ttl: u8,
    proto: Proto,
    options: Vec<u8>,
    /// The transport header and payload.
    segment: Vec<u8>,
    fix: Fix,
    /// Raw values of the fields `fix` would set.
    total_len: u16,
    csum: u16,
    /// Ethernet padding after the packet.
    pad: u8,
}

fuzz_target!(|i: Input| {
    let port = PortId::from(i.port) % RX_PORTS;
    let p = usize::from(port);
    let (src, dst) = (i.src.on(port), i.dst.on(port));
    let (proto, mut seg) = match i.proto {
        Proto::Udp => (17u8, i.segment),
        Proto::Tcp => (6, i.segment),
        Proto::Icmp(t) => {
            let mut s = i.segment;
            if let Some(b) = s.first_mut() {
                *b = t;
            }
            (1, s)
        }
        Proto::Other(n) => (n, i.segment),
    };
    seg.truncate(1400);
    if i.fix == Fix::Everything {
        let min = match proto {
            17 | 1 => 8,
            6 => 20,
            _ => 0,
        };
        if seg.len() < min {
            seg.resize(min, 0);
        }
        let len = seg.len() as u16;
        match proto {
            17 => seg[4..6].copy_from_slice(&len.to_be_bytes()),
            6 => seg[12] = 0x50 | (seg[12] & 0x0f),
            _ => {}
        }
        let at = match proto {
            17 => Some(6),
            6 => Some(16),
            1 => Some(2),
            _ => None,
        };
        if let Some(at) = at {
            seg[at..at + 2].fill(0);
            let c = if proto == 1 {
                checksum(&seg)
            } else {
                !finish(pseudo_v4(src, dst, proto, len) + sum(&seg))
            };
            let c = if proto == 17 && c == 0 { 0xffff } else { c };
            seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
    }
    let mut opts = i.options;
    opts.truncate(40);
    opts.resize(opts.len().div_ceil(4) * 4, 0);
    let hl = 20 + opts.len();
    let mut h = vec![0u8; hl];
    h[0] = 0x40 | (hl / 4) as u8;
    h[1] = i.tos;
    let total = if i.fix == Fix::Nothing {
        i.total_len
    } else {
        (hl + seg.len()) as u16
    };
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&i.id.to_be_bytes());
    h[6..8].copy_from_slice(&i.frag.to_be_bytes());
    h[8] = i.ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h[20..].copy_from_slice(&opts);
    let csum = if i.fix == Fix::Nothing {
        i.csum
    } else {
        checksum(&h)
    };
    h[10..12].copy_from_slice(&csum.to_be_bytes());

    let mut f = eth(PORT_MAC[p], HOST_MAC[p], 0x0800);
    f.extend_from_slice(&h);
    f.extend_from_slice(&seg);
    let valid = i.fix == Fix::Everything && check_frame(&f).is_ok();
    f.resize(f.len() + usize::from(i.pad % 64), 0);

    let out = run(&[(port, &f)]);
    if i.fix != Fix::Nothing {
        assert_eq!(out.drops(DropReason::Ip4Malformed), 0, "{h:02x?}");
        assert_eq!(out.drops(DropReason::Ip4BadChecksum), 0);
    }
    for (to, o) in &out.sent {
        if *o == f {
            continue; // bridged as it came
        }
        if valid {
            assert_valid(*to, o);
        }
        // The forwarded packet: same id, protocol and header length.
        let ip = &o[14..];
        let same = o[12..14] == [8, 0]
            && ip.len() >= hl
            && ip[0] == h[0]
            && ip[4..6] == h[4..6]
            && ip[9] == proto
            && ip[hl..] == seg[..];
        if same && out.stats.forwarded == 1 && usize::from(total) == hl + seg.len() {
            assert_eq!(ip[20..hl], h[20..], "options changed");
            assert_eq!(ip[8], i.ttl.wrapping_sub(1), "TTL");
        }
    }
});
