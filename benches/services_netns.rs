//! Side by side on one machine, in one run: a service balanced over three
//! backends by the Linux kernel with nftables (laid out as kube-proxy's
//! nftables mode lays it out: a verdict map from address and port to a
//! chain per service, `numgen random mod N` to a DNAT per endpoint) and by
//! edgefwd between TAPs, with 1, 1,000 and 10,000 services loaded.
//!
//! The same client (new TCP connections, one after another: connect, read
//! one byte, close) and the same backends (accept, write their name,
//! close) run against both, in interleaved rounds, to the first service's
//! address and to the last's. Each figure: new connections a second,
//! connect() latency p50 and p99, and each backend's share (max over
//! mean). With one service, edgefwd also routes the same connections
//! straight to one backend, without a service: the balancer's own cost is
//! the ratio of the two.
//!
//! Then a backend is removed under load: the client holds 300 connections
//! open through the service (to an echo port) and opens new ones, one
//! after another, while the backend is removed (`service backend remove`;
//! for the kernel, the service's chains rewritten with two endpoints, as
//! kube-proxy does). Figures: the held connections to the other backends
//! that broke (they must not), what became of those to the removed one,
//! and the removal's effect time: how long after the command a new
//! connection last reached the removed backend.
//!
//! `sudo cargo bench --bench services_netns` (root: namespaces, TAPs; needs
//! python3 and nft). `EDGEFWD_LB_CONNS` sets the connections a round
//! (default 2,000), `EDGEFWD_LB_SERVICES` the numbers of services loaded
//! (default `1,1000,10000`), `EDGEFWD_LB_WORKERS` edgefwd's workers
//! (default 2). Traffic stays inside the namespaces this makes.

#[path = "chart.rs"]
mod chart;
#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};

use common::appliance::Appliance;
use common::Netns;

const ROUNDS: usize = 3;
const VIP: &str = "10.0.2.100";
/// The client's second address, for the connections straight to a pod.
const PLAIN: &str = "10.0.2.3";

/// Backends: accept, send the name, close.
const BACKEND: &str = "import socket,sys\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind((sys.argv[1],8080));s.listen(1024)\nn=sys.argv[2].encode()\nwhile True:\n c,_=s.accept();c.sendall(n);c.close()";

/// Backends' echo port (8081): send the name, then echo until closed.
const ECHO: &str = "import socket,sys,threading\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind((sys.argv[1],8081));s.listen(1024)\nn=sys.argv[2].encode()\ndef serve(c):\n try:\n  c.sendall(n)\n  while True:\n   d=c.recv(4096)\n   if not d: break\n   c.sendall(d)\n except OSError: pass\n c.close()\nwhile True:\n c,_=s.accept();threading.Thread(target=serve,args=(c,),daemon=True).start()";

/// The client: `n` connections to `ADDR:PORT` one after another (each
/// given 5 s; from `SOURCE` when given); prints the connections a second, connect() p50 and p99 in
/// µs, then `name count`.
const CLIENT: &str = "import socket,sys,time,collections\nsocket.setdefaulttimeout(5)\nn=int(sys.argv[3]);lat=[];c=collections.Counter();t0=time.perf_counter()\nfor i in range(n):\n s=socket.socket()\n if len(sys.argv)>4: s.bind((sys.argv[4],0))\n a=time.perf_counter();s.connect((sys.argv[1],int(sys.argv[2])));lat.append(time.perf_counter()-a)\n c[s.recv(64).decode()]+=1;s.close()\nel=time.perf_counter()-t0;lat.sort()\nprint(n/el,lat[len(lat)//2]*1e6,lat[len(lat)*99//100]*1e6)\nfor k,v in c.items(): print(k,v)";

