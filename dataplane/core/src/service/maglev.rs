//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted.
//!
//! Each backend has a preference list, a permutation of the table's slots
//! derived from two hashes of its identity (`offset`, `skip`; the table
//! size is prime, so every skip visits every slot). Backends take turns
//! claiming their next preferred free slot until the table is full. A flow
//! goes to `table[hash % size]`. Adding or removing a backend moves few
//! slots of the others, and the preferences depend only on a backend's
//! identity, so every worker and every restart builds the same table.
//!
//! Weights: backend `i` is entitled to `size × w_i / Σw` slots (the
//! remainders go one each to the largest remainders, ties to the lowest
//! index); backends that hold their share sit out the turns. So every
//! backend's share of the table is exact to one slot, which the paper's
//! unweighted turn-taking also gives, and weighting keeps its minimal
//! disruption: each backend still fills from its own preference list.
//!
//! The fill is the paper's, found faster: walks test a bitset of taken
//! slots rather than the table, and the last few free slots are found
//! from a list of them (`Tail`). A test holds it to the plain walk.

use foldhash::fast::FixedState;
use std::hash::BuildHasher;

/// The smallest table: a prime, for a service of one or two backends.
pub const MIN_SIZE: usize = 251;
/// Slots per backend at least: every backend's share is then exact to
/// 1%.
pub const SLOTS_PER_BACKEND: usize = 100;

/// Seeds of the two preference hashes (fixed: tables must agree across
/// workers and restarts).
const OFFSET_SEED: u64 = 0x6d61_676c_6576_0001;
const SKIP_SEED: u64 = 0x6d61_676c_6576_0002;

/// A Maglev lookup table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maglev {
    /// Backend index by slot; empty when there is no backend.
    slots: Vec<u32>,
}

/// The smallest prime ≥ `n`.
pub fn prime_at_least(n: usize) -> usize {
    fn is_prime(n: usize) -> bool {
        if n < 2 {
            return false;
        }
        let mut d = 2;
        while d * d <= n {
            if n % d == 0 {
                return false;
            }
            d += 1;
        }
        true
    }
    (n..).find(|&c| is_prime(c)).unwrap_or(n)
}

/// The table size for `backends` backends: of the sizes 251, 509, 1021,
/// ... (the largest prime below each power of two), the first with at
/// least 100 slots a backend. A size fits a range of backend counts, so
/// adding or removing a backend keeps the size, and Maglev moves few
/// slots (a new size would move most). Not Maglev's usual 65,537 for
/// every service: ten thousand services would take 2.6 GB of tables a
/// worker.
pub fn size_for(backends: usize) -> usize {
    let want = (backends * SLOTS_PER_BACKEND).max(MIN_SIZE);
    let mut bound = (MIN_SIZE + 1).next_power_of_two();
    loop {
        let p = prime_below(bound);
        if p >= want {
            return p;
        }
        bound *= 2;
    }
}

/// The largest prime below `n` (≥ 3).
fn prime_below(n: usize) -> usize {
    (2..n).rev().find(|&c| prime_at_least(c) == c).unwrap_or(2)
}

impl Maglev {
    /// The table for backends identified by `keys` (any stable bytes: an
    /// address) with `weights` (each ≥ 1), of `size` slots (a prime).
    pub fn build(keys: &[&[u8]], weights: &[u32], size: usize) -> Maglev {
        let n = keys.len();
        if n == 0 || size == 0 {
            return Maglev { slots: Vec::new() };
        }
        let offset_h = FixedState::with_seed(OFFSET_SEED);
        let skip_h = FixedState::with_seed(SKIP_SEED);
        // Sizes stay far below 2^31, so a slot plus a skip fits in a u32.
        let m = size as u32;
        let offset: Vec<u32> = keys
            .iter()
            .map(|k| (offset_h.hash_one(k) % u64::from(m)) as u32)
            .collect();
        let skip: Vec<u32> = keys
            .iter()
            .map(|k| (skip_h.hash_one(k) % u64::from(m - 1).max(1)) as u32 + 1)
            .collect();
        let quota = quotas(weights, size);
        // Each backend's place in its preference list: `offset + j × skip
        // (mod size)`, walked by adding `skip`.
        let mut cur = offset;
        let mut held = vec![0usize; n];
        let mut slots = vec![u32::MAX; size];
        // A bit a slot, set once taken: walks read this, small enough to
        // stay in the first-level cache, rather than the table.
        let mut taken = vec![0u64; size.div_ceil(64)];
        let mut filled = 0;
        // Once few slots are free, a walk passes mostly taken ones, and
        // finding a backend's next free slot among the free ones is
        // cheaper (see `Tail`).
        let mut tail: Option<Tail> = None;
        let tail_from = if size >= Tail::MIN_SIZE {
            Tail::FROM.max(size.isqrt() * 2 / 3)
        } else {
            0
        };
        while filled < size {
            for i in 0..n {
                if held[i] >= quota[i] {
                    continue;
                }
                if tail.is_none() && size - filled < tail_from {
                    tail = Some(Tail::new(&taken, &skip, m));
                }
                let c = match &mut tail {
                    // The backend's next preferred slot that is still free.
                    None => {
                        let mut c = cur[i];
                        while is_taken(&taken, c) {
                            c += skip[i];
                            if c >= m {
                                c -= m;
                            }
                        }
                        c
                    }
                    Some(t) => t.take(i, cur[i]),
                };
                slots[c as usize] = i as u32;
                taken[(c >> 6) as usize] |= 1 << (c & 63);
                let mut c = c + skip[i];
                if c >= m {
                    c -= m;
                }
                cur[i] = c;
                held[i] += 1;
                filled += 1;
                if filled == size {
                    break;
                }
            }
        }
        Maglev { slots }
    }

