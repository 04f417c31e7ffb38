//! Mappings and sessions of one NAT instance.
//!
//! A *mapping* is an inside endpoint (protocol, address, port or echo id)
//! and the external port it got: endpoint-independent (RFC 4787 REQ-1, RFC
//! 5382 REQ-1), so every destination sees the same external port. A
//! *session* is a mapping plus one remote endpoint; sessions carry the
//! timers and the TCP state, and a mapping lives as long as it has one.
//!
//! Lookups are O(1): inside endpoints in a hash map, external ports in one
//! flat array per protocol (65,536 slots), so an inbound packet finds its
//! mapping with one load and no port is ever shared by two inside endpoints
//! (no port overloading, RFC 4787 REQ-3). Sessions hang in short chains off
//! one hash entry per mapping and remote address: the exact session and
//! the address-dependent filter ("has this endpoint sent to that address?")
//! are answered by the same lookup, and a session costs 20 bytes of slab
//! plus its share of two hash maps (under 128 bytes in all, measured by a
//! test and the `nat` bench). Timers are whole seconds. Expiry is lazy
//! (an expired session counts as absent) plus a sweep that frees a bounded
//! slice of the session slab every 10 ms, so no tick costs more than a
//! few microseconds however many sessions there are.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use foldhash::fast::RandomState;

use super::claims::PortClaims;
use super::heads::Heads;
use super::{Filtering, Flow, NatConfig, Proto, SessionView};
use crate::stats::DropReason;
use crate::time::Time;
use edgefwd_prefetch::prefetch;

const NONE: u32 = u32::MAX;
/// Session slots a sweep looks at, at most every [`SWEEP_EVERY`]: 100,000
/// a second, a whole 1,000,000-session table in 10 s.
const SWEEP: usize = 1024;
/// How often the sweep runs (the router ticks on every burst).
const SWEEP_EVERY: Duration = Duration::from_millis(10);

/// TCP flags the session state follows.
pub(crate) mod tcp {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
}

/// TCP state bits of a session.
mod seen {
    pub const SYN_OUT: u8 = 1;
    pub const SYN_IN: u8 = 2;
    pub const FIN_OUT: u8 = 4;
    pub const FIN_IN: u8 = 8;
    pub const RST: u8 = 16;
}

struct Mapping {
    proto: Proto,
    addr: Ipv4Addr,
    port: u16,
    ext: u16,
    sessions: u32,
}

/// A session slot; free when `mapping` is `NONE`.
#[derive(Clone, Copy)]
struct Session {
    mapping: u32,
    remote: Ipv4Addr,
    /// Next session of the same mapping and remote address.
    next: u32,
    /// Expiry, in whole seconds of the injected clock.
    expires: u32,
    rport: u16,
    tcp: u8,
}

impl Session {
    fn live(&self, now: Time) -> bool {
        self.mapping != NONE && u64::from(self.expires) * 1_000_000_000 > now.0
    }
}

/// `now + d` in whole seconds, rounded up (a session lives at least its
/// timeout).
fn expiry(now: Time, d: Duration) -> u32 {
    let ns = now.after(d).0;
    u32::try_from(ns.div_ceil(1_000_000_000)).unwrap_or(u32::MAX)
}

/// Which way a packet crosses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Out,
    In,
}

/// The mappings and sessions of one NAT instance.
pub struct Table {
    cfg: NatConfig,
    mappings: Vec<Mapping>,
    free_mappings: Vec<u32>,
    by_inside: HashMap<(Proto, Ipv4Addr, u16), u32, RandomState>,
    /// Mapping index + 1 by external port, per protocol (0: free, so the
    /// arrays start as zeroed pages the kernel hands out only when touched).
    by_ext: [Box<[u32]>; 3],
    /// Ports in use per protocol, in [1, 1023] and in the configured range.
    used: [[u32; 2]; 3],
    sessions: Vec<Session>,
    free_sessions: Vec<u32>,
    /// Per mapping and remote address: the first session of its chain.
    heads: Heads,
    per_host: HashMap<Ipv4Addr, u32, RandomState>,
    /// [`Table::outbound_burst`]'s scratch: each flow's mapping and the
    /// home slot of its chain's head in `heads`, then the head itself.
    found: Vec<(u32, u32)>,
    live: usize,
    /// Live sessions by protocol.
    live_by_proto: [u64; 3],
    sweep_at: usize,
    last_sweep: Time,
    /// Which worker holds each external port (shared by the instance's
    /// tables, one per worker), and this table's worker.
    claims: Arc<PortClaims>,
    worker: usize,
}

