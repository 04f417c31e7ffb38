//! Every capture under the shared data replays without a panic and with the
//! accounting identity; frames that reach the IP stages come out
//! well-formed.

mod common;

use edgefwd_control::config::Config;
use edgefwd_control::replay::{replay, Input, Source};
use edgefwd_control::rib::{PortsUp, Rib};
use edgefwd_control::trace::{to_ethernet, TraceReader};
use edgefwd_core::packet::check::{check_frame, check_headers};
use edgefwd_core::time::Time;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Two routed ports with default routes both ways, gateways resolved, so
/// real traffic gets forwarded rather than held.
const CFG: &str = r#"
[[port]]
name = "Port2"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.15/24", "2001:db8:2::15/64"]
gateway = "10.0.2.1"
[[port]]
name = "Port3"
mac = "02:00:00:00:03:01"
addresses = ["192.168.20.10/24", "2001:db8:20::10/64"]
[[route]]
interface = "Port2"
destination = "::/0"
next_hop = "2001:db8:2::1"
metric = 10
[[neighbor]]
interface = "Port2"
address = "10.0.2.1"
mac = "02:00:00:00:99:01"
[[neighbor]]
interface = "Port2"
address = "2001:db8:2::1"
mac = "02:00:00:00:99:01"
"#;

fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|x| x == "pcap" || x == "pcapng" || x == "cap")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Packet records in a capture, counted by libpcap (`tcpdump --count`),
/// another reader than the replay's. libpcap refuses pcapng files whose
/// interfaces differ in link type or snapshot length; those are counted by
/// pcap-file up to the first unreadable record instead.
fn count_records(path: &Path) -> u64 {
    let out = std::process::Command::new("tcpdump")
        .arg("--count")
        .arg("-r")
        .arg(path)
        .output()
        .expect("tcpdump");
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if !err.contains("an interface has a") {
        if let Some(n) = err.lines().rev().find_map(|l| {
            let (n, word) = l.trim().split_once(' ')?;
            word.starts_with("packet").then(|| n.parse().ok())?
        }) {
            return n;
        }
        panic!("{}: no count from tcpdump: {err}", path.display());
    }
    let data = std::fs::read(path).unwrap();
    let mut n = 0;
    let mut r = pcap_file::pcapng::PcapNgReader::new(&data[..]).unwrap();
    while let Some(Ok(b)) = r.next_block() {
        use pcap_file::pcapng::Block;
        if matches!(
            b,
            Block::EnhancedPacket(_) | Block::SimplePacket(_) | Block::Packet(_)
        ) {
            n += 1;
        }
    }
    n
}

/// Frames of an output capture, read by pcap-file.
fn output_frames(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut r = pcap_file::pcap::PcapReader::new(&data[..]).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.unwrap().data.into_owned());
    }
    out
}

#[test]
fn every_shared_capture_replays_with_the_identity() {
    const T: &str = "every_shared_capture_replays_with_the_identity";
    let Some(dir) = common::need_data(T, "pcap") else {
        return;
    };
    if !common::need_tool(T, "tcpdump", "--version") {
        return;
    }
    let cfg = Config::parse(CFG).unwrap();
    let files = captures(&dir);
    assert!(
        files.len() > 100,
        "expected the shared corpus, found {} files",
        files.len()
    );
    let (mut replayed, mut refused, mut packets) = (0, Vec::new(), 0);
    for f in &files {
        let out = common::temp_dir("corpus");
        let input = Input {
            port: "Port3".into(),
            source: Source::File(f.clone()),
        };
        match replay(&cfg, vec![input], out.path(), false) {
            Ok(r) => {
                let p = &r.packets;
                assert_eq!(
                    p.received,
                    p.forwarded + p.local + p.dropped,
                    "{}",
                    f.display()
                );
                assert_eq!(p.dropped, r.drops.values().sum::<u64>(), "{}", f.display());
                // A capture whose link type changes to one edgefwd cannot
                // read stops there, with a warning naming the record.
                let stopped_at = r.warnings.iter().find_map(|w| {
                    let n = w.split("record ").nth(1)?.split(':').next()?;
                    n.parse::<u64>().ok()
                });
                let counted = count_records(f);
                match stopped_at {
                    None => assert_eq!(p.received, counted, "{}: every record", f.display()),
                    Some(n) => assert!(
                        p.received == n - 1 && counted >= p.received,
                        "{}: {} received, stopped at record {n}, {counted} in the file",
                        f.display(),
                        p.received
                    ),
                }
                let mut written = 0;
                for port in ["Port2", "Port3"] {
                    let frames = output_frames(&out.path().join(format!("{port}.pcap")));
                    assert_eq!(
                        frames.len() as u64,
                        r.ports[port].tx,
                        "{}: {port}",
                        f.display()
                    );
                    written += frames.len() as u64;
                    for frame in &frames {
                        check_headers(frame)
                            .unwrap_or_else(|e| panic!("{}: output on {port}: {e}", f.display()));
                    }
                }
                assert_eq!(
                    written,
                    p.forwarded + p.generated,
                    "{}: frames out",
                    f.display()
                );
                packets += p.received;
                replayed += 1;
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&f.display().to_string()),
                    "error does not name the file: {msg}"
                );
                assert!(
                    msg.contains("link type")
                        || msg.contains("empty file")
                        || msg.contains("not a pcap"),
                    "unexpected refusal: {msg}"
                );
                refused.push(msg);
            }
        }
    }
    eprintln!(
        "replayed {replayed} captures ({packets} packets), refused {}:",
        refused.len()
    );
    for r in &refused {
        eprintln!("  {r}");
    }
    assert!(
        replayed >= files.len() * 9 / 10,
        "most captures are Ethernet, raw IP or cooked"
    );
}

