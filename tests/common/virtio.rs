//! A test VM: a virtio-net driver of its own, written against the `vhost`
//! crate's frontend, with 1 MiB of guest memory in a shared file. It lays
//! out split rings by hand, so a test can post any descriptor chain,
//! well-formed or not, and read what edgefwd wrote back.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};
use vmm_sys_util::eventfd::EventFd;

/// Guest memory size.
pub const MEM: u64 = 1 << 20;
/// Entries of each ring.
pub const QUEUE: u16 = 16;
/// `VIRTQ_DESC_F_NEXT`.
pub const NEXT: u16 = 1;
/// `VIRTQ_DESC_F_WRITE`.
pub const WRITE: u16 = 2;
/// virtio 1.0 (the 12-byte header).
pub const F_VERSION_1: u64 = 1 << 32;
/// Mergeable receive buffers.
pub const F_MRG_RXBUF: u64 = 1 << 15;
/// Where the receive buffers start; buffer `i` is `RX_BUF` bytes on.
pub const RX_AT: u64 = 0x10000;
/// Size of each receive buffer.
pub const RX_BUF: u64 = 0x800;
/// Where frames to send are written.
pub const TX_AT: u64 = 0x40000;

/// A ring's place in guest memory.
#[derive(Clone, Copy)]
struct Ring {
    desc: u64,
    avail: u64,
    used: u64,
}

const RINGS: [Ring; 2] = [
    Ring {
        desc: 0x0,
        avail: 0x200,
        used: 0x400,
    },
    Ring {
        desc: 0x1000,
        avail: 0x1200,
        used: 0x1400,
    },
];

/// One test VM, connected.
pub struct TestVm {
    pub frontend: Frontend,
    pub mem: GuestMemoryMmap,
    kicks: [EventFd; 2],
    _calls: [EventFd; 2],
    /// Next avail index of each ring.
    posted: [u16; 2],
}

impl TestVm {
    /// Connects to edgefwd's socket at `path` (waiting up to 5 s for it)
    /// and sets up one queue pair with `features` (and protocol features).
    pub fn connect(path: &Path, features: u64) -> TestVm {
        TestVm::connect_in(path, features, 1)
    }

