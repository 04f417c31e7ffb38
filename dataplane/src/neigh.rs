//! The neighbour table (ARP for IPv4, NDP for IPv6).
//!
//! A packet whose next hop has no link-layer address yet is held in a small
//! bounded queue on that neighbour while the pipeline sends a request; the
//! reply releases the queue, and after [`PROBES`] unanswered requests one
//! [`PROBE_INTERVAL`] apart the queue is dropped as `neighbor_unresolved`.
//! Both the number of resolving neighbours and each queue are bounded, so a
//! scan of a connected subnet cannot grow memory without limit.

use foldhash::fast::RandomState;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use crate::packet::{MacAddr, Packet};
use crate::port::PortId;
use crate::stats::DropReason;
use crate::time::Time;

/// Time between two requests for an unresolved neighbour.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Requests sent before giving up.
pub const PROBES: u8 = 3;
/// How long a learned entry stays valid without being confirmed again.
pub const REACHABLE_LIFETIME: Duration = Duration::from_secs(300);
/// Packets held per unresolved neighbour.
pub const QUEUE_LIMIT: usize = 16;
/// Neighbours resolving at once.
pub const MAX_INCOMPLETE: usize = 1024;
/// Entries in the table at most.
pub const MAX_ENTRIES: usize = 65536;

/// A neighbour: its port and address. Hashed as one `u64` for IPv4 (the
/// common case on the hot path) rather than field by field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key(PortId, IpAddr);

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        match self.1 {
            IpAddr::V4(a) => h.write_u64((u64::from(self.0) << 32) | u64::from(u32::from(a))),
            IpAddr::V6(a) => {
                h.write_u128(u128::from(a));
                h.write_u16(self.0);
            }
        }
    }
}

/// State of one neighbour.
pub enum State {
    /// Configured; never expires.
    Static(MacAddr),
    /// Learned from a reply or a request.
    Reachable {
        /// Its MAC address.
        mac: MacAddr,
        /// When it was last confirmed.
        confirmed: Time,
    },
    /// Being resolved.
    Incomplete {
        /// When the last request was sent.
        last_probe: Time,
        /// Requests sent so far.
        probes: u8,
        /// Packets waiting for the answer.
        queue: VecDeque<Packet>,
    },
}

/// What became of a packet handed to [`NeighTable::resolve`].
pub enum Resolution {
    /// Send it to this MAC now.
    Ready(Packet, MacAddr),
    /// Held; `probe` is true when the caller must send the first request.
    Held {
        /// Send a request now.
        probe: bool,
    },
    /// Not held; drop it under this reason.
    Refused(Packet, DropReason),
}

/// One line of the table, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborView {
    /// Port.
    pub port: PortId,
    /// IP address.
    pub addr: IpAddr,
    /// MAC, when known.
    pub mac: Option<MacAddr>,
    /// `static`, `reachable`, `stale` or `incomplete`.
    pub state: &'static str,
}

/// The table.
pub struct NeighTable {
    map: HashMap<Key, State, RandomState>,
    incomplete: Vec<Key>,
    /// Packets held over all neighbours, and how many may be.
    held: usize,
    max_held: usize,
    /// Bumped by every change (see [`NeighTable::version`]).
    version: u64,
}

impl Default for NeighTable {
    fn default() -> Self {
        Self::with_held_limit(MAX_INCOMPLETE * QUEUE_LIMIT)
    }
}

