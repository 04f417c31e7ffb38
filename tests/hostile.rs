//! Hostile traffic through the router: floods and malformed frames, each
//! dropped and counted under a named reason, with the accounting identity
//! and the memory the router holds (buffers ever allocated, neighbour
//! entries, held packets) measured against its configured bounds.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use edgefwd_control::config::Config;
use edgefwd_control::rib::{PortsUp, Rib};
use edgefwd_core::neigh::{
    GC_INTERVAL, GC_STALE_TIME, GC_THRESH1, HIGH_WATER, MAX_INCOMPLETE, QUEUE_LIMIT,
    REACHABLE_LIFETIME,
};
use edgefwd_core::packet::buf::{HEADROOM, MAX_FRAME};
use edgefwd_core::packet::Packet;
use edgefwd_core::pipeline::{Router, HOLD_BYTES};
use edgefwd_core::stats::DropReason;
use edgefwd_core::time::Time;
use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ethernet2Header, PacketBuilder,
};

const CFG: &str = r#"
[dataplane]
burst = 64

[[port]]
name = "Port2"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.1/24", "100.64.0.1/10"]

[[port]]
name = "Port3"
mac = "02:00:00:00:03:01"
addresses = ["10.3.0.1/16"]
"#;
const PORT2_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const HOST: [u8; 6] = [2, 0, 0, 0, 0x22, 2];
const BURST: usize = 64;

struct Rig {
    router: Router,
    burst: Vec<Packet>,
    now: Time,
}

impl Rig {
    fn new() -> Rig {
        let cfg = Config::parse(CFG).unwrap();
        let rib = Rib::from_config(&cfg, PortsUp::All);
        let (fib, _) = rib.build_fib();
        let router = rib.router(&cfg, Arc::new(fib), &cfg.router_config());
        Rig {
            router,
            burst: Vec::with_capacity(BURST),
            now: Time(0),
        }
    }

    /// Feeds frames on Port2 in bursts, 10 µs apart, draining every output.
    fn feed(&mut self, frames: impl IntoIterator<Item = Vec<u8>>) -> u64 {
        let mut sent = 0;
        for f in frames {
            self.now = self.now.after(Duration::from_micros(10));
            self.router.receive(&mut self.burst, 0, self.now, &f);
            if self.burst.len() == BURST {
                sent += self.flush();
            }
        }
        sent + self.flush()
    }

    /// Feeds one frame on `port` and returns every frame sent, with its
    /// port.
    fn exchange(&mut self, port: u16, frame: &[u8]) -> Vec<(u16, Vec<u8>)> {
        self.now = self.now.after(Duration::from_micros(10));
        self.router.receive(&mut self.burst, port, self.now, frame);
        self.router.process(&mut self.burst, self.now);
        let mut out = Vec::new();
        for p in 0..2 {
            self.router
                .drain_tx(p, |pkt| out.push((p, pkt.buf.frame().to_vec())));
        }
        out
    }

    /// Lets `secs` seconds pass, a second at a time, so that neighbour
    /// probes run out.
    fn wait(&mut self, secs: u64) {
        for _ in 0..secs {
            self.now = self.now.after(Duration::from_secs(1));
            self.flush();
        }
    }

    fn flush(&mut self) -> u64 {
        self.router.process(&mut self.burst, self.now);
        let mut n = 0;
        for port in 0..2 {
            self.router.drain_tx(port, |_| n += 1);
        }
        n
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.router.stats().drops_by_reason()[r as usize]
    }

    fn assert_identity(&self) {
        let s = self.router.stats();
        assert_eq!(
            s.received(),
            s.ended() + self.router.held() as u64,
            "accounting identity"
        );
    }

    /// Bytes of packet buffers the router ever allocated.
    fn buffer_bytes(&self) -> usize {
        self.router.buffers_allocated() * (HEADROOM + MAX_FRAME)
    }
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: usize) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(HOST, PORT2_MAC)
        .ipv4(src.octets(), dst.octets(), ttl)
        .udp(40000, 53)
        .write(&mut out, &vec![0x5a; payload])
        .unwrap();
    out
}

