//! Helpers shared by the end-to-end tests: where the shared data is, and
//! loud refusals when a test cannot run here.
#![allow(dead_code)]

pub mod appliance;
pub mod bird;
pub mod guest;
pub mod host_rig;
pub mod testpmd;
pub mod virtio;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// True when running under CI (which must run every test).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Says loudly that a test cannot run; under CI that is a failure.
pub fn cannot_run(test: &str, why: &str) {
    let msg = format!("{test}: NOT RUN: {why}");
    if in_ci() {
        panic!("{msg} (CI must run every test)");
    }
    eprintln!("\n!!!!!!!! {msg} !!!!!!!!\n");
}

/// The shared data directory: `$EDGEFWD_DATA`, else `../shared/data` beside
/// the repository.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("EDGEFWD_DATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    }
}

/// A file or directory under the data directory, or a loud refusal.
pub fn need_data(test: &str, rel: &str) -> Option<PathBuf> {
    let p = data_dir().join(rel);
    if p.exists() {
        Some(p)
    } else {
        cannot_run(
            test,
            &format!("{} not found (set EDGEFWD_DATA)", p.display()),
        );
        None
    }
}

/// True when running as root, else a loud refusal.
pub fn need_root(test: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        cannot_run(test, "needs root (network namespaces)");
    }
    root
}

/// True when `tool` runs, else a loud refusal.
pub fn need_tool(test: &str, tool: &str, arg: &str) -> bool {
    let ok = Command::new(tool).arg(arg).output().is_ok();
    if !ok {
        cannot_run(test, &format!("{tool} is not installed"));
    }
    ok
}

/// A fresh directory for a test's outputs, removed on drop.
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("edgefwd-{tag}-"))
        .tempdir()
        .expect("temp dir")
}

/// A network namespace removed when dropped, even when the test fails.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("efw-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(ok.success(), "ip netns add {name}");
        Netns(name)
    }

    /// Runs `ip -n NS [-j] -force -batch -` on `script` ([`ip_batch`],
    /// within 60 s); returns stdout.
    pub fn batch(&self, json: bool, script: &str) -> String {
        ip_batch(&self.0, json, 60, script)
    }
}

/// Runs `ip -n NS [-j] -force -batch -` on `script` in the namespace named
/// `ns` (which the caller need not own), within `secs` seconds: a wedged
/// `ip` fails the test instead of hanging it; so does any error. Returns
/// stdout.
pub fn ip_batch(ns: &str, json: bool, secs: u32, script: &str) -> String {
    let secs = secs.to_string();
    let mut args = vec![secs.as_str(), "ip", "-n", ns];
    if json {
        args.push("-j");
    }
    args.extend(["-force", "-batch", "-"]);
    let mut child = Command::new("timeout")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Feed stdin from a thread: the answers fill stdout's pipe long
    // before the script is written.
    let mut stdin = child.stdin.take().unwrap();
    let script = script.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "ip -n {ns} batch failed ({}): {err}",
        out.status
    );
    String::from_utf8(out.stdout).unwrap()
}

impl Netns {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Runs `ip -n NS ARGS…` (bounded in time); panics with its stderr if
    /// it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["10", "ip", "-n", &self.0];
        full.extend_from_slice(args);
        let out = Command::new("timeout").args(&full).output().unwrap();
        assert!(
            out.status.success(),
            "ip -n {} {}: {}",
            self.0,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a command inside the namespace; it is killed when the guard
    /// drops.
    pub fn spawn(&self, cmd: &[&str]) -> Spawned {
        let mut full = vec!["netns", "exec", &self.0];
        full.extend_from_slice(cmd);
        let child = Command::new("ip")
            .args(&full)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Spawned(child)
    }

    /// Waits (at most 5 s) until device `dev` exists in the namespace.
    pub fn wait_for_device(&self, dev: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !self.exec(5, &["ip", "link", "show", dev]).status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "{dev} never appeared in {}",
                self.0
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Gives `dev` the address `cidr`, brings it and loopback up, and routes
    /// by `gateway` when given.
    pub fn address(&self, dev: &str, cidr: &str, gateway: Option<&str>) {
        self.ip(&["addr", "add", cidr, "dev", dev]);
        self.ip(&["link", "set", dev, "up"]);
        self.ip(&["link", "set", "lo", "up"]);
        if let Some(gw) = gateway {
            self.ip(&["route", "replace", "default", "via", gw]);
        }
    }

    /// Pings `target` from the namespace until it answers, for at most
    /// `secs` seconds.
    pub fn wait_for_ping(&self, target: &str, secs: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while !self
            .exec(5, &["ping", "-c", "1", "-W", "0.2", target])
            .status
            .success()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{target} never answered {}",
                self.0
            );
        }
    }

