//! The fast LPM: Poptrie (Asai & Ohara, SIGCOMM 2015), for IPv4 and IPv6.
//!
//! Why Poptrie. DPDK's DIR-24-8 does one or two memory reads but needs a
//! 2^24-entry first table (32 MiB with 16-bit entries), far over our 8 MiB
//! budget for a full table. VPP's 16-8-8 mtrie allocates a 256-entry ply for
//! every /16 that holds longer prefixes, tens of MiB on today's tables. SAIL
//! is fast but also pays per level in memory and handles IPv6 poorly. DXR
//! is compact, but its binary search over ranges costs several dependent
//! reads per lookup. Poptrie keeps a direct table for the first bits and,
//! below it, 64-way nodes whose children are found by popcount over a
//! 64-bit bitmap; leaves are compressed (a run of equal leaves is stored
//! once). A full IPv4 table fits in a few MiB, a lookup of a /24 is two or
//! three cache lines, and the same code serves 128-bit keys.
//!
//! Layout: `direct[key >> (W - S)]` is a leaf (tagged by bit 31) or a node
//! index. A node has `vector` (bit v set: child v is a node), `leafvec` (bit
//! v set: child v starts a run of leaves), `base1` (its child nodes, stored
//! contiguously) and `base0` (its leaves, contiguously). Values are FIB
//! group ids plus one; 0 is "no route".
//!
//! A burst's lookups ([`Lpm::lookup_v4_batch`], [`Lpm::lookup_v6_batch`])
//! walk up to 32 keys level by level together, prefetching what each needs
//! next. On the full tables that is about as fast as single lookups in a
//! tight loop (within ±6%): the CPU already overlaps the independent
//! iterations' misses, and the tables are mostly in the last-level cache.
//!
//! The popcounts need the POPCNT instruction (`.cargo/config.toml` builds
//! for x86-64-v2); without it each is a dozen instructions.
//!
//! Updates are incremental: the binary trie the table is compiled from is
//! kept (by a [`super::FibWriter`]), a route change edits one path of it,
//! and only the direct-table entries under the changed prefix are compiled
//! again. A new subtree is written over the old one when it fits, else
//! appended with the old one left as garbage until a rebuild compacts the
//! family. A /24 change recompiles one entry
//! (a few microseconds); a /8 change 1,024; a default-route change the whole
//! family.

use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

use super::trie::Trie;
use super::Lpm;
use crate::prefetch::prefetch;

/// Bits per node level.
const STRIDE: u32 = 6;
/// Tag of a leaf in the direct table.
const LEAF: u32 = 1 << 31;
/// Keys a batch lookup walks together.
const LANES: usize = 32;
/// Bits of the direct table. 18 for IPv4: a /24 is then one node below it.
/// 18 for IPv6 too: a /48 is five nodes below instead of six, for 0.2 MiB
/// more (20 bits costs 3 MiB and gains nothing).
const DIRECT_BITS: u32 = 18;
/// Incrementally updated tables are rebuilt (compacted) once garbage passes
/// one part in this many of their node or leaf array, and get that much
/// headroom when built.
const GARBAGE_SHARE: usize = 8;

/// Keys left-aligned in an unsigned integer: IPv4 in a `u64`, IPv6 in a
/// `u128`.
trait Key: Copy {
    /// The `STRIDE` bits starting `offset` bits from the top.
    fn chunk(self, offset: u32) -> u32;
    /// The top `n` bits.
    fn top(self, n: u32) -> usize;
}

impl Key for u64 {
    #[inline(always)]
    fn chunk(self, offset: u32) -> u32 {
        ((self << offset) >> (64 - STRIDE)) as u32
    }
    #[inline(always)]
    fn top(self, n: u32) -> usize {
        (self >> (64 - n)) as usize
    }
}

impl Key for u128 {
    #[inline(always)]
    fn chunk(self, offset: u32) -> u32 {
        ((self << offset) >> (128 - STRIDE)) as u32
    }
    #[inline(always)]
    fn top(self, n: u32) -> usize {
        (self >> (128 - n)) as usize
    }
}

