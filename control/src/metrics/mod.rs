//! Prometheus metrics (`[control] metrics`): `/metrics` in the Prometheus
//! text format, built with `prometheus-client` (the Prometheus project's
//! own Rust client) and served by `tiny_http`.
//!
//! A scrape costs the workers nothing: their counters are the copies they
//! store every 100 ms (their own `try_lock`, never a wait) and plain
//! atomics, and their table gauges are what they copy out every second.
//! What only the control thread knows (links, routes, the FIB) it hands
//! over as a [`View`] after each command and probe. Control-plane
//! latencies (commands, FIB publishes) are prometheus-client histograms
//! the control thread observes directly.

mod collect;
mod http;

use std::sync::Arc;

use edgefwd_core::port::LinkState;
use edgefwd_io::worker::Shared;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use http::MetricsServer;

use crate::daemon::Daemon;
use crate::rib::RouteKind;

/// Buckets of the FIB publish latency, in seconds: 10 µs to about 2.6 s.
pub const PUBLISH_BUCKETS: [f64; 10] = [
    1e-5, 4e-5, 1.6e-4, 6.4e-4, 2.56e-3, 1.024e-2, 4.096e-2, 0.16384, 0.65536, 2.62144,
];
/// Buckets of control command latency, in seconds: 50 µs to about 13 s.
const COMMAND_BUCKETS: [f64; 10] = [
    5e-5, 2e-4, 8e-4, 3.2e-3, 1.28e-2, 5.12e-2, 0.2048, 0.8192, 3.2768, 13.1072,
];

/// A command's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabel {
    /// The command's protocol name (`route_add`, `stats`, ...).
    pub command: &'static str,
}

/// What the control thread knows, as the metrics show it.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// Each port's name and link state, by port id.
    pub ports: Vec<(String, LinkState)>,
    /// Routes in the RIB by kind.
    pub routes: Vec<(&'static str, u64)>,
    /// IPv4 and IPv6 prefixes in the FIB.
    pub prefixes: (u64, u64),
    /// Approximate memory of the FIB, in bytes.
    pub fib_bytes: u64,
    /// FIB copies made because a worker still held the one to edit.
    pub fib_copies: u64,
    /// The route mirror's netlink messages, overruns and dumps, when it
    /// runs.
    pub route_mirror: Option<[u64; 3]>,
}

impl View {
    /// The daemon's state now. Routes are counted by walking the RIB:
    /// call after a change, not on every probe.
    pub fn of(daemon: &Daemon) -> View {
        let mut by_kind = [
            (RouteKind::Static, 0u64),
            (RouteKind::Connected, 0),
            (RouteKind::Default, 0),
            (RouteKind::Kernel, 0),
        ];
        for r in daemon.rib().routes() {
            if let Some(k) = by_kind.iter_mut().find(|(k, _)| *k == r.kind) {
                k.1 += 1;
            }
        }
        let (v4, v6) = daemon.fib_prefixes();
        View {
            ports: daemon
                .names()
                .into_iter()
                .zip(daemon.links().iter().copied())
                .collect(),
            routes: by_kind.iter().map(|(k, n)| (k.name(), *n)).collect(),
            prefixes: (v4 as u64, v6 as u64),
            fib_bytes: daemon.fib_memory() as u64,
            fib_copies: daemon.fib_copies(),
            route_mirror: daemon.route_mirror_counts(),
        }
    }
}

/// The metrics of one daemon: what the scrape reads.
pub struct Metrics {
    registry: Registry,
    view: Arc<Mutex<View>>,
    commands: Family<CommandLabel, Histogram>,
}

impl Metrics {
    /// Metrics over `shared` (the workers) and `publishes` (the daemon's
    /// FIB publish latency).
    pub fn new(shared: Arc<Shared>, publishes: Histogram) -> Metrics {
        let mut registry = Registry::default();
        let view = Arc::new(Mutex::new(View::default()));
        let commands = Family::<CommandLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(COMMAND_BUCKETS)
        });
        registry.register_with_unit(
            "edgefwd_control_command_duration",
            "Time to apply and answer a control command",
            prometheus_client::registry::Unit::Seconds,
            commands.clone(),
        );
        registry.register_with_unit(
            "edgefwd_fib_publish_duration",
            "Time to publish a FIB change to the workers",
            prometheus_client::registry::Unit::Seconds,
            publishes,
        );
        registry.register_collector(Box::new(collect::Live::new(shared, Arc::clone(&view))));
        Metrics {
            registry,
            view,
            commands,
        }
    }

    /// Replaces what the control thread shows.
    pub fn set_view(&self, view: View) {
        *self.view.lock() = view;
    }

    /// True when `links` are not the link states shown (cheap: asked
    /// at every probe, and a link change changes the FIB too).
    pub fn links_differ(&self, links: &[LinkState]) -> bool {
        !self
            .view
            .lock()
            .ports
            .iter()
            .map(|(_, l)| l)
            .eq(links.iter())
    }

    /// Records how long command `name` took.
    pub fn observe_command(&self, name: &'static str, seconds: f64) {
        self.commands
            .get_or_create(&CommandLabel { command: name })
            .observe(seconds);
    }

    /// The exposition, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
