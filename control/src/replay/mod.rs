//! `edgefwd replay`: pcap in (one file per port), the router in between,
//! one pcap out per port.
//!
//! Every port is a [`PcapPort`], driven through the same device interface
//! as the workers drive TAPs. Inputs are merged by timestamp and cut into
//! bursts (one port, at most `burst` packets, at most 1 ms apart); packet
//! timestamps drive the router's clock, so the same trace always gives the
//! same output.
//!
//! With several workers there is one router per worker, as in the daemon:
//! each frame goes to the worker a multi-queue TAP would give it to (see
//! `spread`), and what a router hands to another's flows, the MAC addresses
//! and the neighbours it learns are passed on after each burst, in worker
//! order, until nothing moves: the hand-off is exercised, and the output
//! stays the same from run to run.

mod pcap_port;
pub mod spread;
mod workers;

use edgefwd_core::port::PortId;
use edgefwd_core::time::Time;
use edgefwd_io::{Device, QueueIo};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use pcap_port::PcapPort;
use workers::Workers;

use crate::config::Config;
use crate::report::Report;
use crate::rib::{PortsUp, Rib};
use crate::trace::{TraceError, TraceReader, TraceWriter};

/// Packets within this span of a burst's first may join it.
const BURST_WINDOW: Duration = Duration::from_millis(1);
/// Timer resolution between packets: neighbour retries and timeouts run at
/// this step while the trace is quiet.
const TIMER_STEP: Duration = Duration::from_millis(100);
/// Timer steps run in one quiet gap at most (a longer gap jumps).
const MAX_TIMER_STEPS: u32 = 100;
/// How long the appliance keeps running after the last packet, so pending
/// neighbour resolutions finish on their own schedule.
const END_GRACE: Duration = Duration::from_secs(5);
/// The NAT's port choice secret in a replay (RFC 6056 algorithm 3): fixed,
/// since a replay's ports need not be unpredictable, only repeatable.
const REPLAY_PORT_SECRET: u64 = 0x6564_6765_6677_6400;
/// Inputs larger than this show a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 4 << 20;

/// Where an input's frames come from.
pub enum Source {
    /// A capture file.
    File(PathBuf),
    /// Capture bytes in memory (the bundled demo).
    Bytes {
        /// Name used in messages.
        name: String,
        /// The capture.
        data: &'static [u8],
    },
}

/// One `--in PORT=PCAP`.
pub struct Input {
    /// Port name.
    pub port: String,
    /// The capture.
    pub source: Source,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// An `--in` names no port of the config.
    #[error("--in {port}=...: unknown port {port:?} (the config has {known})")]
    UnknownPort {
        /// The name given.
        port: String,
        /// The config's ports.
        known: String,
    },
    /// No `--in` at all.
    #[error("no input: give at least one --in PORT=PCAP")]
    NoInput,
    /// A capture cannot be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The output directory or a file in it cannot be written.
    #[error("{path}: {source}")]
    Output {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A capture being read.
pub type Reader = TraceReader<io::Chain<io::Cursor<Vec<u8>>, Box<dyn Read + Send>>>;

/// How a replay runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Show a progress bar for large inputs.
    pub progress: bool,
    /// Trace the first this many packets of each worker (0: none).
    pub trace: u64,
    /// Worker routers (at least 1).
    pub workers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            progress: false,
            trace: 0,
            workers: 1,
        }
    }
}

/// Replays `inputs` through a router configured by `cfg`, writing
/// `out_dir/PORT.pcap` for every port.
pub fn replay(
    cfg: &Config,
    inputs: Vec<Input>,
    out_dir: &Path,
    progress: bool,
) -> Result<Report, ReplayError> {
    let opts = Options {
        progress,
        ..Options::default()
    };
    replay_with(cfg, inputs, out_dir, &opts).map(|(r, _)| r)
}

