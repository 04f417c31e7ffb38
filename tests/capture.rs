//! Watching a running daemon on TAPs: packet traces and live captures
//! (pcapng, read back by tshark).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::appliance::Appliance;

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
