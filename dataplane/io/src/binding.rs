//! What a port is bound to: the `bind` value of a `[[port]]`.

use std::fmt;
use std::path::PathBuf;

use super::sys::IFNAME_MAX;

/// How a port is attached to the outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// `tap:NAME` or `tap:NAME@NETNS`: a TAP device, created if absent, in
    /// edgefwd's own network namespace or in `NETNS` (a name under
    /// `/run/netns`, or a path such as `/proc/PID/ns/net`).
    Tap {
        /// Device name.
        name: String,
        /// Network namespace the device lives in.
        netns: Option<String>,
    },
    /// `afpacket:IFNAME` or `afpacket:IFNAME@NETNS`: a real NIC through an
    /// AF_PACKET socket.
    AfPacket {
        /// Interface name.
        name: String,
        /// Network namespace the interface lives in.
        netns: Option<String>,
    },
    /// `afxdp:IFNAME` or `afxdp:IFNAME@NETNS`: a NIC or veth through AF_XDP
    /// sockets and an XDP program.
    AfXdp {
        /// Interface name.
        name: String,
        /// Network namespace the interface lives in.
        netns: Option<String>,
    },
    /// `vhost-user:PATH`: a VM's virtio-net device over vhost-user, edgefwd
    /// listening at the Unix socket `PATH`; `vhost-user:PATH?client`:
    /// edgefwd connects to a frontend listening there.
    VhostUser {
        /// The socket's path.
        path: PathBuf,
        /// edgefwd connects (the frontend listens).
        client: bool,
    },
    /// `pcap`: fed and drained by `replay`.
    Pcap,
    /// `none`: administratively down.
    None,
}

/// Linux interface names: 1 to 15 bytes, no '/', ':', '@' or white space.
pub fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= IFNAME_MAX
        && !n
            .chars()
            .any(|c| c == '/' || c == ':' || c == '@' || c.is_whitespace() || c == '\0')
}

impl Binding {
    /// Parses a `bind` value; `None` when it is not one of the forms above.
    pub fn parse(s: &str) -> Option<Binding> {
        if let Some(rest) = s.strip_prefix("vhost-user:") {
            let (path, client) = match rest.strip_suffix("?client") {
                Some(p) => (p, true),
                None => (rest, false),
            };
            let ok = !path.is_empty() && !path.contains('\0') && path.len() < 108;
            return ok.then(|| Binding::VhostUser {
                path: PathBuf::from(path),
                client,
            });
        }
        let Some((kind, rest)) = s.split_once(':') else {
            return match s {
                "pcap" => Some(Binding::Pcap),
                "none" => Some(Binding::None),
                _ => None,
            };
        };
        let (name, netns) = match rest.split_once('@') {
            Some((n, ns)) if !ns.is_empty() && !ns.contains('\0') => (n, Some(ns.to_owned())),
            Some(_) => return None,
            None => (rest, None),
        };
        if !valid_ifname(name) {
            return None;
        }
        let name = name.to_owned();
        match kind {
            "tap" => Some(Binding::Tap { name, netns }),
            "afpacket" => Some(Binding::AfPacket { name, netns }),
            "afxdp" => Some(Binding::AfXdp { name, netns }),
            _ => None,
        }
    }
}

impl Binding {
    /// Where the device's kernel link lives, for watching its changes:
    /// `Some(None)` in this process's namespace, `Some(Some(path))` in
    /// another, `None` for bindings without a kernel link.
    pub fn link_namespace(&self) -> Option<Option<PathBuf>> {
        match self {
            Binding::Tap { netns, .. }
            | Binding::AfPacket { netns, .. }
            | Binding::AfXdp { netns, .. } => Some(netns.as_deref().map(netns_path)),
            Binding::VhostUser { .. } | Binding::Pcap | Binding::None => None,
        }
    }
}

/// The file of a network namespace named in a binding: a bare name is one
/// made by `ip netns add`, anything with a '/' is a path.
pub fn netns_path(netns: &str) -> PathBuf {
    if netns.contains('/') {
        PathBuf::from(netns)
    } else {
        PathBuf::from("/run/netns").join(netns)
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Binding::Tap { name, netns: None } => write!(f, "tap:{name}"),
            Binding::Tap {
                name,
                netns: Some(ns),
            } => write!(f, "tap:{name}@{ns}"),
            Binding::AfPacket { name, netns: None } => write!(f, "afpacket:{name}"),
            Binding::AfPacket {
                name,
                netns: Some(ns),
            } => write!(f, "afpacket:{name}@{ns}"),
            Binding::AfXdp { name, netns: None } => write!(f, "afxdp:{name}"),
            Binding::AfXdp {
                name,
                netns: Some(ns),
            } => write!(f, "afxdp:{name}@{ns}"),
            Binding::VhostUser { path, client } => {
                write!(f, "vhost-user:{}", path.display())?;
                if *client {
                    f.write_str("?client")?;
                }
                Ok(())
            }
            Binding::Pcap => f.write_str("pcap"),
            Binding::None => f.write_str("none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for s in [
            "tap:vm1",
            "tap:edge-port2@h2",
            "tap:p@/proc/1/ns/net",
            "afpacket:eth0",
            "afpacket:veth1@r",
            "afxdp:eth1",
            "afxdp:veth1@r",
            "vhost-user:/run/vm1.sock",
            "vhost-user:vm@2.sock?client",
            "pcap",
            "none",
        ] {
            let b = Binding::parse(s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(b.to_string(), s);
        }
        for bad in [
            "tap:",
            "tap:x@",
            "tap:@ns",
            "tap:sixteen-chars-xx",
            "tun:x",
            "afpacket:a/b",
            "vhost-user:",
            "vhost-user:?client",
            "PCAP",
            "",
        ] {
            assert_eq!(Binding::parse(bad), None, "{bad}");
        }
        assert_eq!(netns_path("h2"), PathBuf::from("/run/netns/h2"));
        assert_eq!(
            netns_path("/proc/1/ns/net"),
            PathBuf::from("/proc/1/ns/net")
        );
    }
}
