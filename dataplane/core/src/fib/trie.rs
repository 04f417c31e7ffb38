//! A binary trie of one family's prefixes: what a Poptrie is compiled from.
//!
//! It is the build's input and, in a [`super::FibWriter`], the state kept
//! between changes: a route change edits one path of it, and only the
//! Poptrie entries under that path are compiled again. Keys are
//! left-aligned in a `u128` (IPv4 in the top 32 bits).

/// `[child0, child1, value]`; a child of 0 is "none" (the root is never a
/// child) and a value of 0 is "no prefix here".
type TrieNode = [u32; 3];

/// A binary trie from prefixes to values (≥ 1).
#[derive(Clone)]
pub(super) struct Trie {
    nodes: Vec<TrieNode>,
    /// Slots of removed nodes, reused by later inserts.
    free: Vec<u32>,
    /// The largest value ever inserted (not lowered by removals).
    max_value: u32,
    /// Prefixes with a value.
    prefixes: usize,
}

impl Trie {
    /// An empty trie.
    pub(super) fn new() -> Self {
        Trie {
            nodes: vec![[0; 3]],
            free: Vec::new(),
            max_value: 0,
            prefixes: 0,
        }
    }

    fn bit(key: u128, i: u32) -> usize {
        ((key >> (127 - i)) & 1) as usize
    }

    /// Sets the value of the `len`-bit prefix `key` to `value` (≥ 1).
    pub(super) fn insert(&mut self, key: u128, len: u32, value: u32) {
        let mut n = 0usize;
        for i in 0..len {
            let bit = Self::bit(key, i);
            if self.nodes[n][bit] == 0 {
                let new = match self.free.pop() {
                    Some(slot) => {
                        self.nodes[slot as usize] = [0; 3];
                        slot
                    }
                    None => {
                        self.nodes.push([0; 3]);
                        (self.nodes.len() - 1) as u32
                    }
                };
                self.nodes[n][bit] = new;
            }
            n = self.nodes[n][bit] as usize;
        }
        if self.nodes[n][2] == 0 {
            self.prefixes += 1;
        }
        self.nodes[n][2] = value;
        self.max_value = self.max_value.max(value);
    }

    /// The largest value ever inserted: a bound on the values it holds.
    pub(super) fn max_value(&self) -> u32 {
        self.max_value
    }

    /// Removes the `len`-bit prefix `key`, and the nodes that then lead to
    /// nothing (so the trie stays what a fresh build of its prefixes would
    /// be). Nothing happens when it is absent.
    pub(super) fn remove(&mut self, key: u128, len: u32) {
        let mut path: Vec<u32> = Vec::with_capacity(len as usize + 1);
        let mut n = 0u32;
        path.push(0);
        for i in 0..len {
            n = self.nodes[n as usize][Self::bit(key, i)];
            if n == 0 {
                return;
            }
            path.push(n);
        }
        if self.nodes[n as usize][2] != 0 {
            self.prefixes -= 1;
        }
        self.nodes[n as usize][2] = 0;
        // Unlink empty leaves from the bottom up, stopping at the root.
        for depth in (1..path.len()).rev() {
            let node = path[depth];
            if self.nodes[node as usize] != [0; 3] {
                break;
            }
            let parent = path[depth - 1] as usize;
            self.nodes[parent][Self::bit(key, depth as u32 - 1)] = 0;
            self.free.push(node);
        }
    }

    /// The value at the root (the `/0`), or 0.
    pub(super) fn root_value(&self) -> u32 {
        self.nodes[0][2]
    }

    /// Walks `n` bits of `path` (most significant first) down from `node`,
    /// carrying the value of the longest prefix seen. Returns the node
    /// reached, if the path exists all the way, and that value.
    pub(super) fn descend(
        &self,
        mut node: u32,
        path: u32,
        n: u32,
        mut value: u32,
    ) -> (Option<u32>, u32) {
        for i in (0..n).rev() {
            let next = self.nodes[node as usize][((path >> i) & 1) as usize];
            if next == 0 {
                return (None, value);
            }
            node = next;
            let v = self.nodes[node as usize][2];
            if v != 0 {
                value = v;
            }
        }
        (Some(node), value)
    }

    /// True when `node` has a child.
    pub(super) fn has_children(&self, node: u32) -> bool {
        let n = self.nodes[node as usize];
        n[0] != 0 || n[1] != 0
    }

    /// Prefixes with a value.
    pub(super) fn prefixes(&self) -> usize {
        self.prefixes
    }

    /// Nodes in use (the root included).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Approximate heap memory in bytes.
    pub(super) fn memory_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<TrieNode>() + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(a: u32) -> u128 {
        u128::from(a) << 96
    }

    #[test]
    fn removal_prunes_back_to_what_remains() {
        let mut t = Trie::new();
        t.insert(key(0x0a00_0000), 8, 1);
        let with_one = t.len();
        t.insert(key(0x0a01_0200), 24, 2);
        t.insert(key(0x0a01_0000), 16, 3);
        assert_eq!(t.len(), with_one + 16);
        t.remove(key(0x0a01_0200), 24);
        assert_eq!(t.len(), with_one + 8, "the /16 keeps its path");
        t.remove(key(0x0a01_0000), 16);
        assert_eq!(t.len(), with_one);
        // Absent prefixes change nothing; freed nodes are reused.
        t.remove(key(0x0b00_0000), 8);
        t.remove(key(0x0a00_0000), 9);
        assert_eq!(t.len(), with_one);
        t.insert(key(0x0a01_0000), 16, 3);
        assert_eq!(t.nodes.len(), with_one + 16);
        t.remove(key(0x0a00_0000), 8);
        let (_, v) = t.descend(0, 0x0a01, 16, t.root_value());
        assert_eq!(v, 3);
        let (_, v) = t.descend(0, 0x0a02, 16, t.root_value());
        assert_eq!(v, 0);
    }

    #[test]
    fn the_prefix_count_follows_a_naive_set() {
        let mut t = Trie::new();
        let mut set = std::collections::HashSet::new();
        let mut x = 0x9e37_79b9u32;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = 8 + x % 17;
            let k = key(x & (u32::MAX << (32 - len)));
            if x & 0x100 == 0 {
                t.insert(k, len, 1 + x % 7);
                set.insert((k, len));
            } else {
                t.remove(k, len);
                set.remove(&(k, len));
            }
        }
        assert_eq!(t.prefixes(), set.len());
    }
}
