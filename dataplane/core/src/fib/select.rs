//! Route selection: longest prefix first (the LPM's job), then, among the
//! routes of one prefix, the lowest metric on a port that is up; ties form an
//! ECMP group.

use foldhash::fast::RandomState;
use ipnet::IpNet;
use std::collections::HashMap;

use super::Route;
use crate::port::PortId;

/// Which routes the FIB uses.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// `selected[i]` is true when `routes[i]` is in the FIB.
    pub selected: Vec<bool>,
    /// Prefixes with a usable route, in first-seen order.
    prefixes: Vec<IpNet>,
    /// Prefix `k`'s selected routes are `chosen[starts[k]..starts[k + 1]]`:
    /// flat arrays, not a vector per prefix, since a full table has nearly
    /// a million prefixes.
    starts: Vec<u32>,
    chosen: Vec<u32>,
}

impl Selection {
    /// Each prefix that has a usable route, with the indices of its selected
    /// routes (in route order).
    pub fn prefixes(&self) -> impl Iterator<Item = (IpNet, &[u32])> + '_ {
        self.prefixes.iter().enumerate().map(|(k, p)| {
            let (a, b) = (self.starts[k] as usize, self.starts[k + 1] as usize);
            (*p, &self.chosen[a..b])
        })
    }
}

/// Marks, for each prefix, the routes with the lowest metric among those whose
/// port is up.
pub fn select(routes: &[Route], is_up: impl Fn(PortId) -> bool) -> Selection {
    const DOWN: u32 = u32::MAX;
    let mut index: HashMap<IpNet, u32, RandomState> =
        HashMap::with_capacity_and_hasher(routes.len(), RandomState::default());
    let mut prefixes: Vec<IpNet> = Vec::new();
    let mut best: Vec<u32> = Vec::new();
    // Each route's prefix slot (DOWN: its port is down), and each slot's
    // lowest metric.
    let slots: Vec<u32> = routes
        .iter()
        .map(|r| {
            if !is_up(r.port) {
                return DOWN;
            }
            let slot = *index.entry(r.prefix).or_insert_with(|| {
                prefixes.push(r.prefix);
                best.push(u32::MAX);
                (prefixes.len() - 1) as u32
            });
            let b = &mut best[slot as usize];
            *b = (*b).min(r.metric);
            slot
        })
        .collect();
    drop(index);
    let wins = |i: usize| slots[i] != DOWN && routes[i].metric == best[slots[i] as usize];
    // Count each slot's winners, then place them.
    let mut starts = vec![0u32; prefixes.len() + 1];
    for i in (0..routes.len()).filter(|&i| wins(i)) {
        starts[slots[i] as usize + 1] += 1;
    }
    for k in 1..starts.len() {
        starts[k] += starts[k - 1];
    }
    let mut next = starts.clone();
    let mut chosen = vec![0u32; starts[prefixes.len()] as usize];
    let mut selected = vec![false; routes.len()];
    for i in (0..routes.len()).filter(|&i| wins(i)) {
        let at = &mut next[slots[i] as usize];
        chosen[*at as usize] = i as u32;
        *at += 1;
        selected[i] = true;
    }
    Selection {
        selected,
        prefixes,
        starts,
        chosen,
    }
}
