//! BIRD on both sides of Port2 of a [`Rig`](super::host_rig::Rig): the
//! upstream (in `h2`) announces prefixes over eBGP with itself as next hop;
//! the appliance's host (in `app`) learns them and installs them in its
//! kernel through the mirror. Shared by the BIRD test and the host_routes
//! bench, with the shared table they announce.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipnet::Ipv4Net;

use super::{Netns, Spawned};

/// The appliance host's config: learns over BGP, installs in its kernel.
const APPLIANCE_CONF: &str = r#"router id 10.0.2.1;
protocol device { }
protocol kernel {
    ipv4 { import none; export all; };
}
protocol bgp peer_up {
    local 10.0.2.1 as 65001;
    neighbor 10.0.2.2 as 65002;
    hold time 9;
    ipv4 { import all; export none; };
}
"#;

/// The upstream's config: a BGP speaker announcing `prefixes` (static
/// blackholes) with itself as next hop.
fn upstream_conf(prefixes: &[Ipv4Net]) -> String {
    let mut s = String::from(
        r#"router id 10.0.2.2;
protocol device { }
protocol bgp peer_app {
    local 10.0.2.2 as 65002;
    neighbor 10.0.2.1 as 65001;
    hold time 9;
    ipv4 { import none; export all; next hop self; };
}
protocol static upstream_routes {
    ipv4;
"#,
    );
    s.reserve(prefixes.len() * 32);
    for p in prefixes {
        let _ = writeln!(s, "    route {p} blackhole;");
    }
    s.push_str("}\n");
    s
}

/// The public prefixes of the shared full IPv4 table (none of the test
/// topologies' own ranges); `None`, said loudly, without the shared data.
pub fn shared_table(who: &str) -> Option<Vec<Ipv4Net>> {
    let path = super::need_data(who, "rib/ipv4-fullview-2023.txt")?;
    let ours: [Ipv4Net; 4] = [
        "10.0.0.0/8".parse().unwrap(),
        "192.0.2.0/24".parse().unwrap(),
        "0.0.0.0/8".parse().unwrap(),
        "127.0.0.0/8".parse().unwrap(),
    ];
    let mut seen = HashSet::new();
    Some(
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse::<Ipv4Net>().ok())
            .map(|n| n.trunc())
            .filter(|n| n.prefix_len() > 0)
            .filter(|n| !ours.iter().any(|o| o.contains(n) || n.contains(o)))
            .filter(|n| seen.insert(*n))
            .collect(),
    )
}

/// The two BIRDs, running; stopped on drop.
pub struct Peers {
    up_conf: PathBuf,
    up_sock: PathBuf,
    app_sock: PathBuf,
    _up: Spawned,
    _app: Spawned,
    _dir: tempfile::TempDir,
}

impl Peers {
    /// Starts the upstream in `h2` announcing `prefixes` and the host's
    /// BIRD in `app`.
    pub fn start(h2: &Netns, app: &Netns, prefixes: &[Ipv4Net]) -> Peers {
        let dir = super::temp_dir("bird");
        let (up_sock, app_sock) = (dir.path().join("up.ctl"), dir.path().join("app.ctl"));
        let (up_conf, app_conf) = (dir.path().join("up.conf"), dir.path().join("app.conf"));
        std::fs::write(&up_conf, upstream_conf(prefixes)).unwrap();
        std::fs::write(&app_conf, APPLIANCE_CONF).unwrap();
        let bird = |ns: &Netns, conf: &Path, sock: &Path| {
            let (c, s) = (conf.display().to_string(), sock.display().to_string());
            ns.spawn(&["bird", "-f", "-c", &c, "-s", &s, "-P", &format!("{s}.pid")])
        };
        Peers {
            _up: bird(h2, &up_conf, &up_sock),
            _app: bird(app, &app_conf, &app_sock),
            up_conf,
            up_sock,
            app_sock,
            _dir: dir,
        }
    }

    /// Has the upstream announce `prefixes` instead (`birdc configure`).
    pub fn announce(&self, prefixes: &[Ipv4Net]) {
        std::fs::write(&self.up_conf, upstream_conf(prefixes)).unwrap();
        let said = birdc(&self.up_sock, &["configure"]);
        assert!(said.contains("Reconfigured"), "birdc configure: {said}");
    }

    /// Drops the session from the upstream's side (`birdc disable`).
    pub fn disable(&self) {
        let said = birdc(&self.up_sock, &["disable", "peer_app"]);
        assert!(said.contains("disabled"), "birdc disable: {said}");
    }

    /// The host BIRD's line of `show protocols` for its session (state
    /// and since when).
    pub fn session(&self) -> String {
        birdc(&self.app_sock, &["show", "protocols", "peer_up"])
            .lines()
            .find(|l| l.starts_with("peer_up"))
            .unwrap_or("")
            .to_owned()
    }
}

/// `birdc` against the daemon at `sock`; its output.
fn birdc(sock: &Path, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("30")
        .arg("birdc")
        .arg("-s")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
