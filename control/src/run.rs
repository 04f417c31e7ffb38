//! `edgefwd run`: the daemon. Opens every port's device, starts the workers
//! and the control socket, and then watches: commands from the socket
//! (applied by [`Daemon`] one at a time), link changes (pushed by the
//! kernel, [`LinkEvents`], and polled every second as a safety net),
//! device failures reported by the workers, the workers themselves
//! (every 100 ms) and signals.
//!
//! A link change recompiles the FIB from the RIB with that port up or down
//! and publishes it; the workers pick it up between bursts, so routes
//! through a port that went down fall out within milliseconds and the
//! next metric takes over. SIGUSR1 logs the counters, SIGINT/SIGTERM stop
//! the workers (packets still waiting for a neighbour are dropped and
//! counted) and the final counters are printed.
//!
//! Under systemd (`$NOTIFY_SOCKET`), readiness and the watchdog follow the
//! workers' heartbeats ([`crate::notify`]).
//!
//! A worker that stops with an error (or panics) is noticed at the next
//! probe: the daemon logs which and why and stops with that error (exit
//! status 1), for its supervisor to restart it whole. Carrying on would
//! leave that worker's TAP queues unread, and the kernel's flow hash would
//! silently black-hole its share of the flows.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgefwd_core::pipeline::watch::{PacketTrace, TraceFilter};
use edgefwd_core::port::LinkState;
use edgefwd_core::stats::{DropReason, Stats};
use edgefwd_io::worker::{Answer, Ask, Event, Shared, Worker, WorkerConfig};
use edgefwd_io::LinkEvents;
use tracing::{info, warn};

use crate::api::{self, Command, Response};
use crate::config::Config;
use crate::counters::{Counters, WorkerCounters};
use crate::daemon::{Daemon, Workers};
use crate::devices::{DeviceParams, OpenError};
use crate::metrics::{Metrics, MetricsServer, View};
use crate::notify::{Health, Notifier};
use crate::report::NatSessionReport;
use crate::route_mirror::RouteMirror;
use crate::server::{refusal, Server};

/// How often the daemon looks at its workers, signals and health (and
/// polls link state, when the kernel's link notifications are not to be
/// had).
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How often link state is polled as well as pushed by the kernel: the
/// safety net for a change no notification told of.
const LINK_POLL: Duration = Duration::from_secs(1);
/// How often, at most, the metrics' view of routes and the FIB is taken
/// again after changes.
const VIEW_EVERY: Duration = Duration::from_secs(1);

/// Why the daemon could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A port's device could not be opened.
    #[error(transparent)]
    Port(#[from] OpenError),
    /// The config asks for something `run` cannot do.
    #[error("{0}")]
    Config(String),
    /// A worker stopped with an error (or panicked) while forwarding; the
    /// daemon stops too, so that a supervisor restarts it whole.
    #[error("worker {worker} (thread edgefwd-w{worker}) failed: {error}")]
    Worker {
        /// Its index.
        worker: usize,
        /// What it said.
        error: io::Error,
    },
    /// The signal handlers or a thread could not be set up.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The final counters and link states of a run.
pub struct RunSummary {
    /// Port names, by id.
    pub names: Vec<String>,
    /// Last link state of each port.
    pub links: Vec<LinkState>,
    /// Counters summed over the workers.
    pub stats: Stats,
}

/// What asks a running daemon to act: set by signal handlers in the binary,
/// or directly by a test running the daemon in-process.
#[derive(Clone, Default)]
pub struct Control {
    /// Stop forwarding and return the final counters (SIGINT, SIGTERM).
    pub stop: Arc<AtomicBool>,
    /// Log the counters (SIGUSR1).
    pub dump: Arc<AtomicBool>,
    /// Re-read the config file (SIGHUP).
    pub reload: Arc<AtomicBool>,
    /// Fault injection for tests: bit `i` makes worker `i` fail.
    pub fail_workers: Arc<AtomicU64>,
    /// The service manager to tell about readiness and health
    /// (`$NOTIFY_SOCKET`), if any.
    pub notify: Option<Arc<Notifier>>,
    /// Poll link state every 100 ms instead of following the kernel's link
    /// notifications (for comparing the two).
    pub poll_links: bool,
}

/// How long the process may take to stop once asked (the binary's
/// backstop: it exits with status 1 past this, whatever is still running).
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

impl Control {
    /// Flags wired to SIGINT/SIGTERM (stop), SIGUSR1 (dump) and SIGHUP
    /// (reload). A second SIGINT/SIGTERM exits at once, and a stop that
    /// takes longer than [`SHUTDOWN_LIMIT`] exits the process.
    pub fn from_signals() -> io::Result<Control> {
        let c = Control::default();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // First the exit on a second signal: it acts only when the flag
            // is already set, which the next line does on the first.
            signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&c.stop))?;
            signal_hook::flag::register(sig, Arc::clone(&c.stop))?;
        }
        let stop = Arc::clone(&c.stop);
        std::thread::Builder::new()
            .name("edgefwd-stop".to_owned())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::sleep(SHUTDOWN_LIMIT);
                tracing::error!("still stopping after {SHUTDOWN_LIMIT:?}; exiting");
                std::process::exit(1);
            })?;
        signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&c.dump))?;
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&c.reload))?;
        Ok(Control {
            notify: Notifier::from_env()?.map(Arc::new),
            ..c
        })
    }
}

