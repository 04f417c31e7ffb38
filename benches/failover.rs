//! Failover time: from `ip link set DEV down` on the port holding the best
//! route to the FIB holding the next metric, with the daemon following the
//! kernel's link notifications, beside the same with the 100 ms poll.
//!
//! `sudo cargo bench --bench failover` (namespaces and TAPs: root).
//! `EDGEFWD_FLAPS=N` sets the flaps per variant (default 20).
//!
//! The link goes down through an `ip -batch` already running in the
//! host's namespace (so no process start is timed), and the FIB is read
//! with `route lookup` over the control socket, about every 100 µs.

#[path = "chart.rs"]
mod chart;
#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use common::appliance::{Appliance, Host};
use edgefwd_control::api::{self, Command};

const ROUTES: &str = "[[route]]\ninterface = \"Port3\"\ndestination = \"10.9.9.0/24\"\nnext_hop = \"10.0.3.2\"\nmetric = 100\n\n\
                      [[route]]\ninterface = \"Port4\"\ndestination = \"10.9.9.0/24\"\nnext_hop = \"10.0.4.2\"\nmetric = 200\n";

/// The port the FIB sends 10.9.9.9 through.
fn via(app: &Appliance) -> String {
    let addr: IpAddr = "10.9.9.9".parse().unwrap();
    let v = api::call(
        &app.socket,
        Command::RouteLookup {
            addresses: vec![addr],
        },
    )
    .expect("lookup");
    v[0]["routes"][0]["interface"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Time from writing `cmd` to `ip` until the FIB sends through `want`.
fn until(app: &Appliance, ip: &mut std::process::ChildStdin, cmd: &str, want: &str) -> Duration {
    let at = Instant::now();
    writeln!(ip, "{cmd}").unwrap();
    ip.flush().unwrap();
    loop {
        if via(app) == want {
            return at.elapsed();
        }
        assert!(
            at.elapsed() < Duration::from_secs(5),
            "never moved to {want}"
        );
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn flaps(app: &Appliance, h3: &Host, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut ip = Process::new("ip")
        .args(["-n", h3.ns.name(), "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("ip");
    let stdin = ip.stdin.as_mut().unwrap();
    assert_eq!(via(app), "Port3");
    let (mut down, mut up) = (Vec::new(), Vec::new());
    for _ in 0..n {
        down.push(until(
            app,
            stdin,
            &format!("link set {} down", h3.dev),
            "Port4",
        ));
        up.push(until(
            app,
            stdin,
            &format!("link set {} up", h3.dev),
            "Port3",
        ));
        // Let a poll period pass, so that flaps do not line up with it.
        std::thread::sleep(Duration::from_millis(37));
    }
    drop(ip.stdin.take());
    let _ = ip.wait();
    down.sort();
    up.sort();
    (down, up)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if !common::need_root("failover bench") {
        return;
    }
    let n: usize = common::env_or("EDGEFWD_FLAPS", 20);
    let ports = ["Port2", "Port3", "Port4"];
    let mut medians = Vec::new();
    let (mut downs, mut ups) = (Vec::new(), Vec::new());
    for (name, polling) in [("events", false), ("poll", true)] {
        let app = if polling {
            Appliance::start_polling("bfo-p", &ports, ROUTES)
        } else {
            Appliance::start("bfo-e", &ports, ROUTES)
        };
        let h3 = app.host("Port3");
        let (down, up) = flaps(&app, h3, n);
        println!(
            "failover/{name}: link down to next metric median {:.2} ms (max {:.2}), link up and back median {:.2} ms (max {:.2}), {n} flaps",
            ms(down[down.len() / 2]),
            ms(down[down.len() - 1]),
            ms(up[up.len() / 2]),
            ms(up[up.len() - 1]),
        );
        medians.push(down[down.len() / 2]);
        downs.push((name.to_owned(), ms(down[down.len() / 2])));
        ups.push((name.to_owned(), ms(up[up.len() / 2])));
        drop(app);
    }
    println!(
        "failover: events take {:.3}x the poll's median time (target: the events' median within 10 ms)",
        medians[0].as_secs_f64() / medians[1].as_secs_f64()
    );
    chart::write(
        "failover",
        &[
            chart::Figure {
                title: format!("link down to the next metric in the FIB, median of {n} flaps, ms"),
                baseline: "poll".into(),
                bars: downs,
            },
            chart::Figure {
                title: format!("link up and back to the best metric, median of {n} flaps, ms"),
                baseline: "poll".into(),
                bars: ups,
            },
        ],
    );
}
