//! The running daemon's control state and the commands that change it.
//!
//! A command is checked in full before anything changes: a refused command
//! (bad field, route that does not exist, state file that cannot be
//! written) leaves routes, FIB and state file exactly as they were. An
//! accepted change is persisted before it is acknowledged, then applied to
//! the RIB and the [`FibWriter`] one prefix at a time and published to the
//! workers as a new FIB snapshot. Whole-table changes (a reload, a
//! `route add --file` of a table) rebuild the RIB and compile the FIB anew.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use edgefwd_core::fib::{Fib, FibWriter, Route};
use edgefwd_core::pipeline::watch::{PacketTrace, TraceFilter};
use edgefwd_core::port::{LinkState, PortId};
use edgefwd_core::service::{ServiceConfig, ServiceKind};
use edgefwd_core::stats::{DropReason, Stats};
use edgefwd_io::worker::{ServiceSet, Shared, Snapshot};
use edgefwd_io::{Binding, Device, LinkEvents, NoDevice, Tap};
use foldhash::fast::RandomState;
use ipnet::IpNet;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::{json, Value};
use tracing::info;

use crate::api::{Command, RouteSpec, ROUTE_PAGE, ROUTE_PAGE_SCAN};
use crate::config::{
    check_route, parse_prefix, Config, PortRole, RouteConfig, RouteError, RouteField,
};
use crate::counters::Counters;
use crate::devices::{self, DeviceParams, OpenError};
use crate::report::NatSessionReport;
use crate::rib::{PortsUp, Rib, RibRoute, RouteKind};
use crate::route_mirror::{Batch, MirrorCounts, MirrorSpec};
use crate::store::{Change, ServiceChanges, State, Store, StoredRoute};

/// Workers that are not running (tests, benches): no counters, no NAT
/// sessions, so commands are answered by the control plane alone.
pub struct NoWorkers;

impl Workers for NoWorkers {
    fn stats(&self) -> Stats {
        Stats::new(1)
    }

    fn nat_sessions(&self) -> Result<Vec<NatSessionReport>, String> {
        Ok(Vec::new())
    }

    fn start_trace(&self, _: u64, _: TraceFilter) -> Result<(), String> {
        Err("no workers run".to_owned())
    }

    fn traces(&self) -> Result<Vec<(usize, PacketTrace)>, String> {
        Ok(Vec::new())
    }
}

/// A route's identity within one command: port index, destination and
/// next hop (no allocation, as a table's worth are kept).
type Identity = (usize, IpNet, Option<IpAddr>);

/// True when `r` is a custom route already (same interface, destination
/// and next hop).
fn has_custom(cfg: &Config, rib: &Rib, r: &RouteConfig) -> bool {
    cfg.port(&r.interface).is_some_and(|(port, _)| {
        rib.statics(port as PortId, &r.destination)
            .any(|s| s.next_hop == r.next_hop)
    })
}

/// What commands ask of the running workers.
pub trait Workers {
    /// The workers' counters, summed.
    fn stats(&self) -> Stats;
    /// What each worker did, in worker order.
    fn per_worker(&self) -> Vec<crate::counters::WorkerCounters> {
        Vec::new()
    }
    /// Every NAT session of every worker, or why they did not answer.
    fn nat_sessions(&self) -> Result<Vec<NatSessionReport>, String>;
    /// Arms every worker to trace its next `count` packets passing `filter`.
    fn start_trace(&self, count: u64, filter: TraceFilter) -> Result<(), String>;
    /// Every worker's finished traces, with the worker's index.
    fn traces(&self) -> Result<Vec<(usize, PacketTrace)>, String>;
    /// The workers' table gauges and service counters, summed (as last
    /// copied out, every second).
    fn census(&self) -> edgefwd_core::census::Census {
        edgefwd_core::census::Census::default()
    }
    /// A page of service `name`'s flows over the workers, from table way
    /// `cursor`, and where the next page starts.
    fn service_flows(
        &self,
        _name: &str,
        _cursor: usize,
    ) -> Result<(Vec<edgefwd_core::service::FlowView>, Option<usize>), String> {
        Ok((Vec::new(), None))
    }
}

/// Most packets a trace may ask each worker to record.
pub const TRACE_MAX: u64 = edgefwd_core::pipeline::watch::TRACES_MAX as u64;

/// Additions of more routes than this (a `route add --file` of a table) go
/// straight to a new snapshot rather than the journal.
const JOURNAL_MAX_ROUTES: usize = 10_000;

/// Additions of at least this many routes are checked on every core.
const PARALLEL_CHECK_MIN: usize = 10_000;

/// What the daemon knows and decides; owned by its control thread.
pub struct Daemon {
    cfg: Config,
    config_path: PathBuf,
    links: Vec<LinkState>,
    /// Every route (the custom ones are its static routes).
    rib: Rib,
    fib: FibWriter,
    shared: Option<Arc<Shared>>,
    /// Each port's binding in force (the config's, or `port bind`'s).
    bindings: Vec<Binding>,
    devices: Vec<Arc<dyn Device>>,
    params: Option<DeviceParams>,
    /// The state file and its journal, when the config names one.
    store: Option<Store>,
    /// How long each publish took.
    publish_latency: Histogram,
    /// The services in force: the config's, with run-time backend changes.
    services: Arc<ServiceSet>,
    /// The kernel's link notifications for the ports' namespaces, and
    /// whether every port with a kernel link is watched.
    link_events: Option<(LinkEvents, bool)>,
    /// By port: its host mirror's TAP, whose carrier follows the port's
    /// link, and the mirror's interface index.
    mirrors: Vec<Option<(usize, Arc<Tap>, u32)>>,
    /// What the route mirror has seen, once it runs.
    route_mirror: Option<Arc<MirrorCounts>>,
}

