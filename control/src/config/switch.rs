//! Validation of `[[switch]]`, switch member ports and `[nat]`.
//!
//! An internal switch becomes one more port of the config (its gateway
//! interface, named after it, after the `[[port]]`s), so routes, neighbours
//! and the FIB treat it like any routed port. NAT timeouts below what the
//! RFCs allow are refused rather than quietly raised: an operator asking
//! for a 30 s UDP timeout should learn why not.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use edgefwd_core::l2::{PortSecurity, DEFAULT_AGING, DEFAULT_MAC_LIMIT};
use edgefwd_core::nat::{Filtering, NatPolicy};
use edgefwd_core::packet::MacAddr;
use ipnet::IpNet;
use toml::Spanned;

use super::fields::{ip_address, unicast_mac, valid_name};
use super::raw::{Lines, RawNat, RawPort, RawSwitch};
use super::{Binding, ConfigError, PortConfig, PortRole, SwitchKind, SwitchSpec, DEFAULT_MTU};

/// A `[[port]]` with `switch` set: a member, no addresses of its own.
pub(super) fn member(
    l: &Lines,
    i: usize,
    p: &RawPort,
    sw: &Spanned<String>,
    bind: Binding,
) -> Result<PortConfig, ConfigError> {
    let f = |name: &str| format!("port[{i}].{name}");
    let not_on_member = "a switch member has no address or MAC of its own (see allowed_mac)";
    if let Some(m) = &p.mac {
        return Err(l.at(m, f("mac"), not_on_member));
    }
    if let Some(a) = p.addresses.first() {
        return Err(l.at(a, f("addresses"), not_on_member));
    }
    if let Some(g) = &p.gateway {
        return Err(l.at(g, f("gateway"), not_on_member));
    }
    if let Some(m) = &p.mtu {
        return Err(l.at(
            m,
            f("mtu"),
            "a switch member takes its switch's frames as they are",
        ));
    }
    let mac = match &p.allowed_mac {
        Some(m) => Some(unicast_mac(l, m, f("allowed_mac"))?),
        None => None,
    };
    let mut addresses: Vec<IpAddr> = Vec::new();
    for (j, a) in p.allowed_addresses.iter().enumerate() {
        addresses.push(ip_address(
            l,
            a,
            format!("port[{i}].allowed_addresses[{j}]"),
        )?);
    }
    Ok(PortConfig {
        name: p.name.get_ref().clone(),
        bind,
        mac: MacAddr::ZERO,
        addresses: Vec::new(),
        gateway: None,
        gateway_metric: 0,
        mtu: DEFAULT_MTU,
        role: PortRole::Member {
            switch: sw.get_ref().clone(),
            security: PortSecurity { mac, addresses },
        },
    })
}

