//! The service connection table: each flow to a service keeps the backend
//! it was first given, whatever the Maglev table says later, so changing
//! the backends breaks no established flow.
//!
//! Fixed memory, allocated once: a set-associative table (16 ways a set,
//! like a CPU cache) of fixed-size entries. A flow's set is a hash of its
//! 5-tuple; a new flow takes a free or expired way of its set, else the
//! least recently used one, and that eviction is counted. So the table
//! never grows and never rehashes. Each set's 16 tags (32 bits of the
//! flow's hash, 0 for a free way) fill one cache line apart from the
//! entries: a lookup reads that line and then only the entry whose tag
//! matches, and a batch of lookups prefetches both before it looks. Each
//! worker owns its table: no lock.
//!
//! Timers follow the NAT's: TCP established 2 h 4 min once both sides'
//! SYN were seen, 4 min otherwise and after FIN or RST; UDP and other
//! protocols 5 min. Times are whole seconds.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

use foldhash::fast::FixedState;

/// Ways a set: their tags fill a cache line.
pub const WAYS: usize = 16;

/// TCP flags the state follows.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// TCP state bits of a flow.
const SYN_SEEN: u8 = 1;
const SYN_ACKED: u8 = 2;
const CLOSING: u8 = 4;

/// Timeouts, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP once both SYNs were seen.
    pub tcp_established: u32,
    /// TCP before that, and after FIN or RST.
    pub tcp_transitory: u32,
    /// UDP and everything else.
    pub other: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: 7440,
            tcp_transitory: 240,
            other: 300,
        }
    }
}

/// A flow's identity: protocol, client endpoint, service endpoint.
/// Packed to 4-byte alignment, as [`Flow`] is: a way of the table takes
/// 76 bytes rather than the 96 that 16-byte aligned addresses would pad
/// it to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C, packed(4))]
pub struct FlowKey {
    /// Client address (IPv4 mapped into IPv6).
    pub client: u128,
    /// The service's address (IPv4 mapped into IPv6).
    pub vip: u128,
    /// Client port.
    pub client_port: u16,
    /// The service's port.
    pub vip_port: u16,
    /// IP protocol.
    pub proto: u8,
}

impl FlowKey {
    /// The key of a flow from `client` to `vip`.
    pub fn new(proto: u8, client: (IpAddr, u16), vip: (IpAddr, u16)) -> FlowKey {
        FlowKey {
            proto,
            client: wide(client.0),
            client_port: client.1,
            vip: wide(vip.0),
            vip_port: vip.1,
        }
    }
}

/// What the table keeps for a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C, packed(4))]
pub struct Flow {
    /// An address its owner gives meaning to (a client flow's backend, a
    /// hairpinned reply's client), IPv4 mapped into IPv6.
    pub addr: u128,
    /// The service it belongs to.
    pub service: u32,
    /// Ports or marks its owner gives meaning to.
    pub aux: u32,
    /// When it expires, in whole seconds of the table's clock.
    expires: u32,
    /// Last use, for least-recently-used eviction.
    used: u32,
    tcp: u8,
}

impl Flow {
    /// A new flow of `service` that remembers `addr` and `aux`.
    pub fn to(service: u32, addr: IpAddr, aux: u32) -> Flow {
        Flow {
            service,
            addr: wide(addr),
            aux,
            ..Flow::default()
        }
    }

    /// True once a FIN or RST of its TCP connection was seen.
    pub fn closing(&self) -> bool {
        self.tcp & CLOSING != 0
    }

    /// [`Flow::addr`] as an address.
    pub fn address(&self) -> IpAddr {
        narrow(self.addr)
    }
}

/// An address as the table keeps it: IPv4 mapped into IPv6.
pub fn wide(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(v.to_ipv6_mapped()),
        IpAddr::V6(v) => u128::from(v),
    }
}

/// The address [`wide`] made.
pub fn narrow(a: u128) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// One way of a set: a flow and its key (a zero `expires` is free).
#[derive(Clone, Copy, Default)]
struct Way {
    key: FlowKey,
    flow: Flow,
}

/// What [`FlowTable::insert`] did to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// A free or expired way.
    Free,
    /// The set was full of live flows: its least recently used one was
    /// evicted.
    Evicted,
}

/// A set's tags, aligned to a cache line.
#[derive(Clone, Copy, Default)]
#[repr(align(64))]
struct Tags([u32; WAYS]);

