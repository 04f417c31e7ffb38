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
//! group ids plus one; 0 is "no route". Leaves are 16 bits while every
//! value fits (as in the paper): on the full IPv4 table they are most of
//! the memory, and 16-bit leaves take it from 6.3 to 4.4 MiB and single
//! lookups up by a quarter.
//!
//! A burst's lookups ([`Lpm::lookup_v4_batch`], [`Lpm::lookup_v6_batch`])
//! walk up to 64 keys level by level together, prefetching what each needs
//! next, with selects instead of branches where the outcome depends on what
//! was just read. On the full tables that measured 1.5 to 1.8 times single
//! lookups in a tight loop for random IPv4 addresses, 1.2 to 1.35 times for
//! IPv6 addresses inside the prefixes (the bench `lpm` prints both, best of
//! interleaved rounds): a tight loop of independent lookups already lets
//! the CPU overlap their misses, and an IPv6 walk of five levels is bound
//! by its instructions (about 250 a key) more than by memory.
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

mod build;
#[cfg(test)]
mod tests;

use super::trie::Trie;
use super::Lpm;
use edgefwd_prefetch::{prefetch_addr, prefetch_index};

/// Bits per node level.
const STRIDE: u32 = 6;
/// Tag of a leaf in the direct table.
const LEAF: u32 = 1 << 31;
/// Keys a batch lookup walks together: a default burst (lane numbers are
/// kept in a `u8`).
const LANES: usize = 64;

