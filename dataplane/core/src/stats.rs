//! Counters: one drop-reason enum for every way a packet can stop, counted per
//! port (STYLE.md 5).
//!
//! The accounting identity holds at all times outside a burst:
//! `rx == forwarded + local + dropped + held`, where `held` are packets
//! waiting for a neighbour to resolve.

macro_rules! drop_reasons {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal, )*) => {
        /// Why a packet was dropped.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DropReason {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl DropReason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant),*];

            /// The reason's stable snake_case name (used in reports and JSON).
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// One line saying what the reason means.
            pub fn describe(self) -> &'static str {
                match self { $(DropReason::$variant => concat!($($doc),*).trim_ascii(),)* }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than an Ethernet header.
    Runt = "runt",
    /// Longer than the largest frame a buffer holds.
    Oversize = "oversize",
    /// Source MAC or address a port's security rules do not allow, or an
    /// inside (NATed) source arriving from outside.
    SpoofedSource = "spoofed_source",
    /// New source MAC on a switch whose MAC table is full.
    MacTableFull = "mac_table_full",
    /// Switched frame with nowhere to go: unicast back to the port it came from, or no other member up.
    L2NoDestination = "l2_no_destination",
    /// Inbound to an external address with no mapping, or an ICMP error about no session.
    NatNoSession = "nat_no_session",
    /// Inbound to a mapping from a remote its filtering does not let in, or routed from a NAT outside port straight to an inside address (unsolicited).
    NatFiltered = "nat_filtered",
    /// No external port left for a new mapping (answered with ICMP administratively prohibited).
    NatPortsExhausted = "nat_ports_exhausted",
    /// The NAT session table is full (answered with ICMP administratively prohibited).
    NatSessionLimit = "nat_session_limit",
    /// The inside host has as many NAT sessions as it may (answered with ICMP administratively prohibited).
    NatHostLimit = "nat_host_limit",
    /// IPv4 fragment on a NAT path: edgefwd does not track fragments.
    NatFragment = "nat_fragment",
    /// Protocol NAT does not translate (not TCP, UDP or ICMP echo and errors).
    NatUnsupportedProtocol = "nat_unsupported_protocol",
    /// To a service address on a protocol or port the service does not serve.
    ServiceNoPort = "service_no_port",
    /// To a service with no active backend.
    ServiceNoBackend = "service_no_backend",
    /// To a cluster IP from outside the cluster (not from an internal switch).
    ServiceOutsideCluster = "service_outside_cluster",
    /// A TCP segment in mid-connection whose backend was removed (answered with a reset).
    ServiceBackendGone = "service_backend_gone",
    /// Its flow belongs to another worker, whose hand-off queue from this one was full.
    HandOffFull = "handoff_full",
    /// The capture cut the frame short (snap length), so it cannot be forwarded whole.
    Truncated = "truncated",
    /// Unicast to another MAC address.
    NotOurMac = "not_our_mac",
    /// 802.1Q tagged with a VLAN this port does not carry (only untagged and priority-tagged frames are routed).
    VlanUnsupported = "vlan_unsupported",
    /// EtherType that edgefwd does not route (LLDP, MPLS, PPPoE, ...).
    UnknownEthertype = "unknown_ethertype",
    /// ARP packet too short or not Ethernet/IPv4.
    ArpMalformed = "arp_malformed",
    /// ARP request for an address that is not ours.
    ArpNotForUs = "arp_not_for_us",
    /// IPv4 header invalid (version, header length, total length).
    Ip4Malformed = "ip4_malformed",
    /// IPv4 header checksum wrong.
    Ip4BadChecksum = "ip4_bad_checksum",
    /// IPv6 header or extension header chain invalid.
    Ip6Malformed = "ip6_malformed",
    /// Source address that may not appear on the wire (multicast, broadcast, loopback, unspecified, ours).
    BadSource = "bad_source",
    /// Multicast or broadcast destination (edgefwd does not route multicast).
    NotRoutable = "not_routable",
    /// Link-local address that must not cross a router.
    LinkLocal = "link_local",
    /// TTL or hop limit ran out (answered with ICMP time exceeded).
    TtlExpired = "ttl_expired",
    /// No route to the destination (answered with ICMP destination unreachable).
    NoRoute = "no_route",
    /// Larger than the egress MTU with DF set, or IPv6 (answered with ICMP fragmentation needed / packet too big).
    MtuExceeded = "mtu_exceeded",
    /// Larger than the egress MTU without DF: edgefwd does not fragment.
    FragmentationUnsupported = "fragmentation_unsupported",
    /// The next hop did not answer ARP/NDP in time.
    NeighborUnresolved = "neighbor_unresolved",
    /// Too many packets already waiting for this next hop (or, over all next
    /// hops, for the router's hold budget) to resolve.
    NeighborQueueFull = "neighbor_queue_full",
    /// Too many next hops resolving at once.
    NeighborTableFull = "neighbor_table_full",
    /// Addressed to the appliance, for a protocol it does not serve (and its port has no host mirror).
    LocalUnsupported = "local_unsupported",
    /// For the host, over its mirror's punt rate or with the mirror's queue full.
    PuntDropped = "punt_dropped",
    /// ICMP/ICMPv6 message too short or with a bad checksum.
    IcmpMalformed = "icmp_malformed",
    /// Egress port is down.
    PortDown = "port_down",
    /// Egress queue full.
    TxQueueFull = "tx_queue_full",
    /// The port's receive queue was full (the workers fell behind).
    RxQueueFull = "rx_queue_full",
    /// A device's offload header does not fit the packet it came with.
    OffloadInvalid = "offload_invalid",
    /// A VM's descriptor chain (vhost-user) that points outside its memory, loops, is empty, or is write-only where the frame is to be read.
    VirtioBadDescriptor = "virtio_bad_descriptor",
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = DropReason::ALL.len();

    /// Looks a reason up by its [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.name() == name)
    }
}

