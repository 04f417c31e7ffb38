//! The whole router on one frame, on the fuzz appliance (the demo's routed
//! ports, an internal switch with two VMs NATed out of Port2, an external
//! switch bridged onto Port4): every parser, the switches and both NAT
//! directions sit behind this entry point.
//!
//! Invariants (`edgefwd_fuzz::run`): no panic; the accounting identity;
//! every frame sent well-formed at the link and IP layers, or the input
//! frame bridged as it came.
#![no_main]

use edgefwd_fuzz::PortId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the ingress port; the rest is the frame.
    let Some((&port, frame)) = data.split_first() else {
        return;
    };
    let port = PortId::from(port);
    // Twice: the second time, neighbours learned from the first count.
    edgefwd_fuzz::run(&[(port, frame), (port, frame)]);
});
