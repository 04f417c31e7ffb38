//! A real VM for the vhost-user tests: QEMU (TCG) booting Debian's cloud
//! kernel (fetched by `tests/qemu/prepare-guest.sh`) with an initramfs
//! made here of a static busybox, the virtio modules and an `/init`
//! script the test writes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::cannot_run;

/// Where the guest kernel and modules are: `$EDGEFWD_GUEST`, else
/// `target/qemu-guest` in the repository.
pub fn guest_dir() -> PathBuf {
    match std::env::var_os("EDGEFWD_GUEST") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/qemu-guest"),
    }
}

/// The static busybox the initramfs is made of.
const BUSYBOX: &str = "/bin/busybox";

/// True when QEMU, a static busybox and the guest kernel are here, else a
/// loud refusal.
pub fn need_guest(test: &str) -> bool {
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let busybox = std::fs::read(BUSYBOX).is_ok_and(|b| is_static_elf(&b));
    let kernel = guest_dir().join("vmlinuz").exists();
    let why = if !qemu {
        "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
    } else if !busybox {
        "no static busybox at /bin/busybox (Debian package busybox-static)"
    } else if !kernel {
        "no guest kernel (run tests/qemu/prepare-guest.sh, or set EDGEFWD_GUEST)"
    } else {
        return true;
    };
    cannot_run(test, why);
    false
}

/// True for a 64-bit ELF executable without a program interpreter (no
/// `PT_INTERP` header): statically linked.
fn is_static_elf(b: &[u8]) -> bool {
    let u16_at = |i: usize| {
        b.get(i..i + 2)
            .map(|x| u16::from_le_bytes([x[0], x[1]]) as usize)
    };
    let u64_at = |i: usize| {
        b.get(i..i + 8)
            .map(|x| u64::from_le_bytes(x.try_into().unwrap()) as usize)
    };
    if !b.starts_with(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(size), Some(num)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..num).all(|i| b.get(phoff + i * size..phoff + i * size + 4) != Some(&3u32.to_le_bytes()[..]))
}

/// One file of an initramfs: path, mode, contents.
type Entry = (String, u32, Vec<u8>);

/// An uncompressed initramfs (cpio, `newc` format) of `entries`.
fn cpio(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |name: &str, mode: u32, data: &[u8], ino: usize| {
        let fields = [
            ino as u32,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    for (i, (name, mode, data)) in entries.iter().enumerate() {
        put(name, *mode, data, i + 1);
    }
    put("TRAILER!!!", 0, &[], 0);
    out
}

/// Writes an initramfs to `to`: busybox, the guest's virtio modules and
/// `init` as `/init`.
pub fn initramfs(init: &str, to: &Path) {
    let mut entries: Vec<Entry> = vec![
        ("bin".into(), 0o40755, Vec::new()),
        ("modules".into(), 0o40755, Vec::new()),
        (
            "bin/busybox".into(),
            0o100755,
            std::fs::read(BUSYBOX).unwrap(),
        ),
        ("init".into(), 0o100755, init.as_bytes().to_vec()),
    ];
    for m in std::fs::read_dir(guest_dir().join("modules"))
        .unwrap()
        .flatten()
    {
        let name = m.file_name().to_string_lossy().into_owned();
        entries.push((
            format!("modules/{name}"),
            0o100644,
            std::fs::read(m.path()).unwrap(),
        ));
    }
    std::fs::write(to, cpio(&entries)).unwrap();
}

/// A QEMU guest with one virtio-net device on the vhost-user socket
/// `socket`, its serial console written to `console`; killed on drop.
pub struct Guest(Child);

impl Guest {
    pub fn boot(initrd: &Path, socket: &Path, console: &Path) -> Guest {
        let kernel = guest_dir().join("vmlinuz");
        let child = Command::new("qemu-system-x86_64")
            .args([
                "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "256",
            ])
            .args(["-display", "none", "-no-reboot", "-monitor", "none"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(initrd)
            .args(["-append", "console=ttyS0 panic=-1 quiet"])
            .args(["-object", "memory-backend-memfd,id=mem,size=256M,share=on"])
            .args(["-numa", "node,memdev=mem"])
            .arg("-chardev")
            .arg(format!("socket,id=c0,path={}", socket.display()))
            .args(["-netdev", "vhost-user,id=n0,chardev=c0"])
            // QEMU 7.2 under TCG needs the device without MSI-X vectors.
            .args([
                "-device",
                "virtio-net-pci,netdev=n0,mac=02:00:00:00:03:02,vectors=0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64");
        Guest(child)
    }

    /// True once QEMU has exited.
    pub fn ended(&mut self) -> bool {
        self.0.try_wait().is_ok_and(|s| s.is_some())
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
