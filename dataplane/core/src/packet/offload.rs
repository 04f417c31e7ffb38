//! Checksum and segmentation offload state carried with a packet (the
//! virtio-net header a TAP with `IFF_VNET_HDR` puts in front of each frame).
//!
//! A TCP stream through a TAP moves as 64 KiB super-packets instead of
//! 1500-byte frames when both sides agree to offload: the kernel hands us a
//! frame whose transport checksum is only the pseudo-header sum
//! (`NEEDS_CSUM`) and whose payload is to be cut into `gso_size` segments
//! (`gso`). Routing changes neither the transport header nor the payload, so
//! such a packet is forwarded whole and the egress device (another TAP, or
//! the receiving kernel) finishes the job. Only an egress that cannot take
//! the super-packet gets segments made here ([`segment`]), and only a
//! destination that needs a full checksum gets one ([`finish_checksum`]).

use super::checksum;
use super::view::{Ipv4View, Ipv6View};

/// Size of the virtio-net header (without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;

/// `flags`: the transport checksum is partial, to be finished from
/// `csum_start`, stored at `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `gso_type`: not a super-packet.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: TCP over IPv6.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type` flag: the stream uses ECN (CWR only on the first segment).
pub const GSO_ECN: u8 = 0x80;

/// The virtio-net header of one packet. Offsets count from the start of the
/// frame, whose L2 header the router never changes in length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    /// `F_NEEDS_CSUM` and the kernel's `DATA_VALID` hint.
    pub flags: u8,
    /// `GSO_*`, with `GSO_ECN` possibly or'ed in.
    pub gso_type: u8,
    /// Length of the headers in front of the payload (a hint).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where the checksummed part starts (the transport header).
    pub csum_start: u16,
    /// Where the checksum field sits, from `csum_start`.
    pub csum_offset: u16,
}

impl Offload {
    /// Reads a header; `None` when it describes something this build never
    /// asked the kernel for (UDP segmentation, unknown types).
    pub fn decode(b: &[u8; VNET_HDR_LEN]) -> Option<Offload> {
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        let o = Offload {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        };
        matches!(o.gso_type & !GSO_ECN, GSO_NONE | GSO_TCPV4 | GSO_TCPV6).then_some(o)
    }

    /// Writes the header.
    pub fn encode(&self, b: &mut [u8; VNET_HDR_LEN]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }

    /// True for a super-packet still to be segmented.
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE && self.gso_size > 0
    }

    /// True when the transport checksum is still partial.
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    /// True when the frame can be handed on as it is to a device that takes
    /// no offloads.
    pub fn is_plain(&self) -> bool {
        !self.is_gso() && !self.needs_csum()
    }

    /// True when the offsets fit a frame of `len` bytes.
    pub fn fits(&self, len: usize) -> bool {
        !self.needs_csum()
            || usize::from(self.csum_start) + usize::from(self.csum_offset) + 2 <= len
    }

    /// The L3 length of the largest segment this packet becomes: the MTU
    /// check of a super-packet. `l3` is where the network header starts;
    /// `None` when the packet is not a super-packet or its headers do not
    /// parse.
    pub fn segment_l3_len(&self, frame: &[u8], l3: usize) -> Option<usize> {
        if !self.is_gso() {
            return None;
        }
        let hdr = tcp_headers_end(frame, usize::from(self.csum_start))?;
        Some(hdr.checked_sub(l3)? + usize::from(self.gso_size))
    }
}

/// End of the TCP header that starts at `l4`.
fn tcp_headers_end(frame: &[u8], l4: usize) -> Option<usize> {
    let off = usize::from(frame.get(l4 + 12)? >> 4) * 4;
    (off >= 20 && l4 + off <= frame.len()).then_some(l4 + off)
}

