//! NAT: the session table at 1,000,000 concurrent sessions, and the
//! pipeline with NAT beside the same pipeline without it.
//!
//! `cargo bench --bench nat` (no shared data needed). Every figure has a
//! baseline from the same process, since these machines are shared:
//! - `nat_table/established_outbound`: the mapping and session lookup with
//!   state update of an established flow, against one probe of a plain
//!   hash map holding the same 1,000,000 sessions' keys
//!   (`hashmap_probe_baseline`);
//! - `nat_table/established_outbound_burst64`: the same in bursts of 64
//!   (`Table::outbound_burst`, what the pipeline uses);
//! - `nat_table/established_outbound_4096_hot`: the same on 4,096 flows
//!   whose state stays in cache;
//! - `nat_table/new_sessions`: mappings and sessions made per second
//!   (65,536 into a fresh table per sample);
//! - `nat_pipeline_64B`: bursts of 64-byte UDP from a VM on the internal
//!   switch, translated out of Port2 (on 1,000,000 sessions, and on 4,096
//!   whose state stays in cache), beside the same frames routed from the
//!   switch without NAT and routed from Port3 without switch or NAT.
//!
//! Memory per session at 1,000,000 sessions is printed at start.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use edgefwd_control::config::Config;
use edgefwd_control::rib::{PortsUp, Rib};
use edgefwd_core::nat::{Flow, NatConfig, NatPolicy, Proto, Table};
use edgefwd_core::packet::Packet;
use edgefwd_core::pipeline::Router;
use edgefwd_core::port::PortId;
use edgefwd_core::time::Time;
use etherparse::PacketBuilder;
use rand::seq::SliceRandom;
use rand::SeedableRng;

const SESSIONS: usize = 1_000_000;
const BURST: usize = 64;
const EXT: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

fn table_config() -> NatConfig {
    NatConfig {
        outside: 0,
        external: EXT,
        inside: vec!["10.128.0.0/9".parse().unwrap()],
        policy: NatPolicy {
            max_sessions: 2 * SESSIONS,
            ..NatPolicy::default()
        },
    }
}

/// Inside endpoints: one external address has about 64,000 ports per
/// protocol, so 1,000,000 sessions are 50,000 mappings (4,096 hosts) with
/// 20 remotes each, as endpoint-independent mapping shares them.
const ENDPOINTS: usize = 50_000;

/// Flow `i`: inside endpoint and remote.
fn flow(i: usize) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
    let e = i % ENDPOINTS;
    let host = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 1, 0)) + (e % 4096) as u32);
    let port = 1024 + (e / 4096) as u16;
    let remote = Ipv4Addr::new(198, 51, 100, (i / ENDPOINTS) as u8);
    ((host, port), (remote, 443))
}

fn full_table() -> Table {
    let mut t = Table::new(table_config());
    let started = Instant::now();
    for i in 0..SESSIONS {
        let (src, dst) = flow(i);
        t.outbound(Proto::Udp, src, dst, 0, Time(0))
            .expect("session");
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "nat: {SESSIONS} sessions made in {secs:.2} s ({:.2} M/s, with the table's growth); \
         {} bytes per session (target <= 128), {} mappings",
        SESSIONS as f64 / secs / 1e6,
        t.bytes_per_session(),
        t.mappings(),
    );
    assert_eq!(t.sessions(), SESSIONS);
    t
}

