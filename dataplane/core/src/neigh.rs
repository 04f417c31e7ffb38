//! The neighbour table (ARP for IPv4, NDP for IPv6).
//!
//! A packet whose next hop has no link-layer address yet is held in a small
//! bounded queue on that neighbour while the pipeline sends a request; the
//! reply releases the queue, and after [`PROBES`] unanswered requests one
//! [`PROBE_INTERVAL`] apart the queue is dropped as `neighbor_unresolved`.
//! Both the number of resolving neighbours and each queue are bounded, so a
//! scan of a connected subnet cannot grow memory without limit.
//!
//! Learned entries age as in the Linux neighbour subsystem: reachable for
//! [`REACHABLE_LIFETIME`] after the last confirmation, then stale, then
//! gone [`GC_STALE_TIME`] later (a sweep every [`GC_INTERVAL`] once the
//! table holds more than [`GC_THRESH1`]). Requests from the wire create
//! entries only below [`HIGH_WATER`] (Linux's `gc_thresh2`) and within
//! their port's share of [`MAX_ENTRIES`] (`gc_thresh3`); above that they
//! refresh existing entries only. A next hop the router itself needs is
//! never refused for a full table: it reclaims the least recently
//! confirmed learned entries (the port's own when the port is over its
//! share), so a flood fills the table for a while but never for good.

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
/// Entries in the table at most (Linux's `gc_thresh3`).
pub const MAX_ENTRIES: usize = 65536;
/// Above this many entries, requests from the wire no longer create
/// entries (Linux's `gc_thresh2`).
pub const HIGH_WATER: usize = MAX_ENTRIES / 2;
/// At or below this many entries, the periodic sweep leaves stale entries
/// be (Linux's `gc_thresh1`).
pub const GC_THRESH1: usize = 128;
/// How long a stale entry (past [`REACHABLE_LIFETIME`]) is kept before the
/// sweep removes it (Linux's `gc_stale_time`).
pub const GC_STALE_TIME: Duration = Duration::from_secs(60);
/// Time between two sweeps.
pub const GC_INTERVAL: Duration = Duration::from_secs(5);
/// Share of learned entries one port may hold at least, whatever the
/// number of ports.
const MIN_PORT_SHARE: usize = 1024;

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

/// Whether an answer may make a new entry, or only refresh one the table
/// has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Make one if there is none (the sender addressed us).
    Create,
    /// Only refresh or resolve an existing entry (unsolicited answers,
    /// answers another worker saw).
    RefreshOnly,
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
    /// Learned and resolving entries per port (static ones do not count),
    /// and how many one port may hold.
    per_port: Vec<usize>,
    port_share: usize,
    /// When the next sweep of stale entries is due.
    next_gc: Time,
    /// Confirmation times, reused by [`NeighTable::reclaim`].
    ages: Vec<Time>,
    /// Learned entries removed to make room, and by the sweep.
    reclaimed: u64,
    swept: u64,
    /// Bumped by every change (see [`NeighTable::version`]).
    version: u64,
}

impl Default for NeighTable {
    fn default() -> Self {
        Self::with_limits(1, MAX_INCOMPLETE * QUEUE_LIMIT)
    }
}

impl NeighTable {
    /// An empty table for one port.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table for `ports` ports, each of which may hold its share
    /// of [`MAX_ENTRIES`] (at least 1,024), holding at most `max_held`
    /// packets over all neighbours (the router sizes it so that held
    /// buffers fit a byte budget whatever the buffer size).
    pub fn with_limits(ports: usize, max_held: usize) -> Self {
        NeighTable {
            map: HashMap::default(),
            incomplete: Vec::new(),
            held: 0,
            max_held: max_held.max(1),
            per_port: Vec::new(),
            port_share: (MAX_ENTRIES / ports.max(1)).max(MIN_PORT_SHARE),
            next_gc: Time(0),
            ages: Vec::new(),
            reclaimed: 0,
            swept: 0,
            version: 0,
        }
    }

    /// Learned and resolving entries on `port`.
    fn on_port(&self, port: PortId) -> usize {
        self.per_port.get(usize::from(port)).copied().unwrap_or(0)
    }

