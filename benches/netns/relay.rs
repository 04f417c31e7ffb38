//! The baseline a TAP forwarder must beat: one thread relaying frames
//! between two TAPs, one read() and one write() per frame, no offloads, no
//! routing (the two hosts share a subnet).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use edgefwd_core::packet::{Offload, PacketBuf};
use edgefwd_io::binding::netns_path;
use edgefwd_io::Tap;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

/// The relay thread's name.
pub const THREAD: &str = "tap-relay";

/// The running relay.
pub struct Relay {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl Relay {
    /// Opens TAP `a.0` in namespace `a.1` and `b.0` in `b.1` and relays.
    pub fn start(a: (&str, &str), b: (&str, &str)) -> Relay {
        let open = |(name, ns): (&str, &str)| {
            let ns = netns_path(ns);
            let ns = ns.to_str().expect("namespace path");
            Tap::open(name, Some(ns), 1, false, 1000).expect("open TAP")
        };
        let taps = [open(a), open(b)];
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || relay(&taps, &flag))
            .expect("relay thread");
        Relay { stop, thread }
    }

    /// Stops; returns the frames relayed.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn relay(taps: &[Tap; 2], stop: &AtomicBool) -> u64 {
    let mut poll = Poll::new().unwrap();
    for (i, t) in taps.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(&t.fd(0)), Token(i), Interest::READABLE)
            .unwrap();
    }
    let mut events = Events::with_capacity(8);
    let mut buf = PacketBuf::new();
    let plain = Offload::default();
    let mut frames = 0;
    while !stop.load(Ordering::Relaxed) {
        let _ = poll.poll(&mut events, Some(Duration::from_millis(50)));
        for e in events.iter() {
            let (from, to) = (&taps[e.token().0], &taps[1 - e.token().0]);
            // Edge-triggered: read until the queue is empty.
            while from.recv(0, &mut buf).is_ok() {
                if to.send(0, buf.frame(), &plain).is_ok() {
                    frames += 1;
                }
            }
        }
    }
    frames
}
