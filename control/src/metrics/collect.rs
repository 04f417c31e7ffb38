//! The metrics read at each scrape: the workers' counters and gauges and
//! the control thread's [`View`], encoded as constant metrics.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use edgefwd_core::census::Census;
use edgefwd_core::nat::Proto;
use edgefwd_core::port::LinkState;
use edgefwd_core::stats::DropReason;
use edgefwd_io::worker::Shared;
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::View;

/// Every link state, as the `state` label names them.
const LINK_STATES: [LinkState; 4] = [
    LinkState::Up,
    LinkState::AdminDown,
    LinkState::NoCarrier,
    LinkState::Gone,
];

/// The scrape-time collector.
pub(super) struct Live {
    shared: Arc<Shared>,
    view: Arc<Mutex<View>>,
    started: f64,
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Live {
    pub(super) fn new(shared: Arc<Shared>, view: Arc<Mutex<View>>) -> Live {
        Live {
            shared,
            view,
            started: process_start_time(),
        }
    }
}

/// A value of one sample.
enum Value {
    Counter(u64),
    Seconds(f64),
    Gauge(i64),
    GaugeF(f64),
}

impl Value {
    fn metric_type(&self) -> MetricType {
        match self {
            Value::Counter(_) | Value::Seconds(_) => MetricType::Counter,
            Value::Gauge(_) | Value::GaugeF(_) => MetricType::Gauge,
        }
    }
}

/// Writes one metric family: `name` (without `_total`, added to counters)
/// with `help` and one sample per item.
fn family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, Value)>,
) -> fmt::Result {
    let mut samples = samples.into_iter().peekable();
    let Some(first) = samples.peek() else {
        return Ok(());
    };
    let mut me = enc.encode_descriptor(name, help, None, first.1.metric_type())?;
    for (labels, value) in samples {
        let e = me.encode_family(&labels)?;
        match value {
            Value::Counter(v) => ConstCounter::new(v).encode(e)?,
            Value::Seconds(v) => ConstCounter::new(v).encode(e)?,
            Value::Gauge(v) => ConstGauge::new(v).encode(e)?,
            Value::GaugeF(v) => ConstGauge::new(v).encode(e)?,
        }
    }
    Ok(())
}

/// One sample without labels.
fn single(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: Value) -> fmt::Result {
    family(enc, name, help, [(Vec::<(&str, &str)>::new(), v)])
}

fn gauge(n: u64) -> Value {
    Value::Gauge(i64::try_from(n).unwrap_or(i64::MAX))
}

impl Collector for Live {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let view = self.view.lock().clone();
        let stats = crate::run::sum(&self.shared);
        let e = &mut enc;

        family(
            e,
            "edgefwd_build_info",
            "edgefwd's version; always 1",
            [([("version", env!("CARGO_PKG_VERSION"))], Value::Gauge(1))],
        )?;
        single(
            e,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            Value::GaugeF(self.started),
        )?;

        // Ports.
        let port = |i: usize| view.ports.get(i).map_or("", |(n, _)| n.as_str());
        let per_port = |f: fn(&edgefwd_core::stats::PortStats) -> u64| {
            stats
                .ports
                .iter()
                .enumerate()
                .map(move |(i, p)| ([("port", port(i))], Value::Counter(f(p))))
                .collect::<Vec<_>>()
        };
        family(
            e,
            "edgefwd_port_rx_packets",
            "Frames received",
            per_port(|p| p.rx),
        )?;
        family(
            e,
            "edgefwd_port_rx_bytes",
            "Bytes received",
            per_port(|p| p.rx_bytes),
        )?;
        family(
            e,
            "edgefwd_port_tx_packets",
            "Frames sent",
            per_port(|p| p.tx),
        )?;
        family(
            e,
            "edgefwd_port_tx_bytes",
            "Bytes sent",
            per_port(|p| p.tx_bytes),
        )?;
        family(
            e,
            "edgefwd_port_tx_errors",
            "Frames counted as sent that the device then refused",
            per_port(|p| p.tx_errors),
        )?;
        family(
            e,
            "edgefwd_port_drops",
            "Received frames dropped, by reason (edgefwd's drop reasons)",
            stats.ports.iter().enumerate().flat_map(|(i, p)| {
                DropReason::ALL.iter().map(move |r| {
                    (
                        [("port", port(i)), ("reason", r.name())],
                        Value::Counter(p.drops[*r as usize]),
                    )
                })
            }),
        )?;
        family(
            e,
            "edgefwd_port_up",
            "1 when the port's link is up",
            view.ports
                .iter()
                .map(|(n, l)| ([("port", n.as_str())], Value::Gauge(i64::from(l.is_up())))),
        )?;
        let states: Vec<_> = view
            .ports
            .iter()
            .flat_map(|(n, l)| {
                LINK_STATES.iter().map(move |s| {
                    (
                        [("port", n.clone()), ("state", s.to_string())],
                        Value::Gauge(i64::from(s == l)),
                    )
                })
            })
            .collect();
        family(
            e,
            "edgefwd_port_link_state",
            "1 for the port's link state (up, admin-down, no-carrier, gone)",
            states,
        )?;

