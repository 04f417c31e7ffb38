//! The host's routes and traffic through edgefwd's host mirror, side by
//! side with the kernel in one run (issue 27's targets):
//!
//! - the shared full IPv4 table installed by `ip -batch` through a veth in
//!   a namespace of its own (the kernel alone) and through Port2's mirror
//!   (time until edgefwd's FIB holds every route; none may be lost), in
//!   interleaved rounds;
//! - 1,000 routes the same way (time until edgefwd's FIB holds them);
//! - an overrun repaired: 5,000 routes through a 4 KiB netlink buffer,
//!   time from the batch's end until edgefwd agrees;
//! - BIRD: the full table over eBGP, time until the host's kernel holds it
//!   and until edgefwd's FIB does;
//! - punt path RTT: UDP request/response from Port2's network to a socket
//!   on the host through the mirror, against the same through one veth;
//! - forwarding (iperf3 TCP, Port2 to Port3) with and without full-table
//!   churn in the host's kernel, in alternate rounds, with the BGP session
//!   checked before and after; the kernel forwarding between namespaces
//!   under the same churn is the baseline of what churn costs this
//!   machine's cores.
//!
//! `sudo cargo bench --bench host_routes` (root; needs bird, birdc,
//! iperf3 and the shared data). Traffic stays inside the namespaces this
//! makes and removes.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::host_rig::{other_defaults, Rig};
use common::Netns;
use edgefwd_io::binding::netns_path;
use edgefwd_io::in_netns;
use ipnet::Ipv4Net;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const NAME: &str = "host_routes bench";
/// Rounds of each install figure.
const ROUNDS: usize = 3;
/// Rounds of the small figures (1,000 routes, overrun repair).
const SMALL_ROUNDS: usize = 5;
/// Request/response pairs per RTT round, and rounds.
const RTT_PAIRS: usize = 2000;
const RTT_ROUNDS: usize = 3;
/// Seconds per forwarding round, and rounds of each kind.
const FWD_SECS: u32 = 3;
const FWD_ROUNDS: usize = 3;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `route VERB P via GW dev m2 proto static` for every prefix.
fn script(verb: &str, prefixes: &[Ipv4Net], gw: &str) -> String {
    let mut s = String::with_capacity(prefixes.len() * 56);
    for p in prefixes {
        let _ = writeln!(s, "route {verb} {p} via {gw} dev m2 proto static metric 5");
    }
    s
}

/// Runs `ip -batch` of `script` in `ns`; its wall time.
fn batch(ns: &Netns, script: &str) -> Duration {
    batch_in(ns.name(), script)
}

/// Runs `ip -batch` of `script` in the namespace named `ns` (which it does
/// not own); its wall time. Any error fails the bench.
fn batch_in(ns: &str, script: &str) -> Duration {
    let started = Instant::now();
    common::ip_batch(ns, false, 600, script);
    started.elapsed()
}

/// The kernel alone: a namespace with a veth named like the mirror.
fn kernel_only() -> Netns {
    let k = Netns::new("hr-k");
    k.ip(&["link", "add", "m2", "type", "veth", "peer", "name", "m2p"]);
    k.ip(&["link", "set", "m2", "up"]);
    k.ip(&["link", "set", "m2p", "up"]);
    k.ip(&["addr", "add", "10.0.2.1/24", "dev", "m2"]);
    k
}

fn routes_now(rig: &Rig) -> u64 {
    rig.host()["netlink"]["routes"].as_u64().unwrap_or(0)
}