/// [`replay`] as `opts` say, tracing the first `opts.trace` packets (those
/// received and those the appliance made in answer): the report, and the
/// traces as `trace show --json` prints them.
pub fn replay_with(
    cfg: &Config,
    inputs: Vec<Input>,
    out_dir: &Path,
    opts: &Options,
) -> Result<(Report, serde_json::Value), ReplayError> {
    if inputs.is_empty() {
        return Err(ReplayError::NoInput);
    }
    // A fixed port choice secret: the same trace gives the same output.
    let mut cfg = cfg.clone();
    cfg.nat.port_secret.get_or_insert(REPLAY_PORT_SECRET);
    let cfg = &cfg;
    let rib = Rib::from_config(cfg, PortsUp::All);
    let (fib, selection) = rib.build_fib();
    let routers = rib.routers(cfg, Arc::new(fib), &cfg.router_config(), opts.workers);
    let mut workers = Workers::new(routers);
    if opts.trace > 0 {
        workers.start_trace(opts.trace);
    }
    let progress = opts.progress;

    // Every input opens before anything is written.
    let mut total_bytes = 0u64;
    let mut feeds = Vec::new();
    for input in inputs {
        let Some((port, _)) = cfg.port(&input.port) else {
            let known = cfg
                .ports
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ReplayError::UnknownPort {
                port: input.port,
                known,
            });
        };
        let reader = match input.source {
            Source::File(path) => {
                total_bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                TraceReader::open(&path)?
            }
            Source::Bytes { name, data } => {
                total_bytes += data.len() as u64;
                TraceReader::from_reader(name, Box::new(io::Cursor::new(data)))?
            }
        };
        feeds.push((port, reader));
    }

    std::fs::create_dir_all(out_dir).map_err(|source| ReplayError::Output {
        path: out_dir.to_owned(),
        source,
    })?;
    let mut ports = Vec::new();
    let mut outputs = Vec::new();
    for (i, p) in cfg.ports.iter().enumerate() {
        let path = out_dir.join(format!("{}.pcap", file_stem(&p.name)));
        let file = std::fs::File::create(&path).map_err(|source| ReplayError::Output {
            path: path.clone(),
            source,
        })?;
        let w = TraceWriter::new(BufWriter::new(file)).map_err(|source| ReplayError::Output {
            path: path.clone(),
            source,
        })?;
        let mac = workers
            .first()
            .ports()
            .get(i as PortId)
            .map(|p| p.mac)
            .unwrap_or_default();
        ports.push(PcapPort::new(mac, w));
        outputs.push(path);
    }

    for (port, reader) in feeds {
        ports[port].feed(reader);
    }

    let bar = if progress && total_bytes >= PROGRESS_MIN_BYTES {
        let b = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} replay {bar:40} {bytes}/{total_bytes} {elapsed}",
        ) {
            b.set_style(style);
        }
        b
    } else {
        ProgressBar::hidden()
    };

    let mut qio = QueueIo::new(0, None);
    let burst_size = cfg.dataplane.burst;
    let mut received = Vec::with_capacity(1);
    let mut now = Time(0);
    let mut burst_start = Duration::ZERO;
    let mut burst_port = PortId::MAX;
    loop {
        let next = ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.next_time().map(|t| (t, i)))
            .min();
        let Some((ts, i)) = next else { break };
        let port = i as PortId;
        if !workers.is_idle()
            && (port != burst_port
                || workers.longest() >= burst_size
                || ts > burst_start + BURST_WINDOW)
        {
            workers.process(now);
            workers.drain(&ports, &mut qio);
        }
        if workers.is_idle() {
            run_timers(&mut workers, &ports, &mut qio, now, Time::from_duration(ts));
            burst_start = ts;
            burst_port = port;
        }
        // One frame at a time, so inputs on several ports merge by time.
        ports[i].rx_burst(&mut qio, workers.first_mut(), 1, &mut received);
        for r in received.drain(..) {
            now = now.max(r.at.unwrap_or(now));
            let to = spread::queue(r.buf.frame(), workers.len());
            workers.receive(to, port, now, r.buf, r.offload);
        }
        bar.inc(ports[i].take_bytes_read());
    }
    workers.process(now);
    workers.drain(&ports, &mut qio);
    run_timers(&mut workers, &ports, &mut qio, now, now.after(END_GRACE));
    workers.finish();
    workers.drain(&ports, &mut qio);
    bar.finish_and_clear();

    let mut warnings = Vec::new();
    let mut failed = None;
    for (port, path) in ports.into_iter().zip(&outputs) {
        let (w, written) = port.finish();
        warnings.extend(w);
        if let Err(source) = written {
            failed.get_or_insert(ReplayError::Output {
                path: path.clone(),
                source,
            });
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let names: Vec<String> = cfg.ports.iter().map(|p| p.name.clone()).collect();
    let several = workers.len() > 1;
    let shown: Vec<_> = workers
        .routers()
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.traces().iter().map(move |t| (i, r, t)))
        .map(|(i, r, t)| crate::packet_trace::Shown {
            trace: t,
            worker: several.then_some(i),
            route: crate::packet_trace::routed_destination(t).and_then(|d| {
                rib.lookup(r.fib(), &selection.selected, d)
                    .into_iter()
                    .next()
            }),
        })
        .collect();
    let traces = crate::packet_trace::to_json(&shown, &names);
    Ok((
        Report::build(workers.routers(), &rib, &selection, outputs, warnings),
        traces,
    ))
}

/// Runs the routers' timers at each step from `from` to before `to`.
fn run_timers(w: &mut Workers, ports: &[PcapPort], qio: &mut QueueIo, from: Time, to: Time) {
    let mut t = from.after(TIMER_STEP);
    let mut steps = 0;
    while t < to && steps < MAX_TIMER_STEPS {
        w.tick(t);
        w.drain(ports, qio);
        t = t.after(TIMER_STEP);
        steps += 1;
    }
}

/// The file name (without `.pcap`) of a port's replay output: its name,
/// with the `/` of a host mirror's (`Port2/host`) as `~`, which no
/// configured name has.
pub fn file_stem(port: &str) -> String {
    port.replace('/', "~")
}
