//! A pcap recorder that wraps any device (smoltcp's `PcapWriter`): every
//! frame it receives and every frame sent through it is written, as it
//! crossed the device, to a pcap stream (Ethernet, nanosecond timestamps).
//! The base of live capture; a failed write is counted, and never stops
//! the device.

use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use edgefwd_core::packet::Packet;
use edgefwd_core::port::LinkState;
use mio::Waker;
use parking_lot::Mutex;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};

use crate::device::{
    BufSource, Capabilities, Device, DeviceCounts, QueueIo, Readiness, Received, RxStatus,
};

/// What a [`Recorder`] has written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Frames written.
    pub frames: u64,
    /// Frames that could not be written.
    pub failed: u64,
}

struct Sink<W: Write> {
    pcap: PcapWriter<W>,
    recorded: Recorded,
}

/// `D`, with what crosses it written to a pcap stream.
pub struct Recorder<D, W: Write> {
    inner: D,
    sink: Mutex<Sink<W>>,
}

impl<D: Device, W: Write + Send> Recorder<D, W> {
    /// Wraps `inner`, writing to `out` (the pcap header first).
    pub fn new(inner: D, out: W) -> std::io::Result<Self> {
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            snaplen: 65535 + 18,
            ..PcapHeader::default()
        };
        let pcap = PcapWriter::with_header(out, header).map_err(std::io::Error::other)?;
        Ok(Recorder {
            inner,
            sink: Mutex::new(Sink {
                pcap,
                recorded: Recorded::default(),
            }),
        })
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// What has been written so far.
    pub fn recorded(&self) -> Recorded {
        self.sink.lock().recorded
    }

    /// Ends the recording; the stream, flushed.
    pub fn into_writer(self) -> W {
        self.sink.into_inner().pcap.into_writer()
    }

    fn record<'a>(&self, frames: impl Iterator<Item = &'a [u8]>) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut sink = self.sink.lock();
        for f in frames {
            let p = PcapPacket::new(ts, f.len() as u32, f);
            match sink.pcap.write_packet(&p) {
                Ok(_) => sink.recorded.frames += 1,
                Err(_) => sink.recorded.failed += 1,
            }
        }
    }
}

impl<D: Device, W: Write + Send> Device for Recorder<D, W> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn max_frame(&self, mtu: u16) -> usize {
        self.inner.max_frame(mtu)
    }

    fn readiness(&self, queue: usize) -> Readiness {
        self.inner.readiness(queue)
    }

    fn set_waker(&self, waker: Arc<Waker>) {
        self.inner.set_waker(waker);
    }

    fn rx_burst(
        &self,
        io: &mut QueueIo,
        pool: &mut dyn BufSource,
        max: usize,
        out: &mut Vec<Received>,
    ) -> RxStatus {
        let from = out.len();
        let status = self.inner.rx_burst(io, pool, max, out);
        self.record(out[from..].iter().map(|r| r.buf.frame()));
        status
    }

    fn tx_burst(&self, io: &mut QueueIo, pkts: &mut [Packet]) -> u64 {
        // Recorded as handed to the device (a super-packet whole).
        self.record(pkts.iter().map(|p| p.buf.frame()));
        self.inner.tx_burst(io, pkts)
    }

    fn link(&self) -> LinkState {
        self.inner.link()
    }

    fn counts(&self) -> DeviceCounts {
        self.inner.counts()
    }
}
