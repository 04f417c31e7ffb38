//! `vhost-user:` ports end to end.
//!
//! - A hostile test frontend (`common::virtio`, a virtio-net driver of its
//!   own over the `vhost` crate's frontend) posts chains outside guest
//!   memory, loops, oversize chains and chains of the wrong direction:
//!   each is counted, given back, and the port keeps answering. It then
//!   leaves and a new one connects: the link follows.
//! - DPDK's `dpdk-testpmd` with a `net_virtio_user` port plays the VM: it
//!   forwards (io mode) between that port and a TAP of its own (`net_tap`)
//!   in a namespace, whose kernel then talks through edgefwd like a VM's
//!   would. Ping, a 50 MB TCP transfer checked by sha256 to a host on a
//!   TAP port, two such VMs talking to each other, and a VM that goes away
//!   mid-stream and comes back. The hosts' kernels are the oracle.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::testpmd::{need_testpmd, Testpmd, VmSpec};
use common::virtio::{TestVm, F_VERSION_1, MEM, NEXT, RX_AT, RX_BUF, TX_AT, WRITE};
use common::{Daemon, Netns};
use edgefwd_control::config::Config;
use edgefwd_core::stats::DropReason;
use vm_memory::{Bytes, GuestAddress};

const TEST: &str = "vhost_user";
const VM_MAC: [u8; 6] = [0x02, 0, 0, 0, 3, 2];
const EDGE_MAC: [u8; 6] = [0x02, 0, 0, 0, 3, 1];

/// An ARP request from the test VM (10.0.3.2) for 10.0.3.1, behind a
/// zero virtio-net header of `hdr` bytes.
fn arp_request(hdr: usize) -> Vec<u8> {
    let mut f = vec![0u8; hdr];
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&VM_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&VM_MAC);
    f.extend_from_slice(&[10, 0, 3, 2]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 0, 3, 1]);
    f
}

/// Sends an ARP request from `vm` (as chain head `head` of its transmit
/// ring, descriptor `head` too) and checks edgefwd's answer in its next
/// receive buffer, with another parser (etherparse).
fn arp_round_trip(vm: &mut TestVm, head: u16, tx_used: u16, rx_used: u16) {
    let req = arp_request(12);
    let at = TX_AT + 0x1000 * u64::from(head);
    vm.write(at, &req);
    vm.desc(1, head, at, req.len() as u32, 0, 0);
    vm.post(1, head);
    vm.kick(1);
    vm.wait_used(1, tx_used);
    vm.wait_used(0, rx_used);
    let (id, len) = vm.used(0, rx_used - 1);
    let buf = vm.rx_buffer(id, len);
    assert!(buf.len() > 12, "a frame behind the header: {len} bytes");
    let eth = etherparse::SlicedPacket::from_ethernet(&buf[12..]).expect("an Ethernet frame");
    let Some(etherparse::NetSlice::Arp(arp)) = eth.net else {
        panic!("not ARP: {:02x?}", &buf[12..]);
    };
    assert_eq!(arp.operation(), etherparse::ArpOperation::REPLY);
    assert_eq!(arp.sender_protocol_addr(), &[10, 0, 3, 1]);
    assert_eq!(arp.sender_hw_addr(), &EDGE_MAC);
    assert_eq!(arp.target_protocol_addr(), &[10, 0, 3, 2]);
    assert_eq!(arp.target_hw_addr(), &VM_MAC);
}

