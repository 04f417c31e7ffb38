//! AF_PACKET ports on real NICs, through pnet's datalink channel.
//!
//! pnet's receiver and sender block (poll, then one recvfrom or sendto per
//! frame) and need `&mut`, so each port has its own I/O threads: the rx
//! thread reads into buffers and pushes them on the port's bounded rx queue
//! (a crossbeam `ArrayQueue`; a full queue drops and counts), then wakes the
//! worker that owns the port; workers hand frames to the tx thread through a
//! bounded channel. Buffers circulate through the port's `free` queue, so in
//! steady state nothing is allocated.
//!
//! Set up the way a forwarder needs, not pnet's defaults: a read buffer one
//! byte larger than the largest frame (a frame that fills it was cut short
//! and is counted, not forwarded), not promiscuous (the port's MAC must be
//! the NIC's own), a read timeout so the thread notices shutdown, and a
//! socket that ignores frames the host itself sends on the NIC.

use std::io;
use std::os::fd::IntoRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use crossbeam_queue::ArrayQueue;
use mio::Waker;
use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender};

use edgefwd_core::packet::offload::Offload;
use edgefwd_core::packet::{MacAddr, Packet, PacketBuf};
use edgefwd_core::port::LinkState;
use parking_lot::Mutex;

use crate::binding::netns_path;
use crate::device::{
    plain_frames, BufSource, Capabilities, Device, DeviceCounts, QueueIo, Readiness, Received,
    RxStatus,
};
use crate::link::LinkProbe;
use crate::sys;

/// Buffers made when the port opens.
const PREALLOC: usize = 64;

/// How long the I/O threads wait before looking at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Counters kept by the I/O threads.
#[derive(Default)]
struct IoCounters {
    /// Frames dropped because the rx queue was full.
    pub rx_queue_full: AtomicU64,
    /// Frames longer than the read buffer (cut short by the socket).
    pub rx_oversize: AtomicU64,
    /// Frames the socket refused to send.
    pub tx_failed: AtomicU64,
}

/// What the I/O threads share with the workers.
struct Queues {
    rx: ArrayQueue<PacketBuf>,
    free: ArrayQueue<PacketBuf>,
    /// Set by the owning worker before it sleeps; the rx thread wakes it
    /// only then, so a busy worker gets no wake-up syscalls.
    armed: AtomicBool,
    waker: OnceLock<Arc<Waker>>,
    counters: IoCounters,
    stop: AtomicBool,
    failed: OnceLock<io::Error>,
    max_frame: usize,
    buf_frame: usize,
}

/// An open AF_PACKET port.
pub struct AfPacket {
    name: String,
    netns: Option<PathBuf>,
    q: Arc<Queues>,
    tx: Option<Sender<PacketBuf>>,
    threads: Vec<JoinHandle<()>>,
    probe: Mutex<LinkProbe>,
}

impl AfPacket {
    /// Opens NIC `name` in namespace `netns` (`None`: ours), checking that
    /// its MAC is `mac`. `depth` bounds the rx queue and the tx channel;
    /// `max_frame` is the largest frame forwarded; buffers are made for
    /// `buf_frame` bytes, as the workers' own are, since they circulate.
    pub fn open(
        name: &str,
        netns: Option<&str>,
        mac: MacAddr,
        depth: usize,
        max_frame: usize,
        buf_frame: usize,
    ) -> io::Result<AfPacket> {
        let buf_frame = buf_frame.max(max_frame);
        let netns = netns.map(netns_path);
        let open = || -> io::Result<(Channel, LinkProbe)> {
            let iface = pnet_datalink::interfaces()
                .into_iter()
                .find(|i| i.name == name)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such interface"))?;
            let nic_mac = iface.mac.map(|m| MacAddr([m.0, m.1, m.2, m.3, m.4, m.5]));
            if nic_mac != Some(mac) {
                return Err(io::Error::other(format!(
                    "the port's mac {mac} is not the NIC's ({}); edgefwd does not put NICs in promiscuous mode",
                    nic_mac.map_or("none".to_owned(), |m| m.to_string())
                )));
            }
            let cfg = pnet_datalink::Config {
                read_buffer_size: max_frame + 1,
                write_buffer_size: max_frame,
                read_timeout: Some(POLL),
                write_timeout: Some(POLL),
                promiscuous: false,
                socket_fd: Some(sys::packet_socket()?.into_raw_fd()),
                ..Default::default()
            };
            let ch = pnet_datalink::channel(&iface, cfg)?;
            Ok((ch, LinkProbe::new(name)?))
        };
        let (ch, probe) = match &netns {
            Some(ns) => sys::in_netns(ns, open)?,
            None => open()?,
        };
        let Channel::Ethernet(sender, receiver) = ch else {
            return Err(io::Error::other(
                "pnet returned a channel that is not Ethernet",
            ));
        };
        let depth = depth.max(1);
        let q = Arc::new(Queues {
            rx: ArrayQueue::new(depth),
            free: ArrayQueue::new(depth * 2),
            armed: AtomicBool::new(true),
            waker: OnceLock::new(),
            counters: IoCounters::default(),
            stop: AtomicBool::new(false),
            failed: OnceLock::new(),
            max_frame,
            buf_frame,
        });
        // A few buffers up front; more are made by the rx thread if traffic
        // needs them, and then kept.
        for _ in 0..depth.min(PREALLOC) {
            let _ = q.free.push(PacketBuf::with_capacity(buf_frame));
        }
        let (tx, tx_rx) = crossbeam_channel::bounded(depth);
        let spawn = |what: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("edgefwd-{what}-{name}"))
                .spawn(f)
        };
        let threads = vec![
            spawn("rx", {
                let q = Arc::clone(&q);
                Box::new(move || rx_thread(receiver, &q))
            })?,
            spawn("tx", {
                let q = Arc::clone(&q);
                Box::new(move || tx_thread(sender, tx_rx, &q))
            })?,
        ];
        Ok(AfPacket {
            name: name.to_owned(),
            netns,
            q,
            tx: Some(tx),
            threads,
            probe: Mutex::new(probe),
        })
    }

    /// The NIC's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file the NIC was opened in, if not ours.
    pub fn netns(&self) -> Option<&std::path::Path> {
        self.netns.as_deref()
    }

    /// Takes one received frame, handing a buffer back for the rx thread in
    /// exchange (`spare`, from the caller's pool). `None` when the queue is
    /// empty: the port is then armed to wake its worker on the next frame.
    pub fn recv(&self, spare: &mut Option<PacketBuf>) -> Option<PacketBuf> {
        let got = self.q.rx.pop().or_else(|| {
            self.q.armed.store(true, Ordering::SeqCst);
            // A frame may have arrived between the pop and the arming.
            self.q.rx.pop()
        })?;
        if let Some(b) = spare.take() {
            if let Err(b) = self.q.free.push(b) {
                *spare = Some(b);
            }
        }
        Some(got)
    }

    /// Queues one frame for the tx thread (copied into one of the port's
    /// buffers). False when the channel is full or the thread has stopped.
    pub fn send(&self, frame: &[u8]) -> bool {
        let mut b = self
            .q
            .free
            .pop()
            .unwrap_or_else(|| PacketBuf::with_capacity(self.q.buf_frame));
        if b.set_frame(frame).is_err() {
            let _ = self.q.free.push(b);
            return false;
        }
        match self.tx.as_ref().map(|tx| tx.try_send(b)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(b) | TrySendError::Disconnected(b))) => {
                let _ = self.q.free.push(b);
                false
            }
            None => false,
        }
    }

    /// The error that stopped the rx thread, if one did.
    pub fn failure(&self) -> Option<&io::Error> {
        self.q.failed.get()
    }
}

