//! The worker's transmit side: what the router queued goes out through
//! each port's device, a burst per port.

use edgefwd_core::port::PortId;

use super::Worker;
use crate::capture::Direction;

impl Worker {
    /// Hands every port's queued packets to its device; frames a device
    /// refuses are counted as the port's `tx_errors`.
    pub(super) fn flush(&mut self) {
        self.send();
        // The burst is out: the VMs get back the chains whose frames' tails
        // it carried.
        if !self.io.tails.is_empty() {
            self.io.tails.release();
        }
    }

    fn send(&mut self) {
        if !self.router.has_tx() {
            return;
        }
        for (port, dev) in self.snapshot.devices.iter().enumerate() {
            let port = port as PortId;
            let mut refused = 0;
            let io = &mut self.io;
            let (captures, epoch) = (&self.shared.captures, self.epoch_unix_ns);
            self.router.drain_tx_all(port, |pkts| {
                if captures.armed() && !pkts.is_empty() {
                    for p in pkts.iter_mut() {
                        io.tails.fill(&mut p.buf);
                        captures.offer(port, epoch + p.meta.ts.0, Direction::Tx, p.buf.frame());
                    }
                }
                if !dev.carries_tails() && !io.tails.is_empty() {
                    for p in pkts.iter_mut() {
                        io.tails.fill(&mut p.buf);
                    }
                }
                refused = dev.tx_burst(io, pkts);
            });
            if refused > 0 {
                self.router.count_tx_errors(port, refused);
            }
        }
    }
}