#[derive(Clone, Copy, Default, Debug)]
struct Node {
    vector: u64,
    leafvec: u64,
    base0: u32,
    base1: u32,
}

/// Where a node's child `v` is: a leaf or a node, by index.
enum Child {
    Leaf(u32),
    Node(u32),
}

impl Node {
    /// Child `v` (0..64) of this node.
    #[inline(always)]
    fn child(&self, v: u32) -> Child {
        let bit = 1u64 << v;
        // Bits 0..=v (all of them when v is 63).
        let upto = (bit << 1).wrapping_sub(1);
        if self.vector & bit == 0 {
            Child::Leaf(self.base0 + (self.leafvec & upto).count_ones() - 1)
        } else {
            Child::Node(self.base1 + (self.vector & upto).count_ones() - 1)
        }
    }
}

/// One family's table.
#[derive(Clone, Default)]
struct Poptrie {
    direct_bits: u32,
    direct: Vec<u32>,
    nodes: Vec<Node>,
    leaves: Vec<u32>,
    /// Nodes and leaves no entry reaches any more (left by updates).
    garbage_nodes: usize,
    garbage_leaves: usize,
}

impl Poptrie {
    /// The value for `key` (0: no route).
    #[inline(always)]
    fn lookup<K: Key>(&self, key: K) -> u32 {
        let d = self.direct[key.top(self.direct_bits)];
        if d & LEAF != 0 {
            return d & !LEAF;
        }
        let mut node = self.nodes[d as usize];
        let mut offset = self.direct_bits;
        loop {
            match node.child(key.chunk(offset)) {
                Child::Leaf(i) => return self.leaves[i as usize],
                Child::Node(n) => node = self.nodes[n as usize],
            }
            offset += STRIDE;
        }
    }

    /// [`Poptrie::lookup`] for up to [`LANES`] keys at a time, values into
    /// `out`. The keys advance level by level together: each step
    /// prefetches what every key needs next, then reads it, so a burst's
    /// cache misses overlap instead of following one another.
    fn lookup_batch<K: Key>(&self, keys: &[K], out: &mut [u32]) {
        for (keys, out) in keys.chunks(LANES).zip(out.chunks_mut(LANES)) {
            let n = keys.len().min(out.len());
            // Per lane: the node (or, once `leaf`, the leaf) index and the
            // bits consumed; `pending` lists the lanes not yet answered.
            let mut at = [0u32; LANES];
            let mut offset = [self.direct_bits; LANES];
            let mut leaf = [false; LANES];
            let mut pending = [0u8; LANES];
            let mut live = 0;
            for k in &keys[..n] {
                if let Some(d) = self.direct.get(k.top(self.direct_bits)) {
                    prefetch(d);
                }
            }
            for i in 0..n {
                let d = self.direct[keys[i].top(self.direct_bits)];
                if d & LEAF != 0 {
                    out[i] = d & !LEAF;
                } else {
                    if let Some(node) = self.nodes.get(d as usize) {
                        prefetch(node);
                    }
                    at[i] = d;
                    pending[live] = i as u8;
                    live += 1;
                }
            }
            while live > 0 {
                let mut still = 0;
                for j in 0..live {
                    let i = usize::from(pending[j]);
                    if leaf[i] {
                        out[i] = self.leaves[at[i] as usize];
                        continue;
                    }
                    match self.nodes[at[i] as usize].child(keys[i].chunk(offset[i])) {
                        Child::Leaf(l) => {
                            at[i] = l;
                            leaf[i] = true;
                            if let Some(l) = self.leaves.get(l as usize) {
                                prefetch(l);
                            }
                        }
                        Child::Node(n) => {
                            at[i] = n;
                            offset[i] += STRIDE;
                            if let Some(next) = self.nodes.get(n as usize) {
                                prefetch(next);
                            }
                        }
                    }
                    pending[still] = i as u8;
                    still += 1;
                }
                live = still;
            }
        }
    }

    fn memory_bytes(&self) -> usize {
        self.direct.capacity() * 4
            + self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.leaves.capacity() * 4
    }
}

