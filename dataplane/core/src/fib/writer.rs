//! Route changes at full-table size in microseconds, with workers that never
//! wait: incremental updates on two FIB copies (the "left-right" scheme).
//!
//! Rebuilding a full table takes a tenth of a second, and copying one to
//! change it takes milliseconds, so a change must edit a FIB in place. A FIB
//! the workers read cannot be edited, so the writer keeps two: workers read
//! the one last published, the writer edits the other and publishes it,
//! and the copy it replaced is brought up to date at the next change, once
//! the workers have let it go (they do within one burst of being woken, at
//! most a tick). If one still holds it after [`GRACE`], the writer copies
//! it rather than wait longer.
//!
//! The writer also keeps what the copies are compiled from: a binary trie per
//! family (values are group ids + 1) and the next-hop groups by member set.
//! Group ids never change meaning, so both copies agree on them; a group
//! no prefix uses any more stays until the next full build.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::poptrie::{tries, v4_key, v6_key};
use super::trie::Trie;
use super::{grouped, select, Adjacency, Fib, Groups, PoptrieLpm, Route, Selection};
use crate::port::PortId;

/// How long a publish waits for the workers to let go of the copy it is
/// about to edit before copying it instead.
pub const GRACE: Duration = Duration::from_millis(20);

/// Pending prefixes past this many make the next update a rebuild anyway;
/// beyond it they are not recorded one by one.
const PENDING_MAX: usize = 1 << 15;

/// Prefixes changed since a copy was last brought up to date, as trie keys.
#[derive(Default)]
struct Pending {
    v4: Vec<(u128, u32)>,
    v6: Vec<(u128, u32)>,
}

impl Pending {
    fn push(&mut self, v6: bool, key: (u128, u32)) {
        let list = if v6 { &mut self.v6 } else { &mut self.v4 };
        // A /0 stands for "everything": the update rebuilds the family.
        if list.len() >= PENDING_MAX || list.first() == Some(&(0, 0)) {
            list.clear();
            list.push((0, 0));
        } else {
            list.push(key);
        }
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// Applies route changes to the FIB the workers use without making them
/// wait; see the module docs.
pub struct FibWriter {
    t4: Trie,
    t6: Trie,
    groups: Groups,
    copies: [Arc<Fib>; 2],
    /// The copy last published.
    active: usize,
    pending: [Pending; 2],
    /// How many times a copy was still held after [`GRACE`] and was copied.
    copied: u64,
}

impl FibWriter {
    /// Selects among `routes` as [`Fib::build`] does and builds both copies.
    pub fn build(routes: &[Route], is_up: impl Fn(PortId) -> bool) -> (FibWriter, Selection) {
        let selection = select(routes, is_up);
        let (groups, v4, v6) = grouped(routes, &selection);
        let (t4, t6) = tries(&v4, &v6);
        let fib = Fib {
            lpm: PoptrieLpm::from_tries(&t4, &t6).with_headroom(),
            groups: groups.list.clone(),
        };
        let writer = FibWriter {
            t4,
            t6,
            groups,
            copies: [Arc::new(fib.clone()), Arc::new(fib)],
            active: 0,
            pending: Default::default(),
            copied: 0,
        };
        (writer, selection)
    }

    /// The FIB last published.
    pub fn current(&self) -> Arc<Fib> {
        Arc::clone(&self.copies[self.active])
    }

    /// Sets what `prefix` forwards to: `members` (in any order; duplicates
    /// are merged), or nothing when empty. Takes effect at the next
    /// [`FibWriter::publish`].
    pub fn set(&mut self, prefix: IpNet, members: &[Adjacency]) {
        let value = if members.is_empty() {
            0
        } else {
            let mut m = members.to_vec();
            self.groups.id(&mut m) + 1
        };
        let (trie, key, v6) = match prefix.trunc() {
            IpNet::V4(p) => (&mut self.t4, v4_key(&p), false),
            IpNet::V6(p) => (&mut self.t6, v6_key(&p), true),
        };
        if value == 0 {
            trie.remove(key.0, key.1);
        } else {
            trie.insert(key.0, key.1, value);
        }
        for p in &mut self.pending {
            p.push(v6, key);
        }
    }

    /// Brings the copy the workers are not using up to date and returns it
    /// as the FIB to publish. Waits up to [`GRACE`] for the workers to let
    /// go of it (see the module docs).
    pub fn publish(&mut self) -> Arc<Fib> {
        if self.pending.iter().all(Pending::is_empty) {
            return self.current();
        }
        let next = 1 - self.active;
        let started = Instant::now();
        while Arc::strong_count(&self.copies[next]) > 1 && started.elapsed() < GRACE {
            std::thread::yield_now();
        }
        if Arc::strong_count(&self.copies[next]) > 1 {
            self.copied += 1;
            tracing::debug!("FIB copy still in use after {GRACE:?}; copying it");
        }
        let fib = Arc::make_mut(&mut self.copies[next]);
        let known = fib.groups.len();
        fib.groups.extend_from_slice(&self.groups.list[known..]);
        let changed = std::mem::take(&mut self.pending[next]);
        fib.lpm.update(&self.t4, &self.t6, &changed.v4, &changed.v6);
        self.active = next;
        self.current()
    }

    /// How many publishes found the copy still in use after [`GRACE`] and
    /// copied it.
    pub fn copied(&self) -> u64 {
        self.copied
    }

    /// IPv4 and IPv6 prefixes with a route.
    pub fn prefixes(&self) -> (usize, usize) {
        (self.t4.prefixes(), self.t6.prefixes())
    }

    /// Approximate memory of both copies' LPM tables and the tries.
    pub fn memory_bytes(&self) -> usize {
        self.copies.iter().map(|c| c.memory_bytes()).sum::<usize>()
            + self.t4.memory_bytes()
            + self.t6.memory_bytes()
    }

    /// What the tries hold for `a` (group id), as the copies should answer
    /// once published: for tests.
    #[cfg(test)]
    fn expected(&self, a: std::net::IpAddr) -> Option<u32> {
        let (trie, key, bits) = match a {
            std::net::IpAddr::V4(a) => (&self.t4, u128::from(u32::from(a)) << 96, 32),
            std::net::IpAddr::V6(a) => (&self.t6, u128::from(a), 128),
        };
        let mut value = trie.root_value();
        let mut node = Some(0);
        for i in 0..bits {
            let Some(n) = node else { break };
            let (next, v) = trie.descend(n, ((key >> (127 - i)) & 1) as u32, 1, value);
            node = next;
            value = v;
        }
        value.checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn adj(port: PortId, gw: u8) -> Adjacency {
        Adjacency {
            port,
            next_hop: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, gw))),
        }
    }

