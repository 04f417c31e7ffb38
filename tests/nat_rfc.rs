//! NAT against RFC 4787, 5382, 5508 and 7857, one test per requirement, by
//! replay: generated traces in, output pcaps checked frame by frame (every
//! output frame with valid checksums at every layer).
//!
//! The appliance: Port2 (10.0.2.15/24, gateway 10.0.2.1) and an internal
//! switch "internal" (172.28.0.1/24) with vm1 (172.28.0.10) and vm2
//! (172.28.0.11), NATed out through Port2. Remote hosts R1, R2 are behind
//! the gateway.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::net::Ipv4Addr;
use std::time::Duration;

use edgefwd_control::config::Config;
use edgefwd_control::replay::{replay_with, Input, Options, Source};
use edgefwd_control::report::Report;
use edgefwd_control::trace::{TraceReader, TraceWriter};
use edgefwd_core::packet::check::check_frame;
use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

const CONFIG: &str = r#"
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

const EXT: [u8; 4] = [10, 0, 2, 15];
const VM1: [u8; 4] = [172, 28, 0, 10];
const VM2: [u8; 4] = [172, 28, 0, 11];
const R1: [u8; 4] = [198, 51, 100, 1];
const R2: [u8; 4] = [198, 51, 100, 2];
const PORT2_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0x99, 1];
const GW_IF_MAC: [u8; 6] = [2, 0, 0, 0, 0x28, 1];
const VM1_MAC: [u8; 6] = [2, 0, 0, 0, 0x28, 0x10];
const VM2_MAC: [u8; 6] = [2, 0, 0, 0, 0x28, 0x11];

/// One input frame: when (seconds), on which port.
struct In {
    at: f64,
    port: &'static str,
    frame: Vec<u8>,
}

fn udp(from_mac: [u8; 6], to_mac: [u8; 6], src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(from_mac, to_mac)
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut v, b"nat test")
        .unwrap();
    v
}

fn tcp(
    from_mac: [u8; 6],
    to_mac: [u8; 6],
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    syn: bool,
    rst: bool,
) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(from_mac, to_mac)
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, 1000, 64000);
    let b = if syn { b.syn() } else { b.ack(1) };
    let b = if rst { b.rst() } else { b };
    b.write(&mut v, &[]).unwrap();
    v
}

/// From a VM (to the gateway interface) or from the internet (to Port2).
fn out_udp(vm: [u8; 4], sport: u16, dst: ([u8; 4], u16)) -> In {
    let mac = if vm == VM1 { VM1_MAC } else { VM2_MAC };
    In {
        at: 0.0,
        port: if vm == VM1 { "vm1" } else { "vm2" },
        frame: udp(mac, GW_IF_MAC, (vm, sport), dst),
    }
}

fn in_udp(src: ([u8; 4], u16), dport: u16) -> In {
    In {
        at: 0.0,
        port: "Port2",
        frame: udp(GW_MAC, PORT2_MAC, src, (EXT, dport)),
    }
}

fn at(mut i: In, t: f64) -> In {
    i.at = t;
    i
}

/// The frames each port sent, by port name.
type Sent = BTreeMap<String, Vec<Vec<u8>>>;

