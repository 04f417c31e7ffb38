//! An appliance whose Port2 has a host mirror: the namespace `app` plays
//! the appliance's host (the mirror `m2` lives there), `h2` the network on
//! Port2. Shared by the host mirror and routing daemon tests.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use edgefwd_control::api::{call, Command};
use edgefwd_control::config::Config;
use serde_json::Value;

use super::{Daemon, Netns};

pub struct Rig {
    pub daemon: Daemon,
    pub app: Netns,
    pub h2: Netns,
    pub socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Rig {
    pub fn start(tag: &str) -> Rig {
        Rig::start_with(tag, "", "")
    }

    /// [`Rig::start`] with `control` lines in `[control]` and `extra` in
    /// Port2's entry.
    pub fn start_with(tag: &str, control: &str, extra: &str) -> Rig {
        let app = Netns::new(&format!("{tag}-app"));
        let h2 = Netns::new(&format!("{tag}-h2"));
        let dir = super::temp_dir(tag);
        let socket = dir.path().join("control.sock");
        let toml = format!(
            r#"
[dataplane]
workers = 2
[control]
socket = "{sock}"
{control}

[[port]]
name = "Port2"
bind = "tap:p2@{h2}"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.1/24", "fd00:2::1/64"]
host = "m2@{app}"
{extra}
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

    pub fn stats(&self) -> Value {
        call(&self.socket, Command::Stats {}).expect("stats")
    }

    pub fn link(&self) -> Value {
        let out = self.app.ip(&["-j", "link", "show", "m2"]);
        serde_json::from_str::<Value>(&out).expect("ip -j link")[0].clone()
    }
}

impl Rig {
    /// `host show --json`.
    pub fn host(&self) -> Value {
        call(&self.socket, Command::HostShow {}).expect("host show")
    }

    /// Waits (at most `secs`) until edgefwd mirrors exactly `n` kernel
    /// routes (prefix and metric keys) and has applied them.
    pub fn wait_for_kernel_routes(&self, n: u64, secs: u64) -> Duration {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(secs);
        loop {
            let h = self.host();
            let nl = &h["netlink"];
            if nl["routes"].as_u64() == Some(n) && self.settled() {
                return started.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "kernel routes never reached {n}: {h}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True when no batch is in flight: two reads of the counters 30 ms
    /// apart agree and the RIB holds what the mirror counted.
    fn settled(&self) -> bool {
        let a = self.host()["netlink"].clone();
        std::thread::sleep(Duration::from_millis(30));
        let b = self.host()["netlink"].clone();
        a["events"] == b["events"] && a["batches"] == b["batches"] && a["resyncs"] == b["resyncs"]
    }

    /// Waits (at most `secs`) until edgefwd's selection agrees with the
    /// kernel's for every one of `addrs` ([`Rig::compare`]); returns how
    /// long that took.
    pub fn agree_with_kernel(&self, addrs: &[IpAddr], secs: u64) -> Duration {
        self.agree_with_kernel_or(addrs, &[], secs)
    }

    /// [`Rig::agree_with_kernel`], where what the kernel routes elsewhere
    /// than the mirror takes `otherwise` in edgefwd (a configured route).
    pub fn agree_with_kernel_or(
        &self,
        addrs: &[IpAddr],
        otherwise: &[(String, Option<IpAddr>)],
        secs: u64,
    ) -> Duration {
        let started = Instant::now();
        loop {
            match self.compare(addrs, otherwise) {
                Ok(n) => {
                    assert_eq!(n, addrs.len());
                    return started.elapsed();
                }
                Err(e) if started.elapsed() > Duration::from_secs(secs) => {
                    panic!("after {secs} s: {e}\n{}", self.host())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Compares edgefwd's selection with `ip route get fibmatch` in the
    /// host's namespace for `addrs`: how many agree, or the first that does
    /// not. Routes through the mirror are Port2's; addresses the kernel
    /// routes elsewhere take `otherwise`.
    pub fn compare(
        &self,
        addrs: &[IpAddr],
        otherwise: &[(String, Option<IpAddr>)],
    ) -> Result<usize, String> {
        let script: String = addrs
            .iter()
            .map(|a| format!("route get fibmatch {a}\n"))
            .collect();
        let answers: Vec<Value> = self
            .app
            .batch(true, &script)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(answers.len(), addrs.len(), "one kernel answer per address");
        let mut agree = 0;
        for chunk in addrs.chunks(2000).zip(answers.chunks(2000)) {
            let (addrs, answers) = chunk;
            let ours = call(
                &self.socket,
                Command::RouteLookup {
                    addresses: addrs.to_vec(),
                },
            )
            .expect("route lookup");
            for ((a, k), o) in addrs.iter().zip(answers).zip(ours.as_array().unwrap()) {
                let k = &k[0];
                let mut mine: Vec<(String, Option<IpAddr>)> = o["routes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r["interface"].as_str().unwrap().to_owned(),
                            r["next_hop"].as_str().map(|g| g.parse().unwrap()),
                        )
                    })
                    .collect();
                mine.sort();
                // Through the mirror: Port2's; through the host's other
                // interfaces: none of edgefwd's business.
                let hop = |h: &Value| {
                    (h["dev"] == "m2").then(|| {
                        (
                            "Port2".to_owned(),
                            h.get("gateway")
                                .map(|g| g.as_str().unwrap().parse().unwrap()),
                        )
                    })
                };
                let mut theirs: Vec<(String, Option<IpAddr>)> = match k.get("nexthops") {
                    Some(hops) => hops.as_array().unwrap().iter().filter_map(hop).collect(),
                    None => hop(k).into_iter().collect(),
                };
                theirs.sort();
                if theirs.is_empty() {
                    theirs = otherwise.to_vec();
                }
                if mine != theirs {
                    return Err(format!("{a}: edgefwd and the kernel differ ({k} / {o})"));
                }
                agree += 1;
            }
        }
        Ok(agree)
    }
}

/// A default route of the host's through another interface (`other`),
/// so every address has an answer; edgefwd mirrors none of it.
pub fn other_defaults(app: &Netns) {
    app.ip(&[
        "link", "add", "other", "type", "veth", "peer", "name", "otherp",
    ]);
    app.ip(&["link", "set", "other", "up"]);
    app.ip(&["link", "set", "otherp", "up"]);
    app.ip(&["addr", "add", "192.0.2.1/24", "dev", "other"]);
    app.ip(&["addr", "add", "fd00:ff::1/64", "dev", "other", "nodad"]);
    app.ip(&[
        "route",
        "add",
        "default",
        "via",
        "192.0.2.2",
        "dev",
        "other",
    ]);
    app.ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        "fd00:ff::2",
        "dev",
        "other",
    ]);
}

/// Waits (at most 5 s) until `ok`.
pub fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
