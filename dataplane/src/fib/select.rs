//! Route selection: longest prefix first (the LPM's job), then, among the
//! routes of one prefix, the lowest metric on a port that is up; ties form an
//! ECMP group.

use ipnet::IpNet;
use std::collections::HashMap;

use super::{Adjacency, Route};
use crate::port::PortId;

/// Which routes the FIB uses.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// `selected[i]` is true when `routes[i]` is in the FIB.
    pub selected: Vec<bool>,
    /// Prefixes in first-seen order with the indices of their selected routes.
    by_prefix: Vec<(IpNet, Vec<usize>)>,
}

impl Selection {
    /// Each prefix that has a usable route, with its adjacencies (sorted,
    /// deduplicated).
    pub fn prefixes<'a>(
        &'a self,
        routes: &'a [Route],
    ) -> impl Iterator<Item = (IpNet, Vec<Adjacency>)> + 'a {
        self.by_prefix
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(p, idx)| {
                let mut members: Vec<Adjacency> = idx
                    .iter()
                    .map(|&i| Adjacency {
                        port: routes[i].port,
                        next_hop: routes[i].next_hop,
                    })
                    .collect();
                members.sort();
                members.dedup();
                (*p, members)
            })
    }
}

/// Marks, for each prefix, the routes with the lowest metric among those whose
/// port is up.
pub fn select(routes: &[Route], is_up: impl Fn(PortId) -> bool) -> Selection {
    let mut index: HashMap<IpNet, usize> = HashMap::with_capacity(routes.len());
    let mut by_prefix: Vec<(IpNet, Vec<usize>)> = Vec::new();
    let mut best: Vec<u32> = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        if !is_up(r.port) {
            continue;
        }
        let slot = *index.entry(r.prefix).or_insert_with(|| {
            by_prefix.push((r.prefix, Vec::new()));
            best.push(u32::MAX);
            by_prefix.len() - 1
        });
        let chosen = &mut by_prefix[slot].1;
        if r.metric < best[slot] || chosen.is_empty() {
            best[slot] = r.metric;
            chosen.clear();
            chosen.push(i);
        } else if r.metric == best[slot] {
            chosen.push(i);
        }
    }
    let mut selected = vec![false; routes.len()];
    for (_, idx) in &by_prefix {
        for &i in idx {
            selected[i] = true;
        }
    }
    Selection {
        selected,
        by_prefix,
    }
}