/// Replays `inputs` (in time order) with `extra` config appended, with 1,
/// 2 and 4 workers (each frame to the worker a multi-queue TAP would give
/// it, flows handed to their owners): for each, the frames each port sent
/// and the report.
fn runs(extra: &str, inputs: Vec<In>) -> Vec<(Sent, Report)> {
    let cfg = Config::parse(&format!("{CONFIG}{extra}")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t0 = Duration::from_secs(1_767_225_600);
    let mut by_port: BTreeMap<&str, Vec<(Duration, Vec<u8>)>> = BTreeMap::new();
    for i in inputs {
        let ts = t0 + Duration::from_secs_f64(i.at);
        by_port.entry(i.port).or_default().push((ts, i.frame));
    }
    let mut files = Vec::new();
    for (port, frames) in by_port {
        let path = dir.path().join(format!("in-{port}.pcap"));
        let mut w =
            TraceWriter::new(BufWriter::new(std::fs::File::create(&path).unwrap())).unwrap();
        for (ts, f) in frames {
            w.write(ts, &f).unwrap();
        }
        drop(w.into_inner());
        files.push((port.to_owned(), path));
    }
    [1, 2, 4]
        .into_iter()
        .map(|workers| {
            replay_on(
                &cfg,
                &files,
                &dir.path().join(format!("out{workers}")),
                workers,
            )
        })
        .collect()
}

/// One replay of `files` with `workers` workers into `out`.
fn replay_on(
    cfg: &Config,
    files: &[(String, std::path::PathBuf)],
    out: &std::path::Path,
    workers: usize,
) -> (Sent, Report) {
    let inputs = files
        .iter()
        .map(|(port, path)| Input {
            port: port.clone(),
            source: Source::File(path.clone()),
        })
        .collect();
    let opts = Options {
        workers,
        ..Options::default()
    };
    // A failing assertion's output names the run it was in.
    eprintln!("-- {workers} worker(s)");
    let (report, _) = replay_with(cfg, inputs, out, &opts).unwrap();
    let mut sent = BTreeMap::new();
    for p in &cfg.ports {
        let mut r = TraceReader::open(&out.join(format!("{}.pcap", p.name))).unwrap();
        let mut frames = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            check_frame(&rec.data).unwrap_or_else(|e| panic!("{}: {e}: {:02x?}", p.name, rec.data));
            frames.push(rec.data);
        }
        sent.insert(p.name.clone(), frames);
    }
    let p = &report.packets;
    assert_eq!(
        p.received,
        p.forwarded + p.local + p.dropped,
        "accounting identity"
    );
    (sent, report)
}

/// (source, destination) of an IPv4 TCP/UDP frame, ports included; for
/// ICMP echo, the id as both ports.
fn ends(frame: &[u8]) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
    let s = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &s.net else {
        panic!("not IPv4")
    };
    let (a, b) = (ip.header().source_addr(), ip.header().destination_addr());
    let (p, q) = match &s.transport {
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(TransportSlice::Icmpv4(i)) => match i.icmp_type() {
            Icmpv4Type::EchoRequest(e) | Icmpv4Type::EchoReply(e) => (e.id, e.id),
            _ => (0, 0),
        },
        _ => (0, 0),
    };
    ((a, p), (b, q))
}

fn ep(a: [u8; 4], p: u16) -> (Ipv4Addr, u16) {
    (Ipv4Addr::from(a), p)
}

fn drops(r: &Report, reason: &str) -> u64 {
    r.drops.get(reason).copied().unwrap_or(0)
}

#[test]
fn rfc4787_req1_eim_one_external_port_for_every_destination() {
    for (sent, report) in runs(
        "",
        vec![
            out_udp(VM1, 5000, (R1, 53)),
            at(out_udp(VM1, 5000, (R2, 443)), 1.0),
        ],
    ) {
        let sessions: Vec<(&str, &str, &str)> = report
            .nat
            .iter()
            .map(|n| (n.inside.as_str(), n.external.as_str(), n.remote.as_str()))
            .collect();
        assert_eq!(
            sessions,
            [
                ("172.28.0.10:5000", "10.0.2.15:5000", "198.51.100.1:53"),
                ("172.28.0.10:5000", "10.0.2.15:5000", "198.51.100.2:443")
            ],
            "the report's nat section"
        );
        let up = &sent["Port2"];
        assert_eq!(up.len(), 2);
        assert_eq!(ends(&up[0]), (ep(EXT, 5000), ep(R1, 53)), "port preserved");
        assert_eq!(
            ends(&up[1]),
            (ep(EXT, 5000), ep(R2, 443)),
            "same mapping for another destination"
        );
    }
}

