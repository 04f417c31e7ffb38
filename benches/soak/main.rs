//! Soak: the daemon under mixed traffic on TAPs for a long time, with route
//! changes and rebinds, watching for memory that grows and packets that
//! go unaccounted. Not run by CI; run it by hand (root, iperf3, ping, the
//! shared captures):
//!
//! ```text
//! sudo cargo bench --bench soak              # 30 minutes
//! EDGEFWD_SOAK_SECS=120 sudo cargo bench --bench soak
//! ```
//!
//! ```text
//!  inet 10.0.2.2, 198.51.100.1 ── Port2 (default gateway, NAT outside)
//!  h3 10.0.3.2 ────────────────── Port3          edgefwd (in this process)
//!  h4 10.0.4.2 ────────────────── Port4 (rebound to a new TAP 10 times)
//!  vm1 172.28.0.10, vm2 .11 ───── internal switch 172.28.0.1, NAT via Port2
//! ```
//!
//! Traffic, all the run long: TCP from vm1 to the internet (NAT), pings
//! from vm2 to the internet (NAT), UDP from h3 to inet (routed), pings
//! from inet to h3 and to h4, and the frames of the shared captures
//! (malformed ones among them) written into Port3's TAP from h3's side.
//! 1,000 route changes and 10 rebinds spread over the run.
//!
//! Every minute it prints the process's RSS, the packets received and
//! accounted for, and the drops by reason. At the end: the accounting
//! identity, the frames the hosts' kernels wrote into the TAPs against
//! what edgefwd received, and RSS growth after the first minute (target:
//! at most 5%). The daemon stopping by itself (a failed worker) ends the
//! run as a failure.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Netns;
use edgefwd_control::api::{self, Command, RouteSpec};
use edgefwd_control::config::Config;

const TAG: &str = "soak";

fn soak_secs() -> u64 {
    common::env_or("EDGEFWD_SOAK_SECS", 1800)
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A counter of a device in a namespace (`/sys/class/net/DEV/statistics`).
fn dev_stat(ns: &Netns, dev: &str, what: &str) -> u64 {
    let path = format!("/sys/class/net/{dev}/statistics/{what}");
    let out = ns.exec(5, &["cat", &path]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Ends every process still running in `ns`.
fn kill_all(ns: &Netns) {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", ns.name()])
        .output()
        .unwrap();
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = std::process::Command::new("kill")
            .args(["-9", pid])
            .status();
    }
}

/// A shell loop in `ns` that runs `cmd` again and again for `secs`.
fn repeat(ns: &Netns, secs: u64, cmd: &str) -> common::Spawned {
    let script = format!("end=$(( $(date +%s) + {secs} )); while [ $(date +%s) -lt $end ]; do {cmd} >/dev/null 2>&1; sleep 0.2; done");
    ns.spawn(&["timeout", &(secs + 5).to_string(), "sh", "-c", &script])
}

/// The frames of the shared pcap captures (pcapng left out), for the
/// hostile mix.
fn shared_frames() -> Vec<Vec<u8>> {
    let dir = common::data_dir().join("pcap");
    let mut frames = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap") {
                let Ok(data) = std::fs::read(&p) else {
                    continue;
                };
                let Ok(mut r) = pcap_file::pcap::PcapReader::new(&data[..]) else {
                    continue;
                };
                if r.header().datalink != pcap_file::DataLink::ETHERNET {
                    continue;
                }
                while let Some(Ok(pkt)) = r.next_packet() {
                    if (14..=1514).contains(&pkt.data.len()) {
                        frames.push(pkt.data.into_owned());
                    }
                }
            }
        }
    }
    frames
}