/// The connection table.
pub struct FlowTable {
    tags: Box<[Tags]>,
    ways: Box<[Way]>,
    mask: usize,
    hasher: FixedState,
    timeouts: Timeouts,
    evicted: u64,
}

impl FlowTable {
    /// A table of at least `flows` entries (rounded up to a power of two
    /// sets of [`WAYS`]).
    pub fn with_capacity(flows: usize, timeouts: Timeouts) -> FlowTable {
        let sets = flows.div_ceil(WAYS).max(1).next_power_of_two();
        FlowTable {
            tags: vec![Tags::default(); sets].into_boxed_slice(),
            ways: vec![Way::default(); sets * WAYS].into_boxed_slice(),
            mask: sets - 1,
            hasher: FixedState::with_seed(0x666c_6f77_7301),
            timeouts,
            evicted: 0,
        }
    }

    /// Entries it holds at most.
    pub fn capacity(&self) -> usize {
        self.ways.len()
    }

    /// Bytes a flow takes (the table's whole memory over its capacity).
    pub fn bytes_per_flow() -> usize {
        std::mem::size_of::<Way>() + std::mem::size_of::<Tags>() / WAYS
    }

    /// Live flows evicted to make room so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// A key's set and tag (never 0: 0 marks a free way).
    #[inline]
    fn place(&self, key: &FlowKey) -> (usize, u32) {
        let mut h = self.hasher.build_hasher();
        std::hash::Hash::hash(key, &mut h);
        let h = h.finish();
        ((h as usize) & self.mask, ((h >> 32) as u32).max(1))
    }

    /// The way of `key` in its set, if the set holds it (live or not).
    #[inline]
    fn find(&self, set: usize, tag: u32, key: &FlowKey) -> Option<usize> {
        let tags = &self.tags[set].0;
        (0..WAYS)
            .filter(|&i| tags[i] == tag)
            .map(|i| set * WAYS + i)
            .find(|&w| self.ways[w].key == *key)
    }

