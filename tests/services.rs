//! Services, configured as an operator would. By replay: a load balancer
//! on Port2 (an address from the pool) balancing over three pods on the
//! internal switch, and a cluster IP (output pcaps read back with
//! etherparse, every frame's checksums checked). On TAPs: a client
//! fetching a page through the address, and its announcement.

mod common;

use std::collections::BTreeMap;

use edgefwd_control::config::Config;
use edgefwd_control::replay::{replay_with, Input, Options, Source};
use edgefwd_control::report::Report;
use edgefwd_control::trace::TraceReader;
use edgefwd_core::packet::check::check_frame;
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

const CONFIG: &str = r#"
[[port]]
name = "Port2"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.15/24"]
gateway = "10.0.2.1"

[[port]]
name = "vm1"
switch = "internal"

[[port]]
name = "vm2"
switch = "internal"

[[port]]
name = "vm3"
switch = "internal"

[[switch]]
name = "internal"
kind = "internal"
address = "172.28.0.1/24"
mac = "02:00:00:00:28:01"
nat = "Port2"

[[neighbor]]
interface = "Port2"
address = "10.0.2.1"
mac = "02:00:00:00:99:01"

[[neighbor]]
interface = "internal"
address = "172.28.0.10"
mac = "02:00:00:00:28:10"

[[neighbor]]
interface = "internal"
address = "172.28.0.11"
mac = "02:00:00:00:28:11"

[[neighbor]]
interface = "internal"
address = "172.28.0.12"
mac = "02:00:00:00:28:12"

[services]
load_balancer_pool = ["10.0.2.100-10.0.2.120"]

[[service]]
name = "web"
kind = "load-balancer"
ports = [{ protocol = "tcp", port = 80, target_port = 8080 }]
backends = ["172.28.0.10", "172.28.0.11", "172.28.0.12"]

[[service]]
name = "dns"
kind = "cluster-ip"
address = "10.96.0.10"
ports = [{ protocol = "udp", port = 53 }]
backends = ["172.28.0.10"]
"#;

const GW: [u8; 6] = [2, 0, 0, 0, 0x99, 1];
const PORT2: [u8; 6] = [2, 0, 0, 0, 2, 1];
const VIP: [u8; 4] = [10, 0, 2, 100];

/// Replays `inputs` with `workers` workers (frames dealt as a multi-queue
/// TAP would, flows handed to the worker of their client): the frames each
/// port sent, and the report.
fn run_on(
    workers: usize,
    inputs: Vec<(&str, &'static [u8])>,
) -> (BTreeMap<String, Vec<Vec<u8>>>, Report) {
    let cfg = Config::parse(CONFIG).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs
        .into_iter()
        .map(|(port, data)| Input {
            port: port.into(),
            source: Source::Bytes {
                name: port.into(),
                data,
            },
        })
        .collect();
    let opts = Options {
        workers,
        ..Options::default()
    };
    let (report, _) = replay_with(&cfg, inputs, dir.path(), &opts).unwrap();
    let mut sent = BTreeMap::new();
    for p in &cfg.ports {
        let Ok(mut r) = TraceReader::open(&dir.path().join(format!("{}.pcap", p.name))) else {
            continue;
        };
        let mut frames = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            check_frame(&rec.data).unwrap_or_else(|e| panic!("{}: {e}", p.name));
            frames.push(rec.data);
        }
        sent.insert(p.name.clone(), frames);
    }
    let t = &report.packets;
    assert_eq!(
        t.received,
        t.forwarded + t.local + t.dropped,
        "accounting identity"
    );
    (sent, report)
}

fn tcp(src_mac: [u8; 6], dst_mac: [u8; 6], src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, 1, 1000)
        .syn()
        .write(&mut v, b"")
        .unwrap();
    v
}

