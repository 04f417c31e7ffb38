//! The `edgefwd` binary as an operator uses it: exit codes, messages that
//! name what is wrong, and the JSON shapes of ARCHITECTURE.md §5.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn edgefwd(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgefwd"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn demo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/appliance.toml")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("edgefwd-cli-")
        .tempdir()
        .unwrap()
}

#[test]
fn replay_without_arguments_runs_the_demo() {
    let dir = tmp();
    let out = edgefwd(&["replay"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(
        report.contains("in 14 = forwarded 4 + local 5 + dropped 5"),
        "{report}"
    );
    assert!(report.contains("(lost on metric)"), "{report}");
    for p in ["Port2", "Port3", "Port4"] {
        assert!(dir
            .path()
            .join("replay-out")
            .join(format!("{p}.pcap"))
            .is_file());
    }
}

#[test]
fn replay_json_shape() {
    let dir = tmp();
    let out = edgefwd(&["replay", "--json", "--out", "o"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["packets"];
    for k in ["in", "forwarded", "local", "dropped", "generated"] {
        assert!(p[k].is_u64(), "packets.{k}");
    }
    assert_eq!(
        p["in"].as_u64(),
        Some(
            p["forwarded"].as_u64().unwrap()
                + p["local"].as_u64().unwrap()
                + p["dropped"].as_u64().unwrap()
        )
    );
    assert!(v["drops"]["ttl_expired"].is_u64());
    assert!(v["ports"]["Port2"]["rx"].is_u64() && v["ports"]["Port2"]["tx"].is_u64());
    assert!(dir.path().join("o/Port2.pcap").is_file());
}

#[test]
fn check_accepts_the_demo_and_refuses_naming_field_and_line() {
    let dir = tmp();
    let out = edgefwd(
        &["check", "--config", demo_config().to_str().unwrap()],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("OK (3 ports, 2 routes, 1 neighbors)"));

    let bad = std::fs::read_to_string(demo_config()).unwrap().replacen(
        "next_hop = \"192.168.20.1\"",
        "next_hop = \"192.168.99.1\"",
        1,
    );
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, bad).unwrap();
    let out = edgefwd(&["check", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.toml:35: route[0].next_hop: 192.168.99.1 is not on a subnet of Port3"),
        "{err}"
    );
}

#[test]
fn route_lookup_json() {
    let dir = tmp();
    let cfg = demo_config();
    let out = edgefwd(
        &[
            "route",
            "lookup",
            "192.168.21.7",
            "192.168.20.50",
            "--config",
            cfg.to_str().unwrap(),
            "--json",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "one object per address");
    assert_eq!(lines[0]["address"], "192.168.21.7");
    let r = &lines[0]["routes"][0];
    assert_eq!(
        (
            r["destination"].as_str(),
            r["interface"].as_str(),
            r["next_hop"].as_str(),
            r["metric"].as_u64()
        ),
        (
            Some("192.168.21.0/24"),
            Some("Port3"),
            Some("192.168.20.1"),
            Some(100)
        )
    );
    assert!(
        lines[1]["routes"][0]["next_hop"].is_null(),
        "directly connected"
    );
}

#[test]
fn route_lookup_unreachable_is_empty() {
    let dir = tmp();
    let cfg = demo_config();
    let out = edgefwd(
        &[
            "route",
            "lookup",
            "2001:db8:ffff::1",
            "--config",
            cfg.to_str().unwrap(),
            "--json",
        ],
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["routes"].as_array().map(Vec::len), Some(0));
}

#[test]
fn bad_replay_inputs_are_refused_by_name() {
    let dir = tmp();
    let out = edgefwd(&["replay", "--in", "Port9=x.pcap"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown port \"Port9\""),
        "{}",
        text(&out.stderr)
    );

    let out = edgefwd(&["replay", "--in", "Port2=missing.pcap"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing.pcap: cannot open"),
        "{}",
        text(&out.stderr)
    );

    let out = edgefwd(&["replay", "--in", "Port2"], dir.path());
    assert!(
        text(&out.stderr).contains("expected PORT=PCAP"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !dir.path().join("replay-out").exists(),
        "nothing written for a refused command"
    );
}

#[test]
fn commands_without_a_daemon_name_its_socket() {
    let dir = tmp();
    let sock = dir.path().join("none.sock");
    let sock = sock.to_str().unwrap();
    for args in [
        &["route", "lookup", "1.2.3.4", "--socket", sock][..],
        &["stats", "--socket", sock],
        &["route", "show", "--socket", sock],
    ] {
        let out = edgefwd(args, dir.path());
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.contains(&format!("daemon at {sock}")), "{err}");
    }
}
