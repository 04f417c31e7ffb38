//! Golden test of the bundled demo: every frame edgefwd writes, port by
//! port, with its headers, TTL, checksums and MACs.

mod common;

use edgefwd_control::config::Config;
use edgefwd_control::demo;
use edgefwd_control::replay::replay;
use edgefwd_core::packet::check::check_frame;
use etherparse::{
    ArpOperation, Icmpv4Type, Icmpv6Type, LinkSlice, NetSlice, SlicedPacket, TransportSlice,
};
use std::net::Ipv6Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T0: u64 = 1_767_225_600;
const PORT2_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const PORT3_MAC: [u8; 6] = [2, 0, 0, 0, 3, 1];
const GATEWAY_MAC: [u8; 6] = [2, 0, 0, 0, 0x99, 1];
const CAMERA_MAC: [u8; 6] = [2, 0, 0, 0, 0x20, 0x50];
const ROUTER1_MAC: [u8; 6] = [2, 0, 0, 0, 0x20, 1];
const BCAST: [u8; 6] = [0xff; 6];

/// The frames of a capture, read by pcap-file (not edgefwd's own reader).
fn read(path: &Path) -> Vec<(Duration, Vec<u8>)> {
    read_bytes(&std::fs::read(path).unwrap())
}

fn read_bytes(pcap: &[u8]) -> Vec<(Duration, Vec<u8>)> {
    let mut r = pcap_file::pcap::PcapReader::new(pcap).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        out.push((p.timestamp - Duration::from_secs(T0), p.data.into_owned()));
    }
    out
}

/// What one output frame must be.
#[derive(Debug)]
enum Want {
    ArpRequest {
        asks: [u8; 4],
        from: [u8; 4],
    },
    ArpReply {
        to_mac: [u8; 6],
        is: [u8; 4],
    },
    Udp4 {
        src: [u8; 4],
        dst: [u8; 4],
        ttl: u8,
    },
    Tcp4Syn {
        dst: [u8; 4],
        ttl: u8,
    },
    Icmp4 {
        src: [u8; 4],
        dst: [u8; 4],
        kind: &'static str,
        quoted_dst: [u8; 4],
    },
    Icmp6 {
        src: &'static str,
        dst: &'static str,
        kind: &'static str,
    },
}

/// An output frame: its time, what it is, and its (destination, source) MACs.
type Expected = (Duration, Want, ([u8; 6], [u8; 6]));

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn check(port: &str, i: usize, frame: &[u8], want: &Want, macs: ([u8; 6], [u8; 6])) {
    let ctx = format!("{port} frame {i} ({want:?})");
    check_frame(frame).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let p = SlicedPacket::from_ethernet(frame).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
        panic!("{ctx}: not Ethernet")
    };
    assert_eq!(
        (eth.destination(), eth.source()),
        macs,
        "{ctx}: MACs (dst, src)"
    );
    match (want, &p.net) {
        (Want::ArpRequest { asks, from }, Some(NetSlice::Arp(a))) => {
            assert_eq!(a.operation(), ArpOperation::REQUEST, "{ctx}");
            assert_eq!(
                (a.target_protocol_addr(), a.sender_protocol_addr()),
                (&asks[..], &from[..]),
                "{ctx}"
            );
            assert_eq!(a.sender_hw_addr(), &macs.1[..], "{ctx}");
        }
        (Want::ArpReply { to_mac, is }, Some(NetSlice::Arp(a))) => {
            assert_eq!(a.operation(), ArpOperation::REPLY, "{ctx}");
            assert_eq!(
                (a.sender_protocol_addr(), a.target_hw_addr()),
                (&is[..], &to_mac[..]),
                "{ctx}"
            );
            assert_eq!(
                a.sender_hw_addr(),
                &macs.1[..],
                "{ctx}: answers with the port's MAC"
            );
        }
        (Want::Udp4 { src, dst, ttl }, Some(NetSlice::Ipv4(ip))) => {
            let h = ip.header();
            assert_eq!(
                (h.source(), h.destination(), h.ttl()),
                (*src, *dst, *ttl),
                "{ctx}"
            );
            assert!(matches!(p.transport, Some(TransportSlice::Udp(_))), "{ctx}");
        }
        (Want::Tcp4Syn { dst, ttl }, Some(NetSlice::Ipv4(ip))) => {
            assert_eq!(
                (ip.header().destination(), ip.header().ttl()),
                (*dst, *ttl),
                "{ctx}"
            );
            let Some(TransportSlice::Tcp(t)) = &p.transport else {
                panic!("{ctx}: not TCP")
            };
            assert!(t.syn(), "{ctx}");
        }
        (
            Want::Icmp4 {
                src,
                dst,
                kind,
                quoted_dst,
            },
            Some(NetSlice::Ipv4(ip)),
        ) => {
            let h = ip.header();
            assert_eq!(
                (h.source(), h.destination(), h.ttl()),
                (*src, *dst, 64),
                "{ctx}"
            );
            let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
                panic!("{ctx}: not ICMP")
            };
            let got = match icmp.icmp_type() {
                Icmpv4Type::EchoReply(_) => "echo reply",
                Icmpv4Type::TimeExceeded(_) => "time exceeded",
                Icmpv4Type::DestinationUnreachable(_) => "unreachable",
                _ => "other",
            };
            assert_eq!(got, *kind, "{ctx}");
            if *kind != "echo reply" {
                let quoted = icmp.payload();
                assert_eq!(
                    &quoted[16..20],
                    quoted_dst,
                    "{ctx}: quotes the offending packet"
                );
            }
        }
        (Want::Icmp6 { src, dst, kind }, Some(NetSlice::Ipv6(ip))) => {
            let h = ip.header();
            let (src, dst): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
            assert_eq!((h.source_addr(), h.destination_addr()), (src, dst), "{ctx}");
            let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
                panic!("{ctx}: not ICMPv6")
            };
            let got = match icmp.icmp_type() {
                Icmpv6Type::EchoReply(_) => "echo reply",
                Icmpv6Type::DestinationUnreachable(_) => "unreachable",
                Icmpv6Type::NeighborAdvertisement(na) => {
                    assert!(
                        na.router && na.solicited,
                        "{ctx}: router and solicited flags"
                    );
                    "neighbor advertisement"
                }
                other => panic!("{ctx}: unexpected {other:?}"),
            };
            assert_eq!(got, *kind, "{ctx}");
            if *kind == "neighbor advertisement" {
                assert_eq!(h.hop_limit(), 255, "{ctx}: NDP hop limit");
            }
        }
        (w, n) => panic!("{ctx}: expected {w:?}, got {n:?}"),
    }
}

