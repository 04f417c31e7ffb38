//! A real VM on a `vhost-user:` port: QEMU (TCG: this machine cannot run
//! a stock guest under KVM) boots Debian's cloud kernel, whose own
//! virtio-net driver attaches to edgefwd's socket. The guest pings a host
//! behind a TAP port through edgefwd and sends it a file over TCP; the
//! guest's sha256 of the file, the host's of what arrived and the test's
//! of the file's known contents must agree. The guest's kernel and the
//! host's are the oracles; the guest agrees checksum offload and TSO, so
//! its TCP arrives as super-packets edgefwd forwards whole.
//!
//! ```text
//!  guest 10.0.3.2 ─vhost-user─ Port3 edgefwd Port2 ─TAP─ h2 10.0.2.2
//! ```

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::guest::{initramfs, need_guest, Guest};
use common::{Daemon, Netns};
use edgefwd_control::config::Config;
use edgefwd_io::binding::netns_path;
use edgefwd_io::in_netns;
use sha2::{Digest, Sha256};

const TEST: &str = "vhost_qemu";
/// The guest's file: `seq 1 LINES`.
const LINES: u32 = 1_000_000;

const INIT: &str = r#"#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys /dev /tmp
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do
    [ -f /modules/$m.ko ] && $B insmod /modules/$m.ko
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do $B sleep 0.1; i=$((i+1)); done
$B ip link set lo up
$B ip link set eth0 up
$B ip addr add 10.0.3.2/24 dev eth0
$B ip route add default via 10.0.3.1
echo "FEATURES $($B cat /sys/class/net/eth0/device/features)"
if $B ping -c 3 -W 5 10.0.2.2 > /dev/null; then echo PING-OK; else echo PING-FAILED; fi
$B seq 1 LINES > /tmp/f
echo "SHA256 $($B sha256sum /tmp/f)"
$B nc 10.0.2.2 5001 < /tmp/f
echo GUEST-DONE
$B poweroff -f
"#;

/// `seq 1 n` as the guest writes it.
fn seq(n: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 1..=n {
        v.extend_from_slice(format!("{i}\n").as_bytes());
    }
    v
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_qemu_guest_pings_and_sends_a_file_intact_through_vhost_user() {
    if !common::need_root_and_ping(TEST) || !need_guest(TEST) {
        return;
    }
    let dir = common::temp_dir("vhost-qemu");
    let h2 = Netns::new("vq-h2");
    let sock = dir.path().join("vm.sock");
    let toml = format!(
        "[dataplane]\nworkers = 2\n[control]\nsocket = \"{}\"\n\n\
         [[port]]\nname = \"Port2\"\nbind = \"tap:p2@{}\"\nmac = \"02:00:00:00:02:01\"\naddresses = [\"10.0.2.1/24\"]\n\n\
         [[port]]\nname = \"Port3\"\nbind = \"vhost-user:{}\"\nmac = \"02:00:00:00:03:01\"\naddresses = [\"10.0.3.1/24\"]\n",
        dir.path().join("control.sock").display(),
        h2.name(),
        sock.display(),
    );
    let mut daemon = Daemon::start(Config::parse(&toml).unwrap());
    h2.wait_for_device("p2");
    h2.address("p2", "10.0.2.2/24", Some("10.0.2.1"));

    // The host's end: reads what the guest sends and hashes it.
    let expected = seq(LINES);
    let listener = in_netns(&netns_path(h2.name()), || {
        TcpListener::bind("10.0.2.2:5001")
    })
    .unwrap();
    listener.set_nonblocking(true).unwrap();
    let want = expected.len();
    let receiver = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(240);
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => return Err(format!("no connection from the guest: {e}")),
            }
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let (mut hash, mut n, mut buf) = (Sha256::new(), 0usize, vec![0; 1 << 16]);
        while n < want {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    hash.update(&buf[..k]);
                    n += k;
                }
                Err(e) => return Err(format!("after {n} bytes: {e}")),
            }
        }
        Ok((n, hex(&hash.finalize())))
    });

    let initrd = dir.path().join("initrd.cpio");
    initramfs(&INIT.replace("LINES", &LINES.to_string()), &initrd);
    let console = dir.path().join("console.log");
    let started = Instant::now();
    let mut guest = Guest::boot(&initrd, &sock, &console);
    let text = || std::fs::read_to_string(&console).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(240);
    while !text().contains("GUEST-DONE") {
        assert!(
            Instant::now() < deadline && !guest.ended(),
            "the guest did not finish:\n{}",
            text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("guest done after {:?}", started.elapsed());
    drop(guest);
    let s = daemon.stop().expect("daemon");
    for p in &s.stats.ports {
        let drops: Vec<String> = edgefwd_core::stats::DropReason::ALL
            .iter()
            .filter(|r| p.drops[**r as usize] > 0)
            .map(|r| format!("{} {}", r.name(), p.drops[*r as usize]))
            .collect();
        eprintln!(
            "port rx {} tx {} tx_errors {} drops {drops:?}",
            p.rx, p.tx, p.tx_errors
        );
    }
    let console_text = text();
    assert!(console_text.contains("PING-OK"), "{console_text}");
    let guest_sha = console_text
        .lines()
        .find_map(|l| l.strip_prefix("SHA256 "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no SHA256 line:\n{console_text}"))
        .to_owned();
    let (bytes, host_sha) = receiver
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{console_text}"));
    let known = hex(&Sha256::digest(&expected));
    assert_eq!(bytes, expected.len());
    assert_eq!(guest_sha, known, "the guest's file is seq 1 {LINES}");
    assert_eq!(host_sha, known, "what arrived is what the guest sent");
    // The guest agreed checksum offload (bit 0) and TSO (bit 11): its TCP
    // came as super-packets.
    let features = console_text
        .lines()
        .find_map(|l| l.strip_prefix("FEATURES "))
        .unwrap_or_else(|| panic!("no FEATURES line:\n{console_text}"));
    assert_eq!(features.as_bytes().first(), Some(&b'1'), "{features}");
    assert_eq!(features.as_bytes().get(11), Some(&b'1'), "{features}");
    common::assert_identity(&s);
    drop(h2);
}
