//! `edgefwd replay`: pcap in (one file per port), the router in between,
//! one pcap out per port.
//!
//! Every port is a [`PcapPort`], driven through the same device interface
//! as the workers drive TAPs. Inputs are merged by timestamp and cut into
//! bursts (one port, at most `burst` packets, at most 1 ms apart); packet
//! timestamps drive the router's clock, so the same trace always gives the
//! same output.

mod pcap_port;

use edgefwd_core::pipeline::watch::TraceFilter;
use edgefwd_core::pipeline::Router;
use edgefwd_core::port::PortId;
use edgefwd_core::time::Time;
use edgefwd_io::{Device, QueueIo};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use pcap_port::PcapPort;

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

/// Replays `inputs` through a router configured by `cfg`, writing
/// `out_dir/PORT.pcap` for every port.
pub fn replay(
    cfg: &Config,
    inputs: Vec<Input>,
    out_dir: &Path,
    progress: bool,
) -> Result<Report, ReplayError> {
    replay_traced(cfg, inputs, out_dir, progress, 0).map(|(r, _)| r)
}

/// [`replay`], tracing the first `trace` packets (those received and those
/// the appliance made in answer): the report, and the traces as `trace
/// show --json` prints them.
pub fn replay_traced(
    cfg: &Config,
    inputs: Vec<Input>,
    out_dir: &Path,
    progress: bool,
    trace: u64,
) -> Result<(Report, serde_json::Value), ReplayError> {
    if inputs.is_empty() {
        return Err(ReplayError::NoInput);
    }
    let rib = Rib::from_config(cfg, PortsUp::All);
    let (fib, selection) = rib.build_fib();
    let mut router = rib.router(cfg, Arc::new(fib), &cfg.router_config());
    if trace > 0 {
        router.start_trace(trace, TraceFilter::default());
    }

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
        let path = out_dir.join(format!("{}.pcap", p.name));
        let file = std::fs::File::create(&path).map_err(|source| ReplayError::Output {
            path: path.clone(),
            source,
        })?;
        let w = TraceWriter::new(BufWriter::new(file)).map_err(|source| ReplayError::Output {
            path: path.clone(),
            source,
        })?;
        let mac = router
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
    let mut burst = Vec::with_capacity(burst_size);
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
        if !burst.is_empty()
            && (port != burst_port || burst.len() >= burst_size || ts > burst_start + BURST_WINDOW)
        {
            router.process(&mut burst, now);
            drain(&mut router, &ports, &mut qio);
        }
        if burst.is_empty() {
            run_timers(&mut router, &ports, &mut qio, now, Time::from_duration(ts));
            burst_start = ts;
            burst_port = port;
        }
        // One frame at a time, so inputs on several ports merge by time.
        ports[i].rx_burst(&mut qio, &mut router, 1, &mut received);
        for r in received.drain(..) {
            now = now.max(r.at.unwrap_or(now));
            router.receive_buf(&mut burst, port, now, r.buf, r.offload);
        }
        bar.inc(ports[i].take_bytes_read());
    }
    router.process(&mut burst, now);
    drain(&mut router, &ports, &mut qio);
    run_timers(&mut router, &ports, &mut qio, now, now.after(END_GRACE));
    router.finish();
    drain(&mut router, &ports, &mut qio);
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
    let shown: Vec<_> = router
        .traces()
        .iter()
        .map(|t| crate::packet_trace::Shown {
            trace: t,
            worker: None,
            route: crate::packet_trace::routed_destination(t).and_then(|d| {
                rib.lookup(router.fib(), &selection.selected, d)
                    .into_iter()
                    .next()
            }),
        })
        .collect();
    let traces = crate::packet_trace::to_json(&shown, &names);
    Ok((
        Report::build(&router, &rib, &selection, outputs, warnings),
        traces,
    ))
}

/// Runs the router's timers at each step from `from` to before `to`.
fn run_timers(router: &mut Router, ports: &[PcapPort], qio: &mut QueueIo, from: Time, to: Time) {
    let mut t = from.after(TIMER_STEP);
    let mut steps = 0;
    while t < to && steps < MAX_TIMER_STEPS {
        router.tick(t);
        drain(router, ports, qio);
        t = t.after(TIMER_STEP);
        steps += 1;
    }
}

/// Hands what the router queued for each port to its device.
fn drain(router: &mut Router, ports: &[PcapPort], qio: &mut QueueIo) {
    for (port, dev) in ports.iter().enumerate() {
        router.drain_tx_all(port as PortId, |pkts| {
            dev.tx_burst(qio, pkts);
        });
    }
}