#[test]
fn rfc4787_req3_no_port_overloading_and_low_ports_stay_low() {
    let inputs = vec![
        out_udp(VM1, 5000, (R1, 53)),
        at(out_udp(VM2, 5000, (R1, 53)), 0.1),
        at(out_udp(VM1, 123, (R1, 123)), 0.2),
        at(out_udp(VM2, 123, (R1, 123)), 0.3),
    ];
    for (sent, _) in runs("", inputs) {
        let ports: Vec<u16> = sent["Port2"].iter().map(|f| ends(f).0 .1).collect();
        assert_eq!(ports[0], 5000);
        assert!(ports[1] != 5000 && ports[1] >= 1024, "{ports:?}");
        assert_eq!(ports[2], 123);
        assert!(
            ports[3] != 123 && (1..1024).contains(&ports[3]),
            "{ports:?}"
        );
    }
}

#[test]
fn rfc4787_req8_address_dependent_filtering_by_default() {
    let inputs = vec![
        out_udp(VM1, 5000, (R1, 53)),
        at(in_udp((R1, 53), 5000), 1.0),
        at(in_udp((R1, 9999), 5000), 2.0),
        at(in_udp((R2, 53), 5000), 3.0),
    ];
    for (sent, report) in runs("", inputs) {
        let down = &sent["vm1"];
        assert_eq!(down.len(), 2, "R1 from any port gets in; R2 does not");
        assert_eq!(ends(&down[0]), (ep(R1, 53), ep(VM1, 5000)));
        assert_eq!(&down[0][..6], &VM1_MAC);
        assert_eq!(drops(&report, "nat_filtered"), 1);
        assert!(sent["vm2"].is_empty());
    }
}

#[test]
fn rfc4787_req8_endpoint_independent_filtering_on_request() {
    let inputs = vec![out_udp(VM1, 5000, (R1, 53)), at(in_udp((R2, 7), 5000), 1.0)];
    for (sent, _) in runs("\n[nat]\nfiltering = \"endpoint-independent\"\n", inputs) {
        assert_eq!(ends(&sent["vm1"][0]), (ep(R2, 7), ep(VM1, 5000)));
    }
}

#[test]
fn rfc4787_req5_udp_lives_five_minutes_req6_refreshed_outbound_only() {
    let inputs = vec![
        out_udp(VM1, 5000, (R1, 53)),
        at(in_udp((R1, 53), 5000), 200.0),
        // Inbound at 200 s did not refresh: gone at 300 s.
        at(in_udp((R1, 53), 5000), 301.0),
        at(out_udp(VM1, 6000, (R1, 53)), 400.0),
        at(out_udp(VM1, 6000, (R1, 53)), 600.0),
        // Outbound at 600 s did: still there at 899 s.
        at(in_udp((R1, 53), 6000), 899.0),
    ];
    for (sent, report) in runs("", inputs) {
        assert_eq!(sent["vm1"].len(), 2);
        assert_eq!(drops(&report, "nat_no_session"), 1);
    }
}

#[test]
fn rfc4787_req9_hairpinning_shows_the_external_source() {
    let inputs = vec![
        out_udp(VM1, 5000, (R1, 53)),
        // vm2 reaches vm1 through vm1's external endpoint.
        at(
            In {
                at: 0.0,
                port: "vm2",
                frame: udp(VM2_MAC, GW_IF_MAC, (VM2, 7000), (EXT, 5000)),
            },
            1.0,
        ),
    ];
    for (sent, _) in runs("\n[nat]\nfiltering = \"endpoint-independent\"\n", inputs) {
        let got = &sent["vm1"];
        assert_eq!(got.len(), 1);
        assert_eq!(ends(&got[0]), (ep(EXT, 7000), ep(VM1, 5000)));
    }
}

