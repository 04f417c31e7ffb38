//! The first session of each (mapping, remote address) chain.
//!
//! An open-addressing table of its own, not a `HashMap`, for one reason:
//! a burst can ask where a key lives before looking it up, and prefetch
//! that slot. At a million sessions this table and the sessions are far
//! larger than the cache, so an established flow's translation is two
//! memory misses; prefetching them for the whole burst first puts every
//! miss in flight at once instead of one flow's after another's.
//!
//! Linear probing over 16-byte slots (four to a cache line), at most 70%
//! full, deletion by backward shift (no tombstones). The hash is keyed per
//! table, so outside hosts choosing remote addresses cannot aim at one
//! probe run.

use std::net::Ipv4Addr;

use foldhash::fast::RandomState;
use std::hash::BuildHasher;

use edgefwd_prefetch::prefetch;

/// No key: mapping indices stop below `u32::MAX`.
const EMPTY: u64 = u64::MAX;

#[derive(Clone, Copy)]
struct Slot {
    key: u64,
    head: u32,
}

const FREE: Slot = Slot {
    key: EMPTY,
    head: 0,
};

/// (mapping, remote address) → first session of the chain.
pub(super) struct Heads {
    slots: Vec<Slot>,
    len: usize,
    hasher: RandomState,
}

fn key(m: u32, remote: Ipv4Addr) -> u64 {
    (u64::from(m) << 32) | u64::from(u32::from(remote))
}

impl Heads {
    /// A table with room for `n` keys before it grows.
    pub(super) fn with_capacity(n: usize) -> Self {
        let slots = (n * 10 / 7 + 1).next_power_of_two().max(16);
        Heads {
            slots: vec![FREE; slots],
            len: 0,
            hasher: RandomState::default(),
        }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Where the search for (`m`, `remote`) starts.
    #[inline]
    pub(super) fn home(&self, m: u32, remote: Ipv4Addr) -> usize {
        self.home_of(key(m, remote))
    }

    #[inline]
    fn home_of(&self, k: u64) -> usize {
        self.hasher.hash_one(k) as usize & self.mask()
    }

    /// Starts loading the slot at `home`.
    #[inline]
    pub(super) fn prefetch(&self, home: usize) {
        if let Some(s) = self.slots.get(home) {
            prefetch(s);
        }
    }

    /// The index of the slot holding `k`, searching from `home`.
    fn find(&self, home: usize, k: u64) -> Option<usize> {
        let mask = self.mask();
        let mut i = home & mask;
        loop {
            match self.slots[i].key {
                x if x == k => return Some(i),
                EMPTY => return None,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The first session of (`m`, `remote`), searching from `home`.
    #[inline]
    pub(super) fn get_from(&self, home: usize, m: u32, remote: Ipv4Addr) -> Option<u32> {
        self.find(home, key(m, remote)).map(|i| self.slots[i].head)
    }

    /// The first session of (`m`, `remote`).
    pub(super) fn get(&self, m: u32, remote: Ipv4Addr) -> Option<u32> {
        self.get_from(self.home(m, remote), m, remote)
    }

    /// Makes `head` the first session of (`m`, `remote`).
    pub(super) fn set(&mut self, m: u32, remote: Ipv4Addr, head: u32) {
        let k = key(m, remote);
        if let Some(i) = self.find(self.home_of(k), k) {
            self.slots[i].head = head;
            return;
        }
        if (self.len + 1) * 10 > self.slots.len() * 7 {
            self.grow();
        }
        let i = self.free_slot(k);
        self.slots[i] = Slot { key: k, head };
        self.len += 1;
    }

    /// The first free slot of `k`'s probe run (`k` is not in the table).
    fn free_slot(&self, k: u64) -> usize {
        let mask = self.mask();
        let mut i = self.home_of(k);
        while self.slots[i].key != EMPTY {
            i = (i + 1) & mask;
        }
        i
    }

    /// Forgets (`m`, `remote`).
    pub(super) fn remove(&mut self, m: u32, remote: Ipv4Addr) {
        let Some(mut hole) = self.find(self.home(m, remote), key(m, remote)) else {
            return;
        };
        let mask = self.mask();
        let mut j = hole;
        // Backward shift: pull each later entry of the run into the hole
        // unless its home lies cyclically after the hole.
        loop {
            j = (j + 1) & mask;
            let k = self.slots[j].key;
            if k == EMPTY {
                break;
            }
            let home = self.home_of(k);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
        }
        self.slots[hole] = FREE;
        self.len -= 1;
    }

    fn grow(&mut self) {
        let bigger = vec![FREE; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, bigger);
        for s in old.into_iter().filter(|s| s.key != EMPTY) {
            let i = self.free_slot(s.key);
            self.slots[i] = s;
        }
    }

    /// Heap bytes.
    pub(super) fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random inserts, updates and removals against a `HashMap`, through
    /// growth, in a table small enough that probe runs wrap around.
    #[test]
    fn matches_a_hashmap() {
        let mut h = Heads::with_capacity(4);
        let mut m: HashMap<(u32, Ipv4Addr), u32> = HashMap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = ((x % 61) as u32, Ipv4Addr::from((x >> 8) as u32 % 53));
            if x % 3 == 0 {
                h.remove(k.0, k.1);
                m.remove(&k);
            } else {
                h.set(k.0, k.1, step);
                m.insert(k, step);
            }
            if step % 997 == 0 {
                for a in 0..61 {
                    for b in 0..53 {
                        let k = (a, Ipv4Addr::from(b));
                        assert_eq!(h.get(k.0, k.1), m.get(&k).copied(), "{k:?} at {step}");
                    }
                }
            }
        }
        assert_eq!(h.len, m.len());
    }
}
