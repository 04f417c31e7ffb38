//! Operations: what a service manager and a monitoring system see of a
//! running daemon (in this process, on ports bound to `none`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::appliance::Appliance;

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

/// A free TCP port on loopback (free when asked; tests use it at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0: the status line, headers and body.
fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_owned(), body.to_owned())
}

/// Waits up to 5 s for something to listen on `addr`.
fn wait_for_http(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of the sample `name{labels}` in an exposition (labels as
/// written, in order).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `/metrics` is the Prometheus text format as promtool (Prometheus's own
/// checker, a different parser and linter) accepts it, names every port
/// and drop reason, and says 404 elsewhere.
#[test]
fn metrics_pass_promtool_and_name_every_port_and_reason() {
    let dir = common::temp_dir("metrics");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = config(dir.path(), &format!("metrics = \"{addr}\""));
    let mut d = common::Daemon::start(cfg);
    wait_for_http(addr);
    let (head, body) = http_get(addr, "/metrics");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) is needed: .ci/run installs it");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for port in ["Port2", "Port3"] {
        let rx = format!("edgefwd_port_rx_packets_total{{port=\"{port}\"}}");
        assert_eq!(sample(&body, &rx), Some(0.0), "{rx} in\n{body}");
        let up = format!("edgefwd_port_up{{port=\"{port}\"}}");
        assert_eq!(sample(&body, &up), Some(0.0), "{up}");
        for r in edgefwd_core::stats::DropReason::ALL {
            let s = format!(
                "edgefwd_port_drops_total{{port=\"{port}\",reason=\"{}\"}}",
                r.name()
            );
            assert_eq!(sample(&body, &s), Some(0.0), "{s}");
        }
    }
    for w in ["0", "1"] {
        let busy = format!("edgefwd_worker_busy_seconds_total{{worker=\"{w}\"}}");
        assert!(sample(&body, &busy).is_some(), "{busy}");
    }
    // The connected routes of both ports and the default route.
    assert_eq!(
        sample(&body, "edgefwd_routes{kind=\"connected\"}"),
        Some(2.0)
    );
    assert_eq!(sample(&body, "edgefwd_routes{kind=\"default\"}"), Some(1.0));
    let started = sample(&body, "process_start_time_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now && started > now - 3600.0,
        "{started} vs {now}"
    );
    let (head, _) = http_get(addr, "/nothing");
    assert!(head.contains(" 404"), "{head}");
    d.stop().unwrap();
}