/// A packet from outside claiming an inside source is no hairpin: it is
/// dropped, makes no mapping and reaches no VM. Found by the `parse_ipv4`
/// fuzz target.
#[test]
fn rfc4787_req9_hairpinning_between_hosts_that_different_workers_own() {
    // 172.28.0.12 hashes to another worker than vm1 (with 2 and with 4):
    // its packet is translated by its own worker, then handed to vm1's.
    const H12: [u8; 4] = [172, 28, 0, 12];
    let extra = "\n[nat]\nfiltering = \"endpoint-independent\"\n\n[[neighbor]]\ninterface = \"internal\"\naddress = \"172.28.0.12\"\nmac = \"02:00:00:00:28:11\"\n";
    let inputs = vec![
        out_udp(VM1, 5000, (R1, 53)),
        at(
            In {
                at: 0.0,
                port: "vm2",
                frame: udp(VM2_MAC, GW_IF_MAC, (H12, 7000), (EXT, 5000)),
            },
            1.0,
        ),
        // vm1 answers the endpoint it saw, back through the NAT.
        at(
            In {
                at: 0.0,
                port: "vm1",
                frame: udp(VM1_MAC, GW_IF_MAC, (VM1, 5000), (EXT, 7000)),
            },
            2.0,
        ),
    ];
    for (k, (sent, report)) in runs(extra, inputs).into_iter().enumerate() {
        assert_eq!(sent["vm1"].len(), 1, "run {k}");
        assert_eq!(ends(&sent["vm1"][0]), (ep(EXT, 7000), ep(VM1, 5000)));
        assert_eq!(sent["vm2"].len(), 1, "run {k}");
        assert_eq!(ends(&sent["vm2"][0]), (ep(EXT, 5000), ep(H12, 7000)));
        assert_eq!(report.packets.handed_off > 0, k > 0, "run {k}");
    }
}

#[test]
fn an_inside_source_arriving_from_outside_is_spoofed() {
    let inputs = vec![
        out_udp(VM1, 5000, (R1, 53)),
        at(in_udp((VM2, 7000), 5000), 1.0),
    ];
    for (sent, report) in runs("\n[nat]\nfiltering = \"endpoint-independent\"\n", inputs) {
        assert!(sent["vm1"].is_empty(), "the spoofed packet got in");
        assert_eq!(drops(&report, "spoofed_source"), 1);
        assert_eq!(report.nat.len(), 1, "only vm1's session: {:?}", report.nat);
    }
}

#[test]
fn rfc5382_req1_tcp_eim_and_unsolicited_syn_gets_nothing_in() {
    let vm_syn = |dst| In {
        at: 0.0,
        port: "vm1",
        frame: tcp(VM1_MAC, GW_IF_MAC, (VM1, 40000), dst, true, false),
    };
    let inputs = vec![
        vm_syn((R1, 80)),
        at(vm_syn((R2, 443)), 0.5),
        at(
            In {
                at: 0.0,
                port: "Port2",
                frame: tcp(GW_MAC, PORT2_MAC, (R2, 5555), (EXT, 22), true, false),
            },
            1.0,
        ),
    ];
    for (sent, report) in runs("", inputs) {
        let up = &sent["Port2"];
        assert_eq!(ends(&up[0]).0, ends(&up[1]).0, "one mapping for both");
        assert_eq!(ends(&up[0]).0, ep(EXT, 40000));
        assert!(sent["vm1"].is_empty() && sent["vm2"].is_empty());
        assert_eq!(
            drops(&report, "nat_no_session"),
            1,
            "no RST, no ICMP: just dropped"
        );
        assert_eq!(report.packets.generated, 0);
    }
}

#[test]
fn rfc5382_req2_simultaneous_open() {
    let inputs = vec![
        In {
            at: 0.0,
            port: "vm1",
            frame: tcp(VM1_MAC, GW_IF_MAC, (VM1, 40000), (R1, 6000), true, false),
        },
        In {
            at: 0.5,
            port: "Port2",
            frame: tcp(GW_MAC, PORT2_MAC, (R1, 6000), (EXT, 40000), true, false),
        },
    ];
    for (sent, _) in runs("", inputs) {
        assert_eq!(ends(&sent["vm1"][0]), (ep(R1, 6000), ep(VM1, 40000)));
    }
}

