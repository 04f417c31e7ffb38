//! ICMP and ICMPv6 message types and codes, as the wire has them: shared by
//! the stages that answer with ICMP and by NAT, which rewrites ICMP.

/// ICMPv4 types and codes.
pub mod v4 {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DEST_UNREACH: u8 = 3;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 12;
    /// Destination unreachable: network unreachable.
    pub const CODE_NET_UNREACH: u8 = 0;
    /// Destination unreachable: fragmentation needed and DF set.
    pub const CODE_FRAG_NEEDED: u8 = 4;
    /// Communication administratively prohibited (RFC 1812): NAT out of
    /// ports or over its session limits (RFC 5508 REQ-8).
    pub const CODE_ADMIN_PROHIBITED: u8 = 13;
}

/// ICMPv6 types.
pub mod v6 {
    /// Destination unreachable.
    pub const DEST_UNREACH: u8 = 1;
    /// Packet too big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
}
