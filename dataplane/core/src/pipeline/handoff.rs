//! Which worker owns a flow, and the hand-off of a packet to it.
//!
//! Each worker keeps its own stateful tables (NAT, services), so every
//! stateful flow has one owning worker, and a packet of it that arrives on
//! another is handed over ([`Next::HandOff`]) to resume at the stage that
//! asked. The owner is found from the packet alone: by the address of the
//! flow's inside host or client ([`address_owner`]), by the NAT's port
//! claims (see `nat::claims`), or by a port a worker chose so that it names
//! the worker ([`port_owner`]).

use std::net::{IpAddr, Ipv4Addr};

use super::Tables;
use crate::packet::{Next, Packet, Resume};

/// The worker, of `workers`, that owns the flows of address `a` (an inside
/// host's outbound NAT flows, a client's service flows).
#[inline]
pub fn address_owner(a: Ipv4Addr, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    // Fibonacci hashing: the high bits of the product mix every octet.
    let h = u32::from(a).wrapping_mul(0x9e37_79b1) >> 16;
    h as usize % workers
}

/// [`address_owner`] of either family: an IPv6 address by its four words
/// folded into one.
#[inline]
pub fn owner_of(a: IpAddr, workers: usize) -> usize {
    match a {
        IpAddr::V4(v) => address_owner(v, workers),
        IpAddr::V6(v) => {
            let w = u128::from(v);
            let folded = (w ^ w >> 64) as u64;
            address_owner(Ipv4Addr::from((folded ^ folded >> 32) as u32), workers)
        }
    }
}

/// The worker, of `workers`, that a port chosen by [`port_for`] names.
#[inline]
pub fn port_owner(port: u16, workers: usize) -> usize {
    usize::from(port) % workers.max(1)
}

/// The first port from `port` on (wrapping within 1024-65535) that names
/// `worker` of `workers`.
pub fn port_for(port: u16, worker: usize, workers: usize) -> u16 {
    let mut p = port.max(1024);
    while port_owner(p, workers) != worker {
        p = p.checked_add(1).unwrap_or(1024);
    }
    p
}

/// Where `p` goes when its flow's `owner` is another worker: handed to it,
/// to resume `at` a stage. `None` when this worker owns it, nobody does
/// (the packet is dropped or delivered here), or it has been handed on
/// twice already (a hairpin's two owners), which ends any ping-pong.
pub(super) fn hand_off(
    t: &Tables,
    p: &mut Packet,
    owner: Option<usize>,
    at: Resume,
) -> Option<Next> {
    let to = owner.filter(|&o| o != t.worker && t.workers > 1 && p.meta.hops < 2)?;
    p.meta.hops += 1;
    Some(Next::HandOff { to: to as u8, at })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_spread_over_the_workers() {
        let mut n = [0usize; 4];
        for i in 0..4096u32 {
            n[address_owner(Ipv4Addr::from(0xac1c_0000 + i), 4)] += 1;
        }
        assert!(n.iter().all(|&k| k > 900), "{n:?}");
        assert_eq!(address_owner(Ipv4Addr::new(10, 0, 0, 1), 1), 0);
    }

    #[test]
    fn a_chosen_port_names_its_worker() {
        for w in 0..3 {
            let p = port_for(40000, w, 3);
            assert_eq!(port_owner(p, 3), w);
            assert!((40000..40003).contains(&p));
        }
        assert_eq!(port_for(80, 0, 1), 1024, "low ports stay out");
        assert_eq!(port_owner(port_for(65535, 1, 2), 2), 1, "wraps");
    }
}
