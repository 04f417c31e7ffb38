//! A Prometheus scrape of a 64-port appliance: the time to encode
//! `/metrics` (every port's counters and 37 drop reasons, the workers'
//! activity, the table gauges), beside the time to build and serialise
//! `stats --json` for the same counters in the same run.
//!
//! `cargo bench --bench metrics`. The target: a scrape answers in 10 ms.

#[path = "chart.rs"]
mod chart;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgefwd_control::config::Config;
use edgefwd_control::counters::Counters;
use edgefwd_control::daemon::Daemon;
use edgefwd_control::metrics::{Metrics, View};
use edgefwd_core::stats::{DropReason, Stats};
use edgefwd_io::worker::Shared;

const PORTS: usize = 64;
const ROUNDS: usize = 200;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut toml = String::new();
    for i in 0..PORTS {
        toml += &format!(
            "[[port]]\nname = \"Port{i}\"\nbind = \"none\"\nmac = \"02:00:00:00:{:02x}:01\"\naddresses = [\"10.{}.{}.1/24\"]\n\n",
            i, i / 256, i % 256
        );
    }
    let cfg = Config::parse(&toml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::new(cfg, dir.path().join("edgefwd.toml")).unwrap();
    let (events, _) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared::new(2, d.snapshot(), events, Arc::default()));
    // Counters that are not all zero (numbers take longer to print).
    let mut stats = Stats::new(PORTS);
    for (i, p) in stats.ports.iter_mut().enumerate() {
        let i = i as u64 + 1;
        p.rx = 123_456_789 * i;
        p.rx_bytes = 98_765_432_100 * i;
        p.tx = 123_456_000 * i;
        p.tx_bytes = 98_765_000_000 * i;
        for r in DropReason::ALL {
            p.drops[*r as usize] = i * (*r as u64 + 1);
        }
    }
    for w in &shared.stats {
        *w.lock() = stats.clone();
    }
    for a in &shared.activity {
        a.busy_ns.store(123_456_789_012, Ordering::Relaxed);
        a.idle_ns.store(987_654_321_098, Ordering::Relaxed);
    }
    let metrics = Metrics::new(Arc::clone(&shared), d.publish_latency());
    metrics.set_view(View::of(&d));

    let names = d.names();
    let mut scrape = Vec::with_capacity(ROUNDS);
    let mut json = Vec::with_capacity(ROUNDS);
    let mut bytes = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        bytes = std::hint::black_box(metrics.encode()).len();
        scrape.push(t.elapsed());
        let t = Instant::now();
        let mut total = Stats::new(PORTS);
        for w in &shared.stats {
            total.add(&w.lock());
        }
        let c = Counters::new(&names, Some(d.links()), &total);
        std::hint::black_box(serde_json::to_string(&c).unwrap());
        json.push(t.elapsed());
    }
    let (s, j) = (median(scrape), median(json));
    println!(
        "metrics/scrape_{PORTS}_ports: median {:.3} ms ({bytes} bytes); stats --json of the same counters {:.3} ms; ratio {:.2}",
        s.as_secs_f64() * 1e3,
        j.as_secs_f64() * 1e3,
        s.as_secs_f64() / j.as_secs_f64()
    );
    chart::write(
        "metrics",
        &[chart::Figure {
            title: format!("{PORTS}-port appliance: time to answer, median of {ROUNDS}, ms"),
            baseline: "stats --json".into(),
            bars: vec![
                ("/metrics scrape".into(), s.as_secs_f64() * 1e3),
                ("stats --json".into(), j.as_secs_f64() * 1e3),
            ],
        }],
    );
}
