//! Which worker holds each external port of one NAT instance.
//!
//! Each worker keeps its own NAT table (no lock on the packet path), and a
//! flow belongs to one worker: outbound, the worker its inside address
//! hashes to (`pipeline::handoff`), so that one inside endpoint has one
//! mapping whatever worker sees its flows (RFC 4787 endpoint-independent
//! mapping); inbound, the worker that holds the destination port. That
//! second half is this table: one byte per port and protocol, written when
//! a worker takes or frees a port and read by any worker without a lock.
//!
//! VPP's NAT44-ED gives each worker a fixed slice of the port space
//! instead. A fixed slice cannot keep an inside port that falls in another
//! worker's slice, which costs port preservation (and port parity, RFC 4787
//! REQ-2's recommendation); claiming ports one at a time keeps both, and
//! the RFC 6056 choice of a port (its secret and counter) stays one per
//! instance, so the ports chosen do not depend on how many workers there
//! are.

use std::hash::BuildHasher;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use foldhash::fast::{FixedState, RandomState};

use super::Proto;

/// The port claims of one NAT instance, shared by every worker's table.
pub struct PortClaims {
    /// Owner + 1 by port, per protocol (0: free).
    owners: [Box<[AtomicU8]>; 3],
    /// Ports claimed per protocol: in 1-1023, and in the rest.
    used: [[AtomicU32; 2]; 3],
    /// RFC 6056 algorithm 3: the secret hash and the counter.
    secret: FixedState,
    next: AtomicU32,
}

impl PortClaims {
    /// No port claimed. `secret` fixes the port choice (tests, fuzzing);
    /// `None` draws a random one, as RFC 6056 wants.
    pub fn new(secret: Option<u64>) -> PortClaims {
        let ports = || (0..1 << 16).map(|_| AtomicU8::new(0)).collect();
        PortClaims {
            owners: [ports(), ports(), ports()],
            used: Default::default(),
            secret: FixedState::with_seed(
                secret.unwrap_or_else(|| RandomState::default().hash_one(0u8)),
            ),
            next: AtomicU32::new(0),
        }
    }

    /// The worker holding `port`, if any.
    #[inline]
    pub fn owner(&self, proto: Proto, port: u16) -> Option<usize> {
        let o = self.owners[proto.index()][usize::from(port)].load(Ordering::Acquire);
        usize::from(o).checked_sub(1)
    }

    /// True when no worker holds `port`.
    #[inline]
    pub(crate) fn is_free(&self, proto: Proto, port: u16) -> bool {
        self.owner(proto, port).is_none()
    }

    /// Takes `port` for `worker`; false when some worker holds it.
    pub(crate) fn claim(&self, proto: Proto, port: u16, worker: usize) -> bool {
        let me = u8::try_from(worker + 1).unwrap_or(u8::MAX);
        let taken = self.owners[proto.index()][usize::from(port)]
            .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if taken {
            self.used[proto.index()][class(proto, port)].fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Frees `port` (held by the caller).
    pub(crate) fn release(&self, proto: Proto, port: u16) {
        self.owners[proto.index()][usize::from(port)].store(0, Ordering::Release);
        self.used[proto.index()][class(proto, port)].fetch_sub(1, Ordering::Relaxed);
    }

    /// Ports claimed in `port`'s class (1-1023, or the rest).
    pub(crate) fn used(&self, proto: Proto, port: u16) -> u32 {
        self.used[proto.index()][class(proto, port)].load(Ordering::Relaxed)
    }

    /// Where RFC 6056 algorithm 3 starts looking for a port for `src`.
    pub(crate) fn offset(&self, proto: Proto, src: (Ipv4Addr, u16)) -> u32 {
        self.secret.hash_one((proto, src.0, src.1)) as u32
    }

    /// The algorithm's counter, moved on by `by`; its value before.
    pub(crate) fn advance(&self, by: u32) -> u32 {
        self.next.fetch_add(by, Ordering::Relaxed)
    }

    /// The algorithm's counter.
    pub(crate) fn counter(&self) -> u32 {
        self.next.load(Ordering::Relaxed)
    }
}

/// 0 for ports 1-1023 (and 0), 1 for the rest; ICMP ids are all one class.
fn class(proto: Proto, port: u16) -> usize {
    usize::from(proto == Proto::Icmp || port >= 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_has_one_owner_until_released() {
        let c = PortClaims::new(Some(1));
        assert!(c.claim(Proto::Udp, 5000, 1));
        assert!(!c.claim(Proto::Udp, 5000, 0));
        assert_eq!(c.owner(Proto::Udp, 5000), Some(1));
        assert_eq!(c.owner(Proto::Tcp, 5000), None, "per protocol");
        assert_eq!(c.used(Proto::Udp, 6000), 1);
        assert_eq!(c.used(Proto::Udp, 80), 0, "low ports counted apart");
        c.release(Proto::Udp, 5000);
        assert!(c.is_free(Proto::Udp, 5000));
        assert!(c.claim(Proto::Udp, 5000, 0));
    }
}
