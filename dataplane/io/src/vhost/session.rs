//! One frontend's vhost-user session: the protocol messages that set up
//! guest memory and the virtqueues (the `vhost` crate parses them and
//! answers; this says what they do to the port).
//!
//! The rings themselves are the workers': a message that changes one
//! takes its lock, as a worker does once per burst.

use std::fs::File;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVirtioFeatures,
    VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{Error, GpuBackend, Result, VhostUserBackendReqHandlerMut};
use vhost::VhostUserMemoryRegionBase;
use virtio_queue::QueueT;
use vm_memory::{GuestAddress, GuestAddressSpace, GuestMemoryMmap, GuestRegionMmap};

use super::Shared;

/// Memory slots offered with `CONFIGURE_MEM_SLOTS`.
const MAX_MEM_SLOTS: u64 = 509;

/// Where a region of guest memory sits in the frontend's address space
/// (rings are given by the frontend's addresses).
struct Mapping {
    frontend: u64,
    size: u64,
    guest: u64,
}

/// The state of one connection.
pub(crate) struct Session {
    shared: Arc<Shared>,
    owned: bool,
    acked: u64,
    protocol: u64,
    mappings: Vec<Mapping>,
}

fn invalid(what: &'static str) -> Error {
    Error::InvalidOperation(what)
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::ReqHandlerError(io::Error::other(e.to_string()))
}

impl Session {
    pub fn new(shared: Arc<Shared>) -> Session {
        Session {
            shared,
            owned: false,
            acked: 0,
            protocol: 0,
            mappings: Vec::new(),
        }
    }

    fn guest_address(&self, frontend: u64) -> Result<u64> {
        self.mappings
            .iter()
            .find(|m| frontend >= m.frontend && frontend - m.frontend < m.size)
            .map(|m| frontend - m.frontend + m.guest)
            .ok_or(Error::InvalidParam)
    }

    fn vq(&self, index: u32) -> Result<&parking_lot::Mutex<super::virtq::Vq>> {
        self.shared
            .vqs
            .get(index as usize)
            .ok_or(Error::InvalidParam)
    }

    fn replace_memory(&self, mem: GuestMemoryMmap) -> Result<()> {
        self.shared
            .mem
            .lock()
            .map_err(|_| invalid("memory lock poisoned"))?
            .replace(mem);
        Ok(())
    }

    fn region(region: &VhostUserMemoryRegion, file: File) -> Result<GuestRegionMmap> {
        GuestRegionMmap::new(
            region.mmap_region(file)?,
            GuestAddress(region.guest_phys_addr),
        )
        .ok_or(Error::InvalidParam)
    }

    /// Where the frontend has `region`, for its ring addresses.
    fn mapping(region: &VhostUserMemoryRegion) -> Mapping {
        Mapping {
            frontend: region.user_addr,
            size: region.memory_size,
            guest: region.guest_phys_addr,
        }
    }
}

impl VhostUserBackendReqHandlerMut for Session {
    fn set_owner(&mut self) -> Result<()> {
        if self.owned {
            return Err(invalid("already owned"));
        }
        self.owned = true;
        Ok(())
    }

    fn reset_owner(&mut self) -> Result<()> {
        self.owned = false;
        self.acked = 0;
        self.protocol = 0;
        self.shared.features.store(0, Ordering::Release);
        Ok(())
    }

    fn reset_device(&mut self) -> Result<()> {
        for vq in &self.shared.vqs {
            self.shared.unwatch(&mut vq.lock());
        }
        self.acked = 0;
        self.shared.features.store(0, Ordering::Release);
        Ok(())
    }

    fn get_features(&mut self) -> Result<u64> {
        Ok(self.shared.offered)
    }

