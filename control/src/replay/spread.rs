//! Which worker's queue a multi-queue TAP gives a frame to, as the kernel
//! does it: a symmetric hash of the flow (addresses, and TCP or UDP ports;
//! both directions of a flow hash alike), scaled to the number of queues.
//! The kernel seeds its hash at random; a fixed seed here keeps a replay
//! repeatable. Frames without IP (ARP) hash to 0, so queue 0.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

/// The queue, of `queues`, that `frame` lands in.
pub fn queue(frame: &[u8], queues: usize) -> usize {
    if queues <= 1 {
        return 0;
    }
    let h = flow_hash(frame);
    // The kernel's reciprocal_scale.
    ((u64::from(h) * queues as u64) >> 32) as usize
}

/// The symmetric flow hash of `frame`; 0 without IP.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return 0;
    };
    let (src, dst, proto): (IpAddr, IpAddr, u8) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                h.protocol().0,
            )
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                h.next_header().0,
            )
        }
        _ => return 0,
    };
    let (sp, dp) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        _ => (0, 0),
    };
    // Symmetric: the lower endpoint first.
    let (a, b) = if (src, sp) <= (dst, dp) {
        ((src, sp), (dst, dp))
    } else {
        ((dst, dp), (src, sp))
    };
    let mut h = DefaultHasher::new();
    (a, b, proto).hash(&mut h);
    let v = h.finish();
    (v ^ (v >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, dst, 64)
            .udp(sp, dp)
            .write(&mut v, b"x")
            .unwrap();
        v
    }

    #[test]
    fn both_directions_of_a_flow_share_a_queue_and_flows_spread() {
        let mut per = [0usize; 4];
        for i in 0..400u16 {
            let a = udp([10, 0, 0, 1], 1000 + i, [10, 0, 0, 2], 53);
            let b = udp([10, 0, 0, 2], 53, [10, 0, 0, 1], 1000 + i);
            assert_eq!(queue(&a, 4), queue(&b, 4));
            per[queue(&a, 4)] += 1;
        }
        assert!(per.iter().all(|&n| n > 60), "{per:?}");
        assert_eq!(queue(&[0u8; 60], 4), 0, "not IP: queue 0");
    }
}