fn arp_request(sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut out = Vec::new();
    Ethernet2Header {
        source: sender_mac,
        destination: [0xff; 6],
        ether_type: EtherType::ARP,
    }
    .write(&mut out)
    .unwrap();
    ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &sender_mac,
        &sender.octets(),
        &[0; 6],
        &target.octets(),
    )
    .unwrap()
    .write(&mut out)
    .unwrap();
    out
}

/// 200,000 ARP requests for the appliance, each from a new sender address
/// and MAC: every one answered, the neighbour table stops at its high-water
/// mark, a new next hop on another port still resolves and is forwarded
/// to, and once the flood stops its entries age out.
#[test]
fn arp_storm_is_answered_and_the_neighbour_table_recovers() {
    let mut rig = Rig::new();
    let storm = (0..200_000u32).map(|i| {
        let mac = [2, 0x77, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1];
        let sender = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 2)) + i);
        arp_request(mac, sender, Ipv4Addr::new(100, 64, 0, 1))
    });
    let sent = rig.feed(storm);
    assert_eq!(sent, 200_000, "one reply per request");
    rig.assert_identity();
    let entries = rig.router.neighbors().len();
    assert!(
        entries <= HIGH_WATER,
        "{entries} entries: requests stop creating them at the high-water mark"
    );
    eprintln!(
        "ARP storm: {entries} neighbour entries, {} KiB of buffers",
        rig.buffer_bytes() >> 10
    );
    assert!(
        rig.buffer_bytes() < 8 << 20,
        "{} bytes of buffers",
        rig.buffer_bytes()
    );

    // A packet to a host on Port3 nobody has talked to yet: held, asked for
    // with a request on Port3, and sent when it answers.
    let new_host = Ipv4Addr::new(10, 3, 0, 77);
    let new_mac = [2, 0, 0, 0, 0x33, 77];
    let out = rig.exchange(0, &udp(Ipv4Addr::new(10, 0, 2, 2), new_host, 64, 18));
    let request = out
        .iter()
        .find(|(p, _)| *p == 1)
        .expect("an ARP request on Port3");
    let arp = etherparse::SlicedPacket::from_ethernet(&request.1).unwrap();
    let Some(etherparse::NetSlice::Arp(arp)) = arp.net else {
        panic!("not ARP: {:02x?}", request.1);
    };
    assert_eq!(arp.target_protocol_addr(), new_host.octets());
    let mut reply = Vec::new();
    Ethernet2Header {
        source: new_mac,
        destination: [2, 0, 0, 0, 3, 1],
        ether_type: EtherType::ARP,
    }
    .write(&mut reply)
    .unwrap();
    ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REPLY,
        &new_mac,
        &new_host.octets(),
        &[2, 0, 0, 0, 3, 1],
        &[10, 3, 0, 1],
    )
    .unwrap()
    .write(&mut reply)
    .unwrap();
    let out = rig.exchange(1, &reply);
    let forwarded: Vec<_> = out
        .iter()
        .filter(|(p, f)| *p == 1 && f[..6] == new_mac)
        .collect();
    assert_eq!(forwarded.len(), 1, "the held packet goes out on Port3");
    let ip = etherparse::SlicedPacket::from_ethernet(&forwarded[0].1).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = ip.net else {
        panic!("not IPv4");
    };
    assert_eq!(ip.header().destination_addr(), new_host);
    rig.assert_identity();

    // The flood stops: its entries go stale, then away.
    let lifetime = REACHABLE_LIFETIME + GC_STALE_TIME + GC_INTERVAL;
    rig.wait(lifetime.as_secs() + 1);
    let left = rig.router.neighbors().len();
    assert!(left < GC_THRESH1, "{left} entries left after the flood");
}

