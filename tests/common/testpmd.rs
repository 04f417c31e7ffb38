//! DPDK's `dpdk-testpmd` as VMs: each VM is a `net_virtio_user` port (its
//! virtio-net device, on a vhost-user socket) forwarded in io mode to and
//! from a `net_tap` port (a TAP in a namespace), so the namespace's kernel
//! talks through the vhost-user port as a VM's would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{cannot_run, Netns};

/// One VM's two ends.
pub struct VmSpec<'a> {
    /// The TAP testpmd makes (in testpmd's namespace).
    pub iface: &'a str,
    /// The vhost-user socket.
    pub socket: &'a Path,
    /// testpmd listens (`server=1`; edgefwd binds `vhost-user:PATH?client`).
    pub server: bool,
    /// Queue pairs of its virtio-net device (its TAP gets as many queues).
    pub queues: u16,
}

/// A running testpmd, killed (and its runtime directory removed) on drop.
pub struct Testpmd {
    child: Child,
    prefix: String,
    log: PathBuf,
}

/// True when dpdk-testpmd is installed, else a loud refusal.
pub fn need_testpmd(test: &str) -> bool {
    let ok = Command::new("dpdk-testpmd")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        cannot_run(
            test,
            "dpdk-testpmd is not installed (Debian package dpdk-dev)",
        );
    }
    ok
}

/// testpmd's EAL options on this machine: lcores 0 and 1 with `main` the
/// main one (the other forwards), no hugepages (`mem_mb` of memory), no
/// PCI devices, and a runtime directory of its own under `prefix` (see
/// [`remove_runtime`]).
pub fn eal_args(main: u32, mem_mb: u32, prefix: &str) -> Vec<String> {
    let main = main.to_string();
    let mem = mem_mb.to_string();
    [
        "-l",
        "0-1",
        "--main-lcore",
        &main,
        "--no-huge",
        "-m",
        &mem,
        "--no-pci",
        "--file-prefix",
        prefix,
    ]
    .map(String::from)
    .to_vec()
}

/// Removes the runtime directory of the testpmd started with `prefix`.
pub fn remove_runtime(prefix: &str) {
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}

impl Testpmd {
    /// Starts testpmd in `ns` with `vms` (port `2i` the TAP, `2i + 1` the
    /// virtio-user device, forwarded to each other), writing its output
    /// to `log`; waits (at most 15 s) until every TAP exists and
    /// forwarding started (before that testpmd still sets its TAPs up by
    /// name, in its own namespace).
    pub fn start(ns: &Netns, tag: &str, vms: &[VmSpec], log: &Path) -> Testpmd {
        let prefix = format!("efw-{tag}-{}", std::process::id());
        let mut args: Vec<String> = ["netns", "exec", ns.name(), "dpdk-testpmd"]
            .map(String::from)
            .to_vec();
        args.extend(eal_args(0, 512, &prefix));
        for (i, vm) in vms.iter().enumerate() {
            args.push(format!("--vdev=net_tap{i},iface={}", vm.iface));
            args.push(format!(
                "--vdev=net_virtio_user{i},path={},queues={}{}",
                vm.socket.display(),
                vm.queues,
                if vm.server { ",server=1" } else { "" }
            ));
        }
        let queues = vms.iter().map(|v| v.queues).max().unwrap_or(1);
        args.extend(
            [
                "--",
                "--total-num-mbufs=16384",
                "--forward-mode=io",
                "--stats-period",
                "3600",
            ]
            .map(String::from),
        );
        args.push(format!("--rxq={queues}"));
        args.push(format!("--txq={queues}"));
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(&args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("dpdk-testpmd");
        let mut t = Testpmd {
            child,
            prefix,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        for vm in vms {
            while !ns
                .exec(5, &["ip", "link", "show", vm.iface])
                .status
                .success()
            {
                if let Ok(Some(status)) = t.child.try_wait() {
                    panic!("testpmd ended ({status}):\n{}", t.log_text());
                }
                assert!(
                    Instant::now() < deadline,
                    "testpmd made no {}:\n{}",
                    vm.iface,
                    t.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        while !t.log_text().contains("io packet forwarding - ports=") {
            if let Ok(Some(status)) = t.child.try_wait() {
                panic!("testpmd ended ({status}):\n{}", t.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "testpmd never started forwarding:\n{}",
                t.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    /// What it printed.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it now (the VM stops) and waits for it to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_runtime(&self.prefix);
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        self.kill();
    }
}