/// Runs the dataplane for `cfg` until `control.stop` is set, serving the
/// control socket. `name` is the config file (read again on reload).
pub fn run(cfg: &Config, name: &Path, control: &Control) -> Result<RunSummary, RunError> {
    let params = DeviceParams::from_config(cfg);
    let workers = params.workers;
    let mut daemon = Daemon::new(cfg.clone(), name.to_owned()).map_err(RunError::Config)?;
    // Each worker tracks its share of the services' flows.
    let mut router_cfg = cfg.clone();
    router_cfg.services_policy.flows = cfg.services_policy.flows.div_ceil(workers).max(1024);
    daemon.set_service_flows(router_cfg.services_policy.flows);
    daemon.open_devices(&params)?;
    let (events_tx, events) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared::new(
        workers,
        daemon.snapshot(),
        events_tx,
        Arc::clone(&control.fail_workers),
    ));
    daemon.attach(Arc::clone(&shared));
    let (calls_tx, calls) = crossbeam_channel::bounded(16);
    let socket = cfg
        .control
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(api::DEFAULT_SOCKET));
    let server = Server::start(&socket, cfg.control.group.as_deref(), calls_tx)
        .map_err(|e| RunError::Config(format!("control socket {}: {e}", socket.display())))?;
    let metrics = match &cfg.control.metrics {
        Some(addr) => {
            let m = Arc::new(Metrics::new(Arc::clone(&shared), daemon.publish_latency()));
            m.set_view(View::of(&daemon));
            let server = MetricsServer::start(addr, Arc::clone(&m)).map_err(RunError::Io)?;
            info!(%addr, "serving metrics");
            Some((m, server))
        }
        None => None,
    };
    let mut rcfg = cfg.router_config();
    rcfg.max_frame = params.buf_frame;
    let wcfg = WorkerConfig {
        burst: cfg.dataplane.burst,
        busy_poll: Duration::from_micros(cfg.dataplane.busy_poll_us),
        io_uring: cfg.dataplane.io_uring,
        vm_one_copy: cfg.dataplane.vm_one_copy,
    };
    let routers = daemon
        .rib()
        .routers(&router_cfg, daemon.fib(), &rcfg, workers);
    let mut handles: Vec<_> = routers
        .into_iter()
        .enumerate()
        .map(|(i, router)| {
            let worker = Worker::new(i, router, Arc::clone(&shared), wcfg.clone());
            std::thread::Builder::new()
                .name(format!("edgefwd-w{i}"))
                .spawn(move || worker.run())
        })
        .collect::<Result<_, _>>()?;
    info!(config = %name.display(), workers, ports = cfg.ports.len(), "forwarding");

    let nudged = if control.poll_links {
        crossbeam_channel::never()
    } else {
        match LinkEvents::start() {
            Ok((events, nudged)) => {
                daemon.watch_links(events);
                nudged
            }
            Err(e) => {
                warn!("link changes will be polled: {e}");
                crossbeam_channel::never()
            }
        }
    };
    // Routes the host's daemons install through the mirrors.
    let specs = daemon.mirror_specs();
    let (_route_mirror, kernel_routes) = if specs.is_empty() {
        (None, crossbeam_channel::never())
    } else {
        let (m, rx) = RouteMirror::start(&specs, cfg.control.netlink_buffer)
            .map_err(|e| RunError::Config(format!("route mirror: {e}")))?;
        daemon.watch_kernel_routes(Arc::clone(m.counts()));
        (Some(m), rx)
    };
    // With every link's changes pushed by the kernel, the poll is only a
    // safety net.
    // Asked again at each poll: a port bound later to a device whose link
    // no kernel notification covers (a VM's vhost-user socket) is polled
    // as often as one given in the config.
    let poll_every = |d: &Daemon| {
        if d.links_watched() {
            LINK_POLL
        } else {
            PROBE_EVERY
        }
    };
    let mut next_probe = Instant::now() + PROBE_EVERY;
    let mut next_poll = Instant::now() + poll_every(&daemon);
    let mut failed = None;
    let mut health = control.notify.clone().map(Health::new);
    let (mut view_stale, mut view_at) = (false, Instant::now());
    while !control.stop.load(Ordering::Relaxed) {
        let wait = next_probe.saturating_duration_since(Instant::now());
        crossbeam_channel::select! {
            recv(calls) -> call => if let Ok(call) = call {
                if let Command::Capture { port, direction, drops, count, snaplen } = &call.command {
                    let started = capture_start(&daemon, &shared, port, direction.as_deref(), *drops, *count, *snaplen);
                    match started {
                        Ok((data, streamer)) => call.reply.stream(Response { ok: true, data: Some(data), error: None }, streamer),
                        Err(e) => call.reply.send(refusal(e)),
                    }
                    continue;
                }
                let (name, started) = (call.command.name(), Instant::now());
                let result = daemon.handle(call.command, &Running(&shared));
                if let Some((m, _)) = &metrics {
                    m.observe_command(name, started.elapsed().as_secs_f64());
                    view_stale = true;
                }
                let answer = match result {
                    Ok(data) => Response {
                        ok: true,
                        data: Some(data),
                        error: None,
                    },
                    Err(e) => refusal(e),
                };
                call.reply.send(answer);
            },
            recv(nudged) -> _ => {
                daemon.probe_links();
            },
            recv(kernel_routes) -> batch => if let Ok(batch) = batch {
                daemon.apply_kernel(&batch);
                view_stale = true;
            },
            default(wait) => {},
        }
        // A stream of commands or link events must not starve the rest.
        if Instant::now() < next_probe {
            continue;
        }
        next_probe = Instant::now() + PROBE_EVERY;
        if let Some(i) = handles.iter().position(|h| h.is_finished()) {
            let error = joined(handles.remove(i))
                .err()
                .unwrap_or_else(|| io::Error::other("ended before the daemon stopped"));
            tracing::error!(worker = i, %error, "worker failed; stopping");
            failed = Some(RunError::Worker { worker: i, error });
            break;
        }
        if Instant::now() >= next_poll {
            next_poll = Instant::now() + poll_every(&daemon);
            daemon.probe_links();
        }
        if let Some((m, _)) = &metrics {
            // Counting routes walks the RIB: at most once a second, however
            // many commands come.
            view_stale |= m.links_differ(daemon.links());
            if view_stale && view_at.elapsed() >= VIEW_EVERY {
                m.set_view(View::of(&daemon));
                (view_stale, view_at) = (false, Instant::now());
            }
        }
        if let Some(h) = &mut health {
            let beats: Vec<u64> = shared
                .activity
                .iter()
                .map(|a| a.beats.load(Ordering::Acquire))
                .collect();
            h.check(&beats, || status_line(&daemon, &shared));
        }
        while let Ok(Event::DeviceFailed { port, error }) = events.try_recv() {
            warn!(port = %cfg.ports[usize::from(port)].name, %error, "device failed; port down");
            daemon.set_link(usize::from(port), LinkState::Gone);
        }
        if control.reload.swap(false, Ordering::Relaxed) {
            if let Err(e) = daemon.reload() {
                warn!("reload refused: {e}");
            }
            view_stale = true;
        }
        if control.dump.swap(false, Ordering::Relaxed) {
            info!(
                "counters\n{}",
                Counters::new(&daemon.names(), Some(daemon.links()), &sum(&shared)).to_text()
            );
        }
    }
    info!("stopping");
    if let Some(h) = &health {
        h.stopping();
    }
    drop(server);
    drop(metrics);
    shared.stop.store(true, Ordering::Relaxed);
    let mut failure = None;
    for h in handles {
        if let Err(e) = joined(h) {
            failure = Some(e);
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok(RunSummary {
        stats: sum(&shared),
        names: daemon.names(),
        links: daemon.links().to_vec(),
    })
}

/// Starts `capture`: its answer's data and what streams it.
fn capture_start(
    daemon: &Daemon,
    shared: &Arc<Shared>,
    port: &str,
    direction: Option<&str>,
    drops: bool,
    count: Option<u64>,
    snaplen: Option<usize>,
) -> Result<(serde_json::Value, crate::server::Streamer), String> {
    let (id, _) = daemon
        .config()
        .port(port)
        .ok_or_else(|| format!("unknown port {port:?}"))?;
    let spec = crate::capture::spec(id as u16, direction, drops, snaplen)?;
    let snaplen = spec.snaplen;
    let streamer = crate::capture::start(shared, spec, port.to_owned(), count)?;
    Ok((
        serde_json::json!({"port": port, "snaplen": snaplen, "count": count, "drops": drops}),
        streamer,
    ))
}

/// The one-line summary systemd shows (`systemctl status`).
fn status_line(daemon: &Daemon, shared: &Shared) -> String {
    let links = daemon.links();
    let up = links.iter().filter(|l| l.is_up()).count();
    let t = sum(shared);
    format!(
        "forwarding: {up} of {} ports up, {} workers; received {} forwarded {} dropped {}",
        links.len(),
        shared.activity.len(),
        t.received(),
        t.forwarded,
        t.dropped()
    )
}

/// What a worker thread ended with: its error, or that it panicked.
fn joined(
    h: std::thread::JoinHandle<io::Result<edgefwd_core::pipeline::Router>>,
) -> io::Result<()> {
    match h.join() {
        Ok(r) => r.map(drop),
        Err(_) => Err(io::Error::other("a worker panicked")),
    }
}

/// The running workers, as the daemon's commands see them.
struct Running<'a>(&'a Shared);

