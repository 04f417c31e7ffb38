//! LPM lookups on the real tables: Poptrie (ours) beside the tree-bitmap
//! crate and the prefix-trie crate in the same process, single and batch,
//! for random addresses and for the destinations of the bulk pcap traces,
//! plus memory and build times and the best-of-rounds ratios printed once,
//! with random reads from a table of Poptrie's size beside the IPv4 ones;
//! and the update rate on the full table with the RIS update stream.
//!
//! `cargo bench --bench lpm`. Needs ../shared/data (or EDGEFWD_DATA).
//! `EDGEFWD_BENCH_PASSES=N` runs only N batch passes per family, for
//! callgrind (see [`passes`]).

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use edgefwd_control::{ribfile, trace};
use edgefwd_core::fib::{Adjacency, FibWriter, Lpm, PoptrieLpm, Route, TreeBitmapLpm};
use edgefwd_core::packet::MacAddr;
use etherparse::{NetSlice, SlicedPacket};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const N: usize = 1 << 16;

/// A shared table, values spread over 16 next-hop groups as in a FIB with
/// a few gateways.
fn load(name: &str) -> ribfile::Entries {
    let routes = ribfile::load(&data_dir().join("rib").join(name))
        .unwrap_or_else(|e| panic!("this bench needs the shared RIB data (set EDGEFWD_DATA): {e}"));
    ribfile::entries(&routes, |i| (i % 16) as u32)
}

