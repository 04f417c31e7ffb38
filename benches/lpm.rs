//! LPM lookups on the real tables: Poptrie (ours) beside the tree-bitmap
//! crate and the prefix-trie crate in the same process, single and batch,
//! plus memory and build times printed once.
//!
//! `cargo bench --bench lpm`. Needs ../shared/data (or EDGEFWD_DATA).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgefwd_control::ribfile;
use edgefwd_dataplane::fib::{Lpm, PoptrieLpm, TreeBitmapLpm};
use ipnet::{Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const N: usize = 1 << 16;

/// A shared table, values spread over 16 next-hop groups as in a FIB with
/// a few gateways.
fn load(name: &str) -> ribfile::Entries {
    let dir = std::env::var_os("EDGEFWD_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let routes = ribfile::load(&dir.join("rib").join(name))
        .unwrap_or_else(|e| panic!("this bench needs the shared RIB data (set EDGEFWD_DATA): {e}"));
    ribfile::entries(&routes, |i| (i % 16) as u32)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

fn bench_v4(c: &mut Criterion) {
    let v4 = load("ipv4-fullview-2023.txt").v4;
    let (fast, t_fast) = timed(|| PoptrieLpm::build(&v4, &[]));
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
    let mut rng = StdRng::seed_from_u64(4);
    let random: Vec<Ipv4Addr> = (0..N).map(|_| Ipv4Addr::from(rng.gen::<u32>())).collect();
    let mut out = vec![None; N];
    let mut g = c.benchmark_group("lpm_ipv4_fullview_random");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(BenchmarkId::new("poptrie", "single"), |b| {
        b.iter(|| {
            random
                .iter()
                .map(|a| fast.lookup_v4(*a).unwrap_or(0))
                .fold(0u32, u32::wrapping_add)
        })
    });
    g.bench_function(BenchmarkId::new("poptrie", "batch"), |b| {
        b.iter(|| {
            fast.lookup_v4_batch(&random, &mut out);
            black_box(&out);
        })
    });
    g.bench_function(BenchmarkId::new("treebitmap", "single"), |b| {
        b.iter(|| {
            random
                .iter()
                .map(|a| reference.lookup_v4(*a).unwrap_or(0))
                .fold(0u32, u32::wrapping_add)
        })
    });
    g.bench_function(BenchmarkId::new("prefix_trie", "single"), |b| {
        b.iter(|| {
            random
                .iter()
                .map(|a| trie.get_lpm(&Ipv4Net::from(*a)).map_or(0, |(_, v)| *v))
                .fold(0u32, u32::wrapping_add)
        })
    });
    g.finish();
}

fn bench_v6(c: &mut Criterion) {
    let v6 = load("ipv6-fullview-2023.txt").v6;
    let (fast, t_fast) = timed(|| PoptrieLpm::build(&[], &v6));
    let reference = TreeBitmapLpm::build(&[], &v6);
    let trie: PrefixMap<Ipv6Net, u32> = v6.iter().copied().collect();
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
    let mut g = c.benchmark_group("lpm_ipv6_fullview_in_prefix");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(BenchmarkId::new("poptrie", "single"), |b| {
        b.iter(|| {
            addrs
                .iter()
                .map(|a| fast.lookup_v6(*a).unwrap_or(0))
                .fold(0u32, u32::wrapping_add)
        })
    });
    let mut out = vec![None; N];
    g.bench_function(BenchmarkId::new("poptrie", "batch"), |b| {
        b.iter(|| {
            fast.lookup_v6_batch(&addrs, &mut out);
            black_box(&out);
        })
    });
    g.bench_function(BenchmarkId::new("treebitmap", "single"), |b| {
        b.iter(|| {
            addrs
                .iter()
                .map(|a| reference.lookup_v6(*a).unwrap_or(0))
                .fold(0u32, u32::wrapping_add)
        })
    });
    g.bench_function(BenchmarkId::new("prefix_trie", "single"), |b| {
        b.iter(|| {
            addrs
                .iter()
                .map(|a| trie.get_lpm(&Ipv6Net::from(*a)).map_or(0, |(_, v)| *v))
                .fold(0u32, u32::wrapping_add)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench_v4, bench_v6
}
criterion_main!(benches);