/// Counters of one port.
#[derive(Clone, Debug)]
pub struct PortStats {
    /// Frames received.
    pub rx: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted (forwarded and generated).
    pub tx: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Received frames dropped, by reason.
    pub drops: [u64; DropReason::COUNT],
    /// Frames counted in `tx` that the device then refused (its queue full,
    /// or the device gone).
    pub tx_errors: u64,
}

// Arrays longer than 32 have no derived Default.
impl Default for PortStats {
    fn default() -> Self {
        PortStats {
            rx: 0,
            rx_bytes: 0,
            tx: 0,
            tx_bytes: 0,
            drops: [0; DropReason::COUNT],
            tx_errors: 0,
        }
    }
}

impl PortStats {
    /// Total drops on this port.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    fn add(&mut self, o: &PortStats) {
        self.rx += o.rx;
        self.rx_bytes += o.rx_bytes;
        self.tx += o.tx;
        self.tx_bytes += o.tx_bytes;
        self.tx_errors += o.tx_errors;
        for (a, b) in self.drops.iter_mut().zip(o.drops) {
            *a += b;
        }
    }
}

/// Counters of a router.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Per-port counters, indexed by port id.
    pub ports: Vec<PortStats>,
    /// Received packets sent out again.
    pub forwarded: u64,
    /// Received packets ip4-fast took from eth-input to transmit in one
    /// pass (see `pipeline::ip4_fast`); the rest went through the stages.
    pub fast_path: u64,
    /// Received packets consumed by the appliance.
    pub local: u64,
    /// Packets the appliance made and sent.
    pub generated: u64,
    /// Copies a switch made to flood a frame to more than one member, sent.
    /// Outside the identity: the frame itself ends once.
    pub flooded: u64,
    /// Packets the appliance made but could not send (no route back, next hop
    /// unresolved, rate limit), by reason. Not part of the identity.
    pub generated_drops: [u64; DropReason::COUNT],
    /// ICMP errors not sent because of the rate limit.
    pub icmp_rate_limited: u64,
    /// Packets handed to the worker that owns their flow. Outside the
    /// identity: the packet ends on that worker.
    pub handed_off: u64,
    /// Packets other workers handed to this one.
    pub handed_in: u64,
    /// Received packets for the appliance that edgefwd does not answer
    /// itself, sent to their port's host mirror (counted in `forwarded`).
    pub punted: u64,
    /// Frames the host sent on a mirror, sent out of its port as they
    /// were (counted in `forwarded`).
    pub injected: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new(0)
    }
}

impl Stats {
    /// Counters for `n` ports.
    pub fn new(n: usize) -> Self {
        Stats {
            ports: vec![PortStats::default(); n],
            forwarded: 0,
            fast_path: 0,
            local: 0,
            generated: 0,
            flooded: 0,
            generated_drops: [0; DropReason::COUNT],
            icmp_rate_limited: 0,
            handed_off: 0,
            handed_in: 0,
            punted: 0,
            injected: 0,
        }
    }

    /// Adds another router's counters (the workers' sum).
    pub fn add(&mut self, o: &Stats) {
        if self.ports.len() < o.ports.len() {
            self.ports.resize(o.ports.len(), PortStats::default());
        }
        for (a, b) in self.ports.iter_mut().zip(&o.ports) {
            a.add(b);
        }
        self.forwarded += o.forwarded;
        self.fast_path += o.fast_path;
        self.local += o.local;
        self.generated += o.generated;
        self.flooded += o.flooded;
        self.icmp_rate_limited += o.icmp_rate_limited;
        self.handed_off += o.handed_off;
        self.handed_in += o.handed_in;
        self.punted += o.punted;
        self.injected += o.injected;
        for (a, b) in self.generated_drops.iter_mut().zip(o.generated_drops) {
            *a += b;
        }
    }

    /// Received packets so far.
    pub fn received(&self) -> u64 {
        self.ports.iter().map(|p| p.rx).sum()
    }

    /// Received packets that have ended: forwarded, delivered locally or
    /// dropped. The accounting identity is `received == ended + held`.
    pub fn ended(&self) -> u64 {
        self.forwarded + self.local + self.dropped()
    }

    /// Received packets dropped so far.
    pub fn dropped(&self) -> u64 {
        self.ports.iter().map(PortStats::dropped).sum()
    }

    /// Drops by reason over all ports.
    pub fn drops_by_reason(&self) -> [u64; DropReason::COUNT] {
        let mut out = [0; DropReason::COUNT];
        for p in &self.ports {
            for (o, d) in out.iter_mut().zip(p.drops) {
                *o += d;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for r in DropReason::ALL {
            assert_eq!(DropReason::from_name(r.name()), Some(*r));
        }
    }
}