        // Packets as a whole.
        family(
            e,
            "edgefwd_packets",
            "Received packets by how they ended",
            [
                ("forwarded", stats.forwarded),
                ("local", stats.local),
                ("dropped", stats.dropped()),
            ]
            .map(|(k, v)| ([("outcome", k)], Value::Counter(v))),
        )?;
        single(
            e,
            "edgefwd_packets_generated",
            "Packets the appliance made and sent (ARP, ICMP)",
            Value::Counter(stats.generated),
        )?;
        single(
            e,
            "edgefwd_packets_flooded",
            "Extra copies a switch made to flood a frame",
            Value::Counter(stats.flooded),
        )?;
        single(
            e,
            "edgefwd_packets_punted",
            "Received packets for the host, sent to its port's host mirror",
            Value::Counter(stats.punted),
        )?;
        single(
            e,
            "edgefwd_packets_injected",
            "Frames the host sent on a host mirror, sent out of its port",
            Value::Counter(stats.injected),
        )?;
        single(
            e,
            "edgefwd_icmp_rate_limited",
            "ICMP errors not sent because of the rate limit",
            Value::Counter(stats.icmp_rate_limited),
        )?;

        // Workers.
        let workers: Vec<(String, &edgefwd_io::worker::Activity)> = self
            .shared
            .activity
            .iter()
            .enumerate()
            .map(|(i, a)| (i.to_string(), a))
            .collect();
        family(
            e,
            "edgefwd_worker_busy_seconds",
            "Time a worker spent receiving, forwarding and sending",
            workers
                .iter()
                .map(|(w, a)| ([("worker", w.as_str())], Value::Seconds(a.busy_seconds()))),
        )?;
        family(
            e,
            "edgefwd_worker_idle_seconds",
            "Time a worker spent waiting for frames",
            workers
                .iter()
                .map(|(w, a)| ([("worker", w.as_str())], Value::Seconds(a.idle_seconds()))),
        )?;
        family(
            e,
            "edgefwd_worker_bursts",
            "Bursts of at least one frame a worker received",
            workers.iter().map(|(w, a)| {
                (
                    [("worker", w.as_str())],
                    Value::Counter(a.bursts.load(Ordering::Relaxed)),
                )
            }),
        )?;
        // Hand-off drops are among the drops by reason (`handoff_full`).
        let handed: Vec<(u64, u64)> = self
            .shared
            .stats
            .iter()
            .map(|s| {
                let s = s.lock();
                (s.handed_off, s.handed_in)
            })
            .collect();
        family(
            e,
            "edgefwd_worker_handed_off_packets",
            "Packets a worker handed to the worker owning their flow",
            workers
                .iter()
                .zip(&handed)
                .map(|((w, _), h)| ([("worker", w.as_str())], Value::Counter(h.0))),
        )?;
        family(
            e,
            "edgefwd_worker_handed_in_packets",
            "Packets other workers handed to a worker",
            workers
                .iter()
                .zip(&handed)
                .map(|((w, _), h)| ([("worker", w.as_str())], Value::Counter(h.1))),
        )?;

        // Routes and the FIB.
        family(
            e,
            "edgefwd_routes",
            "Routes in the RIB, by kind",
            view.routes.iter().map(|(k, n)| ([("kind", *k)], gauge(*n))),
        )?;
        family(
            e,
            "edgefwd_fib_prefixes",
            "Prefixes in the FIB, by address family",
            [("ipv4", view.prefixes.0), ("ipv6", view.prefixes.1)]
                .map(|(f, n)| ([("family", f)], gauge(n))),
        )?;
        single(
            e,
            "edgefwd_fib_memory_bytes",
            "Approximate memory of the FIB (both copies and the tries)",
            gauge(view.fib_bytes),
        )?;
        single(
            e,
            "edgefwd_fib_copies",
            "FIB copies made because a worker still held the one to edit",
            Value::Counter(view.fib_copies),
        )?;

        if let Some([events, overruns, resyncs]) = view.route_mirror {
            for (name, help, v) in [
                (
                    "edgefwd_route_mirror_events",
                    "Netlink messages the route mirror read",
                    events,
                ),
                (
                    "edgefwd_route_mirror_overruns",
                    "Times a route mirror netlink socket overran (ENOBUFS)",
                    overruns,
                ),
                (
                    "edgefwd_route_mirror_resyncs",
                    "Dumps the route mirror took (at start, after overruns and silent deletions)",
                    resyncs,
                ),
            ] {
                single(e, name, help, Value::Counter(v))?;
            }
        }