#[test]
fn rfc7857_rst_keeps_the_session_four_minutes_of_silence() {
    let t = |at, port, frame| In { at, port, frame };
    let inputs = vec![
        t(
            0.0,
            "vm1",
            tcp(VM1_MAC, GW_IF_MAC, (VM1, 40000), (R1, 80), true, false),
        ),
        t(
            0.1,
            "Port2",
            tcp(GW_MAC, PORT2_MAC, (R1, 80), (EXT, 40000), true, false),
        ),
        t(
            0.2,
            "vm1",
            tcp(VM1_MAC, GW_IF_MAC, (VM1, 40000), (R1, 80), false, true),
        ),
        // Within 4 minutes of the RST: translated, and the timer restarts.
        t(
            100.0,
            "Port2",
            tcp(GW_MAC, PORT2_MAC, (R1, 80), (EXT, 40000), false, false),
        ),
        // 4 minutes after that, silence has ended the session.
        t(
            341.0,
            "Port2",
            tcp(GW_MAC, PORT2_MAC, (R1, 80), (EXT, 40000), false, false),
        ),
    ];
    for (sent, report) in runs("", inputs) {
        assert_eq!(sent["Port2"].len(), 2, "SYN and RST both translated");
        assert_eq!(sent["vm1"].len(), 2, "the SYN-ACK and the segment at 100 s");
        assert_eq!(drops(&report, "nat_no_session"), 1, "the one at 341 s");
    }
}

fn ping(id: u16) -> In {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(VM1_MAC, GW_IF_MAC)
        .ipv4(VM1, R1, 64)
        .icmpv4_echo_request(id, 1)
        .write(&mut v, b"ping")
        .unwrap();
    In {
        at: 0.0,
        port: "vm1",
        frame: v,
    }
}

fn pong(id: u16, from: [u8; 4]) -> In {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(GW_MAC, PORT2_MAC)
        .ipv4(from, EXT, 64)
        .icmpv4_echo_reply(id, 1)
        .write(&mut v, b"ping")
        .unwrap();
    In {
        at: 1.0,
        port: "Port2",
        frame: v,
    }
}

#[test]
fn rfc5508_req1_echo_ids_are_mapped_and_time_out_after_60_s() {
    let late = at(pong(7, R1), 61.0);
    for (sent, report) in runs("", vec![ping(7), pong(7, R1), late]) {
        assert_eq!(ends(&sent["Port2"][0]), (ep(EXT, 7), ep(R1, 7)));
        assert_eq!(ends(&sent["vm1"][0]), (ep(R1, 7), ep(VM1, 7)));
        assert_eq!(sent["vm1"].len(), 1);
        assert_eq!(drops(&report, "nat_no_session"), 1);
    }
}

/// An ICMP error from `from` to `to`, quoting `quoted` (an IPv4 packet,
/// Ethernet header included, of which the IP header and 8 bytes are kept).
fn icmp_error(
    from_mac: [u8; 6],
    to_mac: [u8; 6],
    from: [u8; 4],
    to: [u8; 4],
    typ: Icmpv4Type,
    quoted: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(from_mac, to_mac)
        .ipv4(from, to, 64)
        .icmpv4(typ)
        .write(&mut v, &quoted[14..14 + 28])
        .unwrap();
    v
}

/// The quoted packet's (source, destination) in an ICMP error frame.
fn quoted_ends(frame: &[u8]) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
    let q = &frame[14 + 20 + 8..];
    let a = |i: usize| Ipv4Addr::new(q[i], q[i + 1], q[i + 2], q[i + 3]);
    let p = |i: usize| u16::from_be_bytes([q[20 + i], q[21 + i]]);
    assert!(
        edgefwd_core::packet::checksum::verify(&q[..20]),
        "quoted IP checksum"
    );
    ((a(12), p(0)), (a(16), p(2)))
}

#[test]
fn rfc5508_req3_inbound_error_reaches_the_inside_host_translated() {
    // What left Port2 for R1: 10.0.2.15:5000 -> R1:53; a router on the
    // way (10.0.2.1) says time exceeded.
    let left = udp(PORT2_MAC, GW_MAC, (EXT, 5000), (R1, 53));
    let err = icmp_error(
        GW_MAC,
        PORT2_MAC,
        [10, 0, 2, 1],
        EXT,
        Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
        &left,
    );
    for (sent, _) in runs(
        "",
        vec![
            out_udp(VM1, 5000, (R1, 53)),
            In {
                at: 1.0,
                port: "Port2",
                frame: err,
            },
        ],
    ) {
        let got = &sent["vm1"];
        assert_eq!(got.len(), 1);
        assert_eq!(
            ends(got.last().unwrap()).1 .0,
            Ipv4Addr::from(VM1),
            "outer destination"
        );
        assert_eq!(
            quoted_ends(&got[0]),
            (ep(VM1, 5000), ep(R1, 53)),
            "quoted as vm1 sent it"
        );
    }
}

