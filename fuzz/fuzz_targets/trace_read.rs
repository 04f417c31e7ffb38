//! The pcap/pcapng reader and the link-type conversion: any bytes are read
//! or refused, never a panic.
#![no_main]

use edgefwd_control::trace::{to_ethernet, TraceReader};
use edgefwd_core::packet::MacAddr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) =
        TraceReader::from_reader("fuzz".into(), Box::new(std::io::Cursor::new(data.to_vec())))
    else {
        return;
    };
    let mut frame = Vec::new();
    for _ in 0..10_000 {
        match r.next_record() {
            Ok(Some(rec)) => {
                to_ethernet(&rec, MacAddr([2, 0, 0, 0, 0, 1]), &mut frame);
            }
            _ => break,
        }
    }
});
