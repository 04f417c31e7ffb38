//! The watch: traces that say what each stage decided, dropped packets
//! kept with their reason and stage, and a watched burst forwarding
//! exactly as an unwatched one.

use super::*;
use crate::pipeline::watch::{Stage, TraceEnd, TraceFilter};

fn traced(r: &mut Router, port: PortId, frames: &[Vec<u8>]) -> Vec<watch::PacketTrace> {
    r.start_trace(16, TraceFilter::default());
    feed(r, port, t(0), frames);
    r.traces().to_vec()
}

#[test]
fn a_forwarded_packet_shows_its_route_and_ttl() {
    for fast in [true, false] {
        let mut r = router_with(
            RouterConfig {
                fast_path: fast,
                ..RouterConfig::default()
            },
            1500,
        );
        let f = udp4(GW_MAC, P2_MAC, [8, 8, 8, 8], [192, 168, 21, 7], 64);
        let tr = traced(&mut r, P2, &[f]);
        assert_eq!(tr.len(), 1);
        assert_eq!(
            tr[0].headers,
            "IPv4 8.8.8.8 > 192.168.21.7 ttl 64 UDP 4000 > 53"
        );
        assert_eq!(tr[0].end, TraceEnd::Sent { port: P3 });
        let last = tr[0].steps.last().unwrap();
        assert!(
            last.note.starts_with("out Port3 via 192.168.20.1")
                && last.note.contains("ttl 64 ")
                && last.note.contains("ttl 63 "),
            "fast path {fast}: {:?}",
            tr[0].steps
        );
        let stage = if fast {
            Stage::Ip4Fast
        } else {
            Stage::IpRewrite
        };
        assert_eq!(last.stage, stage, "{:?}", tr[0].steps);
        assert_eq!(sent(&mut r, P3).len(), 1, "traced and still forwarded");
    }
}

#[test]
fn a_ttl_expiry_names_the_reason_the_stage_and_the_error_sent() {
    let mut r = router();
    let host_mac = MacAddr([2, 0, 0, 0, 0x20, 0x51]);
    r.add_static_neighbor(P3, "192.168.20.51".parse().unwrap(), host_mac);
    let f = udp4(host_mac, P3_MAC, [192, 168, 20, 51], [8, 8, 8, 8], 1);
    let tr = traced(&mut r, P3, &[f]);
    assert_eq!(tr.len(), 2, "the packet and the ICMP error: {tr:?}");
    assert_eq!(
        tr[0].end,
        TraceEnd::Dropped {
            reason: DropReason::TtlExpired,
            stage: Stage::Ip4Input
        }
    );
    assert_eq!(tr[1].origin, crate::packet::Origin::Generated);
    assert!(tr[1].headers.contains("ICMP type 11 code 0"), "{:?}", tr[1]);
    assert_eq!(tr[1].end, TraceEnd::Sent { port: P3 });
}

#[test]
fn the_filter_and_the_count_bound_what_is_traced() {
    let mut r = router();
    r.start_trace(
        2,
        TraceFilter {
            host: Some("192.168.21.7".parse().unwrap()),
            ..TraceFilter::default()
        },
    );
    let a = udp4(GW_MAC, P2_MAC, [8, 8, 8, 8], [192, 168, 21, 7], 64);
    let b = udp4(GW_MAC, P2_MAC, [8, 8, 8, 8], [192, 168, 21, 8], 64);
    feed(&mut r, P2, t(0), &[b.clone(), a.clone(), b, a.clone(), a]);
    let tr = r.traces();
    assert_eq!(tr.len(), 2);
    assert!(tr.iter().all(|t| t.headers.contains("> 192.168.21.7 ")));
    assert_eq!(sent(&mut r, P3).len(), 5);
}