        // Tables.
        let mut census = Census::default();
        for c in &self.shared.census {
            census.add(&c.lock());
        }
        family(
            e,
            "edgefwd_neighbors",
            "Neighbour (ARP/NDP) entries by state, over the workers",
            census
                .neighbors
                .by_state()
                .map(|(s, n)| ([("state", s)], gauge(n))),
        )?;
        single(
            e,
            "edgefwd_neighbor_held_packets",
            "Packets waiting for a neighbour to resolve",
            gauge(census.held),
        )?;
        let nat = |f: fn(&edgefwd_core::census::NatCensus, usize) -> u64| {
            census
                .nat
                .iter()
                .flat_map(|n| {
                    Proto::ALL.iter().map(move |p| {
                        (
                            [
                                ("external", n.external.to_string()),
                                ("protocol", p.name().to_owned()),
                            ],
                            gauge(f(n, *p as usize)),
                        )
                    })
                })
                .collect::<Vec<_>>()
        };
        family(
            e,
            "edgefwd_nat_sessions",
            "NAT sessions by external address and protocol",
            nat(|n, p| n.sessions[p]),
        )?;
        let tcp: Vec<_> = census
            .nat
            .iter()
            .flat_map(|n| {
                edgefwd_core::nat::TCP_STATES
                    .iter()
                    .zip(n.tcp_states)
                    .map(move |(s, v)| {
                        (
                            [
                                ("external", n.external.to_string()),
                                ("state", (*s).to_owned()),
                            ],
                            gauge(v),
                        )
                    })
            })
            .collect();
        family(
            e,
            "edgefwd_nat_tcp_sessions",
            "NAT TCP sessions by external address and state",
            tcp,
        )?;
        family(
            e,
            "edgefwd_nat_ports_used",
            "External ports (ICMP: identifiers) in use, by external address and protocol",
            nat(|n, p| n.ports_used[p]),
        )?;
        family(
            e,
            "edgefwd_nat_ports",
            "External ports (ICMP: identifiers) a NAT may hand out, by external address and protocol",
            nat(|n, p| n.ports_available[p]),
        )?;
        // Services.
        let per_service = |f: fn(&edgefwd_core::service::ServiceCounters) -> u64| {
            census
                .services
                .iter()
                .map(|(n, c)| ([("service", n.as_str())], Value::Counter(f(c))))
                .collect::<Vec<_>>()
        };
        family(
            e,
            "edgefwd_service_new_flows",
            "New flows given a backend",
            per_service(|c| c.new_flows),
        )?;
        family(
            e,
            "edgefwd_service_packets",
            "Packets to a service and its replies",
            per_service(|c| c.packets),
        )?;
        family(
            e,
            "edgefwd_service_bytes",
            "IP bytes to a service and its replies",
            per_service(|c| c.bytes),
        )?;
        family(
            e,
            "edgefwd_service_drops",
            "Packets to a service dropped, by reason",
            census.services.iter().flat_map(|(n, c)| {
                edgefwd_core::service::ServiceCounters::DROPS
                    .iter()
                    .zip(c.drops)
                    .map(move |(r, v)| {
                        ([("service", n.as_str()), ("reason", *r)], Value::Counter(v))
                    })
            }),
        )?;
        let per_backend = |k: usize| {
            census
                .services
                .iter()
                .flat_map(|(n, c)| {
                    c.backends.iter().map(move |(a, v)| {
                        (
                            [("service", n.clone()), ("backend", a.to_string())],
                            Value::Counter(v[k]),
                        )
                    })
                })
                .collect::<Vec<_>>()
        };
        family(
            e,
            "edgefwd_service_backend_new_flows",
            "New flows given a backend",
            per_backend(0),
        )?;
        family(
            e,
            "edgefwd_service_backend_packets",
            "Packets to a backend and its replies",
            per_backend(1),
        )?;
        family(
            e,
            "edgefwd_service_backend_bytes",
            "IP bytes to a backend and its replies",
            per_backend(2),
        )?;
        Ok(())
    }
}

/// When this process started, in seconds since the Unix epoch (from
/// `/proc`; now, if that cannot be read).
fn process_start_time() -> f64 {
    let from_proc = || -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Field 22 (starttime, in clock ticks since boot), counted after
        // the command name's closing parenthesis (field 2).
        let rest = &stat[stat.rfind(')')? + 2..];
        let ticks: f64 = rest.split(' ').nth(19)?.parse().ok()?;
        let boot: f64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()?? as f64;
        Some(boot + ticks / hz)
    };
    from_proc().unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}
