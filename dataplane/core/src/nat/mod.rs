//! NAT (masquerade) for internal switches, to the letter of RFC 4787 (UDP),
//! RFC 5382 (TCP), RFC 5508 (ICMP) and RFC 7857.
//!
//! Why not copy a well-known NAT: VPP's NAT44-ED maps per destination
//! (endpoint-dependent), which breaks peer-to-peer traversal, and Linux
//! MASQUERADE times UDP out after 30 s, under the 2 minutes RFC 4787 REQ-5
//! asks for. Here:
//! - mappings are endpoint-independent; filtering is address-dependent by
//!   default, endpoint-independent on request (REQ-1, REQ-8);
//! - an inside port is kept when free, else one is picked in the same range
//!   (1-1023, or the configured range) as RFC 6056 algorithm 3 does; one
//!   external port never serves two inside endpoints (REQ-3, REQ-4);
//! - UDP sessions last 5 minutes by default and only outbound traffic
//!   refreshes them (REQ-5, REQ-6); TCP sessions follow SYN/FIN/RST both
//!   ways with 2 h 4 min once established and 4 minutes otherwise, a RST
//!   included (RFC 5382 REQ-5, RFC 7857 §2.2); echo ids time out after
//!   60 s (RFC 5508 REQ-1);
//! - hairpinning: an inside host reaching another through the external
//!   address is seen from the external address (REQ-9);
//! - ICMP errors translate their quoted packet both ways, with correct
//!   inner and outer checksums, only for a session that exists, and never
//!   change a session (RFC 5508 REQ-3, REQ-4, REQ-9);
//! - a table bounded by `max_sessions` and `max_sessions_per_host`, and
//!   timers driven by the injected clock, so a replay is deterministic.
//!
//! IPv4 fragments on a NAT path are dropped as `nat_fragment`: edgefwd does
//! not reassemble or track fragments. Each worker has a table of its own
//! and hands packets of flows another worker owns to it (see `claims`), so
//! no lock is taken.

mod claims;
mod heads;
mod rewrite;
mod table;

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::port::PortId;
use crate::time::Time;

pub use claims::PortClaims;
pub(crate) use rewrite::{
    icmp_checksum_ok, parse, set_endpoint, translate_error, End, Parsed, Sum,
};
pub use table::{Table, TCP_STATES};

/// Which inbound packets a mapping lets in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filtering {
    /// From any remote endpoint once the mapping exists.
    EndpointIndependent,
    /// Only from remote addresses the inside endpoint has sent to.
    AddressDependent,
}

/// A translated protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP queries (echo), by identifier.
    Icmp,
}

impl Proto {
    /// The protocol of IP protocol number `p`.
    pub fn from_ip(p: u8) -> Option<Proto> {
        match p {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            1 => Some(Proto::Icmp),
            _ => None,
        }
    }

    /// The IP protocol number (the inverse of [`Proto::from_ip`]).
    pub fn ip_number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 1,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

/// How every NAT instance behaves: filtering, ports, timers and bounds
/// (`[nat]` in the config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatPolicy {
    /// Inbound filtering.
    pub filtering: Filtering,
    /// External ports for inside ports 1024 and up.
    pub ports: RangeInclusive<u16>,
    /// UDP session timeout.
    pub udp_timeout: Duration,
    /// TCP established timeout.
    pub tcp_established: Duration,
    /// TCP transitory (handshake, closing, reset) timeout.
    pub tcp_transitory: Duration,
    /// ICMP query timeout.
    pub icmp_timeout: Duration,
    /// Most sessions at once.
    pub max_sessions: usize,
    /// Most sessions of one inside host at once.
    pub max_sessions_per_host: usize,
    /// The secret behind the external port choice (RFC 6056 algorithm 3).
    /// `None`, the default: a random one per table, as the RFC wants. A
    /// fixed one makes runs repeatable (tests, fuzzing) and ports
    /// predictable to whoever knows it, so it is not a config setting.
    pub port_secret: Option<u64>,
}

impl Default for NatPolicy {
    /// Address-dependent filtering, ports 1024-65535, UDP 5 min, TCP 2 h 4
    /// min / 4 min, ICMP 60 s, 1,048,576 sessions, 16,384 per host.
    fn default() -> Self {
        NatPolicy {
            filtering: Filtering::AddressDependent,
            ports: 1024..=65535,
            udp_timeout: Duration::from_secs(300),
            tcp_established: Duration::from_secs(7440),
            tcp_transitory: Duration::from_secs(240),
            icmp_timeout: Duration::from_secs(60),
            max_sessions: 1 << 20,
            max_sessions_per_host: 16384,
            port_secret: None,
        }
    }
}

/// One outbound packet's flow, as the table needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Protocol.
    pub proto: Proto,
    /// Inside source address and port (or echo id).
    pub src: (Ipv4Addr, u16),
    /// Destination address and port (or echo id).
    pub dst: (Ipv4Addr, u16),
    /// TCP flags (0 for UDP and ICMP).
    pub flags: u8,
}

/// One NAT instance: the inside subnets that leave through one port get
/// that port's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// The outside port.
    pub outside: PortId,
    /// Its address, every translated packet's source.
    pub external: Ipv4Addr,
    /// Source subnets translated (the internal switches' subnets).
    pub inside: Vec<Ipv4Net>,
    /// Filtering, ports, timers and bounds.
    pub policy: NatPolicy,
}

/// One session, as `nat sessions` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    /// Protocol.
    pub proto: Proto,
    /// Inside address and port (or echo id).
    pub inside: (Ipv4Addr, u16),
    /// External address and port.
    pub external: (Ipv4Addr, u16),
    /// Remote address and port (0 for ICMP).
    pub remote: (Ipv4Addr, u16),
    /// `active`, or the TCP state: `syn`, `established`, `fin_wait`,
    /// `closing`, `reset`.
    pub state: &'static str,
    /// Time left before it expires.
    pub expires_in: Duration,
}

/// A NAT instance: its settings and table.
pub struct Nat {
    table: Table,
}

impl Nat {
    /// An instance with an empty table.
    pub fn new(cfg: NatConfig) -> Self {
        Nat {
            table: Table::new(cfg),
        }
    }

    /// Worker `worker`'s table of an instance shared by `workers` workers
    /// through `claims`: it holds a share of `max_sessions`.
    pub fn of_worker(
        mut cfg: NatConfig,
        claims: Arc<PortClaims>,
        worker: usize,
        workers: usize,
    ) -> Self {
        let max = &mut cfg.policy.max_sessions;
        *max = max.div_ceil(workers.max(1));
        Nat {
            table: Table::of_worker(cfg, claims, worker),
        }
    }

    /// The port claims this instance's tables share.
    pub fn claims(&self) -> &Arc<PortClaims> {
        self.table.claims()
    }

    /// Settings.
    pub fn config(&self) -> &NatConfig {
        self.table.config()
    }

    /// The table's gauges at `now`.
    pub fn census(&self, now: Time) -> crate::census::NatCensus {
        self.table.census(now)
    }

    /// The table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    pub(crate) fn table_mut(&mut self) -> &mut Table {
        &mut self.table
    }

    /// True when `a` is an inside address of this instance.
    #[inline]
    pub fn is_inside(&self, a: Ipv4Addr) -> bool {
        self.config().inside.iter().any(|n| n.contains(&a))
    }

    /// The live sessions at `now`.
    pub fn sessions(&self, now: Time) -> Vec<SessionView> {
        let mut v = self.table.view(self.config().external, now);
        v.sort_by_key(|s| (s.proto, s.inside, s.remote));
        v
    }
}

#[cfg(test)]
mod tests;