    /// One more learned or resolving entry on `port`.
    fn count_added(&mut self, port: PortId) {
        let i = usize::from(port);
        if self.per_port.len() <= i {
            self.per_port.resize(i + 1, 0);
        }
        self.per_port[i] += 1;
    }

    /// One fewer learned or resolving entry on `port`.
    fn count_removed(&mut self, port: PortId) {
        if let Some(n) = self.per_port.get_mut(usize::from(port)) {
            *n -= 1;
        }
    }

    /// Adds a configured entry.
    pub fn add_static(&mut self, port: PortId, addr: IpAddr, mac: MacAddr) {
        self.version += 1;
        match self.map.insert(Key(port, addr), State::Static(mac)) {
            None | Some(State::Static(_)) => {}
            Some(State::Reachable { .. }) => self.count_removed(port),
            Some(State::Incomplete { queue, .. }) => {
                // Its packets go with it; a static entry is added at start,
                // before any is held.
                self.held -= queue.len();
                self.incomplete.retain(|k| *k != Key(port, addr));
                self.count_removed(port);
            }
        }
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
        if self.incomplete.len() >= MAX_INCOMPLETE {
            return Resolution::Refused(pkt, DropReason::NeighborTableFull);
        }
        if fresh {
            if self.on_port(port) >= self.port_share {
                self.reclaim(Some(port));
            }
            if self.map.len() >= MAX_ENTRIES {
                self.reclaim(None);
            }
            if self.on_port(port) >= self.port_share || self.map.len() >= MAX_ENTRIES {
                // Only static and resolving entries left.
                return Resolution::Refused(pkt, DropReason::NeighborTableFull);
            }
            self.count_added(port);
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
    /// `entry` is [`Entry::Create`] (the sender addressed us), the table holds fewer
    /// than [`HIGH_WATER`] entries and the port is within its share;
    /// otherwise only existing entries are updated. Static entries never
    /// change. Returns the packets that were waiting for it.
    pub fn learn(
        &mut self,
        port: PortId,
        addr: IpAddr,
        mac: MacAddr,
        now: Time,
        entry: Entry,
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
                if entry == Entry::Create
                    && self.map.len() < HIGH_WATER
                    && self.on_port(port) < self.port_share
                {
                    self.map.insert(key, fresh);
                    self.count_added(port);
                }
                None
            }
        }
    }

    /// Removes up to an eighth (at least one) of the learned entries, the
    /// least recently confirmed first, on `port` or on any port. Stale
    /// entries are the oldest, so they go first. One pass over the table
    /// frees room for many new entries, so each costs a few steps.
    fn reclaim(&mut self, port: Option<PortId>) {
        let on_port = |k: &Key| port.is_none_or(|p| k.0 == p);
        self.ages.clear();
        self.ages
            .extend(self.map.iter().filter_map(|(k, s)| match s {
                State::Reachable { confirmed, .. } if on_port(k) => Some(*confirmed),
                _ => None,
            }));
        if self.ages.is_empty() {
            return;
        }
        let k = (self.ages.len() / 8).max(1);
        let cutoff = *self.ages.select_nth_unstable(k - 1).1;
        self.reclaimed += self.remove_learned(|key, confirmed| on_port(key) && confirmed <= cutoff);
    }

    /// Removes learned entries stale for longer than [`GC_STALE_TIME`].
    fn sweep(&mut self, now: Time) {
        self.swept += self.remove_learned(|_, confirmed| {
            now.since(confirmed) >= REACHABLE_LIFETIME + GC_STALE_TIME
        });
    }

    /// Removes the learned entries `doomed` picks by key and confirmation
    /// time, keeping the per-port counts; how many went.
    fn remove_learned(&mut self, doomed: impl Fn(&Key, Time) -> bool) -> u64 {
        let per_port = &mut self.per_port;
        let before = self.map.len();
        self.map.retain(|key, s| match s {
            State::Reachable { confirmed, .. } if doomed(key, *confirmed) => {
                per_port[usize::from(key.0)] -= 1;
                false
            }
            _ => true,
        });
        let removed = (before - self.map.len()) as u64;
        if removed > 0 {
            self.version += 1;
        }
        removed
    }

