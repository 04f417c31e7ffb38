//! `none`: a port bound to nothing, administratively down. It receives
//! nothing and refuses whatever is sent to it (counted as `tx_errors`,
//! though the FIB routes nothing to a down port).

use edgefwd_core::packet::Packet;
use edgefwd_core::port::LinkState;

use crate::device::{BufSource, Capabilities, Device, QueueIo, Readiness, Received, RxStatus};

/// The device of an unbound port.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDevice;

impl Device for NoDevice {
    fn kind(&self) -> &'static str {
        "none"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn readiness(&self, _queue: usize) -> Readiness {
        Readiness::Never
    }

    fn rx_burst(
        &self,
        _io: &mut QueueIo,
        _pool: &mut dyn BufSource,
        _max: usize,
        _out: &mut Vec<Received>,
    ) -> RxStatus {
        RxStatus::Drained
    }

    fn tx_burst(&self, _io: &mut QueueIo, pkts: &mut [Packet]) -> u64 {
        pkts.len() as u64
    }

    fn link(&self) -> LinkState {
        LinkState::AdminDown
    }
}