/// (source, destination) addresses and ports of a TCP/UDP frame.
fn ends(f: &[u8]) -> (([u8; 4], u16), ([u8; 4], u16)) {
    let s = SlicedPacket::from_ethernet(f).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = s.net else {
        panic!("IPv4")
    };
    let (a, b) = (
        ip.header().source_addr().octets(),
        ip.header().destination_addr().octets(),
    );
    match s.transport {
        Some(TransportSlice::Tcp(t)) => ((a, t.source_port()), (b, t.destination_port())),
        Some(TransportSlice::Udp(u)) => ((a, u.source_port()), (b, u.destination_port())),
        _ => panic!("not TCP/UDP"),
    }
}

#[test]
fn a_load_balancer_spreads_clients_over_the_pods_which_see_them_and_answer_as_the_vip() {
    let clients: Vec<(u64, Vec<u8>)> = (0..300u32)
        .map(|i| {
            (
                u64::from(i),
                tcp(
                    GW,
                    PORT2,
                    ((0xc633_6400u32 + i % 250).to_be_bytes(), 20_000 + i as u16),
                    (VIP, 80),
                ),
            )
        })
        .collect();
    for workers in [1, 2, 4] {
        let (sent, report) = run_on(workers, vec![("Port2", common::pcap_in_memory(&clients))]);
        // The pods have not spoken yet, so the switch floods each frame to
        // every member: vm1's copies show them all.
        let mut per_pod = BTreeMap::new();
        for f in &sent["vm1"] {
            let ((src, _), (dst, dport)) = ends(f);
            assert_eq!(
                src[..3],
                [198, 51, 100],
                "the pod sees the client's address"
            );
            assert_eq!(dport, 8080);
            *per_pod.entry(dst).or_insert(0) += 1;
        }
        assert_eq!(
            per_pod.values().sum::<i32>(),
            300,
            "{per_pod:?} {:?}",
            report.drops
        );
        assert!(per_pod.values().all(|&n| n > 60), "split {per_pod:?}");

        // The pods answer: the client hears the VIP.
        let first = sent["vm1"]
            .iter()
            .find(|f| ends(f).1 .0 == [172, 28, 0, 11])
            .unwrap();
        let ((client, cport), (pod, _)) = ends(first);
        let mut answer = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0x28, 0x11], [2, 0, 0, 0, 0x28, 1])
            .ipv4(pod, client, 64)
            .tcp(8080, cport, 7, 1000)
            .syn()
            .ack(2)
            .write(&mut answer, b"")
            .unwrap();
        let (sent2, report2) = run_on(
            workers,
            vec![
                ("Port2", common::pcap_in_memory(&clients)),
                ("vm2", common::pcap_in_memory(&[(1000, answer)])),
            ],
        );
        let out: Vec<_> = sent2["Port2"]
            .iter()
            .filter(|f| f.len() > 42 && f[12..14] == [8, 0])
            .collect();
        assert_eq!(out.len(), 1, "one answer out of Port2");
        assert_eq!(
            ends(out[0]),
            ((VIP, 80), (client, cport)),
            "from the VIP, not NATed"
        );
        // With several workers, clients' flows were handed to their owners.
        assert_eq!(
            report2.packets.handed_off > 0,
            workers > 1,
            "{workers} workers"
        );
    }
}