impl NeighTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table holding at most `max_held` packets over all
    /// neighbours (the router sizes it so that held buffers fit a byte
    /// budget whatever the buffer size).
    pub fn with_held_limit(max_held: usize) -> Self {
        NeighTable {
            map: HashMap::default(),
            incomplete: Vec::new(),
            held: 0,
            max_held: max_held.max(1),
            version: 0,
        }
    }

    /// Adds a configured entry.
    pub fn add_static(&mut self, port: PortId, addr: IpAddr, mac: MacAddr) {
        self.version += 1;
        self.map.insert(Key(port, addr), State::Static(mac));
    }

    /// The MAC to use for `addr` on `port` now, if known and fresh.
    #[inline]
    pub fn lookup(&self, port: PortId, addr: IpAddr, now: Time) -> Option<MacAddr> {
        self.lookup_until(port, addr, now).map(|(mac, _)| mac)
    }

    /// [`NeighTable::lookup`], with the time until which the answer holds
    /// if the table does not change meanwhile.
    #[inline]
    pub fn lookup_until(&self, port: PortId, addr: IpAddr, now: Time) -> Option<(MacAddr, Time)> {
        match self.map.get(&Key(port, addr))? {
            State::Static(mac) => Some((*mac, Time(u64::MAX))),
            State::Reachable { mac, confirmed } => (now.since(*confirmed) < REACHABLE_LIFETIME)
                .then(|| (*mac, confirmed.after(REACHABLE_LIFETIME))),
            State::Incomplete { .. } => None,
        }
    }

    /// A number that changes whenever the table does: an answer cached
    /// with it stands while it is the same and the answer's time holds.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Returns the MAC for the packet's next hop, or holds the packet until
    /// the neighbour answers.
    pub fn resolve(&mut self, port: PortId, addr: IpAddr, pkt: Packet, now: Time) -> Resolution {
        if let Some(mac) = self.lookup(port, addr, now) {
            return Resolution::Ready(pkt, mac);
        }
        if self.held >= self.max_held {
            return Resolution::Refused(pkt, DropReason::NeighborQueueFull);
        }
        let key = Key(port, addr);
        if let Some(State::Incomplete { queue, .. }) = self.map.get_mut(&key) {
            if queue.len() >= QUEUE_LIMIT {
                return Resolution::Refused(pkt, DropReason::NeighborQueueFull);
            }
            queue.push_back(pkt);
            self.held += 1;
            return Resolution::Held { probe: false };
        }
        let fresh = !self.map.contains_key(&key);
        if self.incomplete.len() >= MAX_INCOMPLETE || (fresh && self.map.len() >= MAX_ENTRIES) {
            return Resolution::Refused(pkt, DropReason::NeighborTableFull);
        }
        let mut queue = VecDeque::with_capacity(QUEUE_LIMIT);
        queue.push_back(pkt);
        self.version += 1;
        self.map.insert(
            key,
            State::Incomplete {
                last_probe: now,
                probes: 1,
                queue,
            },
        );
        self.incomplete.push(key);
        self.held += 1;
        Resolution::Held { probe: true }
    }

    /// Records that `addr` on `port` has `mac`. A new entry is made only when
    /// `create` is true (the sender addressed us); otherwise only existing
    /// entries are updated. Static entries never change. Returns the packets
    /// that were waiting for it.
    pub fn learn(
        &mut self,
        port: PortId,
        addr: IpAddr,
        mac: MacAddr,
        now: Time,
        create: bool,
    ) -> Option<VecDeque<Packet>> {
        self.version += 1;
        let key = Key(port, addr);
        let fresh = State::Reachable {
            mac,
            confirmed: now,
        };
        match self.map.get_mut(&key) {
            Some(State::Static(_)) => None,
            Some(state @ State::Reachable { .. }) => {
                *state = fresh;
                None
            }
            Some(state) => {
                let old = std::mem::replace(state, fresh);
                self.incomplete.retain(|k| *k != key);
                match old {
                    State::Incomplete { queue, .. } => {
                        self.held -= queue.len();
                        Some(queue)
                    }
                    _ => None,
                }
            }
            None => {
                if create && self.map.len() < MAX_ENTRIES {
                    self.map.insert(key, fresh);
                }
                None
            }
        }
    }

    /// Advances timers: neighbours due for another request are pushed to
    /// `probe`; the queues of those that ran out of requests are moved to
    /// `failed` and their entries removed.
    pub fn tick(&mut self, now: Time, probe: &mut Vec<(PortId, IpAddr)>, failed: &mut Vec<Packet>) {
        // Runs before every burst: the version moves only when it changed
        // something, so answers cached with it outlive the burst.
        let before = (self.incomplete.len(), probe.len());
        let map = &mut self.map;
        let held = &mut self.held;
        self.incomplete.retain(|key| {
            let Some(State::Incomplete {
                last_probe,
                probes,
                queue,
            }) = map.get_mut(key)
            else {
                return false;
            };
            if now.since(*last_probe) < PROBE_INTERVAL {
                return true;
            }
            if *probes >= PROBES {
                *held -= queue.len();
                failed.extend(queue.drain(..));
                map.remove(key);
                return false;
            }
            *probes += 1;
            *last_probe = now;
            probe.push((key.0, key.1));
            true
        });
        if (self.incomplete.len(), probe.len()) != before {
            self.version += 1;
        }
    }

    /// Gives up on every neighbour still resolving (end of a replay): their
    /// queues go to `failed`.
    pub fn flush(&mut self, failed: &mut Vec<Packet>) {
        self.version += 1;
        for key in self.incomplete.drain(..) {
            if let Some(State::Incomplete { mut queue, .. }) = self.map.remove(&key) {
                self.held -= queue.len();
                failed.extend(queue.drain(..));
            }
        }
    }

    /// Forgets what was learned on `port` (its device changed, so its
    /// neighbours may be other hosts now); static entries stay. Packets
    /// held for its neighbours go to `failed`.
    pub fn forget_port(&mut self, port: PortId, failed: &mut Vec<Packet>) {
        self.version += 1;
        let held = &mut self.held;
        self.map.retain(|k, state| match state {
            _ if k.0 != port => true,
            State::Static(_) => true,
            State::Incomplete { queue, .. } => {
                *held -= queue.len();
                failed.extend(queue.drain(..));
                false
            }
            State::Reachable { .. } => false,
        });
        self.incomplete.retain(|k| k.0 != port);
    }

    /// Packets currently held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The table, sorted by port and address.
    pub fn entries(&self, now: Time) -> Vec<NeighborView> {
        let mut v: Vec<NeighborView> = self
            .map
            .iter()
            .map(|(&Key(port, addr), s)| {
                let (mac, state) = match s {
                    State::Static(m) => (Some(*m), "static"),
                    State::Reachable { mac, confirmed } => {
                        let fresh = now.since(*confirmed) < REACHABLE_LIFETIME;
                        (Some(*mac), if fresh { "reachable" } else { "stale" })
                    }
                    State::Incomplete { .. } => (None, "incomplete"),
                };
                NeighborView {
                    port,
                    addr,
                    mac,
                    state,
                }
            })
            .collect();
        v.sort_by_key(|n| (n.port, n.addr));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Meta, PacketBuf};

    fn pkt() -> Packet {
        Packet {
            buf: PacketBuf::new(),
            meta: Meta::received(0, Time(0)),
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    #[test]
    fn hold_then_release_on_reply() {
        let mut t = NeighTable::new();
        assert!(matches!(
            t.resolve(0, A, pkt(), Time(0)),
            Resolution::Held { probe: true }
        ));
        assert!(matches!(
            t.resolve(0, A, pkt(), Time(1)),
            Resolution::Held { probe: false }
        ));
        assert_eq!(t.held(), 2);
        let q = t.learn(0, A, MAC, Time(2), false).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(t.held(), 0);
        assert!(matches!(t.resolve(0, A, pkt(), Time(3)), Resolution::Ready(_, m) if m == MAC));
    }

    #[test]
    fn forgetting_a_port_keeps_other_ports_and_static_entries() {
        const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
        let mut t = NeighTable::new();
        t.learn(0, A, MAC, Time(0), true);
        t.add_static(0, B, MAC);
        t.learn(1, A, MAC, Time(0), true);
        let held = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3));
        let _ = t.resolve(0, held, pkt(), Time(0));
        let mut failed = Vec::new();
        t.forget_port(0, &mut failed);
        assert_eq!(failed.len(), 1, "the held packet is handed back");
        assert_eq!(t.held(), 0);
        assert_eq!(t.lookup(0, A, Time(1)), None);
        assert_eq!(t.lookup(0, B, Time(1)), Some(MAC), "static stays");
        assert_eq!(t.lookup(1, A, Time(1)), Some(MAC), "other ports stay");
    }

    #[test]
    fn held_packets_are_bounded_over_all_neighbours() {
        let mut t = NeighTable::with_held_limit(3);
        for i in 0..5u8 {
            let a = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 10 + i));
            let r = t.resolve(0, a, pkt(), Time(0));
            assert_eq!(matches!(r, Resolution::Held { .. }), i < 3, "packet {i}");
        }
        assert_eq!(t.held(), 3);
        let b = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 10));
        assert_eq!(t.learn(0, b, MAC, Time(1), false).map(|q| q.len()), Some(1));
        assert_eq!(t.held(), 2, "released packets leave the count");
        let mut failed = Vec::new();
        t.flush(&mut failed);
        assert_eq!((failed.len(), t.held()), (2, 0));
    }

    #[test]
    fn queue_is_bounded() {
        let mut t = NeighTable::new();
        for _ in 0..QUEUE_LIMIT {
            assert!(matches!(
                t.resolve(0, A, pkt(), Time(0)),
                Resolution::Held { .. }
            ));
        }
        assert!(matches!(
            t.resolve(0, A, pkt(), Time(0)),
            Resolution::Refused(_, DropReason::NeighborQueueFull)
        ));
    }

    #[test]
    fn unanswered_requests_fail_the_queue() {
        let mut t = NeighTable::new();
        let _ = t.resolve(0, A, pkt(), Time(0));
        let (mut probes, mut failed) = (Vec::new(), Vec::new());
        let s = |n: u64| Time(n * 1_000_000_000);
        t.tick(s(1), &mut probes, &mut failed);
        t.tick(s(2), &mut probes, &mut failed);
        assert_eq!(probes.len(), 2, "second and third request");
        assert!(failed.is_empty());
        t.tick(s(3), &mut probes, &mut failed);
        assert_eq!(failed.len(), 1);
        assert!(t.entries(s(3)).is_empty());
    }

    #[test]
    fn unsolicited_reply_does_not_create_entries() {
        let mut t = NeighTable::new();
        t.learn(0, A, MAC, Time(0), false);
        assert!(t.lookup(0, A, Time(0)).is_none());
        t.learn(0, A, MAC, Time(0), true);
        assert_eq!(t.lookup(0, A, Time(0)), Some(MAC));
    }

    #[test]
    fn static_entries_do_not_change_or_expire() {
        let mut t = NeighTable::new();
        t.add_static(0, A, MAC);
        t.learn(0, A, MacAddr([9; 6]), Time(0), true);
        assert_eq!(t.lookup(0, A, Time(u64::MAX)), Some(MAC));
    }
}