#[test]
fn demo_outputs_packet_by_packet() {
    let cfg = Config::parse(demo::CONFIG).unwrap();
    let dir = common::temp_dir("demo");
    let report = replay(&cfg, demo::inputs(), dir.path(), false).unwrap();

    let p = &report.packets;
    assert_eq!(
        (p.received, p.forwarded, p.local, p.dropped, p.generated),
        (14, 4, 5, 5, 10)
    );
    let drops: Vec<(&str, u64)> = report.drops.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        drops,
        vec![
            ("ip4_bad_checksum", 1),
            ("neighbor_unresolved", 1),
            ("no_route", 1),
            ("runt", 1),
            ("ttl_expired", 1)
        ]
    );

    let (camera, server, remote, sensor) = (
        [192, 168, 20, 50],
        [203, 0, 113, 10],
        [198, 51, 100, 7],
        [192, 168, 21, 7],
    );
    let port2: Vec<Expected> = vec![
        (
            ms(100),
            Want::ArpRequest {
                asks: [10, 0, 2, 1],
                from: [10, 0, 2, 15],
            },
            (BCAST, PORT2_MAC),
        ),
        (
            ms(150),
            Want::Udp4 {
                src: camera,
                dst: server,
                ttl: 63,
            },
            (GATEWAY_MAC, PORT2_MAC),
        ),
        (
            ms(400),
            Want::Icmp4 {
                src: [10, 0, 2, 15],
                dst: remote,
                kind: "time exceeded",
                quoted_dst: sensor,
            },
            (GATEWAY_MAC, PORT2_MAC),
        ),
        (
            ms(4000),
            Want::Udp4 {
                src: camera,
                dst: server,
                ttl: 63,
            },
            (GATEWAY_MAC, PORT2_MAC),
        ),
    ];
    let c6 = "2001:db8:20::50";
    let port3: Vec<Expected> = vec![
        (
            ms(0),
            Want::ArpReply {
                to_mac: CAMERA_MAC,
                is: [192, 168, 20, 10],
            },
            (CAMERA_MAC, PORT3_MAC),
        ),
        (
            ms(10),
            Want::Icmp4 {
                src: [192, 168, 20, 10],
                dst: camera,
                kind: "echo reply",
                quoted_dst: [0; 4],
            },
            (CAMERA_MAC, PORT3_MAC),
        ),
        (
            ms(200),
            Want::Udp4 {
                src: server,
                dst: camera,
                ttl: 56,
            },
            (CAMERA_MAC, PORT3_MAC),
        ),
        // Metric 100 through Port3 beats metric 200 through Port4.
        (
            ms(300),
            Want::Tcp4Syn {
                dst: sensor,
                ttl: 49,
            },
            (ROUTER1_MAC, PORT3_MAC),
        ),
        (
            ms(600),
            Want::Icmp6 {
                src: "2001:db8:20::10",
                dst: c6,
                kind: "neighbor advertisement",
            },
            (CAMERA_MAC, PORT3_MAC),
        ),
        (
            ms(610),
            Want::Icmp6 {
                src: "2001:db8:20::10",
                dst: c6,
                kind: "echo reply",
            },
            (CAMERA_MAC, PORT3_MAC),
        ),
        (
            ms(700),
            Want::Icmp6 {
                src: "2001:db8:20::10",
                dst: c6,
                kind: "unreachable",
            },
            (CAMERA_MAC, PORT3_MAC),
        ),
        (
            ms(800),
            Want::ArpRequest {
                asks: [192, 168, 20, 99],
                from: [192, 168, 20, 10],
            },
            (BCAST, PORT3_MAC),
        ),
        (
            ms(1800),
            Want::ArpRequest {
                asks: [192, 168, 20, 99],
                from: [192, 168, 20, 10],
            },
            (BCAST, PORT3_MAC),
        ),
        (
            ms(2800),
            Want::ArpRequest {
                asks: [192, 168, 20, 99],
                from: [192, 168, 20, 10],
            },
            (BCAST, PORT3_MAC),
        ),
    ];
    for (port, wants) in [("Port2", port2), ("Port3", port3), ("Port4", vec![])] {
        let got = read(&dir.path().join(format!("{port}.pcap")));
        assert_eq!(got.len(), wants.len(), "{port}: frame count");
        assert_eq!(
            report.ports[port].tx,
            wants.len() as u64,
            "{port}: tx counter"
        );
        for (i, ((ts, frame), (want_ts, want, macs))) in got.iter().zip(&wants).enumerate() {
            assert_eq!(ts, want_ts, "{port} frame {i}: time");
            check(port, i, frame, want, *macs);
        }
    }

    // Every output pcap is readable by tcpdump.
    if common::need_tool("demo_outputs_packet_by_packet", "tcpdump", "--version") {
        for port in ["Port2", "Port3", "Port4"] {
            let path = dir.path().join(format!("{port}.pcap"));
            let out = Command::new("tcpdump")
                .args(["-nn", "-r"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "tcpdump cannot read {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let lines = String::from_utf8_lossy(&out.stdout).lines().count() as u64;
            assert_eq!(
                lines, report.ports[port].tx,
                "tcpdump sees every frame of {port}"
            );
        }
    }
}

#[test]
fn demo_json_holds_the_accounting_identity() {
    let cfg = Config::parse(demo::CONFIG).unwrap();
    let dir = common::temp_dir("demo-json");
    let report = replay(&cfg, demo::inputs(), dir.path(), false).unwrap();
    let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let n = |k: &str| v["packets"][k].as_u64().unwrap();
    // Counted outside the router: the frames of the input captures, and
    // of the output captures, read by pcap-file.
    let fed = (read_bytes(demo::PORT2_PCAP).len() + read_bytes(demo::PORT3_PCAP).len()) as u64;
    assert_eq!(n("in"), fed, "every input frame is counted");
    let mut written = 0;
    for port in ["Port2", "Port3", "Port4"] {
        let frames = read(&dir.path().join(format!("{port}.pcap"))).len() as u64;
        assert_eq!(v["ports"][port]["tx"], frames, "{port}'s tx");
        written += frames;
    }
    assert_eq!(
        written,
        n("forwarded") + n("generated"),
        "frames out are the forwarded and the generated ones"
    );
    assert_eq!(n("in"), n("forwarded") + n("local") + n("dropped"));
    let sum: u64 = v["drops"]
        .as_object()
        .unwrap()
        .values()
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(n("dropped"), sum);
    assert_eq!(v["ports"]["Port3"]["rx"], 7);
    let lost = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["interface"] == "Port4" && r["kind"] == "static")
        .unwrap();
    assert_eq!(lost["selected"], false);
    assert_eq!(lost["metric"], 200);
}
