//! The whole pipeline driven through the device interface, as a worker
//! drives it, over in-memory ports wrapped in the fault injector: frames
//! dropped, corrupted and delayed on the way in, transmissions refused on
//! the way out, then the device failed. Every frame fed is then found
//! somewhere a count says: still in the device, dropped by the injector,
//! or received by the router and forwarded, dropped by reason or refused;
//! and the frames that come out are the intact ones, checked by etherparse.

use std::sync::Arc;
use std::time::Duration;

use edgefwd_control::config::Config;
use edgefwd_control::rib::{PortsUp, Rib};
use edgefwd_core::packet::Packet;
use edgefwd_core::pipeline::Router;
use edgefwd_core::time::Time;
use edgefwd_io::{Device, Faults, Faulty, MemPort, QueueIo, RxStatus};
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

const CFG: &str = r#"
[dataplane]
burst = 32

[[port]]
name = "Port2"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.1/24"]

[[port]]
name = "Port3"
mac = "02:00:00:00:03:01"
addresses = ["10.0.3.1/24"]

[[neighbor]]
interface = "Port3"
address = "10.0.3.2"
mac = "02:00:00:00:33:02"
"#;

const FRAMES: u32 = 20_000;
const FAIL_AFTER: u64 = 18_000;

fn frame(i: u32) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0x22, 2], [2, 0, 0, 0, 2, 1])
        .ipv4([10, 0, 2, 2], [10, 0, 3, 2], 64)
        .udp(40000 + (i % 1000) as u16, 53)
        .write(&mut out, &i.to_be_bytes())
        .unwrap();
    out
}

/// True when etherparse finds the IPv4 header checksum and the UDP
/// checksum right.
fn intact(f: &[u8]) -> bool {
    let Ok(p) = SlicedPacket::from_ethernet(f) else {
        return false;
    };
    let (Some(etherparse::NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(udp))) =
        (p.net, p.transport)
    else {
        return false;
    };
    let h = ip.header();
    h.to_header().calc_header_checksum() == h.header_checksum()
        && udp
            .to_header()
            .calc_checksum_ipv4_raw(h.source(), h.destination(), udp.payload())
            .is_ok_and(|c| c == udp.checksum())
}

/// One round as a worker makes it: a burst from each port the driver
/// still polls, through the router, and out.
fn round(
    router: &mut Router,
    devices: &[&dyn Device],
    polled: &mut [bool],
    io: &mut QueueIo,
    now: Time,
) -> bool {
    let mut burst: Vec<Packet> = Vec::new();
    let mut received = Vec::new();
    let mut more = false;
    for (port, dev) in devices.iter().enumerate() {
        if !polled[port] {
            continue;
        }
        match dev.rx_burst(io, router, 32, &mut received) {
            RxStatus::More => more = true,
            RxStatus::Drained => {}
            RxStatus::Failed(_) => polled[port] = false,
        }
        for r in received.drain(..) {
            router.receive_buf(&mut burst, port as u16, now, r.buf, r.offload);
        }
        router.process(&mut burst, now);
        for (out, d) in devices.iter().enumerate() {
            let mut refused = 0;
            router.drain_tx_all(out as u16, |pkts| refused = d.tx_burst(io, pkts));
            router.count_tx_errors(out as u16, refused);
        }
    }
    more
}

#[test]
fn every_injected_fault_is_counted_and_nothing_is_lost() {
    let cfg = Config::parse(CFG).unwrap();
    let rib = Rib::from_config(&cfg, PortsUp::All);
    let (fib, _) = rib.build_fib();
    let mut router = rib.router(&cfg, Arc::new(fib), &cfg.router_config());

    let port2 = Faulty::new(
        MemPort::new(),
        Faults {
            seed: 0xfa017,
            drop_rx: 0.05,
            corrupt_rx: 0.05,
            delay_rx: 0.05,
            fail_after_rx: Some(FAIL_AFTER),
            ..Faults::default()
        },
    );
    let port3 = Faulty::new(
        MemPort::new(),
        Faults {
            seed: 0x3,
            refuse_tx: 0.05,
            ..Faults::default()
        },
    );
    for i in 0..FRAMES {
        port2.inner().push(frame(i));
    }
    let devices: [&dyn Device; 2] = [&port2, &port3];
    let mut polled = [true, true];
    let mut io = QueueIo::new(0, None);
    let mut now = Time(0);
    let mut rounds = 0;
    while round(&mut router, &devices, &mut polled, &mut io, now) {
        now = now.after(Duration::from_micros(100));
        rounds += 1;
        assert!(rounds < 10 * FRAMES, "the rounds end");
    }
    router.finish();

    let rx_faults = port2.counts();
    let tx_faults = port3.counts();
    eprintln!("injected on Port2's way in: {rx_faults:?}; on Port3's way out: {tx_faults:?}");
    assert!(
        rx_faults.dropped > 0
            && rx_faults.corrupted > 0
            && rx_faults.delayed > 0
            && rx_faults.failed
            && tx_faults.refused > 0,
        "every kind of fault was injected"
    );
    let s = router.stats();
    let (p2, p3) = (&s.ports[0], &s.ports[1]);

    // In: every frame fed is still in the failed device, dropped by the
    // injector, or received by the router.
    let pending = port2.inner().pending() as u64;
    assert!(
        rx_faults.received >= FAIL_AFTER,
        "failed once {FAIL_AFTER} were read"
    );
    assert_eq!(
        pending,
        u64::from(FRAMES) - rx_faults.received,
        "the rest waits in the failed device"
    );
    assert_eq!(port2.held_back(), 0, "what was held back came out");
    assert_eq!(
        u64::from(FRAMES),
        pending + rx_faults.dropped + p2.rx,
        "fed = left in the device + dropped by the injector + received"
    );
    // The router accounts for everything it received.
    assert_eq!(s.received(), s.ended(), "the router's identity");
    assert_eq!(router.held(), 0);

    // Out: what the router sent to Port3 came out, or was refused and
    // counted as a transmit error.
    let out = port3.inner().take_sent();
    assert_eq!(p3.tx_errors, tx_faults.refused, "every refusal counted");
    assert_eq!(
        out.len() as u64 + tx_faults.refused,
        p3.tx,
        "sent = out + refused"
    );

    // Corruption: a corrupted frame is dropped by the router under a
    // reason, or forwarded as it is (a flipped payload byte is no router's
    // business); every intact frame comes out intact.
    let broken_out = out.iter().filter(|f| !intact(&f[..])).count() as u64;
    let dropped_in = p2.drops.iter().sum::<u64>();
    assert!(
        dropped_in + broken_out <= rx_faults.corrupted,
        "{dropped_in} dropped and {broken_out} broken frames out, {} corrupted",
        rx_faults.corrupted
    );
    assert!(dropped_in > 0, "some corruption is caught by the router");
    assert_eq!(
        p2.rx,
        p3.tx + dropped_in,
        "each frame received was forwarded or dropped by reason"
    );
}