/// Packets to 60,000 different hosts of a /16 that never answer ARP: held
/// packets, their bytes and incomplete entries stop at their limits, the rest is
/// dropped as `neighbor_table_full`, and every held packet is finally
/// dropped as `neighbor_unresolved`.
#[test]
fn a_scan_of_silent_hosts_is_bounded_and_counted() {
    let mut rig = Rig::new();
    let scan = (0..60_000u32).map(|i| {
        let dst = Ipv4Addr::new(10, 3, (i >> 8) as u8, i as u8);
        udp(Ipv4Addr::new(10, 0, 2, 2), dst, 64, 18)
    });
    rig.feed(scan);
    let held = rig.router.held();
    assert!(held <= MAX_INCOMPLETE * QUEUE_LIMIT, "{held} held");
    assert!(
        held * (HEADROOM + MAX_FRAME) <= HOLD_BYTES,
        "{held} held over the byte budget"
    );
    assert!(rig.drops(DropReason::NeighborTableFull) > 0);
    rig.assert_identity();
    let bound = (MAX_INCOMPLETE * QUEUE_LIMIT + 4 * BURST + 256) * (HEADROOM + MAX_FRAME);
    eprintln!(
        "scan: {held} held, {} MiB of buffers (bound {} MiB)",
        rig.buffer_bytes() >> 20,
        bound >> 20
    );
    assert!(
        rig.buffer_bytes() <= bound,
        "{} bytes of buffers",
        rig.buffer_bytes()
    );
    // Time passes: nobody answers, everything held is dropped and counted.
    rig.wait(10);
    assert_eq!(rig.router.held(), 0);
    rig.assert_identity();
    assert!(rig.drops(DropReason::NeighborUnresolved) >= held as u64);
}

/// TTL 0 and 1, ICMP errors about ICMP errors, fragments for the appliance
/// that never complete, runts and oversize frames: all dropped under their
/// reasons, errors sent only where RFC 1812 allows, rate-limited.
#[test]
fn malformed_and_expiring_traffic_is_dropped_by_reason() {
    let mut rig = Rig::new();
    let src = Ipv4Addr::new(10, 0, 2, 2);
    let far = Ipv4Addr::new(10, 3, 0, 9);
    // The appliance learns the sender, so its ICMP errors can go out.
    rig.feed([arp_request(HOST, src, Ipv4Addr::new(10, 0, 2, 1))]);
    let mut frames = Vec::new();
    for ttl in [0, 1] {
        frames.extend((0..100).map(|_| udp(src, far, ttl, 18)));
    }
    // A time-exceeded error in transit whose TTL runs out: no error about it.
    let mut icmp_err = Vec::new();
    PacketBuilder::ethernet2(HOST, PORT2_MAC)
        .ipv4(src.octets(), far.octets(), 1)
        .icmpv4(etherparse::Icmpv4Type::TimeExceeded(
            etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
        ))
        .write(&mut icmp_err, &udp(far, src, 1, 8)[14..])
        .unwrap();
    frames.push(icmp_err);
    // Fragments addressed to the appliance: never reassembled, no state.
    for i in 0..1000u16 {
        let mut f = udp(src, Ipv4Addr::new(10, 0, 2, 1), 64, 100);
        f[14 + 4..14 + 6].copy_from_slice(&i.to_be_bytes());
        f[14 + 6] = 0x20; // more fragments
        let h = &mut f[14..34];
        h[10..12].fill(0);
        let c = edgefwd_core::packet::checksum::checksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        frames.push(f);
    }
    frames.extend((0..50).map(|n| vec![0u8; n % 14]));
    rig.feed(frames);
    // Oversize frames cannot be carried at all.
    rig.router
        .receive(&mut rig.burst, 0, rig.now, &vec![0; MAX_FRAME + 1]);
    rig.flush();
    let s = rig.router.stats();
    assert_eq!(rig.drops(DropReason::TtlExpired), 201);
    assert_eq!(rig.drops(DropReason::LocalUnsupported), 1000);
    assert_eq!(rig.drops(DropReason::Runt), 50);
    assert_eq!(rig.drops(DropReason::Oversize), 1);
    // 200 expired packets, but errors are rate-limited (burst 10), and none
    // is sent about the ICMP error.
    assert!(s.generated <= 1 + 10 + 1, "{} generated", s.generated);
    assert!(s.icmp_rate_limited >= 189, "{}", s.icmp_rate_limited);
    rig.assert_identity();
}

