//! AF_XDP: the few syscalls behind an `afxdp:` port, written out rather
//! than taken from libbpf/libxdp bindings (which need clang and a C
//! toolchain at build time for what is a five-instruction program and
//! four mmaps).
//!
//! - A `BPF_MAP_TYPE_XSKMAP` with a slot per queue, and an XDP program that
//!   redirects each frame to the socket of the queue it arrived on
//!   (`bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS)`: a queue
//!   without a socket passes its frames to the kernel), attached with a
//!   BPF link, which detaches when its fd closes.
//! - Per queue, a socket with its own UMEM (anonymous memory cut into
//!   2 KiB frames) and four rings mapped from the kernel: fill and
//!   completion (frame addresses), rx and tx (descriptors).
//!
//! Ring indices are shared with the kernel: a producer writes entries,
//! then publishes its index with a release store; a consumer reads the
//! other side's index with an acquire load before reading entries.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::check;

/// Size of a UMEM frame.
pub const FRAME: usize = 2048;

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_PASS: i32 = 2;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;

/// Runs `bpf(cmd, attr)` with `attr` a zeroed 128-byte `union bpf_attr`
/// filled in by the caller; returns the result (an fd for most commands).
fn bpf(cmd: libc::c_int, attr: &mut [u8; 128]) -> io::Result<libc::c_int> {
    // SAFETY: bpf() reads (and for some commands writes) at most `size`
    // bytes of `attr`, which is 128 bytes long and lives for the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    check(r as libc::c_int)
}