/// Keys left-aligned in an unsigned integer: IPv4 in a `u64`, IPv6 in a
/// `u128`.
trait Key: Copy + Default {
    /// The `STRIDE` bits starting `offset` bits from the top.
    fn chunk(self, offset: u32) -> u32;
    /// The top `n` bits.
    fn top(self, n: u32) -> usize;
    /// The top 64 bits.
    fn high(self) -> u64;
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
    #[inline(always)]
    fn high(self) -> u64 {
        self
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
    #[inline(always)]
    fn high(self) -> u64 {
        (self >> 64) as u64
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
    ///
    /// Both bitmaps are shifted left by 63 - v: bits 0..=v land at the
    /// top, where a popcount counts them, and bit v is the sign bit. One
    /// shift instead of building a bit and a mask (three variable shifts).
    #[inline(always)]
    fn child(&self, v: u32) -> Child {
        let up = 63 - v;
        let vector = self.vector << up;
        if (vector as i64) < 0 {
            Child::Node(self.base1 + vector.count_ones() - 1)
        } else {
            Child::Leaf(self.base0 + (self.leafvec << up).count_ones() - 1)
        }
    }

    /// [`Node::child`] without a branch: whether child `v` is a node, and
    /// its node or leaf index. For the batch walk; single lookups keep the
    /// branch, which computes one popcount instead of two and measured 8%
    /// faster for them. The bit and mask are built from `v` alone, not by
    /// shifting the bitmaps as [`Node::child`] does: that saved 3% of the
    /// IPv6 batch's instructions but put two more shifts after the node's
    /// load, and the batch on cache-hot IPv6 keys measured 7% slower.
    #[inline(always)]
    fn step(&self, v: u32) -> (bool, u32) {
        let bit = 1u64 << v;
        let upto = (bit << 1).wrapping_sub(1);
        let is_node = (self.vector >> v) & 1 != 0;
        // One of the two indices is meaningless (and may wrap); the mask
        // keeps the other. A mask, not an `if`: LLVM turns that select
        // back into the branch this exists to avoid.
        let node = (self.base1.wrapping_add((self.vector & upto).count_ones())).wrapping_sub(1);
        let leaf = (self.base0.wrapping_add((self.leafvec & upto).count_ones())).wrapping_sub(1);
        let keep_node = u32::from(is_node).wrapping_neg();
        (is_node, (node & keep_node) | (leaf & !keep_node))
    }
}

/// A leaf as stored: 16 bits while every value of the family fits (a FIB
/// has far fewer than 65,535 next-hop groups, and the leaves are most of a
/// full table's memory), else 32.
trait Word: Copy + Default {
    /// The largest value it holds.
    const LARGEST: u32;
    /// `v` (at most [`Word::LARGEST`]) as a leaf.
    fn new(v: u32) -> Self;
    /// The value.
    fn get(self) -> u32;
}

impl Word for u16 {
    const LARGEST: u32 = u16::MAX as u32;
    #[inline(always)]
    fn new(v: u32) -> Self {
        debug_assert!(v <= Self::LARGEST);
        v as u16
    }
    #[inline(always)]
    fn get(self) -> u32 {
        u32::from(self)
    }
}

impl Word for u32 {
    const LARGEST: u32 = u32::MAX;
    #[inline(always)]
    fn new(v: u32) -> Self {
        v
    }
    #[inline(always)]
    fn get(self) -> u32 {
        self
    }
}

/// One family's table, with leaves of `W`.
#[derive(Clone, Default)]
struct Poptrie<W> {
    direct_bits: u32,
    direct: Vec<u32>,
    nodes: Vec<Node>,
    leaves: Vec<W>,
    /// Nodes and leaves no entry reaches any more (left by updates).
    garbage_nodes: usize,
    garbage_leaves: usize,
}

impl<W: Word> Poptrie<W> {
    /// The value for `key` (0: no route).
    #[inline(always)]
    fn lookup<K: Key>(&self, key: K) -> u32 {
        let d = self.direct[key.top(self.direct_bits)];
        if d & LEAF != 0 {
            return d & !LEAF;
        }
        self.walk(d, key, self.direct_bits)
    }

    /// The value for `key` from node `n`, whose children are chosen by the
    /// bits from `offset` on.
    #[inline(always)]
    fn walk<K: Key>(&self, n: u32, key: K, mut offset: u32) -> u32 {
        let mut node = self.nodes[n as usize];
        loop {
            match node.child(key.chunk(offset)) {
                Child::Leaf(i) => return self.leaves[i as usize].get(),
                Child::Node(n) => node = self.nodes[n as usize],
            }
            offset += STRIDE;
        }
    }

    /// [`Poptrie::lookup`] for the keys `key` makes of `addrs`, [`LANES`]
    /// at a time; the group ids found (values less one) into `out`. The
    /// keys advance level by level together: each step prefetches what
    /// every key needs next, then reads it, so a burst's cache misses
    /// overlap instead of following one another. The steps are branch-light
    /// (a key's next index is picked by a select, the keys still walking are
    /// gathered with a store and an add), because a mispredicted branch on
    /// a value just read costs as much as the read.
    ///
    /// The walk reads each key's top 64 bits only, as a `u64`: an IPv6
    /// lookup spends its steps in them (a /48 is five levels down), and
    /// 128-bit shifts cost several instructions each. The rare keys still
    /// walking past bit 64 (prefixes longer than /60) finish one by one.
    fn lookup_batch<A: Copy, K: Key>(
        &self,
        addrs: &[A],
        key: impl Fn(A) -> K + Copy,
        out: &mut [Option<u32>],
    ) {
        let mut lanes = Lanes::new();
        for (addrs, out) in addrs.chunks(LANES).zip(out.chunks_mut(LANES)) {
            lanes.start(self, addrs, key, out);
            let mut offset = self.direct_bits;
            while lanes.live > 0 {
                if offset + STRIDE > u64::BITS {
                    lanes.finish_one_by_one(self, addrs, key, offset, out);
                    break;
                }
                lanes.step(self, offset);
                offset += STRIDE;
            }
            lanes.finish(self, out);
        }
    }

    fn memory_bytes(&self) -> usize {
        self.direct.capacity() * 4
            + self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.leaves.capacity() * std::mem::size_of::<W>()
    }
}

/// The state of a batch walk over up to [`LANES`] keys. Lane numbers are
/// `u8`s: the lists of lanes have 256 entries, which a `u8` indexes without
/// a bounds check, and the per-lane arrays are indexed modulo [`LANES`]
/// by [`lane`], which needs none either. The per-lane arrays are no
/// larger than a burst because they are zeroed for every call, and a
/// pipeline calls once per burst.
///
/// Each phase is a function of its own, so its loop gets the registers to
/// itself (inlined into one, the loops reloaded the tables' addresses from
/// the stack for every key).
struct Lanes {
    /// Each lane's key, its top 64 bits.
    keys: [u64; LANES],
    /// Each lane's node index, then its leaf index.
    at: [u32; LANES],
    /// The lanes at a node, `live` of them.
    walking: [u8; 256],
    live: u8,
    /// The lanes whose answer is a leaf, `leaves` of them.
    at_leaf: [u8; 256],
    leaves: u8,
}

/// Lane `i`'s index into the arrays of [`Lanes`].
#[inline(always)]
fn lane(i: u8) -> usize {
    usize::from(i) % LANES
}

impl Lanes {
    fn new() -> Self {
        Lanes {
            keys: [0; LANES],
            at: [0; LANES],
            walking: [0; 256],
            live: 0,
            at_leaf: [0; 256],
            leaves: 0,
        }
    }

    /// Reads the direct-table entry of each key of `addrs` (at most
    /// [`LANES`]): a key that ends there has its answer in `out`; the
    /// others are listed walking, their first nodes prefetched. Most keys
    /// end here, so this pass does as little as it can: no prefetch of
    /// its own (the reads are independent, and the table stays in L2),
    /// no select.
    #[inline(never)]
    fn start<A: Copy, K: Key, W: Word>(
        &mut self,
        t: &Poptrie<W>,
        addrs: &[A],
        key: impl Fn(A) -> K,
        out: &mut [Option<u32>],
    ) {
        let mut live = 0u8;
        let lanes = self.keys.iter_mut().zip(self.at.iter_mut());
        for (i, ((a, o), (k, at))) in addrs.iter().zip(out).zip(lanes).enumerate() {
            *k = key(*a).high();
            let d = t.direct[k.top(t.direct_bits)];
            *o = (d & !LEAF).checked_sub(1);
            *at = d;
            self.walking[usize::from(live)] = i as u8;
            live += u8::from(d & LEAF == 0);
        }
        for &i in &self.walking[..usize::from(live)] {
            prefetch_addr(prefetch_index(&t.nodes, self.at[lane(i)] as usize));
        }
        (self.live, self.leaves) = (live, 0);
    }

    /// Moves every walking lane one level down, by the key's [`STRIDE`]
    /// bits from `offset`, prefetching the node or leaf it lands on.
    #[inline(never)]
    fn step<W: Word>(&mut self, t: &Poptrie<W>, offset: u32) {
        let (mut still, mut leaves) = (0u8, self.leaves);
        for j in 0..self.live {
            let i = lane(self.walking[usize::from(j)]);
            let (is_node, next) = t.nodes[self.at[i] as usize].step(self.keys[i].chunk(offset));
            self.at[i] = next;
            let node = prefetch_index(&t.nodes, next as usize) as usize;
            let leaf = prefetch_index(&t.leaves, next as usize) as usize;
            let keep_node = usize::from(is_node).wrapping_neg();
            prefetch_addr(((node & keep_node) | (leaf & !keep_node)) as *const u8);
            self.walking[usize::from(still)] = i as u8;
            still += u8::from(is_node);
            self.at_leaf[usize::from(leaves)] = i as u8;
            leaves += u8::from(!is_node);
        }
        (self.live, self.leaves) = (still, leaves);
    }

    /// Finishes the walking lanes one key at a time from `offset`, for keys
    /// whose walk goes past their top 64 bits.
    #[cold]
    fn finish_one_by_one<A: Copy, K: Key, W: Word>(
        &mut self,
        t: &Poptrie<W>,
        addrs: &[A],
        key: impl Fn(A) -> K,
        offset: u32,
        out: &mut [Option<u32>],
    ) {
        for &i in &self.walking[..usize::from(self.live)] {
            let i = lane(i);
            out[i] = t.walk(self.at[i], key(addrs[i]), offset).checked_sub(1);
        }
        self.live = 0;
    }

    /// Reads the leaves the walks ended on into `out`.
    fn finish<W: Word>(&self, t: &Poptrie<W>, out: &mut [Option<u32>]) {
        for &i in &self.at_leaf[..usize::from(self.leaves)] {
            let i = lane(i);
            out[i] = t.leaves[self.at[i] as usize].get().checked_sub(1);
        }
    }
}

/// One family's table, its leaves as narrow as its values allow. A table
/// that has gone wide stays so until the family is next built afresh.
#[derive(Clone)]
enum Table {
    Narrow(Poptrie<u16>),
    Wide(Poptrie<u32>),
}

impl Table {
    /// Compiles `trie`.
    fn build(trie: &Trie) -> Self {
        if trie.max_value() <= u16::LARGEST {
            Table::Narrow(Poptrie::build(trie))
        } else {
            Table::Wide(Poptrie::build(trie))
        }
    }

    /// See [`Poptrie::with_headroom`].
    fn with_headroom(self) -> Self {
        match self {
            Table::Narrow(t) => Table::Narrow(t.with_headroom()),
            Table::Wide(t) => Table::Wide(t.with_headroom()),
        }
    }

    /// See [`Poptrie::update`]; a narrow table given a value too wide for
    /// it is built again, wide.
    fn update(&mut self, trie: &Trie, changed: &[(u128, u32)]) {
        match self {
            Table::Narrow(_) if trie.max_value() > u16::LARGEST => {
                *self = Table::build(trie).with_headroom();
            }
            Table::Narrow(t) => t.update(trie, changed),
            Table::Wide(t) => t.update(trie, changed),
        }
    }

    #[inline(always)]
    fn lookup<K: Key>(&self, key: K) -> u32 {
        match self {
            Table::Narrow(t) => t.lookup(key),
            Table::Wide(t) => t.lookup(key),
        }
    }

    fn lookup_batch<A: Copy, K: Key>(
        &self,
        addrs: &[A],
        key: impl Fn(A) -> K + Copy,
        out: &mut [Option<u32>],
    ) {
        match self {
            Table::Narrow(t) => t.lookup_batch(addrs, key, out),
            Table::Wide(t) => t.lookup_batch(addrs, key, out),
        }
    }

    fn memory_bytes(&self) -> usize {
        match self {
            Table::Narrow(t) => t.memory_bytes(),
            Table::Wide(t) => t.memory_bytes(),
        }
    }
}

/// Poptrie tables for both families.
#[derive(Clone)]
pub struct PoptrieLpm {
    v4: Table,
    v6: Table,
}

impl PoptrieLpm {
    /// Compiles both families from their tries (values are group ids + 1).
    pub(super) fn from_tries(t4: &Trie, t6: &Trie) -> Self {
        PoptrieLpm {
            v4: Table::build(t4),
            v6: Table::build(t6),
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

/// An IPv4 address as a lookup key: left-aligned in a `u64`.
#[inline(always)]
fn v4_lookup_key(a: Ipv4Addr) -> u64 {
    u64::from(u32::from(a)) << 32
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
        self.v4.lookup(v4_lookup_key(a)).checked_sub(1)
    }

    fn lookup_v4_batch(&self, addrs: &[Ipv4Addr], out: &mut [Option<u32>]) {
        self.v4.lookup_batch(addrs, v4_lookup_key, out);
    }

    #[inline]
    fn lookup_v6(&self, a: Ipv6Addr) -> Option<u32> {
        self.v6.lookup(u128::from(a)).checked_sub(1)
    }

    fn lookup_v6_batch(&self, addrs: &[Ipv6Addr], out: &mut [Option<u32>]) {
        self.v6.lookup_batch(addrs, u128::from, out);
    }

    fn memory_bytes(&self) -> usize {
        self.v4.memory_bytes() + self.v6.memory_bytes()
    }
}