impl Drop for AfPacket {
    fn drop(&mut self) {
        self.q.stop.store(true, Ordering::Relaxed);
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn rx_thread(mut rx: Box<dyn DataLinkReceiver>, q: &Queues) {
    while !q.stop.load(Ordering::Relaxed) {
        let frame = match rx.next() {
            Ok(f) => f,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                let _ = q.failed.set(e);
                wake(q);
                return;
            }
        };
        if frame.len() > q.max_frame {
            q.counters.rx_oversize.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut b = q
            .free
            .pop()
            .unwrap_or_else(|| PacketBuf::with_capacity(q.buf_frame));
        let _ = b.set_frame(frame);
        if let Err(b) = q.rx.push(b) {
            q.counters.rx_queue_full.fetch_add(1, Ordering::Relaxed);
            let _ = q.free.push(b);
        }
        if q.armed.swap(false, Ordering::SeqCst) {
            wake(q);
        }
    }
}

fn wake(q: &Queues) {
    if let Some(w) = q.waker.get() {
        let _ = w.wake();
    }
}

fn tx_thread(mut tx: Box<dyn DataLinkSender>, frames: Receiver<PacketBuf>, q: &Queues) {
    loop {
        let b = match frames.recv_timeout(POLL) {
            Ok(b) => b,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        if !matches!(tx.send_to(b.frame(), None), Some(Ok(()))) {
            q.counters.tx_failed.fetch_add(1, Ordering::Relaxed);
        }
        let _ = q.free.push(b);
    }
}

impl Device for AfPacket {
    fn kind(&self) -> &'static str {
        "afpacket"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_frame: self.q.max_frame,
            ..Capabilities::default()
        }
    }

    fn readiness(&self, _queue: usize) -> Readiness {
        Readiness::Waker
    }

    fn set_waker(&self, waker: Arc<Waker>) {
        let _ = self.q.waker.set(waker);
    }

    fn rx_burst(
        &self,
        _io: &mut QueueIo,
        pool: &mut dyn BufSource,
        max: usize,
        out: &mut Vec<Received>,
    ) -> RxStatus {
        let mut spare = None;
        for _ in 0..max {
            if spare.is_none() {
                spare = Some(pool.take());
            }
            match self.recv(&mut spare) {
                Some(buf) => out.push(Received {
                    buf,
                    offload: Ok(Offload::default()),
                    at: None,
                }),
                None => {
                    if let Some(b) = spare {
                        pool.give_back(b);
                    }
                    return match self.failure() {
                        Some(e) => RxStatus::Failed(io::Error::new(e.kind(), e.to_string())),
                        None => RxStatus::Drained,
                    };
                }
            }
        }
        if let Some(b) = spare {
            pool.give_back(b);
        }
        RxStatus::More
    }

    fn tx_burst(&self, io: &mut QueueIo, pkts: &mut [Packet]) -> u64 {
        pkts.iter_mut()
            .map(|p| {
                let sent = plain_frames(p, &mut io.scratch, |f| {
                    self.send(f)
                        .then_some(())
                        .ok_or_else(|| io::Error::other("tx queue full"))
                });
                u64::from(sent.is_err())
            })
            .sum()
    }

    fn link(&self) -> LinkState {
        self.probe.lock().state()
    }

    fn counts(&self) -> DeviceCounts {
        let c = &self.q.counters;
        DeviceCounts {
            rx_queue_full: c.rx_queue_full.load(Ordering::Relaxed),
            rx_oversize: c.rx_oversize.load(Ordering::Relaxed),
            tx_failed: c.tx_failed.load(Ordering::Relaxed),
        }
    }
}