    /// Waits (at most 5 s) until a TCP socket listens on `port` in the
    /// namespace.
    pub fn wait_for_listener(&self, port: u16) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let filter = format!("sport = :{port}");
        while self
            .exec(5, &["ss", "-Hltn", &filter])
            .stdout
            .iter()
            .all(u8::is_ascii_whitespace)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "nothing listens on {port} in {}",
                self.0
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// `ping -n ARGS` from the namespace (within 15 s): whether every echo
    /// was answered, and what it printed.
    pub fn ping(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = vec!["ping", "-n"];
        cmd.extend_from_slice(args);
        let out = self.exec(15, &cmd);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success(), text)
    }

    /// Runs a command inside the namespace, bounded to `secs` seconds.
    pub fn exec(&self, secs: u32, cmd: &[&str]) -> std::process::Output {
        self.command(secs, cmd).output().unwrap()
    }

    /// A command inside the namespace, bounded to `secs` seconds, for the
    /// caller to give its input and output and start.
    pub fn command(&self, secs: u32, cmd: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args([&secs.to_string(), "ip", "netns", "exec", &self.0]);
        c.args(cmd);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A process started in a namespace, killed on drop.
pub struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a [`tcp_transfer`] saw at the far end.
pub struct Transfer {
    /// Bytes that arrived.
    pub bytes: usize,
    /// True when their sha256 matches what was sent.
    pub intact: bool,
    /// The sender's address as the receiver saw it.
    pub peer: std::net::SocketAddr,
}

/// Sends `len` bytes of a known stream from namespace `from` to `dst`,
/// listened on in namespace `to`, every step bounded in time.
pub fn tcp_transfer(from: &Netns, to: &Netns, dst: std::net::SocketAddr, len: usize) -> Transfer {
    use edgefwd_io::binding::netns_path;
    use edgefwd_io::in_netns;
    use sha2::{Digest, Sha256};
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    let listener = in_netns(&netns_path(to.name()), || TcpListener::bind(dst)).unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (mut hash, mut n, mut buf) = (Sha256::new(), 0usize, vec![0; 1 << 16]);
        loop {
            match s.read(&mut buf).unwrap() {
                0 => break,
                k => {
                    hash.update(&buf[..k]);
                    n += k;
                }
            }
        }
        (n, hash.finalize(), peer)
    });
    let mut stream = in_netns(&netns_path(from.name()), || {
        TcpStream::connect_timeout(&dst, Duration::from_secs(5))
    })
    .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut sent = Sha256::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; 1 << 16];
    for _ in 0..len / chunk.len() {
        for b in chunk.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b.copy_from_slice(&state.to_le_bytes());
        }
        sent.update(&chunk);
        stream.write_all(&chunk).unwrap();
    }
    drop(stream);
    let (bytes, got, peer) = receiver.join().unwrap();
    Transfer {
        bytes,
        intact: got == sent.finalize(),
        peer,
    }
}

/// True when this test may build namespaces and ping through them (root,
/// `ping` installed); says so loudly otherwise.
pub fn need_root_and_ping(test: &str) -> bool {
    need_root(test) && need_tool(test, "ping", "-V")
}

