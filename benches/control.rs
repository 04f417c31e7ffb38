//! The control plane at full-table size: the 901,899-route IPv4 table
//! loaded as one `route add --file` change, then single route changes and
//! control commands against that table, with the FIB rebuild each change
//! costs. Timed on the daemon's own command path (validation, state file
//! write with fsync, RIB and FIB update, snapshot publish), in one process,
//! first with no reader and then with a thread reading the FIB as a worker
//! does.
//!
//! `cargo bench --bench control`. Needs ../shared/data (or EDGEFWD_DATA).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgefwd_control::api::{Command, RouteSpec};
use edgefwd_control::config::Config;
use edgefwd_control::daemon::{Daemon, NoWorkers};
use edgefwd_control::ribfile;
use edgefwd_core::port::LinkState;
use edgefwd_io::worker::Shared;

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let data = std::env::var_os("EDGEFWD_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let table = ribfile::load(&data.join("rib/ipv4-fullview-2023.txt"))
        .unwrap_or_else(|e| panic!("this bench needs the shared RIB data (set EDGEFWD_DATA): {e}"));
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[control]\nstate = \"{}\"\n\n[[port]]\nname = \"Port2\"\nbind = \"none\"\nmac = \"02:00:00:00:02:01\"\naddresses = [\"10.0.2.15/24\"]\n\n\
         [[port]]\nname = \"Port3\"\nbind = \"none\"\nmac = \"02:00:00:00:03:01\"\naddresses = [\"192.168.20.10/24\"]\n\n\
         [[route]]\ninterface = \"Port3\"\ndestination = \"192.168.21.0/24\"\nnext_hop = \"192.168.20.1\"\nmetric = 100\n\n\
         [[route]]\ninterface = \"Port3\"\ndestination = \"192.168.22.0/24\"\nnext_hop = \"192.168.20.1\"\nmetric = 100\n",
        dir.path().join("state.json").display()
    );
    let cfg = Config::parse(&toml).unwrap();
    let mut d = Daemon::new(cfg.clone(), dir.path().join("edgefwd.toml")).unwrap();
    d.set_link(0, LinkState::Up);
    d.set_link(1, LinkState::Up);
    // The table's next hops are not on Port2's subnet: send them all to
    // one gateway there, as `route add --file` with a rewritten list would.
    let routes: Vec<RouteSpec> = table
        .iter()
        .filter(|r| r.prefix.addr().is_ipv4())
        .map(|r| RouteSpec {
            interface: "Port2".into(),
            destination: r.prefix.to_string(),
            next_hop: Some("10.0.2.1".into()),
            metric: Some(100),
        })
        .collect();
    let n = routes.len();
    let (r, load) = timed(|| d.handle(Command::RouteAdd { routes }, &NoWorkers));
    r.unwrap();
    let state_bytes = std::fs::metadata(dir.path().join("state.json")).map_or(0, |m| m.len());
    println!(
        "full table: {n} routes loaded and live in {load:.2?} (state file {:.1} MiB)",
        state_bytes as f64 / (1 << 20) as f64
    );
    let (restarted, restart) = timed(|| Daemon::new(cfg.clone(), dir.path().join("edgefwd.toml")));
    let mut restarted = restarted.unwrap();
    let (_, up) = timed(|| restarted.set_link(0, LinkState::Up));
    println!("restart with that state: read and checked in {restart:.2?}, FIB live {up:.2?} later");
    drop(restarted);

    let mut adds = Vec::new();
    let mut removes = Vec::new();
    for i in 0..20 {
        let dest = format!("198.18.{i}.0/24");
        let add = Command::RouteAdd {
            routes: vec![RouteSpec {
                interface: "Port2".into(),
                destination: dest.clone(),
                next_hop: Some("10.0.2.1".into()),
                metric: Some(5),
            }],
        };
        let (r, t) = timed(|| d.handle(add, &NoWorkers));
        r.unwrap();
        adds.push(t);
        let remove = Command::RouteRemove {
            interface: "Port2".into(),
            destination: dest,
            next_hop: None,
        };
        let (r, t) = timed(|| d.handle(remove, &NoWorkers));
        r.unwrap();
        removes.push(t);
    }
    println!(
        "one route change at full-table size, visible to the dataplane: add {:.2?}, remove {:.2?} (median of 20)",
        median(adds),
        median(removes)
    );
    let (_, rebuild) = timed(|| d.rib().build_fib());
    println!("  for comparison, a full FIB rebuild: {rebuild:.2?}");
    every_page(&mut d);
    under_a_reader(&mut d);
    for (name, cmd) in [
        (
            "route lookup",
            Command::RouteLookup {
                addresses: vec!["8.8.8.8".parse().unwrap()],
            },
        ),
        (
            "route show --interface Port3 (a page: its 2 routes are in the last)",
            Command::RouteShow {
                interface: Some("Port3".into()),
                all: false,
                after: None,
            },
        ),
        (
            "route show --interface Port2 (a page of the whole table)",
            Command::RouteShow {
                interface: Some("Port2".into()),
                all: false,
                after: None,
            },
        ),
        ("port show", Command::PortShow {}),
        ("stats", Command::Stats {}),
    ] {
        let times: Vec<Duration> = (0..5)
            .map(|_| timed(|| d.handle(cmd.clone(), &NoWorkers)).1)
            .collect();
        println!("{name}: {:.2?} (median of 5)", median(times));
    }
}

