//! The control plane at full-table size: the 901,899-route IPv4 table
//! loaded as one `route add --file` change, then single route changes and
//! control commands against that table, with the FIB rebuild each change
//! costs. Timed on the daemon's own command path (validation, state file
//! write with fsync, RIB and FIB rebuild, snapshot publish), in one process.
//!
//! `cargo bench --bench control`. Needs ../shared/data (or EDGEFWD_DATA).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use edgefwd_control::api::{Command, RouteSpec};
use edgefwd_control::config::Config;
use edgefwd_control::daemon::{Daemon, Workers};
use edgefwd_control::report::NatSessionReport;
use edgefwd_control::ribfile;
use edgefwd_dataplane::port::LinkState;
use edgefwd_dataplane::stats::Stats;

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
        "[control]\nstate = \"{}\"\n\n[[port]]\nname = \"Port2\"\nbind = \"none\"\nmac = \"02:00:00:00:02:01\"\naddresses = [\"10.0.2.15/24\"]\n",
        dir.path().join("state.json").display()
    );
    let cfg = Config::parse(&toml).unwrap();
    let mut d = Daemon::new(cfg.clone(), dir.path().join("edgefwd.toml")).unwrap();
    d.set_link(0, LinkState::Up);
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
    let (r, load) = timed(|| d.handle(Command::RouteAdd { routes }, &Idle));
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
        let (r, t) = timed(|| d.handle(add, &Idle));
        r.unwrap();
        adds.push(t);
        let remove = Command::RouteRemove {
            interface: "Port2".into(),
            destination: dest,
            next_hop: None,
        };
        let (r, t) = timed(|| d.handle(remove, &Idle));
        r.unwrap();
        removes.push(t);
    }
    println!(
        "one route change at full-table size, visible to the dataplane: add {:.2?}, remove {:.2?} (median of 20)",
        median(adds),
        median(removes)
    );
    let (_, rebuild) = timed(|| d.rib().build_fib());
    println!("  of which FIB rebuild alone: {rebuild:.2?}");
    for (name, cmd) in [
        (
            "route lookup",
            Command::RouteLookup {
                addresses: vec!["8.8.8.8".parse().unwrap()],
            },
        ),
        (
            "route show --interface Port2",
            Command::RouteShow {
                interface: Some("Port2".into()),
                all: false,
            },
        ),
        ("port show", Command::PortShow {}),
        ("stats", Command::Stats {}),
    ] {
        let times: Vec<Duration> = (0..5)
            .map(|_| timed(|| d.handle(cmd.clone(), &Idle)).1)
            .collect();
        println!("{name}: {:.2?} (median of 5)", median(times));
    }
}

/// Workers without traffic: commands are timed on the control plane alone.
struct Idle;

impl Workers for Idle {
    fn stats(&self) -> Stats {
        Stats::new(1)
    }

    fn nat_sessions(&self) -> Result<Vec<NatSessionReport>, String> {
        Ok(Vec::new())
    }
}