fn data_dir() -> PathBuf {
    std::env::var_os("EDGEFWD_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

/// The destination addresses of the packets in the bulk traces
/// (`pcap/bulk`), in capture order, file by file: IPv4 and IPv6.
fn trace_destinations() -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let dir = data_dir().join("pcap").join("bulk");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("this bench needs the shared pcap data (set EDGEFWD_DATA): {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    let mut frame = Vec::new();
    for f in &files {
        let mut r = trace::TraceReader::open(f).unwrap_or_else(|e| panic!("{e}"));
        // A damaged record ends that file's addresses; the others stay.
        while let Ok(Some(rec)) = r.next_record() {
            trace::to_ethernet(&rec, MacAddr([2, 0, 0, 0, 0, 1]), &mut frame);
            match SlicedPacket::from_ethernet(&frame).ok().and_then(|p| p.net) {
                Some(NetSlice::Ipv4(ip)) => v4.push(ip.header().destination_addr()),
                Some(NetSlice::Ipv6(ip)) => v6.push(ip.header().destination_addr()),
                _ => {}
            }
        }
    }
    (v4, v6)
}

/// `addrs` repeated to [`N`] lookups (a pass as long as the random ones).
fn cycled<A: Copy>(addrs: &[A]) -> Vec<A> {
    addrs.iter().copied().cycle().take(N).collect()
}

/// How many distinct addresses `addrs` holds.
fn distinct<A: Copy + Ord>(addrs: &[A]) -> usize {
    let mut v = addrs.to_vec();
    v.sort();
    v.dedup();
    v.len()
}

/// Interleaved rounds for [`best_of_rounds`].
const ROUNDS: usize = 30;

/// One pass of single lookups over `addrs`, the answers folded so none is
/// optimised away.
#[inline(always)]
fn fold<A: Copy>(addrs: &[A], lookup: impl Fn(A) -> Option<u32>) -> u32 {
    addrs
        .iter()
        .map(|a| lookup(*a).unwrap_or(0))
        .fold(0, u32::wrapping_add)
}

/// Lookups/s over `addrs` of Poptrie single, Poptrie batch and the
/// tree-bitmap crate (`reference`), best of [`ROUNDS`] interleaved rounds,
/// printed with the ratios to tree-bitmap. Every round runs each contender
/// once, so a slow spell of this shared machine hits all of them alike, and
/// each one's best round is its speed when undisturbed: steadier ratios
/// than separate criterion runs minutes apart. Each timed pass follows an
/// untimed one, so tables are as warm as in criterion's loop. Returns the
/// batch's best.
fn best_of_rounds<A: Copy>(
    title: &str,
    addrs: &[A],
    single: impl Fn(A) -> Option<u32>,
    batch: impl Fn(&[A], &mut [Option<u32>]),
    reference: impl Fn(A) -> Option<u32>,
) -> f64 {
    let mut out = vec![None; addrs.len()];
    let mut contenders: [(&str, &mut dyn FnMut() -> u32); 3] = [
        ("poptrie single", &mut || fold(addrs, &single)),
        ("poptrie batch", &mut || {
            batch(addrs, &mut out);
            out[0].unwrap_or(0)
        }),
        ("tree-bitmap", &mut || fold(addrs, &reference)),
    ];
    let mut best = [0f64; 3];
    for _ in 0..ROUNDS {
        for ((_, pass), best) in contenders.iter_mut().zip(&mut best) {
            // An untimed pass first brings the contender's table back into
            // the caches the others just used.
            black_box(pass());
            let t = Instant::now();
            black_box(pass());
            *best = best.max(addrs.len() as f64 / t.elapsed().as_secs_f64());
        }
    }
    println!("{title}, best of {ROUNDS} interleaved rounds (ratio to tree-bitmap):");
    for ((name, _), b) in contenders.iter().zip(&best) {
        println!(
            "  {name:<16} {:>8.1} M lookups/s  {:>6.2}x",
            b / 1e6,
            b / best[2]
        );
    }
    best[1]
}

/// Random reads/s from a table of `bytes` (one `u32` at a random index per
/// read, the reads independent), best of [`ROUNDS`]: what this machine's
/// memory allows a lookup structure of that size that reads it once per
/// lookup, with no work of its own. Printed beside `batch`, Poptrie's
/// batch lookups/s on the same number of random keys.
fn memory_ceiling(bytes: usize, batch: f64) {
    let table: Vec<u32> = (0..bytes / 4).map(|i| i as u32).collect();
    let mut rng = StdRng::seed_from_u64(8);
    let at: Vec<u32> = (0..N)
        .map(|_| rng.gen_range(0..table.len() as u32))
        .collect();
    let mut best = 0f64;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let sum = at
            .iter()
            .map(|&i| table[i as usize])
            .fold(0, u32::wrapping_add);
        black_box(sum);
        best = best.max(N as f64 / t.elapsed().as_secs_f64());
    }
    println!(
        "  one random read from a table of poptrie's size ({:.2} MiB): {:.1} M reads/s; poptrie batch is {:.2}x that",
        bytes as f64 / 1048576.0,
        best / 1e6,
        batch / best
    );
}

/// `EDGEFWD_BENCH_PASSES=N`: the number of batch passes to make over each
/// family's main address set (random IPv4, IPv6 inside the prefixes) in
/// [`batch_passes`] instead of the timed rounds and criterion groups, for
/// instruction counts under callgrind
/// (`--toggle-collect='*batch_passes*'`), which are repeatable where
/// wall-clock time on a shared machine is not.
fn passes() -> Option<usize> {
    std::env::var("EDGEFWD_BENCH_PASSES").ok()?.parse().ok()
}

/// `passes` batch lookups of all of `addrs` through `batch`.
#[inline(never)]
fn batch_passes<A: Copy>(
    addrs: &[A],
    passes: usize,
    batch: impl Fn(&[A], &mut [Option<u32>]),
) -> Option<u32> {
    let mut out = vec![None; addrs.len()];
    for _ in 0..passes {
        batch(addrs, &mut out);
        black_box(&out);
    }
    out[0]
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

/// A criterion group `name` of IPv4 lookups over `addrs`: Poptrie single
/// and batch and tree-bitmap single; the caller may add to it, then
/// finishes it.
fn v4_group<'c>(
    c: &'c mut Criterion,
    name: &str,
    addrs: &[Ipv4Addr],
    fast: &PoptrieLpm,
    reference: &TreeBitmapLpm,
    out: &mut [Option<u32>],
) -> BenchmarkGroup<'c, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(BenchmarkId::new("poptrie", "single"), |b| {
        b.iter(|| fold(addrs, |a| fast.lookup_v4(a)))
    });
    g.bench_function(BenchmarkId::new("poptrie", "batch"), |b| {
        b.iter(|| {
            fast.lookup_v4_batch(addrs, out);
            black_box(&out);
        })
    });
    g.bench_function(BenchmarkId::new("treebitmap", "single"), |b| {
        b.iter(|| fold(addrs, |a| reference.lookup_v4(a)))
    });
    g
}

