//! Offload handling on any virtio-net header and frame: decoding, checksum
//! completion and software segmentation never panic, and when a
//! super-packet is cut, every segment is a well-formed frame and the
//! segments' payloads are the original payload in order.
#![no_main]

use edgefwd_core::packet::check::check_headers;
use edgefwd_core::packet::offload::{finish_checksum, segment, Offload, VNET_HDR_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((hdr, frame)) = data.split_first_chunk::<VNET_HDR_LEN>() else {
        return;
    };
    let Some(off) = Offload::decode(hdr) else {
        return;
    };
    let mut copy = frame.to_vec();
    let _ = finish_checksum(&mut copy, &off);
    let _ = off.segment_l3_len(frame, 14);
    let mut scratch = vec![0u8; 9234];
    let mut segments = Vec::new();
    if let Some(n) = segment(frame, 14, &off, &mut scratch, |s| segments.push(s.to_vec())) {
        assert_eq!(n, segments.len());
        let l4 = usize::from(off.csum_start);
        let hdr_end = l4 + usize::from(frame[l4 + 12] >> 4) * 4;
        let mut payload = Vec::new();
        for s in &segments {
            if let Err(e) = check_headers(s) {
                panic!("segment not well formed: {e}");
            }
            payload.extend_from_slice(&s[hdr_end..]);
        }
        assert_eq!(payload, frame[hdr_end..]);
    }
});