impl Table {
    /// An empty table, the instance's only one.
    pub fn new(cfg: NatConfig) -> Self {
        let claims = Arc::new(PortClaims::new(cfg.policy.port_secret));
        Table::of_worker(cfg, claims, 0)
    }

    /// An empty table for `worker`, one of several sharing `claims`.
    pub fn of_worker(cfg: NatConfig, claims: Arc<PortClaims>, worker: usize) -> Self {
        let prealloc = cfg.policy.max_sessions.min(1 << 16);
        let ports = || vec![0; 1 << 16].into_boxed_slice();
        Table {
            mappings: Vec::new(),
            free_mappings: Vec::new(),
            by_inside: HashMap::with_capacity_and_hasher(prealloc, RandomState::default()),
            by_ext: [ports(), ports(), ports()],
            used: [[0; 2]; 3],
            sessions: Vec::with_capacity(prealloc),
            free_sessions: Vec::new(),
            heads: Heads::with_capacity(prealloc),
            per_host: HashMap::default(),
            found: Vec::with_capacity(256),
            live: 0,
            live_by_proto: [0; 3],
            sweep_at: 0,
            last_sweep: Time(0),
            claims,
            worker,
            cfg,
        }
    }

    /// The port claims this table shares with the instance's others.
    pub fn claims(&self) -> &Arc<PortClaims> {
        &self.claims
    }

