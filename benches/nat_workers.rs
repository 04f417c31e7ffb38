//! The VM → internal switch → NAT → Port2 pipeline on 1 and 2 worker
//! threads (4 and 8 where the machine has the cores), with the hand-off
//! between workers included.
//!
//! `cargo bench --bench nat_workers` (no shared data needed). Each worker
//! thread owns a router, as in the daemon; the frames of 32,768 UDP flows
//! (4,096 inside hosts) are dealt to the threads as a multi-queue TAP
//! would (the kernel's symmetric flow hash, `replay::spread`), so a
//! thread's frames belong to another worker's NAT flows in proportion
//! (n-1)/n and are handed over through the same queues the daemon uses.
//! Sessions are made before timing; what is timed is established flows.
//!
//! - `nat_workers/kernel_spread/N`: N threads, hand-off included;
//! - `nat_workers/owner_spread/N`: the same frames dealt to their owners,
//!   so nothing is handed over: the difference is the hand-off's cost. It
//!   is also what a TAP's flow steering gives once a flow's replies have
//!   been written to the owner's queue.
//!
//! The throughput counts every frame offered; the share a saturated
//! receiver dropped (`handoff_full`) is printed beside it. The target: 2
//! workers ≥ 1.8× the throughput of 1.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgefwd_control::config::Config;
use edgefwd_control::replay::spread;
use edgefwd_control::rib::{PortsUp, Rib};
use edgefwd_core::pipeline::handoff::address_owner;
use edgefwd_core::pipeline::Router;
use edgefwd_core::port::PortId;
use edgefwd_core::stats::DropReason;
use edgefwd_core::time::Time;
use edgefwd_io::worker::{Desk, HandOffs};
use etherparse::PacketBuilder;

const CFG: &str = r#"
[dataplane]
burst = 64
[[port]]
name = "Port2"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.15/24"]
gateway = "10.0.2.1"
[[port]]
name = "vm1"
switch = "internal"
[[switch]]
name = "internal"
kind = "internal"
address = "10.128.0.1/9"
mac = "02:00:00:00:28:01"
nat = "Port2"
[[neighbor]]
interface = "Port2"
address = "10.0.2.1"
mac = "02:00:00:00:99:01"
"#;

const FLOWS: usize = 32_768;
const HOSTS: u32 = 4096;
const BURST: usize = 64;
/// Frames timed per sample, over all threads.
const PER_SAMPLE: usize = 1 << 17;
const VM1: PortId = 1;

/// A flow's frame: 64-byte UDP from inside host `i % HOSTS`.
fn frame(i: usize) -> (Ipv4Addr, Vec<u8>) {
    let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 1, 0)) + i as u32 % HOSTS);
    let sport = 1024 + (i as u32 / HOSTS) as u16;
    let dst = Ipv4Addr::new(198, 51, 100, (i % 200) as u8 + 1);
    let mut v = Vec::with_capacity(64);
    PacketBuilder::ethernet2([2, 0, 0, 0, 0x28, 0x10], [2, 0, 0, 0, 0x28, 1])
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(sport, 443)
        .write(&mut v, &[0u8; 22])
        .unwrap();
    (src, v)
}

fn routers(n: usize) -> Vec<Router> {
    let cfg = Config::parse(CFG).unwrap();
    let rib = Rib::from_config(&cfg, PortsUp::All);
    let fib = Arc::new(rib.build_fib().0);
    rib.routers(&cfg, fib, &cfg.router_config(), n)
}

/// The frames each of `n` threads receives: by the kernel's flow spread,
/// or by the owner of each flow's NAT mapping.
fn deal(n: usize, by_owner: bool) -> Vec<Vec<Vec<u8>>> {
    let mut out = vec![Vec::new(); n];
    for i in 0..FLOWS {
        let (src, f) = frame(i);
        let t = if by_owner {
            address_owner(src, n)
        } else {
            spread::queue(&f, n)
        };
        out[t].push(f);
    }
    out
}

