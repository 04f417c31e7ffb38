//! An in-memory port, for tests that drive the whole pipeline without a
//! device (STYLE.md 6): frames are put in by the test and what the router
//! sends is kept for it to read.

use std::collections::VecDeque;

use edgefwd_core::packet::Packet;
use edgefwd_core::port::LinkState;
use parking_lot::Mutex;

use crate::device::{
    plain_frames, BufSource, Capabilities, Device, QueueIo, Readiness, Received, RxStatus,
};

/// An in-memory port: a queue of frames to receive and a list of frames
/// sent.
#[derive(Default)]
pub struct MemPort {
    rx: Mutex<VecDeque<Vec<u8>>>,
    tx: Mutex<Vec<Vec<u8>>>,
    down: std::sync::atomic::AtomicBool,
}

impl MemPort {
    /// An empty port, up.
    pub fn new() -> MemPort {
        MemPort::default()
    }

    /// Queues `frame` to be received.
    pub fn push(&self, frame: Vec<u8>) {
        self.rx.lock().push_back(frame);
    }

    /// Frames still waiting to be received.
    pub fn pending(&self) -> usize {
        self.rx.lock().len()
    }

    /// Takes the frames sent so far.
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.tx.lock())
    }

    /// Takes the link down (true) or up.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Device for MemPort {
    fn kind(&self) -> &'static str {
        "mem"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_frame: edgefwd_core::packet::buf::MAX_FRAME,
            ..Capabilities::default()
        }
    }

    fn readiness(&self, _queue: usize) -> Readiness {
        Readiness::Never
    }

    fn rx_burst(
        &self,
        _io: &mut QueueIo,
        pool: &mut dyn BufSource,
        max: usize,
        out: &mut Vec<Received>,
    ) -> RxStatus {
        let mut rx = self.rx.lock();
        for _ in 0..max {
            let Some(frame) = rx.pop_front() else {
                return RxStatus::Drained;
            };
            out.push(Received::copied(pool, &frame));
        }
        if rx.is_empty() {
            RxStatus::Drained
        } else {
            RxStatus::More
        }
    }

    fn tx_burst(&self, io: &mut QueueIo, pkts: &mut [Packet]) -> u64 {
        let mut tx = self.tx.lock();
        pkts.iter_mut()
            .map(|p| {
                let sent = plain_frames(p, &mut io.scratch, |f| {
                    tx.push(f.to_vec());
                    Ok(())
                });
                u64::from(sent.is_err())
            })
            .sum()
    }

    fn link(&self) -> LinkState {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            LinkState::AdminDown
        } else {
            LinkState::Up
        }
    }
}