    /// The instance's settings.
    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }

    /// Sessions in the table (expired ones not yet swept included).
    pub fn sessions(&self) -> usize {
        self.live
    }

    /// The table's gauges at `now`.
    pub fn census(&self, now: Time) -> crate::census::NatCensus {
        let range = &self.cfg.policy.ports;
        let tcp_udp = 1023 + u64::from(range.end() - range.start()) + 1;
        crate::census::NatCensus {
            outside: self.cfg.outside,
            external: self.cfg.external,
            sessions: self.live_by_proto,
            ports_used: self.used.map(|[a, b]| u64::from(a) + u64::from(b)),
            ports_available: [tcp_udp, tcp_udp, 1 << 16],
            tcp_states: self.tcp_states(now),
        }
    }

    /// Mappings in the table.
    pub fn mappings(&self) -> usize {
        self.by_inside.len()
    }

    /// Heap bytes of the table per session slot, as allocated now (the
    /// external-port arrays, fixed at 768 KiB, not included).
    pub fn bytes_per_session(&self) -> usize {
        fn map<K, V, S>(m: &HashMap<K, V, S>) -> usize {
            // hashbrown: one control byte per bucket, buckets = capacity * 8 / 7.
            m.capacity() * 8 / 7 * (std::mem::size_of::<(K, V)>() + 1)
        }
        let total = self.sessions.capacity() * std::mem::size_of::<Session>()
            + self.mappings.capacity() * std::mem::size_of::<Mapping>()
            + self.heads.bytes()
            + map(&self.by_inside)
            + map(&self.per_host);
        total / self.live.max(1)
    }

    fn timeout(&self, proto: Proto, tcp_state: u8) -> Duration {
        match proto {
            Proto::Udp => self.cfg.policy.udp_timeout,
            Proto::Icmp => self.cfg.policy.icmp_timeout,
            Proto::Tcp => {
                let both_syn = seen::SYN_OUT | seen::SYN_IN;
                let closing = seen::FIN_OUT | seen::FIN_IN | seen::RST;
                if tcp_state & both_syn == both_syn && tcp_state & closing == 0 {
                    self.cfg.policy.tcp_established
                } else {
                    self.cfg.policy.tcp_transitory
                }
            }
        }
    }

    /// The external port of an outbound packet's mapping, made (with its
    /// session) if need be; `flags` are its TCP flags (0 for UDP, ICMP).
    pub fn outbound(
        &mut self,
        proto: Proto,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        flags: u8,
        now: Time,
    ) -> Result<u16, DropReason> {
        let m = match self.by_inside.get(&(proto, src.0, src.1)) {
            Some(&m) => m,
            None => self.new_mapping(proto, src)?,
        };
        let ext = self.mappings[m as usize].ext;
        let dport = if proto == Proto::Icmp { 0 } else { dst.1 };
        let s = match self.find_session(m, dst.0, dport, now) {
            Some(s) => s,
            None => match self.new_session(m, dst.0, dport, now) {
                Ok(s) => s,
                Err(e) => {
                    self.drop_mapping_if_unused(m);
                    return Err(e);
                }
            },
        };
        self.touch(s, proto, Dir::Out, flags, now);
        Ok(ext)
    }

    /// [`Table::outbound`] for a burst of flows, answers in order into
    /// `out`. The same answers, with the memory of a large table touched
    /// flow-parallel: every flow's mapping is found and the slot of its
    /// chain's head prefetched, then every head is read and its first
    /// session prefetched, so each pass's misses are in flight together;
    /// only then come the in-order updates, which find their lines in
    /// cache. Anything unusual (a new flow, an expired session, a longer
    /// chain, a slot reused within the burst) takes the one-by-one path.
    pub fn outbound_burst(
        &mut self,
        flows: &[Flow],
        now: Time,
        out: &mut Vec<Result<u16, DropReason>>,
    ) {
        self.found.clear();
        // Each flow's mapping (a table of endpoints, mostly in cache), and
        // the start of its chain's slot and the mapping coming in.
        for f in flows {
            let m = self
                .by_inside
                .get(&(f.proto, f.src.0, f.src.1))
                .copied()
                .unwrap_or(NONE);
            let home = if m == NONE {
                0
            } else {
                if let Some(map) = self.mappings.get(m as usize) {
                    prefetch(map);
                }
                let home = self.heads.home(m, f.dst.0);
                self.heads.prefetch(home);
                home
            };
            self.found.push((m, home as u32));
        }
        // Each chain's first session, with its line coming in.
        for (f, found) in flows.iter().zip(self.found.iter_mut()) {
            if found.0 != NONE {
                let head = self
                    .heads
                    .get_from(found.1 as usize, found.0, f.dst.0)
                    .unwrap_or(NONE);
                if let Some(sess) = self.sessions.get(head as usize) {
                    prefetch(sess);
                }
                found.1 = head;
            } else {
                found.1 = NONE;
            }
        }
        out.clear();
        for (i, f) in flows.iter().enumerate() {
            let (m, head) = self.found[i];
            let answer = match self.fast_outbound(f, m, head, now) {
                Some(ext) => Ok(ext),
                None => self.outbound(f.proto, f.src, f.dst, f.flags, now),
            };
            out.push(answer);
        }
    }

    /// The established-flow case of [`Table::outbound`] from the burst's
    /// lookups, re-checked (an earlier flow of the burst may have changed
    /// the table); `None` sends the flow the one-by-one way.
    fn fast_outbound(&mut self, f: &Flow, m: u32, head: u32, now: Time) -> Option<u16> {
        let map = self.mappings.get(m as usize)?;
        if map.proto != f.proto || map.addr != f.src.0 || map.port != f.src.1 || map.sessions == 0 {
            return None;
        }
        let ext = map.ext;
        let sess = self.sessions.get(head as usize)?;
        let rport = if f.proto == Proto::Icmp { 0 } else { f.dst.1 };
        if sess.mapping != m || sess.remote != f.dst.0 || sess.rport != rport || !sess.live(now) {
            return None;
        }
        self.touch(head, f.proto, Dir::Out, f.flags, now);
        Some(ext)
    }

    /// The inside endpoint of an inbound packet to external port `ext`,
    /// when its mapping exists and filtering lets `src` in.
    pub fn inbound(
        &mut self,
        proto: Proto,
        ext: u16,
        src: (Ipv4Addr, u16),
        flags: u8,
        now: Time,
    ) -> Result<(Ipv4Addr, u16), DropReason> {
        let Some(m) = self.ext_mapping(proto, ext) else {
            return Err(DropReason::NatNoSession);
        };
        let sport = if proto == Proto::Icmp { 0 } else { src.1 };
        let s = match self.find_session(m, src.0, sport, now) {
            Some(s) => s,
            // Expired just now, and the mapping with it.
            None if self.ext_mapping(proto, ext) != Some(m) => {
                return Err(DropReason::NatNoSession)
            }
            None => {
                let known = self.any_live(m, src.0, now);
                let allowed = match self.cfg.policy.filtering {
                    Filtering::EndpointIndependent => proto != Proto::Icmp || known,
                    Filtering::AddressDependent => known,
                };
                if !allowed {
                    return Err(DropReason::NatFiltered);
                }
                self.new_session(m, src.0, sport, now)?
            }
        };
        self.touch(s, proto, Dir::In, flags, now);
        let map = &self.mappings[m as usize];
        Ok((map.addr, map.port))
    }

    /// For an ICMP error coming in about a packet that left from external
    /// port `ext` to `remote`: the inside endpoint, when that session
    /// exists. Changes nothing (no ICMP message ends or refreshes a
    /// mapping, RFC 5508 REQ-9).
    pub(crate) fn peek_inbound(
        &self,
        proto: Proto,
        ext: u16,
        remote: Ipv4Addr,
        now: Time,
    ) -> Option<(Ipv4Addr, u16)> {
        let m = self.ext_mapping(proto, ext)?;
        let map = &self.mappings[m as usize];
        self.any_live(m, remote, now)
            .then_some((map.addr, map.port))
    }

    /// For an ICMP error going out about a packet that came in to inside
    /// endpoint `inside` from `remote`: the external port, when that
    /// session exists. Changes nothing.
    pub(crate) fn peek_outbound(
        &self,
        proto: Proto,
        inside: (Ipv4Addr, u16),
        remote: Ipv4Addr,
        now: Time,
    ) -> Option<u16> {
        let &m = self.by_inside.get(&(proto, inside.0, inside.1))?;
        self.any_live(m, remote, now)
            .then_some(self.mappings[m as usize].ext)
    }

    /// The sessions of mapping `m` with `remote`.
    fn chain(&self, m: u32, remote: Ipv4Addr) -> impl Iterator<Item = u32> + '_ {
        let mut at = self.heads.get(m, remote).unwrap_or(NONE);
        std::iter::from_fn(move || {
            let s = at;
            (s != NONE).then(|| {
                at = self.sessions[s as usize].next;
                s
            })
        })
    }

    /// True when mapping `m` has a live session with `remote`.
    fn any_live(&self, m: u32, remote: Ipv4Addr, now: Time) -> bool {
        self.chain(m, remote)
            .any(|s| self.sessions[s as usize].live(now))
    }

    /// The live session of `m` with (`remote`, `rport`); an expired one
    /// found on the way is freed.
    fn find_session(&mut self, m: u32, remote: Ipv4Addr, rport: u16, now: Time) -> Option<u32> {
        let s = self
            .chain(m, remote)
            .find(|&s| self.sessions[s as usize].rport == rport)?;
        if self.sessions[s as usize].live(now) {
            return Some(s);
        }
        self.remove_session(s);
        None
    }

    fn touch(&mut self, s: u32, proto: Proto, dir: Dir, flags: u8, now: Time) {
        let sess = &mut self.sessions[s as usize];
        if proto == Proto::Tcp {
            let (syn, fin) = match dir {
                Dir::Out => (seen::SYN_OUT, seen::FIN_OUT),
                Dir::In => (seen::SYN_IN, seen::FIN_IN),
            };
            if flags & tcp::SYN != 0 {
                // A new SYN after a reset or close starts the connection over.
                if sess.tcp & (seen::RST | seen::FIN_OUT | seen::FIN_IN) != 0 {
                    sess.tcp = 0;
                }
                sess.tcp |= syn;
            }
            if flags & tcp::FIN != 0 {
                sess.tcp |= fin;
            }
            if flags & tcp::RST != 0 {
                sess.tcp |= seen::RST;
            }
        } else if dir == Dir::In {
            // UDP and ICMP: only outbound traffic refreshes (RFC 4787
            // REQ-6), so nobody outside can keep a mapping alive alone.
            return;
        }
        let state = sess.tcp;
        let timeout = self.timeout(proto, state);
        self.sessions[s as usize].expires = expiry(now, timeout);
    }

    fn new_mapping(&mut self, proto: Proto, src: (Ipv4Addr, u16)) -> Result<u32, DropReason> {
        let ext = self
            .allocate(proto, src)
            .ok_or(DropReason::NatPortsExhausted)?;
        let map = Mapping {
            proto,
            addr: src.0,
            port: src.1,
            ext,
            sessions: 0,
        };
        let m = match self.free_mappings.pop() {
            Some(m) => {
                self.mappings[m as usize] = map;
                m
            }
            None => {
                self.mappings.push(map);
                (self.mappings.len() - 1) as u32
            }
        };
        self.by_inside.insert((proto, src.0, src.1), m);
        self.by_ext[proto.index()][usize::from(ext)] = m + 1;
        if let Some(c) = self.class(proto, ext) {
            self.used[proto.index()][c] += 1;
        }
        Ok(m)
    }

    fn new_session(
        &mut self,
        m: u32,
        remote: Ipv4Addr,
        rport: u16,
        now: Time,
    ) -> Result<u32, DropReason> {
        let host = self.mappings[m as usize].addr;
        if self.per_host.get(&host).copied().unwrap_or(0) as usize
            >= self.cfg.policy.max_sessions_per_host
        {
            return Err(DropReason::NatHostLimit);
        }
        if self.live >= self.cfg.policy.max_sessions {
            self.sweep(now, self.sessions.len());
            if self.live >= self.cfg.policy.max_sessions {
                return Err(DropReason::NatSessionLimit);
            }
        }
        let s = self
            .free_sessions
            .pop()
            .unwrap_or(self.sessions.len() as u32);
        let sess = Session {
            mapping: m,
            remote,
            next: self.heads.get(m, remote).unwrap_or(NONE),
            expires: expiry(now, Duration::ZERO),
            rport,
            tcp: 0,
        };
        self.heads.set(m, remote, s);
        if s as usize == self.sessions.len() {
            self.sessions.push(sess);
        } else {
            self.sessions[s as usize] = sess;
        }
        *self.per_host.entry(host).or_insert(0) += 1;
        self.mappings[m as usize].sessions += 1;
        self.live += 1;
        self.live_by_proto[self.mappings[m as usize].proto.index()] += 1;
        Ok(s)
    }

    fn remove_session(&mut self, s: u32) {
        let sess = self.sessions[s as usize];
        if sess.mapping == NONE {
            return;
        }
        self.sessions[s as usize].mapping = NONE;
        self.free_sessions.push(s);
        self.live -= 1;
        self.live_by_proto[self.mappings[sess.mapping as usize].proto.index()] -= 1;
        // Unlink it from its chain.
        let key = (sess.mapping, sess.remote);
        if self.heads.get(key.0, key.1) == Some(s) {
            if sess.next == NONE {
                self.heads.remove(key.0, key.1);
            } else {
                self.heads.set(key.0, key.1, sess.next);
            }
        } else {
            let prev = self
                .chain(key.0, key.1)
                .find(|&p| self.sessions[p as usize].next == s);
            if let Some(prev) = prev {
                self.sessions[prev as usize].next = sess.next;
            }
        }
        let m = sess.mapping;
        let host = self.mappings[m as usize].addr;
        if let Some(n) = self.per_host.get_mut(&host) {
            *n -= 1;
            if *n == 0 {
                self.per_host.remove(&host);
            }
        }
        self.mappings[m as usize].sessions -= 1;
        self.drop_mapping_if_unused(m);
    }

    fn drop_mapping_if_unused(&mut self, m: u32) {
        let map = &self.mappings[m as usize];
        if map.sessions > 0 {
            return;
        }
        let (proto, ext) = (map.proto, map.ext);
        self.by_inside.remove(&(proto, map.addr, map.port));
        self.by_ext[proto.index()][usize::from(ext)] = 0;
        self.claims.release(proto, ext);
        if let Some(c) = self.class(proto, ext) {
            self.used[proto.index()][c] -= 1;
        }
        self.free_mappings.push(m);
    }

    /// Frees expired sessions among the next `n` slots.
    pub(crate) fn sweep(&mut self, now: Time, n: usize) {
        let len = self.sessions.len();
        if len == 0 {
            return;
        }
        for _ in 0..n.min(len) {
            self.sweep_at = (self.sweep_at + 1) % len;
            let sess = &self.sessions[self.sweep_at];
            let expired = sess.mapping != NONE && !sess.live(now);
            if expired {
                self.remove_session(self.sweep_at as u32);
            }
        }
    }

    /// One tick's share of the sweep.
    pub(crate) fn tick(&mut self, now: Time) {
        if now.since(self.last_sweep) >= SWEEP_EVERY {
            self.last_sweep = now;
            self.sweep(now, SWEEP);
        }
    }

    /// The port range `port` falls in for allocation: 0 for 1..=1023, 1
    /// for the configured range, `None` otherwise (ICMP ids: all one range).
    fn class(&self, proto: Proto, port: u16) -> Option<usize> {
        if proto == Proto::Icmp {
            return Some(1);
        }
        if (1..1024).contains(&port) {
            Some(0)
        } else if self.cfg.policy.ports.contains(&port) {
            Some(1)
        } else {
            None
        }
    }

    /// An external port for a new mapping of `src`: its own port when free
    /// (port preservation), else one chosen as RFC 6056 algorithm 3 does, in
    /// the same range (RFC 4787 REQ-3: 0-1023 stay there).
    fn allocate(&mut self, proto: Proto, src: (Ipv4Addr, u16)) -> Option<u16> {
        let (lo, hi) = match proto {
            Proto::Icmp => (0u16, u16::MAX),
            _ if src.1 < 1024 => (1, 1023),
            _ => (*self.cfg.policy.ports.start(), *self.cfg.policy.ports.end()),
        };
        let (claims, me) = (&self.claims, self.worker);
        let preservable = proto == Proto::Icmp || (src.1 != 0 && (lo..=hi).contains(&src.1));
        if preservable && claims.claim(proto, src.1, me) {
            return Some(src.1);
        }
        let n = u32::from(hi - lo) + 1;
        if claims.used(proto, lo) >= n {
            return None;
        }
        let offset = claims.offset(proto, src) % n;
        let next = claims.counter();
        for i in 0..n {
            let port = lo + ((offset.wrapping_add(next).wrapping_add(i)) % n) as u16;
            if claims.is_free(proto, port) && claims.claim(proto, port, me) {
                claims.advance(i + 1);
                return Some(port);
            }
        }
        None
    }

    /// The mapping holding external port `ext`.
    fn ext_mapping(&self, proto: Proto, ext: u16) -> Option<u32> {
        self.by_ext[proto.index()][usize::from(ext)].checked_sub(1)
    }

    /// Every live session.
    pub(crate) fn view(&self, external: Ipv4Addr, now: Time) -> Vec<SessionView> {
        self.sessions
            .iter()
            .filter(|s| s.live(now))
            .map(|s| {
                let m = &self.mappings[s.mapping as usize];
                SessionView {
                    proto: m.proto,
                    inside: (m.addr, m.port),
                    external: (external, m.ext),
                    remote: (s.remote, s.rport),
                    state: state_name(m.proto, s.tcp),
                    expires_in: Time(u64::from(s.expires) * 1_000_000_000).since(now),
                }
            })
            .collect()
    }
}

