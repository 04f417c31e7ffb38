//! The whole router on one frame, on the demo appliance's config with an
//! internal switch (two VMs, NAT out of Port2) and an external switch
//! bridged onto Port4: every parser (Ethernet/VLAN, ARP, IPv4 with options,
//! IPv6 with extension headers, ICMP/ICMPv6, NDP), the switches and both
//! NAT directions sit behind this entry point.
//!
//! Invariants: no panic; the accounting identity; every frame sent is
//! well-formed at the link and IP layers, or the input frame bridged as it
//! came.
#![no_main]

use edgefwd_control::config::Config;
use edgefwd_control::demo;
use edgefwd_control::rib::Rib;
use edgefwd_dataplane::fib::Fib;
use edgefwd_dataplane::packet::check::check_headers;
use edgefwd_dataplane::pipeline::RouterConfig;
use edgefwd_dataplane::port::PortId;
use edgefwd_dataplane::time::Time;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

/// Ports 3-5 (vm1, vm2, vm3) and the gateway interface "internal" (6).
const SWITCHES: &str = r#"
[[port]]
name = "vm1"
switch = "internal"
allowed_mac = "02:00:00:00:28:10"
allowed_addresses = ["172.28.0.10"]
[[port]]
name = "vm2"
switch = "internal"
[[port]]
name = "vm3"
switch = "external"
[[switch]]
name = "internal"
kind = "internal"
address = "172.28.0.1/24"
mac = "02:00:00:00:28:01"
nat = "Port2"
[[switch]]
name = "external"
kind = "external"
uplink = "Port4"
mac_limit = 8
[nat]
filtering = "endpoint-independent"
# Small tables: each input builds a fresh router.
max_sessions = 256
"#;

/// Ports frames can arrive on (the gateway interface has no device).
const RX_PORTS: u8 = 6;

/// The config, RIB and FIB, built once per process; each input gets a
/// fresh router over them.
fn appliance() -> &'static (Config, Rib, Arc<Fib>) {
    static APPLIANCE: OnceLock<(Config, Rib, Arc<Fib>)> = OnceLock::new();
    APPLIANCE.get_or_init(|| {
        let cfg = Config::parse(&format!("{}{SWITCHES}", demo::CONFIG)).expect("config");
        let rib = Rib::from_config(&cfg, false);
        let fib = Arc::new(rib.build_fib().0);
        (cfg, rib, fib)
    })
}

fuzz_target!(|data: &[u8]| {
    let (cfg, rib, fib) = appliance();
    let rcfg = RouterConfig {
        buffers: 4,
        ..cfg.router_config()
    };
    let mut router = rib.router(cfg, fib.clone(), &rcfg);
    // The first byte picks the ingress port; the rest is the frame.
    let Some((&port, frame)) = data.split_first() else {
        return;
    };
    let port = PortId::from(port % RX_PORTS);
    let mut burst = Vec::new();
    for i in 0..2u64 {
        // Twice: the second time, neighbours learned from the first count.
        router.receive(&mut burst, port, Time(i), frame, true);
        router.process(&mut burst, Time(i));
    }
    router.finish();
    for p in 0..PortId::from(RX_PORTS) {
        router.drain_tx(p, |p| {
            let f = p.buf.frame();
            // A switch passes frames between members as they came (it does
            // not look above L2); everything the router wrote must be valid.
            if f == frame {
                return;
            }
            if let Err(e) = check_headers(f) {
                panic!("malformed output frame: {e}: {f:02x?}");
            }
        });
    }
    let s = router.stats();
    assert_eq!(s.received(), s.forwarded + s.local + s.dropped());
});
