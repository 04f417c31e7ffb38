//! The bundled demo: a config and a trace that show what the appliance does,
//! packet by packet.
//!
//! The trace is made here, from code, so anyone can read what it contains
//! and regenerate it: `EDGEFWD_BLESS=1 cargo test -p edgefwd-control demo`
//! rewrites `control/demo/*.pcap`, and the same test fails when the
//! committed files differ from what this code makes.
//!
//! | time   | port  | packet                                   | shows                      |
//! |--------|-------|------------------------------------------|----------------------------|
//! | 0.000  | Port3 | camera ARP: who has 192.168.20.10        | ARP reply                  |
//! | 0.010  | Port3 | camera pings 192.168.20.10               | echo reply                 |
//! | 0.100  | Port3 | camera UDP to 203.0.113.10 (internet)    | ARP for the gateway, hold  |
//! | 0.150  | Port2 | gateway ARP reply                        | held packet released       |
//! | 0.200  | Port2 | server UDP back to the camera            | forwarding the other way   |
//! | 0.300  | Port2 | TCP SYN to sensor 192.168.21.7           | metric 100 beats 200       |
//! | 0.400  | Port2 | traceroute probe, TTL 1                  | ICMP time exceeded         |
//! | 0.500  | Port2 | IPv4 header with a bad checksum          | drop `ip4_bad_checksum`    |
//! | 0.510  | Port2 | 10-byte frame                            | drop `runt`                |
//! | 0.600  | Port3 | camera IPv6 neighbour solicitation       | neighbour advertisement    |
//! | 0.610  | Port3 | camera pings 2001:db8:20::10             | ICMPv6 echo reply          |
//! | 0.700  | Port3 | camera UDP to 2001:db8:ffff::1           | no route: ICMPv6 unreach.  |
//! | 0.800  | Port2 | UDP to 192.168.20.99 (switched off)      | 3 ARP requests, then drop  |
//! | 4.000  | Port3 | camera UDP to the internet again         | gateway already resolved   |

use etherparse::{IpNumber, PacketBuilder};
use std::net::Ipv6Addr;
use std::time::Duration;

use edgefwd_core::packet::checksum;
use edgefwd_core::packet::MacAddr;

use crate::replay::{Input, Source};
use crate::trace::TraceWriter;

/// The demo config.
pub const CONFIG: &str = include_str!("../demo/appliance.toml");
/// The demo trace arriving on Port2.
pub const PORT2_PCAP: &[u8] = include_bytes!("../demo/Port2.pcap");
/// The demo trace arriving on Port3.
pub const PORT3_PCAP: &[u8] = include_bytes!("../demo/Port3.pcap");

/// The demo's inputs (the committed traces).
pub fn inputs() -> Vec<Input> {
    [("Port2", PORT2_PCAP), ("Port3", PORT3_PCAP)]
        .into_iter()
        .map(|(port, data)| Input {
            port: port.to_owned(),
            source: Source::Bytes {
                name: format!("bundled demo trace {port}.pcap"),
                data,
            },
        })
        .collect()
}

/// 2026-01-01T00:00:00Z, the demo's start.
const T0: u64 = 1_767_225_600;

/// Appliance side.
const PORT2_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const PORT3_MAC: [u8; 6] = [2, 0, 0, 0, 3, 1];
const PORT2_V4: [u8; 4] = [10, 0, 2, 15];
const PORT3_V4: [u8; 4] = [192, 168, 20, 10];
const PORT3_V6: &str = "2001:db8:20::10";
/// Hosts around it.
const GATEWAY_MAC: [u8; 6] = [2, 0, 0, 0, 0x99, 1];
const GATEWAY_V4: [u8; 4] = [10, 0, 2, 1];
const CAMERA_MAC: [u8; 6] = [2, 0, 0, 0, 0x20, 0x50];
const CAMERA_V4: [u8; 4] = [192, 168, 20, 50];
const CAMERA_V6: &str = "2001:db8:20::50";
const SERVER_V4: [u8; 4] = [203, 0, 113, 10];
const REMOTE_V4: [u8; 4] = [198, 51, 100, 7];
const SENSOR_V4: [u8; 4] = [192, 168, 21, 7];
const OFFLINE_V4: [u8; 4] = [192, 168, 20, 99];

