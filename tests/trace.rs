//! Packet traces on replay: what each stage decided for the demo's
//! packets (a golden text, read by a person once and checked against the
//! counters every run), and for a NATed packet and a spoofed one.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::time::Duration;

use edgefwd_control::config::Config;
use edgefwd_control::replay::{replay_traced, Input, Source};
use edgefwd_control::trace::TraceWriter;
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
    let (report, traces) = replay_traced(&cfg, demo::inputs(), dir.path(), false, 1000).unwrap();
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

fn udp(src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, [2, 0, 0, 0, 0x28, 1])
        .ipv4(src, dst, 64)
        .udp(5000, 53)
        .write(&mut v, b"trace")
        .unwrap();
    v
}

/// A VM's packet NATed out: the trace shows the switch taking it up to
/// the router, the route, and the source rewritten to Port2's address;
/// a frame from another MAC on the VM's port is dropped by port security
/// at l2.
#[test]
fn a_nated_packet_shows_its_translation_and_a_spoofed_one_its_drop() {
    let cfg = Config::parse(NAT).unwrap();
    let mut pcap = Vec::new();
    {
        let mut w = TraceWriter::new(BufWriter::new(&mut pcap)).unwrap();
        let t0 = Duration::from_secs(1_767_225_600);
        let vm = [2, 0, 0, 0, 0x28, 0x10];
        w.write(t0, &udp(vm, [172, 28, 0, 10], [198, 51, 100, 1]))
            .unwrap();
        let spoofer = [2, 0, 0, 0, 0x28, 0x66];
        w.write(t0, &udp(spoofer, [172, 28, 0, 10], [198, 51, 100, 1]))
            .unwrap();
        drop(w.into_inner());
    }
    let dir = tempfile::tempdir().unwrap();
    let input = Input {
        port: "vm1".into(),
        source: Source::Bytes {
            name: "vm1".into(),
            data: pcap.leak(),
        },
    };
    let (_, traces) = replay_traced(&cfg, vec![input], dir.path(), false, 10).unwrap();
    let text = packet_trace::to_text(&traces);
    let packets = traces["packets"].as_array().unwrap();
    let nated = &packets[0];
    assert_eq!(nated["end"]["kind"], "sent", "{text}");
    assert_eq!(nated["end"]["port"], "Port2", "{text}");
    let steps: Vec<(&str, &str)> = nated["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].as_str().unwrap(), s["note"].as_str().unwrap()))
        .collect();
    assert!(
        steps.iter().any(|(stage, note)| *stage == "nat44-out"
            && note.contains("IPv4 172.28.0.10 > 198.51.100.1")
            && note.contains("-> IPv4 10.0.2.15 > 198.51.100.1")),
        "no translation in {steps:?}"
    );
    assert_eq!(nated["route"]["destination"], "0.0.0.0/0", "{text}");
    let spoofed = &packets[1];
    assert_eq!(spoofed["end"]["kind"], "dropped");
    assert_eq!(spoofed["end"]["reason"], "spoofed_source");
    assert_eq!(spoofed["end"]["stage"], "l2");
}