#[test]
fn clusterip_from_outside_is_dropped() {
    for workers in [1, 2, 4] {
        let mut q = Vec::new();
        PacketBuilder::ethernet2(GW, PORT2)
            .ipv4([198, 51, 100, 1], [10, 96, 0, 10], 64)
            .udp(4000, 53)
            .write(&mut q, b"q")
            .unwrap();
        let (sent, report) = run_on(workers, vec![("Port2", common::pcap_in_memory(&[(0, q)]))]);
        assert!(sent["vm1"].is_empty());
        assert_eq!(report.drops.get("service_outside_cluster"), Some(&1));
        // From a pod on the internal switch it is answered.
        let mut q = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0x28, 0x12], [2, 0, 0, 0, 0x28, 1])
            .ipv4([172, 28, 0, 12], [10, 96, 0, 10], 64)
            .udp(4000, 53)
            .write(&mut q, b"q")
            .unwrap();
        let (sent, _) = run_on(
            workers,
            vec![("vm3", common::pcap_in_memory(&[(0, q.clone())]))],
        );
        assert_eq!(sent["vm1"].len(), 1);
        let (hairpin, backend) = ends(&sent["vm1"][0]);
        assert_eq!(backend, ([172, 28, 0, 10], 53));
        // The pod shares the backend's segment: the backend sees the
        // gateway's address (on a port naming the flow's worker), and its
        // answer goes back to the pod from the service.
        assert_eq!(hairpin.0, [172, 28, 0, 1], "hairpinned from the gateway");
        let mut a = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0x28, 0x10], [2, 0, 0, 0, 0x28, 1])
            .ipv4(backend.0, hairpin.0, 64)
            .udp(53, hairpin.1)
            .write(&mut a, b"a")
            .unwrap();
        let (sent, report) = run_on(
            workers,
            vec![
                ("vm3", common::pcap_in_memory(&[(0, q)])),
                ("vm1", common::pcap_in_memory(&[(1000, a)])),
            ],
        );
        // (vm3 also has the query's flooded copy: the backend's MAC was
        // not learned yet.)
        let back: Vec<_> = sent["vm3"]
            .iter()
            .filter(|f| f.len() > 42 && f[12..14] == [8, 0] && ends(f).1 .0 == [172, 28, 0, 12])
            .collect();
        let seen: Vec<_> = back.iter().map(|f| ends(f)).collect();
        assert_eq!(
            back.len(),
            1,
            "{workers} workers: {:?} {seen:?}",
            report.drops
        );
        assert_eq!(
            ends(back[0]),
            (([10, 96, 0, 10], 53), ([172, 28, 0, 12], 4000))
        );
    }
}

/// On TAPs: a client namespace behind Port2 fetches a page from the load
/// balancer's address, served by a backend namespace behind Port3 that
/// sees the client's own address; and `service announce` sends three
/// gratuitous ARPs for the address, seen by tcpdump on the client's side.
#[test]
fn a_client_reaches_a_backend_through_the_vip_on_taps_and_hears_it_announced() {
    const T: &str = "a_client_reaches_a_backend_through_the_vip_on_taps_and_hears_it_announced";
    if !common::need_root_and_ping(T)
        || !common::need_tool(T, "python3", "--version")
        || !common::need_tool(T, "tcpdump", "--version")
    {
        return;
    }
    let services = "[services]\nflows = 1024\n\n[[service]]\nname = \"web\"\nkind = \"load-balancer\"\naddress = \"10.0.2.100\"\nports = [{ protocol = \"tcp\", port = 80, target_port = 8080 }]\nbackends = [\"10.0.3.2\"]\n";
    let app = common::appliance::Appliance::start("svc", &["Port2", "Port3"], services);
    let (h2, h3) = (app.host("Port2"), app.host("Port3"));
    let _server = h3.ns.spawn(&["python3", "-c", WHO_ASKS]);
    h3.ns.wait_for_listener(8080);
    let out = h2.ns.exec(
        10,
        &["python3", "-c", "import urllib.request as u;print(u.urlopen('http://10.0.2.100/',timeout=5).read().decode())"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        h2.addr(),
        "the backend saw the client's address"
    );

    let (v, seen) = announce_under_tcpdump(&app, h2, "web", "arp");
    assert_eq!(v["addresses"], serde_json::json!(["10.0.2.100"]));
    let garps = seen
        .lines()
        .filter(|l| l.contains("Request who-has 10.0.2.100 tell 10.0.2.100"))
        .count();
    assert!(garps >= 3, "{garps} gratuitous ARPs seen:\n{seen}");
}

/// `service announce NAME` while tcpdump (`filter`) listens on `host`'s
/// side for 5 s: the daemon's answer, and what tcpdump printed.
fn announce_under_tcpdump(
    app: &common::appliance::Appliance,
    host: &common::appliance::Host,
    name: &str,
    filter: &str,
) -> (serde_json::Value, String) {
    let mut dump = host
        .ns
        .command(5, &["tcpdump", "-l", "-nn", "-i", host.dev, filter])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Announce only once tcpdump listens (it says so on stderr).
    let stderr = dump.stderr.take().unwrap();
    let (ready, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening on") {
                let _ = ready.send(());
            }
        }
    });
    listening
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("tcpdump did not start listening within 5 s");
    let v = edgefwd_control::api::call(
        &app.socket,
        edgefwd_control::api::Command::ServiceAnnounce { name: name.into() },
    )
    .unwrap();
    let seen = String::from_utf8_lossy(&dump.wait_with_output().unwrap().stdout).into_owned();
    (v, seen)
}