/// `route show --interface Port2` of the whole table, page by page as the
/// CLI asks for it: the slowest page is how long it holds the daemon.
fn every_page(d: &mut Daemon) {
    let (mut pages, mut routes, mut slowest) = (0, 0, Duration::ZERO);
    let mut after = None;
    let started = Instant::now();
    loop {
        let cmd = Command::RouteShow {
            interface: Some("Port2".into()),
            all: false,
            after,
        };
        let (page, t) = timed(|| d.handle(cmd, &NoWorkers));
        let page = page.unwrap();
        pages += 1;
        routes += page["routes"].as_array().map_or(0, Vec::len);
        slowest = slowest.max(t);
        match page.get("next") {
            Some(n) => after = Some(n.as_str().unwrap().parse().unwrap()),
            None => break,
        }
    }
    println!(
        "route show --interface Port2, every page: {routes} routes in {pages} pages, {:.2?} in all, slowest page {slowest:.2?}",
        started.elapsed()
    );
}

/// Route changes while a reader thread does what a worker does: takes the
/// current snapshot's FIB, looks up a burst of 256 addresses, and takes
/// the snapshot again. The writer edits the FIB copy the reader last let
/// go of, so a publish waits at most a burst (or copies after the grace
/// period, counted).
fn under_a_reader(d: &mut Daemon) {
    let (events, _) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared::new(0, d.snapshot(), events, Arc::default()));
    d.attach(Arc::clone(&shared));
    let reader = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            let mut x = 0x9e37_79b9u32;
            let addrs: Vec<Ipv4Addr> = (0..256)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    Ipv4Addr::from(x)
                })
                .collect();
            let mut out = vec![None; addrs.len()];
            let mut lookups = 0u64;
            while !shared.stop.load(Ordering::Relaxed) {
                let fib = Arc::clone(&shared.snapshot.load().fib);
                fib.lookup_v4_batch(&addrs, &mut out);
                lookups += addrs.len() as u64;
            }
            lookups
        })
    };
    let mut times = Vec::new();
    let started = Instant::now();
    for i in 0..200 {
        let dest = format!("198.19.{i}.0/24");
        for cmd in [
            Command::RouteAdd {
                routes: vec![RouteSpec {
                    interface: "Port2".into(),
                    destination: dest.clone(),
                    next_hop: Some("10.0.2.1".into()),
                    metric: Some(5),
                }],
            },
            Command::RouteRemove {
                interface: "Port2".into(),
                destination: dest,
                next_hop: None,
            },
        ] {
            let (r, t) = timed(|| d.handle(cmd, &NoWorkers));
            r.unwrap();
            times.push(t);
        }
    }
    let elapsed = started.elapsed();
    shared.stop.store(true, Ordering::Relaxed);
    let lookups = reader.join().unwrap();
    let max = *times.iter().max().unwrap();
    println!(
        "with a reader taking the FIB every 256 lookups ({:.1} M lookups/s meanwhile): {} changes, median {:.2?}, max {max:.2?}, {} FIB copies made after the grace period",
        lookups as f64 / elapsed.as_secs_f64() / 1e6,
        times.len(),
        median(times),
        d.fib_copies()
    );
}