/// The input frame trimmed to its IP length (captures carry Ethernet
/// padding), for judging whether it was valid at every layer.
fn trimmed(frame: &[u8]) -> &[u8] {
    let len = match frame.get(12..14) {
        Some([0x08, 0x00]) => frame
            .get(16..18)
            .map(|b| 14 + usize::from(u16::from_be_bytes([b[0], b[1]]))),
        Some([0x86, 0xdd]) => frame
            .get(18..20)
            .map(|b| 54 + usize::from(u16::from_be_bytes([b[0], b[1]]))),
        _ => None,
    };
    len.and_then(|l| frame.get(..l)).unwrap_or(frame)
}

/// The same captures with each frame addressed to the port, so that the IP
/// stages see real (and really malformed) packets, not just `not_our_mac`.
/// One frame at a time: every output must be well-formed at every layer
/// that was well-formed in the frame that caused it.
#[test]
fn every_shared_frame_through_the_ip_stages() {
    let Some(dir) = common::need_data("every_shared_frame_through_the_ip_stages", "pcap") else {
        return;
    };
    let cfg = Config::parse(CFG).unwrap();
    let rib = Rib::from_config(&cfg, PortsUp::All);
    let (fib, _) = rib.build_fib();
    let mut router = rib.router(&cfg, Arc::new(fib), &cfg.router_config());
    let mac = rib.ports().get(1).unwrap().mac;
    let (mut frame, mut burst, mut out) = (Vec::new(), Vec::new(), 0u64);
    let mut now = Time(0);
    for f in captures(&dir) {
        let Ok(mut r) = TraceReader::open(&f) else {
            continue;
        };
        while let Ok(Some(rec)) = r.next_record() {
            to_ethernet(&rec, mac, &mut frame);
            if frame.len() >= 6 && frame[0] & 1 == 0 {
                frame[..6].copy_from_slice(&mac.0);
            }
            now = Time(now.0 + 1_000_000);
            let strict = check_frame(trimmed(&frame)).is_ok();
            if rec.whole() {
                router.receive(&mut burst, 1, now, &frame);
            } else {
                router.receive_truncated(1, now, &frame);
            }
            router.process(&mut burst, now);
            for port in 0..2 {
                router.drain_tx(port, |p| {
                    let f = p.buf.frame();
                    let verdict = if strict {
                        check_frame(f)
                    } else {
                        check_headers(f)
                    };
                    verdict.unwrap_or_else(|e| {
                        panic!("output frame from {}: {e}: {f:02x?}", rec_name(&r))
                    });
                    out += 1;
                });
            }
        }
    }
    router.process(&mut burst, now);
    router.finish();
    let s = router.stats();
    assert_eq!(s.received(), s.ended());
    assert!(
        s.forwarded > 1000,
        "real traffic gets forwarded ({} frames)",
        s.forwarded
    );
    eprintln!(
        "{} in, {} forwarded, {} local, {} dropped, {} generated, {out} frames checked",
        s.received(),
        s.forwarded,
        s.local,
        s.dropped(),
        s.generated
    );
}

fn rec_name<R: std::io::Read>(r: &TraceReader<R>) -> String {
    r.name().to_owned()
}
