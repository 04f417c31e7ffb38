//! Switching: an internal switch (gateway interface, two VMs) beside Port2,
//! and an external switch bridging a VM onto Port3's wire.

use super::*;
use crate::l2::{PortSecurity, SwitchConfig, Switching};
use std::time::Duration;

const VM1: PortId = 2;
const VM2: PortId = 3;
const GW_IF: PortId = 4;
const VM3: PortId = 5;
const GW_IF_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0x28, 1]);
const VM1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0x28, 0x10]);
const VM2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0x28, 0x11]);
const VM3_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0x30, 0x10]);

fn member(name: &str) -> PortInfo {
    PortInfo {
        name: name.into(),
        mac: MacAddr::ZERO,
        v4: vec![],
        v6: vec![],
        mtu: 1500,
        up: true,
    }
}

/// Port2, Port3 (uplink of "external"), vm1 and vm2 on "internal" (gateway
/// interface 172.28.0.1/24), vm3 on "external".
pub(super) fn switched_router(mac_limit: usize, security: &[(PortId, PortSecurity)]) -> Router {
    let base = router();
    let mut infos: Vec<PortInfo> = base.ports().iter().map(|(_, p)| p.clone()).collect();
    infos.push(member("vm1"));
    infos.push(member("vm2"));
    infos.push(PortInfo {
        name: "internal".into(),
        mac: GW_IF_MAC,
        v4: vec!["172.28.0.1/24".parse().unwrap()],
        v6: vec![],
        mtu: 1500,
        up: true,
    });
    infos.push(member("vm3"));
    let routes = vec![
        Route {
            prefix: "172.28.0.0/24".parse().unwrap(),
            port: GW_IF,
            next_hop: None,
            metric: 0,
        },
        Route {
            prefix: "0.0.0.0/0".parse().unwrap(),
            port: P2,
            next_hop: Some("10.0.2.1".parse().unwrap()),
            metric: 0,
        },
        Route {
            prefix: "192.168.20.0/24".parse().unwrap(),
            port: P3,
            next_hop: None,
            metric: 0,
        },
    ];
    let (fib, _) = Fib::build(&routes, |_| true);
    let n = infos.len();
    let mut r = Router::new(
        PortTable::new(infos),
        Arc::new(fib),
        &RouterConfig::default(),
    );
    r.add_static_neighbor(P2, "10.0.2.1".parse().unwrap(), GW_MAC);
    let switches = [
        SwitchConfig {
            name: "internal".into(),
            router_port: GW_IF,
            members: vec![VM1, VM2],
            mac_limit,
            aging: Duration::from_secs(300),
        },
        SwitchConfig {
            name: "external".into(),
            router_port: P3,
            members: vec![VM3, P3],
            mac_limit,
            aging: Duration::from_secs(300),
        },
    ];
    r.set_switching(Switching::new(n, &switches, security));
    r
}

pub(super) fn arp(op: u16, sha: MacAddr, spa: [u8; 4], tpa: [u8; 4], dst: MacAddr) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(sha.0, dst.0)
        .arp(
            etherparse::ArpPacket::new(
                etherparse::ArpHardwareId::ETHERNET,
                etherparse::EtherType::IPV4,
                etherparse::ArpOperation(op),
                &sha.0,
                &spa,
                &[0; 6],
                &tpa,
            )
            .unwrap(),
        )
        .write(&mut v)
        .unwrap();
    v
}

#[test]
fn unknown_unicast_floods_then_learned_addresses_go_to_one_port() {
    let mut r = switched_router(64, &[]);
    let f = udp4(VM1_MAC, VM2_MAC, [172, 28, 0, 10], [172, 28, 0, 11], 64);
    feed(&mut r, VM1, t(0), std::slice::from_ref(&f));
    assert_eq!(
        sent(&mut r, VM2),
        vec![f.clone()],
        "flooded to the only other member, unchanged"
    );
    assert!(
        sent(&mut r, VM1).is_empty(),
        "never back where it came from"
    );
    let back = udp4(VM2_MAC, VM1_MAC, [172, 28, 0, 11], [172, 28, 0, 10], 64);
    feed(&mut r, VM2, t(1), std::slice::from_ref(&back));
    assert_eq!(sent(&mut r, VM1), vec![back]);
    feed(&mut r, VM1, t(2), std::slice::from_ref(&f));
    assert_eq!(sent(&mut r, VM2), vec![f]);
    assert_eq!((r.stats().forwarded, r.stats().flooded), (3, 0));
    assert_identity(&r);
}

