//! The router pipeline on bursts of 64-byte IPv4 packets with the full
//! IPv4 table (ipv4-fullview-2023, 901,899 routes) in the FIB it uses
//! (Poptrie), beside the tree-bitmap lookup alone on the same destinations,
//! the same pipeline with a one-route table (its own cost), and the same
//! full-table pipeline with ip4-fast off (the stages alone).
//!
//! `cargo bench --bench pipeline`. Needs ../shared/data (or EDGEFWD_DATA).
//! Every variant runs in the same process: on these shared machines only
//! ratios between figures of one run compare.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgefwd_control::config::Config;
use edgefwd_control::rib::{PortsUp, Rib, RouteKind};
use edgefwd_control::ribfile;
use edgefwd_core::fib::Route;
use edgefwd_core::packet::Packet;
use edgefwd_core::pipeline::{Router, RouterConfig};
use edgefwd_core::time::Time;
use etherparse::PacketBuilder;
use ipnet::IpNet;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use treebitmap::IpLookupTable;

const BURST: usize = 64;
const CFG: &str = r#"
[[port]]
name = "Port2"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.15/24"]
[[port]]
name = "Port3"
mac = "02:00:00:00:03:01"
addresses = ["192.168.20.10/24"]
[[port]]
name = "Port4"
mac = "02:00:00:00:04:01"
addresses = ["192.168.30.10/24"]
"#;
/// Next hops the table's routes are spread over: (port, gateway).
const GATEWAYS: [(u16, [u8; 4]); 4] = [
    (0, [10, 0, 2, 1]),
    (0, [10, 0, 2, 2]),
    (2, [192, 168, 30, 1]),
    (2, [192, 168, 30, 2]),
];