fn bench_v4(c: &mut Criterion) {
    let v4 = load("ipv4-fullview-2023.txt").v4;
    let (fast, t_fast) = timed(|| PoptrieLpm::build(&v4, &[]));
    let mut rng = StdRng::seed_from_u64(4);
    let random: Vec<Ipv4Addr> = (0..N).map(|_| Ipv4Addr::from(rng.gen::<u32>())).collect();
    if let Some(n) = passes() {
        black_box(batch_passes(&random, n, |a, o| fast.lookup_v4_batch(a, o)));
        return println!("ran {n} IPv4 batch passes over {N} random addresses");
    }
    let (reference, t_ref) = timed(|| TreeBitmapLpm::build(&v4, &[]));
    let (trie, t_trie) = timed(|| v4.iter().copied().collect::<PrefixMap<Ipv4Net, u32>>());
    println!(
        "ipv4-fullview-2023 ({} routes): poptrie {:.2} MiB built in {:?}; tree-bitmap {:.2} MiB built in {:?}; prefix-trie built in {t_trie:?}",
        v4.len(),
        fast.memory_bytes() as f64 / 1048576.0,
        t_fast,
        reference.memory_bytes() as f64 / 1048576.0,
        t_ref
    );
    let mut out = vec![None; N];
    let batch = best_of_rounds(
        "ipv4-fullview-2023, random addresses",
        &random,
        |a| fast.lookup_v4(a),
        |a, o| fast.lookup_v4_batch(a, o),
        |a| reference.lookup_v4(a),
    );
    memory_ceiling(fast.memory_bytes(), batch);
    let mut g = v4_group(
        c,
        "lpm_ipv4_fullview_random",
        &random,
        &fast,
        &reference,
        &mut out,
    );
    g.bench_function(BenchmarkId::new("prefix_trie", "single"), |b| {
        b.iter(|| {
            fold(&random, |a| {
                trie.get_lpm(&Ipv4Net::from(a)).map(|(_, v)| *v)
            })
        })
    });
    g.finish();

    let (seen, _) = trace_destinations();
    let routed = seen
        .iter()
        .filter(|a| reference.lookup_v4(**a).is_some())
        .count();
    let traced = cycled(&seen);
    best_of_rounds(
        &format!(
            "ipv4-fullview-2023, destinations of the bulk traces ({} packets, {} addresses, {routed} packets routed)",
            seen.len(),
            distinct(&seen)
        ),
        &traced,
        |a| fast.lookup_v4(a),
        |a, o| fast.lookup_v4_batch(a, o),
        |a| reference.lookup_v4(a),
    );
    v4_group(
        c,
        "lpm_ipv4_fullview_traces",
        &traced,
        &fast,
        &reference,
        &mut out,
    )
    .finish();
}

fn bench_v6(c: &mut Criterion) {
    let v6 = load("ipv6-fullview-2023.txt").v6;
    let (fast, t_fast) = timed(|| PoptrieLpm::build(&[], &v6));
    println!(
        "ipv6-fullview-2023 ({} routes): poptrie {:.2} MiB built in {t_fast:?}",
        v6.len(),
        fast.memory_bytes() as f64 / 1048576.0
    );
    let mut rng = StdRng::seed_from_u64(6);
    // Random addresses inside the table's prefixes (a random IPv6 address is
    // almost never routed, which would measure only the direct table).
    let addrs: Vec<Ipv6Addr> = (0..N)
        .map(|_| {
            let (p, _) = v6[rng.gen_range(0..v6.len())];
            Ipv6Addr::from(u128::from(p.network()) | (rng.gen::<u128>() & !u128::from(p.netmask())))
        })
        .collect();
    if let Some(n) = passes() {
        black_box(batch_passes(&addrs, n, |a, o| fast.lookup_v6_batch(a, o)));
        return println!("ran {n} IPv6 batch passes over {N} addresses inside the prefixes");
    }
    let reference = TreeBitmapLpm::build(&[], &v6);
    let trie: PrefixMap<Ipv6Net, u32> = v6.iter().copied().collect();
    best_of_rounds(
        "ipv6-fullview-2023, addresses inside its prefixes",
        &addrs,
        |a| fast.lookup_v6(a),
        |a, o| fast.lookup_v6_batch(a, o),
        |a| reference.lookup_v6(a),
    );
    let mut g = c.benchmark_group("lpm_ipv6_fullview_in_prefix");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(BenchmarkId::new("poptrie", "single"), |b| {
        b.iter(|| fold(&addrs, |a| fast.lookup_v6(a)))
    });
    let mut out = vec![None; N];
    g.bench_function(BenchmarkId::new("poptrie", "batch"), |b| {
        b.iter(|| {
            fast.lookup_v6_batch(&addrs, &mut out);
            black_box(&out);
        })
    });
    g.bench_function(BenchmarkId::new("treebitmap", "single"), |b| {
        b.iter(|| fold(&addrs, |a| reference.lookup_v6(a)))
    });
    g.bench_function(BenchmarkId::new("prefix_trie", "single"), |b| {
        b.iter(|| fold(&addrs, |a| trie.get_lpm(&Ipv6Net::from(a)).map(|(_, v)| *v)))
    });
    g.finish();

    let (_, seen) = trace_destinations();
    if seen.is_empty() {
        return println!("ipv6: the bulk traces hold no IPv6 packets");
    }
    let routed = seen
        .iter()
        .filter(|a| reference.lookup_v6(**a).is_some())
        .count();
    best_of_rounds(
        &format!(
            "ipv6-fullview-2023, destinations of the bulk traces ({} packets, {} addresses, {routed} packets routed)",
            seen.len(),
            distinct(&seen)
        ),
        &cycled(&seen),
        |a| fast.lookup_v6(a),
        |a, o| fast.lookup_v6_batch(a, o),
        |a| reference.lookup_v6(a),
    );
}

