//! Prometheus metrics of a running daemon: the exposition as promtool
//! reads it, Debian's Prometheus scraping it, and a Unix socket.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::appliance::Appliance;
use common::none_ports_config as config;

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
    let service = "\n[services]\nflows = 1024\n\n[[service]]\nname = \"web\"\nkind = \"load-balancer\"\naddress = \"10.0.2.100\"\nports = [{ protocol = \"tcp\", port = 80 }]\nbackends = [\"192.168.20.51\"]\n";
    let cfg = config(dir.path(), &format!("metrics = \"{addr}\"\n{service}"));
    let mut d = common::Daemon::start(cfg);
    wait_for_http(addr);
    // The workers copy their service counters out once they start.
    std::thread::sleep(Duration::from_millis(300));
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
    assert_eq!(
        sample(&body, "edgefwd_service_new_flows_total{service=\"web\"}"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "edgefwd_service_drops_total{service=\"web\",reason=\"service_no_backend\"}"
        ),
        Some(0.0)
    );
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