    /// The live flow of `key` at `now` (seconds), refreshed by a packet
    /// with TCP `flags` (0 for other protocols).
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, now: u32, flags: u8) -> Option<Flow> {
        let (set, tag) = self.place(key);
        self.hit(set, tag, key, now, flags)
    }

    #[inline]
    fn hit(&mut self, set: usize, tag: u32, key: &FlowKey, now: u32, flags: u8) -> Option<Flow> {
        let w = self.find(set, tag, key)?;
        let timeouts = self.timeouts;
        let way = &mut self.ways[w];
        if way.flow.expires <= now {
            return None;
        }
        way.flow.used = now;
        way.flow.tcp = tcp_state(way.flow.tcp, flags);
        way.flow.expires = now.saturating_add(timeout(&timeouts, key.proto, way.flow.tcp));
        Some(way.flow)
    }

    /// [`FlowTable::lookup`] of a burst of keys, each with its TCP flags:
    /// the sets' tag lines are prefetched first, then the matching
    /// entries, then each is looked at, so the memory latencies of a
    /// burst overlap.
    pub fn lookup_burst(&mut self, keys: &[(FlowKey, u8)], now: u32, out: &mut Vec<Option<Flow>>) {
        out.clear();
        let mut places = [(0usize, 0u32); 64];
        for chunk in keys.chunks(places.len()) {
            for (p, (k, _)) in places.iter_mut().zip(chunk) {
                *p = self.place(k);
                edgefwd_prefetch::prefetch(&self.tags[p.0]);
            }
            for &(set, tag) in &places[..chunk.len()] {
                let tags = &self.tags[set].0;
                if let Some(i) = tags.iter().position(|&t| t == tag) {
                    edgefwd_prefetch::prefetch(&self.ways[set * WAYS + i]);
                }
            }
            for (&(set, tag), (k, flags)) in places.iter().zip(chunk) {
                out.push(self.hit(set, tag, k, now, *flags));
            }
        }
    }

    /// The live flow of `key` at `now`, without refreshing it.
    pub fn peek(&self, key: &FlowKey, now: u32) -> Option<Flow> {
        let (set, tag) = self.place(key);
        let w = self.find(set, tag, key)?;
        Some(self.ways[w].flow).filter(|f| f.expires > now)
    }

    /// Records an entry of `key` that lives `seconds` from `now` (an
    /// affinity: not a flow, refreshed only by another call).
    pub fn insert_for(&mut self, key: FlowKey, flow: Flow, now: u32, seconds: u32) -> Room {
        let room = self.insert(key, flow, now, 0);
        let (set, tag) = self.place(&key);
        if let Some(w) = self.find(set, tag, &key) {
            self.ways[w].flow.expires = now.saturating_add(seconds).max(1);
        }
        room
    }

    /// Records a new flow of `key` to `backend` at `now`, with the first
    /// packet's TCP `flags`.
    pub fn insert(&mut self, key: FlowKey, mut flow: Flow, now: u32, flags: u8) -> Room {
        let (set, tag) = self.place(&key);
        // The same key (a stale entry being replaced), a free or expired
        // way, else the least recently used.
        let base = set * WAYS;
        let (w, room) = match self.find(set, tag, &key).or_else(|| {
            (base..base + WAYS)
                .find(|&w| self.tags[set].0[w - base] == 0 || self.ways[w].flow.expires <= now)
        }) {
            Some(w) => (w, Room::Free),
            None => {
                let lru = (base..base + WAYS)
                    .min_by_key(|&w| self.ways[w].flow.used)
                    .unwrap_or(base);
                self.evicted += 1;
                (lru, Room::Evicted)
            }
        };
        flow.tcp = tcp_state(0, flags);
        flow.used = now;
        flow.expires = now
            .saturating_add(timeout(&self.timeouts, key.proto, flow.tcp))
            .max(1);
        self.ways[w] = Way { key, flow };
        self.tags[set].0[w - base] = tag;
        room
    }

    /// Forgets the flow of `key` (its backend is gone).
    pub fn remove(&mut self, key: &FlowKey) {
        let (set, tag) = self.place(key);
        if let Some(w) = self.find(set, tag, key) {
            self.ways[w].flow.expires = 0;
            self.tags[set].0[w - set * WAYS] = 0;
        }
    }

    /// Calls `f` with every live entry among `count` ways from way `from`;
    /// the way to go on from, or `None` at the table's end. A listing walks
    /// the table a slice at a time, so no call holds its owner long.
    pub fn scan(
        &self,
        from: usize,
        count: usize,
        now: u32,
        mut f: impl FnMut(&FlowKey, &Flow),
    ) -> Option<usize> {
        let end = from.saturating_add(count).min(self.ways.len());
        for w in self.ways.get(from..end).unwrap_or_default() {
            if w.flow.expires > now {
                f(&w.key, &w.flow);
            }
        }
        (end < self.ways.len()).then_some(end)
    }

    /// Seconds a flow has left at `now`.
    pub fn expires_in(flow: &Flow, now: u32) -> u32 {
        flow.expires.saturating_sub(now)
    }

    /// Live flows at `now` (a walk over the whole table: for counters now
    /// and then, not per packet).
    pub fn live(&self, now: u32) -> usize {
        self.ways.iter().filter(|w| w.flow.expires > now).count()
    }
}

fn tcp_state(state: u8, flags: u8) -> u8 {
    // A SYN alone on a closed connection opens a new one on its tuple.
    let reopened = flags & (SYN | ACK) == SYN && state & CLOSING != 0;
    let mut s = if reopened { 0 } else { state };
    if flags & SYN != 0 {
        s |= if s & SYN_SEEN != 0 {
            SYN_ACKED
        } else {
            SYN_SEEN
        };
    }
    if flags & (FIN | RST) != 0 {
        s |= CLOSING;
    }
    s
}