/// A program run for a test, killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prometheus's answer to an instant query: each series' labels and value.
fn prometheus_query(addr: SocketAddr, query: &str) -> Vec<(serde_json::Value, f64)> {
    let (_, body) = http_get(addr, &format!("/api/v1/query?query={query}"));
    let v: serde_json::Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(_) => return Vec::new(),
    };
    v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| {
                    let value = s["value"][1].as_str()?.parse().ok()?;
                    Some((s["metric"].clone(), value))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Debian's Prometheus scrapes the running daemon: after pings cross it,
/// the per-port counters Prometheus stored are the ones `stats --json`
/// gives, and they rose with the traffic.
#[test]
fn prometheus_scrapes_counters_that_match_stats() {
    if !common::need_root_and_ping("prometheus_scrapes_counters_that_match_stats") {
        return;
    }
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let app = Appliance::start_with_control(
        "prom",
        &["Port2", "Port3"],
        &format!("metrics = \"{metrics}\""),
    );
    let dir = common::temp_dir("prometheus");
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\n\
             scrape_configs:\n  - job_name: edgefwd\n    static_configs:\n      - targets: ['{metrics}']\n"
        ),
    )
    .unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's package) is needed: .ci/run installs it"),
    );
    wait_for_http(web);

    let (h2, h3) = (app.host("Port2"), app.host("Port3"));
    let (ok, out) = h2.ping(&["-c", "200", "-i", "0.005", "-W", "1", &h3.addr()]);
    assert!(ok, "{out}");

    // Prometheus stores what it scrapes once a second; the counters settle
    // once the pings are over.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats =
            edgefwd_control::api::call(&app.socket, edgefwd_control::api::Command::Stats {})
                .expect("stats");
        let scraped = |metric: &str, port: &str| {
            prometheus_query(web, metric)
                .into_iter()
                .find(|(m, _)| m["port"] == port && m["job"] == "edgefwd")
                .map(|(_, v)| v as u64)
        };
        let mut mismatches = Vec::new();
        for port in ["Port2", "Port3"] {
            for (metric, field) in [
                ("edgefwd_port_rx_packets_total", "rx"),
                ("edgefwd_port_tx_packets_total", "tx"),
                ("edgefwd_port_tx_errors_total", "tx_errors"),
                // Every reason's counter, summed by Prometheus.
                ("sum%20by%20(port,job)(edgefwd_port_drops_total)", "drops"),
            ] {
                let want = stats["ports"][port][field].as_u64();
                let got = scraped(metric, port);
                if want.is_none() || got != want {
                    mismatches.push(format!(
                        "{metric}{{port={port}}}: {got:?} vs stats {want:?}"
                    ));
                }
            }
        }
        if mismatches.is_empty() {
            let rx = stats["ports"]["Port2"]["rx"].as_u64().unwrap();
            let tx = stats["ports"]["Port3"]["tx"].as_u64().unwrap();
            assert!(rx >= 200 && tx >= 200, "{stats}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never matched stats: {mismatches:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
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

/// `trace start` / `trace show` on a running daemon: pings across the
/// appliance are traced to the port they left on, and one with TTL 1 to
/// its drop at ip4-input.
#[test]
fn trace_on_taps_names_the_way_out_and_the_drop() {
    use edgefwd_control::api::{call, Command as Api};
    if !common::need_root_and_ping("trace_on_taps_names_the_way_out_and_the_drop") {
        return;
    }
    let app = Appliance::start("trc", &["Port2", "Port3"], "");
    let (h2, h3) = (app.host("Port2"), app.host("Port3"));
    call(
        &app.socket,
        Api::TraceStart {
            port: Some("Port2".into()),
            count: 20,
            filter: Some(format!("icmp and host {}", h3.addr())),
        },
    )
    .unwrap();
    let (ok, out) = h2.ping(&["-c", "3", "-i", "0.05", &h3.addr()]);
    assert!(ok, "{out}");
    let _ = h2.ping(&["-c", "1", "-t", "1", "-W", "1", &h3.addr()]);
    let v = call(&app.socket, Api::TraceShow {}).unwrap();
    let packets = v["packets"].as_array().unwrap();
    let sent = packets
        .iter()
        .filter(|p| p["end"]["kind"] == "sent" && p["end"]["port"] == "Port3")
        .count();
    assert_eq!(sent, 3, "{}", edgefwd_control::packet_trace::to_text(&v));
    assert!(
        packets.iter().all(|p| p["port"] == "Port2"),
        "only Port2's packets: {v}"
    );
    let expired: Vec<_> = packets
        .iter()
        .filter(|p| p["end"]["kind"] == "dropped")
        .collect();
    assert_eq!(expired.len(), 1, "{v}");
    assert_eq!(expired[0]["end"]["reason"], "ttl_expired");
    assert_eq!(expired[0]["end"]["stage"], "ip4-input");
    // A bad filter is refused by name, the trace unchanged.
    let e = call(
        &app.socket,
        Api::TraceStart {
            port: None,
            count: 5,
            filter: Some("vlan 7".into()),
        },
    )
    .unwrap_err();
    assert!(e.starts_with("--match: filter: unknown term"), "{e}");
    assert_eq!(call(&app.socket, Api::TraceShow {}).unwrap(), v);
}

/// The fields tshark (Wireshark's parser, not ours) reads from a pcapng.
fn tshark(file: &std::path::Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-r", file.to_str().unwrap(), "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("tshark (Debian's tshark package) is needed: .ci/run installs it");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// A capture streaming into `file` on a thread, as `edgefwd capture -w`
/// does (the same client call).
fn capture(
    app: &Appliance,
    drops: bool,
    count: u64,
    file: &std::path::Path,
) -> std::thread::JoinHandle<Result<serde_json::Value, String>> {
    let (socket, file) = (app.socket.clone(), file.to_owned());
    std::thread::spawn(move || {
        let mut f = std::fs::File::create(&file).unwrap();
        let cmd = edgefwd_control::api::Command::Capture {
            port: "Port2".into(),
            direction: None,
            drops,
            count: Some(count),
            snaplen: None,
        };
        edgefwd_control::api::stream(&socket, cmd, &mut f)
    })
}

/// Waits up to `secs` for a capture to end; what it answered.
fn ended(
    c: std::thread::JoinHandle<Result<serde_json::Value, String>>,
    secs: u64,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !c.is_finished() {
        assert!(
            Instant::now() < deadline,
            "capture did not end within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    c.join().unwrap().expect("capture refused")
}

/// `edgefwd capture` on a TAP port while pinging: 100 frames, read back by
/// tshark as pings both ways; with `--drops`, a TTL-1 ping is there with
/// `ttl_expired at ip4-input` in its comment, and forwarded traffic is not.
#[test]
fn capture_on_a_tap_is_read_by_tshark_with_drop_reasons() {
    if !common::need_root_and_ping("capture_on_a_tap_is_read_by_tshark_with_drop_reasons") {
        return;
    }
    let app = Appliance::start("cap", &["Port2", "Port3"], "");
    let (h2, h3) = (app.host("Port2"), app.host("Port3"));
    let dir = common::temp_dir("capture");
    let file = dir.path().join("port2.pcapng");
    let c = capture(&app, false, 100, &file);
    // The capture is armed once its answer came; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    let (ok, out) = h2.ping(&["-c", "60", "-i", "0.01", &h3.addr()]);
    assert!(ok, "{out}");
    ended(c, 10);
    let rows = tshark(
        &file,
        &["frame.interface_name", "ip.src", "ip.dst", "icmp.type"],
    );
    assert_eq!(rows.len(), 100, "{rows:?}");
    let (h2a, h3a) = (h2.addr(), h3.addr());
    let requests = rows
        .iter()
        .filter(|r| r[1] == h2a && r[2] == h3a && r[3] == "8")
        .count();
    let replies = rows
        .iter()
        .filter(|r| r[1] == h3a && r[2] == h2a && r[3] == "0")
        .count();
    assert!(
        requests >= 45 && replies >= 45,
        "{requests} requests, {replies} replies"
    );
    assert!(rows.iter().all(|r| r[0] == "Port2"), "{rows:?}");

    // Only the drop this test makes: no IPv6 router solicitations.
    h2.ns
        .exec(5, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    let drops = dir.path().join("drops.pcapng");
    let c = capture(&app, true, 1, &drops);
    std::thread::sleep(Duration::from_millis(300));
    let (ok, _) = h2.ping(&["-c", "3", "-i", "0.05", &h3.addr()]);
    assert!(ok);
    let _ = h2.ping(&["-c", "1", "-t", "1", "-W", "1", &h3.addr()]);
    ended(c, 10);
    let rows = tshark(&drops, &["ip.ttl", "ip.dst", "frame.comment"]);
    assert_eq!(
        rows,
        [vec![
            "1".to_owned(),
            h3a.clone(),
            "ttl_expired at ip4-input".to_owned()
        ]],
        "only the dropped ping, with its reason"
    );
}

/// `[control] metrics` on a Unix socket path: the same exposition over it.
#[test]
fn metrics_are_served_on_a_unix_socket_too() {
    let dir = common::temp_dir("metrics-unix");
    let path = dir.path().join("metrics.sock");
    let cfg = config(dir.path(), &format!("metrics = \"{}\"", path.display()));
    let mut d = common::Daemon::start(cfg);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = loop {
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "{}: {e}", path.display());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    assert!(
        text.contains("\nedgefwd_port_rx_packets_total{port=\"Port3\"} 0\n"),
        "{text}"
    );
    d.stop().unwrap();
}
