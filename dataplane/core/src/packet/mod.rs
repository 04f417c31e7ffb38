//! Packets: reusable buffers, MAC addresses, checksums and the small mutable
//! header views the pipeline rewrites through.
//!
//! Parsing of untrusted input is etherparse's job; it has no mutable slices and
//! does not verify IPv4 header checksums, so the fields we rewrite (TTL,
//! addresses, checksums, MACs) go through the views in [`view`], and
//! [`checksum`] does the arithmetic (full sums and RFC 1624 incremental
//! updates).

pub mod buf;
pub mod check;
pub mod checksum;
pub mod icmp_types;
pub mod mac;
pub mod offload;
pub mod view;

pub use buf::{BufPool, Meta, Next, Origin, Packet, PacketBuf, Resume};
pub use mac::MacAddr;
pub use offload::Offload;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// Length of an Ethernet II header.
pub const ETH_HLEN: usize = 14;

/// The solicited-node multicast address of `a` (ff02::1:ffXX:XXXX).
pub fn solicited_node(a: std::net::Ipv6Addr) -> std::net::Ipv6Addr {
    let o = a.octets();
    std::net::Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}