fn v6(s: &str) -> Result<Ipv6Addr, String> {
    s.parse().map_err(|e| format!("demo address {s}: {e}"))
}

/// A frame the generator could not build, as its error.
fn built(e: impl std::fmt::Display) -> String {
    format!("building a demo frame: {e}")
}

fn arp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    op: etherparse::ArpOperation,
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
) -> Result<Vec<u8>, String> {
    let mut v = Vec::new();
    let a = etherparse::ArpPacket::new(
        etherparse::ArpHardwareId::ETHERNET,
        etherparse::EtherType::IPV4,
        op,
        &src_mac,
        &spa,
        &tha,
        &tpa,
    )
    .map_err(built)?;
    {
        PacketBuilder::ethernet2(src_mac, dst_mac)
            .arp(a)
            .write(&mut v)
            .map_err(built)?;
    }
    Ok(v)
}

fn udp4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    ports: (u16, u16),
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, ttl)
        .udp(ports.0, ports.1)
        .write(&mut v, payload)
        .map_err(built)?;
    Ok(v)
}

fn icmp6(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop: u8,
    msg: &mut [u8],
) -> Result<Vec<u8>, String> {
    let sum = checksum::pseudo_v6(src, dst, 58, msg.len() as u32) + checksum::sum(msg);
    msg[2..4].copy_from_slice(&checksum::finish(sum).to_be_bytes());
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(src.octets(), dst.octets(), hop)
        .write(&mut v, IpNumber(58), msg)
        .map_err(built)?;
    Ok(v)
}

/// A demo frame: milliseconds after the start, port, frame.
pub type DemoFrame = (u64, &'static str, Vec<u8>);

/// The demo frames, in time order per port.
pub fn frames() -> Result<Vec<DemoFrame>, String> {
    use etherparse::ArpOperation as Op;
    let bcast = MacAddr::BROADCAST.0;
    let mut f = Vec::new();
    f.push((
        0,
        "Port3",
        arp(CAMERA_MAC, bcast, Op::REQUEST, CAMERA_V4, [0; 6], PORT3_V4)?,
    ));
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(CAMERA_MAC, PORT3_MAC)
        .ipv4(CAMERA_V4, PORT3_V4, 64)
        .icmpv4_echo_request(0x1234, 1)
        .write(&mut ping, b"edgefwd demo ping")
        .map_err(built)?;
    f.push((10, "Port3", ping));
    f.push((
        100,
        "Port3",
        udp4(
            CAMERA_MAC,
            PORT3_MAC,
            CAMERA_V4,
            SERVER_V4,
            64,
            (5000, 443),
            b"camera telemetry 1",
        )?,
    ));
    f.push((
        150,
        "Port2",
        arp(
            GATEWAY_MAC,
            PORT2_MAC,
            Op::REPLY,
            GATEWAY_V4,
            PORT2_MAC,
            PORT2_V4,
        )?,
    ));
    f.push((
        200,
        "Port2",
        udp4(
            GATEWAY_MAC,
            PORT2_MAC,
            SERVER_V4,
            CAMERA_V4,
            57,
            (443, 5000),
            b"server ack",
        )?,
    ));
    let mut syn = Vec::new();
    PacketBuilder::ethernet2(GATEWAY_MAC, PORT2_MAC)
        .ipv4(REMOTE_V4, SENSOR_V4, 50)
        .tcp(40000, 554, 1_000_000, 64240)
        .syn()
        .write(&mut syn, &[])
        .map_err(built)?;
    f.push((300, "Port2", syn));
    f.push((
        400,
        "Port2",
        udp4(
            GATEWAY_MAC,
            PORT2_MAC,
            REMOTE_V4,
            SENSOR_V4,
            1,
            (33434, 33434),
            b"traceroute probe",
        )?,
    ));
    let mut bad = udp4(
        GATEWAY_MAC,
        PORT2_MAC,
        REMOTE_V4,
        CAMERA_V4,
        64,
        (1, 2),
        b"corrupted on the wire",
    )?;
    bad[24] ^= 0x5a; // IPv4 header checksum
    f.push((500, "Port2", bad));
    let runt = udp4(
        GATEWAY_MAC,
        PORT2_MAC,
        REMOTE_V4,
        CAMERA_V4,
        64,
        (1, 2),
        b"",
    )?[..10]
        .to_vec();
    f.push((510, "Port2", runt));
    let mut ns = [0u8; 32];
    ns[0] = 135;
    ns[8..24].copy_from_slice(&v6(PORT3_V6)?.octets());
    ns[24..26].copy_from_slice(&[1, 1]); // source link-layer address option
    ns[26..32].copy_from_slice(&CAMERA_MAC);
    let group = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0x0010);
    f.push((
        600,
        "Port3",
        icmp6(
            CAMERA_MAC,
            MacAddr::ipv6_multicast(group).0,
            v6(CAMERA_V6)?,
            group,
            255,
            &mut ns,
        )?,
    ));
    let mut echo6 = *b"\x80\x00\x00\x00\x12\x34\x00\x01edgefwd demo ping6";
    f.push((
        610,
        "Port3",
        icmp6(
            CAMERA_MAC,
            PORT3_MAC,
            v6(CAMERA_V6)?,
            v6(PORT3_V6)?,
            64,
            &mut echo6,
        )?,
    ));
    let mut unroutable = Vec::new();
    PacketBuilder::ethernet2(CAMERA_MAC, PORT3_MAC)
        .ipv6(
            v6(CAMERA_V6)?.octets(),
            v6("2001:db8:ffff::1")?.octets(),
            64,
        )
        .udp(5000, 443)
        .write(&mut unroutable, b"to nowhere")
        .map_err(built)?;
    f.push((700, "Port3", unroutable));
    f.push((
        800,
        "Port2",
        udp4(
            GATEWAY_MAC,
            PORT2_MAC,
            REMOTE_V4,
            OFFLINE_V4,
            60,
            (5060, 5060),
            b"anyone there?",
        )?,
    ));
    f.push((
        4000,
        "Port3",
        udp4(
            CAMERA_MAC,
            PORT3_MAC,
            CAMERA_V4,
            SERVER_V4,
            64,
            (5000, 443),
            b"camera telemetry 2",
        )?,
    ));
    Ok(f)
}