    /// The backend (index into the list built from) of a flow's hash, or
    /// `None` when there is no backend.
    #[inline]
    pub fn pick(&self, hash: u64) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        Some(self.slots[(hash % self.slots.len() as u64) as usize])
    }

    /// The table's size.
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// Slots held by each of `n` backends.
    pub fn shares(&self, n: usize) -> Vec<usize> {
        let mut s = vec![0; n];
        for &b in &self.slots {
            if let Some(c) = s.get_mut(b as usize) {
                *c += 1;
            }
        }
        s
    }
}

/// The end of a table's fill: its free slots, and each backend's inverse
/// of its skip. Slots are never freed, so every slot a backend's walk has
/// passed is taken: its next free slot is the free slot earliest in its
/// preference list after `cur`, the one whose `(slot - cur) × skip⁻¹ mod
/// size` (its distance along the list) is least. A turn then costs one
/// multiplication per free slot instead of a walk over `size / free`
/// taken slots on average: the same slot, found faster once few are free.
struct Tail {
    free: Vec<u32>,
    skip: Vec<u32>,
    /// By backend: its skip's inverse modulo the size, once needed.
    inverse: Vec<Option<u64>>,
    m: u64,
    /// 1 / size, for the remainders.
    inv_m: f64,
}

impl Tail {
    /// Free slots at which the tail takes over at the latest (beyond, at
    /// two thirds of the square root of the size: a turn over `F` free
    /// slots costs about what a walk of `size / F` slots does, and the
    /// walk costs add up to `size × ln(size / F)`, so `F` near
    /// `√size` balances the two; the factor is measured).
    const FROM: usize = 16;
    /// Tables smaller than this are walked to the end: their walks are
    /// short, and setting the tail up would cost more than it saves.
    const MIN_SIZE: usize = 4096;

    fn new(taken: &[u64], skip: &[u32], m: u32) -> Tail {
        Tail {
            free: (0..m).filter(|&c| !is_taken(taken, c)).collect(),
            skip: skip.to_vec(),
            inverse: vec![None; skip.len()],
            m: u64::from(m),
            inv_m: 1.0 / f64::from(m),
        }
    }

    /// Backend `i`'s next free slot from `cur` on, taken from the list.
    fn take(&mut self, i: usize, cur: u32) -> u32 {
        let (m, inv_m) = (self.m, self.inv_m);
        let inv =
            *self.inverse[i].get_or_insert_with(|| pow_mod(u64::from(self.skip[i]), m - 2, m));
        let cur = u64::from(cur);
        let (mut best, mut at) = (u64::MAX, 0);
        for (k, &f) in self.free.iter().enumerate() {
            let d = u64::from(f) + m - cur;
            let d = if d >= m { d - m } else { d };
            let j = mul_mod(d, inv, m, inv_m);
            if j < best {
                (best, at) = (j, k);
            }
        }
        self.free.swap_remove(at)
    }
}

/// True when bit `c` of `taken` is set.
#[inline]
fn is_taken(taken: &[u64], c: u32) -> bool {
    (taken[(c >> 6) as usize] >> (c & 63)) & 1 != 0
}

/// `a × b mod m` for `a, b < m < 2^31`, by a floating-point quotient
/// corrected by one either way (no division).
#[inline]
fn mul_mod(a: u64, b: u64, m: u64, inv_m: f64) -> u64 {
    // Below 2^62: exact as i64, and its conversions are the signed ones.
    let p = (a * b) as i64;
    let q = (p as f64 * inv_m) as i64;
    let r = p - q * m as i64;
    let r = if r < 0 { r + m as i64 } else { r };
    let r = r as u64;
    if r >= m {
        r - m
    } else {
        r
    }
}

/// `b^e mod m` (`m` prime: `b^(m-2)` is `b`'s inverse, Fermat).
fn pow_mod(mut b: u64, mut e: u64, m: u64) -> u64 {
    let mut r = 1 % m;
    b %= m;
    while e > 0 {
        if e & 1 == 1 {
            r = r * b % m;
        }
        b = b * b % m;
        e >>= 1;
    }
    r
}

