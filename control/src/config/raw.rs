//! The config file's shape as serde reads it, with the spans that let
//! validation name lines.

use serde::Deserialize;
use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;

use super::ConfigError;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDataplane {
    pub(super) workers: Option<Spanned<usize>>,
    pub(super) offload: Option<bool>,
    pub(super) burst: Option<Spanned<usize>>,
    pub(super) queue_depth: Option<Spanned<usize>>,
    pub(super) busy_poll_us: Option<Spanned<u64>>,
    pub(super) io_uring: Option<bool>,
    pub(super) vm_one_copy: Option<bool>,
    pub(super) icmp_rate: Option<u32>,
    pub(super) icmp_burst: Option<u32>,
    pub(super) punt_rate: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub(super) socket: Option<PathBuf>,
    pub(super) group: Option<String>,
    pub(super) state: Option<PathBuf>,
    pub(super) metrics: Option<Spanned<String>>,
    pub(super) netlink_buffer: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPort {
    pub(super) name: Spanned<String>,
    pub(super) bind: Option<Spanned<String>>,
    pub(super) mac: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) addresses: Vec<Spanned<String>>,
    pub(super) gateway: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) gateway_metric: Option<Spanned<u32>>,
    pub(super) mtu: Option<Spanned<u16>>,
    pub(super) switch: Option<Spanned<String>>,
    pub(super) allowed_mac: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) allowed_addresses: Vec<Spanned<String>>,
    pub(super) host: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSwitch {
    pub(super) name: Spanned<String>,
    pub(super) kind: Spanned<String>,
    pub(super) address: Option<Spanned<String>>,
    pub(super) mac: Option<Spanned<String>>,
    pub(super) nat: Option<Spanned<String>>,
    pub(super) uplink: Option<Spanned<String>>,
    pub(super) mac_limit: Option<Spanned<usize>>,
    pub(super) mac_aging: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNat {
    pub(super) filtering: Option<Spanned<String>>,
    pub(super) port_range: Option<Spanned<String>>,
    pub(super) udp_timeout: Option<Spanned<u64>>,
    pub(super) tcp_established_timeout: Option<Spanned<u64>>,
    pub(super) tcp_transitory_timeout: Option<Spanned<u64>>,
    pub(super) icmp_timeout: Option<Spanned<u64>>,
    pub(super) max_sessions: Option<Spanned<usize>>,
    pub(super) max_sessions_per_host: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) interface: Spanned<String>,
    pub(super) destination: Spanned<String>,
    pub(super) next_hop: Option<Spanned<String>>,
    pub(super) metric: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNeighbor {
    pub(super) interface: Spanned<String>,
    pub(super) address: Spanned<String>,
    pub(super) mac: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) dataplane: RawDataplane,
    #[serde(default)]
    pub(super) control: RawControl,
    #[serde(default)]
    pub(super) port: Vec<RawPort>,
    #[serde(default)]
    pub(super) switch: Vec<RawSwitch>,
    #[serde(default)]
    pub(super) nat: RawNat,
    #[serde(default)]
    pub(super) route: Vec<RawRoute>,
    #[serde(default)]
    pub(super) neighbor: Vec<RawNeighbor>,
    pub(super) services: Option<super::service::RawServices>,
    #[serde(default)]
    pub(super) service: Vec<super::service::RawService>,
}

/// Turns byte spans into 1-based lines.
pub(super) struct Lines<'a> {
    pub(super) text: &'a str,
    pub(super) file: Option<PathBuf>,
}

impl Lines<'_> {
    pub(super) fn line(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// The field the text at `span` belongs to, named as validation names
    /// fields (`dataplane.burst`, `port[1].mac`): the key on its line under
    /// the last table header above it. For the parser's own errors (a value
    /// of the wrong type, an unknown key), which carry only a span. Empty
    /// when that line holds no `key =` (inside a multi-line array).
    pub(super) fn field_at(&self, span: &Range<usize>) -> String {
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line = self.text[line_start..].lines().next().unwrap_or("");
        let key = match line.split_once('=') {
            Some((k, _)) if !k.trim_start().starts_with(['#', '[']) => k.trim().trim_matches('"'),
            _ => return String::new(),
        };
        let mut table = String::new();
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for l in self.text[..line_start].lines().map(str::trim) {
            if let Some((name, _)) = l.strip_prefix("[[").and_then(|r| r.split_once("]]")) {
                let name = name.trim();
                let i = match seen.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, count)) => {
                        *count += 1;
                        *count - 1
                    }
                    None => {
                        seen.push((name, 1));
                        0
                    }
                };
                table = format!("{name}[{i}]");
            } else if let Some((name, _)) = l.strip_prefix('[').and_then(|r| r.split_once(']')) {
                table = name.trim().to_owned();
            }
        }
        if table.is_empty() {
            key.to_owned()
        } else {
            format!("{table}.{key}")
        }
    }

    pub(super) fn err(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: span.map(|s| self.line(s)),
            field: field.into(),
            message: message.into(),
        }
    }

    pub(super) fn at<T>(
        &self,
        v: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.err(Some(v.span()), field, message)
    }
}
