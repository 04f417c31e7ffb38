//! Gauges: how full a router's tables are (neighbours by state, NAT
//! sessions and external ports by protocol), as the metrics show them.
//!
//! Counters only grow and are summed; these go up and down and are taken
//! now and then from the tables themselves, so they live apart from
//! [`crate::stats`].

use std::net::Ipv4Addr;

use crate::nat::Proto;
use crate::port::PortId;

/// Neighbour entries by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighborCensus {
    /// Configured entries.
    pub permanent: u64,
    /// Learned and confirmed within the reachable time.
    pub reachable: u64,
    /// Learned, not confirmed lately (still used).
    pub stale: u64,
    /// Being resolved.
    pub incomplete: u64,
}

impl NeighborCensus {
    /// Each state's name and count, as the metrics label them.
    pub fn by_state(&self) -> [(&'static str, u64); 4] {
        [
            ("permanent", self.permanent),
            ("reachable", self.reachable),
            ("stale", self.stale),
            ("incomplete", self.incomplete),
        ]
    }

    /// Adds another worker's.
    pub fn add(&mut self, o: &NeighborCensus) {
        self.permanent += o.permanent;
        self.reachable += o.reachable;
        self.stale += o.stale;
        self.incomplete += o.incomplete;
    }
}

/// One NAT instance's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatCensus {
    /// The outside port.
    pub outside: PortId,
    /// The external address.
    pub external: Ipv4Addr,
    /// Live sessions by protocol (in [`Proto::ALL`] order).
    pub sessions: [u64; 3],
    /// External ports in use by protocol (in [`Proto::ALL`] order).
    pub ports_used: [u64; 3],
    /// External ports (echo identifiers for ICMP) each protocol may use
    /// (in [`Proto::ALL`] order).
    pub ports_available: [u64; 3],
    /// Live TCP sessions by state (in [`crate::nat::TCP_STATES`] order).
    pub tcp_states: [u64; 5],
}

/// A router's gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Neighbour entries by state.
    pub neighbors: NeighborCensus,
    /// Each NAT instance's table.
    pub nat: Vec<NatCensus>,
    /// Packets waiting for a neighbour to resolve.
    pub held: u64,
    /// Each service's counters, by name.
    pub services: Vec<(String, crate::service::ServiceCounters)>,
    /// Live service flows evicted from a full connection table.
    pub service_evictions: u64,
}

impl Census {
    /// Adds another worker's (NAT instances of the same external address
    /// and port summed).
    pub fn add(&mut self, o: &Census) {
        self.neighbors.add(&o.neighbors);
        self.held += o.held;
        self.service_evictions += o.service_evictions;
        for (name, c) in &o.services {
            match self.services.iter_mut().find(|(n, _)| n == name) {
                Some((_, mine)) => mine.add(c),
                None => self.services.push((name.clone(), c.clone())),
            }
        }
        for n in &o.nat {
            match self
                .nat
                .iter_mut()
                .find(|m| m.outside == n.outside && m.external == n.external)
            {
                Some(m) => {
                    for p in 0..3 {
                        m.sessions[p] += n.sessions[p];
                        m.ports_used[p] += n.ports_used[p];
                    }
                    for (a, b) in m.tcp_states.iter_mut().zip(n.tcp_states) {
                        *a += b;
                    }
                }
                None => self.nat.push(n.clone()),
            }
        }
    }
}

impl Proto {
    /// Every protocol, in index order.
    pub const ALL: [Proto; 3] = [Proto::Tcp, Proto::Udp, Proto::Icmp];
}
