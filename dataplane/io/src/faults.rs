//! A fault injector that wraps any device (smoltcp's `FaultInjector`, for
//! bursts): received frames dropped, corrupted or delayed, transmissions
//! refused, the device failed, each by a seeded draw so a test run repeats
//! exactly. Every fault it injects is counted ([`FaultCounts`]), so a test
//! can hold the router's counters to them: nothing may go missing
//! silently.

use std::collections::VecDeque;
use std::io;

use edgefwd_core::packet::Packet;
use edgefwd_core::port::LinkState;
use parking_lot::Mutex;

use crate::device::{delegate_to_inner, BufSource, Device, QueueIo, Received, RxStatus};

/// Which faults, how often (each a probability per frame, 0 to 1), and the
/// seed of the draws.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Seed of the draws.
    pub seed: u64,
    /// A received frame is dropped before the router sees it.
    pub drop_rx: f64,
    /// A received frame has one byte flipped.
    pub corrupt_rx: f64,
    /// A received frame is held back until the next receive.
    pub delay_rx: f64,
    /// A packet to transmit is refused.
    pub refuse_tx: f64,
    /// The device fails (every receive an error from then on) once this
    /// many frames have been received.
    pub fail_after_rx: Option<u64>,
}

/// The faults injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Frames received by the device and dropped here.
    pub dropped: u64,
    /// Frames passed on with a byte flipped.
    pub corrupted: u64,
    /// Frames held back for a later receive.
    pub delayed: u64,
    /// Packets refused for transmission.
    pub refused: u64,
    /// Frames the inner device received (before any fault).
    pub received: u64,
    /// True once the device has been failed.
    pub failed: bool,
}

struct State {
    rng: u64,
    counts: FaultCounts,
    delayed: VecDeque<Received>,
    scratch: Vec<Received>,
}

impl State {
    /// A draw in [0, 1) (splitmix64).
    fn draw(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `D` with faults injected.
pub struct Faulty<D> {
    inner: D,
    faults: Faults,
    state: Mutex<State>,
}

impl<D: Device> Faulty<D> {
    /// Wraps `inner`.
    pub fn new(inner: D, faults: Faults) -> Faulty<D> {
        Faulty {
            inner,
            state: Mutex::new(State {
                rng: faults.seed,
                counts: FaultCounts::default(),
                delayed: VecDeque::new(),
                scratch: Vec::new(),
            }),
            faults,
        }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        self.state.lock().counts
    }

    /// Frames held back now.
    pub fn held_back(&self) -> usize {
        self.state.lock().delayed.len()
    }
}

impl<D: Device> Device for Faulty<D> {
    delegate_to_inner!();

    fn rx_burst(
        &self,
        io: &mut QueueIo,
        pool: &mut dyn BufSource,
        max: usize,
        out: &mut Vec<Received>,
    ) -> RxStatus {
        let mut st = self.state.lock();
        if st.counts.failed {
            return RxStatus::Failed(io::Error::other("failure injected"));
        }
        // What was held back goes first.
        let mut room = max;
        while room > 0 {
            let Some(r) = st.delayed.pop_front() else {
                break;
            };
            out.push(r);
            room -= 1;
        }
        let mut got = std::mem::take(&mut st.scratch);
        let status = self.inner.rx_burst(io, pool, room, &mut got);
        for mut r in got.drain(..) {
            st.counts.received += 1;
            if st.draw() < self.faults.drop_rx {
                st.counts.dropped += 1;
                pool.give_back(r.buf);
                continue;
            }
            if st.draw() < self.faults.corrupt_rx && !r.buf.is_empty() {
                let at = (st.draw() * r.buf.len() as f64) as usize;
                let frame = r.buf.frame_mut();
                let at = at.min(frame.len() - 1);
                frame[at] ^= 0xa5;
                st.counts.corrupted += 1;
            }
            if st.draw() < self.faults.delay_rx {
                st.counts.delayed += 1;
                st.delayed.push_back(r);
                continue;
            }
            out.push(r);
        }
        st.scratch = got;
        if self
            .faults
            .fail_after_rx
            .is_some_and(|n| st.counts.received >= n)
        {
            st.counts.failed = true;
            for r in st.delayed.drain(..) {
                out.push(r);
            }
            return RxStatus::Failed(io::Error::other("failure injected"));
        }
        match status {
            // Frames held back: come again.
            RxStatus::Drained if !st.delayed.is_empty() => RxStatus::More,
            s => s,
        }
    }

    fn tx_burst(&self, io: &mut QueueIo, pkts: &mut [Packet]) -> u64 {
        let mut refused = 0;
        let mut rest = pkts;
        while !rest.is_empty() {
            // The packets up to the next refused one go out together.
            let mut st = self.state.lock();
            let cut = (0..rest.len()).find(|_| st.draw() < self.faults.refuse_tx);
            drop(st);
            let (send, later) = rest.split_at_mut(cut.unwrap_or(rest.len()));
            refused += self.inner.tx_burst(io, send);
            let Some((_, tail)) = later.split_first_mut() else {
                break;
            };
            self.state.lock().counts.refused += 1;
            refused += 1;
            rest = tail;
        }
        refused
    }

    fn link(&self) -> LinkState {
        if self.state.lock().counts.failed {
            LinkState::Gone
        } else {
            self.inner.link()
        }
    }
}