fn bench_table(c: &mut Criterion) {
    let mut t = full_table();
    let mut order: Vec<usize> = (0..SESSIONS).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(4787));
    let flows: Vec<_> = order.iter().map(|&i| flow(i)).collect();
    let baseline: HashMap<((Ipv4Addr, u16), Ipv4Addr), u32, foldhash::fast::RandomState> = flows
        .iter()
        .enumerate()
        .map(|(i, (src, dst))| ((*src, dst.0), i as u32))
        .collect();

    const BATCH: usize = 1024;
    let mut g = c.benchmark_group("nat_table");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut at = 0;
    g.bench_function("established_outbound", |b| {
        b.iter(|| {
            at = (at + BATCH) % (SESSIONS - BATCH);
            let mut sum = 0u32;
            for (src, dst) in &flows[at..at + BATCH] {
                sum = sum.wrapping_add(u32::from(
                    t.outbound(Proto::Udp, *src, *dst, 0, Time(1)).unwrap(),
                ));
            }
            black_box(sum)
        })
    });
    // The same in bursts of 64, as the pipeline asks.
    let bursts: Vec<Flow> = flows
        .iter()
        .map(|&(src, dst)| Flow {
            proto: Proto::Udp,
            src,
            dst,
            flags: 0,
        })
        .collect();
    let mut answers = Vec::with_capacity(64);
    let mut at = 0;
    g.bench_function("established_outbound_burst64", |b| {
        b.iter(|| {
            at = (at + BATCH) % (SESSIONS - BATCH);
            let mut sum = 0u32;
            for chunk in bursts[at..at + BATCH].chunks(64) {
                t.outbound_burst(chunk, Time(1), &mut answers);
                sum = sum.wrapping_add(
                    answers
                        .iter()
                        .map(|a| u32::from(*a.as_ref().unwrap()))
                        .sum::<u32>(),
                );
            }
            black_box(sum)
        })
    });
    // The same on 4,096 flows, whose state stays in cache: the work itself,
    // without the memory latency of a million sessions.
    let mut at = 0;
    g.bench_function("established_outbound_4096_hot", |b| {
        b.iter(|| {
            at = (at + BATCH) % 4096;
            let mut sum = 0u32;
            for (src, dst) in &flows[at..at + BATCH] {
                sum = sum.wrapping_add(u32::from(
                    t.outbound(Proto::Udp, *src, *dst, 0, Time(1)).unwrap(),
                ));
            }
            black_box(sum)
        })
    });
    let mut at = 0;
    g.bench_function("hashmap_probe_baseline", |b| {
        b.iter(|| {
            at = (at + BATCH) % (SESSIONS - BATCH);
            let mut sum = 0u32;
            for (src, dst) in &flows[at..at + BATCH] {
                sum = sum.wrapping_add(baseline.get(&(*src, dst.0)).copied().unwrap_or(0));
            }
            black_box(sum)
        })
    });
    const NEW: usize = 65_536;
    g.throughput(Throughput::Elements(NEW as u64));
    g.bench_function("new_sessions", |b| {
        b.iter_batched(
            || Table::new(table_config()),
            |mut t| {
                for (src, dst) in &flows[..NEW] {
                    black_box(t.outbound(Proto::Udp, *src, *dst, 0, Time(0)).unwrap());
                }
                t
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

const CFG: &str = r#"
[[port]]
name = "Port2"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.15/24"]
gateway = "10.0.2.1"
[[port]]
name = "Port3"
mac = "02:00:00:00:03:01"
addresses = ["192.168.20.10/24"]
[[port]]
name = "vm1"
switch = "internal"
[[switch]]
name = "internal"
kind = "internal"
address = "10.128.0.1/9"
mac = "02:00:00:00:28:01"
NAT
[[neighbor]]
interface = "Port2"
address = "10.0.2.1"
mac = "02:00:00:00:99:01"
"#;

fn router(nat: bool) -> Router {
    let cfg = Config::parse(&CFG.replace("NAT", if nat { "nat = \"Port2\"" } else { "" })).unwrap();
    let rib = Rib::from_config(&cfg, PortsUp::All);
    let fib = Arc::new(rib.build_fib().0);
    rib.router(&cfg, fib, &cfg.router_config())
}

/// 64-byte UDP frames of `n` flows (spread over the 1,000,000), as sent by a
/// VM (to the gateway interface's MAC) or by a host on Port3.
fn frames(from_vm: bool, n: usize) -> Vec<Vec<u8>> {
    let mut order: Vec<usize> = (0..n).map(|i| i * (SESSIONS / n)).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(5382));
    order
        .into_iter()
        .map(|i| {
            let ((src, sport), (dst, dport)) = flow(i);
            let (smac, dmac, src) = if from_vm {
                ([2, 0, 0, 0, 0x28, 0x10], [2, 0, 0, 0, 0x28, 1], src)
            } else {
                (
                    [2, 0, 0, 0, 0x20, 0x50],
                    [2, 0, 0, 0, 3, 1],
                    Ipv4Addr::new(192, 168, 20, 50),
                )
            };
            let mut v = Vec::with_capacity(64);
            PacketBuilder::ethernet2(smac, dmac)
                .ipv4(src.octets(), dst.octets(), 64)
                .udp(sport, dport)
                .write(&mut v, &[0u8; 22])
                .unwrap();
            assert_eq!(v.len(), 64);
            v
        })
        .collect()
}

fn burst_through(
    r: &mut Router,
    burst: &mut Vec<Packet>,
    rx: PortId,
    frames: &[Vec<u8>],
    at: usize,
) -> u64 {
    for f in &frames[at..at + BURST] {
        r.receive(burst, rx, Time(1), f);
    }
    r.process(burst, Time(1));
    let mut sent = 0;
    r.drain_tx(0, |p| sent += p.buf.len() as u64);
    sent
}

fn bench_pipeline(c: &mut Criterion) {
    let (vm_frames, host_frames) = (frames(true, 4096), frames(false, 4096));
    let all_sessions = frames(true, SESSIONS);
    let mut burst = Vec::with_capacity(BURST);
    let variants: [(&str, Router, PortId, &[Vec<u8>]); 4] = [
        (
            "vm_switched_nat_1M_sessions",
            router(true),
            2,
            &all_sessions,
        ),
        ("vm_switched_nat", router(true), 2, &vm_frames),
        ("vm_switched_no_nat", router(false), 2, &vm_frames),
        ("port3_routed_baseline", router(true), 1, &host_frames),
    ];
    let mut g = c.benchmark_group("nat_pipeline_64B");
    g.throughput(Throughput::Elements(BURST as u64));
    for (name, mut r, rx, frames) in variants {
        // Warm: every flow's session exists before timing.
        for at in (0..frames.len()).step_by(BURST) {
            burst_through(&mut r, &mut burst, rx, frames, at);
        }
        let mut at = 0;
        g.bench_function(BenchmarkId::new(name, BURST), |b| {
            b.iter(|| {
                at = (at + BURST) % frames.len();
                black_box(burst_through(&mut r, &mut burst, rx, frames, at))
            })
        });
        let s = r.stats();
        assert_eq!(s.forwarded, s.received(), "{name}: every frame forwarded");
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench_table, bench_pipeline
}
criterion_main!(benches);
