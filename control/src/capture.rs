//! `edgefwd capture`: a running capture ([`Capture`]) streamed to the
//! client as pcapng, which tcpdump, tshark and Wireshark read while it
//! runs (`edgefwd capture Port2 -w - | tcpdump -nn -r -`).
//!
//! One interface (the port, Ethernet, nanosecond timestamps); each packet
//! says its direction in `epb_flags`, and a dropped one its drop reason and
//! stage in its comment (`ttl_expired at ip4-input`). The stream ends after
//! `count` frames, when the client goes, or when the daemon stops; the
//! frames lost because the client read too slowly are counted in a last
//! interface statistics block (`isb_ifdrop`).

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edgefwd_io::capture::{Capture, CaptureSpec, Direction};
use edgefwd_io::worker::Shared;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::interface_statistics::{
    InterfaceStatisticsBlock, InterfaceStatisticsOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

use crate::server::Streamer;

/// Frames a capture's queue holds for its reader.
const DEPTH: usize = 4096;
/// Largest snap length (a TSO super-frame fits).
pub const SNAPLEN_MAX: usize = 65_536;
/// How long the streamer sleeps when no frame waits.
const IDLE: Duration = Duration::from_millis(2);

/// What `capture` asked for, checked.
pub fn spec(
    port: u16,
    direction: Option<&str>,
    drops: bool,
    snaplen: Option<usize>,
) -> Result<CaptureSpec, String> {
    let (rx, tx) = match direction.unwrap_or("both") {
        "rx" => (true, false),
        "tx" => (false, true),
        "both" => (true, true),
        other => return Err(format!("--direction: {other:?} is not rx, tx or both")),
    };
    let snaplen = snaplen.unwrap_or(SNAPLEN_MAX);
    if !(64..=SNAPLEN_MAX).contains(&snaplen) {
        return Err(format!(
            "--snaplen: {snaplen} is not between 64 and {SNAPLEN_MAX}"
        ));
    }
    Ok(CaptureSpec {
        port,
        rx: rx && !drops,
        tx: tx && !drops,
        drops,
        snaplen,
        depth: DEPTH,
    })
}

/// Starts capturing `spec` on the workers and returns what streams it to
/// the client once the answer line is out. The capture stops when the
/// stream ends, or if it never starts (the client went first).
pub fn start(
    shared: &Arc<Shared>,
    spec: CaptureSpec,
    port_name: String,
    count: Option<u64>,
) -> Result<Streamer, String> {
    let capture = Capture::new(spec);
    shared.captures.add(Arc::clone(&capture))?;
    let running = Running {
        capture,
        shared: Arc::clone(shared),
    };
    Ok(Box::new(move |client| {
        let r = stream(&running.capture, &running.shared, &port_name, count, client);
        let lost = running.capture.lost();
        match r {
            Ok(frames) => tracing::info!(port = port_name, frames, lost, "capture ended"),
            Err(e) => tracing::info!(port = port_name, lost, "capture ended: {e}"),
        }
    }))
}

/// A capture the workers feed; stopped when dropped.
struct Running {
    capture: Arc<Capture>,
    shared: Arc<Shared>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shared.captures.remove(&self.capture);
    }
}

/// Streams `capture` (already running) to `client` until `count` frames,
/// the client closes, or `shared.stop`; then stops it. Returns the frames
/// written.
pub fn stream(
    capture: &Arc<Capture>,
    shared: &Shared,
    port_name: &str,
    count: Option<u64>,
    client: UnixStream,
) -> io::Result<u64> {
    // The client says nothing more: a read that returns is its going.
    let gone = Arc::new(AtomicBool::new(false));
    let end = client.try_clone()?;
    {
        let (mut r, gone) = (client.try_clone()?, Arc::clone(&gone));
        std::thread::Builder::new()
            .name("edgefwd-capture-r".to_owned())
            .spawn(move || {
                let mut b = [0u8; 64];
                while matches!(r.read(&mut b), Ok(n) if n > 0) {}
                gone.store(true, Ordering::Relaxed);
            })?;
    }
    let snaplen = capture.spec().snaplen;
    let mut w = PcapNgWriter::new(io::BufWriter::new(client)).map_err(io::Error::other)?;
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: snaplen as u32,
        options: vec![
            InterfaceDescriptionOption::IfName(Cow::Borrowed(port_name)),
            InterfaceDescriptionOption::IfTsResol(9),
        ],
    })
    .map_err(io::Error::other)?;
    w.get_mut().flush()?;
    let mut written = 0u64;
    let limit = count.unwrap_or(u64::MAX);
    while written < limit && !gone.load(Ordering::Relaxed) && !shared.stop.load(Ordering::Relaxed) {
        let mut any = false;
        while written < limit {
            let Some(c) = capture.pop() else {
                break;
            };
            any = true;
            let (flags, comment) = match c.dir {
                // epb_flags bits 0-1: 01 inbound, 10 outbound.
                Direction::Rx => (1, None),
                Direction::Tx => (2, None),
                Direction::Dropped { reason, stage } => {
                    (1, Some(format!("{} at {}", reason.name(), stage.name())))
                }
            };
            let mut options = vec![EnhancedPacketOption::Flags(flags)];
            if let Some(text) = comment {
                options.push(EnhancedPacketOption::Comment(Cow::Owned(text)));
            }
            let block = EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_nanos(c.ts_ns),
                original_len: c.len as u32,
                data: Cow::Borrowed(&c.data),
                options,
            };
            let r = w.write_pcapng_block(block);
            capture.recycle(c.data);
            r.map_err(io::Error::other)?;
            written += 1;
        }
        if any {
            w.get_mut().flush()?;
        } else {
            std::thread::sleep(IDLE);
        }
    }
    let stats = InterfaceStatisticsBlock {
        interface_id: 0,
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        options: vec![InterfaceStatisticsOption::IsbIfDrop(capture.lost())],
    };
    // The client may be gone already.
    let _ = w.write_pcapng_block(stats);
    let _ = w.get_mut().flush();
    // Ends the stream for the client and the watching thread alike.
    let _ = end.shutdown(std::net::Shutdown::Both);
    Ok(written)
}
