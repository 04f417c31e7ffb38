//! Opening a port's device from its binding, for `run` at start and for
//! `port bind` while running.

use std::io;
use std::sync::Arc;

use edgefwd_core::packet::buf::MAX_FRAME;
use edgefwd_io::tap::GSO_MAX_FRAME;
use edgefwd_io::{AfPacket, AfXdp, Binding, Device, NoDevice, Tap, VhostUser};
use tracing::info;

use crate::config::{Config, PortConfig};

/// A port whose device could not be opened, with its binding.
#[derive(Debug, thiserror::Error)]
#[error("port {port} (bind {bind}): {error}")]
pub struct OpenError {
    /// Port name.
    pub port: String,
    /// Its binding.
    pub bind: Binding,
    /// What failed.
    pub error: io::Error,
}

/// How devices are opened: the same for every port of a run.
#[derive(Clone, Debug)]
pub struct DeviceParams {
    /// Worker threads (a TAP gets one queue each).
    pub workers: usize,
    /// TAP offloads (virtio-net headers).
    pub offload: bool,
    /// Queue depth.
    pub depth: usize,
    /// Frame size every buffer is made for.
    pub buf_frame: usize,
}

impl DeviceParams {
    /// The parameters a config asks for.
    pub fn from_config(cfg: &Config) -> DeviceParams {
        let offload = cfg.dataplane.offload;
        DeviceParams {
            workers: cfg
                .dataplane
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            offload,
            depth: cfg.dataplane.queue_depth,
            // Buffers circulate between devices and workers, so all are made
            // for the largest frame any device hands over.
            buf_frame: if offload { GSO_MAX_FRAME } else { MAX_FRAME },
        }
    }
}

/// Opens the device `bind` names for port `port_name` (whose MAC is `mac`).
pub fn open(
    port_name: &str,
    mac: edgefwd_core::packet::MacAddr,
    bind: &Binding,
    params: &DeviceParams,
) -> io::Result<Arc<dyn Device>> {
    match bind {
        Binding::Tap { name, netns } => {
            let tap = open_tap(name, netns.as_deref(), params)?;
            info!(port = port_name, %bind, queues = tap.queues(), offload = params.offload, "opened");
            Ok(Arc::new(tap))
        }
        Binding::AfPacket { name, netns } => {
            let nic = AfPacket::open(
                name,
                netns.as_deref(),
                mac,
                params.depth,
                MAX_FRAME,
                params.buf_frame,
            )?;
            info!(port = port_name, %bind, "opened");
            Ok(Arc::new(nic))
        }
        Binding::AfXdp { name, netns } => {
            let nic = AfXdp::open(name, netns.as_deref(), params.workers)?;
            info!(port = port_name, %bind, sockets = nic.queues(), copy_mode = nic.copy_mode(), "opened");
            Ok(Arc::new(nic))
        }
        Binding::VhostUser { path, client } => {
            let vm = VhostUser::open(path, *client, params.workers, params.offload)?;
            info!(port = port_name, %bind, "waiting for its VM's frontend");
            Ok(Arc::new(vm))
        }
        Binding::None => Ok(Arc::new(NoDevice)),
        Binding::Pcap => Err(io::Error::other(
            "pcap is for replay; run needs tap:, afpacket:, afxdp:, vhost-user: or none",
        )),
    }
}

/// Opens the host mirror `bind` (a TAP) of `port` and gives its kernel
/// side the port's MAC, MTU and addresses. Returns the TAP (its carrier
/// follows the port) and its interface index.
pub fn open_mirror(
    port: &PortConfig,
    bind: &Binding,
    params: &DeviceParams,
) -> io::Result<(Arc<Tap>, u32)> {
    let Binding::Tap { name, netns } = bind else {
        return Err(io::Error::other("a host mirror is a TAP"));
    };
    let tap = open_tap(name, netns.as_deref(), params)?;
    let index = edgefwd_io::mirror::configure(&tap, port.mac, port.mtu, &port.addresses)?;
    info!(port = %port.name, %bind, index, "host mirror opened");
    Ok((Arc::new(tap), index))
}

/// TAP `name` in `netns` with a queue per worker, as `params` ask.
fn open_tap(name: &str, netns: Option<&str>, params: &DeviceParams) -> io::Result<Tap> {
    Tap::open(name, netns, params.workers, params.offload, params.depth)
}