    /// Learned entries removed so far: to make room for new ones, and as
    /// stale by the periodic sweep.
    pub fn removed(&self) -> (u64, u64) {
        (self.reclaimed, self.swept)
    }

    /// Advances timers: neighbours due for another request are pushed to
    /// `probe`; the queues of those that ran out of requests are moved to
    /// `failed` and their entries removed. Every [`GC_INTERVAL`], entries
    /// stale for [`GC_STALE_TIME`] are removed.
    pub fn tick(&mut self, now: Time, probe: &mut Vec<(PortId, IpAddr)>, failed: &mut Vec<Packet>) {
        if now >= self.next_gc {
            self.next_gc = now.after(GC_INTERVAL);
            if self.map.len() > GC_THRESH1 {
                self.sweep(now);
            }
        }
        // Runs before every burst: the version moves only when it changed
        // something, so answers cached with it outlive the burst.
        let before = (self.incomplete.len(), probe.len());
        let map = &mut self.map;
        let held = &mut self.held;
        let per_port = &mut self.per_port;
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
                per_port[usize::from(key.0)] -= 1;
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
        for key in std::mem::take(&mut self.incomplete) {
            if let Some(State::Incomplete { mut queue, .. }) = self.map.remove(&key) {
                self.held -= queue.len();
                failed.extend(queue.drain(..));
                self.count_removed(key.0);
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
        if let Some(n) = self.per_port.get_mut(usize::from(port)) {
            *n = 0;
        }
    }

    /// Packets currently held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Entries by state.
    pub fn census(&self, now: Time) -> crate::census::NeighborCensus {
        let mut c = crate::census::NeighborCensus::default();
        for s in self.map.values() {
            match s {
                State::Static(_) => c.permanent += 1,
                State::Reachable { confirmed, .. }
                    if now.since(*confirmed) < REACHABLE_LIFETIME =>
                {
                    c.reachable += 1
                }
                State::Reachable { .. } => c.stale += 1,
                State::Incomplete { .. } => c.incomplete += 1,
            }
        }
        c
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
        let q = t.learn(0, A, MAC, Time(2), Entry::RefreshOnly).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(t.held(), 0);
        assert!(matches!(t.resolve(0, A, pkt(), Time(3)), Resolution::Ready(_, m) if m == MAC));
    }

    #[test]
    fn forgetting_a_port_keeps_other_ports_and_static_entries() {
        const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
        let mut t = NeighTable::new();
        t.learn(0, A, MAC, Time(0), Entry::Create);
        t.add_static(0, B, MAC);
        t.learn(1, A, MAC, Time(0), Entry::Create);
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
        let mut t = NeighTable::with_limits(1, 3);
        for i in 0..5u8 {
            let a = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 10 + i));
            let r = t.resolve(0, a, pkt(), Time(0));
            assert_eq!(matches!(r, Resolution::Held { .. }), i < 3, "packet {i}");
        }
        assert_eq!(t.held(), 3);
        let b = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 10));
        assert_eq!(
            t.learn(0, b, MAC, Time(1), Entry::RefreshOnly)
                .map(|q| q.len()),
            Some(1)
        );
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
        t.learn(0, A, MAC, Time(0), Entry::RefreshOnly);
        assert!(t.lookup(0, A, Time(0)).is_none());
        t.learn(0, A, MAC, Time(0), Entry::Create);
        assert_eq!(t.lookup(0, A, Time(0)), Some(MAC));
    }

    fn v4(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    fn secs(n: u64) -> Time {
        Time(n * 1_000_000_000)
    }

    /// Entries a naive model says are present: the table's own view.
    fn count(t: &NeighTable) -> usize {
        t.entries(Time(0)).len()
    }

    #[test]
    fn requests_create_entries_only_below_the_high_water_mark() {
        let mut t = NeighTable::new();
        for i in 0..(HIGH_WATER as u32 + 100) {
            t.learn(0, v4(i), MAC, Time(0), Entry::Create);
        }
        assert_eq!(count(&t), HIGH_WATER);
        // An existing entry is still refreshed above the mark.
        t.learn(0, v4(0), MacAddr([7; 6]), secs(1), Entry::Create);
        assert_eq!(t.lookup(0, v4(0), secs(1)), Some(MacAddr([7; 6])));
        assert_eq!(t.lookup(0, v4(HIGH_WATER as u32), secs(1)), None);
    }

    #[test]
    fn a_port_holds_no_more_than_its_share() {
        let mut t = NeighTable::with_limits(4, 16);
        for i in 0..20_000 {
            t.learn(0, v4(i), MAC, Time(0), Entry::Create);
        }
        assert_eq!(count(&t), MAX_ENTRIES / 4, "port 0 stops at its share");
        t.learn(1, v4(0), MAC, Time(0), Entry::Create);
        assert_eq!(
            t.lookup(1, v4(0), Time(0)),
            Some(MAC),
            "another port still learns"
        );
    }

    #[test]
    fn learned_entries_go_stale_then_away() {
        let mut t = NeighTable::new();
        for i in 0..1000 {
            t.learn(0, v4(i), MAC, Time(0), Entry::Create);
        }
        let (mut probes, mut failed) = (Vec::new(), Vec::new());
        let stale = secs(REACHABLE_LIFETIME.as_secs() + 1);
        t.tick(stale, &mut probes, &mut failed);
        assert_eq!(count(&t), 1000, "stale entries are kept a while");
        assert!(t.entries(stale).iter().all(|n| n.state == "stale"));
        assert_eq!(t.lookup(0, v4(1), stale), None, "a stale entry is not used");
        let gone = stale.after(GC_STALE_TIME + GC_INTERVAL);
        t.tick(gone, &mut probes, &mut failed);
        assert_eq!(count(&t), 0);
        assert_eq!(t.removed(), (0, 1000));
        // The port's share is free again.
        t.learn(0, v4(5), MAC, gone, Entry::Create);
        assert_eq!(t.lookup(0, v4(5), gone), Some(MAC));
    }

    #[test]
    fn a_needed_next_hop_reclaims_the_oldest_entries_of_a_full_table() {
        let mut t = NeighTable::with_limits(1, 16);
        // Fill it by resolution and replies, each confirmed a little later.
        for i in 0..MAX_ENTRIES as u32 {
            let now = Time(u64::from(i));
            assert!(matches!(
                t.resolve(0, v4(i), pkt(), now),
                Resolution::Held { .. }
            ));
            t.learn(0, v4(i), MAC, now, Entry::RefreshOnly);
        }
        assert_eq!(count(&t), MAX_ENTRIES);
        let now = Time(MAX_ENTRIES as u64);
        let new = v4(MAX_ENTRIES as u32);
        assert!(matches!(
            t.resolve(0, new, pkt(), now),
            Resolution::Held { probe: true }
        ));
        let (reclaimed, _) = t.removed();
        assert_eq!(reclaimed, (MAX_ENTRIES / 8) as u64);
        // The oldest went, the newest stayed.
        assert_eq!(t.lookup(0, v4(0), now), None);
        assert_eq!(t.lookup(0, v4(MAX_ENTRIES as u32 - 1), now), Some(MAC));
    }

    #[test]
    fn a_port_over_its_share_reclaims_its_own_entries_only() {
        let mut t = NeighTable::with_limits(4, 16);
        t.learn(1, v4(0), MAC, Time(0), Entry::Create);
        for i in 0..(MAX_ENTRIES / 4) as u32 {
            t.learn(0, v4(i), MAC, Time(1 + u64::from(i)), Entry::Create);
        }
        let now = Time(MAX_ENTRIES as u64);
        assert!(matches!(
            t.resolve(0, v4(1 << 20), pkt(), now),
            Resolution::Held { probe: true }
        ));
        assert_eq!(
            t.lookup(1, v4(0), now),
            Some(MAC),
            "port 1 keeps its oldest"
        );
        assert_eq!(t.lookup(0, v4(0), now), None, "port 0 gave up its oldest");
    }

    #[test]
    fn static_entries_do_not_change_or_expire() {
        let mut t = NeighTable::new();
        t.add_static(0, A, MAC);
        t.learn(0, A, MacAddr([9; 6]), Time(0), Entry::Create);
        assert_eq!(t.lookup(0, A, Time(u64::MAX)), Some(MAC));
    }
}
