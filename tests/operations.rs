//! Operations: what a service manager and a monitoring system see of a
//! running daemon (in this process, on ports bound to `none`).

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgefwd_control::config::Config;
use edgefwd_control::notify::Notifier;
use edgefwd_control::run::{Control, RunError};

/// Two ports bound to `none`, two workers, a control socket in `dir`.
fn config(dir: &std::path::Path, extra: &str) -> Config {
    Config::parse(&format!(
        r#"
[control]
socket = "{}"
{extra}

[dataplane]
workers = 2

[[port]]
name = "Port2"
bind = "none"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.15/24"]
gateway = "10.0.2.1"

[[port]]
name = "Port3"
bind = "none"
mac = "02:00:00:00:03:01"
addresses = ["192.168.20.10/24"]
"#,
        dir.join("control.sock").display()
    ))
    .unwrap()
}

/// Notifications received until `deadline`, each with when it came.
fn notifications(rx: &UnixDatagram, until: Instant) -> Vec<(Instant, String)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        rx.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match rx.recv(&mut buf) {
            Ok(n) => out.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            )),
            Err(_) => break,
        }
    }
    out
}

/// The watchdog is fed while both workers run and stops being fed as soon
/// as one is made to fail (the daemon then stops with the worker's error).
#[test]
fn watchdog_pings_stop_when_a_worker_fails() {
    let dir = common::temp_dir("watchdog");
    let sock = dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&sock).unwrap();
    let period = Duration::from_millis(600);
    let control = Control {
        notify: Some(Arc::new(
            Notifier::new(sock.to_str().unwrap(), Some(period)).unwrap(),
        )),
        ..Control::default()
    };
    let mut d = common::Daemon::start_with(config(dir.path(), ""), control);
    let before = notifications(&rx, Instant::now() + Duration::from_secs(3));
    assert!(
        before
            .first()
            .is_some_and(|(_, m)| m.starts_with("READY=1\n")),
        "{before:?}"
    );
    let pings = before
        .iter()
        .filter(|(_, m)| m.starts_with("WATCHDOG=1\n"))
        .count();
    // A ping every 300 ms for 3 s, less the start.
    assert!(pings >= 7, "{pings} pings in 3 s: {before:?}");

    d.fail_worker(1);
    let failed = Instant::now();
    let after = notifications(&rx, failed + Duration::from_secs(2));
    // A ping already on its way when the worker failed is allowed; none
    // after the next period.
    let late: Vec<_> = after
        .iter()
        .filter(|(t, m)| m.starts_with("WATCHDOG=1") && *t > failed + period / 2)
        .collect();
    assert!(late.is_empty(), "fed after the failure: {after:?}");
    assert!(
        after.iter().any(|(_, m)| m == "STOPPING=1\n"),
        "no STOPPING=1: {after:?}"
    );
    match d.ended_within(Duration::from_secs(5)) {
        Some(Err(RunError::Worker { worker: 1, .. })) => {}
        other => panic!(
            "expected worker 1's failure, got {:?}",
            other.map(|r| r.err())
        ),
    }
}