fn timeout(t: &Timeouts, proto: u8, tcp: u8) -> u32 {
    if proto != 6 {
        t.other
    } else if tcp & (SYN_SEEN | SYN_ACKED) == SYN_SEEN | SYN_ACKED && tcp & CLOSING == 0 {
        t.tcp_established
    } else {
        t.tcp_transitory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> FlowKey {
        FlowKey::new(
            17,
            (
                IpAddr::from([10, 0, (i >> 8) as u8, i as u8]),
                1000 + (i % 50000) as u16,
            ),
            (IpAddr::from([10, 0, 2, 100]), 53),
        )
    }

    fn flow(backend: u32) -> Flow {
        Flow::to(0, IpAddr::from(backend.to_be_bytes()), 0)
    }

    fn backend(f: Flow) -> u32 {
        match f.address() {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(_) => unreachable!("the tests' backends are IPv4"),
        }
    }

    #[test]
    fn a_flow_keeps_its_backend_until_it_expires() {
        let mut t = FlowTable::with_capacity(1024, Timeouts::default());
        assert_eq!(t.insert(key(1), flow(7), 100, 0), Room::Free);
        assert_eq!(t.lookup(&key(1), 200, 0).map(backend), Some(7));
        // Refreshed at 200: lives to 500.
        assert!(t.lookup(&key(1), 499, 0).is_some());
        assert!(t.lookup(&key(2), 499, 0).is_none());
        assert!(
            t.lookup(&key(1), 799, 0).is_none(),
            "5 min after its last packet"
        );
    }

    #[test]
    fn tcp_is_established_by_both_syns_and_closed_by_fin() {
        let mut t = FlowTable::with_capacity(64, Timeouts::default());
        let mut k = key(1);
        k.proto = 6;
        t.insert(k, flow(1), 0, SYN);
        assert!(t.lookup(&k, 239, 0x10).is_some());
        // SYN-ACK seen: established, two hours.
        t.lookup(&k, 239, SYN | 0x10);
        assert!(t.lookup(&k, 3000, 0x10).is_some());
        t.lookup(&k, 3000, FIN);
        assert!(t.lookup(&k, 3239, 0).is_some());
        assert!(t.lookup(&k, 3479 + 240, 0).is_none());
    }

    #[test]
    fn a_syn_on_a_closed_connection_opens_a_new_one() {
        let mut t = FlowTable::with_capacity(64, Timeouts::default());
        let mut k = key(1);
        k.proto = 6;
        t.insert(k, flow(1), 0, SYN);
        t.lookup(&k, 1, SYN | ACK);
        assert!(t.lookup(&k, 2, FIN | ACK).unwrap().closing());
        assert!(!t.lookup(&k, 3, SYN).unwrap().closing(), "reopened");
        t.lookup(&k, 4, SYN | ACK);
        assert!(
            t.lookup(&k, 3000, ACK).is_some(),
            "established again: two hours"
        );
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_used_and_counts_it() {
        // One set.
        let mut t = FlowTable::with_capacity(WAYS, Timeouts::default());
        for i in 0..WAYS as u32 {
            assert_eq!(t.insert(key(i), flow(i), i, 0), Room::Free);
        }
        // Key 0 used again: key 1 is now the least recently used.
        t.lookup(&key(0), 50, 0);
        assert_eq!(t.insert(key(100), flow(100), 60, 0), Room::Evicted);
        assert_eq!(t.evicted(), 1);
        assert!(t.lookup(&key(1), 61, 0).is_none());
        assert!(t.lookup(&key(0), 61, 0).is_some());
        assert!(t.lookup(&key(100), 61, 0).is_some());
        // Expired flows make room without an eviction.
        assert_eq!(t.insert(key(200), flow(1), 10_000, 0), Room::Free);
        assert_eq!(t.evicted(), 1);
    }

    #[test]
    fn a_burst_answers_as_one_by_one_would() {
        let mut a = FlowTable::with_capacity(4096, Timeouts::default());
        let mut b = FlowTable::with_capacity(4096, Timeouts::default());
        for i in (0..3000).step_by(2) {
            a.insert(key(i), flow(i), 1, 0);
            b.insert(key(i), flow(i), 1, 0);
        }
        let keys: Vec<(FlowKey, u8)> = (0..300).map(|i| (key(i * 7 % 3000), 0)).collect();
        let mut burst = Vec::new();
        a.lookup_burst(&keys, 5, &mut burst);
        let one: Vec<_> = keys.iter().map(|(k, f)| b.lookup(k, 5, *f)).collect();
        assert_eq!(burst, one);
        assert!(burst.iter().filter(|f| f.is_some()).count() > 100);
    }

    #[test]
    fn against_a_naive_model_with_room_to_spare() {
        // A table never full behaves as a map with expiry.
        let mut t = FlowTable::with_capacity(1 << 16, Timeouts::default());
        let mut model = std::collections::HashMap::new();
        let mut x = 0x1234_5678u32;
        for now in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let k = key(x % 2000);
            let got = t.lookup(&k, now / 10, 0).map(backend);
            let want = match model.get(&k) {
                Some(&(b, exp)) if exp > now / 10 => Some(b),
                _ => None,
            };
            assert_eq!(got, want, "step {now}");
            match got {
                Some(b) => {
                    model.insert(k, (b, now / 10 + 300));
                }
                None => {
                    t.insert(k, flow(x), now / 10, 0);
                    model.insert(k, (x, now / 10 + 300));
                }
            }
        }
        assert_eq!(t.evicted(), 0);
    }
}
