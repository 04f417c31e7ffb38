//! The host's own traffic through a port's host mirror, end to end: a
//! namespace plays the appliance's host (the mirror `m2` lives there), a
//! second one the network on Port2. The host's kernel is the oracle: its
//! sockets accept what edgefwd punts, its ARP/NDP and ping work through
//! what edgefwd injects, and its link state shows the carrier edgefwd
//! gives it.
//!
//! ```text
//!  app: m2 10.0.2.1 fd00:2::1 (mirror) ┐
//!                                       edgefwd Port2 ── p2 h2 10.0.2.2 fd00:2::2
//! ```

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Daemon, Netns};
use edgefwd_control::api::{call, Command};
use edgefwd_control::config::Config;
use serde_json::Value;

const TEST: &str = "host_mirror";

struct Rig {
    daemon: Daemon,
    app: Netns,
    h2: Netns,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn start(tag: &str) -> Rig {
        let app = Netns::new(&format!("{tag}-app"));
        let h2 = Netns::new(&format!("{tag}-h2"));
        let dir = common::temp_dir(tag);
        let socket = dir.path().join("control.sock");
        let toml = format!(
            r#"
[dataplane]
workers = 2
[control]
socket = "{sock}"

[[port]]
name = "Port2"
bind = "tap:p2@{h2}"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.1/24", "fd00:2::1/64"]
host = "m2@{app}"
"#,
            sock = socket.display(),
            h2 = h2.name(),
            app = app.name(),
        );
        let cfg = Config::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let daemon = Daemon::start(cfg);
        h2.wait_for_device("p2");
        app.wait_for_device("m2");
        h2.ip(&["link", "set", "lo", "up"]);
        app.ip(&["link", "set", "lo", "up"]);
        h2.ip(&["addr", "add", "10.0.2.2/24", "dev", "p2"]);
        h2.ip(&["addr", "add", "fd00:2::2/64", "dev", "p2", "nodad"]);
        h2.ip(&["link", "set", "p2", "up"]);
        h2.wait_for_ping("10.0.2.1", 5);
        Rig {
            daemon,
            app,
            h2,
            socket,
            _dir: dir,
        }
    }

    fn stats(&self) -> Value {
        call(&self.socket, Command::Stats {}).expect("stats")
    }

    fn link(&self) -> Value {
        let out = self.app.ip(&["-j", "link", "show", "m2"]);
        serde_json::from_str::<Value>(&out).expect("ip -j link")[0].clone()
    }
}

#[test]
fn host_mirror_carries_the_hosts_own_traffic() {
    if !common::need_root_and_ping(TEST) {
        return;
    }
    let rig = Rig::start("hm");

    // The kernel side has the port's MAC, MTU and addresses, and is up.
    let link = rig.link();
    assert_eq!(link["address"], "02:00:00:00:02:01", "{link}");
    assert_eq!(link["mtu"], 1500, "{link}");
    let addrs = rig.app.ip(&["-j", "addr", "show", "m2"]);
    for a in ["10.0.2.1", "fd00:2::1"] {
        assert!(addrs.contains(a), "{a} missing on m2: {addrs}");
    }

    // TCP to the port's address reaches a listener on the host, both
    // families, intact.
    for dst in ["10.0.2.1:2222", "[fd00:2::1]:2223"] {
        let dst: SocketAddr = dst.parse().unwrap();
        let t = common::tcp_transfer(&rig.h2, &rig.app, dst, 4 << 20);
        assert_eq!(t.bytes, 4 << 20, "to {dst}");
        assert!(t.intact, "to {dst}: sha256 differs");
    }
    // The host's own pings: its ARP/NDP requests and echo requests leave
    // through Port2, the answers come back to it.
    for target in ["10.0.2.2", "fd00:2::2"] {
        let out = rig
            .app
            .exec(15, &["ping", "-n", "-c", "3", "-W", "2", target]);
        assert!(
            out.status.success(),
            "the host's ping of {target}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let neigh = rig.app.ip(&["neigh", "show", "dev", "m2"]);
    assert!(
        neigh.contains("10.0.2.2"),
        "the host learned no neighbour: {neigh}"
    );
    // edgefwd still answers pings to its address itself.
    assert!(rig
        .h2
        .exec(10, &["ping", "-n", "-c", "2", "-W", "2", "fd00:2::1"])
        .status
        .success());

    let s = rig.stats();
    let (punted, injected) = (
        s["packets"]["punted"].as_u64().unwrap(),
        s["packets"]["injected"].as_u64().unwrap(),
    );
    assert!(punted > 100 && injected > 100, "{}", s["packets"]);
    let mirror = &s["ports"]["Port2/host"];
    assert_eq!(mirror["tx"].as_u64(), Some(punted), "{s}");
    assert_eq!(mirror["rx"].as_u64(), Some(injected), "{s}");
    assert_eq!(s["drops"]["local_unsupported"].as_u64(), None, "{s}");

    // The mirror's carrier follows the port: Port2 unbound, the host sees
    // its link without carrier; bound again, with.
    call(
        &rig.socket,
        Command::PortUnbind {
            port: "Port2".into(),
        },
    )
    .expect("unbind");
    wait_for(
        || flags(&rig.link()).contains(&"NO-CARRIER".to_owned()),
        "carrier off",
    );
    call(
        &rig.socket,
        Command::PortBind {
            port: "Port2".into(),
            binding: format!("tap:p2@{}", rig.h2.name()),
        },
    )
    .expect("bind");
    // The TAP is made anew, down: still no carrier until it is up.
    rig.h2.wait_for_device("p2");
    std::thread::sleep(Duration::from_millis(300));
    assert!(flags(&rig.link()).contains(&"NO-CARRIER".to_owned()));
    rig.h2.ip(&["link", "set", "p2", "up"]);
    wait_for(
        || !flags(&rig.link()).contains(&"NO-CARRIER".to_owned()),
        "carrier on",
    );

    let mut rig = rig;
    let summary = rig.daemon.stop().expect("daemon");
    common::assert_identity(&summary);
}

fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