impl Poptrie {
    /// The direct table's bits for `trie`: [`DIRECT_BITS`], or one when the
    /// trie holds at most a default route (a family without routes costs
    /// nothing).
    fn direct_bits_for(trie: &Trie) -> u32 {
        if trie.has_children(0) {
            DIRECT_BITS
        } else {
            1
        }
    }

    /// Compiles `trie`.
    fn build(trie: &Trie) -> Poptrie {
        let direct_bits = Self::direct_bits_for(trie);
        let mut t = Poptrie {
            direct_bits,
            direct: vec![0; 1 << direct_bits],
            ..Poptrie::default()
        };
        for i in 0..(1u32 << direct_bits) {
            t.direct[i as usize] = t.compile_entry(trie, i);
        }
        t.nodes.shrink_to_fit();
        t.leaves.shrink_to_fit();
        t
    }

    /// The direct table's entry `i` compiled from `trie`: a leaf, or a
    /// subtree appended to the node and leaf arrays.
    fn compile_entry(&mut self, trie: &Trie, i: u32) -> u32 {
        let (node, value) = trie.descend(0, i, self.direct_bits, trie.root_value());
        match node {
            Some(n) if trie.has_children(n) => {
                let slot = self.nodes.len() as u32;
                self.nodes.push(Node::default());
                fill(trie, self, slot, n, value);
                slot
            }
            _ => LEAF | value,
        }
    }

    /// Nodes and leaves of the subtree under node `n`.
    fn subtree_size(&self, n: u32) -> (usize, usize) {
        let node = self.nodes[n as usize];
        let mut size = (1, node.leafvec.count_ones() as usize);
        for k in node.base1..node.base1 + node.vector.count_ones() {
            let (n, l) = self.subtree_size(k);
            size.0 += n;
            size.1 += l;
        }
        size
    }

    /// Room to append a few thousand changes' subtrees before the arrays
    /// must grow (which compaction usually comes first).
    fn with_headroom(mut self) -> Self {
        self.nodes.reserve_exact(self.nodes.len() / GARBAGE_SHARE);
        self.leaves.reserve_exact(self.leaves.len() / GARBAGE_SHARE);
        self
    }

    /// Compiles again the entries under the prefixes `changed` (left-aligned
    /// keys and lengths) after `trie` changed there. Each entry's new subtree
    /// replaces its old one in place when it fits, else is appended and the
    /// old one left as garbage (as is what a smaller one leaves); when garbage passes a
    /// share of the arrays, or the change covers much of the direct table,
    /// or the family gained its first or lost its last prefix, the whole
    /// family is rebuilt instead (which also compacts it).
    fn update(&mut self, trie: &Trie, changed: &[(u128, u32)]) {
        if changed.is_empty() {
            return;
        }
        let bits = Self::direct_bits_for(trie);
        let span = |len: u32| 1usize << bits.saturating_sub(len);
        let covered: usize = changed.iter().map(|&(_, len)| span(len)).sum();
        if bits != self.direct_bits
            || covered * GARBAGE_SHARE > self.direct.len()
            || self.garbage_nodes * GARBAGE_SHARE > self.nodes.len()
            || self.garbage_leaves * GARBAGE_SHARE > self.leaves.len()
        {
            *self = Poptrie::build(trie).with_headroom();
            return;
        }
        let mut entries: Vec<u32> = Vec::with_capacity(covered);
        for &(key, len) in changed {
            let first = (key >> (128 - bits)) as u32;
            entries.extend(first..first + span(len) as u32);
        }
        entries.sort_unstable();
        entries.dedup();
        // Each entry's subtree is compiled apart, then written over its old
        // one when it fits (a route changing inside an entry usually keeps
        // its shape) or appended when it does not.
        let mut scratch = Poptrie {
            direct_bits: self.direct_bits,
            ..Poptrie::default()
        };
        for i in entries {
            scratch.nodes.clear();
            scratch.leaves.clear();
            let new = scratch.compile_entry(trie, i);
            let old = self.direct[i as usize];
            // The old subtree becomes garbage, less what is reused.
            let (old_nodes, old_leaves) = if old & LEAF == 0 {
                self.subtree_size(old)
            } else {
                (0, 0)
            };
            self.garbage_nodes += old_nodes;
            self.garbage_leaves += old_leaves;
            if new & LEAF != 0 {
                self.direct[i as usize] = new;
                continue;
            }
            let (n, l) = (scratch.nodes.len(), scratch.leaves.len());
            let in_place = old & LEAF == 0 && n <= old_nodes && l <= old_leaves;
            let (at_node, at_leaf) = if in_place {
                self.garbage_nodes -= n;
                self.garbage_leaves -= l;
                (old as usize, self.nodes[old as usize].base0 as usize)
            } else {
                (self.nodes.len(), self.leaves.len())
            };
            for node in &mut scratch.nodes {
                node.base0 += at_leaf as u32;
                node.base1 += at_node as u32;
            }
            if in_place {
                self.nodes[at_node..at_node + n].copy_from_slice(&scratch.nodes);
                self.leaves[at_leaf..at_leaf + l].copy_from_slice(&scratch.leaves);
            } else {
                self.nodes.extend_from_slice(&scratch.nodes);
                self.leaves.extend_from_slice(&scratch.leaves);
            }
            self.direct[i as usize] = at_node as u32;
        }
    }
}

