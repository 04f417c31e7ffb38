//! `pcap`: the device of a port in a replay. Its frames come from the
//! captures given for the port (merged by time, when there are several)
//! with their capture times; what the router sends goes to the port's
//! output capture.

use std::io::{self, BufWriter};
use std::time::Duration;

use edgefwd_core::packet::buf::MAX_FRAME;
use edgefwd_core::packet::{MacAddr, Packet};
use edgefwd_core::port::LinkState;
use edgefwd_core::stats::DropReason;
use edgefwd_core::time::Time;
use edgefwd_io::{BufSource, Capabilities, Device, QueueIo, Readiness, Received, RxStatus};
use parking_lot::Mutex;

use super::Reader;
use crate::trace::{to_ethernet, Record, TraceWriter};

/// One capture feeding a port, and its next record.
struct Feed {
    reader: Reader,
    head: Option<Record>,
}

struct Input {
    feeds: Vec<Feed>,
    frame: Vec<u8>,
    /// Bytes of records taken since progress was last asked for.
    bytes: u64,
    /// Captures that could not be read to their end.
    warnings: Vec<String>,
}

impl Input {
    /// The feed with the earliest next record, and that record's time.
    fn next(&self) -> Option<(Duration, usize)> {
        self.feeds
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.head.as_ref().map(|r| (r.ts, i)))
            .min()
    }
}

struct Output {
    writer: TraceWriter<BufWriter<std::fs::File>>,
    /// The first write that failed.
    error: Option<io::Error>,
}

/// A port's captures in a replay.
pub struct PcapPort {
    mac: MacAddr,
    input: Mutex<Input>,
    output: Mutex<Output>,
}

impl PcapPort {
    /// A port whose MAC is `mac` (a record of another link type becomes an
    /// Ethernet frame addressed to it), writing to `writer`.
    pub fn new(mac: MacAddr, writer: TraceWriter<BufWriter<std::fs::File>>) -> PcapPort {
        PcapPort {
            mac,
            input: Mutex::new(Input {
                feeds: Vec::new(),
                frame: Vec::with_capacity(2048),
                bytes: 0,
                warnings: Vec::new(),
            }),
            output: Mutex::new(Output {
                writer,
                error: None,
            }),
        }
    }

    /// Adds a capture whose frames arrive on this port.
    pub fn feed(&self, reader: Reader) {
        let mut input = self.input.lock();
        let mut feed = Feed { reader, head: None };
        advance(&mut feed, &mut input.warnings);
        input.feeds.push(feed);
    }

    /// The capture time of the next frame, if any is left.
    pub fn next_time(&self) -> Option<Duration> {
        self.input.lock().next().map(|(ts, _)| ts)
    }

    /// Bytes of records taken since the last call (for progress).
    pub fn take_bytes_read(&self) -> u64 {
        std::mem::take(&mut self.input.lock().bytes)
    }

    /// Ends the port: its warnings, and its output flushed (or the first
    /// write that failed).
    pub fn finish(self) -> (Vec<String>, io::Result<()>) {
        let input = self.input.into_inner();
        let output = self.output.into_inner();
        let mut out = output.writer.into_inner();
        let written = match output.error {
            Some(e) => Err(e),
            None => io::Write::flush(&mut out),
        };
        (input.warnings, written)
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

impl Device for PcapPort {
    fn kind(&self) -> &'static str {
        "pcap"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_frame: MAX_FRAME,
            ..Capabilities::default()
        }
    }

    fn readiness(&self, _queue: usize) -> Readiness {
        Readiness::Never
    }

    /// The next `max` frames in capture order, each with its capture time;
    /// one the capture cut short is dropped as `truncated`.
    fn rx_burst(
        &self,
        _io: &mut QueueIo,
        pool: &mut dyn BufSource,
        max: usize,
        out: &mut Vec<Received>,
    ) -> RxStatus {
        let mut guard = self.input.lock();
        let input = &mut *guard;
        for _ in 0..max {
            let Some((_, i)) = input.next() else {
                return RxStatus::Drained;
            };
            let Some(rec) = input.feeds[i].head.take() else {
                return RxStatus::Drained;
            };
            input.bytes += rec.data.len() as u64 + 16;
            to_ethernet(&rec, self.mac, &mut input.frame);
            let mut r = Received::copied(pool, &input.frame);
            if !rec.whole() {
                r.offload = Err(DropReason::Truncated);
            }
            r.at = Some(Time::from_duration(rec.ts));
            out.push(r);
            advance(&mut input.feeds[i], &mut input.warnings);
        }
        RxStatus::More
    }

    /// Writes each frame with the time the router sent it.
    fn tx_burst(&self, _io: &mut QueueIo, pkts: &mut [Packet]) -> u64 {
        let mut output = self.output.lock();
        let mut refused = 0;
        for p in pkts.iter() {
            if let Err(e) = output.writer.write(p.meta.ts.as_duration(), p.buf.frame()) {
                output.error.get_or_insert(e);
                refused += 1;
            }
        }
        refused
    }

    fn link(&self) -> LinkState {
        LinkState::Up
    }
}
