//! The whole router on one frame, on the demo appliance's config: every
//! parser (Ethernet/VLAN, ARP, IPv4 with options, IPv6 with extension
//! headers, ICMP/ICMPv6, NDP) sits behind this entry point.
//!
//! Invariants: no panic; the accounting identity; every frame sent is
//! well-formed at the link and IP layers.
#![no_main]

use edgefwd_control::config::Config;
use edgefwd_control::demo;
use edgefwd_control::rib::Rib;
use edgefwd_dataplane::fib::Fib;
use edgefwd_dataplane::packet::check::check_headers;
use edgefwd_dataplane::pipeline::{Router, RouterConfig};
use edgefwd_dataplane::port::{PortId, PortTable};
use edgefwd_dataplane::time::Time;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

/// The config, ports and FIB, built once per process; each input gets a
/// fresh router over them.
fn appliance() -> &'static (Config, PortTable, Arc<Fib>) {
    static APPLIANCE: OnceLock<(Config, PortTable, Arc<Fib>)> = OnceLock::new();
    APPLIANCE.get_or_init(|| {
        let cfg = Config::parse(demo::CONFIG).expect("demo config");
        let rib = Rib::from_config(&cfg, false);
        let fib = Arc::new(rib.build_fib().0);
        (cfg, rib.ports().clone(), fib)
    })
}

fuzz_target!(|data: &[u8]| {
    let (cfg, ports, fib) = appliance();
    let rcfg = RouterConfig { buffers: 4, ..RouterConfig::default() };
    let mut router = Router::new(ports.clone(), fib.clone(), &rcfg);
    for n in &cfg.neighbors {
        let port = cfg.port(&n.interface).expect("port").0 as PortId;
        router.add_static_neighbor(port, n.address, n.mac);
    }
    // The first byte picks the ingress port; the rest is the frame.
    let Some((&port, frame)) = data.split_first() else { return };
    let port = PortId::from(port % 3);
    let mut burst = Vec::new();
    for i in 0..2u64 {
        // Twice: the second time, neighbours learned from the first count.
        router.receive(&mut burst, port, Time(i), frame, true);
        router.process(&mut burst, Time(i));
    }
    router.finish();
    for p in 0..3 {
        router.drain_tx(p, |f, _| {
            if let Err(e) = check_headers(f) {
                panic!("malformed output frame: {e}: {f:02x?}");
            }
        });
    }
    let s = router.stats();
    assert_eq!(s.received(), s.forwarded + s.local + s.dropped());
});
