//! The forwarding information base: route selection and longest-prefix match.
//!
//! Selection happens once per change, not per packet: among the routes of one
//! prefix whose port is up, the lowest metric wins and routes tied on it form
//! an ECMP group. Each distinct set of adjacencies becomes one
//! [`NextHopGroup`], and the LPM structure maps prefixes to group indices, so
//! a full table with a handful of next hops stores a handful of groups.
//!
//! The LPM structure sits behind the [`Lpm`] trait: the pipeline uses
//! [`PoptrieLpm`] (see its module for why), and the tree-bitmap crate
//! (`TreeBitmapLpm`, behind the `reference` feature) stays as the reference it is tested and benchmarked
//! against.
//!
//! A [`Fib`] is immutable once published. The running daemon changes routes
//! through a [`FibWriter`], which keeps two copies and updates the one the
//! workers are not using (see its module).

mod poptrie;
mod select;
#[cfg(any(test, feature = "reference"))]
mod treebitmap;
mod trie;
mod writer;

pub use poptrie::PoptrieLpm;
pub use select::{select, Selection};
#[cfg(any(test, feature = "reference"))]
pub use treebitmap::TreeBitmapLpm;
pub use writer::FibWriter;

use foldhash::fast::RandomState;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::port::PortId;

/// A route as the FIB sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix (host bits zero).
    pub prefix: IpNet,
    /// Egress port.
    pub port: PortId,
    /// Gateway, or `None` for a directly connected prefix.
    pub next_hop: Option<IpAddr>,
    /// Lower wins among routes of the same prefix.
    pub metric: u32,
}

/// Where a packet goes: a port and, unless directly connected, a gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Adjacency {
    /// Egress port.
    pub port: PortId,
    /// Gateway (`None`: the destination itself is on the link).
    pub next_hop: Option<IpAddr>,
}

/// One or more adjacencies sharing traffic by flow hash (ECMP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHopGroup {
    /// Members, sorted; never empty.
    pub members: Vec<Adjacency>,
}

impl NextHopGroup {
    /// The member for a flow hash.
    pub fn pick(&self, hash: u32) -> Adjacency {
        if self.members.len() == 1 {
            self.members[0]
        } else {
            // Multiply-shift maps the hash onto the members without a division.
            let i = (u64::from(hash) * self.members.len() as u64) >> 32;
            self.members[i as usize]
        }
    }
}

/// A longest-prefix-match table from prefixes to group indices.
pub trait Lpm: Send + Sync {
    /// Builds the table. Prefixes are canonical and unique per family.
    fn build(v4: &[(Ipv4Net, u32)], v6: &[(Ipv6Net, u32)]) -> Self
    where
        Self: Sized;
    /// The value of the longest prefix containing `a`.
    fn lookup_v4(&self, a: Ipv4Addr) -> Option<u32>;
    /// The value of the longest prefix containing `a`.
    fn lookup_v6(&self, a: Ipv6Addr) -> Option<u32>;
    /// [`Lpm::lookup_v4`] for a burst of addresses: `out[i]` answers
    /// `addrs[i]`. One tight loop keeps the structure hot in cache and lets
    /// independent lookups overlap; faster structures interleave them.
    fn lookup_v4_batch(&self, addrs: &[Ipv4Addr], out: &mut [Option<u32>]) {
        for (a, o) in addrs.iter().zip(out.iter_mut()) {
            *o = self.lookup_v4(*a);
        }
    }
    /// [`Lpm::lookup_v6`] for a burst of addresses, as
    /// [`Lpm::lookup_v4_batch`].
    fn lookup_v6_batch(&self, addrs: &[Ipv6Addr], out: &mut [Option<u32>]) {
        for (a, o) in addrs.iter().zip(out.iter_mut()) {
            *o = self.lookup_v6(*a);
        }
    }
    /// Approximate heap memory in bytes.
    fn memory_bytes(&self) -> usize;
}

/// Next-hop groups by member set: each distinct set is stored once and
/// keeps its id.
#[derive(Default)]
struct Groups {
    list: Vec<NextHopGroup>,
    ids: HashMap<Vec<Adjacency>, u32, RandomState>,
}