#[test]
fn dropped_packets_are_kept_with_reason_and_stage_and_still_counted() {
    let mut r = router();
    r.keep_drops(&[false, true]);
    let host_mac = MacAddr([2, 0, 0, 0, 0x20, 0x51]);
    r.add_static_neighbor(P3, "192.168.20.51".parse().unwrap(), host_mac);
    let expired = udp4(host_mac, P3_MAC, [192, 168, 20, 51], [8, 8, 8, 8], 1);
    let mut bad = udp4(host_mac, P3_MAC, [192, 168, 20, 51], [8, 8, 8, 8], 9);
    bad[24] ^= 0xff; // IPv4 header checksum
    feed(&mut r, P3, t(0), &[expired.clone(), bad.clone()]);
    // Port2's drops are not watched.
    let mut bad2 = udp4(GW_MAC, P2_MAC, [8, 8, 8, 8], [192, 168, 20, 51], 9);
    bad2[24] ^= 0xff;
    feed(&mut r, P2, t(0), &[bad2]);
    let mut kept = Vec::new();
    r.take_kept_drops(|k| kept.push((k.reason, k.stage, k.pkt.buf.frame().to_vec())));
    assert_eq!(
        kept,
        [
            (DropReason::TtlExpired, Stage::Ip4Input, expired),
            (DropReason::Ip4BadChecksum, Stage::Ip4Input, bad),
        ]
    );
    assert_eq!(drops(&r, DropReason::Ip4BadChecksum), 2);
    assert_identity(&r);
    // Kept buffers went back: a long run allocates no more.
    let before = r.buffers_allocated();
    for _ in 0..100 {
        feed(
            &mut r,
            P3,
            t(0),
            &[udp4(host_mac, P3_MAC, [192, 168, 20, 51], [8, 8, 8, 8], 1)],
        );
        r.take_kept_drops(|_| {});
    }
    assert_eq!(r.buffers_allocated(), before);
}

#[test]
fn a_watched_burst_forwards_exactly_as_an_unwatched_one() {
    let frames: Vec<Vec<u8>> = (0..64u8)
        .map(|i| {
            let ttl = if i % 7 == 0 { 1 } else { 64 };
            let dst = if i % 5 == 0 {
                [192, 168, 21, i]
            } else {
                [10, 0, 2, i]
            };
            udp4(GW_MAC, P2_MAC, [8, 8, 4, i], dst, ttl)
        })
        .collect();
    let run = |watched: bool| {
        let mut r = router();
        r.add_static_neighbor(P2, "10.0.2.1".parse().unwrap(), GW_MAC);
        for i in 0..64u8 {
            r.add_static_neighbor(P2, std::net::IpAddr::from([10, 0, 2, i]), HOST_MAC);
        }
        if watched {
            r.start_trace(1000, TraceFilter::default());
            r.keep_drops(&[true, true]);
        }
        feed(&mut r, P2, t(0), &frames);
        r.take_kept_drops(|_| {});
        (
            sent(&mut r, P2),
            sent(&mut r, P3),
            r.stats().clone().drops_by_reason(),
        )
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn the_watch_goes_once_nothing_is_watched() {
    let mut r = router();
    assert!(!r.watching());
    r.start_trace(1, TraceFilter::default());
    assert!(r.watching());
    let f = udp4(GW_MAC, P2_MAC, [8, 8, 8, 8], [192, 168, 21, 7], 64);
    feed(&mut r, P2, t(0), &[f.clone(), f.clone()]);
    assert_eq!(r.traces().len(), 1, "one asked for");
    assert!(!r.watching(), "the trace is done: plain runs again");
    r.keep_drops(&[true, false]);
    let mut bad = f.clone();
    bad[24] ^= 0xff; // IPv4 header checksum
    feed(&mut r, P2, t(0), &[bad]);
    r.keep_drops(&[false, false]);
    assert!(r.watching(), "a kept drop waits to be taken");
    r.take_kept_drops(|_| {});
    assert!(!r.watching());
    assert_eq!(r.traces().len(), 1, "traces outlive the watch");
}