/// How long a question to the workers waits for every answer (a worker
/// answers within a tick, 10 ms, unless it is busy with a burst).
const ASK_WAIT: Duration = Duration::from_secs(1);

impl Workers for Running<'_> {
    fn stats(&self) -> Stats {
        sum(self.0)
    }

    fn per_worker(&self) -> Vec<WorkerCounters> {
        self.0
            .activity
            .iter()
            .zip(&self.0.stats)
            .map(|(a, s)| {
                let s = s.lock();
                WorkerCounters {
                    busy_seconds: a.busy_seconds(),
                    idle_seconds: a.idle_seconds(),
                    bursts: a.bursts.load(Ordering::Relaxed),
                    handed_off: s.handed_off,
                    handed_in: s.handed_in,
                    handoff_dropped: s
                        .ports
                        .iter()
                        .map(|p| p.drops[DropReason::HandOffFull as usize])
                        .sum(),
                }
            })
            .collect()
    }

    fn nat_sessions(&self) -> Result<Vec<NatSessionReport>, String> {
        let answers = self
            .0
            .asks
            .ask(Ask::NatSessions, &self.0.wakers, ASK_WAIT)?;
        Ok(answers
            .iter()
            .flat_map(|a| match a {
                Answer::NatSessions(s) => s.iter().map(NatSessionReport::from).collect(),
                _ => Vec::new(),
            })
            .collect())
    }

    fn census(&self) -> edgefwd_core::census::Census {
        let mut total = edgefwd_core::census::Census::default();
        for c in &self.0.census {
            total.add(&c.lock());
        }
        total
    }

    fn service_flows(
        &self,
        name: &str,
        cursor: usize,
    ) -> Result<(Vec<edgefwd_core::service::FlowView>, Option<usize>), String> {
        let ask = Ask::ServiceFlows {
            name: name.to_owned(),
            cursor,
        };
        let mut flows = Vec::new();
        let mut next = None;
        for a in self.0.asks.ask(ask, &self.0.wakers, ASK_WAIT)? {
            if let Answer::ServiceFlows(f, n) = a {
                flows.extend(f);
                next = next.max(n);
            }
        }
        Ok((flows, next))
    }

    fn start_trace(&self, count: u64, filter: TraceFilter) -> Result<(), String> {
        let ask = Ask::StartTrace { count, filter };
        self.0.asks.ask(ask, &self.0.wakers, ASK_WAIT).map(drop)
    }

    fn traces(&self) -> Result<Vec<(usize, PacketTrace)>, String> {
        let answers = self.0.asks.ask(Ask::Traces, &self.0.wakers, ASK_WAIT)?;
        Ok(answers
            .into_iter()
            .enumerate()
            .flat_map(|(w, a)| match a {
                Answer::Traces(t) => t.into_iter().map(|t| (w, t)).collect(),
                _ => Vec::new(),
            })
            .collect())
    }
}

/// The workers' counters summed, with what devices with I/O threads of
/// their own dropped before a worker saw it (counted as received and
/// dropped, so the identity holds).
pub(crate) fn sum(shared: &Shared) -> Stats {
    let snap = shared.snapshot.load();
    let mut total = Stats::new(snap.devices.len());
    for s in &shared.stats {
        total.add(&s.lock());
    }
    for (port, dev) in total.ports.iter_mut().zip(&snap.devices) {
        // Frames a device with its own I/O threads lost before a worker
        // saw them: received and dropped, so the identity holds.
        let c = dev.counts();
        port.rx += c.rx_queue_full + c.rx_oversize;
        port.drops[DropReason::RxQueueFull as usize] += c.rx_queue_full;
        port.drops[DropReason::Oversize as usize] += c.rx_oversize;
        port.tx_errors += c.tx_failed;
    }
    total
}