/// Fills node `slot` for the trie node `at`, whose prefixes inherit `value`.
fn fill(trie: &Trie, t: &mut Poptrie, slot: u32, at: u32, value: u32) {
    let mut children = [(None, 0u32); 64];
    let mut node = Node::default();
    for (v, c) in children.iter_mut().enumerate() {
        *c = trie.descend(at, v as u32, STRIDE, value);
        if c.0.is_some_and(|n| trie.has_children(n)) {
            node.vector |= 1 << v;
        }
    }
    node.base0 = t.leaves.len() as u32;
    let mut last = None;
    for (v, (_, leaf)) in children
        .iter()
        .enumerate()
        .filter(|(v, _)| node.vector & (1 << v) == 0)
    {
        if last != Some(*leaf) {
            node.leafvec |= 1 << v;
            t.leaves.push(*leaf);
            last = Some(*leaf);
        }
    }
    node.base1 = t.nodes.len() as u32;
    let internal = node.vector.count_ones();
    t.nodes
        .resize(t.nodes.len() + internal as usize, Node::default());
    t.nodes[slot as usize] = node;
    let internal_children = children
        .iter()
        .filter_map(|(n, val)| n.filter(|n| trie.has_children(*n)).map(|n| (n, *val)));
    for (k, (child, inherited)) in (node.base1..).zip(internal_children) {
        fill(trie, t, k, child, inherited);
    }
}

/// A burst of addresses through [`Poptrie::lookup_batch`], [`LANES`] at a
/// time, as keys made by `key`.
fn batch<A: Copy, K: Key + Default>(
    t: &Poptrie,
    addrs: &[A],
    out: &mut [Option<u32>],
    key: impl Fn(A) -> K,
) {
    let mut keys = [K::default(); LANES];
    let mut values = [0u32; LANES];
    for (addrs, out) in addrs.chunks(LANES).zip(out.chunks_mut(LANES)) {
        for (k, a) in keys.iter_mut().zip(addrs) {
            *k = key(*a);
        }
        let n = addrs.len();
        t.lookup_batch(&keys[..n], &mut values[..n]);
        for (o, v) in out.iter_mut().zip(&values[..n]) {
            *o = v.checked_sub(1);
        }
    }
}

/// Poptrie tables for both families.
#[derive(Clone)]
pub struct PoptrieLpm {
    v4: Poptrie,
    v6: Poptrie,
}

impl PoptrieLpm {
    /// Compiles both families from their tries (values are group ids + 1).
    pub(super) fn from_tries(t4: &Trie, t6: &Trie) -> Self {
        PoptrieLpm {
            v4: Poptrie::build(t4),
            v6: Poptrie::build(t6),
        }
    }

    /// Room for incremental updates (see [`Poptrie::with_headroom`]).
    pub(super) fn with_headroom(self) -> Self {
        PoptrieLpm {
            v4: self.v4.with_headroom(),
            v6: self.v6.with_headroom(),
        }
    }