/// Writes the full transport checksum of a frame whose checksum is partial
/// (the field holds the pseudo-header sum, as `NEEDS_CSUM` promises).
/// Returns false when the offsets do not fit the frame.
pub fn finish_checksum(frame: &mut [u8], off: &Offload) -> bool {
    let start = usize::from(off.csum_start);
    let at = start + usize::from(off.csum_offset);
    // Checked here whatever the flags say: the offsets are the device's.
    if at + 2 > frame.len() {
        return false;
    }
    // The field already holds the folded pseudo-header sum; summing the whole
    // range with it in place gives the final checksum.
    let c = checksum::finish(checksum::sum(&frame[start..]));
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

const IPV6_HLEN: usize = 40;
const TCP_SEQ: usize = 4;
const TCP_FLAGS: usize = 13;
const TCP_CSUM: usize = 16;
const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const CWR: u8 = 0x80;

/// Cuts a TCP super-packet into frames of at most `gso_size` payload bytes,
/// each with complete headers and checksums, handing each to `emit` from
/// `scratch` (which must hold a full segment frame). `l3` is where the
/// network header starts. Returns the number of segments, or `None` when
/// the headers do not describe a TCP stream this can cut (then nothing was
/// emitted).
pub fn segment(
    frame: &[u8],
    l3: usize,
    off: &Offload,
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Option<usize> {
    let l4 = usize::from(off.csum_start);
    let hdr = tcp_headers_end(frame, l4)?;
    let ethertype = frame.get(l3.checked_sub(2)?..l3)?;
    let v4 = match off.gso_type & !GSO_ECN {
        GSO_TCPV4 if ethertype != [0x08, 0x00] => return None,
        GSO_TCPV6 if ethertype != [0x86, 0xdd] => return None,
        GSO_TCPV4 => Ipv4View::new_checked(frame.get(l3..)?)?.header_len() + l3 == l4,
        GSO_TCPV6 => {
            // Extension headers are not cut here: the next header must be TCP.
            let h = Ipv6View::new_checked(frame.get(l3..)?)?;
            if h.next_header() != 6 || l3 + IPV6_HLEN != l4 {
                return None;
            }
            false
        }
        _ => return None,
    };
    let mss = usize::from(off.gso_size);
    if mss == 0 || hdr + mss > scratch.len() {
        return None;
    }
    let payload = &frame[hdr..];
    let seq0 = u32::from_be_bytes(frame[l4 + TCP_SEQ..l4 + TCP_SEQ + 4].try_into().ok()?);
    let flags0 = frame[l4 + TCP_FLAGS];
    let count = payload.len().div_ceil(mss).max(1);
    let empty: &[u8] = &[];
    let chunks = payload
        .chunks(mss)
        .chain(payload.is_empty().then_some(empty));
    for (i, chunk) in chunks.enumerate() {
        let len = hdr + chunk.len();
        let seg = &mut scratch[..len];
        seg[..hdr].copy_from_slice(&frame[..hdr]);
        seg[hdr..].copy_from_slice(chunk);
        let l4_len = len - l4;
        let mut flags = flags0;
        if i + 1 < count {
            flags &= !(FIN | PSH);
        }
        if i > 0 {
            flags &= !CWR;
        }
        seg[l4 + TCP_FLAGS] = flags;
        let seq = seq0.wrapping_add((i * mss) as u32);
        seg[l4 + TCP_SEQ..l4 + TCP_SEQ + 4].copy_from_slice(&seq.to_be_bytes());
        seg[l4 + TCP_CSUM..l4 + TCP_CSUM + 2].fill(0);
        let pseudo = if v4 {
            let mut h = Ipv4View::new_checked(&mut seg[l3..])?;
            let id = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]).wrapping_add(i as u16);
            // The view checks only the header, so the lengths can be set
            // through it before they describe the segment.
            h.set_total_len((len - l3) as u16);
            h.set_id(id);
            h.fill_checksum();
            checksum::pseudo_v4(h.src(), h.dst(), 6, l4_len as u16)
        } else {
            let mut h = Ipv6View::new_checked(&mut seg[l3..])?;
            h.set_payload_len(l4_len as u16);
            checksum::pseudo_v6(h.src(), h.dst(), 6, l4_len as u32)
        };
        let c = checksum::finish(pseudo + checksum::sum(&seg[l4..]));
        seg[l4 + TCP_CSUM..l4 + TCP_CSUM + 2].copy_from_slice(&c.to_be_bytes());
        emit(seg);
    }
    Some(count)
}

#[cfg(test)]
mod tests;
