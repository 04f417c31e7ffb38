//! One typed view of the dataplane's counters: what `stats` prints (text and
//! JSON, from the daemon or at the end of `run`) and what the replay report
//! carries. The figures and their names are made here once, from
//! [`Stats`]; text is made from this type, never from re-read JSON.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::ops::Index;

use edgefwd_core::port::LinkState;
use edgefwd_core::stats::{DropReason, Stats};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Packet totals. `in == forwarded + local + dropped` and
/// `dropped == sum(drops)` always hold.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Totals {
    /// Every frame received (a replay: every record fed, runts and
    /// truncated ones included).
    #[serde(rename = "in")]
    pub received: u64,
    /// Received and sent out again.
    pub forwarded: u64,
    /// Consumed by the appliance.
    pub local: u64,
    /// Dropped under a reason.
    pub dropped: u64,
    /// Made by the appliance and sent (not part of `in`).
    pub generated: u64,
    /// Extra copies a switch sent to flood a frame to more members (not
    /// part of `in`: the frame itself ends once).
    #[serde(default)]
    pub flooded: u64,
    /// Handed by one worker to the one that owns the packet's flow (not
    /// part of `in`: the packet ends on that worker).
    #[serde(default)]
    pub handed_off: u64,
    /// Received for the host and sent to its port's mirror (part of
    /// `forwarded`).
    #[serde(default)]
    pub punted: u64,
    /// Sent by the host on a mirror and out of its port (part of
    /// `forwarded`).
    #[serde(default)]
    pub injected: u64,
}

/// Counts by drop reason name (the non-zero ones).
pub type DropCounts = BTreeMap<String, u64>;

/// One port's counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortCounters {
    /// Link state (`up`, or why not), where there is a device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Frames received.
    pub rx: u64,
    /// Frames sent.
    pub tx: u64,
    /// Received frames dropped.
    pub drops: u64,
    /// Frames the device refused after they were queued.
    #[serde(default)]
    pub tx_errors: u64,
    /// Those drops by reason.
    pub drop_reasons: DropCounts,
}

/// Every port's counters by name, in port order (a JSON object whose keys
/// keep that order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ports(pub Vec<(String, PortCounters)>);

impl Ports {
    /// A port's counters by name.
    pub fn get(&self, name: &str) -> Option<&PortCounters> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// Names and counters in port order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PortCounters)> {
        self.0.iter().map(|(n, c)| (n.as_str(), c))
    }
}

impl Index<&str> for Ports {
    type Output = PortCounters;

    fn index(&self, name: &str) -> &PortCounters {
        self.get(name)
            .unwrap_or_else(|| panic!("no port named {name:?}"))
    }
}

impl Serialize for Ports {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, c) in &self.0 {
            m.serialize_entry(name, c)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ports, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Ports;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("ports by name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ports, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    v.push(entry);
                }
                Ok(Ports(v))
            }
        }
        d.deserialize_map(InOrder)
    }
}

/// What one worker did, as `stats` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerCounters {
    /// Seconds spent receiving, forwarding, sending and housekeeping.
    pub busy_seconds: f64,
    /// Seconds spent waiting for frames.
    pub idle_seconds: f64,
    /// Bursts that brought frames.
    pub bursts: u64,
    /// Packets it handed to the worker owning their flow.
    pub handed_off: u64,
    /// Packets other workers handed to it.
    pub handed_in: u64,
    /// Packets it could not hand over (`handoff_full`).
    pub handoff_dropped: u64,
}

/// The counters, as `stats` shows them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    /// Totals.
    pub packets: Totals,
    /// Drops by reason.
    pub drops: DropCounts,
    /// Per port, in port order.
    pub ports: Ports,
    /// Per worker, in worker order (the daemon's `stats`; empty in a
    /// replay's report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<WorkerCounters>,
}

/// The non-zero counts of `counts` (indexed by [`DropReason`]) by name.
pub fn by_reason(counts: &[u64]) -> DropCounts {
    DropReason::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| (r.name().to_owned(), *n))
        .collect()
}

