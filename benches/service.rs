//! The service balancer's pieces: the connection table at 1M flows
//! (established lookups in bursts of 64 and new flows per second, beside a
//! foldhash `HashMap` of the same flows in the same run, and bytes per
//! flow), the
//! weighted Maglev table's build time for 3, 100 and 1,000 backends, each
//! backend's share of it, and the evenness of the split of 30,000 random
//! flows over 3 and 10 backends (chi-square against its 1% critical
//! value).
//!
//! `cargo bench --bench service`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use edgefwd_core::nat::Proto;
use edgefwd_core::service::maglev::{size_for, Maglev};
use edgefwd_core::service::{
    Backend, BackendState, Flow, FlowKey, FlowTable, ServiceConfig, ServiceKind, ServicePort,
    Services, Timeouts,
};
use foldhash::fast::FixedState;

const FLOWS: usize = 1 << 20;
const ROUNDS: usize = 5;

fn key(i: u32) -> FlowKey {
    FlowKey::new(
        6,
        (
            IpAddr::from(0x0a00_0000u32.wrapping_add(i / 16).to_be_bytes()),
            1024 + (i % 16) as u16 * 3000,
        ),
        (IpAddr::from([10, 0, 2, 100]), 80),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let keys: Vec<FlowKey> = (0..FLOWS as u32).map(key).collect();
    // Lookups in a scattered order, as flows interleave on a wire.
    let mut order: Vec<usize> = (0..FLOWS).collect();
    let mut x = 0x9e37_79b9u64;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let backends: Vec<Vec<u8>> = (0..3u32)
        .map(|i| (0x0af4_0100 + i).to_be_bytes().to_vec())
        .collect();
    let refs: Vec<&[u8]> = backends.iter().map(Vec::as_slice).collect();
    let maglev = Maglev::build(&refs, &[1, 1, 1], size_for(3));
    let flow_hash = FixedState::with_seed(7);

    let (mut ours_new, mut ours_hit, mut map_new, mut map_hit) = (vec![], vec![], vec![], vec![]);
    let mut table = FlowTable::with_capacity(2 * FLOWS, Timeouts::default());
    for _ in 0..ROUNDS {
        table = FlowTable::with_capacity(2 * FLOWS, Timeouts::default());
        let t = Instant::now();
        for k in &keys {
            let backend = maglev.pick(flow_hash.hash_one(k)).unwrap_or(0);
            table.insert(
                *k,
                Flow::to(0, std::net::IpAddr::from(backend.to_be_bytes()), 0),
                1,
                0x02,
            );
        }
        ours_new.push(rate(FLOWS, t.elapsed()));
        // In bursts of 64, as a service stage would look them up.
        let burst: Vec<Vec<(FlowKey, u8)>> = order
            .chunks(64)
            .map(|c| c.iter().map(|&i| (keys[i], 0x10)).collect())
            .collect();
        let mut found = Vec::with_capacity(64);
        let t = Instant::now();
        let mut sum = 0u64;
        for b in &burst {
            table.lookup_burst(b, 2, &mut found);
            sum += found
                .iter()
                .map(|f| f.map_or(0, |f| f.aux as u64 + f.addr as u64))
                .sum::<u64>();
        }
        ours_hit.push(rate(FLOWS, t.elapsed()));
        std::hint::black_box(sum);

        let mut map: HashMap<FlowKey, Flow, FixedState> =
            HashMap::with_capacity_and_hasher(FLOWS, FixedState::with_seed(1));
        let t = Instant::now();
        for k in &keys {
            let backend = maglev.pick(flow_hash.hash_one(k)).unwrap_or(0);
            map.insert(
                *k,
                Flow::to(0, std::net::IpAddr::from(backend.to_be_bytes()), 0),
            );
        }
        map_new.push(rate(FLOWS, t.elapsed()));
        let t = Instant::now();
        let mut sum = 0u64;
        for &i in &order {
            sum += u64::from(map.get(&keys[i]).map_or(0, |f| f.addr as u32));
        }
        map_hit.push(rate(FLOWS, t.elapsed()));
        std::hint::black_box(sum);
    }
    let (oh, mh, on, mn) = (
        median(ours_hit),
        median(map_hit),
        median(ours_new),
        median(map_new),
    );
    println!(
        "service/flows at {FLOWS}: established lookups {:.1} M/s (HashMap {:.1} M/s, {:.2}x); new flows {:.1} M/s (HashMap {:.1} M/s, {:.2}x); {} bytes a flow, evicted {}",
        oh / 1e6,
        mh / 1e6,
        oh / mh,
        on / 1e6,
        mn / 1e6,
        on / mn,
        FlowTable::bytes_per_flow(),
        table.evicted(),
    );

    for n in [3usize, 100, 1000] {
        let keys: Vec<Vec<u8>> = (0..n as u32)
            .map(|i| (0x0af4_0000 + i).to_be_bytes().to_vec())
            .collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let weights = vec![1; n];
        let mut times = Vec::new();
        let mut t = Maglev::build(&refs, &weights, size_for(n));
        for _ in 0..ROUNDS {
            let start = Instant::now();
            t = std::hint::black_box(Maglev::build(&refs, &weights, size_for(n)));
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        let shares = t.shares(n);
        let want = t.size() as f64 / n as f64;
        let worst = shares
            .iter()
            .map(|&s| (s as f64 - want).abs() / want * 100.0)
            .fold(0.0, f64::max);
        println!(
            "service/maglev {n} backends: table {} slots built in {:.2} ms (median of {ROUNDS}); worst share off by {worst:.3}% (target 1%)",
            t.size(),
            median(times),
        );
    }

    // Evenness of what flows see: 30,000 random flows (as a client's
    // ephemeral ports and addresses give), chi-square against the 1%
    // critical value (df 2: 9.210, df 9: 21.666).
    for (n, critical) in [(3usize, 9.210), (10, 21.666)] {
        let keys: Vec<Vec<u8>> = (0..n as u32)
            .map(|i| (0x0af4_0000 + i).to_be_bytes().to_vec())
            .collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let t = Maglev::build(&refs, &vec![1; n], size_for(n));
        let mut counts = vec![0f64; n];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..30_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = FlowKey::new(
                6,
                (IpAddr::from((x as u32).to_be_bytes()), (x >> 32) as u16),
                (IpAddr::from([10, 0, 2, 100]), 80),
            );
            counts[t.pick(flow_hash.hash_one(k)).unwrap_or(0) as usize] += 1.0;
        }
        let e = 30_000.0 / n as f64;
        let chi2: f64 = counts.iter().map(|c| (c - e) * (c - e) / e).sum();
        println!(
            "service/split {n} backends over 30,000 flows: chi-square {chi2:.2} (even at p >= 0.01 below {critical}): {}",
            if chi2 < critical { "even" } else { "NOT even" }
        );
    }

    // Ten thousand services of three backends: loading them all, and one
    // backend change among them (the next new flow sees it once the
    // snapshot is taken, which is this plus a pointer swap).
    let services: Vec<ServiceConfig> = (0..10_000u32)
        .map(|i| ServiceConfig {
            name: format!("svc-{i}"),
            kind: ServiceKind::ClusterIp,
            vips: vec![std::net::Ipv4Addr::from(0x0a60_0000 + i).into()],
            announce: None,
            ports: vec![ServicePort {
                proto: Proto::Tcp,
                port: 80,
                target: 8080,
            }],
            backends: (0..3u32)
                .map(|b| Backend {
                    addr: std::net::Ipv4Addr::from(0x0af4_0000 + i * 4 + b).into(),
                    weight: 1,
                    state: BackendState::Active,
                })
                .collect(),
            affinity: None,
        })
        .collect();
    let (mut load, mut change) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let mut set = Services::new(1024);
        let t = Instant::now();
        set.set(services.clone(), Vec::new(), 1024);
        load.push(t.elapsed().as_secs_f64() * 1e3);
        let mut changed = services.clone();
        changed[5000].backends[1].state = BackendState::Draining;
        let t = Instant::now();
        set.set(changed, Vec::new(), 1024);
        change.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "service/10000 services of 3 backends: loaded in {:.0} ms (target 1 s); one backend drained among them in {:.2} ms (target 10 ms)",
        median(load),
        median(change)
    );
}
