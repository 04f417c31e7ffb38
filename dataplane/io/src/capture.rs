//! Live capture from the workers: the frames a port receives or sends, or
//! the packets dropped on it, copied into a bounded queue that a reader
//! (the `edgefwd capture` stream) empties.
//!
//! A worker copies a frame into a buffer it takes from the capture's own
//! free list and hands it over through a lock-free queue; with no free
//! buffer (the reader is slow) the frame is counted as lost and forwarding
//! goes on. Nothing allocates once a capture is set up. Workers look at
//! one flag per burst while nothing is captured.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use edgefwd_core::pipeline::watch::Stage;
use edgefwd_core::port::PortId;
use edgefwd_core::stats::DropReason;

/// Which way a captured frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received on the port.
    Rx,
    /// Sent on the port.
    Tx,
    /// Received on the port, then dropped.
    Dropped {
        /// Why.
        reason: DropReason,
        /// The stage that dropped it.
        stage: Stage,
    },
}

/// What to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSpec {
    /// The port.
    pub port: PortId,
    /// Frames it receives.
    pub rx: bool,
    /// Frames it sends.
    pub tx: bool,
    /// Packets received on it and dropped (with why and where).
    pub drops: bool,
    /// Bytes kept of each frame.
    pub snaplen: usize,
    /// Frames the queue holds for the reader.
    pub depth: usize,
}

/// One captured frame.
#[derive(Debug)]
pub struct Captured {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Which way it went.
    pub dir: Direction,
    /// Its length on the wire.
    pub len: usize,
    /// Its first `snaplen` bytes.
    pub data: Vec<u8>,
}

/// One running capture.
pub struct Capture {
    spec: CaptureSpec,
    frames: ArrayQueue<Captured>,
    free: ArrayQueue<Vec<u8>>,
    lost: AtomicU64,
}

impl Capture {
    /// A capture of `spec`, its buffers allocated now.
    pub fn new(spec: CaptureSpec) -> Arc<Capture> {
        let depth = spec.depth.max(1);
        let free = ArrayQueue::new(depth);
        for _ in 0..depth {
            let _ = free.push(Vec::with_capacity(spec.snaplen));
        }
        Arc::new(Capture {
            frames: ArrayQueue::new(depth),
            free,
            lost: AtomicU64::new(0),
            spec,
        })
    }

    /// What it captures.
    pub fn spec(&self) -> &CaptureSpec {
        &self.spec
    }

    /// Frames lost because the reader fell behind.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// The oldest captured frame, if any.
    pub fn pop(&self) -> Option<Captured> {
        self.frames.pop()
    }

    /// Gives a frame's buffer back once written out.
    pub fn recycle(&self, mut data: Vec<u8>) {
        data.clear();
        let _ = self.free.push(data);
    }

    /// Copies `frame` in (worker side); counts it lost when the reader is
    /// behind.
    pub fn offer(&self, ts_ns: u64, dir: Direction, frame: &[u8]) {
        let Some(mut data) = self.free.pop() else {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        };
        data.clear();
        data.extend_from_slice(&frame[..frame.len().min(self.spec.snaplen)]);
        let c = Captured {
            ts_ns,
            dir,
            len: frame.len(),
            data,
        };
        if let Err(c) = self.frames.push(c) {
            self.lost.fetch_add(1, Ordering::Relaxed);
            let _ = self.free.push(c.data);
        }
    }

    /// True when it wants `port`'s frames going `dir`.
    pub fn wants(&self, port: PortId, dir: Direction) -> bool {
        self.spec.port == port
            && match dir {
                Direction::Rx => self.spec.rx,
                Direction::Tx => self.spec.tx,
                Direction::Dropped { .. } => self.spec.drops,
            }
    }
}

/// The running captures, as the workers see them.
#[derive(Default)]
pub struct Captures {
    list: ArcSwap<Vec<Arc<Capture>>>,
    armed: AtomicBool,
    /// Bumped on every change, so workers know to look again.
    generation: AtomicU64,
}

/// Captures running at once, at most.
pub const MAX_CAPTURES: usize = 8;

impl Captures {
    /// Starts `c`; refused when [`MAX_CAPTURES`] already run.
    pub fn add(&self, c: Arc<Capture>) -> Result<(), String> {
        let mut list = Vec::clone(&self.list.load());
        if list.len() >= MAX_CAPTURES {
            return Err(format!("{MAX_CAPTURES} captures are running already"));
        }
        list.push(c);
        self.publish(list);
        Ok(())
    }

    /// Stops `c`.
    pub fn remove(&self, c: &Arc<Capture>) {
        let mut list = Vec::clone(&self.list.load());
        list.retain(|x| !Arc::ptr_eq(x, c));
        self.publish(list);
    }

    fn publish(&self, list: Vec<Arc<Capture>>) {
        self.armed.store(!list.is_empty(), Ordering::Release);
        self.list.store(Arc::new(list));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// True when any capture runs (one load, for a worker's every burst).
    #[inline]
    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    /// The running captures.
    pub fn list(&self) -> arc_swap::Guard<Arc<Vec<Arc<Capture>>>> {
        self.list.load()
    }

    /// Changes so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Hands `frame` to every capture that wants it.
    pub fn offer(&self, port: PortId, ts_ns: u64, dir: Direction, frame: &[u8]) {
        for c in self.list.load().iter().filter(|c| c.wants(port, dir)) {
            c.offer(ts_ns, dir, frame);
        }
    }
}