    /// Brings the tables up to date with the tries after the prefixes in
    /// `changed4` and `changed6` changed (see [`Poptrie::update`]).
    pub(super) fn update(
        &mut self,
        t4: &Trie,
        t6: &Trie,
        changed4: &[(u128, u32)],
        changed6: &[(u128, u32)],
    ) {
        self.v4.update(t4, changed4);
        self.v6.update(t6, changed6);
    }
}

/// A prefix as a trie key: left-aligned in a `u128`, and its length.
pub(super) fn v4_key(p: &Ipv4Net) -> (u128, u32) {
    (
        u128::from(u32::from(p.network())) << 96,
        u32::from(p.prefix_len()),
    )
}

/// A prefix as a trie key: its bits, and its length.
pub(super) fn v6_key(p: &Ipv6Net) -> (u128, u32) {
    (u128::from(p.network()), u32::from(p.prefix_len()))
}

/// The tries of both families' prefixes, each valued at its group id + 1.
pub(super) fn tries(v4: &[(Ipv4Net, u32)], v6: &[(Ipv6Net, u32)]) -> (Trie, Trie) {
    let mut t4 = Trie::new();
    for (p, v) in v4 {
        let (key, len) = v4_key(p);
        t4.insert(key, len, v + 1);
    }
    let mut t6 = Trie::new();
    for (p, v) in v6 {
        let (key, len) = v6_key(p);
        t6.insert(key, len, v + 1);
    }
    (t4, t6)
}

impl Lpm for PoptrieLpm {
    fn build(v4: &[(Ipv4Net, u32)], v6: &[(Ipv6Net, u32)]) -> Self {
        let (t4, t6) = tries(v4, v6);
        Self::from_tries(&t4, &t6)
    }

    #[inline]
    fn lookup_v4(&self, a: Ipv4Addr) -> Option<u32> {
        let v = self.v4.lookup(u64::from(u32::from(a)) << 32);
        v.checked_sub(1)
    }

    fn lookup_v4_batch(&self, addrs: &[Ipv4Addr], out: &mut [Option<u32>]) {
        batch(&self.v4, addrs, out, |a| u64::from(u32::from(a)) << 32);
    }

    #[inline]
    fn lookup_v6(&self, a: Ipv6Addr) -> Option<u32> {
        self.v6.lookup(u128::from(a)).checked_sub(1)
    }

    fn lookup_v6_batch(&self, addrs: &[Ipv6Addr], out: &mut [Option<u32>]) {
        batch(&self.v6, addrs, out, u128::from);
    }