fn vm_port_config(dir: &Path, sock: &Path) -> Config {
    let toml = format!(
        "[dataplane]\nworkers = 2\n[control]\nsocket = \"{}\"\n\n\
         [[port]]\nname = \"Port3\"\nbind = \"vhost-user:{}\"\nmac = \"02:00:00:00:03:01\"\naddresses = [\"10.0.3.1/24\"]\n",
        dir.join("control.sock").display(),
        sock.display()
    );
    Config::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

#[test]
fn hostile_descriptors_are_counted_given_back_and_the_port_keeps_working() {
    let dir = common::temp_dir("vhost-hostile");
    let sock = dir.path().join("vm.sock");
    let control = dir.path().join("control.sock");
    let mut daemon = Daemon::start(vm_port_config(dir.path(), &sock));
    let mut vm = TestVm::connect(&sock, F_VERSION_1);
    common::wait_for_link(&control, "Port3", "up");
    vm.post_rx(8);

    // Each chain below is one the guest may not post.
    // 0: a buffer far outside guest memory.
    vm.desc(1, 0, 1 << 40, 64, 0, 0);
    // 1: a loop, 1 -> 2 -> 1.
    vm.desc(1, 1, TX_AT, 64, NEXT, 2);
    vm.desc(1, 2, TX_AT + 64, 64, NEXT, 1);
    // 3: larger than any frame (128 KiB).
    vm.desc(1, 3, TX_AT, 0x20000, 0, 0);
    // 4: `next` outside the descriptor table.
    vm.desc(1, 4, TX_AT, 64, NEXT, 200);
    // 5: write-only, in a transmit chain.
    vm.desc(1, 5, TX_AT, 64, WRITE, 0);
    // 6: an indirect table whose length is not a whole descriptor.
    vm.desc(1, 6, TX_AT, 15, 4, 0);
    // 8: an indirect table of 300 one-byte descriptors (longer than any
    // chain a guest needs).
    let table = TX_AT + 0x8000;
    for i in 0..300u16 {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&TX_AT.to_le_bytes());
        d[8..12].copy_from_slice(&1u32.to_le_bytes());
        let (flags, next) = if i < 299 { (NEXT, i + 1) } else { (0, 0) };
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        vm.write(table + 16 * u64::from(i), &d);
    }
    vm.desc(1, 8, table, 300 * 16, 4, 0);
    for head in [0, 1, 3, 4, 5, 6, 8] {
        vm.post(1, head);
    }
    vm.kick(1);
    vm.wait_used(1, 7);
    for n in 0..7 {
        assert_eq!(vm.used(1, n).1, 0, "a transmit chain is given back empty");
    }
    // The port still answers: an ARP request gets its reply.
    arp_round_trip(&mut vm, 7, 8, 1);

    // The VM goes away: the link goes down; a new one brings it up.
    drop(vm);
    common::wait_for_link(&control, "Port3", "no-carrier");
    let mut vm = TestVm::connect(&sock, F_VERSION_1);
    common::wait_for_link(&control, "Port3", "up");
    vm.post_rx(4);
    arp_round_trip(&mut vm, 0, 1, 1);

    let s = daemon.stop().expect("daemon");
    common::assert_identity(&s);
    let port = &s.stats.ports[0];
    assert_eq!(port.drops[DropReason::VirtioBadDescriptor as usize], 5);
    assert_eq!(port.drops[DropReason::Oversize as usize], 2);
    assert_eq!(port.rx, 9, "seven bad chains and two ARP requests received");
    drop(dir);
}

const VM1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x28, 0x11];
const VM2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x28, 0x12];

