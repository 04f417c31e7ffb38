//! Virtual switches: MAC learning with aging, forwarding, flooding, a bounded
//! MAC table per switch, and port security on member ports.
//!
//! A switch is an L2 domain of member ports (each with a device: a VM's TAP,
//! or an external switch's uplink NIC) and one *router port*: the routed
//! interface the appliance has on that domain. For an internal switch that
//! is its gateway interface (a port without a device, like VPP's BVI); for
//! an external switch it is the uplink port itself, which keeps its own
//! address while its wire is also a member. Frames addressed to the router
//! port's MAC (and every broadcast) go up to the router as if received on
//! the router port; the router's own output on that port comes back down
//! through the switch's table.
//!
//! The table is a hash map sized once for the switch's `mac_limit`, so
//! learning never reallocates: a new source beyond the limit is dropped as
//! `mac_table_full` (a flood of random source MACs cannot grow it). One
//! member may fill the table only up to one slot short for every other
//! member, so a flood from one VM never locks the others out. Entries
//! age out lazily (an aged entry counts as unknown) and are swept once a
//! second by the router's tick.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use foldhash::fast::RandomState;

use crate::packet::MacAddr;
use crate::port::PortId;
use crate::time::Time;

/// Index of a switch.
pub type SwitchId = u16;

/// Default MAC-table size of a switch.
pub const DEFAULT_MAC_LIMIT: usize = 4096;
/// Default MAC aging time (as Linux bridges and most switches).
pub const DEFAULT_AGING: Duration = Duration::from_secs(300);

/// One switch, as the control plane describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchConfig {
    /// Operator's name.
    pub name: String,
    /// The routed interface on this L2 domain.
    pub router_port: PortId,
    /// Member ports with devices (an external switch's uplink included).
    pub members: Vec<PortId>,
    /// Most MAC addresses learned at once.
    pub mac_limit: usize,
    /// How long an address stays learned without traffic from it.
    pub aging: Duration,
}

/// What a member port may send from: frames with another source MAC, or
/// IP/ARP with another source address, are dropped as `spoofed_source`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSecurity {
    /// The only source MAC allowed, when set.
    pub mac: Option<MacAddr>,
    /// The only source addresses allowed, when not empty. The unspecified
    /// address stays allowed (DHCP, duplicate address detection), and so do
    /// IPv6 link-local sources, which NDP needs and which never cross the
    /// router.
    pub addresses: Vec<IpAddr>,
}

impl PortSecurity {
    /// True when `mac` may appear as a source.
    pub fn allows_mac(&self, mac: MacAddr) -> bool {
        self.mac.is_none_or(|m| m == mac)
    }

    /// True when `a` may appear as a source address.
    pub fn allows_addr(&self, a: IpAddr) -> bool {
        let link_local = matches!(a, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        self.addresses.is_empty() || a.is_unspecified() || link_local || self.addresses.contains(&a)
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    port: PortId,
    seen: Time,
    /// When the other workers last heard of it.
    told: Time,
}

/// A MAC address one worker learned, for the others' tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Learning {
    /// The switch.
    pub switch: SwitchId,
    /// The address.
    pub mac: MacAddr,
    /// The member port it was seen on.
    pub port: PortId,
}

struct Switch {
    cfg: SwitchConfig,
    table: HashMap<MacAddr, Entry, RandomState>,
    /// Addresses learned behind each member, by position in `members`.
    per_member: Vec<usize>,
}

impl Switch {
    /// Most addresses one member may hold: the table less one slot for
    /// every other member, so a flood from one port never locks the
    /// others out.
    fn member_share(&self) -> usize {
        let others = self.cfg.members.len().saturating_sub(1);
        self.cfg.mac_limit.saturating_sub(others).max(1)
    }

    fn member(&self, port: PortId) -> Option<usize> {
        self.cfg.members.iter().position(|&m| m == port)
    }

    /// Forgets the entries `keep` refuses, keeping the per-member counts.
    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        let (members, counts) = (&self.cfg.members, &mut self.per_member);
        self.table.retain(|_, e| {
            let k = keep(e);
            if !k {
                if let Some(c) = members
                    .iter()
                    .position(|&m| m == e.port)
                    .and_then(|i| counts.get_mut(i))
                {
                    *c -= 1;
                }
            }
            k
        });
    }
}

/// Where a switch sends a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L2Dest {
    /// To one member port.
    Port(PortId),
    /// To every member but the one it came from.
    Flood,
}

/// Why learning a source refused the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// One MAC address learned, for `show`-style views and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnedMac {
    /// Switch name.
    pub switch: String,
    /// The address.
    pub mac: MacAddr,
    /// The member port it was last seen on.
    pub port: PortId,
}

/// All switches of a router, and which port belongs to which.
#[derive(Default)]
pub struct Switching {
    switches: Vec<Switch>,
    member_of: Vec<Option<SwitchId>>,
    router_of: Vec<Option<SwitchId>>,
    security: Vec<Option<PortSecurity>>,
    last_sweep: Time,
}