#[test]
fn broadcast_reaches_the_gateway_and_every_other_member() {
    let mut r = switched_router(64, &[]);
    let req = arp(
        1,
        VM1_MAC,
        [172, 28, 0, 10],
        [172, 28, 0, 1],
        MacAddr::BROADCAST,
    );
    feed(&mut r, VM1, t(0), std::slice::from_ref(&req));
    let to_vm1 = sent(&mut r, VM1);
    assert_eq!(to_vm1.len(), 1, "the gateway's ARP reply");
    assert_eq!(&to_vm1[0][..6], &VM1_MAC.0);
    assert_eq!(&to_vm1[0][22..28], &GW_IF_MAC.0);
    assert_eq!(sent(&mut r, VM2), vec![req], "the flooded copy");
    assert_eq!(r.stats().flooded, 1);
    assert_identity(&r);
}

#[test]
fn vms_route_through_the_gateway_interface_both_ways() {
    let mut r = switched_router(64, &[]);
    let out = udp4(VM1_MAC, GW_IF_MAC, [172, 28, 0, 10], [8, 8, 8, 8], 64);
    feed(&mut r, VM1, t(0), &[out]);
    let up = sent(&mut r, P2);
    assert_eq!(up.len(), 1);
    assert_eq!((&up[0][..6], ipv4_of(&up[0]).2), (&GW_MAC.0[..], 63));

    // The way back: the gateway interface asks who has 172.28.0.11, on
    // every member; vm2 answers and gets the packet.
    let down = udp4(GW_MAC, P2_MAC, [8, 8, 8, 8], [172, 28, 0, 11], 64);
    feed(&mut r, P2, t(1), &[down]);
    let (a1, a2) = (sent(&mut r, VM1), sent(&mut r, VM2));
    assert_eq!(
        (a1.len(), a2.len()),
        (1, 1),
        "ARP request flooded to both VMs"
    );
    assert_eq!(&a2[0][..6], &MacAddr::BROADCAST.0);
    assert_eq!(&a2[0][6..12], &GW_IF_MAC.0);
    let reply = arp(2, VM2_MAC, [172, 28, 0, 11], [172, 28, 0, 1], GW_IF_MAC);
    feed(&mut r, VM2, t(2), &[reply]);
    let got = sent(&mut r, VM2);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (&got[0][..6], &got[0][6..12]),
        (&VM2_MAC.0[..], &GW_IF_MAC.0[..])
    );
    assert!(sent(&mut r, VM1).is_empty(), "vm2's MAC is learned now");
    assert_identity(&r);
}

#[test]
fn port_security_drops_spoofed_sources() {
    let rules = PortSecurity {
        mac: Some(VM1_MAC),
        addresses: vec!["172.28.0.10".parse().unwrap()],
    };
    let mut r = switched_router(64, &[(VM1, rules)]);
    let good = udp4(VM1_MAC, VM2_MAC, [172, 28, 0, 10], [172, 28, 0, 11], 64);
    let bad_ip = udp4(VM1_MAC, VM2_MAC, [172, 28, 0, 99], [172, 28, 0, 11], 64);
    let bad_mac = udp4(VM2_MAC, VM1_MAC, [172, 28, 0, 10], [172, 28, 0, 11], 64);
    let bad_arp = arp(
        1,
        VM1_MAC,
        [172, 28, 0, 1],
        [172, 28, 0, 11],
        MacAddr::BROADCAST,
    );
    feed(&mut r, VM1, t(0), &[good, bad_ip, bad_mac, bad_arp]);
    assert_eq!(sent(&mut r, VM2).len(), 1);
    assert_eq!(drops(&r, DropReason::SpoofedSource), 3);
    // The spoofed MAC was not learned either.
    assert!(r.switching().learned(t(0)).iter().all(|l| l.mac != VM2_MAC));
    assert_identity(&r);
}

#[test]
fn a_flood_of_source_macs_stops_at_the_table_limit() {
    let mut r = switched_router(16, &[]);
    let frames: Vec<Vec<u8>> = (0..200u16)
        .map(|i| {
            let [a, b] = i.to_be_bytes();
            udp4(
                MacAddr([2, 0xee, 0, 0, a, b]),
                VM2_MAC,
                [172, 28, 0, 10],
                [172, 28, 0, 11],
                64,
            )
        })
        .collect();
    feed(&mut r, VM1, t(0), &frames);
    // vm1 may take the table but for one slot, which stays vm2's.
    assert_eq!(drops(&r, DropReason::MacTableFull), 200 - 15);
    assert_eq!(r.switching().learned(t(0)).len(), 15);
    assert_eq!(sent(&mut r, VM2).len(), 15);
    let back = udp4(VM2_MAC, VM1_MAC, [172, 28, 0, 11], [172, 28, 0, 10], 64);
    feed(&mut r, VM2, t(1), &[back]);
    assert_eq!(r.switching().learned(t(1)).len(), 16, "vm2 still learned");
    assert_identity(&r);
}

