//! Route lists in the `PREFIX/LEN NEXTHOP` format of the shared RIB files
//! (one route a line; NEXTHOP is an address, `-`, or a label).

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::IpAddr;
use std::path::Path;

use crate::config::parse_prefix;

/// One line of a route list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedRoute {
    /// Destination prefix.
    pub prefix: IpNet,
    /// Next hop, when the line gives an address.
    pub next_hop: Option<IpAddr>,
}

/// A route list split by family, each prefix with a value: the input of
/// an LPM structure.
#[derive(Clone, Debug, Default)]
pub struct Entries {
    /// IPv4 prefixes.
    pub v4: Vec<(Ipv4Net, u32)>,
    /// IPv6 prefixes.
    pub v6: Vec<(Ipv6Net, u32)>,
}

/// Splits `routes` by family; `value(i)` is the value of `routes[i]`.
pub fn entries(routes: &[ListedRoute], value: impl Fn(usize) -> u32) -> Entries {
    let mut e = Entries::default();
    for (i, r) in routes.iter().enumerate() {
        match r.prefix {
            IpNet::V4(p) => e.v4.push((p, value(i))),
            IpNet::V6(p) => e.v6.push((p, value(i))),
        }
    }
    e
}

/// Parses a route list; an error names the line.
pub fn parse(text: &str) -> Result<Vec<ListedRoute>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split_whitespace();
        let prefix = parse_prefix(f.next().unwrap_or_default())
            .map_err(|e| format!("line {}: {e}", i + 1))?;
        let next_hop = f.next().and_then(|n| n.parse().ok());
        out.push(ListedRoute { prefix, next_hop });
    }
    Ok(out)
}

/// Reads and parses a route list file.
pub fn load(path: &Path) -> Result<Vec<ListedRoute>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// One line of a BGP update stream (`../shared/data/rib/updates-*`):
/// announce (`A PREFIX NEXTHOP PEER`) or withdraw (`W PREFIX - PEER`).
/// Returns whether it announces, the prefix and the next hop as written;
/// `None` when the line is not one.
pub fn parse_update(line: &str) -> Option<(bool, IpNet, &str)> {
    let mut f = line.split_whitespace();
    let announce = match f.next()? {
        "A" => true,
        "W" => false,
        _ => return None,
    };
    let prefix = f.next()?.parse().ok()?;
    let next_hop = f.next()?;
    Some((announce, prefix, next_hop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shared_format() {
        let r = parse("1.0.0.0/24 -\n2001:db8::/32 13\n10.0.0.0/8 192.0.2.1\n").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].next_hop, None);
        assert_eq!(r[1].next_hop, None, "a label is not an address");
        assert_eq!(r[2].next_hop, Some("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn parses_update_lines() {
        let a = parse_update("A 192.140.252.0/22 37.49.236.123 37.49.236.123").unwrap();
        assert_eq!(
            a,
            (true, "192.140.252.0/22".parse().unwrap(), "37.49.236.123")
        );
        let w = parse_update("W 2804:14d::/40 - 2001:7f8:54::188").unwrap();
        assert_eq!(w, (false, "2804:14d::/40".parse().unwrap(), "-"));
        assert_eq!(parse_update("X 10.0.0.0/8 - 1.2.3.4"), None);
        assert_eq!(parse_update("A 10.0.0.0/8"), None);
    }

    #[test]
    fn names_the_bad_line() {
        let e = parse("1.0.0.0/24 -\n1.0.0.1/24 -\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
    }
}