/// The removal client: holds `K` connections to `VIP:81`, opens new ones
/// to `VIP:80` one after another, says `ready`, and on a line from stdin
/// (sent just before the removal) notes the time; half a second later it
/// checks each held connection (an echo within a second) and prints: held
/// to the others, of them broken, held to the removed backend `GONE`, of
/// them broken, ms after the line that a new connection last reached
/// `GONE`, new connections since, of them failed.
const REMOVAL: &str = "import socket,sys,time,threading\nvip,k,gone=sys.argv[1],int(sys.argv[2]),sys.argv[3]\nheld=[]\nfor i in range(k):\n s=socket.create_connection((vip,81),timeout=5);held.append((s,s.recv(64).decode()))\nlog=[];stop=[False]\ndef churn():\n while not stop[0]:\n  a=time.monotonic()\n  try:\n   s=socket.create_connection((vip,80),timeout=2);n=s.recv(64).decode();s.close();log.append((a,n))\n  except OSError: log.append((a,'error'))\nth=threading.Thread(target=churn);th.start()\nprint('ready',flush=True)\nsys.stdin.readline();t0=time.monotonic()\ntime.sleep(0.5);stop[0]=True;th.join()\nsn=sb=rn=rb=0\nfor s,n in held:\n ok=False\n try:\n  s.settimeout(1);s.sendall(b'x');ok=s.recv(1)==b'x'\n except OSError: pass\n if n==gone: rn+=1;rb+=not ok\n else: sn+=1;sb+=not ok\nafter=[(a,n) for a,n in log if a>=t0]\nhit=[a for a,n in after if n==gone]\nprint(sn,sb,rn,rb,(max(hit)-t0)*1e3 if hit else 0.0,len(after),sum(1 for a,n in after if n=='error'))";

struct Figures {
    rate: f64,
    p50: f64,
    p99: f64,
    skew: f64,
}

fn run_client(client: &Netns, (addr, port): (&str, u16), conns: usize) -> Figures {
    run_client_from(client, (addr, port), conns, None)
}

