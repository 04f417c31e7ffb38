//! The daemon's control socket through the `edgefwd` binary: route add,
//! show, remove, refusals that change nothing, port show, stats, reload,
//! and persistence across a kill -9 in the middle of a stream of changes.
//! The ports are bound to `none`, so no device (and no root) is needed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_edgefwd");

fn config(dir: &Path, state: bool) -> PathBuf {
    let mut toml = format!(
        "[control]\nsocket = \"{}\"\n",
        dir.join("control.sock").display()
    );
    if state {
        toml += &format!("state = \"{}\"\n", dir.join("state/state.json").display());
    }
    toml += r#"
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

[[route]]
interface = "Port3"
destination = "192.168.21.0/24"
next_hop = "192.168.20.1"
metric = 100
"#;
    let path = dir.join("edgefwd.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// The daemon, killed on drop.
struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, cfg: &Path) -> Daemon {
        Daemon::start_with(dir, cfg, &[])
    }

    /// The daemon with `env` set.
    fn start_with(dir: &Path, cfg: &Path, env: &[(&str, &str)]) -> Daemon {
        let child = Command::new(BIN)
            .args(["run", "--config", cfg.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Daemon {
            child,
            dir: dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !d.ctl(&["stats"]).status.success() {
            assert!(Instant::now() < deadline, "daemon never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn ctl(&self, args: &[&str]) -> Output {
        let sock = self.dir.join("control.sock");
        Command::new("timeout")
            .arg("30")
            .arg(BIN)
            .args(args)
            .args(["--socket", sock.to_str().unwrap()])
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn refused(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert_eq!(out.status.code(), Some(1), "{args:?} was accepted");
        String::from_utf8(out.stderr).unwrap()
    }

    /// `route add` of the `i`th test route (10.100.0.0/24 onwards, via
    /// Port3's router): its destination and what the command said.
    fn add_nth_route(&self, i: u32) -> (String, Output) {
        let dest = format!("10.{}.{}.0/24", 100 + i / 256, i % 256);
        let out = self.ctl(&[
            "route",
            "add",
            "--interface",
            "Port3",
            "--destination",
            &dest,
            "--next-hop",
            "192.168.20.1",
        ]);
        (dest, out)
    }

    /// The custom routes' destinations, in `route show` order.
    fn destinations(&self) -> Vec<String> {
        self.routes(false)
            .iter()
            .map(|r| dest(r).to_owned())
            .collect()
    }

    fn routes(&self, all: bool) -> Vec<serde_json::Value> {
        let mut args = vec!["route", "show", "--json"];
        if all {
            args.push("--all");
        }
        let v: serde_json::Value = serde_json::from_str(&self.ok(&args)).unwrap();
        v["routes"].as_array().unwrap().clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("edgefwd-daemon-")
        .tempdir()
        .unwrap()
}

fn dest(r: &serde_json::Value) -> &str {
    r["destination"].as_str().unwrap()
}

#[test]
fn routes_are_added_shown_and_removed_and_refusals_change_nothing() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &config(dir.path(), true));
    // The config's custom route is there.
    let r = d.routes(false);
    assert_eq!(r.len(), 1);
    assert_eq!(dest(&r[0]), "192.168.21.0/24");
    assert_eq!(r[0]["kind"], "static");

    d.ok(&[
        "route",
        "add",
        "--interface",
        "Port3",
        "--destination",
        "192.168.22.0/24",
        "--next-hop",
        "192.168.20.1",
        "--metric",
        "100",
    ]);
    let r = d.routes(false);
    assert_eq!(r.len(), 2);
    assert!(r
        .iter()
        .any(|r| dest(r) == "192.168.22.0/24" && r["metric"] == 100));
    // --all adds the connected and default routes; --interface filters.
    let all = d.routes(true);
    assert!(all
        .iter()
        .any(|r| r["kind"] == "connected" && dest(r) == "10.0.2.0/24"));
    assert!(all.iter().any(|r| r["kind"] == "default"));
    let v: serde_json::Value =
        serde_json::from_str(&d.ok(&["route", "show", "--interface", "Port2", "--all", "--json"]))
            .unwrap();
    assert!(v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["interface"] == "Port2"));

    // Each refusal names what is wrong, and nothing changes.
    let before = d.routes(true);
    for (args, expect) in [
        (
            &[
                "route",
                "add",
                "--interface",
                "Port9",
                "--destination",
                "10.9.0.0/16",
            ][..],
            "--interface: unknown interface \"Port9\"",
        ),
        (
            &[
                "route",
                "add",
                "--interface",
                "Port3",
                "--destination",
                "10.9.0.1/16",
            ],
            "--destination: 10.9.0.1/16 has host bits set",
        ),
        (
            &[
                "route",
                "add",
                "--interface",
                "Port3",
                "--destination",
                "10.9.0.0/16",
                "--next-hop",
                "10.0.2.1",
            ],
            "--next-hop: 10.0.2.1 is not on a subnet of Port3",
        ),
        (
            &[
                "route",
                "add",
                "--interface",
                "Port3",
                "--destination",
                "10.9.0.0/16",
                "--metric",
                "70000",
            ],
            "--metric: 70000 is out of range",
        ),
        (
            &[
                "route",
                "add",
                "--interface",
                "Port3",
                "--destination",
                "10.9.0.0/16",
                "--metric",
                "-1",
            ],
            "--metric: -1 is out of range",
        ),
        (
            &[
                "route",
                "add",
                "--interface",
                "Port3",
                "--destination",
                "192.168.22.0/24",
                "--next-hop",
                "192.168.20.1",
            ],
            "exists already",
        ),
        (
            &[
                "route",
                "remove",
                "--interface",
                "Port3",
                "--destination",
                "10.77.0.0/16",
            ],
            "no custom route to 10.77.0.0/16 on Port3",
        ),
        (
            &[
                "route",
                "remove",
                "--interface",
                "Port3",
                "--destination",
                "192.168.22.0/24",
                "--next-hop",
                "192.168.20.2",
            ],
            "no custom route to 192.168.22.0/24 via 192.168.20.2",
        ),
        (&["port", "bind", "Port9", "none"], "unknown port \"Port9\""),
        (&["port", "bind", "Port3", "tap"], "\"tap\": expected tap:NAME[@NETNS]"),
        (&["port", "bind", "Port3", "tap:p3@efw-no-such-netns"], "port Port3 (bind tap:p3@efw-no-such-netns): network namespace /run/netns/efw-no-such-netns"),
    ] {
        let err = d.refused(args);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    // No internal switch here: no NAT, no sessions, but an answer from the
    // workers all the same.
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["nat", "sessions", "--json"])).unwrap();
    assert_eq!(v["sessions"], serde_json::json!([]));

    assert_eq!(
        d.routes(true),
        before,
        "a refused command changed the routes"
    );

    // A file of routes is one change: one bad line refuses all of it.
    let list = dir.path().join("routes.txt");
    std::fs::write(
        &list,
        "10.50.0.0/16 192.168.20.1\n10.51.0.0/16 192.168.20.2\n10.52.0.0/16 10.0.2.1\n",
    )
    .unwrap();
    let err = d.refused(&[
        "route",
        "add",
        "--interface",
        "Port3",
        "--file",
        list.to_str().unwrap(),
    ]);
    assert!(
        err.contains("route 3: --next-hop: 10.0.2.1 is not on a subnet of Port3"),
        "{err}"
    );
    assert_eq!(d.routes(true), before);
    std::fs::write(
        &list,
        "10.50.0.0/16 192.168.20.1\n10.51.0.0/16 192.168.20.2\n",
    )
    .unwrap();
    assert!(d
        .ok(&[
            "route",
            "add",
            "--interface",
            "Port3",
            "--file",
            list.to_str().unwrap(),
            "--metric",
            "7"
        ])
        .contains("added 2"));

    // Remove by destination (every next hop) and by next hop.
    assert!(d
        .ok(&[
            "route",
            "remove",
            "--interface",
            "Port3",
            "--destination",
            "10.50.0.0/16"
        ])
        .contains("removed 1"));
    d.ok(&[
        "route",
        "remove",
        "--interface",
        "Port3",
        "--destination",
        "192.168.21.0/24",
        "--next-hop",
        "192.168.20.1",
    ]);
    let left = d.destinations();
    assert_eq!(left, ["10.51.0.0/16", "192.168.22.0/24"]);

    // Lookups: the ports are bound to none (down), so nothing is reachable.
    let v: serde_json::Value =
        serde_json::from_str(&d.ok(&["route", "lookup", "10.51.1.1", "--json"])).unwrap();
    assert_eq!(v["routes"], serde_json::json!([]));
    let ports = d.ok(&["port", "show", "--json"]);
    let ports: serde_json::Value = serde_json::from_str(&ports).unwrap();
    assert_eq!(ports["ports"][0]["bind"], "none");
    assert_eq!(ports["ports"][0]["link"], "admin-down");
    let stats: serde_json::Value = serde_json::from_str(&d.ok(&["stats", "--json"])).unwrap();
    assert_eq!(stats["packets"]["in"], 0);
    assert!(stats["ports"]["Port3"].is_object());
}

#[test]
fn changes_survive_a_restart_and_reload_applies_config_routes() {
    let dir = tmp();
    let cfg = config(dir.path(), true);
    {
        let d = Daemon::start(dir.path(), &cfg);
        d.ok(&[
            "route",
            "add",
            "--interface",
            "Port3",
            "--destination",
            "10.60.0.0/16",
            "--next-hop",
            "192.168.20.1",
        ]);
        d.ok(&[
            "route",
            "remove",
            "--interface",
            "Port3",
            "--destination",
            "192.168.21.0/24",
        ]);
    }
    let d = Daemon::start(dir.path(), &cfg);
    let left = d.destinations();
    assert_eq!(left, ["10.60.0.0/16"], "state restored over the config");

    // Reload: a new config route appears; the run-time changes stay.
    let text = std::fs::read_to_string(&cfg).unwrap()
        + "\n[[route]]\ninterface = \"Port2\"\ndestination = \"172.16.0.0/12\"\nnext_hop = \"10.0.2.1\"\n";
    std::fs::write(&cfg, text).unwrap();
    d.ok(&["reload"]);
    let left = d.destinations();
    assert_eq!(left, ["10.60.0.0/16", "172.16.0.0/12"]);
    // A config that changes a port is refused, and nothing changes.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("mtu", "x")
        .replace("192.168.20.10/24", "192.168.20.11/24");
    std::fs::write(&cfg, text).unwrap();
    let err = d.refused(&["reload"]);
    assert!(err.contains("need a restart"), "{err}");
    assert_eq!(d.routes(false).len(), 2);
}

/// kill -9 landing deliberately in the middle of a change: 150 single
/// routes are acknowledged, then a 5,000-route change is sent and the
/// daemon is killed the moment its journal starts to grow (the change is
/// being written, not yet acknowledged). After a restart every acknowledged
/// route is there, the state files are whole, and the change in flight is
/// there whole or not at all.
#[test]
fn kill_9_during_changes_loses_no_acknowledged_route() {
    let dir = tmp();
    let cfg = config(dir.path(), true);
    let mut d = Daemon::start(dir.path(), &cfg);
    let mut acked = Vec::new();
    for i in 0..150u32 {
        let (dest, out) = d.add_nth_route(i);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        acked.push(dest);
    }
    let big: Vec<String> = (0..5000u32)
        .map(|i| format!("172.{}.{}.0/24", 16 + i / 256, i % 256))
        .collect();
    let file = dir.path().join("big.routes");
    let text: String = big.iter().map(|p| format!("{p} 192.168.20.1\n")).collect();
    std::fs::write(&file, text).unwrap();
    let journal = dir.path().join("state/state.json.journal");
    let before = std::fs::metadata(&journal).unwrap().len();
    let sock = dir.path().join("control.sock");
    let client = {
        let file = file.clone();
        std::thread::spawn(move || {
            Command::new("timeout")
                .arg("30")
                .arg(BIN)
                .args(["route", "add", "--interface", "Port3", "--file"])
                .arg(&file)
                .arg("--socket")
                .arg(&sock)
                .output()
                .unwrap()
        })
    };
    // Kill the moment the change starts reaching the journal.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&journal).unwrap().len() == before {
        assert!(
            Instant::now() < deadline,
            "the change never reached the journal"
        );
        std::hint::spin_loop();
    }
    d.child.kill().unwrap();
    let _ = d.child.wait();
    let big_acked = client.join().unwrap().status.success();
    // The snapshot, if one was written, is whole; the journal's complete
    // lines all parse (only a last, unacknowledged line may be torn).
    if let Ok(state) = std::fs::read_to_string(dir.path().join("state/state.json")) {
        let _: serde_json::Value = serde_json::from_str(&state).expect("snapshot is whole JSON");
    }
    let text = std::fs::read_to_string(&journal).unwrap();
    let whole = text.rfind('\n').map_or("", |i| &text[..i]);
    for line in whole.lines() {
        let _: serde_json::Value = serde_json::from_str(line).expect("journal line is whole JSON");
    }
    assert!(
        whole.lines().count() >= 150,
        "the acknowledged changes are in the journal"
    );
    drop(d);
    let d = Daemon::start(dir.path(), &cfg);
    let have = d.destinations();
    for a in &acked {
        assert!(have.contains(a), "acknowledged {a} lost");
    }
    let present = big.iter().filter(|p| have.contains(p)).count();
    eprintln!(
        "the change in flight: {present} of {} routes after the restart (acknowledged: {big_acked})",
        big.len()
    );
    assert!(
        present == big.len() || (present == 0 && !big_acked),
        "the change in flight came back in part: {present} of {}",
        big.len()
    );
}

/// Sends `sig` to the daemon.
fn signal(d: &Daemon, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &d.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig}");
}

/// Waits up to `limit` for the daemon to exit; its status, or None.
fn exits_within(d: &mut Daemon, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = d.child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A client that connects, waits, and sends `stats` just after SIGTERM
/// arrives cannot hold the daemon's stop: it exits within 5 s.
#[test]
fn sigterm_stops_the_daemon_whatever_a_client_does() {
    use std::io::Write;
    let dir = tmp();
    let cfg = config(dir.path(), false);
    let mut d = Daemon::start(dir.path(), &cfg);
    let mut client =
        std::os::unix::net::UnixStream::connect(dir.path().join("control.sock")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    signal(&d, "-TERM");
    // The control loop notices the flag within its probe period; the
    // request lands while the daemon is stopping.
    std::thread::sleep(Duration::from_millis(150));
    let _ = client.write_all(b"{\"version\":1,\"command\":\"stats\"}\n");
    let status = exits_within(&mut d, Duration::from_secs(5));
    assert!(status.is_some(), "the daemon did not stop within 5 s");
}

/// While one client sits connected saying nothing and another trickles its
/// request a byte at a time, `stats` is answered at once.
#[test]
fn an_idle_or_trickling_client_holds_up_no_other() {
    use std::io::Write;
    let dir = tmp();
    let cfg = config(dir.path(), false);
    let d = Daemon::start(dir.path(), &cfg);
    let sock = dir.path().join("control.sock");
    let _idle = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let trickle_sock = sock.clone();
    let trickler = std::thread::spawn(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&trickle_sock).unwrap();
        for b in b"{\"version\":1,\"command\":\"stats\"}\n" {
            let _ = s.write_all(&[*b]);
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
        answer
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut times = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        let stats = edgefwd_control::api::call(&sock, edgefwd_control::api::Command::Stats {});
        times.push(t.elapsed());
        assert!(stats.is_ok(), "{stats:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    times.sort();
    eprintln!("stats answered in {times:?}");
    assert!(
        times[4] <= Duration::from_millis(100) && times[8] <= Duration::from_secs(1),
        "answers took {times:?}"
    );
    let answer = trickler.join().unwrap();
    assert!(
        answer.contains("\"ok\":true"),
        "the trickled request is served too: {answer}"
    );
    drop(d);
}

/// A request over the size limit is refused with the limit named, and the
/// daemon goes on answering.
#[test]
fn an_oversize_request_is_refused_by_name() {
    use std::io::{Read, Write};
    let dir = tmp();
    let cfg = config(dir.path(), false);
    let d = Daemon::start(dir.path(), &cfg);
    let sock = dir.path().join("control.sock");
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let chunk = vec![b' '; 1 << 20];
    let mut sent = 0;
    while sent <= edgefwd_control::api::MAX_REQUEST {
        if s.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.contains("request longer than"), "{answer}");
    assert!(d.ctl(&["stats"]).status.success());
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// True when running as root; else says so loudly, and fails under CI.
fn need_root(test: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: needs root (mount) and CI is set"
        );
        eprintln!("!!!!!!!! {test}: NOT RUN: needs root (mount) !!!!!!!!");
    }
    root
}

/// The state on a tmpfs filled to the brim: changes are refused with the
/// error and nothing is half-written; once space returns, changes are
/// taken again, and after kill -9 the daemon starts with every
/// acknowledged change and none of the refused ones.
#[test]
fn a_full_disk_refuses_changes_and_loses_nothing() {
    use std::io::Write;
    const T: &str = "a_full_disk_refuses_changes_and_loses_nothing";
    if !need_root(T) {
        return;
    }
    let dir = tmp();
    let fs = Tmpfs::mount(&dir.path().join("state"), "256k");
    let cfg = config(dir.path(), true);
    let mut d = Daemon::start(dir.path(), &cfg);
    let add = |d: &Daemon, i: u32| d.add_nth_route(i);
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for i in 0..5 {
        let (dest, out) = add(&d, i);
        assert!(out.status.success());
        acked.push(dest);
    }
    // Fill the disk.
    let filler = fs.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.write_all(&[0]);
    drop(f);
    // Changes go on until the journal's last page is full, then are refused.
    let mut i = 5;
    while refused.len() < 3 {
        let (dest, out) = add(&d, i);
        i += 1;
        assert!(i < 400, "a full disk never refused a change");
        if out.status.success() {
            acked.push(dest);
        } else {
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(err.contains("No space left"), "{err}");
            assert!(
                !d.destinations().contains(&dest),
                "a refused change applied"
            );
            refused.push(dest);
        }
    }
    // Space returns: changes are taken again.
    std::fs::remove_file(&filler).unwrap();
    for _ in 0..3 {
        let (dest, out) = add(&d, i);
        i += 1;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        acked.push(dest);
    }
    d.child.kill().unwrap();
    let _ = d.child.wait();
    drop(d);
    let d = Daemon::start(dir.path(), &cfg);
    let have = d.destinations();
    for a in &acked {
        assert!(have.contains(a), "acknowledged {a} lost");
    }
    for r in &refused {
        assert!(!have.contains(r), "refused {r} came back");
    }
    drop(d);
    drop(fs);
}

/// systemd's notify protocol through the binary: `READY=1` with a status
/// line (the ports are bound to `none`, so down), then `STOPPING=1` on
/// SIGTERM.
#[test]
fn the_service_manager_hears_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tmp();
    let cfg = config(dir.path(), false);
    let sock = dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let d = Daemon::start_with(
        dir.path(),
        &cfg,
        &[("NOTIFY_SOCKET", sock.to_str().unwrap())],
    );
    let mut buf = [0u8; 512];
    let n = rx.recv(&mut buf).expect("no notification within 10 s");
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("READY=1\n"), "{first}");
    assert!(
        first.contains("STATUS=forwarding: 0 of 2 ports up"),
        "{first}"
    );
    signal(&d, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no STOPPING=1");
        let n = rx.recv(&mut buf).expect("no STOPPING=1 within 10 s");
        if &buf[..n] == b"STOPPING=1\n" {
            break;
        }
    }
}

/// `capture` and `trace` refuse bad requests by name and change nothing;
/// `trace show` says when nothing was traced.
#[test]
fn capture_and_trace_refusals_name_the_flag() {
    let dir = tmp();
    let cfg = config(dir.path(), false);
    let d = Daemon::start(dir.path(), &cfg);
    let file = dir.path().join("c.pcapng");
    let f = file.to_str().unwrap();
    let e = d.refused(&["capture", "Port9", "-w", f]);
    assert!(e.contains("unknown port \"Port9\""), "{e}");
    let e = d.refused(&["capture", "Port2", "--direction", "sideways", "-w", f]);
    assert!(e.contains("--direction: \"sideways\""), "{e}");
    let e = d.refused(&["capture", "Port2", "--snaplen", "10", "-w", f]);
    assert!(e.contains("--snaplen: 10"), "{e}");
    let e = d.refused(&["trace", "start", "--match", "vlan 7"]);
    assert!(e.contains("--match: filter: unknown term \"vlan\""), "{e}");
    let e = d.refused(&["trace", "start", "--port", "Port9"]);
    assert!(e.contains("--port: unknown"), "{e}");
    let e = d.refused(&["trace", "start", "--count", "0"]);
    assert!(e.contains("--count: 0"), "{e}");
    assert_eq!(d.ok(&["trace", "show"]), "no packets traced\n");
    let e = d.refused(&[
        "service",
        "add",
        "x",
        "--kind",
        "cluster-ip",
        "--address",
        "10.96.0.1",
        "--port",
        "tcp:1",
    ]);
    assert!(e.contains("add a [services] table"), "{e}");
    assert_eq!(
        d.ok(&["trace", "show", "--json"]).trim(),
        "{\"packets\":[]}"
    );
    d.ok(&[
        "trace",
        "start",
        "--count",
        "5",
        "--match",
        "icmp and host 10.0.2.2",
    ]);
}

/// `service show` and `service backend add|remove|drain` on a running
/// daemon: changes are shown at once, refused by name when wrong, and kept
/// across a kill -9 and restart (journaled in `[control] state`).
#[test]
fn service_backends_change_at_run_time_and_survive_a_restart() {
    let dir = tmp();
    let cfg = config(dir.path(), true);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text += r#"
[services]
flows = 1024

[[service]]
name = "web"
kind = "load-balancer"
address = "10.0.2.100"
ports = [{ protocol = "tcp", port = 80, target_port = 8080 }]
backends = ["192.168.20.51", "192.168.20.52"]
"#;
    std::fs::write(&cfg, text).unwrap();
    let backends = |d: &Daemon| -> Vec<(String, String, u64)> {
        let v: serde_json::Value =
            serde_json::from_str(&d.ok(&["service", "show", "web", "--json"])).unwrap();
        v["services"][0]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["address"].as_str().unwrap().to_owned(),
                    b["state"].as_str().unwrap().to_owned(),
                    b["weight"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let own = |a: &str, s: &str, w: u64| (a.to_owned(), s.to_owned(), w);
    let mut d = Daemon::start(dir.path(), &cfg);
    let text = d.ok(&["service", "show"]);
    assert!(
        text.starts_with("web (load-balancer) 10.0.2.100 80/tcp->8080 announced on Port2\n"),
        "{text}"
    );
    d.ok(&["service", "backend", "drain", "web", "192.168.20.51"]);
    d.ok(&[
        "service",
        "backend",
        "add",
        "web",
        "192.168.20.53",
        "--weight",
        "3",
    ]);
    d.ok(&["service", "backend", "remove", "web", "192.168.20.52"]);
    let want = vec![
        own("192.168.20.51", "draining", 1),
        own("192.168.20.53", "active", 3),
    ];
    assert_eq!(backends(&d), want);
    for (args, says) in [
        (
            vec!["service", "backend", "remove", "web", "192.168.20.99"],
            "not a backend of web",
        ),
        (
            vec![
                "service",
                "backend",
                "add",
                "web",
                "192.168.20.54",
                "--weight",
                "0",
            ],
            "--weight: 0",
        ),
        (
            vec!["service", "backend", "add", "web", "ten"],
            "\"ten\" is not an address",
        ),
        (
            vec!["service", "backend", "add", "web", "fd00:244::5"],
            "IPv6 and web has no IPv6 address",
        ),
        (
            vec!["service", "backend", "evict", "web", "192.168.20.51"],
            "not add, remove or drain",
        ),
        (
            vec!["service", "backend", "add", "nope", "192.168.20.51"],
            "no service \"nope\"",
        ),
        (vec!["service", "show", "nope"], "no service \"nope\""),
    ] {
        let e = d.refused(&args);
        assert!(e.contains(says), "{args:?}: {e}");
    }
    assert_eq!(backends(&d), want, "refusals changed nothing");

    // Services added and removed at run time.
    fn add<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec![
            "service",
            "add",
            "dns",
            "--kind",
            "cluster-ip",
            "--address",
            "10.96.0.10",
            "--port",
            "udp:53",
        ];
        a.extend_from_slice(extra);
        a
    }
    for (args, says) in [
        (
            vec![
                "service",
                "add",
                "Dns",
                "--kind",
                "cluster-ip",
                "--address",
                "10.96.0.11",
                "--port",
                "udp:53",
            ],
            "NAME: must be 1-63",
        ),
        (
            vec![
                "service",
                "add",
                "web",
                "--kind",
                "cluster-ip",
                "--address",
                "10.96.0.11",
                "--port",
                "udp:53",
            ],
            "NAME: \"web\" is used twice",
        ),
        (
            vec![
                "service",
                "add",
                "x",
                "--kind",
                "nodeport",
                "--address",
                "10.96.0.11",
                "--port",
                "udp:53",
            ],
            "--kind:",
        ),
        (
            vec![
                "service",
                "add",
                "x",
                "--kind",
                "cluster-ip",
                "--address",
                "10.0.2.15",
                "--port",
                "udp:53",
            ],
            "--address: 10.0.2.15 is an address of a port",
        ),
        (
            vec![
                "service",
                "add",
                "x",
                "--kind",
                "cluster-ip",
                "--address",
                "10.96.0.11",
                "--port",
                "udp:0",
            ],
            "--port: must be between 1 and 65535",
        ),
        (
            vec![
                "service",
                "add",
                "x",
                "--kind",
                "cluster-ip",
                "--address",
                "10.96.0.11",
                "--port",
                "udp:53",
                "--backend",
                "10.1.1.1:300",
            ],
            "--backend: weight",
        ),
        (
            vec![
                "service",
                "add",
                "x",
                "--kind",
                "load-balancer",
                "--port",
                "tcp:80",
            ],
            "services.load_balancer_pool",
        ),
        (
            add(&["--address", "10.96.0.12"]),
            "--address: at most one address of each family",
        ),
        (vec!["service", "remove", "nope"], "no service \"nope\""),
    ] {
        let e = d.refused(&args);
        assert!(e.contains(says), "{args:?}: {e}");
    }
    d.ok(&add(&[
        "--backend",
        "192.168.20.61",
        "--backend",
        "192.168.20.62:2",
        "--affinity",
        "client-ip",
        "--affinity-timeout",
        "60",
    ]));
    assert_eq!(d.ok(&["service", "flows", "dns"]), "0 flows\n");
    let e = d.refused(&["service", "flows", "nope"]);
    assert!(e.contains("no service \"nope\""), "{e}");
    d.ok(&["service", "backend", "drain", "dns", "192.168.20.61"]);
    d.ok(&["service", "remove", "web"]);
    // Another service by the config's name replaces it, for good.
    d.ok(&[
        "service",
        "add",
        "web",
        "--kind",
        "cluster-ip",
        "--address",
        "10.96.0.20",
        "--port",
        "tcp:81",
    ]);
    // Dual stack: an address of each family, IPv6 backends (a weight
    // after the bracketed address).
    d.ok(&[
        "service",
        "add",
        "six",
        "--kind",
        "cluster-ip",
        "--address",
        "10.96.0.30",
        "--address",
        "fd00:96::30",
        "--port",
        "tcp:80",
        "--backend",
        "[fd00:244::5]:3",
        "--backend",
        "fd00:244::6",
        "--backend",
        "10.244.1.5",
    ]);
    let six = |d: &Daemon| -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&d.ok(&["service", "show", "six", "--json"])).unwrap();
        v["services"][0].clone()
    };
    let before = six(&d);
    assert_eq!(
        before["addresses"],
        serde_json::json!(["10.96.0.30", "fd00:96::30"])
    );
    assert_eq!(before["backends"][0]["address"], "fd00:244::5");
    assert_eq!(before["backends"][0]["weight"], 3);
    d.ok(&["service", "backend", "drain", "six", "fd00:244::6"]);
    let names = |d: &Daemon| -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_str(&d.ok(&["service", "show", "--json"])).unwrap();
        v["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&d), ["dns", "six", "web"], "by name");
    let six_before = six(&d);
    assert_eq!(six_before["backends"][1]["state"], "draining");
    let dns: serde_json::Value =
        serde_json::from_str(&d.ok(&["service", "show", "dns", "--json"])).unwrap();
    let dns_backends = dns["services"][0]["backends"].clone();
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let d = Daemon::start(dir.path(), &cfg);
    assert_eq!(names(&d), ["dns", "six", "web"], "kept across a restart");
    assert_eq!(six(&d), six_before, "the dual-stack service too");
    let web: serde_json::Value =
        serde_json::from_str(&d.ok(&["service", "show", "web", "--json"])).unwrap();
    assert_eq!(web["services"][0]["kind"], "cluster-ip", "{web}");
    assert_eq!(web["services"][0]["address"], "10.96.0.20");
    let again: serde_json::Value =
        serde_json::from_str(&d.ok(&["service", "show", "dns", "--json"])).unwrap();
    assert_eq!(again["services"][0]["backends"], dns_backends);
    assert_eq!(dns_backends[0]["state"], "draining");
    assert_eq!(dns_backends[1]["weight"], 2);
    assert_eq!(again["services"][0]["affinity_timeout"], 60, "{again}");
}