/// Checks every `[[switch]]` against the ports, and adds each internal
/// switch's gateway interface to `ports`.
pub(super) fn switches(
    l: &Lines,
    raw: &[RawSwitch],
    ports: &mut Vec<PortConfig>,
    macs: &mut HashSet<MacAddr>,
    addrs: &mut HashSet<IpAddr>,
) -> Result<Vec<SwitchSpec>, ConfigError> {
    let mut out: Vec<SwitchSpec> = Vec::new();
    let mut gateways = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let f = |name: &str| format!("switch[{i}].{name}");
        let name = s.name.get_ref();
        if !valid_name(name) {
            return Err(l.at(
                &s.name,
                f("name"),
                format!("{name:?} is not a valid switch name"),
            ));
        }
        if out.iter().any(|o| &o.name == name) || ports.iter().any(|p| &p.name == name) {
            return Err(l.at(
                &s.name,
                f("name"),
                format!("{name:?} is already the name of a port or switch"),
            ));
        }
        let kind = match s.kind.get_ref().as_str() {
            "internal" => SwitchKind::Internal,
            "external" => SwitchKind::External,
            k => {
                return Err(l.at(
                    &s.kind,
                    f("kind"),
                    format!("{k:?}: expected internal or external"),
                ))
            }
        };
        let routed = |field: &Spanned<String>, what: &str| -> Result<String, ConfigError> {
            let p = ports
                .iter()
                .find(|p| &p.name == field.get_ref())
                .ok_or_else(|| {
                    l.at(
                        field,
                        f(what),
                        format!("unknown port {:?}", field.get_ref()),
                    )
                })?;
            if p.role != PortRole::Routed {
                return Err(l.at(field, f(what), format!("{} is not a routed port", p.name)));
            }
            Ok(p.name.clone())
        };
        let mut spec = SwitchSpec {
            name: name.clone(),
            kind,
            nat: None,
            uplink: None,
            mac_limit: DEFAULT_MAC_LIMIT,
            aging: DEFAULT_AGING,
        };
        if let Some(m) = &s.mac_limit {
            if !(1..=1 << 20).contains(m.get_ref()) {
                return Err(l.at(m, f("mac_limit"), "must be between 1 and 1048576"));
            }
            spec.mac_limit = *m.get_ref();
        }
        if let Some(a) = &s.mac_aging {
            if !(10..=1_000_000).contains(a.get_ref()) {
                return Err(l.at(a, f("mac_aging"), "must be between 10 and 1000000 seconds"));
            }
            spec.aging = Duration::from_secs(*a.get_ref());
        }
        match kind {
            SwitchKind::Internal => {
                if let Some(u) = &s.uplink {
                    return Err(l.at(u, f("uplink"), "an internal switch has no uplink (see nat)"));
                }
                let a = s.address.as_ref().ok_or_else(|| {
                    l.at(
                        &s.name,
                        f("address"),
                        "missing (an internal switch's gateway address, like 172.28.0.1/24)",
                    )
                })?;
                let net: IpNet = a.get_ref().parse().map_err(|_| {
                    l.at(
                        a,
                        f("address"),
                        format!("{:?} is not ADDRESS/LENGTH", a.get_ref()),
                    )
                })?;
                let host = net.addr();
                if !host.is_ipv4()
                    || net.prefix_len() > 30
                    || host == net.network()
                    || host == net.broadcast()
                {
                    return Err(l.at(
                        a,
                        f("address"),
                        format!("{net} is not a usable IPv4 host address on a subnet"),
                    ));
                }
                if !addrs.insert(host) {
                    return Err(l.at(a, f("address"), format!("duplicate address {host}")));
                }
                let mac = match &s.mac {
                    Some(m) => unicast_mac(l, m, f("mac"))?,
                    // Locally administered, from the switch's index.
                    None => MacAddr([0x02, 0xed, 0x5e, 0, (i >> 8) as u8, i as u8]),
                };
                if !macs.insert(mac) {
                    let m = s.mac.as_ref().unwrap_or(&s.name);
                    return Err(l.at(m, f("mac"), format!("duplicate MAC {mac}")));
                }
                if let Some(n) = &s.nat {
                    let port = routed(n, "nat")?;
                    let p = ports.iter().find(|p| p.name == port);
                    if !p.is_some_and(|p| p.addresses.iter().any(|a| a.addr().is_ipv4())) {
                        return Err(l.at(
                            n,
                            f("nat"),
                            format!("{port} has no IPv4 address to masquerade as"),
                        ));
                    }
                    spec.nat = Some(port);
                }
                gateways.push(PortConfig {
                    name: name.clone(),
                    bind: Binding::None,
                    mac,
                    addresses: vec![net],
                    gateway: None,
                    gateway_metric: 0,
                    mtu: DEFAULT_MTU,
                    role: PortRole::Gateway {
                        switch: name.clone(),
                    },
                });
            }
            SwitchKind::External => {
                for (v, what) in [(&s.address, "address"), (&s.mac, "mac"), (&s.nat, "nat")] {
                    if let Some(v) = v {
                        return Err(l.at(
                            v,
                            f(what),
                            "an external switch bridges onto its uplink and has none",
                        ));
                    }
                }
                let u = s.uplink.as_ref().ok_or_else(|| {
                    l.at(
                        &s.name,
                        f("uplink"),
                        "missing (the routed port whose network the switch bridges onto)",
                    )
                })?;
                let port = routed(u, "uplink")?;
                if out.iter().any(|o| o.uplink.as_deref() == Some(&port)) {
                    return Err(l.at(
                        u,
                        f("uplink"),
                        format!("{port} is already another switch's uplink"),
                    ));
                }
                spec.uplink = Some(port);
            }
        }
        out.push(spec);
    }
    for (i, p) in ports.iter().enumerate() {
        if let PortRole::Member { switch, .. } = &p.role {
            if !out.iter().any(|s| &s.name == switch) {
                return Err(ConfigError {
                    file: l.file.clone(),
                    line: None,
                    field: format!("port[{i}].switch"),
                    message: format!("unknown switch {switch:?}"),
                });
            }
        }
    }
    ports.extend(gateways);
    Ok(out)
}