impl Switching {
    /// Switches for `ports` ports; `security` maps member ports to their
    /// rules.
    pub fn new(
        ports: usize,
        switches: &[SwitchConfig],
        security: &[(PortId, PortSecurity)],
    ) -> Self {
        let mut s = Switching {
            member_of: vec![None; ports],
            router_of: vec![None; ports],
            security: vec![None; ports],
            ..Default::default()
        };
        for (i, cfg) in switches.iter().enumerate() {
            for &m in &cfg.members {
                if let Some(slot) = s.member_of.get_mut(usize::from(m)) {
                    *slot = Some(i as SwitchId);
                }
            }
            if let Some(slot) = s.router_of.get_mut(usize::from(cfg.router_port)) {
                *slot = Some(i as SwitchId);
            }
            s.switches.push(Switch {
                table: HashMap::with_capacity_and_hasher(cfg.mac_limit, RandomState::default()),
                per_member: vec![0; cfg.members.len()],
                cfg: cfg.clone(),
            });
        }
        for (port, rules) in security {
            if let Some(slot) = s.security.get_mut(usize::from(*port)) {
                *slot = Some(rules.clone());
            }
        }
        s
    }

    /// True when there are no switches.
    pub fn is_empty(&self) -> bool {
        self.switches.is_empty()
    }

    /// The switch whose member `port` is.
    #[inline]
    pub fn member_of(&self, port: PortId) -> Option<SwitchId> {
        self.member_of.get(usize::from(port)).copied().flatten()
    }

    /// The switch whose router port `port` is.
    #[inline]
    pub fn router_of(&self, port: PortId) -> Option<SwitchId> {
        self.router_of.get(usize::from(port)).copied().flatten()
    }

    /// The router port of switch `sw`.
    pub fn router_port(&self, sw: SwitchId) -> PortId {
        self.switches[usize::from(sw)].cfg.router_port
    }

    /// The member ports of switch `sw`.
    pub fn members(&self, sw: SwitchId) -> &[PortId] {
        &self.switches[usize::from(sw)].cfg.members
    }

    /// Port security of a member port.
    pub fn security(&self, port: PortId) -> Option<&PortSecurity> {
        self.security.get(usize::from(port))?.as_ref()
    }

    /// Learns that `mac` is behind `port` on switch `sw`. A new address on
    /// a full table, or from a member that holds its share of it already,
    /// is refused.
    ///
    /// With several workers each has its own tables, and each tells the
    /// others what it learns: `Ok(true)` when this is worth telling (a new
    /// address, a move, or a refresh they have not heard of for a quarter
    /// of the aging time, so that an address seen by one worker only does
    /// not age out of the others').
    pub fn learn(
        &mut self,
        sw: SwitchId,
        mac: MacAddr,
        port: PortId,
        now: Time,
    ) -> Result<bool, TableFull> {
        self.learn_as(sw, mac, port, now, false)
    }

    /// Learns what another worker told ([`Switching::learn`]); refused
    /// quietly when the table is full.
    pub fn learn_from_peer(&mut self, l: Learning, now: Time) {
        let _ = self.learn_as(l.switch, l.mac, l.port, now, true);
    }

    fn learn_as(
        &mut self,
        sw: SwitchId,
        mac: MacAddr,
        port: PortId,
        now: Time,
        told: bool,
    ) -> Result<bool, TableFull> {
        let i = usize::from(sw);
        let Some(member) = self.switches.get(i).and_then(|s| s.member(port)) else {
            return Err(TableFull);
        };
        let s = &mut self.switches[i];
        let retell = s.cfg.aging / 4;
        if let Some(e) = s.table.get_mut(&mac) {
            e.seen = now;
            let old = std::mem::replace(&mut e.port, port);
            let tell = !told && (old != port || now.since(e.told) >= retell);
            if tell || told {
                e.told = now;
            }
            if old != port {
                if let Some(c) = s.member(old) {
                    s.per_member[c] -= 1;
                }
                s.per_member[member] += 1;
            }
            return Ok(tell);
        }
        let full = |s: &Switch| {
            s.table.len() >= s.cfg.mac_limit || s.per_member[member] >= s.member_share()
        };
        if full(&self.switches[i]) {
            // A full table of stale hosts makes room at once, but a flood of
            // new sources costs at most one sweep a second.
            self.sweep(now);
            if full(&self.switches[i]) {
                return Err(TableFull);
            }
        }
        let s = &mut self.switches[i];
        s.table.insert(
            mac,
            Entry {
                port,
                seen: now,
                told: now,
            },
        );
        s.per_member[member] += 1;
        Ok(!told)
    }

    /// Where switch `sw` sends a frame for `dst`.
    pub fn lookup(&self, sw: SwitchId, dst: MacAddr, now: Time) -> L2Dest {
        if dst.is_multicast() {
            return L2Dest::Flood;
        }
        let s = &self.switches[usize::from(sw)];
        match s.table.get(&dst) {
            Some(e) if now.since(e.seen) < s.cfg.aging => L2Dest::Port(e.port),
            _ => L2Dest::Flood,
        }
    }