/// An Ethernet frame of `len` bytes from `src` to `dst` (an experimental
/// ethertype), its payload a pattern that differs from frame to frame.
fn pattern_frame(src: [u8; 6], dst: [u8; 6], len: usize, seed: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend((0..len - 14).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    f
}

/// Posts `frame` (behind a zero 12-byte header) on `vm`'s transmit ring as
/// chain `head`, split over three descriptors: the header, 7 bytes, the rest
/// (descriptors `head`, `head + 1`, `head + 2`).
fn send_split(vm: &mut TestVm, head: u16, frame: &[u8]) {
    send_split_at(vm, head, frame, TX_AT + 0x1000 * u64::from(head));
}

/// [`send_split`] from guest address `at`.
fn send_split_at(vm: &mut TestVm, head: u16, frame: &[u8], at: u64) {
    let mut bytes = vec![0u8; 12];
    bytes.extend_from_slice(frame);
    vm.write(at, &bytes);
    let cut = [0, 12, 19.min(bytes.len()), bytes.len()];
    for k in 0..3u16 {
        let (from, to) = (cut[k as usize], cut[k as usize + 1]);
        let flags = if k < 2 { NEXT } else { 0 };
        vm.desc(
            1,
            head + k,
            at + from as u64,
            (to - from) as u32,
            flags,
            head + k + 1,
        );
    }
    vm.post(1, head);
}

/// Posts `n` receive chains of two descriptors on `vm` (64 bytes, then the
/// rest of an `RX_BUF` buffer), so that frames are written across pieces.
fn post_rx_split(vm: &mut TestVm, n: u16) {
    for i in 0..n {
        let at = RX_AT + u64::from(i) * RX_BUF;
        vm.desc(0, 2 * i, at, 64, WRITE | NEXT, 2 * i + 1);
        vm.desc(0, 2 * i + 1, at + 64, RX_BUF as u32 - 64, WRITE, 0);
        vm.post(0, 2 * i);
    }
    vm.kick(0);
}

#[test]
fn frames_between_two_vms_on_a_switch_go_guest_to_guest_intact() {
    switch_between_two_vms(true);
}

#[test]
fn with_vm_one_copy_off_frames_between_two_vms_are_copied_whole() {
    switch_between_two_vms(false);
}

/// Two test VMs on an internal switch, with `[dataplane] vm_one_copy` as
/// given: every frame arrives intact, and those longer than the head go
/// guest to guest exactly when it is on.
fn switch_between_two_vms(one_copy: bool) {
    let dir = common::temp_dir("vhost-direct");
    let (sock1, sock2) = (dir.path().join("vm1.sock"), dir.path().join("vm2.sock"));
    let control = dir.path().join("control.sock");
    let toml = format!(
        "[dataplane]\nworkers = 2\nvm_one_copy = {one_copy}\n[control]\nsocket = \"{}\"\n\n\
         [[port]]\nname = \"vm1\"\nswitch = \"internal\"\nbind = \"vhost-user:{}\"\n\n\
         [[port]]\nname = \"vm2\"\nswitch = \"internal\"\nbind = \"vhost-user:{}\"\n\n\
         [[switch]]\nname = \"internal\"\nkind = \"internal\"\naddress = \"172.28.0.1/24\"\nmac = \"02:00:00:00:28:01\"\n",
        control.display(),
        sock1.display(),
        sock2.display()
    );
    let mut daemon = Daemon::start(Config::parse(&toml).unwrap_or_else(|e| panic!("{e}")));
    // Each VM's memory is two regions, and the last frame's buffers on
    // both sides span the two.
    let mut vm1 = TestVm::connect_in(&sock1, F_VERSION_1, 2);
    let mut vm2 = TestVm::connect_in(&sock2, F_VERSION_1, 2);
    common::wait_for_link(&control, "vm1", "up");
    common::wait_for_link(&control, "vm2", "up");
    post_rx_split(&mut vm2, 7);
    let spanning_rx = MEM / 2 - 1000;
    vm2.desc(0, 14, spanning_rx, RX_BUF as u32, WRITE, 0);
    vm2.post(0, 14);
    vm2.kick(0);

    // vm2 speaks first, so the switch learns where its address is; the
    // frame goes to vm1, which has no buffers (counted, not delivered).
    send_split(&mut vm2, 0, &pattern_frame(VM2_MAC, [0xff; 6], 60, 0));
    vm2.kick(1);
    vm2.wait_used(1, 1);

    // Then vm1 sends vm2 frames of every shape: all header, just past
    // the head edgefwd copies, and long; and one to an address nobody
    // has (flooded, so its tail is copied in first).
    let sizes = [60usize, 128, 129, 200, 1000, 1514];
    let mut sent = Vec::new();
    for (k, &len) in sizes.iter().enumerate() {
        sent.push(pattern_frame(VM1_MAC, VM2_MAC, len, k as u8));
    }
    sent.push(pattern_frame(VM1_MAC, [0x02, 0, 0, 0, 0x28, 0x77], 900, 99));
    // Five frames a round: three descriptors each, of the ring's 16.
    for (round, frames) in sent.chunks(5).enumerate() {
        for (k, f) in frames.iter().enumerate() {
            send_split(&mut vm1, 3 * k as u16, f);
        }
        vm1.kick(1);
        vm1.wait_used(1, (5 * round + frames.len()) as u16);
    }
    let spanning = pattern_frame(VM1_MAC, VM2_MAC, 1400, 7);
    send_split_at(&mut vm1, 0, &spanning, MEM / 2 - 700);
    vm1.kick(1);
    sent.push(spanning);
    vm1.wait_used(1, sent.len() as u16);
    vm2.wait_used(0, sent.len() as u16);
    for (n, want) in sent.iter().enumerate() {
        let (id, len) = vm2.used(0, n as u16);
        assert_eq!(len as usize, 12 + want.len(), "frame {n}: length written");
        let got = if id == 14 {
            let mut b = vec![0; len as usize];
            vm2.mem
                .read_slice(&mut b, GuestAddress(spanning_rx))
                .unwrap();
            b
        } else {
            vm2.rx_buffer(id / 2, len)
        };
        assert_eq!(&got[..10], &[0; 10], "frame {n}: a plain virtio-net header");
        assert_eq!(got[10..12], [1, 0], "frame {n}: num_buffers");
        assert!(
            got[12..] == want[..],
            "frame {n} ({} bytes) differs",
            want.len()
        );
    }
    let ports = edgefwd_control::api::call(&control, edgefwd_control::api::Command::PortShow {})
        .expect("port show");
    let direct = ports["ports"][1]["device"]["tx_direct"].as_u64();
    // The frames past the head, the region-spanning one among them.
    let past_head = sizes.iter().filter(|&&l| l > 128).count() as u64 + 1;
    let want = if one_copy { past_head } else { 0 };
    assert_eq!(direct, Some(want), "frames copied guest to guest: {ports}");

    drop((vm1, vm2));
    let s = daemon.stop().expect("daemon");
    common::assert_identity(&s);
    drop(dir);
}

/// edgefwd with a host on a TAP (`Port2`, h2 10.0.2.2) and two VMs on
/// vhost-user (`Port3`: edgefwd listens, VM 10.0.3.2; `Port4`: edgefwd
/// connects to testpmd's socket, VM 10.0.4.2), both VMs in one testpmd.
/// Fields drop in order: testpmd, then the daemon, then the namespaces.
struct Rig {
    testpmd: Option<Testpmd>,
    daemon: Daemon,
    h2: Netns,
    vm3: Netns,
    vm4: Netns,
    dir: tempfile::TempDir,
    tag: String,
    /// Queue pairs of each VM's device.
    queues: u16,
}

impl Rig {
    fn start(tag: &str) -> Rig {
        Rig::start_with(tag, 1)
    }

    /// The rig with `queues` queue pairs on each VM.
    fn start_with(tag: &str, queues: u16) -> Rig {
        let dir = common::temp_dir(tag);
        let (h2, vm3, vm4) = (
            Netns::new(&format!("{tag}-h2")),
            Netns::new(&format!("{tag}-vm3")),
            Netns::new(&format!("{tag}-vm4")),
        );
        let toml = format!(
            "[dataplane]\nworkers = 2\n[control]\nsocket = \"{}\"\n\n\
             [[port]]\nname = \"Port2\"\nbind = \"tap:p2@{}\"\nmac = \"02:00:00:00:02:01\"\naddresses = [\"10.0.2.1/24\"]\n\n\
             [[port]]\nname = \"Port3\"\nbind = \"vhost-user:{}\"\nmac = \"02:00:00:00:03:01\"\naddresses = [\"10.0.3.1/24\"]\n\n\
             [[port]]\nname = \"Port4\"\nbind = \"vhost-user:{}?client\"\nmac = \"02:00:00:00:04:01\"\naddresses = [\"10.0.4.1/24\"]\n",
            dir.path().join("control.sock").display(),
            h2.name(),
            dir.path().join("vm3.sock").display(),
            dir.path().join("vm4.sock").display(),
        );
        let cfg = Config::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let daemon = Daemon::start(cfg);
        h2.wait_for_device("p2");
        h2.address("p2", "10.0.2.2/24", Some("10.0.2.1"));
        let mut rig = Rig {
            testpmd: None,
            daemon,
            h2,
            vm3,
            vm4,
            dir,
            tag: tag.to_owned(),
            queues,
        };
        rig.boot_vms();
        rig
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    /// Starts testpmd (the two VMs) and gives their TAPs their addresses.
    fn boot_vms(&mut self) {
        let (s3, s4) = (
            self.dir.path().join("vm3.sock"),
            self.dir.path().join("vm4.sock"),
        );
        let vms = [
            VmSpec {
                iface: "vmeth3",
                socket: &s3,
                server: false,
                queues: self.queues,
            },
            VmSpec {
                iface: "vmeth4",
                socket: &s4,
                server: true,
                queues: self.queues,
            },
        ];
        // A VM that listens leaves its socket behind when killed, and
        // testpmd will not bind over it (nor would its orchestrator leave
        // it).
        let _ = std::fs::remove_file(&s4);
        let log = self.dir.path().join("testpmd.log");
        let t = Testpmd::start(&self.vm3, &self.tag, &vms, &log);
        // The second VM's TAP moves to its own namespace; testpmd's fd
        // follows it.
        self.vm3
            .ip(&["link", "set", "vmeth4", "netns", self.vm4.name()]);
        self.vm3.address("vmeth3", "10.0.3.2/24", Some("10.0.3.1"));
        self.vm4.wait_for_device("vmeth4");
        self.vm4.address("vmeth4", "10.0.4.2/24", Some("10.0.4.1"));
        self.testpmd = Some(t);
        for port in ["Port3", "Port4"] {
            common::wait_for_link(&self.socket(), port, "up");
        }
        self.vm3.wait_for_ping("10.0.3.1", 5);
        self.vm4.wait_for_ping("10.0.4.1", 5);
    }

    /// Stops the VMs, then the daemon, whose counters must add up.
    fn stop(mut self) {
        self.testpmd = None;
        let s = self.daemon.stop().expect("daemon");
        common::assert_identity(&s);
    }
}

fn need(test: &str) -> bool {
    common::need_root_and_ping(test) && need_testpmd(test)
}

#[test]
fn a_vm_on_vhost_user_pings_and_moves_50_mb_intact_both_ways() {
    if !need(TEST) {
        return;
    }
    const LEN: usize = 50 << 20;
    let rig = Rig::start("vu-tcp");
    for (ns, to) in [(&rig.vm3, "10.0.2.2"), (&rig.h2, "10.0.3.2")] {
        let (ok, out) = ns.ping(&["-c", "3", "-W", "2", to]);
        assert!(ok, "ping {to}: {out}");
    }
    for (from, to, dst) in [
        (&rig.vm3, &rig.h2, "10.0.2.2:5001"),
        (&rig.h2, &rig.vm3, "10.0.3.2:5002"),
    ] {
        let dst: SocketAddr = dst.parse().unwrap();
        let started = Instant::now();
        let t = common::tcp_transfer(from, to, dst, LEN);
        let secs = started.elapsed().as_secs_f64();
        eprintln!("to {dst}: {} bytes in {secs:.2} s", t.bytes);
        assert_eq!(t.bytes, LEN);
        assert!(t.intact, "sha256 of what arrived at {dst}");
    }
    rig.stop();
}

#[test]
fn two_vms_on_vhost_user_reach_each_other() {
    if !need(TEST) {
        return;
    }
    let rig = Rig::start("vu-vm2vm");
    for (ns, to) in [(&rig.vm3, "10.0.4.2"), (&rig.vm4, "10.0.3.2")] {
        let (ok, out) = ns.ping(&["-c", "3", "-W", "2", to]);
        assert!(ok, "ping {to}: {out}");
    }
    let dst: SocketAddr = "10.0.4.2:5003".parse().unwrap();
    let t = common::tcp_transfer(&rig.vm3, &rig.vm4, dst, 8 << 20);
    assert_eq!(t.bytes, 8 << 20);
    assert!(t.intact, "sha256 of what arrived");
    assert_eq!(
        t.peer.ip().to_string(),
        "10.0.3.2",
        "routed, not translated"
    );
    rig.stop();
}

#[test]
fn a_vm_that_goes_away_mid_stream_takes_its_link_down_and_comes_back() {
    if !need(TEST) {
        return;
    }
    let mut rig = Rig::start("vu-back");
    // A stream of pings to the VM, which stops halfway through it.
    let stream = rig
        .h2
        .spawn(&["ping", "-n", "-i", "0.01", "-c", "400", "10.0.3.2"]);
    std::thread::sleep(Duration::from_millis(1000));
    rig.testpmd.as_mut().unwrap().kill();
    for port in ["Port3", "Port4"] {
        common::wait_for_link(&rig.socket(), port, "no-carrier");
    }
    drop(stream);
    // Nothing else stopped: the host still reaches edgefwd.
    let (ok, out) = rig.h2.ping(&["-c", "2", "-W", "1", "10.0.2.1"]);
    assert!(ok, "{out}");
    let (ok, _) = rig.h2.ping(&["-c", "1", "-W", "1", "10.0.3.2"]);
    assert!(!ok, "the stopped VM answered");

    // The VMs come back (new TAPs, new sockets' sessions) and work.
    rig.testpmd = None;
    rig.boot_vms();
    let (ok, out) = rig.h2.ping(&["-c", "3", "-W", "2", "10.0.3.2"]);
    assert!(ok, "{out}");
    let (ok, out) = rig.vm3.ping(&["-c", "3", "-W", "2", "10.0.4.2"]);
    assert!(ok, "{out}");
    let dst: SocketAddr = "10.0.3.2:5004".parse().unwrap();
    let t = common::tcp_transfer(&rig.h2, &rig.vm3, dst, 8 << 20);
    assert!(t.intact && t.bytes == 8 << 20, "transfer after the return");
    rig.stop();
}

#[test]
fn a_vm_with_two_queue_pairs_is_served_by_both_workers() {
    if !need(TEST) {
        return;
    }
    let rig = Rig::start_with("vu-mq", 2);
    // Sixteen connections: the VM's kernel spreads them over its TAP's
    // two queues, which testpmd forwards to the device's two pairs.
    let transfers: Vec<_> = (0..16u16)
        .map(|i| {
            let (vm3, h2) = (Netns(rig.vm3.0.clone()), Netns(rig.h2.0.clone()));
            std::thread::spawn(move || {
                let dst: SocketAddr = format!("10.0.2.2:{}", 6000 + i).parse().unwrap();
                let t = common::tcp_transfer(&vm3, &h2, dst, 1 << 20);
                // Borrowed names: the rig removes the namespaces.
                std::mem::forget(vm3);
                std::mem::forget(h2);
                t
            })
        })
        .collect();
    for t in transfers {
        let t = t.join().expect("transfer");
        assert!(t.intact && t.bytes == 1 << 20, "a transfer arrived broken");
    }
    let ports =
        edgefwd_control::api::call(&rig.socket(), edgefwd_control::api::Command::PortShow {})
            .expect("port show");
    let dev = &ports["ports"][1]["device"];
    assert_eq!(dev["queue_pairs"], 2, "{dev}");
    for pair in ["rx_pair0", "rx_pair1"] {
        let n = dev[pair].as_u64().unwrap_or(0);
        assert!(n > 100, "{pair} took {n} frames: {dev}");
    }
    rig.stop();
}
