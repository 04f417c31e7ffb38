//! The reference LPM: the tree-bitmap crate (Eatherton et al., 2004).

use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};
use treebitmap::IpLookupTable;

use super::Lpm;

/// Tree-bitmap tables for both families.
pub struct TreeBitmapLpm {
    v4: IpLookupTable<Ipv4Addr, u32>,
    v6: IpLookupTable<Ipv6Addr, u32>,
}

impl Lpm for TreeBitmapLpm {
    fn build(v4: &[(Ipv4Net, u32)], v6: &[(Ipv6Net, u32)]) -> Self {
        let mut t4 = IpLookupTable::new();
        for (p, v) in v4 {
            t4.insert(p.network(), u32::from(p.prefix_len()), *v);
        }
        let mut t6 = IpLookupTable::new();
        for (p, v) in v6 {
            t6.insert(p.network(), u32::from(p.prefix_len()), *v);
        }
        TreeBitmapLpm { v4: t4, v6: t6 }
    }

    #[inline]
    fn lookup_v4(&self, a: Ipv4Addr) -> Option<u32> {
        self.v4.longest_match(a).map(|(_, _, v)| *v)
    }

    #[inline]
    fn lookup_v6(&self, a: Ipv6Addr) -> Option<u32> {
        self.v6.longest_match(a).map(|(_, _, v)| *v)
    }

    fn memory_bytes(&self) -> usize {
        let (n4, r4) = self.v4.mem_usage();
        let (n6, r6) = self.v6.mem_usage();
        n4 + r4 + n6 + r6
    }
}