impl Groups {
    /// The id of the group of `members` (sorted and deduplicated here),
    /// made if new.
    fn id(&mut self, members: &mut Vec<Adjacency>) -> u32 {
        members.sort();
        members.dedup();
        if let Some(&id) = self.ids.get(members.as_slice()) {
            return id;
        }
        self.list.push(NextHopGroup {
            members: members.clone(),
        });
        let id = (self.list.len() - 1) as u32;
        self.ids.insert(members.clone(), id);
        id
    }
}

/// Groups, and each family's prefixes with their group ids.
type Grouped = (Groups, Vec<(Ipv4Net, u32)>, Vec<(Ipv6Net, u32)>);

/// Each prefix `selection` chose among `routes`, with the id of its
/// next-hop group (made in the returned groups), split by family: the input
/// of an LPM build.
fn grouped(routes: &[Route], selection: &Selection) -> Grouped {
    let mut groups = Groups::default();
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    // One buffer for every prefix's members; a group is stored once.
    let mut members: Vec<Adjacency> = Vec::new();
    for (prefix, chosen) in selection.prefixes() {
        members.clear();
        members.extend(chosen.iter().map(|&i| Adjacency {
            port: routes[i as usize].port,
            next_hop: routes[i as usize].next_hop,
        }));
        let id = groups.id(&mut members);
        match prefix {
            IpNet::V4(p) => v4.push((p, id)),
            IpNet::V6(p) => v6.push((p, id)),
        }
    }
    (groups, v4, v6)
}

/// An immutable FIB snapshot: the LPM table and the groups it points to.
/// The pipeline's is on [`PoptrieLpm`]; tests and benches build others.
#[derive(Clone)]
pub struct Fib<L = PoptrieLpm> {
    lpm: L,
    groups: Vec<NextHopGroup>,
}

impl Fib {
    /// Selects among `routes` (ports for which `is_up` is false are skipped)
    /// and builds the FIB on [`PoptrieLpm`]. Also returns which routes were
    /// selected.
    pub fn build(routes: &[Route], is_up: impl Fn(PortId) -> bool) -> (Fib, Selection) {
        Self::build_with::<PoptrieLpm>(routes, is_up)
    }

    /// [`Fib::build`] with a chosen LPM structure.
    pub fn build_with<L: Lpm>(
        routes: &[Route],
        is_up: impl Fn(PortId) -> bool,
    ) -> (Fib<L>, Selection) {
        let selection = select(routes, is_up);
        let (groups, v4, v6) = grouped(routes, &selection);
        let fib = Fib {
            lpm: L::build(&v4, &v6),
            groups: groups.list,
        };
        (fib, selection)
    }

    /// An empty FIB.
    pub fn empty() -> Fib {
        Self::build(&[], |_| true).0
    }
}

impl<L: Lpm> Fib<L> {
    /// The group index and group for `a`.
    #[inline]
    pub fn lookup(&self, a: IpAddr) -> Option<(u32, &NextHopGroup)> {
        let id = match a {
            IpAddr::V4(a) => self.lpm.lookup_v4(a),
            IpAddr::V6(a) => self.lpm.lookup_v6(a),
        }?;
        self.groups.get(id as usize).map(|g| (id, g))
    }

    /// Group ids for a burst of IPv4 addresses (see [`Lpm::lookup_v4_batch`]).
    #[inline]
    pub fn lookup_v4_batch(&self, addrs: &[Ipv4Addr], out: &mut [Option<u32>]) {
        self.lpm.lookup_v4_batch(addrs, out);
    }

    /// The group with id `id`.
    #[inline]
    pub fn group(&self, id: u32) -> Option<&NextHopGroup> {
        self.groups.get(id as usize)
    }

    /// All groups, indexed by group id.
    pub fn groups(&self) -> &[NextHopGroup] {
        &self.groups
    }

    /// Approximate memory of the LPM structure in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.lpm.memory_bytes()
    }
}

#[cfg(test)]
mod tests;
