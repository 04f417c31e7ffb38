//! The syscalls behind the port drivers: TAP ioctls, network namespaces,
//! interface flags, and batched I/O through io_uring ([`ring`]). This is the
//! only module of the dataplane allowed to use `unsafe`; every raw fd is
//! wrapped in an owning type the moment it exists, so every error path
//! closes it.
#![allow(unsafe_code)]

mod ring;
pub mod xdp;
pub use ring::Ring;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `IFNAMSIZ` less the terminating NUL.
pub const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// An `ifreq` with `name` filled in.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() > IFNAME_MAX || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid interface name"),
        ));
    }
    // SAFETY: ifreq is a plain C struct (arrays and a union of integers and
    // arrays) for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn name_of(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens one queue of the TAP device `name` in the calling thread's network
/// namespace, creating the device if it does not exist. The fd is
/// non-blocking and close-on-exec. Returns the file and the device's name.
pub fn open_tap(name: &str, vnet_hdr: bool, multi_queue: bool) -> io::Result<(File, String)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut req = ifreq(name)?;
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    if multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which `req` is; the fd is
    // open for the call's duration.
    check(unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) })?;
    let actual = name_of(&req);
    Ok((file, actual))
}

/// Sets the virtio-net header size the TAP prepends and expects.
pub fn set_vnet_hdr_size(tap: &File, size: libc::c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which
    // points at `size` for the call's duration.
    check(unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) }).map(drop)
}

/// Tells the TAP which offloads this side accepts (`TUN_F_*`).
pub fn set_offload(tap: &File, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value, not as a pointer.
    check(unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETOFFLOAD, flags as libc::c_ulong) })
        .map(drop)
}

/// The name the device of a TAP queue has now (it follows renames). Fails
/// once the device is gone.
pub fn tap_name(tap: &File) -> io::Result<String> {
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes the name and flags into one ifreq, which
    // `req` is; the fd is open for the call's duration.
    check(unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNGETIFF, &mut req) })?;
    Ok(name_of(&req))
}

/// The network namespace the device of a TAP queue lives in now (it
/// follows `ip link set … netns …`), as a new file.
pub fn tap_netns(tap: &File) -> io::Result<File> {
    // SAFETY: TUNGETDEVNETNS takes no argument and returns a new fd.
    let fd = check(unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNGETDEVNETNS) })?;
    // SAFETY: `fd` is a fresh, valid descriptor owned by no one else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `TUNSETCARRIER` from `linux/if_tun.h` (`_IOW('T', 226, int)`; not in
/// libc yet).
const TUNSETCARRIER: libc::c_ulong = 0x4004_54e2;

/// Turns a TAP's carrier on or off (its kernel side sees the link as a
/// NIC's with or without a cable).
pub fn set_carrier(tap: &File, on: bool) -> io::Result<()> {
    let value: libc::c_int = on.into();
    // SAFETY: TUNSETCARRIER reads one int through the pointer, which
    // points at `value` for the call's duration.
    check(unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETCARRIER, &value) }).map(drop)
}

/// Sets a socket option of type int that the socket types at hand do not
/// offer (`SO_RCVBUFFORCE`).
pub fn set_socket_option(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value points at `value`, an int, with its size;
    // a bad fd is an error, not undefined behaviour.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The TAP offload flags this build asks for: checksum, and TCP
/// segmentation over IPv4 and IPv6 (with ECN).
pub const TAP_OFFLOADS: libc::c_uint =
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;

/// A socket used only to ask the kernel about interfaces (`SIOCGIF*`) in
/// the namespace it was created in.
pub struct IfSocket(OwnedFd);

impl IfSocket {
    /// A socket in the calling thread's network namespace.
    pub fn new() -> io::Result<Self> {
        // SAFETY: socket() has no memory arguments; a non-negative result is
        // a new fd that nothing else owns, so wrapping it in OwnedFd is sound.
        let fd = check(unsafe {
            libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
        })?;
        // SAFETY: `fd` is a fresh, valid descriptor owned by no one else.
        Ok(IfSocket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The interface flags (`IFF_UP`, `IFF_RUNNING`, …) of `name`.
    pub fn flags(&self, name: &str) -> io::Result<u32> {
        let mut req = ifreq(name)?;
        // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into
        // one ifreq, which `req` is.
        check(unsafe { libc::ioctl(self.0.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
        // SAFETY: after SIOCGIFFLAGS succeeds the union holds the flags.
        Ok(u32::from(unsafe { req.ifr_ifru.ifru_flags } as u16))
    }

    /// Sets the transmit queue length of `name`. For a TAP, that queue holds
    /// the frames waiting for us to read them: it is the port's rx queue.
    pub fn set_txqueuelen(&self, name: &str, len: u32) -> io::Result<()> {
        let mut req = ifreq(name)?;
        req.ifr_ifru.ifru_metric = len.min(i32::MAX as u32) as libc::c_int;
        // SAFETY: SIOCSIFTXQLEN reads the name and the length (the union's
        // int member) from one ifreq, which `req` is.
        check(unsafe { libc::ioctl(self.0.as_raw_fd(), libc::SIOCSIFTXQLEN, &req) }).map(drop)
    }

    /// The interface index of `name`.
    pub fn index(&self, name: &str) -> io::Result<u32> {
        let mut req = ifreq(name)?;
        // SAFETY: SIOCGIFINDEX reads the name from and writes the index into
        // one ifreq, which `req` is.
        check(unsafe { libc::ioctl(self.0.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) })?;
        // SAFETY: after SIOCGIFINDEX succeeds the union holds the index.
        Ok(unsafe { req.ifr_ifru.ifru_ifindex } as u32)
    }
}

/// Runs `f` on a new thread that has joined the network namespace at
/// `netns` (a file such as `/run/netns/NAME`), and returns its result.
/// Sockets and TAP queues opened by `f` stay in that namespace; the calling
/// thread's namespace is untouched.
pub fn in_netns<T: Send>(netns: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let ns = File::open(netns).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("network namespace {}: {e}", netns.display()),
        )
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns takes an fd (open for the call's duration) and a
            // flag; it changes only this thread, which ends after `f`.
            check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("entering network namespace {}: {e}", netns.display()),
                )
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

/// `PACKET_IGNORE_OUTGOING` from `linux/if_packet.h` (not in libc yet):
/// the socket does not see frames the host itself sends on the interface.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// An AF_PACKET socket for all protocols, close-on-exec, that ignores the
/// host's own outgoing frames; created in the calling thread's namespace.
pub fn packet_socket() -> io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
    // SAFETY: socket() has no memory arguments.
    let fd = check(unsafe {
        libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto)
    })?;
    // SAFETY: `fd` is a fresh, valid descriptor owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: the option value points at `one`, an int, with its size.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}