fn run_client_from(
    client: &Netns,
    (addr, port): (&str, u16),
    conns: usize,
    source: Option<&str>,
) -> Figures {
    let (port, conns) = (port.to_string(), conns.to_string());
    let mut args = vec!["python3", "-c", CLIENT, addr, &port, &conns];
    args.extend(source);
    let out = client.exec(300, &args);
    assert!(
        out.status.success(),
        "client in {} to {addr}:{port}: {}",
        client.name(),
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

/// Service `i`'s address: the first at the VIP, the rest in 10.96/16.
fn vip(i: usize) -> String {
    if i == 0 {
        VIP.to_owned()
    } else {
        std::net::Ipv4Addr::from(0x0a60_0000 + i as u32).to_string()
    }
}

/// A DNAT rule to `backends` (by their last-but-one address byte) at
/// `port`.
fn dnat(backends: &[u8], port: u16) -> String {
    let map: Vec<String> = (backends.iter().enumerate())
        .map(|(k, b)| format!("{k} : 10.0.{b}.2"))
        .collect();
    format!(
        "meta l4proto tcp dnat to numgen random mod {} map {{ {} }} : {port}",
        backends.len(),
        map.join(", ")
    )
}

/// The nftables ruleset for `services` services; the first also has its
/// echo port (81 to 8081).
fn nft_rules(services: usize) -> String {
    let mut r = String::from("table ip lb {\n");
    r += &format!(" chain svc0e {{\n  {}\n }}\n", dnat(&[3, 4, 5], 8081));
    for i in 0..services {
        r += &format!(" chain svc{i} {{\n  {}\n }}\n", dnat(&[3, 4, 5], 8080));
    }
    r += " map services {\n  type ipv4_addr . inet_service : verdict\n  elements = {\n";
    r += &format!("   {VIP} . 81 : goto svc0e,\n");
    for i in 0..services {
        r += &format!("   {} . 80 : goto svc{i},\n", vip(i));
    }
    r += "  }\n }\n chain pre {\n  type nat hook prerouting priority dstnat;\n  ip daddr . tcp dport vmap @services\n }\n}\n";
    r
}

/// Starts the name and echo servers of a backend at `addr` called `name`.
fn serve(ns: &Netns, addr: &str, name: &str) -> Vec<common::Spawned> {
    let s = [BACKEND, ECHO].map(|code| ns.spawn(&["python3", "-c", code, addr, name]));
    ns.wait_for_listener(8080);
    ns.wait_for_listener(8081);
    s.into()
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
    nft(&r, &format!("{tag}-load"), &nft_rules(services));
    let servers = (3..6)
        .zip(&bs)
        .flat_map(|(i, b)| serve(b, &format!("10.0.{i}.2"), &format!("b{i}")))
        .collect();
    let mut all = vec![c, r];
    all.extend(bs);
    (all, servers)
}

/// Loads nftables `rules` in `ns` (through a file named after `tag`).
fn nft(ns: &Netns, tag: &str, rules: &str) {
    let file = std::env::temp_dir().join(format!("edgefwd-{tag}.nft"));
    std::fs::write(&file, rules).unwrap();
    let out = ns.exec(120, &["nft", "-f", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// edgefwd balancing `services` services over the hosts behind Port3,
/// Port4 and vm1: the first at the VIP, with its echo port; the last a
/// load balancer too (announced on Port2), the rest cluster IPs.
fn edgefwd(services: usize) -> (Appliance, Vec<common::Spawned>) {
    let mut cfg = format!("[services]\nflows = {}\n\n", 1 << 18);
    for i in 0..services {
        let (kind, ports) = match i {
            0 => (
                "load-balancer",
                ", { protocol = \"tcp\", port = 81, target_port = 8081 }",
            ),
            // Announced on Port2 (its address is on no port's subnet).
            _ if i + 1 == services => ("load-balancer\"\nannounce = \"Port2", ""),
            _ => ("cluster-ip", ""),
        };
        cfg += &format!(
            "[[service]]\nname = \"s{i}\"\nkind = \"{kind}\"\naddress = \"{}\"\nports = [{{ protocol = \"tcp\", port = 80, target_port = 8080 }}{ports}]\nbackends = [\"10.0.3.2\", \"10.0.4.2\", \"172.28.0.10\"]\n\n",
            vip(i)
        );
    }
    let workers: usize = common::env_or("EDGEFWD_LB_WORKERS", 2);
    let app = Appliance::start_tuned(
        &format!("lbe{services}"),
        &["Port2", "Port3", "Port4", "vm1"],
        &format!("workers = {workers}\n"),
        &cfg,
    );
    let servers = ["Port3", "Port4", "vm1"]
        .iter()
        .flat_map(|p| {
            let h = app.host(p);
            serve(&h.ns, &h.addr(), p)
        })
        .collect();
    (app, servers)
}

/// What removing a backend under load did (see the module docs).
struct Removal {
    survivors: f64,
    survivors_broken: f64,
    removed: f64,
    removed_broken: f64,
    effect_ms: f64,
    new_after: f64,
    failed_after: f64,
}

/// Removes backend `gone` (its name) while the removal client holds its
/// connections: `remove` does it.
fn removal(client: &Netns, gone: &str, remove: impl FnOnce()) -> Removal {
    let mut child = client
        .command(60, &["python3", "-c", REMOVAL, VIP, "300", gone])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the removal client did not start");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    stdin.flush().unwrap();
    remove();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(child.wait().unwrap().success(), "removal client failed");
    let v: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(v.len(), 7, "removal client said {line:?}");
    Removal {
        survivors: v[0],
        survivors_broken: v[1],
        removed: v[2],
        removed_broken: v[3],
        effect_ms: v[4],
        new_after: v[5],
        failed_after: v[6],
    }
}

fn print_removal(services: usize, name: &str, r: &Removal) {
    println!(
        "services/{services} loaded, {name}, backend removed under load: {:.0} of {:.0} held connections to the other backends broken ({:.1}%); {:.0} of {:.0} to the removed one broken; a new connection last reached it {:.1} ms after the command ({:.0} new connections in the next 0.5 s, {:.0} failed)",
        r.survivors_broken,
        r.survivors,
        100.0 * r.survivors_broken / r.survivors.max(1.0),
        r.removed_broken,
        r.removed,
        r.effect_ms,
        r.new_after,
        r.failed_after,
    );
}

/// One number of services loaded: (kernel, edgefwd) new connections/s and
/// connect() p50, to the first service.
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
    let conns: usize = common::env_or("EDGEFWD_LB_CONNS", 2000);
    let loads: Vec<usize> = std::env::var("EDGEFWD_LB_SERVICES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 1_000, 10_000]);
    let mut figures = Vec::new();
    for services in loads {
        let (k, _ks) = kernel(services);
        let (e, _es) = edgefwd(services);
        let ec = &e.host("Port2").ns;
        ec.ip(&[
            "addr",
            "add",
            &format!("{PLAIN}/24"),
            "dev",
            e.host("Port2").dev,
        ]);
        let last = vip(services - 1);
        // By forwarder and service (first, last); and edgefwd plainly
        // routing to one backend.
        let mut runs: Vec<(String, Vec<Figures>)> = Vec::new();
        let mut plain = Vec::new();
        for _ in 0..ROUNDS {
            let this = [
                (
                    "kernel nftables, first service",
                    run_client(&k[0], (VIP, 80), conns),
                ),
                ("edgefwd, first service", run_client(ec, (VIP, 80), conns)),
                (
                    "kernel nftables, last service",
                    run_client(&k[0], (&last, 80), conns),
                ),
                ("edgefwd, last service", run_client(ec, (&last, 80), conns)),
            ];
            for (name, f) in this {
                match runs.iter_mut().find(|(n, _)| n == name) {
                    Some((_, v)) => v.push(f),
                    None => runs.push((name.to_owned(), vec![f])),
                }
            }
            if services == 1 {
                // From an address of its own: a client port that a
                // service flow to this pod used minutes ago could meet
                // the pod's TIME_WAIT (see the README's limits).
                plain.push(run_client_from(ec, ("10.0.3.2", 8080), conns, Some(PLAIN)));
            }
        }
        let sum = |v: &[Figures], f: fn(&Figures) -> f64| median(v.iter().map(f).collect());
        for (name, v) in &runs {
            println!(
                "services/{services} loaded, {name}: {:.0} new connections/s, connect p50 {:.0} µs p99 {:.0} µs, busiest backend {:.2}x the mean ({conns} connections, median of {ROUNDS})",
                sum(v, |f| f.rate),
                sum(v, |f| f.p50),
                sum(v, |f| f.p99),
                sum(v, |f| f.skew),
            );
        }
        let of = |name: &str| &runs.iter().find(|(n, _)| n == name).unwrap().1;
        let (kf, ef) = (
            of("kernel nftables, first service"),
            of("edgefwd, first service"),
        );
        let (kr, er) = (sum(kf, |f| f.rate), sum(ef, |f| f.rate));
        println!(
            "services/{services} loaded: edgefwd {:.2}x the kernel's new connections/s",
            er / kr
        );
        if !plain.is_empty() {
            let pr = sum(&plain, |f| f.rate);
            println!(
                "services/{services} loaded, edgefwd routing straight to one backend: {pr:.0} new connections/s, connect p50 {:.0} µs; through the service {:.2}x that (target 0.9x)",
                sum(&plain, |f| f.p50),
                er / pr
            );
        }
        figures.push(Row {
            services,
            rate: (kr, er),
            p50: (sum(kf, |f| f.p50), sum(ef, |f| f.p50)),
        });
        let r = removal(&k[0], "b5", || {
            let rules = format!(
                "flush chain ip lb svc0\nadd rule ip lb svc0 {}\nflush chain ip lb svc0e\nadd rule ip lb svc0e {}\n",
                dnat(&[3, 4], 8080),
                dnat(&[3, 4], 8081)
            );
            nft(&k[1], &format!("lbk{services}-remove"), &rules);
        });
        print_removal(services, "kernel nftables", &r);
        let r = removal(ec, "vm1", || {
            edgefwd_control::api::call(
                &e.socket,
                edgefwd_control::api::Command::ServiceBackend {
                    name: "s0".into(),
                    action: "remove".into(),
                    address: "172.28.0.10".into(),
                    weight: None,
                },
            )
            .unwrap();
        });
        print_removal(services, "edgefwd", &r);
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
                "new connections/s through the service (1 / 1,000 / 10,000 services loaded)",
                |f| f.rate,
            ),
            panel(
                "connect() p50, µs (1 / 1,000 / 10,000 services loaded)",
                |f| f.p50,
            ),
        ],
    );
}