/// Every packet that entered a daemon's run is accounted for.
pub fn assert_identity(s: &edgefwd_control::run::RunSummary) {
    let st = &s.stats;
    assert_eq!(st.received(), st.ended(), "accounting identity");
}

/// Runs `send` with an AF_PACKET sender on device `dev` of namespace `ns`:
/// what it writes enters `dev` as if that namespace's host had sent it.
pub fn with_raw_sender<T: Send>(
    ns: &str,
    dev: &str,
    send: impl FnOnce(&mut dyn pnet_datalink::DataLinkSender) -> T + Send,
) -> std::io::Result<T> {
    let path = edgefwd_io::binding::netns_path(ns);
    edgefwd_io::in_netns(&path, move || {
        let iface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == dev)
            .ok_or_else(|| std::io::Error::other(format!("no device {dev}")))?;
        let pnet_datalink::Channel::Ethernet(mut tx, _rx) =
            pnet_datalink::channel(&iface, pnet_datalink::Config::default())?
        else {
            return Err(std::io::Error::other("not an Ethernet channel"));
        };
        Ok(send(&mut *tx))
    })
}

/// The daemon (`edgefwd run`) in this process on `cfg`: stopped and joined
/// when dropped, so a test's namespaces outlive it even on failure (declare
/// it before them).
pub struct Daemon {
    control: edgefwd_control::run::Control,
    thread: Option<
        std::thread::JoinHandle<
            Result<edgefwd_control::run::RunSummary, edgefwd_control::run::RunError>,
        >,
    >,
}

impl Daemon {
    /// Starts the daemon on its own thread.
    pub fn start(cfg: edgefwd_control::config::Config) -> Daemon {
        Daemon::start_with(cfg, edgefwd_control::run::Control::default())
    }

    /// Starts the daemon on its own thread, asked to act through `control`.
    pub fn start_with(
        cfg: edgefwd_control::config::Config,
        control: edgefwd_control::run::Control,
    ) -> Daemon {
        let c = control.clone();
        let thread = std::thread::spawn(move || {
            edgefwd_control::run::run(&cfg, std::path::Path::new("test"), &c)
        });
        Daemon {
            control,
            thread: Some(thread),
        }
    }

    /// Stops it and returns its summary.
    pub fn stop(
        &mut self,
    ) -> Result<edgefwd_control::run::RunSummary, edgefwd_control::run::RunError> {
        self.control
            .stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let t = self.thread.take().expect("stopped twice");
        t.join().expect("daemon panicked")
    }
}

impl Daemon {
    /// Makes worker `i` fail, as one whose poller broke would.
    pub fn fail_worker(&self, i: usize) {
        self.control
            .fail_workers
            .fetch_or(1 << i, std::sync::atomic::Ordering::Relaxed);
    }

