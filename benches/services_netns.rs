//! Side by side on one machine, in one run: a service balanced over three
//! backends by the Linux kernel with nftables (laid out as kube-proxy's
//! nftables mode lays it out: a verdict map from address and port to a
//! chain per service, `numgen random mod N` to a DNAT per endpoint) and by
//! edgefwd between TAPs, with 1 and with 10,000 services loaded.
//!
//! The same client (new TCP connections, one after another: connect, read
//! one byte, close) and the same backends (accept, write their name,
//! close) run against both, in interleaved rounds. Each figure: new
//! connections a second, connect() latency p50 and p99, and each backend's
//! share (max over mean).
//!
//! `sudo cargo bench --bench services_netns` (root: namespaces, TAPs; needs
//! python3 and nft). `EDGEFWD_LB_CONNS` sets the connections a round
//! (default 2,000). Traffic stays inside the namespaces this makes.

#[path = "chart.rs"]
mod chart;
#[path = "../tests/common/mod.rs"]
mod common;

use common::appliance::Appliance;
use common::Netns;

const ROUNDS: usize = 3;
const VIP: &str = "10.0.2.100";

/// Backends: accept, send the name, close.
const BACKEND: &str = "import socket,sys\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind((sys.argv[1],8080));s.listen(1024)\nn=sys.argv[2].encode()\nwhile True:\n c,_=s.accept();c.sendall(n);c.close()";

/// The client: `n` connections to `VIP:80` one after another; prints the
/// connections a second, connect() p50 and p99 in µs, then `name count`.
const CLIENT: &str = "import socket,sys,time,collections\nn=int(sys.argv[2]);lat=[];c=collections.Counter();t0=time.perf_counter()\nfor i in range(n):\n s=socket.socket();a=time.perf_counter();s.connect((sys.argv[1],80));lat.append(time.perf_counter()-a)\n c[s.recv(64).decode()]+=1;s.close()\nel=time.perf_counter()-t0;lat.sort()\nprint(n/el,lat[len(lat)//2]*1e6,lat[len(lat)*99//100]*1e6)\nfor k,v in c.items(): print(k,v)";

struct Figures {
    rate: f64,
    p50: f64,
    p99: f64,
    skew: f64,
}

fn run_client(client: &Netns, conns: usize) -> Figures {
    let out = client.exec(300, &["python3", "-c", CLIENT, VIP, &conns.to_string()]);
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let head: Vec<f64> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let counts: Vec<f64> = lines
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect();
    let mean = counts.iter().sum::<f64>() / 3.0;
    let max = counts.iter().copied().fold(0.0, f64::max);
    Figures {
        rate: head[0],
        p50: head[1],
        p99: head[2],
        skew: if counts.len() < 3 {
            f64::NAN
        } else {
            max / mean
        },
    }
}

/// The nftables ruleset for `services` services, the first at the VIP.
fn nft_rules(services: usize) -> String {
    let mut r = String::from("table ip lb {\n");
    for i in 0..services {
        r += &format!(
            " chain svc{i} {{\n  meta l4proto tcp dnat to numgen random mod 3 map {{ 0 : 10.0.3.2, 1 : 10.0.4.2, 2 : 10.0.5.2 }} : 8080\n }}\n"
        );
    }
    r += " map services {\n  type ipv4_addr . inet_service : verdict\n  elements = {\n";
    for i in 0..services {
        let addr = if i == 0 {
            VIP.to_owned()
        } else {
            std::net::Ipv4Addr::from(0x0a60_0000 + i as u32).to_string()
        };
        r += &format!("   {addr} . 80 : goto svc{i},\n");
    }
    r += "  }\n }\n chain pre {\n  type nat hook prerouting priority dstnat;\n  ip daddr . tcp dport vmap @services\n }\n}\n";
    r
}

