//! Hostile traffic from VMs on an internal switch: a flood of source MACs
//! and one VM trying to take every NAT session. Each is dropped and counted
//! under a named reason, the tables stay within their configured bounds
//! (measured), and the other VM keeps working.

use std::sync::Arc;
use std::time::Duration;

use edgefwd_control::config::Config;
use edgefwd_control::rib::{PortsUp, Rib};
use edgefwd_core::packet::Packet;
use edgefwd_core::pipeline::Router;
use edgefwd_core::stats::DropReason;
use edgefwd_core::time::Time;
use etherparse::PacketBuilder;

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
mac_limit = 64
[nat]
max_sessions = 1500
max_sessions_per_host = 1000
[[neighbor]]
interface = "Port2"
address = "10.0.2.1"
mac = "02:00:00:00:99:01"
"#;
const VM1: u16 = 1;
const VM2: u16 = 2;
const GW_IF_MAC: [u8; 6] = [2, 0, 0, 0, 0x28, 1];

fn router() -> Router {
    let cfg = Config::parse(CFG).unwrap();
    let rib = Rib::from_config(&cfg, PortsUp::All);
    let (fib, _) = rib.build_fib();
    rib.router(&cfg, Arc::new(fib), &cfg.router_config())
}

fn udp(src_mac: [u8; 6], dst_mac: [u8; 6], src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut v, b"x")
        .unwrap();
    v
}

/// Feeds `frames` on `port` in bursts of 64, 10 µs apart; returns what
/// Port2 and the VM ports sent.
fn feed(r: &mut Router, port: u16, now: &mut Time, frames: &[Vec<u8>]) -> [u64; 3] {
    let mut sent = [0; 3];
    let mut burst: Vec<Packet> = Vec::with_capacity(64);
    for chunk in frames.chunks(64) {
        for f in chunk {
            *now = now.after(Duration::from_micros(10));
            r.receive(&mut burst, port, *now, f);
        }
        r.process(&mut burst, *now);
        for (p, n) in sent.iter_mut().enumerate() {
            r.drain_tx(p as u16, |_| *n += 1);
        }
    }
    sent
}

/// The accounting identity, once what waits for a neighbour is dropped
/// (held packets include generated ones, outside the identity).
fn identity(r: &mut Router) {
    r.finish();
    let s = r.stats();
    assert_eq!(s.received(), s.ended() + r.held() as u64);
}

fn drops(r: &Router, reason: DropReason) -> u64 {
    r.stats().drops_by_reason()[reason as usize]
}

#[test]
fn a_flood_of_source_macs_stops_at_the_mac_table_limit() {
    let mut r = router();
    let mut now = Time(0);
    let flood: Vec<Vec<u8>> = (0..20_000u32)
        .map(|i| {
            let b = i.to_be_bytes();
            udp(
                [2, 0xee, b[0], b[1], b[2], b[3]],
                [2, 0, 0, 0, 0x28, 0x11],
                ([172, 28, 0, 10], 9),
                ([172, 28, 0, 11], 9),
            )
        })
        .collect();
    feed(&mut r, VM1, &mut now, &flood);
    // vm1 fills the table but for the one slot kept for vm2.
    assert_eq!(drops(&r, DropReason::MacTableFull), 20_000 - 63);
    assert_eq!(r.switching().learned(now).len(), 63);
    assert!(
        r.buffers_allocated() <= 256 + 64,
        "buffers: {}",
        r.buffers_allocated()
    );
    // vm2 is still switched and routed.
    let ok = udp(
        [2, 0, 0, 0, 0x28, 0x11],
        GW_IF_MAC,
        ([172, 28, 0, 11], 5000),
        ([198, 51, 100, 1], 53),
    );
    let sent = feed(&mut r, VM2, &mut now, &[ok]);
    assert_eq!(sent[0], 1, "vm2's packet left by Port2");
    identity(&mut r);
}

#[test]
fn one_vm_taking_every_nat_session_leaves_room_for_the_others() {
    let mut r = router();
    let mut now = Time(0);
    let greedy: Vec<Vec<u8>> = (0..5_000u16)
        .map(|i| {
            udp(
                [2, 0, 0, 0, 0x28, 0x10],
                GW_IF_MAC,
                ([172, 28, 0, 10], 10_000 + i),
                ([198, 51, 100, 1], 53),
            )
        })
        .collect();
    let sent = feed(&mut r, VM1, &mut now, &greedy);
    assert_eq!(sent[0], 1000, "vm1's share: max_sessions_per_host");
    assert_eq!(drops(&r, DropReason::NatHostLimit), 4000);
    // The refusals are answered with ICMP administratively prohibited, at
    // the rate limit (10/s, burst 10) and no more.
    assert!(
        sent[1] >= 1 && sent[1] <= 11,
        "ICMP errors to vm1: {}",
        sent[1]
    );
    // vm2 still gets sessions: up to what the table has left.
    let fair: Vec<Vec<u8>> = (0..600u16)
        .map(|i| {
            udp(
                [2, 0, 0, 0, 0x28, 0x11],
                GW_IF_MAC,
                ([172, 28, 0, 11], 20_000 + i),
                ([198, 51, 100, 1], 53),
            )
        })
        .collect();
    let sent = feed(&mut r, VM2, &mut now, &fair);
    assert_eq!(sent[0], 500);
    assert_eq!(drops(&r, DropReason::NatSessionLimit), 100);
    let table = r.nat()[0].table();
    assert_eq!(table.sessions(), 1500, "bounded by max_sessions");
    let bytes = table.bytes_per_session() * table.sessions();
    assert!(
        bytes < 4 << 20,
        "table memory {bytes} bytes for 1,500 sessions"
    );
    identity(&mut r);
}
