//! A pcap recorder that wraps any device (smoltcp's `PcapWriter`): every
//! frame it receives and every frame sent through it is written, as it
//! crossed the device, to a pcap stream (Ethernet, nanosecond timestamps).
//! The base of live capture; a failed write is counted, and never stops
//! the device.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use edgefwd_core::packet::Packet;
use edgefwd_core::port::LinkState;
use parking_lot::Mutex;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};

use crate::device::{delegate_to_inner, BufSource, Device, QueueIo, Received, RxStatus};

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
            endianness: pcap_file::Endianness::Little,
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
    delegate_to_inner!();

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemPort;
    use edgefwd_core::packet::{Meta, PacketBuf};
    use edgefwd_core::time::Time;

    struct Pool;

    impl BufSource for Pool {
        fn take(&mut self) -> edgefwd_core::packet::PacketBuf {
            PacketBuf::new()
        }
        fn give_back(&mut self, _: PacketBuf) {}
    }

    /// The frames of a little-endian, nanosecond pcap, read by hand (not
    /// by the library that wrote it).
    fn frames(pcap: &[u8]) -> Vec<Vec<u8>> {
        assert_eq!(
            &pcap[..4],
            &0xa1b2_3c4du32.to_le_bytes(),
            "nanosecond magic"
        );
        assert_eq!(
            u32::from_le_bytes(pcap[20..24].try_into().unwrap()),
            1,
            "Ethernet"
        );
        let mut out = Vec::new();
        let mut at = 24;
        while at < pcap.len() {
            let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
            out.push(pcap[at + 16..at + 16 + incl].to_vec());
            at += 16 + incl;
        }
        out
    }

    #[test]
    fn what_crosses_the_device_both_ways_is_written_in_order() {
        let rec = Recorder::new(MemPort::new(), Vec::new()).unwrap();
        rec.inner().push(vec![1; 60]);
        rec.inner().push(vec![2; 70]);
        let mut io = QueueIo::new(0, None);
        let mut got = Vec::new();
        rec.rx_burst(&mut io, &mut Pool, 8, &mut got);
        assert_eq!(got.len(), 2);
        let mut buf = PacketBuf::new();
        buf.set_frame(&[3; 80]).unwrap();
        let mut out = [Packet {
            buf,
            meta: Meta::received(0, Time(0)),
        }];
        assert_eq!(rec.tx_burst(&mut io, &mut out), 0);
        assert_eq!(
            rec.recorded(),
            Recorded {
                frames: 3,
                failed: 0
            }
        );
        let sent = rec.inner().take_sent();
        let written = frames(&rec.into_writer());
        assert_eq!(written, vec![vec![1; 60], vec![2; 70], vec![3; 80]]);
        assert_eq!(sent, vec![vec![3; 80]], "the device still got its frame");
    }
}