/// The demo pcaps as bytes: (port, capture). Any frame that cannot be
/// built or written is an error, never a capture left short.
pub fn generate() -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let frames = frames()?;
    let mut out = Vec::new();
    for port in ["Port2", "Port3"] {
        let mut w = TraceWriter::new(Vec::new()).map_err(|e| format!("{port}: {e}"))?;
        for (ms, _, frame) in frames.iter().filter(|(_, p, _)| *p == port) {
            w.write(Duration::from_secs(T0) + Duration::from_millis(*ms), frame)
                .map_err(|e| format!("{port}: {e}"))?;
        }
        out.push((port, w.into_inner()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_trace_matches_its_generator() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo");
        let bless = std::env::var_os("EDGEFWD_BLESS").is_some();
        let generated = generate().unwrap();
        assert_eq!(generated.len(), 2, "a capture per input port");
        for (port, bytes) in generated {
            // Counted by another reader than ours.
            let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
            let mut frames = 0;
            while let Some(p) = r.next_packet() {
                p.unwrap();
                frames += 1;
            }
            let want = frames_on(port);
            assert!(
                want > 0 && frames == want,
                "{port}: {frames} frames, {want} made"
            );
            let path = dir.join(format!("{port}.pcap"));
            if bless {
                std::fs::write(&path, &bytes).unwrap();
            }
            let committed = std::fs::read(&path).unwrap();
            assert!(
                committed == bytes,
                "{} is stale: run EDGEFWD_BLESS=1 cargo test -p edgefwd-control demo",
                path.display()
            );
        }
    }

    fn frames_on(port: &str) -> usize {
        frames()
            .unwrap()
            .iter()
            .filter(|(_, p, _)| *p == port)
            .count()
    }

    #[test]
    fn demo_config_is_valid() {
        let cfg = crate::config::Config::parse(CONFIG).unwrap();
        assert_eq!(cfg.ports.len(), 3);
    }
}