/// The TCP states a census counts, in order.
pub const TCP_STATES: [&str; 5] = ["syn", "established", "fin_wait", "closing", "reset"];

impl Table {
    /// Live TCP sessions by state ([`TCP_STATES`] order): a walk over the
    /// session slab, for a census now and then, not per packet.
    pub fn tcp_states(&self, now: Time) -> [u64; 5] {
        let mut by = [0u64; 5];
        for s in self.sessions.iter().filter(|s| s.live(now)) {
            let proto = self.mappings[s.mapping as usize].proto;
            if proto == Proto::Tcp {
                let name = state_name(proto, s.tcp);
                if let Some(i) = TCP_STATES.iter().position(|&n| n == name) {
                    by[i] += 1;
                }
            }
        }
        by
    }
}

fn state_name(proto: Proto, tcp: u8) -> &'static str {
    if proto != Proto::Tcp {
        return "active";
    }
    let both_syn = seen::SYN_OUT | seen::SYN_IN;
    if tcp & seen::RST != 0 {
        "reset"
    } else if tcp & (seen::FIN_OUT | seen::FIN_IN) == seen::FIN_OUT | seen::FIN_IN {
        "closing"
    } else if tcp & (seen::FIN_OUT | seen::FIN_IN) != 0 {
        "fin_wait"
    } else if tcp & both_syn == both_syn {
        "established"
    } else {
        "syn"
    }
}