/// `[nat]`, with the RFC minimums enforced.
pub(super) fn nat(l: &Lines, raw: &RawNat) -> Result<NatPolicy, ConfigError> {
    let d = NatPolicy::default();
    let filtering = match raw.filtering.as_ref().map(|f| (f, f.get_ref().as_str())) {
        None | Some((_, "address-dependent")) => Filtering::AddressDependent,
        Some((_, "endpoint-independent")) => Filtering::EndpointIndependent,
        Some((f, other)) => {
            return Err(l.at(
                f,
                "nat.filtering",
                format!("{other:?}: expected address-dependent or endpoint-independent"),
            ))
        }
    };
    let ports = match &raw.port_range {
        None => d.ports.clone(),
        Some(r) => {
            let parsed = r.get_ref().split_once('-').and_then(|(a, b)| {
                Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
            });
            match parsed {
                Some((a, b)) if a >= 1024 && a <= b => a..=b,
                _ => {
                    return Err(l.at(
                        r,
                        "nat.port_range",
                        format!(
                            "{:?}: expected LOW-HIGH with 1024 <= LOW <= HIGH <= 65535",
                            r.get_ref()
                        ),
                    ))
                }
            }
        }
    };
    let secs =
        |v: &Option<Spanned<u64>>, field: &str, min: u64, why: &str, default: Duration| match v {
            None => Ok(default),
            Some(s) if *s.get_ref() < min => {
                Err(l.at(s, field, format!("must be at least {min} seconds ({why})")))
            }
            Some(s) if *s.get_ref() > 1 << 31 => Err(l.at(s, field, "too large")),
            Some(s) => Ok(Duration::from_secs(*s.get_ref())),
        };
    let count = |v: &Option<Spanned<usize>>, field: &str, default: usize| match v {
        Some(n) if !(1..=1 << 24).contains(n.get_ref()) => {
            Err(l.at(n, field, "must be between 1 and 16777216"))
        }
        Some(n) => Ok(*n.get_ref()),
        None => Ok(default),
    };
    Ok(NatPolicy {
        filtering,
        ports,
        udp_timeout: secs(
            &raw.udp_timeout,
            "nat.udp_timeout",
            120,
            "RFC 4787 REQ-5",
            d.udp_timeout,
        )?,
        tcp_established: secs(
            &raw.tcp_established_timeout,
            "nat.tcp_established_timeout",
            7440,
            "RFC 5382 REQ-5",
            d.tcp_established,
        )?,
        tcp_transitory: secs(
            &raw.tcp_transitory_timeout,
            "nat.tcp_transitory_timeout",
            240,
            "RFC 5382 REQ-5",
            d.tcp_transitory,
        )?,
        icmp_timeout: secs(
            &raw.icmp_timeout,
            "nat.icmp_timeout",
            60,
            "RFC 5508 REQ-1",
            d.icmp_timeout,
        )?,
        max_sessions: count(&raw.max_sessions, "nat.max_sessions", d.max_sessions)?,
        max_sessions_per_host: count(
            &raw.max_sessions_per_host,
            "nat.max_sessions_per_host",
            d.max_sessions_per_host,
        )?,
        port_secret: None,
    })
}