/// Writes `frames` round and round into `dev` from namespace `ns`, about
/// `rate` a second, until `stop`. Returns how many were written.
fn hostile(ns: &str, dev: &str, frames: Vec<Vec<u8>>, rate: u64, stop: Arc<AtomicBool>) -> u64 {
    common::with_raw_sender(ns, dev, |tx| {
        let mut sent = 0u64;
        let started = Instant::now();
        for f in frames.iter().cycle() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if let Some(Ok(())) = tx.send_to(f, None) {
                sent += 1;
            }
            let due = Duration::from_micros(sent * 1_000_000 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        sent
    })
    .expect("the hostile mix's sender")
}

fn call(sock: &Path, c: Command) -> Result<serde_json::Value, String> {
    api::call(sock, c)
}

fn main() {
    const T: &str = "soak";
    if !common::need_root_and_ping(T) || !common::need_tool(T, "iperf3", "--version") {
        return;
    }
    let secs = soak_secs();
    let nodes: Vec<(&str, Netns, &str, &str)> = vec![
        (
            "inet",
            Netns::new(&format!("{TAG}-inet")),
            "10.0.2.2/24",
            "",
        ),
        (
            "h3",
            Netns::new(&format!("{TAG}-h3")),
            "10.0.3.2/24",
            "10.0.3.1",
        ),
        (
            "h4",
            Netns::new(&format!("{TAG}-h4")),
            "10.0.4.2/24",
            "10.0.4.1",
        ),
        (
            "vm1",
            Netns::new(&format!("{TAG}-vm1")),
            "172.28.0.10/24",
            "172.28.0.1",
        ),
        (
            "vm2",
            Netns::new(&format!("{TAG}-vm2")),
            "172.28.0.11/24",
            "172.28.0.1",
        ),
    ];
    let ns = |name: &str| &nodes.iter().find(|n| n.0 == name).unwrap().1;
    let dir = common::temp_dir(TAG);
    let sock = dir.path().join("control.sock");
    let toml = format!(
        r#"[dataplane]
workers = 2
[control]
socket = "{sock}"
[[port]]
name = "Port2"
bind = "tap:inet@{inet}"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.1/24"]
gateway = "10.0.2.2"
[[port]]
name = "Port3"
bind = "tap:h3@{h3}"
mac = "02:00:00:00:03:01"
addresses = ["10.0.3.1/24"]
[[port]]
name = "Port4"
bind = "tap:h4@{h4}"
mac = "02:00:00:00:04:01"
addresses = ["10.0.4.1/24"]
[[port]]
name = "vm1"
bind = "tap:vm1@{vm1}"
switch = "internal"
[[port]]
name = "vm2"
bind = "tap:vm2@{vm2}"
switch = "internal"
[[switch]]
name = "internal"
kind = "internal"
address = "172.28.0.1/24"
nat = "Port2"
"#,
        sock = sock.display(),
        inet = ns("inet").name(),
        h3 = ns("h3").name(),
        h4 = ns("h4").name(),
        vm1 = ns("vm1").name(),
        vm2 = ns("vm2").name(),
    );
    let cfg = Config::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let mut daemon = common::Daemon::start(cfg);
    for (dev, n, addr, gw) in &nodes {
        n.wait_for_device(dev);
        n.address(dev, addr, (!gw.is_empty()).then_some(*gw));
    }
    ns("inet").ip(&["addr", "add", "198.51.100.1/32", "dev", "lo"]);
    ns("inet").ip(&["route", "add", "172.28.0.0/24", "via", "10.0.2.1"]);
    ns("inet").ip(&["route", "add", "10.0.0.0/8", "via", "10.0.2.1"]);
    for (name, _, _, gw) in &nodes {
        if !gw.is_empty() {
            ns(name).wait_for_ping(gw, 5);
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let _servers = [
        ns("inet").spawn(&["iperf3", "-s", "-p", "5201"]),
        ns("inet").spawn(&["iperf3", "-s", "-p", "5202"]),
    ];
    ns("inet").wait_for_listener(5201);
    ns("inet").wait_for_listener(5202);
    let _traffic = [
        repeat(
            ns("vm1"),
            secs,
            "iperf3 -c 198.51.100.1 -p 5201 -t 30 -b 100M",
        ),
        repeat(ns("h3"), secs, "iperf3 -c 10.0.2.2 -p 5202 -u -t 30 -b 20M"),
        ns("vm2").spawn(&[
            "ping",
            "-q",
            "-i",
            "0.01",
            "-w",
            &secs.to_string(),
            "198.51.100.1",
        ]),
        ns("inet").spawn(&[
            "ping",
            "-q",
            "-i",
            "0.02",
            "-w",
            &secs.to_string(),
            "10.0.3.2",
        ]),
        repeat(ns("inet"), secs, "ping -q -c 20 -i 0.05 10.0.4.2"),
    ];
    let frames = shared_frames();
    eprintln!(
        "{T}: {} s; {} frames of shared captures in the hostile mix",
        secs,
        frames.len()
    );
    let hostile_thread = {
        let stop = Arc::clone(&stop);
        let h3 = ns("h3").name().to_owned();
        std::thread::spawn(move || hostile(&h3, "h3", frames, 1000, stop))
    };

    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let (mut changes, mut rebinds) = (0u32, 0u32);
    let change_every = Duration::from_secs(secs) / 1000;
    let rebind_every = Duration::from_secs(secs) / 10;
    let mut next_minute = started + Duration::from_secs(60).min(Duration::from_secs(secs));
    let mut rss_first_minute = 0;
    let mut rss_max = 0;
    let mut stopped_early = false;
    println!("minute  RSS MiB        in   accounted  drops by reason");
    while Instant::now() < end {
        let now = Instant::now();
        if changes < 1000 && now >= started + change_every * changes {
            let i = changes / 2;
            let dest = format!("10.77.{}.{}/32", i / 256, i % 256);
            let r = if changes % 2 == 0 {
                call(
                    &sock,
                    Command::RouteAdd {
                        routes: vec![RouteSpec {
                            interface: "Port3".into(),
                            destination: dest,
                            next_hop: Some("10.0.3.2".into()),
                            metric: Some(10),
                        }],
                    },
                )
            } else {
                call(
                    &sock,
                    Command::RouteRemove {
                        interface: "Port3".into(),
                        destination: dest,
                        next_hop: None,
                    },
                )
            };
            r.unwrap_or_else(|e| panic!("route change {changes}: {e}"));
            changes += 1;
        }
        if rebinds < 10 && now >= started + rebind_every * rebinds + rebind_every / 2 {
            let dev = if rebinds % 2 == 0 { "h4b" } else { "h4" };
            call(
                &sock,
                Command::PortBind {
                    port: "Port4".into(),
                    binding: format!("tap:{dev}@{}", ns("h4").name()),
                },
            )
            .unwrap_or_else(|e| panic!("rebind {rebinds}: {e}"));
            ns("h4").wait_for_device(dev);
            ns("h4").address(dev, "10.0.4.2/24", Some("10.0.4.1"));
            rebinds += 1;
        }
        if now >= next_minute {
            next_minute += Duration::from_secs(60);
            let rss = rss_kib();
            if rss_first_minute == 0 {
                rss_first_minute = rss;
            }
            rss_max = rss_max.max(rss);
            let s = call(&sock, Command::Stats {}).expect("stats");
            let p = &s["packets"];
            let n = |k: &str| p[k].as_u64().unwrap_or(0);
            let accounted = n("forwarded") + n("local") + n("dropped");
            let mut drops: Vec<(String, u64)> = s["drops"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default();
            drops.sort_by_key(|d| std::cmp::Reverse(d.1));
            let top: Vec<String> = drops
                .iter()
                .take(5)
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!(
                "{:>6}  {:>7.1}  {:>8}  {:>10}  {}",
                started.elapsed().as_secs() / 60,
                rss as f64 / 1024.0,
                n("in"),
                accounted,
                top.join(", ")
            );
        }
        if daemon.ended_within(Duration::ZERO).is_some() {
            stopped_early = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let hostile_sent = hostile_thread.join().unwrap();
    for (_, n, _, _) in &nodes {
        kill_all(n);
    }
    assert!(
        !stopped_early,
        "the daemon stopped by itself during the soak"
    );
    // The workers read what the TAPs still hold.
    std::thread::sleep(Duration::from_secs(1));
    // Frames the hosts' kernels wrote into the TAPs of the ports never
    // rebound, and dropped at the TAPs' queues: every one of them either
    // reached edgefwd or was dropped there.
    let steady = ["inet", "h3", "vm1", "vm2"];
    let (mut host_sent, mut tap_dropped) = (0, 0);
    for (dev, n, _, _) in nodes.iter().filter(|n| steady.contains(&n.0)) {
        host_sent += dev_stat(n, dev, "tx_packets");
        tap_dropped += dev_stat(n, dev, "tx_dropped");
    }
    let summary = daemon.stop().expect("the daemon failed");
    let st = &summary.stats;
    let edgefwd_rx: u64 = ["Port2", "Port3", "vm1", "vm2"]
        .iter()
        .map(|p| {
            let i = summary.names.iter().position(|n| n == p).unwrap();
            st.ports[i].rx
        })
        .sum();
    println!(
        "{T}: {changes} route changes, {rebinds} rebinds, {hostile_sent} hostile frames; \
         {} received, {} forwarded, {} local, {} dropped, {} generated",
        st.received(),
        st.forwarded,
        st.local,
        st.dropped(),
        st.generated
    );
    println!(
        "{T}: into Port2, Port3, vm1 and vm2 the hosts' kernels wrote {host_sent} frames, \
         {tap_dropped} dropped at the TAPs' queues, {edgefwd_rx} received by edgefwd"
    );
    let growth = if rss_first_minute > 0 {
        (rss_max as f64 - rss_first_minute as f64) / rss_first_minute as f64
    } else {
        0.0
    };
    println!(
        "{T}: RSS {:.1} MiB after the first minute, at most {:.1} MiB after it: {:+.1}% (target at most +5%)",
        rss_first_minute as f64 / 1024.0,
        rss_max as f64 / 1024.0,
        growth * 100.0
    );
    assert_eq!(st.received(), st.ended(), "every packet accounted for");
    assert_eq!(
        host_sent,
        edgefwd_rx + tap_dropped,
        "every frame written into a TAP reached edgefwd or was dropped at the TAP"
    );
    assert_eq!(
        (changes, rebinds),
        (1000, 10),
        "every change and rebind made"
    );
    drop(nodes);
}