fn put_u32(attr: &mut [u8; 128], at: usize, v: u32) {
    attr[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(attr: &mut [u8; 128], at: usize, v: u64) {
    attr[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The XSKMAP, the program and its link on one interface.
pub struct XdpProgram {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl XdpProgram {
    /// Creates the map (`queues` slots) and the program, and attaches it to
    /// interface `ifindex` (in the calling thread's namespace), native mode
    /// where the driver has it, else generic.
    pub fn attach(ifindex: u32, queues: u32) -> io::Result<XdpProgram> {
        let mut a = [0u8; 128];
        put_u32(&mut a, 0, BPF_MAP_TYPE_XSKMAP);
        put_u32(&mut a, 4, 4); // key: queue index
        put_u32(&mut a, 8, 4); // value: socket fd
        put_u32(&mut a, 12, queues.max(1));
        let map = owned(bpf(BPF_MAP_CREATE, &mut a)?);
        let insns = redirect_program(map.as_raw_fd());
        let license = b"GPL\0";
        let mut a = [0u8; 128];
        put_u32(&mut a, 0, BPF_PROG_TYPE_XDP);
        put_u32(&mut a, 4, (insns.len() / 8) as u32);
        put_u64(&mut a, 8, insns.as_ptr() as u64);
        put_u64(&mut a, 16, license.as_ptr() as u64);
        a[48..56].copy_from_slice(b"edgefwd\0");
        put_u32(&mut a, 68, BPF_XDP);
        let prog = owned(bpf(BPF_PROG_LOAD, &mut a)?);
        let mut a = [0u8; 128];
        put_u32(&mut a, 0, prog.as_raw_fd() as u32);
        put_u32(&mut a, 4, ifindex);
        put_u32(&mut a, 8, BPF_XDP);
        let link = owned(bpf(BPF_LINK_CREATE, &mut a)?);
        Ok(XdpProgram {
            map,
            _prog: prog,
            _link: link,
        })
    }

    /// Sends queue `queue`'s frames to socket `xsk`.
    pub fn register(&self, queue: u32, xsk: RawFd) -> io::Result<()> {
        let key = queue;
        let value = xsk as u32;
        let mut a = [0u8; 128];
        put_u32(&mut a, 0, self.map.as_raw_fd() as u32);
        put_u64(&mut a, 8, (&key as *const u32) as u64);
        put_u64(&mut a, 16, (&value as *const u32) as u64);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
    }
}

/// `r2 = ctx->rx_queue_index; r1 = map; r3 = XDP_PASS;
/// return bpf_redirect_map(r1, r2, r3)`, as eBPF instructions.
fn redirect_program(map: RawFd) -> Vec<u8> {
    let insn = |code: u8, dst: u8, src: u8, off: i16, imm: i32| {
        let mut b = [0u8; 8];
        b[0] = code;
        b[1] = (src << 4) | dst;
        b[2..4].copy_from_slice(&off.to_ne_bytes());
        b[4..8].copy_from_slice(&imm.to_ne_bytes());
        b
    };
    [
        insn(0x61, 2, 1, 16, 0),                    // ldxw r2, [r1 + 16]
        insn(0x18, 1, 1, 0, map),                   // lddw r1, map (pseudo map fd)
        insn(0, 0, 0, 0, 0),                        // (second half of lddw)
        insn(0xb7, 3, 0, 0, XDP_PASS),              // mov r3, XDP_PASS
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP), // call bpf_redirect_map
        insn(0x95, 0, 0, 0, 0),                     // exit
    ]
    .concat()
}

/// A mapped region, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with the kernel; every access
// goes through the rings' atomics or through frames one owner at a time.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(fd: Option<RawFd>, len: usize, offset: libc::off_t) -> io::Result<Mapping> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
            ),
        };
        // SAFETY: a fresh mapping the kernel places; no existing memory is
        // touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?,
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the region was mapped by `new` with this length and is
        // no longer referenced (its rings and frames are dropped with it).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// One of a socket's four rings: `T` is a frame address (fill,
/// completion) or a descriptor (rx, tx).
pub struct Ring<T: Copy> {
    map: Mapping,
    producer: usize,
    consumer: usize,
    flags: usize,
    desc: usize,
    mask: u32,
    _t: std::marker::PhantomData<T>,
}

impl<T: Copy> Ring<T> {
    fn at(&self, off: usize) -> &AtomicU32 {
        // SAFETY: `off` is one of the kernel's offsets into this mapping
        // of a 4-byte aligned u32 index that the kernel and we update only
        // atomically.
        unsafe { &*self.map.ptr.as_ptr().add(off).cast::<AtomicU32>() }
    }

    fn entry(&self, i: u32) -> *mut T {
        // SAFETY: `desc` starts an array of `mask + 1` entries inside the
        // mapping; the index is masked into it.
        unsafe {
            self.map
                .ptr
                .as_ptr()
                .add(self.desc)
                .cast::<T>()
                .add((i & self.mask) as usize)
        }
    }

    /// The kernel asks to be woken (`XDP_RING_NEED_WAKEUP`).
    pub fn needs_wakeup(&self) -> bool {
        self.at(self.flags).load(Ordering::Acquire) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Producer side: entries published that the consumer has not taken.
    pub fn pending(&self) -> u32 {
        let prod = self.at(self.producer).load(Ordering::Relaxed);
        let cons = self.at(self.consumer).load(Ordering::Acquire);
        prod.wrapping_sub(cons)
    }

    /// Producer side: room for how many entries.
    pub fn free(&self) -> u32 {
        let prod = self.at(self.producer).load(Ordering::Relaxed);
        let cons = self.at(self.consumer).load(Ordering::Acquire);
        self.mask + 1 - prod.wrapping_sub(cons)
    }

    /// Producer side: writes `items` (at most [`Ring::free`]) and
    /// publishes them.
    pub fn produce(&self, items: impl IntoIterator<Item = T>) -> u32 {
        let prod = self.at(self.producer).load(Ordering::Relaxed);
        let room = self.free();
        let mut n = 0;
        for item in items.into_iter().take(room as usize) {
            // SAFETY: the slot is ours until the producer index passes it:
            // the consumer has released it (room counted above).
            unsafe { self.entry(prod.wrapping_add(n)).write_volatile(item) };
            n += 1;
        }
        self.at(self.producer)
            .store(prod.wrapping_add(n), Ordering::Release);
        n
    }

    /// Consumer side: reads up to `max` entries into `out` and releases
    /// them; how many.
    pub fn consume(&self, max: u32, out: &mut Vec<T>) -> u32 {
        let cons = self.at(self.consumer).load(Ordering::Relaxed);
        let prod = self.at(self.producer).load(Ordering::Acquire);
        let n = prod.wrapping_sub(cons).min(max);
        for i in 0..n {
            // SAFETY: entries between the consumer and producer indices
            // are published by the kernel (acquire above) and ours to read.
            out.push(unsafe { self.entry(cons.wrapping_add(i)).read_volatile() });
        }
        self.at(self.consumer)
            .store(cons.wrapping_add(n), Ordering::Release);
        n
    }
}

/// An AF_XDP socket bound to one queue, with its UMEM and rings.
pub struct Xsk {
    fd: OwnedFd,
    umem: Mapping,
    /// Frame addresses handed to the kernel to receive into.
    pub fill: Ring<u64>,
    /// Frame addresses the kernel has sent.
    pub completion: Ring<u64>,
    /// Frames received.
    pub rx: Ring<libc::xdp_desc>,
    /// Frames to send.
    pub tx: Ring<libc::xdp_desc>,
    /// True when the kernel copies frames (no zero-copy driver).
    pub copy_mode: bool,
}

impl Xsk {
    /// A socket on queue `queue` of interface `ifindex` (calling thread's
    /// namespace) with `frames` UMEM frames and rings of `ring` entries (a
    /// power of two); zero-copy if the driver allows, else copy mode.
    pub fn open(ifindex: u32, queue: u32, frames: usize, ring: u32) -> io::Result<Xsk> {
        // SAFETY: socket() has no memory arguments.
        let fd = owned(check(unsafe {
            libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0)
        })?);
        let umem = Mapping::new(None, frames * FRAME, 0)?;
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr.as_ptr() as u64,
            len: (frames * FRAME) as u64,
            chunk_size: FRAME as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(&fd, libc::XDP_UMEM_REG, &reg)?;
        for opt in [
            libc::XDP_UMEM_FILL_RING,
            libc::XDP_UMEM_COMPLETION_RING,
            libc::XDP_RX_RING,
            libc::XDP_TX_RING,
        ] {
            setsockopt(&fd, opt, &(ring as libc::c_int))?;
        }
        // SAFETY: xdp_mmap_offsets is plain integers; zero is valid.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `off`.
        check(unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            )
        })?;
        let map = |o: &libc::xdp_ring_offset,
                   pgoff: u64,
                   entry: usize|
         -> io::Result<(Mapping, [usize; 4])> {
            let size = o.desc as usize + ring as usize * entry;
            let m = Mapping::new(Some(fd.as_raw_fd()), size, pgoff as libc::off_t)?;
            Ok((
                m,
                [
                    o.producer as usize,
                    o.consumer as usize,
                    o.flags as usize,
                    o.desc as usize,
                ],
            ))
        };
        fn ring_of<T: Copy>(
            (map, [producer, consumer, flags, desc]): (Mapping, [usize; 4]),
            size: u32,
        ) -> Ring<T> {
            Ring {
                map,
                producer,
                consumer,
                flags,
                desc,
                mask: size - 1,
                _t: std::marker::PhantomData,
            }
        }
        let fill = ring_of(map(&off.fr, libc::XDP_UMEM_PGOFF_FILL_RING, 8)?, ring);
        let completion = ring_of(map(&off.cr, libc::XDP_UMEM_PGOFF_COMPLETION_RING, 8)?, ring);
        let desc = std::mem::size_of::<libc::xdp_desc>();
        let rx = ring_of(map(&off.rx, libc::XDP_PGOFF_RX_RING as u64, desc)?, ring);
        let tx = ring_of(map(&off.tx, libc::XDP_PGOFF_TX_RING as u64, desc)?, ring);
        let bind = |flags: u16| {
            let sa = libc::sockaddr_xdp {
                sxdp_family: libc::AF_XDP as u16,
                sxdp_flags: flags | libc::XDP_USE_NEED_WAKEUP,
                sxdp_ifindex: ifindex,
                sxdp_queue_id: queue,
                sxdp_shared_umem_fd: 0,
            };
            // SAFETY: `sa` is a sockaddr_xdp of the size given.
            check(unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_xdp).cast(),
                    std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            })
        };
        let copy_mode = match bind(libc::XDP_ZEROCOPY) {
            Ok(_) => false,
            Err(_) => {
                bind(libc::XDP_COPY)?;
                true
            }
        };
        Ok(Xsk {
            fd,
            umem,
            fill,
            completion,
            rx,
            tx,
            copy_mode,
        })
    }

    /// The socket's fd (readable when rx has frames).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Number of UMEM frames.
    pub fn frames(&self) -> usize {
        self.umem.len / FRAME
    }

    /// The bytes of `len` at UMEM address `addr`, or `None` when the
    /// descriptor points outside the UMEM.
    pub fn frame(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let end = (addr as usize).checked_add(len)?;
        if end > self.umem.len {
            return None;
        }
        // SAFETY: inside the UMEM (checked above); the kernel handed this
        // frame to us through the rx ring and does not write it until we
        // give it back through the fill ring.
        Some(unsafe { std::slice::from_raw_parts(self.umem.ptr.as_ptr().add(addr as usize), len) })
    }

    /// The frame at UMEM address `addr` to write into (a whole frame), or
    /// `None` when outside the UMEM.
    pub fn frame_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        let end = (addr as usize).checked_add(FRAME)?;
        if end > self.umem.len {
            return None;
        }
        // SAFETY: inside the UMEM; a tx frame is ours from the completion
        // ring (or never given) until it goes out on the tx ring.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.umem.ptr.as_ptr().add(addr as usize), FRAME)
        })
    }

    /// Tells the kernel the tx ring has frames (needed in copy mode, and
    /// when it asks).
    pub fn kick_tx(&self) {
        // SAFETY: a zero-length send with no buffer; the kernel reads
        // nothing from user memory.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            );
        }
    }

    /// Wakes the kernel's receive side when the fill ring asks for it.
    pub fn kick_rx(&self) {
        // SAFETY: a zero-length receive into no buffer.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }
}

fn setsockopt<T>(fd: &OwnedFd, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: the option value points at a `T` of the size given.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}