/// Slots each backend is entitled to: `size × w / Σw`, the remainder one
/// each by largest fraction (lowest index first among equals).
fn quotas(weights: &[u32], size: usize) -> Vec<usize> {
    let total: u64 = weights.iter().map(|&w| u64::from(w.max(1))).sum();
    let exact: Vec<(usize, u64)> = weights
        .iter()
        .map(|&w| {
            let p = size as u64 * u64::from(w.max(1));
            ((p / total) as usize, p % total)
        })
        .collect();
    let mut q: Vec<usize> = exact.iter().map(|e| e.0).collect();
    let mut left = size - q.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(exact[i].1), i));
    for i in order {
        if left == 0 {
            break;
        }
        q[i] += 1;
        left -= 1;
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                std::net::Ipv4Addr::from(0x0af4_0000 + i as u32)
                    .octets()
                    .to_vec()
            })
            .collect()
    }

    fn build(keys: &[Vec<u8>], weights: &[u32]) -> Maglev {
        let k: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        Maglev::build(&k, weights, size_for(keys.len()))
    }

    #[test]
    fn sizes_are_primes_of_at_least_a_hundred_slots_a_backend() {
        assert_eq!(size_for(1), 251);
        assert_eq!(size_for(3), 509);
        assert_eq!(
            (size_for(9), size_for(10)),
            (1021, 1021),
            "one size for both"
        );
        assert_eq!(size_for(655), 65_521);
        assert_eq!(size_for(1000), 131_071);
        assert_eq!(prime_at_least(100_000), 100_003);
    }

    #[test]
    fn every_backend_gets_its_weighted_share_to_one_slot() {
        for (n, weights) in [
            (3, vec![1, 1, 1]),
            (10, vec![1; 10]),
            (4, vec![1, 2, 3, 255]),
            (1000, (0..1000).map(|i| 1 + i % 7).collect()),
        ] {
            let k = keys(n);
            let t = build(&k, &weights);
            let total: u32 = weights.iter().sum();
            for (i, held) in t.shares(n).into_iter().enumerate() {
                let want = t.size() as f64 * f64::from(weights[i]) / f64::from(total);
                assert!(
                    (held as f64 - want).abs() <= 1.0,
                    "{n} backends: backend {i} holds {held}, entitled to {want:.1}"
                );
            }
        }
    }

    #[test]
    fn removing_a_backend_moves_few_slots_of_the_others() {
        let k = keys(10);
        let before = build(&k, &[1; 10]);
        let mut rest = k.clone();
        rest.remove(4);
        let after = build(&rest, &[1; 9]);
        // Map the old indices past 4 down by one to compare identities.
        let moved = (0..before.size() as u64)
            .filter(|&h| {
                let b = before.pick(h).unwrap();
                let a = after.pick(h).unwrap();
                b != 4 && a != if b > 4 { b - 1 } else { b }
            })
            .count();
        // The paper's figure: a few percent of the survivors' slots move.
        let share = moved as f64 / before.size() as f64;
        assert!(share < 0.03, "{:.2}% of slots moved", share * 100.0);
    }

    /// The paper's fill as written: every turn walks the backend's
    /// preference list to its next free slot.
    fn walked(keys: &[Vec<u8>], weights: &[u32], size: usize) -> Vec<u32> {
        let h = |seed: u64, k: &[u8]| FixedState::with_seed(seed).hash_one(k);
        let m = size as u64;
        let mut cur: Vec<u64> = keys.iter().map(|k| h(OFFSET_SEED, k) % m).collect();
        let skip: Vec<u64> = keys.iter().map(|k| h(SKIP_SEED, k) % (m - 1) + 1).collect();
        let quota = quotas(weights, size);
        let (mut held, mut slots) = (vec![0; keys.len()], vec![u32::MAX; size]);
        let mut filled = 0;
        while filled < size {
            for i in 0..keys.len() {
                if held[i] == quota[i] || filled == size {
                    continue;
                }
                while slots[cur[i] as usize] != u32::MAX {
                    cur[i] = (cur[i] + skip[i]) % m;
                }
                slots[cur[i] as usize] = i as u32;
                cur[i] = (cur[i] + skip[i]) % m;
                held[i] += 1;
                filled += 1;
            }
        }
        slots
    }

    #[test]
    fn the_fill_finds_the_slots_a_walk_finds() {
        for (n, weights) in [
            (1, vec![1]),
            (2, vec![1, 255]),
            (3, vec![1, 1, 1]),
            (40, (0..40).map(|i| 1 + i % 5).collect()),
            (1000, vec![1; 1000]),
            (1000, (0..1000).map(|i| 1 + i % 7).collect()),
        ] {
            let k = keys(n);
            let size = size_for(n);
            assert_eq!(
                build(&k, &weights).slots,
                walked(&k, &weights, size),
                "{n} backends"
            );
        }
        assert_eq!(mul_mod(131_070, 131_070, 131_071, 1.0 / 131_071.0), 1);
        assert_eq!(pow_mod(3, 131_069, 131_071) * 3 % 131_071, 1);
    }

    #[test]
    fn the_table_depends_only_on_the_backends() {
        let k = keys(7);
        assert_eq!(build(&k, &[1; 7]), build(&k, &[1; 7]));
        assert_eq!(Maglev::build(&[], &[], 65_537).pick(5), None);
    }
}
