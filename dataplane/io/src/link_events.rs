//! Link changes pushed by the kernel, so that a port going down moves its
//! routes to the next metric within milliseconds rather than at the next
//! poll.
//!
//! One rtnetlink socket per network namespace a port's device lives in,
//! subscribed to link notifications (`RTMGRP_LINK`), read by one thread
//! (`edgefwd-links`) with mio. The thread does not decide anything: a link
//! message (or a lost one: `ENOBUFS`, the socket overran) makes it nudge
//! the control plane, which then probes every port's link as its poll
//! does ([`crate::LinkProbe`]). So there is one place that says what a
//! port's state is, and an event can be late or lost but never wrong; the
//! control plane keeps a slow poll as the safety net (a TAP moved into a
//! namespace nobody watches, a message lost to memory pressure).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Token, Waker};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// `RTMGRP_LINK` from `linux/rtnetlink.h`: link notifications.
const RTMGRP_LINK: u32 = 1;
/// Receive buffer asked for each socket: a burst of link changes (a
/// bridge's worth of ports flapping) fits.
const RCVBUF: usize = 1 << 20;
const WAKE: Token = Token(usize::MAX);

/// What the watcher saw, for visibility.
#[derive(Debug, Default)]
pub struct LinkEventCounts {
    /// Link messages received.
    pub events: AtomicU64,
    /// Times a socket overran (`ENOBUFS`): messages were lost, and every
    /// link is probed again.
    pub overruns: AtomicU64,
}

/// The watcher: nudges its receiver when any watched link changes.
pub struct LinkEvents {
    add: Sender<Socket>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    watched: Vec<Option<PathBuf>>,
    counts: Arc<LinkEventCounts>,
}

impl LinkEvents {
    /// Starts the thread; the receiver gets a `()` (at most one waiting)
    /// whenever a watched link may have changed.
    pub fn start() -> io::Result<(LinkEvents, Receiver<()>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (nudge, nudged) = crossbeam_channel::bounded(1);
        let (add, added) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(LinkEventCounts::default());
        let thread = {
            let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
            std::thread::Builder::new()
                .name("edgefwd-links".to_owned())
                .spawn(move || watch_loop(poll, &added, &nudge, &stop, &counts))?
        };
        Ok((
            LinkEvents {
                add,
                waker,
                stop,
                thread: Some(thread),
                watched: Vec::new(),
                counts,
            },
            nudged,
        ))
    }

    /// Watches the links of the namespace at `netns` (`None`: this
    /// process's). Watching one twice does nothing.
    pub fn watch(&mut self, netns: Option<&Path>) -> io::Result<()> {
        let key = netns.map(Path::to_path_buf);
        if self.watched.contains(&key) {
            return Ok(());
        }
        let socket = match netns {
            Some(ns) => crate::sys::in_netns(ns, subscribe)?,
            None => subscribe()?,
        };
        self.add
            .send(socket)
            .map_err(|_| io::Error::other("the link watcher has stopped"))?;
        self.waker.wake()?;
        self.watched.push(key);
        Ok(())
    }

    /// What it has seen so far.
    pub fn counts(&self) -> &LinkEventCounts {
        &self.counts
    }
}

impl Drop for LinkEvents {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A non-blocking rtnetlink socket in the calling thread's namespace,
/// subscribed to link notifications.
fn subscribe() -> io::Result<Socket> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind(&SocketAddr::new(0, RTMGRP_LINK))?;
    s.set_non_blocking(true)?;
    // A smaller buffer only means an overrun sooner, which is handled.
    let _ = s.set_rx_buf_sz(RCVBUF);
    Ok(s)
}

fn watch_loop(
    mut poll: Poll,
    added: &Receiver<Socket>,
    nudge: &Sender<()>,
    stop: &AtomicBool,
    counts: &LinkEventCounts,
) {
    let mut sockets: Vec<Socket> = Vec::new();
    let mut events = Events::with_capacity(16);
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!("link watcher stopped: {e}; link changes are polled only");
            return;
        }
        for ev in events.iter() {
            if ev.token() == WAKE {
                while let Ok(mut s) = added.try_recv() {
                    let token = Token(sockets.len());
                    match poll.registry().register(&mut s, token, Interest::READABLE) {
                        Ok(()) => sockets.push(s),
                        Err(e) => tracing::warn!("link watcher: {e}"),
                    }
                }
                continue;
            }
            let Some(s) = sockets.get(ev.token().0) else {
                continue;
            };
            if drain(s, &mut buf, counts) {
                // Full: a nudge is already waiting, which is all it says.
                let _ = nudge.try_send(());
            }
        }
    }
}

/// Reads everything waiting on `s`; true when a link may have changed.
fn drain(s: &Socket, buf: &mut [u8], counts: &LinkEventCounts) -> bool {
    let mut changed = false;
    loop {
        let n = match s.recv(&mut &mut buf[..], 0) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return changed,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                counts.overruns.fetch_add(1, Ordering::Relaxed);
                changed = true;
                continue;
            }
            Err(e) => {
                tracing::warn!("link watcher: {e}");
                return changed;
            }
        };
        let links = link_messages(&buf[..n]);
        counts.events.fetch_add(links, Ordering::Relaxed);
        changed |= links > 0;
    }
}

/// How many link messages (new or deleted links) a datagram holds.
fn link_messages(mut datagram: &[u8]) -> u64 {
    let mut links = 0;
    while datagram.len() >= 16 {
        let len = u32::from_ne_bytes([datagram[0], datagram[1], datagram[2], datagram[3]]) as usize;
        if len < 16 || len > datagram.len() {
            break;
        }
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&datagram[..len]) {
            if let NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewLink(_) | RouteNetlinkMessage::DelLink(_),
            ) = m.payload
            {
                links += 1;
            }
        }
        // Messages are 4-byte aligned.
        datagram = &datagram[len.next_multiple_of(4).min(datagram.len())..];
    }
    links
}