/// A long IPv6 extension-header chain in transit is forwarded untouched
/// (routers do not walk it); one addressed to the appliance is dropped.
#[test]
fn long_ipv6_extension_chains_do_not_hurt() {
    let cfg = CFG
        .replace(
            "addresses = [\"10.0.2.1/24\", \"100.64.0.1/10\"]",
            "addresses = [\"10.0.2.1/24\", \"2001:db8:2::1/64\"]",
        )
        .replace(
            "addresses = [\"10.3.0.1/16\"]",
            "addresses = [\"10.3.0.1/16\", \"2001:db8:3::1/64\"]",
        );
    let cfg = Config::parse(&cfg).unwrap();
    let rib = Rib::from_config(&cfg, PortsUp::All);
    let (fib, _) = rib.build_fib();
    let mut rig = Rig {
        router: rib.router(&cfg, Arc::new(fib), &cfg.router_config()),
        burst: Vec::new(),
        now: Time(0),
    };
    let chain = |dst: [u8; 16]| {
        // 100 destination-options headers (8 bytes each), then UDP.
        let mut ext = Vec::new();
        for i in 0..100 {
            let next = if i == 99 { 17 } else { 60 };
            ext.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        ext.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 8, 0, 0]);
        let mut f = Vec::new();
        Ethernet2Header {
            source: HOST,
            destination: PORT2_MAC,
            ether_type: EtherType::IPV6,
        }
        .write(&mut f)
        .unwrap();
        let mut src = [0u8; 16];
        src[..6].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 2]);
        src[15] = 2;
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        f.extend_from_slice(&[60, 64]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&ext);
        f
    };
    let mut transit = [0u8; 16];
    transit[..6].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 3]);
    transit[15] = 9;
    let mut ours = [0u8; 16];
    ours[..6].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 2]);
    ours[15] = 1;
    rig.feed(
        (0..100)
            .map(|_| chain(transit))
            .chain((0..100).map(|_| chain(ours))),
    );
    rig.wait(10);
    rig.assert_identity();
    // Transit packets waited for a neighbour that never answered.
    assert_eq!(
        rig.drops(DropReason::NeighborUnresolved) + rig.drops(DropReason::NeighborQueueFull),
        100
    );
    assert_eq!(rig.drops(DropReason::LocalUnsupported), 100);
}

/// Many packets to a few silent hosts: the router's hold budget in bytes
/// (not only the per-neighbour queue) stops what waits, whatever the buffer
/// size, so 64 KiB offload buffers cannot pile up.
#[test]
fn held_bytes_stay_within_the_budget_with_large_buffers() {
    let cfg = Config::parse(CFG).unwrap();
    let rib = Rib::from_config(&cfg, PortsUp::All);
    let (fib, _) = rib.build_fib();
    let mut rcfg = cfg.router_config();
    rcfg.max_frame = 65535 + 18;
    rcfg.hold_bytes = 4 << 20;
    let mut rig = Rig {
        router: rib.router(&cfg, Arc::new(fib), &rcfg),
        burst: Vec::new(),
        now: Time(0),
    };
    let flood = (0..20_000u32).map(|i| {
        let dst = Ipv4Addr::new(10, 3, 1, (i % 200) as u8 + 1);
        udp(Ipv4Addr::new(10, 0, 2, 2), dst, 64, 18)
    });
    rig.feed(flood);
    let held = rig.router.held();
    let per_buf = HEADROOM + 65535 + 18;
    eprintln!(
        "held {held} packets, {} KiB of held buffers",
        (held * per_buf) >> 10
    );
    assert!(held * per_buf <= 4 << 20, "{held} held");
    assert!(held > 0);
    assert!(rig.drops(DropReason::NeighborQueueFull) > 0);
    rig.assert_identity();
}