    /// As [`TestVm::connect`], with guest memory in `regions` mappings of
    /// equal size, back to back in guest addresses (a frame may then span
    /// two of them).
    pub fn connect_in(path: &Path, features: u64, regions: u64) -> TestVm {
        let deadline = Instant::now() + Duration::from_secs(5);
        let frontend = loop {
            match Frontend::connect(path, 2) {
                Ok(f) => break f,
                Err(e) => {
                    assert!(Instant::now() < deadline, "connect {}: {e}", path.display());
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let file: File = tempfile::tempfile_in("/dev/shm").expect("guest memory file");
        file.set_len(MEM).unwrap();
        let size = MEM / regions;
        let list: Vec<GuestRegionMmap> = (0..regions)
            .map(|i| {
                let f = FileOffset::new(file.try_clone().unwrap(), i * size);
                let m = MmapRegion::from_file(f, size as usize).unwrap();
                GuestRegionMmap::new(m, GuestAddress(i * size)).unwrap()
            })
            .collect();
        let infos: Vec<VhostUserMemoryRegionInfo> = list
            .iter()
            .map(|r| VhostUserMemoryRegionInfo::from_guest_region(r).unwrap())
            .collect();
        // The rings lie in the first region.
        let host = infos[0].userspace_addr;
        let mem = GuestMemoryMmap::from_regions(list).unwrap();

        frontend.set_owner().unwrap();
        let offered = frontend.get_features().unwrap();
        let proto = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        assert_eq!(
            offered & (features | proto),
            features | proto,
            "offered {offered:#x}"
        );
        frontend.set_features(features | proto).unwrap();
        let mut fe = frontend;
        let pf = fe.get_protocol_features().unwrap();
        fe.set_protocol_features(pf & VhostUserProtocolFeatures::REPLY_ACK)
            .unwrap();
        fe.set_mem_table(&infos).unwrap();
        let kicks = [EventFd::new(0).unwrap(), EventFd::new(0).unwrap()];
        let calls = [EventFd::new(0).unwrap(), EventFd::new(0).unwrap()];
        for (q, r) in RINGS.iter().enumerate() {
            fe.set_vring_num(q, QUEUE).unwrap();
            fe.set_vring_addr(
                q,
                &VringConfigData {
                    queue_max_size: QUEUE,
                    queue_size: QUEUE,
                    flags: 0,
                    desc_table_addr: host + r.desc,
                    used_ring_addr: host + r.used,
                    avail_ring_addr: host + r.avail,
                    log_addr: None,
                },
            )
            .unwrap();
            fe.set_vring_base(q, 0).unwrap();
            fe.set_vring_call(q, &calls[q]).unwrap();
            fe.set_vring_kick(q, &kicks[q]).unwrap();
            fe.set_vring_enable(q, true).unwrap();
        }
        TestVm {
            frontend: fe,
            mem,
            kicks,
            _calls: calls,
            posted: [0; 2],
        }
    }

    /// Writes descriptor `i` of ring `q`.
    pub fn desc(&self, q: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(RINGS[q].desc + 16 * u64::from(i));
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.mem.write_slice(&d, at).unwrap();
    }

    /// Makes the chain at `head` of ring `q` available (without a kick).
    pub fn post(&mut self, q: usize, head: u16) {
        let r = RINGS[q];
        let slot = self.posted[q] % QUEUE;
        self.mem
            .write_obj(
                head.to_le(),
                GuestAddress(r.avail + 4 + 2 * u64::from(slot)),
            )
            .unwrap();
        self.posted[q] = self.posted[q].wrapping_add(1);
        self.mem
            .write_obj(self.posted[q].to_le(), GuestAddress(r.avail + 2))
            .unwrap();
    }

    /// Kicks ring `q`.
    pub fn kick(&self, q: usize) {
        self.kicks[q].write(1).unwrap();
    }

    /// Ring `q`'s used index.
    pub fn used_idx(&self, q: usize) -> u16 {
        u16::from_le(self.mem.read_obj(GuestAddress(RINGS[q].used + 2)).unwrap())
    }

    /// Used entry `n` of ring `q`: (descriptor id, length written).
    pub fn used(&self, q: usize, n: u16) -> (u32, u32) {
        let at = RINGS[q].used + 4 + 8 * u64::from(n % QUEUE);
        let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
        let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
        (u32::from_le(id), u32::from_le(len))
    }

    /// Waits (at most 5 s) until ring `q`'s used index reaches `n`.
    pub fn wait_used(&self, q: usize, n: u16) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.used_idx(q) != n {
            assert!(
                Instant::now() < deadline,
                "ring {q}: used index {} never reached {n}",
                self.used_idx(q)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Posts `n` single-descriptor receive buffers of `RX_BUF` bytes
    /// (descriptors `0..n` of ring 0, buffer `i` at `RX_AT + i * RX_BUF`).
    pub fn post_rx(&mut self, n: u16) {
        for i in 0..n {
            self.desc(0, i, RX_AT + u64::from(i) * RX_BUF, RX_BUF as u32, WRITE, 0);
            self.post(0, i);
        }
        self.kick(0);
    }

    /// The bytes of receive buffer `i`, `len` of them.
    pub fn rx_buffer(&self, i: u32, len: u32) -> Vec<u8> {
        let mut b = vec![0; len as usize];
        self.mem
            .read_slice(&mut b, GuestAddress(RX_AT + u64::from(i) * RX_BUF))
            .unwrap();
        b
    }

    /// Writes `bytes` at guest address `at`.
    pub fn write(&self, at: u64, bytes: &[u8]) {
        self.mem.write_slice(bytes, GuestAddress(at)).unwrap();
    }
}