/// The kernel balancer: a router namespace between the client and three
/// backends, nftables loaded with `services` services.
fn kernel(services: usize) -> (Vec<Netns>, Vec<common::Spawned>) {
    let tag = format!("lbk{services}");
    let r = Netns::new(&format!("{tag}-r"));
    let c = Netns::new(&format!("{tag}-c"));
    let bs: Vec<Netns> = (3..6).map(|i| Netns::new(&format!("{tag}-b{i}"))).collect();
    r.ip(&["link", "add", "r2", "type", "veth", "peer", "name", "e2"]);
    r.ip(&["link", "set", "e2", "netns", c.name()]);
    r.address("r2", "10.0.2.1/24", None);
    c.address("e2", "10.0.2.2/24", Some("10.0.2.1"));
    // MetalLB would answer ARP for the address; the router is the way to it.
    c.ip(&["route", "add", &format!("{VIP}/32"), "via", "10.0.2.1"]);
    for (i, b) in (3..6).zip(&bs) {
        let (rd, bd) = (format!("r{i}"), format!("e{i}"));
        r.ip(&["link", "add", &rd, "type", "veth", "peer", "name", &bd]);
        r.ip(&["link", "set", &bd, "netns", b.name()]);
        r.address(&rd, &format!("10.0.{i}.1/24"), None);
        b.address(&bd, &format!("10.0.{i}.2/24"), Some(&format!("10.0.{i}.1")));
    }
    assert!(r
        .exec(5, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        .status
        .success());
    let rules = std::env::temp_dir().join(format!("edgefwd-{tag}.nft"));
    std::fs::write(&rules, nft_rules(services)).unwrap();
    let out = r.exec(120, &["nft", "-f", rules.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let servers = (3..6)
        .zip(&bs)
        .map(|(i, b)| {
            b.spawn(&[
                "python3",
                "-c",
                BACKEND,
                &format!("10.0.{i}.2"),
                &format!("b{i}"),
            ])
        })
        .collect();
    for b in &bs {
        b.wait_for_listener(8080);
    }
    let mut all = vec![c, r];
    all.extend(bs);
    (all, servers)
}

/// edgefwd balancing `services` services (the first at the VIP) over the
/// hosts behind Port3, Port4 and vm1.
fn edgefwd(services: usize) -> (Appliance, Vec<common::Spawned>) {
    let mut cfg = format!("[services]\nflows = {}\n\n", 1 << 18);
    for i in 0..services {
        let addr = if i == 0 {
            VIP.to_owned()
        } else {
            std::net::Ipv4Addr::from(0x0a60_0000 + i as u32).to_string()
        };
        cfg += &format!(
            "[[service]]\nname = \"s{i}\"\nkind = \"{}\"\naddress = \"{addr}\"\nports = [{{ protocol = \"tcp\", port = 80, target_port = 8080 }}]\nbackends = [\"10.0.3.2\", \"10.0.4.2\", \"172.28.0.10\"]\n\n",
            if i == 0 { "load-balancer" } else { "cluster-ip" }
        );
    }
    let app = Appliance::start(
        &format!("lbe{services}"),
        &["Port2", "Port3", "Port4", "vm1"],
        &cfg,
    );
    let servers = ["Port3", "Port4", "vm1"]
        .iter()
        .map(|p| {
            let h = app.host(p);
            h.ns.spawn(&["python3", "-c", BACKEND, &h.addr(), p])
        })
        .collect();
    for p in ["Port3", "Port4", "vm1"] {
        app.host(p).ns.wait_for_listener(8080);
    }
    (app, servers)
}

/// One number of services loaded: (kernel, edgefwd) new connections/s and
/// connect() p50.
struct Row {
    services: usize,
    rate: (f64, f64),
    p50: (f64, f64),
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    const NAME: &str = "services_netns bench";
    if !common::need_root(NAME)
        || !common::need_tool(NAME, "python3", "--version")
        || !common::need_tool(NAME, "nft", "--version")
    {
        std::process::exit(1);
    }
    let conns: usize = std::env::var("EDGEFWD_LB_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut figures = Vec::new();
    for services in [1usize, 10_000] {
        let (k, _ks) = kernel(services);
        let (e, _es) = edgefwd(services);
        let (mut kf, mut ef) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            kf.push(run_client(&k[0], conns));
            ef.push(run_client(&e.host("Port2").ns, conns));
        }
        let sum = |v: &[Figures], f: fn(&Figures) -> f64| median(v.iter().map(f).collect());
        for (name, v) in [("kernel nftables", &kf), ("edgefwd", &ef)] {
            println!(
                "services/{services} loaded, {name}: {:.0} new connections/s, connect p50 {:.0} µs p99 {:.0} µs, busiest backend {:.2}x the mean ({conns} connections, median of {ROUNDS})",
                sum(v, |f| f.rate),
                sum(v, |f| f.p50),
                sum(v, |f| f.p99),
                sum(v, |f| f.skew),
            );
        }
        let (kr, er) = (sum(&kf, |f| f.rate), sum(&ef, |f| f.rate));
        println!(
            "services/{services} loaded: edgefwd {:.2}x the kernel's new connections/s",
            er / kr
        );
        figures.push(Row {
            services,
            rate: (kr, er),
            p50: (sum(&kf, |f| f.p50), sum(&ef, |f| f.p50)),
        });
    }
    // Each panel: the kernel's and edgefwd's bar at each number of
    // services loaded.
    let panel = |title: &str, pick: fn(&Row) -> (f64, f64)| chart::Figure {
        title: title.into(),
        baseline: "kernel, 1".into(),
        bars: figures
            .iter()
            .flat_map(|f| {
                let (k, e) = pick(f);
                [
                    (format!("kernel, {}", f.services), k),
                    (format!("edgefwd, {}", f.services), e),
                ]
            })
            .collect(),
    };
    chart::write(
        "services",
        &[
            panel(
                "new connections/s through the service (1 / 10,000 services loaded)",
                |f| f.rate,
            ),
            panel("connect() p50, µs (1 / 10,000 services loaded)", |f| f.p50),
        ],
    );
}