/// A batch of kernel route changes larger than this is applied to the RIB
/// as a whole and the FIB compiled anew (a full table's first dump).
const KERNEL_BULK: usize = 20_000;

impl Daemon {
    /// The daemon for `cfg` (read from `config_path`), with the persisted
    /// state applied, and every link down until probed.
    pub fn new(cfg: Config, config_path: PathBuf) -> Result<Daemon, String> {
        let (store, loaded) = match &cfg.control.state {
            Some(p) => {
                let (s, l) = Store::open(p).map_err(|e| format!("state: {e}"))?;
                (Some(s), Some(l))
            }
            None => (None, None),
        };
        let (state, changes) = loaded.map_or_else(Default::default, |l| (l.state, l.changes));
        let state = state.unwrap_or_default();
        let mut custom = state.apply(&cfg.routes);
        let mut bound = state.bindings.clone();
        let mut svc = ServiceChanges {
            backends: state.services.clone(),
            added: state.added_services.clone(),
            removed: state.removed_services.clone(),
        };
        for c in &changes {
            c.apply(&mut custom, &mut bound);
            c.apply_services(&mut svc);
        }
        let services = crate::services::current(&cfg, &svc).map_err(|e| format!("state: {e}"))?;
        let mut bindings: Vec<Binding> = cfg.ports.iter().map(|p| p.bind.clone()).collect();
        for (port, b) in &bound {
            let i = cfg
                .ports
                .iter()
                .position(|p| &p.name == port)
                .ok_or_else(|| format!("state: binding of unknown port {port:?}"))?;
            bindings[i] = Binding::parse(b)
                .ok_or_else(|| format!("state: binding of {port}: {b:?} is not a binding"))?;
        }
        // Routes kept in the state must still fit the config's ports.
        for r in &custom {
            check_route(
                &cfg.ports,
                |_| false,
                &r.interface,
                &r.destination.to_string(),
                r.next_hop.map(|n| n.to_string()).as_deref(),
                Some(i64::from(r.metric)),
            )
            .map_err(|e| {
                format!(
                    "state: route to {} on {}: {}",
                    r.destination, r.interface, e.message
                )
            })?;
        }
        let n = cfg.ports.len();
        // A switch's gateway interface has no device to probe: it is up.
        let links: Vec<LinkState> = cfg
            .ports
            .iter()
            .map(|p| match p.role {
                PortRole::Gateway { .. } => LinkState::Up,
                _ => LinkState::AdminDown,
            })
            .collect();
        let mut rib = build_rib(&cfg, &custom, &links);
        let fib = rib.compile();
        Ok(Daemon {
            config_path,
            links,
            rib,
            fib,
            shared: None,
            bindings,
            devices: (0..n)
                .map(|_| Arc::new(NoDevice) as Arc<dyn Device>)
                .collect(),
            params: None,
            store,
            publish_latency: Histogram::new(crate::metrics::PUBLISH_BUCKETS),
            link_events: None,
            mirrors: vec![None; n],
            route_mirror: None,
            services: Arc::new(ServiceSet {
                list: services,
                internal: cfg.internal_interfaces(),
                flows: cfg.services_policy.flows,
                announce: (0, String::new()),
            }),
            cfg,
        })
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The RIB in force.
    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    /// The FIB in force.
    pub fn fib(&self) -> Arc<Fib> {
        self.fib.current()
    }

    /// How many times a FIB copy was still in use after the writer's grace
    /// period and had to be copied (see [`FibWriter`]).
    pub fn fib_copies(&self) -> u64 {
        self.fib.copied()
    }

    /// IPv4 and IPv6 prefixes in the FIB.
    pub fn fib_prefixes(&self) -> (usize, usize) {
        self.fib.prefixes()
    }

    /// Approximate memory of the FIB: both copies and the tries.
    pub fn fib_memory(&self) -> usize {
        self.fib.memory_bytes()
    }

    /// How long each FIB publish took, for the metrics.
    pub fn publish_latency(&self) -> Histogram {
        self.publish_latency.clone()
    }

    /// Link states by port.
    pub fn links(&self) -> &[LinkState] {
        &self.links
    }

    /// Port names by id.
    pub fn names(&self) -> Vec<String> {
        self.cfg.ports.iter().map(|p| p.name.clone()).collect()
    }

    /// Opens every port's device for its binding and probes its link. A
    /// port that cannot be opened is an error naming it and its binding.
    pub fn open_devices(&mut self, params: &DeviceParams) -> Result<(), OpenError> {
        for (i, p) in self.cfg.ports.iter().enumerate() {
            let bind = &self.bindings[i];
            let params = &params;
            let failed = |error| OpenError {
                port: p.name.clone(),
                bind: bind.clone(),
                error,
            };
            if let PortRole::Mirror { of } = &p.role {
                let Some((port, mirrored)) = self.cfg.port(of) else {
                    continue;
                };
                let (tap, index) = devices::open_mirror(mirrored, bind, params).map_err(failed)?;
                self.devices[i] = Arc::clone(&tap) as Arc<dyn Device>;
                let _ = tap.set_carrier(self.links[port].is_up());
                self.mirrors[port] = Some((i, tap, index));
                continue;
            }
            self.devices[i] = devices::open(&p.name, p.mac, bind, params).map_err(failed)?;
        }
        self.params = Some(params.clone());
        self.probe_links();
        Ok(())
    }

    /// Has `events` watch the namespace of every port's device (and of
    /// every device bound later).
    pub fn watch_links(&mut self, events: LinkEvents) {
        self.link_events = Some((events, true));
        for b in self.bindings.clone() {
            self.watch_binding(&b);
        }
    }

    /// True when every port with a kernel link has its changes pushed by
    /// the kernel (else only the poll sees them).
    pub fn links_watched(&self) -> bool {
        self.link_events.as_ref().is_some_and(|(_, all)| *all)
    }

    fn watch_binding(&mut self, b: &Binding) {
        // A VM's frontend coming and going is no kernel event: polled.
        if let (Some((_, all)), Binding::VhostUser { .. }) = (&mut self.link_events, b) {
            *all = false;
        }
        let (Some((events, all)), Some(ns)) = (&mut self.link_events, b.link_namespace()) else {
            return;
        };
        if let Err(e) = events.watch(ns.as_deref()) {
            tracing::warn!(bind = %b, "link changes will be polled: {e}");
            *all = false;
        }
    }

    /// Asks every device for its link state and applies changes. A device
    /// that failed under a worker stays `gone` until rebound.
    /// Changes are applied with one FIB rebuild, however many ports moved.
    pub fn probe_links(&mut self) {
        let mut changed = false;
        for port in 0..self.devices.len() {
            // A switch's gateway interface has no device: it stays up.
            if matches!(self.cfg.ports[port].role, PortRole::Gateway { .. }) {
                continue;
            }
            let state = match self.links[port] {
                LinkState::Gone => LinkState::Gone,
                _ => self.devices[port].link(),
            };
            changed |= self.record_link(port, state);
        }
        if changed {
            self.publish();
        }
    }

    /// The host mirrors whose kernel routes are to be mirrored.
    pub fn mirror_specs(&self) -> Vec<MirrorSpec> {
        self.mirrors
            .iter()
            .enumerate()
            .filter_map(|(port, m)| {
                let (_, tap, _) = m.as_ref()?;
                Some(MirrorSpec {
                    port: port as PortId,
                    name: tap.name().to_owned(),
                    netns: tap.netns().map(Path::to_path_buf),
                })
            })
            .collect()
    }

    /// Shows what the route mirror sees in `host show`.
    pub fn watch_kernel_routes(&mut self, counts: Arc<MirrorCounts>) {
        self.route_mirror = Some(counts);
    }

    /// The route mirror's netlink messages, overruns and dumps so far,
    /// when it runs.
    pub fn route_mirror_counts(&self) -> Option<[u64; 3]> {
        let c = self.route_mirror.as_ref()?;
        Some([&c.events, &c.overruns, &c.resyncs].map(|a| a.load(Ordering::Relaxed)))
    }

    /// Puts a batch of kernel route changes in force, with one FIB
    /// publish.
    pub fn apply_kernel(&mut self, batch: &Batch) {
        if batch.changes.len() > KERNEL_BULK {
            for (key, hops) in &batch.changes {
                self.rib.set_kernel(&batch.ports, *key, hops, None);
            }
            self.fib = self.rib.compile();
        } else {
            for (key, hops) in &batch.changes {
                self.rib
                    .set_kernel(&batch.ports, *key, hops, Some(&mut self.fib));
            }
        }
        self.publish();
        if let Some(c) = &self.route_mirror {
            let lag = u64::try_from(batch.since.elapsed().as_micros()).unwrap_or(u64::MAX);
            c.last_lag_us.store(lag, Ordering::Relaxed);
        }
    }

    fn host_show(&self, stats: &Stats) -> Value {
        let mirrors: Vec<Value> = self
            .mirrors
            .iter()
            .enumerate()
            .filter_map(|(port, m)| {
                let (i, tap, index) = m.as_ref()?;
                Some(json!({
                    "port": self.cfg.ports[port].name,
                    "mirror": self.cfg.ports[*i].name,
                    "device": tap.name(),
                    "bind": self.bindings[*i].to_string(),
                    "index": index,
                    "link": self.links[*i].to_string(),
                    "carrier": self.links[port].is_up(),
                }))
            })
            .collect();
        let get = |f: fn(&MirrorCounts) -> &AtomicU64| {
            self.route_mirror
                .as_ref()
                .map_or(0, |c| f(c).load(Ordering::Relaxed))
        };
        let dropped = stats.drops_by_reason()[DropReason::PuntDropped as usize];
        json!({
            "mirrors": mirrors,
            "punt": {
                "punted": stats.punted,
                "injected": stats.injected,
                "punt_dropped": dropped,
            },
            "netlink": {
                "watching": self
                    .route_mirror
                    .as_ref()
                    .is_some_and(|c| !c.stopped.load(Ordering::Relaxed)),
                "routes": get(|c| &c.routes),
                "kernel_routes_in_rib": self.rib.kernel_routes().count(),
                "nexthop_objects": get(|c| &c.nexthop_objects),
                "events": get(|c| &c.events),
                "overruns": get(|c| &c.overruns),
                "resyncs": get(|c| &c.resyncs),
                "batches": get(|c| &c.batches),
                "last_sync_lag_ms": get(|c| &c.last_lag_us) as f64 / 1000.0,
            },
        })
    }

    /// Connects the daemon to the workers it publishes to.
    pub fn attach(&mut self, shared: Arc<Shared>) {
        self.shared = Some(shared);
    }

    /// The snapshot the workers should forward with.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            fib: self.fib.current(),
            links: self.links.iter().map(|l| l.is_up()).collect(),
            devices: self.devices.clone(),
            services: Arc::clone(&self.services),
        }
    }

    /// Records a port's link state; true when that changed whether it is up
    /// (and so the FIB changed and was published).
    pub fn set_link(&mut self, port: usize, state: LinkState) -> bool {
        let changed = self.record_link(port, state);
        if changed {
            self.publish();
        }
        changed
    }

    /// Records a port's link state and updates the FIB writer without
    /// publishing; true when whether the port is up changed.
    fn record_link(&mut self, port: usize, state: LinkState) -> bool {
        if self.links[port] == state {
            return false;
        }
        info!(port = %self.cfg.ports[port].name, from = %self.links[port], to = %state, "link");
        let was_up = self.links[port].is_up();
        self.links[port] = state;
        let changed = was_up != state.is_up();
        if let (true, Some((_, tap, _))) = (changed, &self.mirrors[port]) {
            if let Err(e) = tap.set_carrier(state.is_up()) {
                tracing::warn!(port = %self.cfg.ports[port].name, "host mirror carrier: {e}");
            }
        }
        if changed {
            self.rib
                .set_link_live(port as PortId, state.is_up(), &mut self.fib);
        }
        changed
    }

    /// Publishes the FIB writer's changes and the rest of the snapshot,
    /// and wakes the workers so that they take it (and let go of the
    /// FIB copy the writer edits next) at once.
    fn publish(&mut self) {
        let started = Instant::now();
        self.fib.publish();
        if let Some(s) = &self.shared {
            s.snapshot.store(Arc::new(self.snapshot()));
            for w in s.wakers.iter().filter_map(|w| w.get()) {
                let _ = w.wake();
            }
        }
        self.publish_latency
            .observe(started.elapsed().as_secs_f64());
    }

    /// Puts `custom` in force with a new snapshot of the whole state (a
    /// reload, or the load of a table), rebuilding the RIB and FIB.
    /// Nothing changes if the snapshot cannot be written. The two run side
    /// by side (a table's snapshot is tens of MiB to write and sync), and
    /// the new RIB and FIB are put in force only once the snapshot is safe.
    fn commit(&mut self, custom: Vec<RouteConfig>) -> Result<(), String> {
        let (cfg, links, bindings) = (&self.cfg, &self.links, &self.bindings);
        let kernel: Vec<Route> = self.rib.kernel_routes().cloned().collect();
        let (saved, built) = std::thread::scope(|s| {
            let build = s.spawn(|| {
                let mut rib = build_rib(cfg, &custom, links);
                rib.extend(kernel, RouteKind::Kernel);
                let fib = rib.compile();
                (rib, fib)
            });
            let saved = save_snapshot(
                &mut self.store,
                cfg,
                &state_of(cfg, bindings, &custom, &self.services.list),
            );
            (saved, build.join())
        });
        saved?;
        let (rib, fib) = built.unwrap_or_else(|p| std::panic::resume_unwind(p));
        self.rib = rib;
        self.fib = fib;
        self.publish();
        Ok(())
    }

    /// Appends a change to the journal, durably.
    fn record(&mut self, change: &Change) -> Result<(), String> {
        let (Some(store), Some(path)) = (&mut self.store, &self.cfg.control.state) else {
            return Ok(());
        };
        store
            .append(change)
            .map_err(|e| format!("state {}: {e}; nothing changed", path.display()))
    }

    /// Folds a long journal into the snapshot. A failure costs nothing but
    /// a longer journal: every change is in it already.
    fn fold_journal(&mut self) {
        if !self.store.as_ref().is_some_and(Store::wants_compaction) {
            return;
        }
        let state = state_of(
            &self.cfg,
            &self.bindings,
            &self.rib.custom_routes(),
            &self.services.list,
        );
        if let Err(e) = save_snapshot(&mut self.store, &self.cfg, &state) {
            tracing::warn!(error = %e, "could not fold the state journal");
        }
    }

    /// Rebinds `port` to `binding` (`none`: unbinds it). The new device is
    /// opened before the old one is let go, so a binding that cannot be
    /// opened changes nothing.
    fn port_bind(&mut self, port: &str, binding: &str) -> Result<Value, String> {
        let i = self
            .cfg
            .ports
            .iter()
            .position(|p| p.name == port)
            .ok_or_else(|| format!("unknown port {port:?}"))?;
        let bind = Binding::parse(binding).ok_or_else(|| {
            format!("{binding:?}: expected tap:NAME[@NETNS], afpacket:IFNAME[@NETNS], afxdp:IFNAME[@NETNS] or none")
        })?;
        if let PortRole::Gateway { switch } = &self.cfg.ports[i].role {
            return Err(format!(
                "{port} is switch {switch:?}'s gateway interface; it has no device"
            ));
        }
        if let PortRole::Mirror { of } = &self.cfg.ports[i].role {
            return Err(format!(
                "{port} is the host mirror of {of}; its device is {of}'s `host`"
            ));
        }
        if bind == self.bindings[i] {
            return Ok(json!({"port": port, "bind": bind.to_string(), "changed": false}));
        }
        let params = self.params.as_ref().ok_or("no devices are open")?;
        let params = &params;
        let p = &self.cfg.ports[i];
        let dev = devices::open(&p.name, p.mac, &bind, params)
            .map_err(|e| format!("port {port} (bind {bind}): {e}"))?;
        self.record(&Change::Bind {
            port: port.to_owned(),
            binding: bind.to_string(),
        })?;
        self.watch_binding(&bind);
        self.bindings[i] = bind.clone();
        let state = dev.link();
        self.devices[i] = dev;
        info!(port, %bind, link = %state, "bound");
        self.record_link(i, state);
        // The snapshot carries the new device, so it is published even when
        // the link state stayed the same.
        self.publish();
        Ok(json!({"port": port, "bind": bind.to_string(), "changed": true}))
    }

    /// Runs one command; its `--json` data, or why it was refused.
    pub fn handle(&mut self, cmd: Command, workers: &impl Workers) -> Result<Value, String> {
        match cmd {
            Command::RouteAdd { routes } => self.route_add(routes),
            Command::RouteRemove {
                interface,
                destination,
                next_hop,
            } => self.route_remove(&interface, &destination, next_hop.as_deref()),
            Command::RouteShow {
                interface,
                all,
                after,
            } => self.route_show(interface.as_deref(), all, after),
            Command::RouteLookup { addresses } => Ok(Value::Array(
                addresses
                    .iter()
                    .map(|&a| json!({"address": a, "routes": self.rib.lookup(&self.fib.current(), self.rib.selected(), a)}))
                    .collect(),
            )),
            Command::PortShow {} => Ok(self.port_show()),
            Command::PortBind { port, binding } => self.port_bind(&port, &binding),
            Command::PortUnbind { port } => self.port_bind(&port, "none"),
            Command::Stats {} => Ok(json!(Counters::new(
                &self.names(),
                Some(&self.links),
                &workers.stats()
            )
            .with_workers(workers.per_worker()))),
            Command::Reload {} => self.reload(),
            Command::NatSessions {} => {
                let sessions = workers.nat_sessions()?;
                Ok(json!({ "sessions": sessions }))
            }
            Command::HostShow {} => Ok(self.host_show(&workers.stats())),
            Command::TraceStart {
                port,
                count,
                filter,
            } => self.trace_start(port.as_deref(), count, filter.as_deref(), workers),
            Command::TraceShow {} => {
                let mut traces = workers.traces()?;
                traces.sort_by_key(|(w, t)| (t.ts, *w, t.seq));
                Ok(self.traces_json(traces.iter().map(|(w, t)| (Some(*w), t))))
            }
            Command::ServiceShow { name } => self.service_show(name.as_deref(), workers),
            Command::ServiceAnnounce { name } => self.service_announce(&name),
            Command::ServiceAdd { entry } => self.service_add(&entry),
            Command::ServiceFlows { name, cursor } => {
                if !self.services.list.iter().any(|s| s.name == name) {
                    return Err(format!("no service {name:?}"));
                }
                let (flows, next) = workers.service_flows(&name, cursor.unwrap_or(0))?;
                Ok(crate::services::flows_json(&flows, next))
            }
            Command::ServiceRemove { name } => self.service_remove(&name),
            Command::ServiceBackend {
                name,
                action,
                address,
                weight,
            } => self.service_backend(&name, &action, &address, weight),
            Command::Capture { .. } => {
                Err("capture streams its answer: it is served by the daemon's capture path".into())
            }
        }
    }

    /// Sets the flows each worker's service table holds.
    pub fn set_service_flows(&mut self, flows: usize) {
        self.change_services(|s| s.flows = flows);
    }

    fn service_show(&self, name: Option<&str>, workers: &impl Workers) -> Result<Value, String> {
        let names = self.names();
        let census = workers.census();
        let list: Vec<Value> = self
            .services
            .list
            .iter()
            .filter(|s| name.is_none_or(|n| n == s.name))
            .map(|s| {
                let mut v = crate::services::to_json(s, &names);
                let c = census.services.iter().find(|(n, _)| *n == s.name);
                v["counters"] = json!(crate::report::ServiceReport::of(
                    &s.name,
                    &c.map(|(_, c)| c.clone()).unwrap_or_default()
                ));
                v
            })
            .collect();
        if let (Some(n), true) = (name, list.is_empty()) {
            return Err(format!("no service {n:?}"));
        }
        // By name: the order services were added in is not kept across a
        // restart, which replays those added at run time by name.
        let mut list = list;
        list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Ok(json!({ "services": list }))
    }

    /// `service add`: `entry` is the new service's `[[service]]` entry,
    /// checked beside the services in force as the config's would be.
    fn service_add(&mut self, entry: &str) -> Result<Value, String> {
        if !self.cfg.services_policy.declared {
            return Err(
                "services need every port read by one worker: add a [services] \
                 table to the config and restart"
                    .to_owned(),
            );
        }
        let text = format!(
            "{}{entry}",
            crate::config::services_toml(&self.services.list, &self.cfg.ports)
        );
        let n = self.services.list.len();
        let mut checked =
            crate::config::check_services(&text, &self.cfg.ports, &self.cfg.services_policy.pool)
                .map_err(|e| crate::services::flag_of(&e, n))?;
        let new = checked.pop().ok_or("no service given")?;
        // Its address written out, so that a restart keeps it.
        let stored = crate::config::entry_toml(&new, &self.cfg.ports);
        self.record(&Change::ServiceAdd {
            service: new.name.clone(),
            entry: stored,
        })?;
        let mut list = self.services.list.clone();
        list.push(new);
        self.set_services(list);
        self.publish();
        let names = self.names();
        Ok(crate::services::to_json(&self.services.list[n], &names))
    }

    /// `service remove NAME`: its flows end (its address is no longer
    /// balanced nor announced).
    fn service_remove(&mut self, name: &str) -> Result<Value, String> {
        let i = self
            .services
            .list
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| format!("no service {name:?}"))?;
        self.record(&Change::ServiceRemove {
            service: name.to_owned(),
        })?;
        let mut list = self.services.list.clone();
        let gone = list.remove(i);
        self.set_services(list);
        self.publish();
        Ok(json!({"removed": gone.name, "addresses": gone.vips}))
    }

    fn set_services(&mut self, list: Vec<ServiceConfig>) {
        self.change_services(|s| s.list = list);
    }

    /// A new service set for the next snapshot: the current one, changed.
    fn change_services(&mut self, change: impl FnOnce(&mut ServiceSet)) {
        let mut next = ServiceSet::clone(&self.services);
        change(&mut next);
        self.services = Arc::new(next);
    }

    /// `service announce NAME`: three gratuitous ARPs or unsolicited
    /// neighbour advertisements for each of a load balancer's addresses on
    /// its port, sent by worker 0.
    fn service_announce(&mut self, name: &str) -> Result<Value, String> {
        let s = self
            .services
            .list
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("no service {name:?}"))?;
        let Some(port) = s.announce.filter(|_| s.kind == ServiceKind::LoadBalancer) else {
            return Err(format!(
                "{name} is a cluster-ip service: it is not announced"
            ));
        };
        let (addresses, port) = (
            s.vips.clone(),
            self.cfg.ports[usize::from(port)].name.clone(),
        );
        let seq = self.services.announce.0 + 1;
        self.change_services(|s| s.announce = (seq, name.to_owned()));
        self.publish();
        Ok(json!({"service": name, "addresses": addresses, "port": port}))
    }

    /// `service backend ACTION NAME ADDRESS`: journaled, then published to
    /// the workers (their flows stay where the backend still takes them).
    fn service_backend(
        &mut self,
        name: &str,
        action: &str,
        address: &str,
        weight: Option<u32>,
    ) -> Result<Value, String> {
        let action = crate::services::Action::parse(action)?;
        let i = self
            .services
            .list
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| format!("no service {name:?}"))?;
        let backends = crate::services::change(&self.services.list[i], address, action, weight)?;
        let mut list = self.services.list.clone();
        list[i].backends = backends;
        self.record(&Change::Backends {
            service: name.to_owned(),
            backends: crate::services::stored(&list[i]),
        })?;
        self.set_services(list);
        self.publish();
        Ok(crate::services::to_json(
            &self.services.list[i],
            &self.names(),
        ))
    }

    fn trace_start(
        &self,
        port: Option<&str>,
        count: u64,
        filter: Option<&str>,
        workers: &impl Workers,
    ) -> Result<Value, String> {
        if !(1..=TRACE_MAX).contains(&count) {
            return Err(format!("--count: {count} is not between 1 and {TRACE_MAX}"));
        }
        let mut f = crate::packet_trace::parse_filter(filter.unwrap_or(""))
            .map_err(|e| format!("--match: {e}"))?;
        if let Some(p) = port {
            let (id, _) = self
                .cfg
                .port(p)
                .ok_or_else(|| format!("--port: unknown port {p:?}"))?;
            f.port = Some(id as PortId);
        }
        workers.start_trace(count, f)?;
        Ok(json!({"count": count, "port": port, "filter": filter}))
    }

    /// Traces as `trace show --json` prints them, each with the route
    /// the FIB holds now for its destination.
    pub fn traces_json<'a>(
        &self,
        traces: impl Iterator<Item = (Option<usize>, &'a PacketTrace)>,
    ) -> Value {
        let fib = self.fib.current();
        let shown: Vec<_> = traces
            .map(|(worker, trace)| crate::packet_trace::Shown {
                trace,
                worker,
                route: crate::packet_trace::routed_destination(trace).and_then(|d| {
                    self.rib
                        .lookup(&fib, self.rib.selected(), d)
                        .into_iter()
                        .next()
                }),
            })
            .collect();
        crate::packet_trace::to_json(&shown, &self.names())
    }

    /// Checks `specs` as one addition: each against the config and the
    /// custom routes in force (on every core for a table's worth), then
    /// against the ones before it in the command. The refusal is the first
    /// in command order, naming its route when there are several.
    fn check_additions(&self, specs: &[RouteSpec]) -> Result<Vec<RouteConfig>, String> {
        let (cfg, rib) = (&self.cfg, &self.rib);
        let check = |s: &RouteSpec, exists: &dyn Fn(&RouteConfig) -> bool| {
            check_route(
                &cfg.ports,
                exists,
                &s.interface,
                &s.destination,
                s.next_hop.as_deref(),
                s.metric,
            )
        };
        // Each part's routes up to its first refusal, and that refusal.
        type Part = (Vec<RouteConfig>, Option<(usize, RouteError)>);
        let part = |first: usize, specs: &[RouteSpec]| -> Part {
            let mut ok = Vec::with_capacity(specs.len());
            for (k, s) in specs.iter().enumerate() {
                match check(s, &|r| has_custom(cfg, rib, r)) {
                    Ok(r) => ok.push(r),
                    Err(e) => return (ok, Some((first + k, e))),
                }
            }
            (ok, None)
        };
        let threads = if specs.len() >= PARALLEL_CHECK_MIN {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            1
        };
        let size = specs.len().div_ceil(threads).max(1);
        let parts: Vec<Part> = if threads == 1 {
            vec![part(0, specs)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = specs
                    .chunks(size)
                    .enumerate()
                    .map(|(c, chunk)| scope.spawn(move || part(c * size, chunk)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        // The routes checked before the first refusal, in command order.
        let mut refused: Option<(usize, RouteError)> = None;
        let mut new: Vec<RouteConfig> = Vec::with_capacity(specs.len());
        for (ok, err) in parts {
            new.extend(ok);
            if err.is_some() {
                refused = err;
                break;
            }
        }
        // Duplicates within the command, up to that refusal.
        let mut ids: HashSet<Identity, RandomState> = HashSet::default();
        ids.reserve(new.len());
        let duplicate = new.iter().position(|r| {
            let port = cfg.port(&r.interface).map_or(usize::MAX, |(i, _)| i);
            !ids.insert((port, r.destination, r.next_hop))
        });
        if let Some(d) = duplicate {
            if let Err(e) = check(&specs[d], &|_| true) {
                refused = Some((d, e));
            }
        }
        drop(ids);
        match refused {
            None => Ok(new),
            Some((i, e)) => {
                let at = if specs.len() > 1 {
                    format!("route {}: ", i + 1)
                } else {
                    String::new()
                };
                Err(format!("{at}{}: {}", flag(e.field), e.message))
            }
        }
    }

    /// The port an `--interface` names, or the refusal.
    fn interface(&self, name: &str) -> Result<PortId, String> {
        self.cfg
            .port(name)
            .map(|(i, _)| i as PortId)
            .ok_or_else(|| format!("--interface: unknown interface {name:?}"))
    }

    fn route_add(&mut self, specs: Vec<RouteSpec>) -> Result<Value, String> {
        let started = Instant::now();
        let new = self.check_additions(&specs)?;
        if new.len() <= JOURNAL_MAX_ROUTES {
            let change = Change::Add(new.iter().map(StoredRoute::from).collect());
            self.record(&change)?;
            for r in &new {
                let route = self.rib.route_for(r);
                self.rib.add(route, RouteKind::Static, &mut self.fib);
            }
            self.publish();
            self.fold_journal();
        } else {
            // A table's worth: a new snapshot rather than a journal line,
            // and the RIB and FIB built anew.
            let mut custom = self.rib.custom_routes();
            custom.extend(new);
            self.commit(custom)?;
        }
        info!(added = specs.len(), took = ?started.elapsed(), "route add");
        Ok(json!({"added": specs.len()}))
    }

    fn route_remove(
        &mut self,
        interface: &str,
        destination: &str,
        next_hop: Option<&str>,
    ) -> Result<Value, String> {
        let port = self.interface(interface)?;
        let dest = parse_prefix(destination).map_err(|m| format!("--destination: {m}"))?;
        let nh: Option<IpAddr> = match next_hop {
            Some(n) => Some(
                n.parse()
                    .map_err(|_| format!("--next-hop: {n:?} is not an IP address"))?,
            ),
            None => None,
        };
        let gone: Vec<StoredRoute> = self
            .rib
            .statics(port, &dest)
            .filter(|r| nh.is_none() || r.next_hop == nh)
            .map(|r| StoredRoute {
                interface: interface.to_owned(),
                destination: r.prefix,
                next_hop: r.next_hop,
                metric: r.metric,
            })
            .collect();
        if gone.is_empty() {
            return Err(match nh {
                Some(n) => format!("no custom route to {dest} via {n} on {interface}"),
                None => format!("no custom route to {dest} on {interface}"),
            });
        }
        self.record(&Change::Remove(gone))?;
        let removed = self.rib.remove_static(port, &dest, nh, &mut self.fib);
        self.publish();
        self.fold_journal();
        info!(removed, %dest, interface, "route remove");
        Ok(json!({"removed": removed}))
    }

    fn route_show(
        &self,
        interface: Option<&str>,
        all: bool,
        after: Option<IpNet>,
    ) -> Result<Value, String> {
        let port = interface.map(|i| self.interface(i)).transpose()?;
        let keep = |r: &RibRoute| {
            (all || r.kind == RouteKind::Static) && port.is_none_or(|p| r.route.port == p)
        };
        let (routes, next) = self.rib.show_page(
            self.rib.selected(),
            keep,
            after,
            ROUTE_PAGE,
            ROUTE_PAGE_SCAN,
        );
        let mut page = json!({ "routes": routes });
        if let Some(next) = next {
            page["next"] = json!(next);
        }
        Ok(page)
    }

    fn port_show(&self) -> Value {
        let ports: Vec<Value> = self
            .cfg
            .ports
            .iter()
            .zip(&self.links)
            .zip(&self.bindings)
            .enumerate()
            .map(|(i, ((p, l), b))| {
                let mut v = json!({
                    "name": p.name,
                    "bind": b.to_string(),
                    "link": l.to_string(),
                    "mac": p.mac.to_string(),
                    "addresses": p.addresses,
                    "mtu": p.mtu,
                });
                if let PortRole::Mirror { of } = &p.role {
                    v["mirror_of"] = json!(of);
                }
                let details = self.devices.get(i).map(|d| d.details()).unwrap_or_default();
                if !details.is_empty() {
                    v["device"] = details.into_iter().map(|(k, n)| (k, json!(n))).collect();
                }
                v
            })
            .collect();
        json!({ "ports": ports })
    }

    /// Re-reads the config file: route changes apply (with the run-time
    /// changes kept on top); anything else differs only with a restart.
    pub fn reload(&mut self) -> Result<Value, String> {
        let new = Config::load(&self.config_path).map_err(|e| e.to_string())?;
        let same_but_routes = Config {
            routes: self.cfg.routes.clone(),
            ..new.clone()
        };
        if same_but_routes != self.cfg {
            return Err(format!(
                "{}: only [[route]] changes apply on reload; ports, neighbours and [dataplane]/[control] need a restart",
                self.config_path.display()
            ));
        }
        let state = State::diff(&self.cfg.routes, &self.rib.custom_routes());
        let custom = state.apply(&new.routes);
        let old = std::mem::replace(&mut self.cfg, new);
        if let Err(e) = self.commit(custom) {
            self.cfg = old;
            return Err(e);
        }
        let routes = self.rib.custom_count();
        info!(config = %self.config_path.display(), routes, "reloaded");
        Ok(json!({ "routes": routes }))
    }
}

/// The whole state (routes and bindings) with `custom` as the custom
/// routes, relative to the config.
fn state_of(
    cfg: &Config,
    bindings: &[Binding],
    custom: &[RouteConfig],
    services: &[ServiceConfig],
) -> State {
    let mut state = State::diff(&cfg.routes, custom);
    state.services = services
        .iter()
        .filter(|s| {
            cfg.services
                .iter()
                .any(|c| c.name == s.name && c.backends != s.backends)
        })
        .map(|s| (s.name.clone(), crate::services::stored(s)))
        .collect();
    state.bindings = cfg
        .ports
        .iter()
        .zip(bindings)
        .filter(|(p, b)| p.bind != **b)
        .map(|(p, b)| (p.name.clone(), b.to_string()))
        .collect();
    state
}

/// Rewrites the snapshot with `state` and empties the journal (nothing to
/// do without a state file).
fn save_snapshot(store: &mut Option<Store>, cfg: &Config, state: &State) -> Result<(), String> {
    let (Some(store), Some(path)) = (store, &cfg.control.state) else {
        return Ok(());
    };
    store
        .compact(state)
        .map_err(|e| format!("state {}: {e}; nothing changed", path.display()))
}

/// The CLI flag a route field comes from.
fn flag(f: RouteField) -> &'static str {
    match f {
        RouteField::Interface => "--interface",
        RouteField::Destination => "--destination",
        RouteField::NextHop => "--next-hop",
        RouteField::Metric => "--metric",
    }
}

fn build_rib(cfg: &Config, custom: &[RouteConfig], links: &[LinkState]) -> Rib {
    let mut rib = Rib::from_config_with(cfg, custom, PortsUp::Bound);
    for (port, l) in links.iter().enumerate() {
        rib.set_link(port as PortId, l.is_up());
    }
    rib
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table's worth is checked in parts on every core; the refusal is
    /// still the first bad route in command order, a duplicate within the
    /// command included, and nothing changes.
    #[test]
    fn a_table_addition_is_refused_at_its_first_bad_route_in_order() {
        let cfg = Config::parse(
            "[[port]]\nname = \"Port3\"\nmac = \"02:00:00:00:03:01\"\naddresses = [\"192.168.20.10/24\"]\n",
        )
        .unwrap();
        let mut d = Daemon::new(cfg, PathBuf::from("edgefwd.toml")).unwrap();
        let spec = |i: usize, nh: &str| RouteSpec {
            interface: "Port3".into(),
            destination: format!("10.{}.{}.0/24", i >> 8, i & 255),
            next_hop: Some(nh.into()),
            metric: None,
        };
        let table = || -> Vec<RouteSpec> {
            (0..2 * PARALLEL_CHECK_MIN)
                .map(|i| spec(i, "192.168.20.1"))
                .collect()
        };
        let far = PARALLEL_CHECK_MIN + PARALLEL_CHECK_MIN / 2;
        // (route to replace, route it becomes a copy of, its next hop)
        type Edit = (usize, usize, &'static str);
        let cases: [(&[Edit], String); 4] = [
            // A bad next hop late, a duplicate before it in another part.
            (
                &[(far, far, "10.0.2.1"), (12_000, 11_999, "192.168.20.1")],
                "route 12001: --destination: a route to 10.46.223.0/24".into(),
            ),
            (
                &[(far, far, "10.0.2.1")],
                format!("route {}: --next-hop: 10.0.2.1 is not on a subnet", far + 1),
            ),
            (
                &[(far, far, "10.0.2.1"), (3, 2, "192.168.20.1")],
                "route 4: --destination".into(),
            ),
            // A bad route early, a duplicate after it.
            (
                &[(100, 100, "10.0.2.1"), (150, 50, "192.168.20.1")],
                "route 101: --next-hop".into(),
            ),
        ];
        for (edits, want) in cases {
            let mut specs = table();
            for &(at, like, nh) in edits {
                specs[at] = spec(like, nh);
            }
            let err = d
                .handle(Command::RouteAdd { routes: specs }, &NoWorkers)
                .unwrap_err();
            assert!(err.starts_with(&want), "{edits:?}: {err}");
            assert_eq!(d.rib().custom_count(), 0);
        }
        d.handle(Command::RouteAdd { routes: table() }, &NoWorkers)
            .unwrap();
        assert_eq!(d.rib().custom_count(), 2 * PARALLEL_CHECK_MIN);
    }
}
