//! Compiling a Poptrie from its binary trie, whole or (after route
//! changes) one direct-table entry at a time.

use super::{Node, Poptrie, Word, LEAF, STRIDE};
use crate::fib::trie::Trie;

/// Bits of the direct table. 18 for IPv4: a /24 is then one node below it.
/// 18 for IPv6 too: a /48 is five nodes below instead of six, for 0.2 MiB
/// more (20 bits costs 3 MiB and gains nothing).
const DIRECT_BITS: u32 = 18;
/// Incrementally updated tables are rebuilt (compacted) once garbage passes
/// one part in this many of their node or leaf array, and get that much
/// headroom when built.
const GARBAGE_SHARE: usize = 8;

impl<W: Word> Poptrie<W> {
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
    pub(super) fn build(trie: &Trie) -> Self {
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
    /// must grow (compaction usually comes before that).
    pub(super) fn with_headroom(mut self) -> Self {
        self.nodes.reserve_exact(self.nodes.len() / GARBAGE_SHARE);
        self.leaves.reserve_exact(self.leaves.len() / GARBAGE_SHARE);
        self
    }

    /// Compiles again the entries under the prefixes `changed` (left-aligned
    /// keys and lengths) after `trie` changed there. Each entry's new subtree
    /// replaces its old one in place when it fits, else is appended and the
    /// old one left as garbage (as is what a smaller one leaves); when
    /// garbage passes a share of the arrays, or the change covers much of
    /// the direct table, or the family gained its first or lost its last
    /// prefix, the whole family is rebuilt instead (which also compacts it).
    pub(super) fn update(&mut self, trie: &Trie, changed: &[(u128, u32)]) {
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
fn fill<W: Word>(trie: &Trie, t: &mut Poptrie<W>, slot: u32, at: u32, value: u32) {
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
            t.leaves.push(W::new(*leaf));
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