fn table() -> Vec<ipnet::Ipv4Net> {
    let dir = std::env::var_os("EDGEFWD_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let path = dir.join("rib/ipv4-fullview-2023.txt");
    let routes = ribfile::load(&path)
        .unwrap_or_else(|e| panic!("this bench needs the shared RIB data (set EDGEFWD_DATA): {e}"));
    routes
        .into_iter()
        .filter_map(|r| match r.prefix {
            IpNet::V4(p) => Some(p),
            IpNet::V6(_) => None,
        })
        .collect()
}

struct Setup {
    router: Router,
    /// The full-table router with ip4-fast off.
    staged: Router,
    /// Whether `router` and `small` have ip4-fast on.
    fast: bool,
    /// The same pipeline with only a default route: its cost without the
    /// full-table lookup.
    small: Router,
    frames: Vec<Vec<u8>>,
    dsts: Vec<Ipv4Addr>,
    reference: IpLookupTable<Ipv4Addr, u32>,
}

/// A router with `prefixes` spread over the four gateways, all resolved.
fn make_router(prefixes: &[ipnet::Ipv4Net], rcfg: &RouterConfig) -> Router {
    let cfg = Config::parse(CFG).unwrap();
    let mut rib = Rib::from_config(&cfg, PortsUp::All);
    let gw = |i: usize| GATEWAYS[i % GATEWAYS.len()];
    rib.extend(
        prefixes.iter().enumerate().map(|(i, p)| Route {
            prefix: IpNet::V4(*p),
            port: gw(i).0,
            next_hop: Some(IpAddr::V4(gw(i).1.into())),
            metric: 0,
        }),
        RouteKind::Static,
    );
    let (fib, _) = rib.build_fib();
    let mut router = Router::new(rib.ports().clone(), Arc::new(fib), rcfg);
    for (i, (port, a)) in GATEWAYS.iter().enumerate() {
        let mac = edgefwd_core::packet::MacAddr([2, 0, 0, 0, 0x99, i as u8]);
        router.add_static_neighbor(*port, IpAddr::V4((*a).into()), mac);
    }
    router
}

fn setup() -> Setup {
    let prefixes = table();
    // EDGEFWD_BENCH_STAGED=1: ip4-fast off everywhere, for the instruction
    // count of the stages alone (see fixed_bursts).
    let rcfg = RouterConfig {
        fast_path: std::env::var_os("EDGEFWD_BENCH_STAGED").is_none(),
        ..RouterConfig::default()
    };
    let router = make_router(&prefixes, &rcfg);
    let staged = make_router(
        &prefixes,
        &RouterConfig {
            fast_path: false,
            ..rcfg.clone()
        },
    );
    let small = make_router(&["0.0.0.0/0".parse().unwrap()], &rcfg);
    let mut reference = IpLookupTable::new();
    for (i, p) in prefixes.iter().enumerate() {
        reference.insert(p.network(), u32::from(p.prefix_len()), i as u32);
    }
    // Destinations inside random table prefixes, so every lookup goes deep.
    let mut rng = StdRng::seed_from_u64(64);
    let dsts: Vec<Ipv4Addr> = (0..4096)
        .map(|_| {
            let p = prefixes[rng.gen_range(0..prefixes.len())];
            Ipv4Addr::from(u32::from(p.network()) | (rng.gen::<u32>() & !u32::from(p.netmask())))
        })
        .collect();
    let frames = dsts
        .iter()
        .map(|d| {
            let mut v = Vec::with_capacity(64);
            PacketBuilder::ethernet2([2, 0, 0, 0, 0x20, 0x50], [2, 0, 0, 0, 3, 1])
                .ipv4([192, 168, 20, 50], d.octets(), 64)
                .udp(5000, 443)
                .write(&mut v, &[0u8; 22])
                .unwrap();
            assert_eq!(v.len(), 64);
            v
        })
        .collect();
    Setup {
        fast: rcfg.fast_path,
        router,
        staged,
        small,
        frames,
        dsts,
        reference,
    }
}

/// One burst through the whole pipeline: receive (copy into a pooled
/// buffer), process, transmit (recycle).
fn pipeline_burst(
    router: &mut Router,
    burst: &mut Vec<Packet>,
    frames: &[Vec<u8>],
    at: usize,
) -> u64 {
    for f in &frames[at..at + BURST] {
        router.receive(burst, 1, Time(0), f);
    }
    router.process(burst, Time(0));
    let mut sent = 0;
    for port in [0, 2] {
        router.drain_tx(port, |p| sent += p.buf.len() as u64);
    }
    sent
}

fn lookup_burst(t: &IpLookupTable<Ipv4Addr, u32>, dsts: &[Ipv4Addr]) -> u32 {
    dsts.iter()
        .map(|d| t.longest_match(*d).map_or(0, |(_, _, v)| *v))
        .fold(0, u32::wrapping_add)
}

/// `EDGEFWD_BENCH_BURSTS=N`: run N bursts through the one-route and the
/// full-table pipelines and exit, for instruction counts under callgrind
/// (`--toggle-collect='*fixed_bursts*'`), which are repeatable where
/// wall-clock time on a shared machine is not. With
/// `EDGEFWD_BENCH_STAGED=1` too, both run without ip4-fast.
#[inline(never)]
fn fixed_bursts(router: &mut Router, burst: &mut Vec<Packet>, frames: &[Vec<u8>], n: usize) -> u64 {
    (0..n)
        .map(|i| pipeline_burst(router, burst, frames, (i * BURST) % frames.len()))
        .sum()
}

fn bench(c: &mut Criterion) {
    let Setup {
        fast,
        mut router,
        mut staged,
        mut small,
        frames,
        dsts,
        reference,
    } = setup();
    let mut burst = Vec::with_capacity(BURST);
    if let Some(n) = std::env::var("EDGEFWD_BENCH_BURSTS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        black_box(fixed_bursts(&mut small, &mut burst, &frames, n));
        black_box(fixed_bursts(&mut router, &mut burst, &frames, n));
        println!("ran {n} bursts of {BURST} through each pipeline");
        return;
    }
    let mut g = c.benchmark_group("ipv4_fullview_64B");
    g.throughput(Throughput::Elements(BURST as u64));
    let mut at = 0;
    g.bench_function(BenchmarkId::new("edgefwd_pipeline", BURST), |b| {
        b.iter(|| {
            at = (at + BURST) % frames.len();
            black_box(pipeline_burst(&mut router, &mut burst, &frames, at))
        })
    });
    let mut at = 0;
    g.bench_function(BenchmarkId::new("edgefwd_pipeline_one_route", BURST), |b| {
        b.iter(|| {
            at = (at + BURST) % frames.len();
            black_box(pipeline_burst(&mut small, &mut burst, &frames, at))
        })
    });
    let mut at = 0;
    g.bench_function(BenchmarkId::new("edgefwd_pipeline_staged", BURST), |b| {
        b.iter(|| {
            at = (at + BURST) % frames.len();
            black_box(pipeline_burst(&mut staged, &mut burst, &frames, at))
        })
    });
    let mut at = 0;
    g.bench_function(BenchmarkId::new("treebitmap_lookup_only", BURST), |b| {
        b.iter(|| {
            at = (at + BURST) % dsts.len();
            black_box(lookup_burst(&reference, &dsts[at..at + BURST]))
        })
    });
    g.finish();

    let s = router.stats();
    assert_eq!(
        s.forwarded,
        s.received(),
        "every benchmark packet is forwarded"
    );
    if fast {
        assert_eq!(s.fast_path, s.forwarded, "and takes ip4-fast");
    }
    assert_eq!(staged.stats().forwarded, staged.stats().received());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