/// On TAPs, a dual-stack load balancer (one address of each family from
/// the pool): a client behind Port2 fetches a page over IPv6 and over
/// IPv4 from a backend behind Port3 that answers with the client's own
/// address (so it saw the client, not the appliance), the client's
/// kernel having found the IPv6 address by neighbour discovery; and
/// `service announce` sends three unsolicited neighbour advertisements
/// for it, seen by tcpdump on the client's side.
#[test]
fn an_ipv6_client_reaches_a_dual_stack_service_on_taps_and_hears_it_announced() {
    const T: &str = "an_ipv6_client_reaches_a_dual_stack_service_on_taps_and_hears_it_announced";
    if !common::need_root_and_ping(T)
        || !common::need_tool(T, "python3", "--version")
        || !common::need_tool(T, "tcpdump", "--version")
    {
        return;
    }
    let services = "[services]\nflows = 1024\nload_balancer_pool = [\"10.0.2.100-10.0.2.110\", \"fd00:2::100/120\"]\n\n[[service]]\nname = \"web\"\nkind = \"load-balancer\"\nports = [{ protocol = \"tcp\", port = 80, target_port = 8080 }]\nbackends = [\"10.0.3.2\", \"fd00:3::2\"]\n";
    let app = common::appliance::Appliance::start("svc6", &["Port2", "Port3"], services);
    let (h2, h3) = (app.host("Port2"), app.host("Port3"));
    h2.configure_v6();
    h3.configure_v6();
    let _server = h3.ns.spawn(&["python3", "-c", WHO_ASKS]);
    h3.ns.wait_for_listener(8080);
    let shown = edgefwd_control::api::call(
        &app.socket,
        edgefwd_control::api::Command::ServiceShow {
            name: Some("web".into()),
        },
    )
    .unwrap();
    assert_eq!(
        shown["services"][0]["addresses"],
        serde_json::json!(["10.0.2.100", "fd00:2::100"]),
        "one address of each backend family, the lowest free"
    );
    for (url, client) in [
        ("http://[fd00:2::100]/", h2.addr6()),
        ("http://10.0.2.100/", h2.addr()),
    ] {
        let fetch = format!(
            "import urllib.request as u;print(u.urlopen('{url}',timeout=5).read().decode())"
        );
        let out = h2.ns.exec(10, &["python3", "-c", &fetch]);
        assert!(
            out.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            client,
            "{url}: the backend saw the client's address"
        );
    }
    let neigh = h2.ns.ip(&["-6", "neigh", "show", "fd00:2::100"]);
    assert!(
        neigh.contains("02:00:00:00:02:01"),
        "the VIP's neighbour entry: {neigh}"
    );

    let (v, seen) = announce_under_tcpdump(&app, h2, "web", "icmp6 and ip6[40] == 136");
    assert_eq!(
        v["addresses"],
        serde_json::json!(["10.0.2.100", "fd00:2::100"])
    );
    let nas = seen
        .lines()
        .filter(|l| {
            l.contains("fd00:2::100 > ff02::1")
                && l.contains("neighbor advertisement")
                && l.contains("tgt is fd00:2::100")
        })
        .count();
    assert!(
        nas >= 3,
        "{nas} unsolicited neighbour advertisements seen:\n{seen}"
    );
}