/// One worker thread's share of a sample: its `count` frames in bursts,
/// then what the others hand it until every thread is done. Returns the
/// frames it sent.
fn work(
    id: usize,
    r: &mut Router,
    hand: &HandOffs,
    frames: &[Vec<u8>],
    count: usize,
    done: &AtomicUsize,
    workers: usize,
) -> u64 {
    let mut burst = Vec::with_capacity(BURST);
    let mut desk = Desk::new(id, workers);
    let mut sent = 0u64;
    let mut drain = |r: &mut Router| {
        for port in 0..2 {
            r.drain_tx_all(port, |q| sent += q.len() as u64);
        }
    };
    let mut at = 0;
    let mut own = 0;
    let mut finished = false;
    loop {
        hand.take_back(&mut desk, r);
        if own < count {
            for _ in 0..BURST {
                r.receive(&mut burst, VM1, Time(1), &frames[at]);
                at = (at + 1) % frames.len();
            }
            own += BURST;
            r.process(&mut burst, Time(1));
            hand.send(&mut desk, r);
            drain(r);
        } else if !finished {
            finished = true;
            done.fetch_add(1, Ordering::AcqRel);
        }
        // Every thread done first, then nothing pending: a parcel sent
        // just before the last thread finished is not left behind.
        let all_done = finished && done.load(Ordering::Acquire) == workers;
        if hand.pending(id) {
            hand.receive(&mut desk, r, &mut burst, BURST);
            r.process(&mut burst, Time(1));
            hand.send(&mut desk, r);
            drain(r);
            hand.give_back(&mut desk, r);
        } else if all_done {
            break;
        }
    }
    drain(r);
    sent
}

/// Runs one sample on `routers` with `frames` dealt to them; the time it
/// took and the frames sent.
fn sample(routers: &mut [Router], frames: &[Vec<Vec<u8>>]) -> (Duration, u64) {
    let n = routers.len();
    let hand = HandOffs::new(n);
    let done = AtomicUsize::new(0);
    let start = Barrier::new(n + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = routers
            .iter_mut()
            .zip(frames)
            .enumerate()
            .map(|(id, (r, f))| {
                let (hand, done, start) = (&hand, &done, &start);
                s.spawn(move || {
                    start.wait();
                    work(id, r, hand, f, PER_SAMPLE / n, done, n)
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        let sent: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        (t0.elapsed(), sent)
    })
}

fn bench(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let counts: Vec<usize> = [1, 2, 4, 8]
        .into_iter()
        .filter(|&n| n <= cores.max(2))
        .collect();
    let mut g = c.benchmark_group("nat_workers");
    g.throughput(Throughput::Elements(PER_SAMPLE as u64));
    for by_owner in [false, true] {
        let name = if by_owner {
            "owner_spread"
        } else {
            "kernel_spread"
        };
        for &n in &counts {
            if by_owner && n == 1 {
                continue;
            }
            let frames = deal(n, by_owner);
            let mut rs = routers(n);
            // Make every session before timing: established flows.
            let (_, sent) = sample(&mut rs, &frames);
            assert!(sent > 0);
            let handed: u64 = rs.iter().map(|r| r.stats().handed_off).sum();
            let mut drops = edgefwd_core::stats::Stats::new(0);
            rs.iter().for_each(|r| drops.add(r.stats()));
            let dropped: Vec<_> = edgefwd_core::stats::DropReason::ALL
                .iter()
                .zip(drops.drops_by_reason())
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| format!("{} {n}", r.name()))
                .collect();
            eprintln!("{name}/{n}: warm-up handed {handed} of {PER_SAMPLE}, dropped {dropped:?}");
            let (mut frames_sent, mut frames_in) = (0u64, 0u64);
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let (t, sent) = sample(&mut rs, &frames);
                        (frames_sent, frames_in) =
                            (frames_sent + sent, frames_in + PER_SAMPLE as u64);
                        total += t;
                    }
                    total
                })
            });
            // A full hand-off queue drops (as in the daemon): the share
            // lost is part of the figure.
            let full: u64 = rs
                .iter()
                .map(|r| r.stats().drops_by_reason()[DropReason::HandOffFull as usize])
                .sum();
            let lost = 1.0 - frames_sent as f64 / frames_in.max(1) as f64;
            eprintln!(
                "{name}/{n}: {:.3}% of frames not sent; handoff_full drops {full}",
                lost * 100.0
            );
            // Saturated, a receiver behind on its hand-offs drops some; more
            // than a tenth would be a fault, not load.
            assert!(frames_in == 0 || lost < 0.1, "{name}/{n}: {lost}");
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