/// The RIS update stream's IPv4 updates (announce or withdraw, prefix).
fn load_updates(name: &str) -> Vec<(bool, Ipv4Net)> {
    let text = std::fs::read_to_string(data_dir().join("rib").join(name))
        .unwrap_or_else(|e| panic!("this bench needs the shared RIB data (set EDGEFWD_DATA): {e}"));
    text.lines()
        .filter_map(|l| {
            match ribfile::parse_update(l).unwrap_or_else(|| panic!("bad line {l:?}")) {
                (announce, IpNet::V4(p), _) => Some((announce, p)),
                (_, IpNet::V6(_), _) => None,
            }
        })
        .collect()
}

/// Route changes at full-table size: the RIS update stream applied to the
/// 2023 table, each update on its own. Ours publishes every update (the
/// workers could forward with each intermediate FIB); the tree-bitmap crate
/// and prefix-trie update one table in place, which no reader could use
/// meanwhile.
fn bench_updates(c: &mut Criterion) {
    if passes().is_some() {
        return;
    }
    let v4 = load("ipv4-fullview-2023.txt").v4;
    let updates = load_updates("updates-ris-20160811.1600.txt");
    let adj = |v: u32| Adjacency {
        port: 0,
        next_hop: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, v as u8 + 1))),
    };
    let routes: Vec<Route> = v4
        .iter()
        .map(|(p, v)| Route {
            prefix: IpNet::V4(*p),
            port: 0,
            next_hop: adj(*v).next_hop,
            metric: 0,
        })
        .collect();
    let ((mut writer, _), t_build) = timed(|| FibWriter::build(&routes, |_| true));
    println!(
        "FIB writer on ipv4-fullview-2023: built in {t_build:?}; {:.2} MiB (two copies and the tries); {} IPv4 updates per pass",
        writer.memory_bytes() as f64 / 1048576.0,
        updates.len()
    );
    let mut reference = treebitmap::IpLookupTable::<Ipv4Addr, u32>::new();
    let mut trie = PrefixMap::<Ipv4Net, u32>::new();
    for (p, v) in &v4 {
        reference.insert(p.network(), u32::from(p.prefix_len()), *v);
        trie.insert(*p, *v);
    }
    let mut g = c.benchmark_group("lpm_update_ipv4_fullview_ris");
    g.throughput(Throughput::Elements(updates.len() as u64));
    g.bench_function(BenchmarkId::new("poptrie_writer", "publish_each"), |b| {
        b.iter(|| {
            for (i, (announce, p)) in updates.iter().enumerate() {
                if *announce {
                    writer.set(IpNet::V4(*p), &[adj(i as u32 % 16)]);
                } else {
                    writer.set(IpNet::V4(*p), &[]);
                }
                black_box(writer.publish());
            }
        })
    });
    g.bench_function(BenchmarkId::new("treebitmap", "in_place"), |b| {
        b.iter(|| {
            for (i, (announce, p)) in updates.iter().enumerate() {
                let len = u32::from(p.prefix_len());
                if *announce {
                    reference.insert(p.network(), len, i as u32 % 16);
                } else {
                    reference.remove(p.network(), len);
                }
            }
        })
    });
    g.bench_function(BenchmarkId::new("prefix_trie", "in_place"), |b| {
        b.iter(|| {
            for (i, (announce, p)) in updates.iter().enumerate() {
                if *announce {
                    trie.insert(*p, i as u32 % 16);
                } else {
                    trie.remove(p);
                }
            }
        })
    });
    g.finish();
    println!(
        "after the update passes: {:.2} MiB, {} copies made because a reader held one",
        writer.memory_bytes() as f64 / 1048576.0,
        writer.copied()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench_v4, bench_v6, bench_updates
}
criterion_main!(benches);