/// A small HTTP server on port 8080 of every address, IPv4 and IPv6,
/// answering each request with the address it came from.
const WHO_ASKS: &str = "import http.server as s, socket\nclass H(s.BaseHTTPRequestHandler):\n def do_GET(self):\n  b=self.client_address[0].removeprefix('::ffff:').encode()\n  self.send_response(200);self.send_header('Content-Length',str(len(b)));self.end_headers();self.wfile.write(b)\n def log_message(self,*a): pass\nclass S(s.HTTPServer):\n address_family=socket.AF_INET6\nS(('::',8080),H).serve_forever()";

/// A small HTTP server answering every request with `name`.
const SERVER: &str = "import http.server as s, sys\nclass H(s.BaseHTTPRequestHandler):\n def do_GET(self):\n  b=sys.argv[2].encode()\n  self.send_response(200);self.send_header('Content-Length',str(len(b)));self.end_headers();self.wfile.write(b)\n def log_message(self,*a): pass\ns.ThreadingHTTPServer((sys.argv[1],8080),H).serve_forever()";

/// `n` sequential fetches of the VIP, each a new TCP connection from
/// source port `first + i` (so the flows, and Maglev's split of them, are
/// the same every run): the names that answered, as `name count` lines.
const CLIENT: &str = "import http.client as h, collections, sys\nc=collections.Counter()\nn,first=int(sys.argv[1]),int(sys.argv[2])\nfor i in range(n):\n k=h.HTTPConnection('10.0.2.100',80,timeout=5,source_address=('10.0.2.2',first+i))\n k.request('GET','/')\n c[k.getresponse().read().decode()]+=1\n k.close()\nfor k,v in c.items(): print(k,v)";