    /// The daemon's result if it ends within `limit` by itself.
    pub fn ended_within(
        &mut self,
        limit: std::time::Duration,
    ) -> Option<Result<edgefwd_control::run::RunSummary, edgefwd_control::run::RunError>> {
        let deadline = std::time::Instant::now() + limit;
        while !self.thread.as_ref()?.is_finished() {
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let t = self.thread.take()?;
        Some(t.join().expect("daemon panicked"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}

/// This process's threads whose name starts with `prefix`, by thread id.
pub fn threads_named(prefix: &str) -> Vec<u32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .filter_map(|t| t.file_name().to_str()?.parse().ok())
        .collect()
}

/// User plus system CPU time thread `id` of this process has used, in
/// clock ticks of 10 ms (the kernel's ABI fixes USER_HZ at 100); 0 once the
/// thread is gone.
pub fn thread_cpu_ticks(id: u32) -> u64 {
    stat_cpu_ticks(&format!("/proc/self/task/{id}/stat"))
}

/// User plus system CPU time process `pid` has used, in clock ticks of
/// 10 ms; 0 once it is gone.
pub fn process_cpu_ticks(pid: u32) -> u64 {
    stat_cpu_ticks(&format!("/proc/{pid}/stat"))
}

/// Fields 14 and 15 (utime, stime) of a `/proc/…/stat` file.
fn stat_cpu_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The name (field 2) may hold spaces, so count from the ")" that ends
    // it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// Two ports bound to `none`, two workers, a control socket in `dir`.
pub fn none_ports_config(dir: &std::path::Path, extra: &str) -> edgefwd_control::config::Config {
    edgefwd_control::config::Config::parse(&format!(
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

/// A pcap of `frames` (milliseconds after a fixed start, frame) in
/// memory, for a replay input (`Source::Bytes`).
pub fn pcap_in_memory(frames: &[(u64, Vec<u8>)]) -> &'static [u8] {
    use std::time::Duration;
    let mut out = Vec::new();
    {
        let mut w =
            edgefwd_control::trace::TraceWriter::new(std::io::BufWriter::new(&mut out)).unwrap();
        let t0 = Duration::from_secs(1_767_225_600);
        for (ms, f) in frames {
            w.write(t0 + Duration::from_millis(*ms), f).unwrap();
        }
        drop(w.into_inner());
    }
    out.leak()
}

/// A veth pair with two queues each side: `dev` in `edge` (up), its peer
/// `eth0` in `host`, which sends plain frames (no checksum offload, TSO or
/// GSO: AF_XDP and AF_PACKET carry no offload state). The host side is
/// left for the caller to address.
pub fn veth_to_host(edge: &Netns, host: &Netns, dev: &str) {
    edge.ip(&[
        "link",
        "add",
        dev,
        "numtxqueues",
        "2",
        "numrxqueues",
        "2",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "numtxqueues",
        "2",
        "numrxqueues",
        "2",
        "netns",
        host.name(),
    ]);
    edge.ip(&["link", "set", dev, "up"]);
    let out = host.exec(
        5,
        &[
            "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off",
        ],
    );
    assert!(
        out.status.success(),
        "ethtool in {}: {}",
        host.name(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The kernel forwarding between two hosts: `TAG-h2` (10.0.2.2) ─veth─
/// `TAG-r` (ip_forward) ─veth─ `TAG-h3` (10.0.3.2), h2 already reaching
/// h3. Returns the three namespaces, h2, r, h3.
pub fn kernel_router(tag: &str) -> [Netns; 3] {
    let (h2, r, h3) = (
        Netns::new(&format!("{tag}-h2")),
        Netns::new(&format!("{tag}-r")),
        Netns::new(&format!("{tag}-h3")),
    );
    for (host, rdev, hdev) in [(&h2, "r2", "eth2"), (&h3, "r3", "eth3")] {
        r.ip(&["link", "add", rdev, "type", "veth", "peer", "name", hdev]);
        r.ip(&["link", "set", hdev, "netns", host.name()]);
    }
    r.address("r2", "10.0.2.1/24", None);
    r.address("r3", "10.0.3.1/24", None);
    let out = r.exec(5, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    assert!(out.status.success(), "sysctl ip_forward in {}", r.name());
    h2.address("eth2", "10.0.2.2/24", Some("10.0.2.1"));
    h3.address("eth3", "10.0.3.2/24", Some("10.0.3.1"));
    h2.wait_for_ping("10.0.3.2", 10);
    [h2, r, h3]
}

/// The link state the daemon on `socket` reports for `port` (`port show`).
pub fn link_of(socket: &std::path::Path, port: &str) -> String {
    let v = edgefwd_control::api::call(socket, edgefwd_control::api::Command::PortShow {})
        .expect("port show");
    v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port)
        .map(|p| p["link"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// Waits (at most 5 s) until the daemon on `socket` reports `port`'s link
/// as `want`.
pub fn wait_for_link(socket: &std::path::Path, port: &str, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let link = link_of(socket, port);
        if link == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{port} stayed {link}, not {want}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The value of the environment variable `name` (a bench's knob), or
/// `default` when it is not set; a value that does not parse stops the
/// run naming the variable, rather than quietly measuring something else.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: not a value this bench takes")),
        Err(_) => default,
    }
}

/// The median of `v` (the upper one of an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