    fn set_features(&mut self, features: u64) -> Result<()> {
        if features & !self.shared.offered != 0 {
            return Err(Error::InvalidParam);
        }
        self.acked = features;
        let event_idx = features & super::F_EVENT_IDX != 0;
        // Without protocol features every ring is enabled with the features.
        let enable = features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0;
        for vq in &self.shared.vqs {
            let mut vq = vq.lock();
            vq.queue.set_event_idx(event_idx);
            if enable {
                vq.enabled = true;
            }
        }
        self.shared.features.store(features, Ordering::Release);
        self.shared.count_pairs();
        tracing::info!(
            features = format_args!("{features:#x}"),
            "vhost-user features agreed"
        );
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        postcopy_listening: Option<bool>,
    ) -> Result<Option<Vec<VhostUserMemoryRegionBase>>> {
        if postcopy_listening.is_some() {
            return Err(invalid("postcopy is not offered"));
        }
        let mut regions = Vec::new();
        let mut mappings = Vec::new();
        for (r, file) in ctx.iter().zip(files) {
            regions.push(Self::region(r, file)?);
            mappings.push(Self::mapping(r));
        }
        let bytes: u64 = ctx.iter().map(|r| r.memory_size).sum();
        tracing::info!(regions = ctx.len(), bytes, "vhost-user guest memory mapped");
        let mem = GuestMemoryMmap::from_regions(regions).map_err(internal)?;
        self.replace_memory(mem)?;
        self.mappings = mappings;
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> Result<()> {
        let vq = self.vq(index)?;
        let mut vq = vq.lock();
        let size = u16::try_from(num).map_err(|_| Error::InvalidParam)?;
        vq.queue.try_set_size(size).map_err(|_| Error::InvalidParam)
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> Result<()> {
        let (desc, used, avail) = (
            self.guest_address(descriptor)?,
            self.guest_address(used)?,
            self.guest_address(available)?,
        );
        let mem = self.shared.mem.memory();
        let mut vq = self.vq(index)?.lock();
        let q = &mut vq.queue;
        q.try_set_desc_table_address(GuestAddress(desc))
            .and_then(|()| q.try_set_avail_ring_address(GuestAddress(avail)))
            .and_then(|()| q.try_set_used_ring_address(GuestAddress(used)))
            .map_err(|_| Error::InvalidParam)?;
        // After a guest driver restarts, the used index is the ring's.
        if let Ok(idx) = q.used_idx(&*mem, std::sync::atomic::Ordering::Acquire) {
            q.set_next_used(idx.0);
        }
        Ok(())
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> Result<()> {
        let base = u16::try_from(base).map_err(|_| Error::InvalidParam)?;
        self.vq(index)?.lock().queue.set_next_avail(base);
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> Result<VhostUserVringState> {
        // Stops the ring (the vhost-user contract).
        let mut vq = self.vq(index)?.lock();
        vq.queue.set_ready(false);
        self.shared.unwatch(&mut vq);
        vq.call = None;
        Ok(VhostUserVringState::new(
            index,
            u32::from(vq.queue.next_avail()),
        ))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> Result<()> {
        let mut vq = self.vq(u32::from(index))?.lock();
        self.shared.unwatch(&mut vq);
        vq.kick = fd;
        // The ring starts with its kick, enabled: QEMU restores a ring's
        // enable state before it sets the features, and the `vhost` crate
        // refuses SET_VRING_ENABLE until PROTOCOL_FEATURES is agreed, so
        // the enable QEMU sends would be lost. A later SET_VRING_ENABLE
        // (QEMU disabling the pairs its guest does not use) still counts.
        vq.queue.set_ready(true);
        vq.enabled = true;
        let watched = self
            .shared
            .watch(usize::from(index), &mut vq)
            .map_err(Error::ReqHandlerError);
        drop(vq);
        self.shared.count_pairs();
        watched
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> Result<()> {
        self.vq(u32::from(index))?.lock().call = fd;
        Ok(())
    }

    fn set_vring_err(&mut self, index: u8, _fd: Option<File>) -> Result<()> {
        self.vq(u32::from(index))?;
        Ok(())
    }

    fn get_protocol_features(&mut self) -> Result<VhostUserProtocolFeatures> {
        Ok(VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS)
    }

    fn set_protocol_features(&mut self, features: u64) -> Result<()> {
        self.protocol = features;
        Ok(())
    }

    fn get_queue_num(&mut self) -> Result<u64> {
        Ok((self.shared.vqs.len() / 2) as u64)
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> Result<()> {
        if self.acked & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0 {
            return Err(invalid("SET_VRING_ENABLE without protocol features"));
        }
        self.vq(index)?.lock().enabled = enable;
        self.shared.count_pairs();
        Ok(())
    }

    fn get_config(
        &mut self,
        _offset: u32,
        _size: u32,
        _flags: VhostUserConfigFlags,
    ) -> Result<Vec<u8>> {
        Err(invalid("no config space is offered"))
    }

    fn set_config(
        &mut self,
        _offset: u32,
        _buf: &[u8],
        _flags: VhostUserConfigFlags,
    ) -> Result<()> {
        Err(invalid("no config space is offered"))
    }

    fn set_gpu_socket(&mut self, _gpu_backend: GpuBackend) -> Result<()> {
        Err(invalid("not a GPU"))
    }

    fn get_shared_object(&mut self, _uuid: VhostUserSharedMsg) -> Result<File> {
        Err(invalid("shared objects are not offered"))
    }

    fn get_inflight_fd(
        &mut self,
        _inflight: &VhostUserInflight,
    ) -> Result<(VhostUserInflight, File)> {
        Err(invalid("inflight tracking is not offered"))
    }

    fn set_inflight_fd(&mut self, _inflight: &VhostUserInflight, _file: File) -> Result<()> {
        Err(invalid("inflight tracking is not offered"))
    }

    fn get_max_mem_slots(&mut self) -> Result<u64> {
        Ok(MAX_MEM_SLOTS)
    }

    fn add_mem_region(
        &mut self,
        region: &VhostUserSingleMemoryRegion,
        fd: File,
        postcopy_listening: Option<bool>,
    ) -> Result<Option<VhostUserMemoryRegionBase>> {
        if postcopy_listening.is_some() {
            return Err(invalid("postcopy is not offered"));
        }
        let guest = Arc::new(Self::region(region, fd)?);
        let mem = self
            .shared
            .mem
            .memory()
            .insert_region(guest)
            .map_err(internal)?;
        self.replace_memory(mem)?;
        self.mappings.push(Self::mapping(region));
        Ok(None)
    }

    fn remove_mem_region(&mut self, region: &VhostUserSingleMemoryRegion) -> Result<()> {
        let (mem, _) = self
            .shared
            .mem
            .memory()
            .remove_region(GuestAddress(region.guest_phys_addr), region.memory_size)
            .map_err(internal)?;
        self.replace_memory(mem)?;
        self.mappings.retain(|m| m.guest != region.guest_phys_addr);
        Ok(())
    }

    fn set_device_state_fd(
        &mut self,
        _direction: VhostTransferStateDirection,
        _phase: VhostTransferStatePhase,
        _fd: File,
    ) -> Result<Option<File>> {
        Err(invalid("device state transfer is not offered"))
    }

    fn check_device_state(&mut self) -> Result<()> {
        Err(invalid("device state transfer is not offered"))
    }

    fn get_shmem_config(&mut self) -> Result<VhostUserShMemConfig> {
        Err(invalid("shared memory regions are not offered"))
    }

    fn set_log_base(&mut self, _log: &VhostUserLog, _file: File) -> Result<()> {
        Err(invalid("dirty logging (migration) is not offered"))
    }
}