/// On TAPs, three backends (behind Port3, Port4 and vm1) serve a load
/// balancer that a client behind Port2 connects to again and again: every
/// connection succeeds, the split is even (chi-square at p >= 0.01; the
/// client's ports are fixed, so the flows and their split are the same
/// every run, and the test cannot fail by chance), and once one backend
/// is drained it takes no new connection.
#[test]
fn connections_through_the_vip_split_evenly_over_three_backends_and_drain_stops_new_ones() {
    const T: &str =
        "connections_through_the_vip_split_evenly_over_three_backends_and_drain_stops_new_ones";
    if !common::need_root_and_ping(T) || !common::need_tool(T, "python3", "--version") {
        return;
    }
    let services = "[services]\nflows = 65536\n\n[[service]]\nname = \"web\"\nkind = \"load-balancer\"\naddress = \"10.0.2.100\"\nports = [{ protocol = \"tcp\", port = 80, target_port = 8080 }]\nbackends = [\"10.0.3.2\", \"10.0.4.2\", \"172.28.0.10\"]\n";
    let app =
        common::appliance::Appliance::start("svcs", &["Port2", "Port3", "Port4", "vm1"], services);
    let client = app.host("Port2");
    let mut servers = Vec::new();
    for port in ["Port3", "Port4", "vm1"] {
        let h = app.host(port);
        servers.push(h.ns.spawn(&["python3", "-c", SERVER, &h.addr(), port]));
        h.ns.wait_for_listener(8080);
    }
    let fetch = |n: usize, first: u16| -> BTreeMap<String, usize> {
        let out = client.ns.exec(
            120,
            &["python3", "-c", CLIENT, &n.to_string(), &first.to_string()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
            .collect()
    };
    let split = fetch(600, 20_000);
    assert_eq!(split.values().sum::<usize>(), 600, "{split:?}");
    let e = 200.0;
    let chi2: f64 = ["Port3", "Port4", "vm1"]
        .iter()
        .map(|b| {
            let n = *split.get(*b).unwrap_or(&0) as f64;
            (n - e) * (n - e) / e
        })
        .sum();
    assert!(
        chi2 < 9.21,
        "split {split:?}: chi-square {chi2:.2} (1% critical value 9.21)"
    );

    edgefwd_control::api::call(
        &app.socket,
        edgefwd_control::api::Command::ServiceBackend {
            name: "web".into(),
            action: "drain".into(),
            address: "10.0.4.2".into(),
            weight: None,
        },
    )
    .unwrap();
    let after = fetch(300, 21_000);
    assert_eq!(after.values().sum::<usize>(), 300, "{after:?}");
    assert_eq!(
        after.get("Port4"),
        None,
        "the drained backend took new connections: {after:?}"
    );
    drop(servers);
}

/// Backends' echo (TCP 8081: the name, then echo until closed) and name
/// (UDP 5353: each datagram answered with the name) servers.
const ECHO_AND_NAME: &str = "import socket,sys,threading\na,n=sys.argv[1],sys.argv[2].encode()\nu=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);u.bind((a,5353))\ndef udp():\n while True:\n  d,p=u.recvfrom(64);u.sendto(n,p)\nthreading.Thread(target=udp,daemon=True).start()\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind((a,8081));s.listen(128)\ndef serve(c):\n try:\n  c.sendall(n)\n  while True:\n   d=c.recv(64)\n   if not d: break\n   c.sendall(d)\n except OSError: pass\nwhile True:\n c,_=s.accept();threading.Thread(target=serve,args=(c,),daemon=True).start()";

/// The client of the removal test: 60 TCP connections to the VIP's echo
/// port and 60 UDP flows to its port 53, from fixed source ports; prints
/// each one's backend, waits for a line, then prints, per TCP connection,
/// whether it still echoes, and per UDP flow, who answers now.
const HOLDER: &str = "import socket,sys,json\nvip='10.0.2.100'\ntcp=[];udp=[]\nfor i in range(60):\n s=socket.socket();s.bind(('10.0.2.2',30000+i));s.settimeout(5);s.connect((vip,81));tcp.append((s,s.recv(64).decode()))\n u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);u.bind(('10.0.2.2',31000+i));u.settimeout(5);u.sendto(b'q',(vip,53));udp.append((u,u.recvfrom(64)[0].decode()))\nprint('ready',flush=True)\nsys.stdin.readline()\nout={'tcp':[],'udp':[]}\nfor s,n in tcp:\n ok=False\n try:\n  s.settimeout(2);s.sendall(b'x');ok=s.recv(1)==b'x'\n except OSError: pass\n out['tcp'].append([n,ok])\nfor u,n in udp:\n u.settimeout(2);u.sendto(b'q',(vip,53))\n try: now=u.recvfrom(64)[0].decode()\n except OSError: now=''\n out['udp'].append([n,now])\nprint(json.dumps(out),flush=True)";

/// On TAPs, a backend removed while a client holds TCP connections and UDP
/// flows through the service: no connection to the other backends breaks,
/// those to the removed one are reset, the UDP flows on the other backends
/// keep them, and those on the removed one are answered by a live backend
/// with their next datagram.
#[test]
fn removing_a_backend_breaks_no_connection_to_the_others_and_moves_its_udp_flows() {
    const T: &str = "removing_a_backend_breaks_no_connection_to_the_others_and_moves_its_udp_flows";
    if !common::need_root_and_ping(T) || !common::need_tool(T, "python3", "--version") {
        return;
    }
    let services = "[services]\nflows = 65536\n\n[[service]]\nname = \"web\"\nkind = \"load-balancer\"\naddress = \"10.0.2.100\"\nports = [{ protocol = \"tcp\", port = 81, target_port = 8081 }, { protocol = \"udp\", port = 53, target_port = 5353 }]\nbackends = [\"10.0.3.2\", \"10.0.4.2\", \"172.28.0.10\"]\n";
    let app =
        common::appliance::Appliance::start("svcr", &["Port2", "Port3", "Port4", "vm1"], services);
    let mut servers = Vec::new();
    for port in ["Port3", "Port4", "vm1"] {
        let h = app.host(port);
        servers.push(h.ns.spawn(&["python3", "-c", ECHO_AND_NAME, &h.addr(), port]));
        h.ns.wait_for_listener(8081);
    }
    let client = app.host("Port2");
    let mut holder = client
        .ns
        .command(60, &["python3", "-c", HOLDER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(holder.stdout.take().unwrap()));
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "ready",
        "the client's flows did not open"
    );
    edgefwd_control::api::call(
        &app.socket,
        edgefwd_control::api::Command::ServiceBackend {
            name: "web".into(),
            action: "remove".into(),
            address: "172.28.0.10".into(),
            weight: None,
        },
    )
    .unwrap();
    // The workers take the change with their next snapshot.
    std::thread::sleep(std::time::Duration::from_millis(200));
    std::io::Write::write_all(&mut holder.stdin.take().unwrap(), b"go\n").unwrap();
    let report: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(holder.wait().unwrap().success());
    let pairs = |k: &str| -> Vec<(String, serde_json::Value)> {
        report[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].clone()))
            .collect()
    };
    let tcp = pairs("tcp");
    let on_gone = tcp.iter().filter(|(b, _)| b == "vm1").count();
    assert!(
        (5..55).contains(&on_gone),
        "{on_gone} of 60 connections on vm1"
    );
    for (backend, ok) in &tcp {
        assert_eq!(
            ok.as_bool(),
            Some(backend != "vm1"),
            "a connection to {backend}: the others' live on, the removed one's are reset"
        );
    }
    let udp = pairs("udp");
    assert!(udp.iter().any(|(b, _)| b == "vm1"), "{udp:?}");
    for (before, now) in &udp {
        let now = now.as_str().unwrap();
        if before == "vm1" {
            assert!(
                now == "Port3" || now == "Port4",
                "a UDP flow of the removed backend moved with its next datagram: {now:?}"
            );
        } else {
            assert_eq!(now, before, "a UDP flow keeps its live backend");
        }
    }
    drop(servers);
}

