use super::*;
use crate::packet::check::check_frame;
use etherparse::PacketBuilder;

/// A TCP frame with complete checksums and `payload_len` bytes of payload.
fn tcp_frame(v6: bool, payload_len: usize, flags: u8) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7 + 3) as u8).collect();
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = if v6 {
        eth.ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
    } else {
        eth.ipv4([10, 0, 2, 2], [10, 0, 3, 2], 64)
    };
    let mut tcp = ip.tcp(40000, 5201, 1000, 64000);
    if flags & FIN != 0 {
        tcp = tcp.fin();
    }
    if flags & PSH != 0 {
        tcp = tcp.psh();
    }
    if flags & CWR != 0 {
        tcp = tcp.cwr();
    }
    let tcp = tcp.ack(77);
    let mut out = Vec::new();
    tcp.write(&mut out, &payload).unwrap();
    out
}

fn offload_for(frame: &[u8], v6: bool, mss: u16) -> Offload {
    let l4 = if v6 { 14 + 40 } else { 14 + 20 };
    assert!(frame.len() > l4 + 20);
    Offload {
        flags: F_NEEDS_CSUM,
        gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: (l4 + 20) as u16,
        gso_size: mss,
        csum_start: l4 as u16,
        csum_offset: 16,
    }
}

#[test]
fn header_round_trips() {
    let o = Offload {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV6 | GSO_ECN,
        hdr_len: 74,
        gso_size: 1440,
        csum_start: 54,
        csum_offset: 16,
    };
    let mut b = [0; VNET_HDR_LEN];
    o.encode(&mut b);
    assert_eq!(Offload::decode(&b), Some(o));
    b[1] = 3; // UDP segmentation: never asked for
    assert_eq!(Offload::decode(&b), None);
}

#[test]
fn segments_are_whole_packets_that_rebuild_the_stream() {
    for v6 in [false, true] {
        let frame = tcp_frame(v6, 5000, FIN | PSH | CWR);
        let off = offload_for(&frame, v6, 1448);
        let mut scratch = vec![0; 2000];
        let mut segs = Vec::new();
        let n = segment(&frame, 14, &off, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(n, 4);
        assert_eq!(segs.len(), 4);
        let hdr = usize::from(off.csum_start) + 20;
        let mut stream = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            check_frame(s).unwrap_or_else(|e| panic!("v6={v6} segment {i}: {e}"));
            let l4 = usize::from(off.csum_start);
            let seq = u32::from_be_bytes(s[l4 + 4..l4 + 8].try_into().unwrap());
            assert_eq!(seq, 1000 + (i * 1448) as u32);
            let flags = s[l4 + TCP_FLAGS];
            assert_eq!(flags & FIN != 0, i == 3, "FIN only on the last");
            assert_eq!(flags & PSH != 0, i == 3, "PSH only on the last");
            assert_eq!(flags & CWR != 0, i == 0, "CWR only on the first");
            stream.extend_from_slice(&s[hdr..]);
        }
        assert_eq!(stream, frame[hdr..]);
    }
}

#[test]
fn segment_refuses_what_it_cannot_cut() {
    let frame = tcp_frame(false, 3000, 0);
    let mut off = offload_for(&frame, false, 1448);
    let mut scratch = vec![0; 100];
    assert_eq!(
        segment(&frame, 14, &off, &mut scratch, |_| panic!()),
        None,
        "scratch too small"
    );
    let mut scratch = vec![0; 2000];
    off.csum_start = 30; // not where the IPv4 header ends
    assert_eq!(segment(&frame, 14, &off, &mut scratch, |_| panic!()), None);
    off.csum_start = 4000; // past the frame
    assert_eq!(segment(&frame, 14, &off, &mut scratch, |_| panic!()), None);
}

#[test]
fn partial_checksum_is_finished() {
    for v6 in [false, true] {
        let mut frame = tcp_frame(v6, 333, PSH);
        let off = offload_for(&frame, v6, 0);
        let l4 = usize::from(off.csum_start);
        // What the kernel hands over: the pseudo-header sum, not complemented.
        let len = frame.len() - l4;
        let pseudo = if v6 {
            let h = Ipv6View::new_checked(&frame[14..]).unwrap();
            checksum::pseudo_v6(h.src(), h.dst(), 6, len as u32)
        } else {
            let h = Ipv4View::new_checked(&frame[14..]).unwrap();
            checksum::pseudo_v4(h.src(), h.dst(), 6, len as u16)
        };
        let partial = !checksum::finish(pseudo);
        frame[l4 + 16..l4 + 18].copy_from_slice(&partial.to_be_bytes());
        assert!(check_frame(&frame).is_err());
        assert!(finish_checksum(&mut frame, &off));
        check_frame(&frame).unwrap();
    }
}

#[test]
fn segment_l3_len_is_the_largest_segment() {
    let frame = tcp_frame(false, 5000, 0);
    let off = offload_for(&frame, false, 1448);
    assert_eq!(off.segment_l3_len(&frame, 14), Some(20 + 20 + 1448));
    assert_eq!(Offload::default().segment_l3_len(&frame, 14), None);
}

/// Found by the offload_segment fuzz target: offsets past the frame in a
/// header without NEEDS_CSUM made finish_checksum index out of bounds.
#[test]
fn offsets_past_the_frame_are_refused_whatever_the_flags() {
    let mut frame = vec![0u8; 27];
    let off = Offload {
        csum_start: 4864,
        csum_offset: 16,
        ..Offload::default()
    };
    assert!(!finish_checksum(&mut frame, &off));
    let gso = Offload {
        gso_type: GSO_TCPV4,
        gso_size: 100,
        csum_start: 20,
        ..Offload::default()
    };
    let mut scratch = vec![0; 2000];
    assert_eq!(
        segment(&frame[..10], 14, &gso, &mut scratch, |_| panic!()),
        None
    );
    // The same fuzz target: a TCP/IPv4 super-packet whose EtherType is not
    // IPv4 is not cut (the segments would not be IPv4 frames).
    let mut tcp = tcp_frame(false, 3000, 0);
    let off = offload_for(&tcp, false, 1448);
    tcp[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(segment(&tcp, 14, &off, &mut scratch, |_| panic!()), None);
}