#[test]
fn rfc5508_req4_outbound_error_leaves_with_the_external_address() {
    // R1 sends to vm1's mapping; vm1 answers port unreachable.
    let came = udp(GW_IF_MAC, VM1_MAC, (R1, 53), (VM1, 5000));
    let unreach =
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port);
    let err = icmp_error(VM1_MAC, GW_IF_MAC, VM1, R1, unreach, &came);
    let inputs = vec![
        out_udp(VM1, 5000, (R1, 53)),
        at(in_udp((R1, 53), 5000), 1.0),
        In {
            at: 2.0,
            port: "vm1",
            frame: err,
        },
    ];
    for (sent, _) in runs("", inputs) {
        let up = &sent["Port2"];
        assert_eq!(up.len(), 2);
        assert_eq!(ends(&up[1]).0 .0, Ipv4Addr::from(EXT));
        assert_eq!(quoted_ends(&up[1]), (ep(R1, 53), ep(EXT, 5000)));
    }
}

#[test]
fn rfc5508_req4_errors_without_a_session_are_dropped() {
    let left = udp(PORT2_MAC, GW_MAC, (EXT, 5001), (R1, 53));
    let unreach =
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port);
    let err = icmp_error(GW_MAC, PORT2_MAC, R1, EXT, unreach, &left);
    for (sent, report) in runs(
        "",
        vec![
            out_udp(VM1, 5000, (R1, 53)),
            In {
                at: 1.0,
                port: "Port2",
                frame: err,
            },
        ],
    ) {
        assert!(sent["vm1"].is_empty());
        assert_eq!(drops(&report, "nat_no_session"), 1);
    }
}

/// An error whose ICMP checksum is wrong is dropped, both ways: summing
/// the message again after translating its quote would pass the damage on
/// as a valid message.
#[test]
fn nat_drops_icmp_errors_with_a_damaged_checksum() {
    let left = udp(PORT2_MAC, GW_MAC, (EXT, 5000), (R1, 53));
    let unreach =
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port);
    let mut inbound = icmp_error(GW_MAC, PORT2_MAC, R1, EXT, unreach.clone(), &left);
    let came = udp(GW_IF_MAC, VM1_MAC, (R1, 53), (VM1, 5000));
    let mut outbound = icmp_error(VM1_MAC, GW_IF_MAC, VM1, R1, unreach, &came);
    // One bit of the quoted payload flips on the way.
    for f in [&mut inbound, &mut outbound] {
        *f.last_mut().unwrap() ^= 1;
    }
    let inputs = vec![
        out_udp(VM1, 5000, (R1, 53)),
        at(in_udp((R1, 53), 5000), 1.0),
        In {
            at: 2.0,
            port: "Port2",
            frame: inbound,
        },
        In {
            at: 3.0,
            port: "vm1",
            frame: outbound,
        },
    ];
    for (sent, report) in runs("", inputs) {
        assert_eq!(sent["vm1"].len(), 1, "only the UDP reply reaches vm1");
        assert_eq!(sent["Port2"].len(), 1, "only the UDP request leaves");
        assert_eq!(drops(&report, "icmp_malformed"), 2);
    }
}

#[test]
fn rfc5508_req8_exhaustion_is_answered_administratively_prohibited() {
    let inputs = (0..3)
        .map(|i| at(out_udp(VM1, 5000 + i, (R1, 53)), f64::from(i) * 0.1))
        .collect();
    for (sent, report) in runs("\n[nat]\nport_range = \"40000-40001\"\n", inputs) {
        assert_eq!(sent["Port2"].len(), 2);
        assert_eq!(drops(&report, "nat_ports_exhausted"), 1);
        let back = &sent["vm1"];
        assert_eq!(back.len(), 1);
        let s = SlicedPacket::from_ethernet(&back[0]).unwrap();
        let Some(TransportSlice::Icmpv4(i)) = s.transport else {
            panic!("not ICMP")
        };
        assert_eq!((i.type_u8(), i.code_u8()), (3, 13));
        assert_eq!(
            ends(&back[0]).0 .0,
            Ipv4Addr::new(172, 28, 0, 1),
            "from the gateway interface"
        );
    }
}