/// Waits until edgefwd mirrors `n` routes; when it did, since `from`.
fn until_routes(rig: &Rig, n: u64, from: Instant, limit: Duration) -> Duration {
    loop {
        if routes_now(rig) == n {
            return from.elapsed();
        }
        assert!(from.elapsed() < limit, "edgefwd never held {n} routes");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Addresses inside `prefixes`.
fn addresses(rng: &mut StdRng, prefixes: &[Ipv4Net], n: usize) -> Vec<IpAddr> {
    (0..n)
        .map(|_| {
            let p = prefixes[rng.gen_range(0..prefixes.len())];
            let host = rng.gen::<u32>() & !u32::from(p.netmask());
            IpAddr::V4(Ipv4Addr::from(u32::from(p.network()) | host))
        })
        .collect()
}

/// Median UDP request/response RTT (µs) from `client` to `server` in
/// `from`'s namespace, the echo in `to`'s.
fn udp_rtt_us(from: &Netns, to: &Netns, server: SocketAddr, client: SocketAddr) -> f64 {
    let echo = in_netns(&netns_path(to.name()), || UdpSocket::bind(server)).unwrap();
    echo.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server_thread = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = echo.recv_from(&mut buf) {
                    let _ = echo.send_to(&buf[..n], peer);
                }
            }
        })
    };
    let sock = in_netns(&netns_path(from.name()), || UdpSocket::bind(client)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    sock.connect(server).unwrap();
    let mut rtts = Vec::with_capacity(RTT_PAIRS);
    let mut buf = [0u8; 64];
    // Warm up: ARP, the first punt.
    for _ in 0..20 {
        let _ = sock.send(b"warm");
        let _ = sock.recv(&mut buf);
    }
    for i in 0..RTT_PAIRS {
        let t = Instant::now();
        sock.send(&(i as u64).to_le_bytes()).unwrap();
        if sock.recv(&mut buf).is_ok() {
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::Relaxed);
    server_thread.join().unwrap();
    assert!(
        rtts.len() * 10 > RTT_PAIRS * 9,
        "too few UDP answers: {}",
        rtts.len()
    );
    median(&mut rtts)
}
/// Lines of the host kernel's IPv4 main table in `ns`.
fn kernel_routes(ns: &Netns) -> u64 {
    let out = ns.exec(30, &["wc", "-l", "/proc/net/route"]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |n| n.saturating_sub(1))
}

fn iperf3_gbps(rig_h2: &Netns, h3: &Netns) -> f64 {
    let server = h3.spawn(&["iperf3", "-s", "-1"]);
    h3.wait_for_listener(5201);
    let t = FWD_SECS.to_string();
    let out = rig_h2.exec(FWD_SECS + 20, &["iperf3", "-J", "-c", "10.0.3.2", "-t", &t]);
    drop(server);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(f64::NAN)
        / 1e9
}

fn main() {
    if !common::need_root(NAME)
        || !common::need_tool(NAME, "bird", "--version")
        || !common::need_tool(NAME, "iperf3", "--version")
    {
        std::process::exit(1);
    }
    let full = common::bird::shared_table(NAME).unwrap_or_else(|| std::process::exit(1));
    let n = full.len() as u64;
    let small: Vec<Ipv4Net> = full
        .iter()
        .copied()
        .step_by(full.len() / 1000)
        .take(1000)
        .collect();
    let mut rng = StdRng::seed_from_u64(27);
    println!("host_routes bench: {n} prefixes, {ROUNDS} interleaved rounds of full-table installs");

    let h3 = Netns::new("hr-h3");
    let port3 = format!(
        "\n[[port]]\nname = \"Port3\"\nbind = \"tap:p3@{}\"\nmac = \"02:00:00:00:03:01\"\naddresses = [\"10.0.3.1/24\"]\n",
        h3.name()
    );
    let rig = Rig::start_with("hr", "", &port3);
    other_defaults(&rig.app);
    rig.h2
        .ip(&["route", "replace", "default", "via", "10.0.2.1"]);
    h3.wait_for_device("p3");
    h3.address("p3", "10.0.3.2/24", Some("10.0.3.1"));
    let kern = kernel_only();

    // Full table by ip -batch: the kernel alone, then through the mirror.
    let (add, del) = (
        script("add", &full, "10.0.2.2"),
        script("del", &full, "10.0.2.2"),
    );
    let (mut kernel_s, mut mirror_s, mut mirror_kernel_s, mut withdraw_s) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let probe = addresses(&mut rng, &full, 10_000);
    for round in 0..ROUNDS {
        kernel_s.push(batch(&kern, &add).as_secs_f64());
        batch(&kern, &del);
        let started = Instant::now();
        let app = rig.app.name().to_owned();
        let add2 = add.clone();
        let installer = std::thread::spawn(move || batch_in(&app, &add2));
        let took = until_routes(&rig, n, started, Duration::from_secs(600));
        let k = installer.join().unwrap();
        mirror_kernel_s.push(k.as_secs_f64());
        mirror_s.push(took.as_secs_f64());
        if round == 0 {
            // Nothing lost: edgefwd agrees with the kernel everywhere asked.
            rig.agree_with_kernel(&probe, 30);
        }
        let started = Instant::now();
        let app = rig.app.name().to_owned();
        let del2 = del.clone();
        let remover = std::thread::spawn(move || batch_in(&app, &del2));
        withdraw_s.push(until_routes(&rig, 0, started, Duration::from_secs(600)).as_secs_f64());
        remover.join().unwrap();
        println!(
            "round {round}: kernel alone {:.2} s; through the mirror: kernel {:.2} s, edgefwd's FIB {:.2} s; withdrawn from the FIB {:.2} s",
            kernel_s[round], mirror_kernel_s[round], mirror_s[round], withdraw_s[round]
        );
    }

    // 1,000 routes.
    let (add_small, del_small) = (
        script("add", &small, "10.0.2.2"),
        script("del", &small, "10.0.2.2"),
    );
    let (mut small_k, mut small_m) = (Vec::new(), Vec::new());
    for _ in 0..SMALL_ROUNDS {
        small_k.push(batch(&kern, &add_small).as_secs_f64() * 1e3);
        batch(&kern, &del_small);
        let started = Instant::now();
        batch(&rig.app, &add_small);
        small_m
            .push(until_routes(&rig, 1000, started, Duration::from_secs(30)).as_secs_f64() * 1e3);
        batch(&rig.app, &del_small);
        until_routes(&rig, 0, Instant::now(), Duration::from_secs(30));
    }
    drop(kern);

    // Overruns: a second appliance whose netlink buffer is 4 KiB.
    let tiny = Rig::start_with("hrt", "netlink_buffer = 4096", "");
    other_defaults(&tiny.app);
    let five: Vec<Ipv4Net> = full
        .iter()
        .copied()
        .step_by(full.len() / 5000)
        .take(5000)
        .collect();
    let five_probe = addresses(&mut rng, &five, 2000);
    let (add5, del5) = (
        script("add", &five, "10.0.2.2"),
        script("del", &five, "10.0.2.2"),
    );
    let mut repair_ms = Vec::new();
    for _ in 0..SMALL_ROUNDS {
        batch(&tiny.app, &add5);
        let ended = Instant::now();
        tiny.agree_with_kernel(&five_probe, 10);
        repair_ms.push(ended.elapsed().as_secs_f64() * 1e3);
        batch(&tiny.app, &del5);
        tiny.agree_with_kernel(&five_probe, 10);
    }
    let overruns = tiny.host()["netlink"]["overruns"].as_u64().unwrap_or(0);
    drop(tiny);

    // BIRD: the full table over eBGP into the host's kernel and the FIB.
    let peers = common::bird::Peers::start(&rig.h2, &rig.app, &small);
    until_routes(&rig, 1000, Instant::now(), Duration::from_secs(60));
    let base = kernel_routes(&rig.app);
    let started = Instant::now();
    peers.announce(&full);
    let mut bird_kernel = None;
    loop {
        if bird_kernel.is_none() && kernel_routes(&rig.app) >= base - 1000 + n {
            bird_kernel = Some(started.elapsed());
        }
        if routes_now(&rig) == n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "BIRD's table never arrived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let bird_fib = started.elapsed();
    let bird_kernel = bird_kernel.unwrap_or(bird_fib);

    // Punt path RTT against the kernel's own over one veth.
    let (ka, kb) = (Netns::new("hr-ka"), Netns::new("hr-kb"));
    ka.ip(&[
        "link",
        "add",
        "v",
        "type",
        "veth",
        "peer",
        "name",
        "v",
        "netns",
        kb.name(),
    ]);
    for (ns, a) in [(&ka, "10.0.9.1/24"), (&kb, "10.0.9.2/24")] {
        ns.ip(&["addr", "add", a, "dev", "v"]);
        ns.ip(&["link", "set", "v", "up"]);
        ns.ip(&["link", "set", "lo", "up"]);
    }
    let (mut punt_us, mut veth_us) = (Vec::new(), Vec::new());
    for r in 0..RTT_ROUNDS {
        let port = 7000 + r as u16;
        punt_us.push(udp_rtt_us(
            &rig.h2,
            &rig.app,
            SocketAddr::from(([10, 0, 2, 1], port)),
            SocketAddr::from(([10, 0, 2, 2], 0)),
        ));
        veth_us.push(udp_rtt_us(
            &kb,
            &ka,
            SocketAddr::from(([10, 0, 9, 1], port)),
            SocketAddr::from(([10, 0, 9, 2], 0)),
        ));
    }

    // Forwarding with and without full-table churn in the host's kernel.
    let before = peers.session();
    // The kernel forwarding between two hosts: the baseline of what
    // full-table churn costs forwarding on this machine.
    let [kh2, _kr, kh3] = common::kernel_router("hr-k");
    let (mut quiet, mut churned) = (Vec::new(), Vec::new());
    let (mut k_quiet, mut k_churned) = (Vec::new(), Vec::new());
    let flip = [
        script("replace", &full, "10.0.2.3"),
        script("replace", &full, "10.0.2.4"),
    ];
    for _ in 0..FWD_ROUNDS {
        quiet.push(iperf3_gbps(&rig.h2, &h3));
        k_quiet.push(iperf3_gbps(&kh2, &kh3));
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let (stop, app, flip) = (Arc::clone(&stop), rig.app.name().to_owned(), flip.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    batch_in(&app, &flip[i % 2]);
                    i += 1;
                }
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        churned.push(iperf3_gbps(&rig.h2, &h3));
        k_churned.push(iperf3_gbps(&kh2, &kh3));
        stop.store(true, Ordering::Relaxed);
        churn.join().unwrap();
    }
    let after = peers.session();

    let (k, m) = (median(&mut kernel_s), median(&mut mirror_s));
    let (sk, sm) = (median(&mut small_k), median(&mut small_m));
    let (pu, ve) = (median(&mut punt_us), median(&mut veth_us));
    let (q, c) = (median(&mut quiet), median(&mut churned));
    let (kq, kc) = (median(&mut k_quiet), median(&mut k_churned));
    println!();
    println!("| figure | kernel | edgefwd | ratio / difference | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| full table by ip -batch (s) | {k:.2} | {m:.2} (FIB holds all {n}) | {:.2}× | ≤ 1.1× |",
        m / k
    );
    println!(
        "| full table withdrawn from the FIB (s) | | {:.2} | | |",
        median(&mut withdraw_s)
    );
    println!("| 1,000 routes (ms) | {sk:.1} | {sm:.1} | | ≤ 100 ms |");
    println!(
        "| overrun repaired: 5,000 routes, 4 KiB buffer (ms after the batch) | | {:.0} ({overruns} overruns) | | ≤ 2,000 ms |",
        median(&mut repair_ms)
    );
    println!(
        "| BIRD eBGP full table (s) | {:.2} (host kernel) | {:.2} (FIB) | {:.2}× | |",
        bird_kernel.as_secs_f64(),
        bird_fib.as_secs_f64(),
        bird_fib.as_secs_f64() / bird_kernel.as_secs_f64()
    );
    println!(
        "| punt path UDP RTT median (µs) | {ve:.1} (one veth) | {pu:.1} | +{:.1} µs | ≤ +50 µs |",
        pu - ve
    );
    println!(
        "| forwarding TCP Gbit/s, Port2→Port3, under churn / quiet | {kc:.2} / {kq:.2} = {:.2}× (kernel forwarding, same churn) | {c:.2} / {q:.2} | {:.2}× | ≥ 0.9× |",
        kc / kq,
        c / q
    );
    println!("BGP session before: {before}\nBGP session after:  {after}");
    assert!(
        after.contains("Established") && before == after,
        "the BGP session moved"
    );
}