    /// Addresses learned now, over all switches.
    pub fn learned(&self, now: Time) -> Vec<LearnedMac> {
        let mut v: Vec<LearnedMac> = self
            .switches
            .iter()
            .flat_map(|s| {
                s.table
                    .iter()
                    .filter(move |(_, e)| now.since(e.seen) < s.cfg.aging)
                    .map(move |(mac, e)| LearnedMac {
                        switch: s.cfg.name.clone(),
                        mac: *mac,
                        port: e.port,
                    })
            })
            .collect();
        v.sort_by(|a, b| (&a.switch, a.mac).cmp(&(&b.switch, b.mac)));
        v
    }

    /// Forgets aged addresses, at most once a second.
    pub fn sweep(&mut self, now: Time) {
        if now.since(self.last_sweep) < Duration::from_secs(1) {
            return;
        }
        self.last_sweep = now;
        for s in &mut self.switches {
            let aging = s.cfg.aging;
            s.retain(|e| now.since(e.seen) < aging);
        }
    }

    /// Forgets what was learned behind `port` (its device changed).
    pub fn forget_port(&mut self, port: PortId) {
        for s in &mut self.switches {
            s.retain(|e| e.port != port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(b: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, b])
    }

    fn one(limit: usize) -> Switching {
        Switching::new(
            4,
            &[SwitchConfig {
                name: "sw".into(),
                router_port: 3,
                members: vec![0, 1, 2],
                mac_limit: limit,
                aging: Duration::from_secs(10),
            }],
            &[],
        )
    }

    #[test]
    fn learns_moves_and_ages() {
        let mut s = one(8);
        let t0 = Time(0);
        assert_eq!(s.lookup(0, mac(1), t0), L2Dest::Flood);
        s.learn(0, mac(1), 0, t0).unwrap();
        assert_eq!(s.lookup(0, mac(1), t0), L2Dest::Port(0));
        s.learn(0, mac(1), 2, t0).unwrap();
        assert_eq!(s.lookup(0, mac(1), t0), L2Dest::Port(2));
        let later = t0.after(Duration::from_secs(10));
        assert_eq!(s.lookup(0, mac(1), later), L2Dest::Flood);
        s.sweep(later);
        assert!(s.learned(later).is_empty());
        assert_eq!(s.lookup(0, MacAddr::BROADCAST, t0), L2Dest::Flood);
    }

    #[test]
    fn other_workers_hear_of_new_addresses_moves_and_refreshes_only() {
        let (mut a, mut b) = (one(8), one(8));
        let t0 = Time(0);
        assert_eq!(a.learn(0, mac(1), 0, t0), Ok(true), "new: told");
        b.learn_from_peer(
            Learning {
                switch: 0,
                mac: mac(1),
                port: 0,
            },
            t0,
        );
        assert_eq!(
            b.lookup(0, mac(1), t0),
            L2Dest::Port(0),
            "the peer knows it"
        );
        let soon = t0.after(Duration::from_secs(1));
        assert_eq!(a.learn(0, mac(1), 0, soon), Ok(false), "a refresh: not yet");
        assert_eq!(
            b.learn(0, mac(1), 0, soon),
            Ok(false),
            "heard of: not retold"
        );
        assert_eq!(a.learn(0, mac(1), 1, soon), Ok(true), "a move: told");
        let quarter = soon.after(Duration::from_millis(2500));
        assert_eq!(
            a.learn(0, mac(1), 1, quarter),
            Ok(true),
            "a quarter of aging: retold"
        );
        assert_eq!(a.learn(0, mac(1), 1, quarter), Ok(false));
    }

    #[test]
    fn a_full_table_refuses_new_sources_until_entries_age() {
        let mut s = one(2);
        let t0 = Time(0);
        s.learn(0, mac(1), 0, t0).unwrap();
        s.learn(0, mac(2), 1, t0).unwrap();
        assert_eq!(s.learn(0, mac(3), 1, t0), Err(TableFull));
        // Known addresses still refresh.
        s.learn(0, mac(1), 0, t0).unwrap();
        let later = t0.after(Duration::from_secs(11));
        s.learn(0, mac(3), 1, later).unwrap();
        assert_eq!(s.learned(later).len(), 1);
    }

    #[test]
    fn membership_and_security() {
        let s = Switching::new(
            4,
            &[SwitchConfig {
                name: "sw".into(),
                router_port: 3,
                members: vec![0, 1],
                mac_limit: 4,
                aging: DEFAULT_AGING,
            }],
            &[(
                0,
                PortSecurity {
                    mac: Some(mac(9)),
                    addresses: vec!["172.28.0.10".parse().unwrap()],
                },
            )],
        );
        assert_eq!((s.member_of(1), s.member_of(3)), (Some(0), None));
        assert_eq!((s.router_of(3), s.router_of(0)), (Some(0), None));
        let sec = s.security(0).unwrap();
        assert!(sec.allows_mac(mac(9)) && !sec.allows_mac(mac(8)));
        assert!(sec.allows_addr("172.28.0.10".parse().unwrap()));
        assert!(sec.allows_addr("0.0.0.0".parse().unwrap()));
        assert!(!sec.allows_addr("172.28.0.11".parse().unwrap()));
        assert!(s.security(1).is_none());
    }
}