    fn random_prefix(rng: &mut StdRng) -> IpNet {
        if rng.gen_bool(0.8) {
            // Clustered under few /8s, lengths weighted to /16–/24.
            let a = Ipv4Addr::from(rng.gen::<u32>() & 0x03ff_ffff | 0x0a00_0000);
            let len = match rng.gen_range(0..10) {
                0 => rng.gen_range(0..=15),
                1 => rng.gen_range(25..=32),
                _ => rng.gen_range(16..=24),
            };
            IpNet::new(IpAddr::V4(a), len).unwrap().trunc()
        } else {
            let a = Ipv6Addr::from((0x2001_0db8u128 << 96) | u128::from(rng.gen::<u64>()) << 32);
            IpNet::new(IpAddr::V6(a), rng.gen_range(0..=64))
                .unwrap()
                .trunc()
        }
    }

    fn probe(rng: &mut StdRng, table: &HashMap<IpNet, Vec<Adjacency>>) -> IpAddr {
        let keys: Vec<&IpNet> = table.keys().collect();
        match (keys.is_empty(), rng.gen_bool(0.7)) {
            (false, true) => {
                let p = keys[rng.gen_range(0..keys.len())];
                match p {
                    IpNet::V4(p) => IpAddr::V4(Ipv4Addr::from(
                        u32::from(p.network()) | (rng.gen::<u32>() & !u32::from(p.netmask())),
                    )),
                    IpNet::V6(p) => IpAddr::V6(Ipv6Addr::from(
                        u128::from(p.network()) | (rng.gen::<u128>() & !u128::from(p.netmask())),
                    )),
                }
            }
            _ => IpAddr::V4(Ipv4Addr::from(rng.gen::<u32>() & 0x03ff_ffff | 0x0a00_0000)),
        }
    }

    /// The FIB a fresh build of `table` gives.
    fn fresh(table: &HashMap<IpNet, Vec<Adjacency>>) -> Fib {
        let routes: Vec<Route> = table
            .iter()
            .flat_map(|(p, m)| {
                m.iter().map(|a| Route {
                    prefix: *p,
                    port: a.port,
                    next_hop: a.next_hop,
                    metric: 0,
                })
            })
            .collect();
        Fib::build(&routes, |_| true).0
    }

    fn answer(fib: &Fib, a: IpAddr) -> Option<Vec<Adjacency>> {
        fib.lookup(a).map(|(_, g)| g.members.clone())
    }

