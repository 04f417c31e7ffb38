//! Supervision: what a service manager sees of a running daemon (in this
//! process, on ports bound to `none`), and the kernel's link
//! notifications the daemon follows.

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::none_ports_config as config;
use edgefwd_control::notify::Notifier;
use edgefwd_control::run::{Control, RunError};

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

/// The kernel's link notifications reach the watcher from the namespace
/// it watches, and only from there: a veth flapped in a watched
/// namespace nudges it (and is counted), one in an unwatched namespace
/// does not.
#[test]
fn link_notifications_come_from_watched_namespaces_only() {
    if !common::need_root("link_notifications_come_from_watched_namespaces_only") {
        return;
    }
    let (watched, other) = (common::Netns::new("lev-w"), common::Netns::new("lev-o"));
    for ns in [&watched, &other] {
        ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    }
    let (mut events, nudged) = edgefwd_io::LinkEvents::start().unwrap();
    events
        .watch(Some(&edgefwd_io::binding::netns_path(watched.name())))
        .unwrap();
    // Watching it twice is one watch.
    events
        .watch(Some(&edgefwd_io::binding::netns_path(watched.name())))
        .unwrap();
    while nudged.try_recv().is_ok() {}

    other.ip(&["link", "set", "d0", "up"]);
    assert!(
        nudged.recv_timeout(Duration::from_millis(500)).is_err(),
        "nudged by an unwatched namespace"
    );
    watched.ip(&["link", "set", "d0", "up"]);
    nudged
        .recv_timeout(Duration::from_secs(5))
        .expect("no nudge for a link change in the watched namespace");
    let seen = events
        .counts()
        .events
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(seen >= 1, "{seen} link messages counted");
    watched.ip(&["link", "del", "d0"]);
    nudged
        .recv_timeout(Duration::from_secs(5))
        .expect("no nudge for a deleted link");
}
