//! Checks of single fields (names, addresses, MACs) shared by the
//! validation of ports, routes and switches, each refusal naming its field.

use edgefwd_core::packet::MacAddr;
use std::net::IpAddr;
use toml::Spanned;

use super::raw::Lines;
use super::ConfigError;

/// True when `s` is a valid port or switch name.
pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Parses an IP address field.
pub(super) fn ip_address(
    l: &Lines,
    s: &Spanned<String>,
    field: String,
) -> Result<IpAddr, ConfigError> {
    s.get_ref()
        .parse()
        .map_err(|_| l.at(s, field, format!("{:?} is not an IP address", s.get_ref())))
}

/// Parses a MAC field that must be a unicast address.
pub(super) fn unicast_mac(
    l: &Lines,
    s: &Spanned<String>,
    field: String,
) -> Result<MacAddr, ConfigError> {
    let mac: MacAddr = s
        .get_ref()
        .parse()
        .map_err(|e| l.at(s, field.clone(), format!("{:?}: {e}", s.get_ref())))?;
    if mac.is_multicast() || mac == MacAddr::ZERO {
        return Err(l.at(s, field, format!("{mac} is not a unicast address")));
    }
    Ok(mac)
}