/// A backend's own traffic to the appliance is the appliance's, on any
/// worker: pings to its gateway are answered, and a datagram from a port
/// a service targets, which answers no hairpinned flow, is delivered
/// locally (and refused there) rather than taken for a service's.
#[test]
fn a_backends_own_traffic_to_the_gateway_stays_local_on_any_worker() {
    let vm1 = [2, 0, 0, 0, 0x28, 0x10];
    let gw_if = [2, 0, 0, 0, 0x28, 1];
    let mut frames = Vec::new();
    for id in 1..=16u16 {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(vm1, gw_if)
            .ipv4([172, 28, 0, 10], [172, 28, 0, 1], 64)
            .icmpv4_echo_request(id, 1)
            .write(&mut f, b"ping")
            .unwrap();
        frames.push((u64::from(id), f));
        let mut u = Vec::new();
        PacketBuilder::ethernet2(vm1, gw_if)
            .ipv4([172, 28, 0, 10], [172, 28, 0, 1], 64)
            .udp(53, 40000 + id)
            .write(&mut u, b"not a reply")
            .unwrap();
        frames.push((u64::from(id) + 100, u));
    }
    let pcap = common::pcap_in_memory(&frames);
    for workers in [1, 2, 4] {
        let (sent, report) = run_on(workers, vec![("vm1", pcap)]);
        let replies = sent["vm1"]
            .iter()
            .filter(|f| {
                SlicedPacket::from_ethernet(f).is_ok_and(
                    |s| matches!(s.transport, Some(TransportSlice::Icmpv4(i)) if i.type_u8() == 0),
                )
            })
            .count();
        assert_eq!(replies, 16, "{workers} workers: every ping answered");
        assert_eq!(
            report.drops.get("local_unsupported"),
            Some(&16),
            "{workers} workers: {:?}",
            report.drops
        );
    }
}