#[test]
fn external_switch_bridges_a_vm_onto_the_uplink_and_keeps_its_address() {
    let mut r = switched_router(64, &[]);
    // vm3 to a host on Port3's wire: bridged out of Port3 as it is.
    let f = udp4(
        VM3_MAC,
        HOST_MAC,
        [192, 168, 20, 60],
        [192, 168, 20, 50],
        64,
    );
    feed(&mut r, VM3, t(0), std::slice::from_ref(&f));
    assert_eq!(sent(&mut r, P3), vec![f]);
    // The host answers: bridged in to vm3.
    let back = udp4(
        HOST_MAC,
        VM3_MAC,
        [192, 168, 20, 50],
        [192, 168, 20, 60],
        64,
    );
    feed(&mut r, P3, t(1), std::slice::from_ref(&back));
    assert_eq!(sent(&mut r, VM3), vec![back]);
    // vm3 pings the appliance's Port3 address: the echo reply comes back
    // down the switch to vm3 only.
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(VM3_MAC.0, P3_MAC.0)
        .ipv4([192, 168, 20, 60], [192, 168, 20, 10], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut ping, b"hi")
        .unwrap();
    r.add_static_neighbor(P3, "192.168.20.60".parse().unwrap(), VM3_MAC);
    feed(&mut r, VM3, t(2), &[ping]);
    let reply = sent(&mut r, VM3);
    assert_eq!(reply.len(), 1);
    assert_eq!(ipv4_of(&reply[0]).0, Ipv4Addr::new(192, 168, 20, 10));
    assert!(sent(&mut r, P3).is_empty());
    assert_identity(&r);
}

#[test]
fn a_frame_said_to_be_switched_unchanged_leaves_unchanged_on_one_member_at_most() {
    // Frames between the members of both switches, to learned, unknown,
    // broadcast and gateway addresses, some of them from a member an
    // address has just moved to; whenever `switched_to` names a member
    // before the frame runs, the frame leaves unchanged on one member at
    // most (a VM port's tail stays in the VM only then), nearly always
    // that one.
    let mut r = switched_router(64, &[]);
    let members = [VM1, VM2, VM3, P3];
    let wire_mac = MacAddr([2, 0, 0, 0, 0x30, 0x99]);
    let macs = [
        VM1_MAC,
        VM2_MAC,
        VM3_MAC,
        wire_mac,
        GW_IF_MAC,
        MacAddr::BROADCAST,
        MacAddr([2, 0, 0, 0, 0x99, 9]),
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let (mut said, mut checked) = (0, 0);
    for i in 0..2000u64 {
        let home = next(members.len());
        let rx = members[home];
        // One frame in ten comes from an address seen elsewhere before,
        // the gateway's own among them (a VM that spoofs it).
        let src = macs[if next(10) == 0 { next(5) } else { home }];
        let dst = macs[next(macs.len())];
        let f = udp4(src, dst, [172, 28, 0, 10], [172, 28, 0, 11], 64);
        let at = t(i);
        let to = r.switched_to(rx, &f, at);
        // As a VM port does: the frame's payload is marked as not there
        // (the stages and flooding assert they never see such a frame).
        let mut burst = Vec::new();
        r.receive(&mut burst, rx, at, &f);
        if to.is_some() {
            burst[0].buf.defer_tail(42, 0);
        }
        r.process(&mut burst, at);
        let outs: Vec<(PortId, Vec<Vec<u8>>)> = (0..r.ports().len() as PortId)
            .map(|p| (p, sent(&mut r, p)))
            .collect();
        let Some(to) = to else { continue };
        said += 1;
        // The frame itself may move its destination (its own source): it
        // then goes to that member, or is dropped if that is where it came
        // from. Either way it is never flooded, routed or changed.
        let copies: Vec<_> = outs.iter().filter(|(_, fr)| !fr.is_empty()).collect();
        assert!(
            copies.len() <= 1,
            "frame {i} left more than once: {copies:?}"
        );
        for (p, frames) in copies {
            assert!(members.contains(p), "frame {i} left on non-member {p}");
            assert_eq!(frames, &vec![f.clone()], "frame {i} on member {p}");
            checked += usize::from(*p == to);
        }
    }
    assert!(
        said > 200 && checked * 10 > said * 9,
        "{said} said, {checked} there"
    );
    assert_identity(&r);
}
