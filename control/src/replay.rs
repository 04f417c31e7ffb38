//! `edgefwd replay`: pcap in (one file per port), the router in between,
//! one pcap out per port.
//!
//! Inputs are merged by timestamp and cut into bursts (one port, at most
//! `burst` packets, at most 1 ms apart); packet timestamps drive the router's
//! clock, so the same trace always gives the same output.

use edgefwd_dataplane::pipeline::Router;
use edgefwd_dataplane::port::PortId;
use edgefwd_dataplane::time::Time;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::report::Report;
use crate::rib::Rib;
use crate::trace::{to_ethernet, Record, TraceError, TraceReader, TraceWriter};

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

type Reader = TraceReader<io::Chain<io::Cursor<Vec<u8>>, Box<dyn Read>>>;

struct Feed {
    port: PortId,
    reader: Reader,
    head: Option<Record>,
}

/// Replays `inputs` through a router configured by `cfg`, writing
/// `out_dir/PORT.pcap` for every port.
pub fn replay(
    cfg: &Config,
    inputs: Vec<Input>,
    out_dir: &Path,
    progress: bool,
) -> Result<Report, ReplayError> {
    if inputs.is_empty() {
        return Err(ReplayError::NoInput);
    }
    let rib = Rib::from_config(cfg, false);
    let (fib, selection) = rib.build_fib();
    let mut router = rib.router(cfg, Arc::new(fib), &cfg.router_config());

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
        feeds.push(Feed {
            port: port as PortId,
            reader,
            head: None,
        });
    }

    std::fs::create_dir_all(out_dir).map_err(|source| ReplayError::Output {
        path: out_dir.to_owned(),
        source,
    })?;
    let mut writers = Vec::new();
    let mut outputs = Vec::new();
    for p in &cfg.ports {
        let path = out_dir.join(format!("{}.pcap", p.name));
        let file = std::fs::File::create(&path).map_err(|source| ReplayError::Output {
            path: path.clone(),
            source,
        })?;
        let w = TraceWriter::new(BufWriter::new(file)).map_err(|source| ReplayError::Output {
            path: path.clone(),
            source,
        })?;
        writers.push(w);
        outputs.push(path);
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

    let mut warnings = Vec::new();
    for f in &mut feeds {
        advance(f, &mut warnings);
    }
    let burst_size = cfg.dataplane.burst;
    let mut burst = Vec::with_capacity(burst_size);
    let mut frame = Vec::with_capacity(2048);
    let mut now = Time(0);
    let mut burst_start = Duration::ZERO;
    let mut burst_port = PortId::MAX;
    let mut write_error = None;
    loop {
        let next = feeds
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.head.as_ref().map(|r| (r.ts, i)))
            .min();
        let Some((ts, i)) = next else { break };
        let port = feeds[i].port;
        if !burst.is_empty()
            && (port != burst_port || burst.len() >= burst_size || ts > burst_start + BURST_WINDOW)
        {
            router.process(&mut burst, now);
            drain(&mut router, &mut writers, &mut write_error);
        }
        if burst.is_empty() {
            run_timers(
                &mut router,
                &mut writers,
                &mut write_error,
                now,
                Time::from_duration(ts),
            );
            burst_start = ts;
            burst_port = port;
        }
        let Some(rec) = feeds[i].head.take() else {
            break;
        };
        bar.inc(rec.data.len() as u64 + 16);
        now = now.max(Time::from_duration(rec.ts));
        let mac = router.ports().get(port).map(|p| p.mac).unwrap_or_default();
        let whole = rec.whole();
        to_ethernet(&rec, mac, &mut frame);
        router.receive(&mut burst, port, now, &frame, whole);
        advance(&mut feeds[i], &mut warnings);
    }
    router.process(&mut burst, now);
    drain(&mut router, &mut writers, &mut write_error);
    run_timers(
        &mut router,
        &mut writers,
        &mut write_error,
        now,
        now.after(END_GRACE),
    );
    router.finish();
    drain(&mut router, &mut writers, &mut write_error);
    bar.finish_and_clear();

    for (w, path) in writers.into_iter().zip(&outputs) {
        let mut inner = w.into_inner();
        if let Err(source) = io::Write::flush(&mut inner) {
            return Err(ReplayError::Output {
                path: path.clone(),
                source,
            });
        }
    }
    if let Some((port, source)) = write_error {
        return Err(ReplayError::Output {
            path: outputs[usize::from(port)].clone(),
            source,
        });
    }
    Ok(Report::build(&router, &rib, &selection, outputs, warnings))
}

/// Runs the router's timers at each step from `from` to before `to`.
fn run_timers<W: io::Write>(
    router: &mut Router,
    writers: &mut [TraceWriter<W>],
    error: &mut Option<(PortId, io::Error)>,
    from: Time,
    to: Time,
) {
    let mut t = from.after(TIMER_STEP);
    let mut steps = 0;
    while t < to && steps < MAX_TIMER_STEPS {
        router.tick(t);
        drain(router, writers, error);
        t = t.after(TIMER_STEP);
        steps += 1;
    }
}

fn advance(f: &mut Feed, warnings: &mut Vec<String>) {
    match f.reader.next_record() {
        Ok(r) => f.head = r,
        Err(e) => {
            warnings.push(format!("{e}; the rest of the file was not read"));
            f.head = None;
        }
    }
}

fn drain<W: io::Write>(
    router: &mut Router,
    writers: &mut [TraceWriter<W>],
    error: &mut Option<(PortId, io::Error)>,
) {
    for (port, w) in writers.iter_mut().enumerate() {
        let port = port as PortId;
        router.drain_tx(port, |p| {
            if let Err(e) = w.write(p.meta.ts.as_duration(), p.buf.frame()) {
                error.get_or_insert((port, e));
            }
        });
    }
}