    fn memory_bytes(&self) -> usize {
        self.v4.memory_bytes() + self.v6.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lpm(v4: &[(&str, u32)], v6: &[(&str, u32)]) -> PoptrieLpm {
        let v4: Vec<_> = v4.iter().map(|(p, v)| (p.parse().unwrap(), *v)).collect();
        let v6: Vec<_> = v6.iter().map(|(p, v)| (p.parse().unwrap(), *v)).collect();
        PoptrieLpm::build(&v4, &v6)
    }

    #[test]
    fn nested_prefixes_at_every_depth() {
        let t = lpm(
            &[
                ("0.0.0.0/0", 0),
                ("10.0.0.0/8", 1),
                ("10.1.0.0/16", 2),
                ("10.1.2.0/24", 3),
                ("10.1.2.3/32", 4),
                ("10.1.2.128/25", 5),
            ],
            &[("::/0", 0), ("2001:db8::/32", 1), ("2001:db8::1/128", 2)],
        );
        let q = |a: &str| t.lookup_v4(a.parse().unwrap());
        assert_eq!(q("9.9.9.9"), Some(0));
        assert_eq!(q("10.9.9.9"), Some(1));
        assert_eq!(q("10.1.9.9"), Some(2));
        assert_eq!(q("10.1.2.9"), Some(3));
        assert_eq!(q("10.1.2.3"), Some(4));
        assert_eq!(q("10.1.2.200"), Some(5));
        assert_eq!(q("10.1.2.127"), Some(3));
        let q6 = |a: &str| t.lookup_v6(a.parse().unwrap());
        assert_eq!(q6("2001:db8::1"), Some(2));
        assert_eq!(q6("2001:db8::2"), Some(1));
        assert_eq!(q6("2002::"), Some(0));
    }

    /// The batch walk answers exactly as single lookups, for bursts of
    /// every length around the lane count, on prefixes of every length.
    #[test]
    fn batch_matches_single() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let v4: Vec<(Ipv4Net, u32)> = (0..5000)
            .map(|i| {
                let len = (next() % 33) as u8;
                let net = Ipv4Net::new(Ipv4Addr::from(next() as u32), len)
                    .unwrap()
                    .trunc();
                (net, i)
            })
            .collect();
        let mut v4: Vec<_> = v4
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>()
            .into_iter()
            .collect();
        v4.sort();
        // IPv6: prefixes under 2001:db8::/32, so lookups go deep.
        let v6: std::collections::HashMap<Ipv6Net, u32> = (0..2000)
            .map(|i| {
                let a = (0x2001_0db8u128 << 96) | (u128::from(next()) << 32);
                let len = 32 + (next() % 97) as u8;
                (Ipv6Net::new(Ipv6Addr::from(a), len).unwrap().trunc(), i)
            })
            .collect();
        let v6: Vec<_> = v6.into_iter().collect();
        let t = PoptrieLpm::build(&v4, &v6);
        // Half the addresses inside a prefix, so every depth is walked.
        let addrs: Vec<Ipv4Addr> = (0..3000)
            .map(|i| {
                let r = next() as u32;
                if i % 2 == 0 {
                    let (p, _) = v4[r as usize % v4.len()];
                    Ipv4Addr::from(u32::from(p.network()) | (r & !u32::from(p.netmask())))
                } else {
                    Ipv4Addr::from(r)
                }
            })
            .collect();
        let addrs6: Vec<Ipv6Addr> = (0..3000)
            .map(|_| {
                let (p, _) = v6[next() as usize % v6.len()];
                let host =
                    (u128::from(next()) << 64 | u128::from(next())) & !u128::from(p.netmask());
                Ipv6Addr::from(u128::from(p.network()) | host)
            })
            .collect();
        for len in [0, 1, 31, 32, 33, 64, 100, 3000] {
            let mut out = vec![Some(u32::MAX); len];
            t.lookup_v4_batch(&addrs[..len], &mut out);
            for (a, o) in addrs.iter().zip(&out) {
                assert_eq!(*o, t.lookup_v4(*a), "{a} in a burst of {len}");
            }
            t.lookup_v6_batch(&addrs6[..len], &mut out);
            for (a, o) in addrs6.iter().zip(&out) {
                assert_eq!(*o, t.lookup_v6(*a), "{a} in a burst of {len}");
            }
        }
    }

    #[test]
    fn empty_tables_have_no_route() {
        let t = lpm(&[], &[]);
        assert_eq!(t.lookup_v4(Ipv4Addr::new(1, 2, 3, 4)), None);
        assert_eq!(t.lookup_v6(Ipv6Addr::LOCALHOST), None);
        // Only default routes: the one-bit direct tables answer them.
        let t = lpm(&[("0.0.0.0/0", 3)], &[("::/0", 4)]);
        assert_eq!(t.lookup_v4(Ipv4Addr::new(255, 1, 2, 3)), Some(3));
        assert_eq!(t.lookup_v6(Ipv6Addr::LOCALHOST), Some(4));
        assert!(t.memory_bytes() < 64, "{} bytes", t.memory_bytes());
    }

    #[test]
    fn last_child_of_a_node() {
        // Child 63 of a node exercises the all-bits mask.
        let t = lpm(&[("10.255.252.0/22", 7), ("10.255.255.255/32", 8)], &[]);
        assert_eq!(t.lookup_v4("10.255.255.255".parse().unwrap()), Some(8));
        assert_eq!(t.lookup_v4("10.255.255.254".parse().unwrap()), Some(7));
        assert_eq!(t.lookup_v4("10.255.251.255".parse().unwrap()), None);
    }
}