    /// Random adds, changes and removals (default routes and whole families
    /// coming and going included), published in batches of random size:
    /// every published copy answers as a fresh build of the same table, and
    /// as the writer's own tries say.
    #[test]
    fn incremental_updates_answer_as_a_fresh_build() {
        for seed in 0..6 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut table: HashMap<IpNet, Vec<Adjacency>> = HashMap::new();
            let (mut w, _) = FibWriter::build(&[], |_| true);
            for _round in 0..60 {
                for _ in 0..rng.gen_range(1..40) {
                    let p = if rng.gen_bool(0.03) {
                        if rng.gen_bool(0.5) {
                            "0.0.0.0/0".parse().unwrap()
                        } else {
                            "::/0".parse().unwrap()
                        }
                    } else if !table.is_empty() && rng.gen_bool(0.4) {
                        *table.keys().nth(rng.gen_range(0..table.len())).unwrap()
                    } else {
                        random_prefix(&mut rng)
                    };
                    if rng.gen_bool(0.3) {
                        table.remove(&p);
                        w.set(p, &[]);
                    } else {
                        let m: Vec<Adjacency> = (0..rng.gen_range(1..=2))
                            .map(|_| adj(rng.gen_range(0..3), rng.gen_range(1..4)))
                            .collect();
                        w.set(p, &m);
                        let mut sorted = m.clone();
                        sorted.sort();
                        sorted.dedup();
                        table.insert(p, sorted);
                    }
                }
                let fib = w.publish();
                let reference = fresh(&table);
                for _ in 0..300 {
                    let a = probe(&mut rng, &table);
                    assert_eq!(answer(&fib, a), answer(&reference, a), "seed {seed}, {a}");
                    assert_eq!(fib.lookup(a).map(|(id, _)| id), w.expected(a), "{a}");
                }
            }
            assert_eq!(w.copied(), 0, "nobody else held a copy");
        }
    }

    /// A published FIB never changes under a reader: one still held through
    /// two more publishes keeps its answers (the writer copied it), and the
    /// writer's own copies move on.
    #[test]
    fn a_held_snapshot_keeps_its_answers() {
        let p: IpNet = "192.0.2.0/24".parse().unwrap();
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let (mut w, _) = FibWriter::build(&[], |_| true);
        w.set(p, &[adj(1, 1)]);
        let held = w.publish();
        w.set(p, &[adj(2, 2)]);
        let second = w.publish();
        drop(second);
        let started = Instant::now();
        w.set(p, &[adj(3, 3)]);
        let third = w.publish();
        assert!(started.elapsed() >= GRACE, "waited for the reader first");
        assert_eq!(w.copied(), 1);
        assert_eq!(answer(&held, a), Some(vec![adj(1, 1)]));
        assert_eq!(answer(&third, a), Some(vec![adj(3, 3)]));
        drop(held);
        w.set(p, &[]);
        drop(third);
        let last = w.publish();
        assert_eq!(answer(&last, a), None);
        assert_eq!(w.copied(), 1, "a copy let go of is edited in place");
    }

    /// Full-table-like churn: many /24s under a few /16s, changed one at a
    /// time, compacts (rebuilds) now and then and stays right.
    #[test]
    fn garbage_is_compacted_and_answers_stay_right() {
        let mut rng = StdRng::seed_from_u64(7);
        let routes: Vec<Route> = (0..20_000u32)
            .map(|i| Route {
                prefix: IpNet::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i << 8))), 24).unwrap(),
                port: (i % 3) as PortId,
                next_hop: None,
                metric: 0,
            })
            .collect();
        let (mut w, _) = FibWriter::build(&routes, |_| true);
        let start = w.memory_bytes();
        let mut table: HashMap<IpNet, Vec<Adjacency>> = routes
            .iter()
            .map(|r| {
                let m = vec![Adjacency {
                    port: r.port,
                    next_hop: None,
                }];
                (r.prefix, m)
            })
            .collect();
        let mut peak = 0;
        for _ in 0..20_000 {
            let r = &routes[rng.gen_range(0..routes.len())];
            let m = vec![adj(rng.gen_range(0..3), 9)];
            w.set(r.prefix, &m);
            table.insert(r.prefix, m);
            w.publish();
            peak = peak.max(w.memory_bytes());
        }
        assert!(peak < start * 2, "garbage bounded: {start} → {peak} bytes");
        let fib = w.current();
        let reference = fresh(&table);
        for _ in 0..20_000 {
            let a = probe(&mut rng, &table);
            assert_eq!(answer(&fib, a), answer(&reference, a), "{a}");
        }
    }
}