#[test]
fn nat_drops_fragments_and_untranslatable_protocols_by_name() {
    let mut frag = udp(VM1_MAC, GW_IF_MAC, (VM1, 5000), (R1, 53));
    frag[20] |= 0x20; // more fragments
    let c = edgefwd_core::packet::checksum::update16(
        u16::from_be_bytes([frag[24], frag[25]]),
        u16::from_be_bytes([frag[20] & !0x20, frag[21]]),
        u16::from_be_bytes([frag[20], frag[21]]),
    );
    frag[24..26].copy_from_slice(&c.to_be_bytes());
    let mut gre = udp(VM1_MAC, GW_IF_MAC, (VM1, 5000), (R1, 53));
    let c = edgefwd_core::packet::checksum::update16(
        u16::from_be_bytes([gre[24], gre[25]]),
        u16::from_be_bytes([gre[22], 17]),
        u16::from_be_bytes([gre[22], 47]),
    );
    gre[23] = 47;
    gre[24..26].copy_from_slice(&c.to_be_bytes());
    let inputs = vec![
        In {
            at: 0.0,
            port: "vm1",
            frame: frag,
        },
        In {
            at: 0.1,
            port: "vm1",
            frame: gre,
        },
    ];
    for (sent, report) in runs("", inputs) {
        assert!(sent["Port2"].is_empty());
        assert_eq!(drops(&report, "nat_fragment"), 1);
        assert_eq!(drops(&report, "nat_unsupported_protocol"), 1);
    }
}

#[test]
fn nothing_unsolicited_gets_in_even_when_routed_to_the_inside_subnet() {
    let direct = In {
        at: 0.0,
        port: "Port2",
        frame: udp(GW_MAC, PORT2_MAC, (R1, 53), (VM1, 5000)),
    };
    for (sent, report) in runs("", vec![out_udp(VM1, 5000, (R1, 53)), at(direct, 1.0)]) {
        assert!(sent["vm1"].is_empty() && sent["vm2"].is_empty());
        assert_eq!(drops(&report, "nat_filtered"), 1);
    }
}

/// Random traffic from six inside hosts (sharing source ports, so ports
/// collide), replies and unsolicited packets from outside, in `n` events
/// drawn from `seed`; and the static neighbours the extra hosts need.
fn random_traffic(seed: u64, n: usize) -> (String, Vec<In>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let host = |i: u8| ([172, 28, 0, 10 + i], [2, 0, 0, 0, 0x28, 0x10 + i]);
    let mut extra = String::new();
    for i in 2..6 {
        let (a, _) = host(i);
        extra += &format!(
            "\n[[neighbor]]\ninterface = \"internal\"\naddress = \"{}\"\nmac = \"02:00:00:00:28:{:02x}\"\n",
            Ipv4Addr::from(a),
            0x10 + i
        );
    }
    let remotes = [R1, R2, [198, 51, 100, 3]];
    let mut t = 0.0;
    let mut inputs = Vec::new();
    for _ in 0..n {
        t += rng.gen_range(0.0..0.05);
        let (addr, mac) = host(rng.gen_range(0..6));
        let port = if addr[3] % 2 == 0 { "vm1" } else { "vm2" };
        let remote = (
            remotes[rng.gen_range(0..3)],
            [53, 80, 123][rng.gen_range(0..3)],
        );
        let sport = 5000 + rng.gen_range(0..8);
        let frame = match rng.gen_range(0..10) {
            0..=4 => udp(mac, GW_IF_MAC, (addr, sport), remote),
            5 | 6 => tcp(mac, GW_IF_MAC, (addr, sport), remote, true, false),
            _ => {
                // From outside: a reply to some mapping, or unsolicited.
                let dport = if rng.gen_bool(0.8) { sport } else { 40000 };
                let frame = udp(GW_MAC, PORT2_MAC, remote, (EXT, dport));
                inputs.push(at(
                    In {
                        at: 0.0,
                        port: "Port2",
                        frame,
                    },
                    t,
                ));
                continue;
            }
        };
        inputs.push(at(
            In {
                at: 0.0,
                port,
                frame,
            },
            t,
        ));
    }
    (extra, inputs)
}