impl Counters {
    /// The view of `s` for ports `names`, with their `links` where they
    /// have devices.
    pub fn new(names: &[String], links: Option<&[LinkState]>, s: &Stats) -> Counters {
        let ports = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let p = s.ports.get(i).cloned().unwrap_or_default();
                let c = PortCounters {
                    link: links.map(|l| l.get(i).map_or("-".to_owned(), ToString::to_string)),
                    rx: p.rx,
                    tx: p.tx,
                    drops: p.dropped(),
                    tx_errors: p.tx_errors,
                    drop_reasons: by_reason(&p.drops),
                };
                (n.clone(), c)
            })
            .collect();
        Counters {
            packets: Totals {
                received: s.received(),
                forwarded: s.forwarded,
                local: s.local,
                dropped: s.dropped(),
                generated: s.generated,
                flooded: s.flooded,
                handed_off: s.handed_off,
                punted: s.punted,
                injected: s.injected,
            },
            drops: by_reason(&s.drops_by_reason()),
            ports: Ports(ports),
            workers: Vec::new(),
        }
    }

    /// The same with each worker's counters.
    pub fn with_workers(mut self, workers: Vec<WorkerCounters>) -> Counters {
        self.workers = workers;
        self
    }

    /// The counters as `stats` prints them: totals, then each port with its
    /// link state, then drops by reason.
    pub fn to_text(&self) -> String {
        let p = &self.packets;
        let mut t = format!(
            "packets: in {} forwarded {} local {} dropped {} generated {}\n",
            p.received, p.forwarded, p.local, p.dropped, p.generated
        );
        let _ = writeln!(
            t,
            "{:<12} {:<10} {:>12} {:>12} {:>10} {:>10}",
            "port", "link", "rx", "tx", "drops", "tx_errors"
        );
        for (name, c) in self.ports.iter() {
            let _ = writeln!(
                t,
                "{name:<12} {:<10} {:>12} {:>12} {:>10} {:>10}",
                c.link.as_deref().unwrap_or("-"),
                c.rx,
                c.tx,
                c.drops,
                c.tx_errors
            );
        }
        for (reason, n) in &self.drops {
            let _ = writeln!(t, "drop {reason:<26} {n}");
        }
        for (i, w) in self.workers.iter().enumerate() {
            let busy = w.busy_seconds / (w.busy_seconds + w.idle_seconds).max(f64::MIN_POSITIVE);
            let _ = writeln!(
                t,
                "worker {i:<3} busy {:>5.1}% bursts {:>10} handed off {:>10} in {:>10} dropped {:>6}",
                busy * 100.0,
                w.bursts,
                w.handed_off,
                w.handed_in,
                w.handoff_dropped
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_keeps_port_order_and_aligns_columns() {
        let mut s = Stats::new(2);
        s.ports[0].rx = 7;
        s.ports[1].rx = 1234567;
        s.ports[1].drops[DropReason::NoRoute as usize] = 3;
        let names = ["Port9".to_owned(), "Port2".to_owned()];
        let links = [LinkState::Up, LinkState::AdminDown];
        let t = Counters::new(&names, Some(&links), &s).to_text();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "packets: in 1234574 forwarded 0 local 0 dropped 3 generated 0"
        );
        assert_eq!(
            lines[2],
            format!(
                "{:<12} {:<10} {:>12} {:>12} {:>10} {:>10}",
                "Port9", "up", 7, 0, 0, 0
            )
        );
        assert_eq!(
            lines[3],
            format!(
                "{:<12} {:<10} {:>12} {:>12} {:>10} {:>10}",
                "Port2", "admin-down", 1234567, 0, 3, 0
            )
        );
        assert_eq!(lines[4], format!("drop {:<26} 3", "no_route"));
    }

    #[test]
    fn json_keeps_port_order_and_reads_back_the_same() {
        let mut s = Stats::new(2);
        s.ports[1].tx = 5;
        let names = ["Port9".to_owned(), "Port2".to_owned()];
        let c = Counters::new(&names, Some(&[LinkState::Up, LinkState::Gone]), &s);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.find("Port9") < json.find("Port2"), "{json}");
        let back: Counters = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
