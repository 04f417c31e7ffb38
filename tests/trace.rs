//! Packet traces on replay: what each stage decided for the demo's
//! packets (a golden text, read by a person once and checked against the
//! counters every run), and for a NATed packet and a spoofed one.

mod common;

use std::collections::BTreeMap;

use edgefwd_control::config::Config;
use edgefwd_control::replay::{replay_with, Input, Options, Source};
use edgefwd_control::{demo, packet_trace};
use etherparse::PacketBuilder;
use serde_json::Value;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/demo_trace.txt");

/// Every traced packet's `end`.
fn ends(traces: &Value) -> Vec<&Value> {
    traces["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["end"])
        .collect()
}

/// The demo's whole trace, every packet: the text is the golden one
/// (`EDGEFWD_BLESS=1` writes it anew, for a person to read in the diff),
/// and the traces agree with the counters, which are kept apart from them:
/// one trace per received packet, and as many traces end in each drop
/// reason as the counters hold.
#[test]
fn the_demo_traced_matches_the_golden_text_and_the_counters() {
    let cfg = Config::parse(demo::CONFIG).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (report, traces) = replay_with(&cfg, demo::inputs(), dir.path(), &traced(1000)).unwrap();
    let text = packet_trace::to_text(&traces);
    if std::env::var_os("EDGEFWD_BLESS").is_some() {
        std::fs::write(GOLDEN, &text).unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN).unwrap();
    if text != golden {
        let first = text
            .lines()
            .zip(golden.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "the trace differs from {GOLDEN} at line {}:\n got: {:?}\nwant: {:?}",
            first + 1,
            text.lines().nth(first),
            golden.lines().nth(first)
        );
    }
    let packets = traces["packets"].as_array().unwrap();
    let received = packets.iter().filter(|p| p["origin"] == "received").count();
    assert_eq!(received as u64, report.packets.received);
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    for (p, end) in packets.iter().zip(ends(&traces)) {
        if p["origin"] == "received" && end["kind"] == "dropped" {
            *dropped
                .entry(end["reason"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    // A held packet dropped later (its neighbour never answered) ends its
    // trace as held; the counters count its drop.
    let held_then_dropped = report
        .drops
        .get("neighbor_unresolved")
        .copied()
        .unwrap_or(0);
    let mut want = report.drops.clone();
    want.remove("neighbor_unresolved");
    assert_eq!(dropped, want);
    let held = ends(&traces).iter().filter(|e| e["kind"] == "held").count() as u64;
    assert!(held >= held_then_dropped);
    // The cases the demo shows, each in the trace.
    for case in [
        "route         192.168.21.0/24 via 192.168.20.1 on Port3 metric 100",
        "=> dropped at ip4-input: ttl_expired",
        "made by the appliance (for Port2)",
        "=> dropped at ip-lookup: no_route",
        "=> dropped at eth-input: runt",
        "=> sent on Port3",
    ] {
        assert!(text.contains(case), "no {case:?} in\n{text}");
    }
}

const NAT: &str = r#"
[[port]]
name = "Port2"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.15/24"]
gateway = "10.0.2.1"

[[port]]
name = "vm1"
switch = "internal"
allowed_mac = "02:00:00:00:28:10"

[[port]]
name = "vm2"
switch = "internal"

[[switch]]
name = "internal"
kind = "internal"
address = "172.28.0.1/24"
mac = "02:00:00:00:28:01"
nat = "Port2"

[[neighbor]]
interface = "Port2"
address = "10.0.2.1"
mac = "02:00:00:00:99:01"
"#;

const VM1_MAC: [u8; 6] = [2, 0, 0, 0, 0x28, 0x10];
const VM2_MAC: [u8; 6] = [2, 0, 0, 0, 0x28, 0x20];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0x28, 1];

fn udp(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .udp(5000, 53)
        .write(&mut v, b"trace")
        .unwrap();
    v
}

fn arp_request(src_mac: [u8; 6], sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&sender);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}

/// A VM's packet NATed out: the trace shows the switch learning it and
/// taking it up to the router, the route, and the source rewritten to
/// Port2's address; a frame from another MAC on the VM's port is dropped
/// by port security at l2; a broadcast is flooded and goes up; a frame to
/// a learned MAC is forwarded to its member.
#[test]
fn switch_and_nat_decisions_are_traced() {
    let cfg = Config::parse(NAT).unwrap();
    let vm1 = [
        (0, udp(VM1_MAC, GW_MAC, [172, 28, 0, 10], [198, 51, 100, 1])),
        (
            0,
            udp(
                [2, 0, 0, 0, 0x28, 0x66],
                GW_MAC,
                [172, 28, 0, 10],
                [198, 51, 100, 1],
            ),
        ),
        (2, udp(VM1_MAC, VM2_MAC, [172, 28, 0, 10], [172, 28, 0, 20])),
    ];
    let vm2 = [(1, arp_request(VM2_MAC, [172, 28, 0, 20], [172, 28, 0, 1]))];
    let dir = tempfile::tempdir().unwrap();
    let inputs = vec![
        Input {
            port: "vm1".into(),
            source: Source::Bytes {
                name: "vm1".into(),
                data: common::pcap_in_memory(&vm1),
            },
        },
        Input {
            port: "vm2".into(),
            source: Source::Bytes {
                name: "vm2".into(),
                data: common::pcap_in_memory(&vm2),
            },
        },
    ];
    let (_, traces) = replay_with(&cfg, inputs, dir.path(), &traced(10)).unwrap();
    let text = packet_trace::to_text(&traces);
    let received: Vec<&Value> = traces["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["origin"] == "received")
        .collect();
    let steps = |p: &Value| -> Vec<(String, String)> {
        p["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["stage"].as_str().unwrap().to_owned(),
                    s["note"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let has = |p: &Value, stage: &str, words: &[&str]| {
        steps(p)
            .iter()
            .any(|(s, n)| s == stage && words.iter().all(|w| n.contains(w)))
    };

    let nated = received[0];
    assert_eq!(
        (&nated["end"]["kind"], &nated["end"]["port"]),
        (&"sent".into(), &"Port2".into()),
        "{text}"
    );
    assert!(
        has(
            nated,
            "l2",
            &["learned 02:00:00:00:28:10 on vm1", "up to the router"]
        ),
        "{text}"
    );
    assert!(
        has(
            nated,
            "nat44-out",
            &[
                "IPv4 172.28.0.10 > 198.51.100.1",
                "-> IPv4 10.0.2.15 > 198.51.100.1"
            ]
        ),
        "{text}"
    );
    assert_eq!(nated["route"]["destination"], "0.0.0.0/0", "{text}");

    let spoofed = received[1];
    assert_eq!(spoofed["end"]["reason"], "spoofed_source", "{text}");
    assert_eq!(spoofed["end"]["stage"], "l2", "{text}");

    let broadcast = received[2];
    assert!(
        has(
            broadcast,
            "l2",
            &[
                "learned 02:00:00:00:28:20 on vm2",
                "flooded to every member and up to the router"
            ]
        ),
        "{text}"
    );
    assert!(
        has(
            broadcast,
            "arp-input",
            &["ARP reply 172.28.0.1 is-at 02:00:00:00:28:01"]
        ),
        "{text}"
    );

    let across = received[3];
    assert!(
        has(across, "l2", &["02:00:00:00:28:20 is on vm2: forwarded"]),
        "{text}"
    );
    assert_eq!(
        (&across["end"]["kind"], &across["end"]["port"]),
        (&"sent".into(), &"vm2".into()),
        "{text}"
    );
}

/// Replay options tracing the first `n` packets.
fn traced(n: u64) -> Options {
    Options {
        trace: n,
        ..Options::default()
    }
}