#[test]
fn nat_on_several_workers_maps_filters_and_drops_as_on_one() {
    for seed in 0..6 {
        // A burst of one frame: every worker count then handles the frames
        // in the same order, so even contested ports must come out alike.
        let (hosts, inputs) = random_traffic(seed, 300);
        let extra = format!("\n[dataplane]\nburst = 1\n{hosts}");
        let r = runs(&extra, inputs);
        let (one, many) = (&r[0], &r[1..]);
        assert!(
            one.1.nat.len() > 20,
            "seed {seed}: {} sessions",
            one.1.nat.len()
        );
        for (k, (sent, report)) in many.iter().enumerate() {
            let workers = [2, 4][k];
            let ctx = format!("seed {seed}, {workers} workers");
            assert_eq!(report.nat, one.1.nat, "{ctx}: the same mappings");
            assert_eq!(report.drops, one.1.drops, "{ctx}: the same drops");
            assert_eq!(sent, &one.0, "{ctx}: the same frames out");
            assert!(report.packets.handed_off > 0, "{ctx}: hand-off exercised");
        }
        assert_eq!(one.1.packets.handed_off, 0);
    }
}

#[test]
fn nat_on_several_workers_in_full_bursts_keeps_one_mapping_per_endpoint() {
    use std::collections::BTreeSet;
    for seed in 10..14 {
        let (hosts, inputs) = random_traffic(seed, 300);
        let r = runs(&hosts, inputs);
        let inside = |rep: &Report| -> BTreeSet<(String, String)> {
            rep.nat
                .iter()
                .map(|s| (s.protocol.clone(), s.inside.clone()))
                .collect()
        };
        for (sent, report) in &r {
            // Endpoint-independent: one external port per inside endpoint,
            // and no external port for two.
            let mut by_inside = BTreeMap::new();
            let mut by_ext = BTreeMap::new();
            for s in &report.nat {
                let k = (s.protocol.clone(), s.inside.clone());
                assert_eq!(
                    by_inside.entry(k.clone()).or_insert(s.external.clone()),
                    &s.external
                );
                assert_eq!(
                    by_ext
                        .entry((s.protocol.clone(), s.external.clone()))
                        .or_insert(k.clone()),
                    &k
                );
            }
            assert_eq!(
                inside(report),
                inside(&r[0].1),
                "seed {seed}: the same endpoints"
            );
            assert_eq!(report.drops, r[0].1.drops, "seed {seed}: the same drops");
            assert_eq!(sent["Port2"].len(), r[0].0["Port2"].len(), "seed {seed}");
        }
    }
}

#[test]
fn a_switch_on_several_workers_forwards_to_an_address_another_worker_learned() {
    use edgefwd_control::replay::spread;
    let learn = udp(VM2_MAC, GW_IF_MAC, (VM2, 6000), (R1, 53));
    // A flow from vm1 to vm2 that the kernel would give the other worker.
    let (to_vm2, _) = (1000..)
        .map(|p| {
            let f = udp(VM1_MAC, VM2_MAC, (VM1, p), (VM2, 7000));
            let q = spread::queue(&f, 2);
            (f, q)
        })
        .find(|(_, q)| *q != spread::queue(&learn, 2))
        .unwrap();
    let extra = "\n[[port]]\nname = \"vm3\"\nswitch = \"internal\"\n";
    let inputs = vec![
        In {
            at: 0.0,
            port: "vm2",
            frame: learn,
        },
        at(
            In {
                at: 0.0,
                port: "vm1",
                frame: to_vm2,
            },
            1.0,
        ),
    ];
    for (k, (sent, report)) in runs(extra, inputs).into_iter().enumerate() {
        assert_eq!(sent["vm2"].len(), 1, "run {k}: to vm2");
        assert!(sent["vm3"].is_empty(), "run {k}: not flooded");
        assert_eq!(report.packets.flooded, 0, "run {k}");
    }
}
