//! systemd's service notifications (`sd_notify(3)`): `READY=1` once the
//! daemon forwards, `WATCHDOG=1` only while every worker is alive,
//! `STATUS=` with a one-line summary and `STOPPING=1`.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the socket
//! `$NOTIFY_SOCKET` names (a path, or an abstract name after `@`). It is
//! written here rather than taken from a crate because the crates read
//! `$NOTIFY_SOCKET` from the process's environment on every call, and the
//! daemon also runs inside test processes, several at once, each with a
//! socket of its own.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go, and how often the service manager wants a
/// watchdog ping.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier systemd set up for this process (`$NOTIFY_SOCKET`,
    /// `$WATCHDOG_USEC` when `$WATCHDOG_PID` is unset or this process),
    /// or `None` when not started by a service manager that listens.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let ours = std::env::var("WATCHDOG_PID")
            .map(|p| p.trim() == std::process::id().to_string())
            .unwrap_or(true);
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(Duration::from_micros);
        let path = path
            .to_str()
            .ok_or_else(|| io::Error::other("NOTIFY_SOCKET is not UTF-8"))?;
        Notifier::new(path, watchdog).map(Some)
    }

    /// A notifier sending to `path` (`@NAME` for an abstract socket),
    /// asked for a watchdog ping every `watchdog`.
    pub fn new(path: &str, watchdog: Option<Duration>) -> io::Result<Notifier> {
        let to = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(path)?,
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            to,
            watchdog,
        })
    }

    /// How often the service manager wants `WATCHDOG=1`, if at all.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends `lines` (`KEY=VALUE` each). A status line's newlines are
    /// replaced: one notification is one line per key.
    pub fn send(&self, lines: &[(&str, &str)]) -> io::Result<()> {
        let mut msg = String::new();
        for (k, v) in lines {
            msg.push_str(k);
            msg.push('=');
            msg.extend(v.chars().map(|c| if c == '\n' { ' ' } else { c }));
            msg.push('\n');
        }
        self.socket.send_to_addr(msg.as_bytes(), &self.to).map(drop)
    }
}

/// Readiness and the watchdog, from the workers' heartbeats
/// ([`edgefwd_io::worker::Activity::beats`]): `READY=1` once every worker
/// has beaten (its devices are polled, the FIB is live), then every
/// period `WATCHDOG=1` only if every worker has beaten since the last one.
/// A worker that stops beating (failed, or stuck in a loop) starves the
/// watchdog, and the service manager restarts the daemon.
#[derive(Debug)]
pub struct Health {
    notifier: std::sync::Arc<Notifier>,
    ready: bool,
    beats: Vec<u64>,
    every: Duration,
    next: std::time::Instant,
}

/// The shortest period between checks: workers beat every 100 ms.
const MIN_PERIOD: Duration = Duration::from_millis(250);
/// How often the status line is refreshed without a watchdog.
const STATUS_PERIOD: Duration = Duration::from_secs(5);

impl Health {
    /// Health reported through `notifier`.
    pub fn new(notifier: std::sync::Arc<Notifier>) -> Health {
        let every = notifier
            .watchdog()
            .map_or(STATUS_PERIOD, |w| (w / 2).max(MIN_PERIOD));
        Health {
            notifier,
            ready: false,
            beats: Vec::new(),
            every,
            next: std::time::Instant::now(),
        }
    }

    /// Looks at the workers' `beats` (call often); `status` makes the
    /// one-line summary when one is sent.
    pub fn check(&mut self, beats: &[u64], status: impl FnOnce() -> String) {
        let now = std::time::Instant::now();
        if !self.ready {
            if beats.iter().all(|&b| b > 0) {
                self.ready = true;
                self.send(&[("READY", "1"), ("STATUS", &status())]);
                self.beats = beats.to_vec();
                self.next = now + self.every;
            }
            return;
        }
        if now < self.next {
            return;
        }
        self.next = now + self.every;
        let stalled = beats
            .iter()
            .zip(&self.beats)
            .position(|(now, then)| now == then);
        self.beats = beats.to_vec();
        match stalled {
            None if self.notifier.watchdog().is_some() => {
                self.send(&[("WATCHDOG", "1"), ("STATUS", &status())])
            }
            None => self.send(&[("STATUS", &status())]),
            Some(w) => {
                tracing::error!(worker = w, "worker has stopped; no watchdog ping");
                self.send(&[("STATUS", &format!("worker {w} has stopped"))]);
            }
        }
    }

    /// Tells the service manager the daemon is stopping.
    pub fn stopping(&self) {
        self.send(&[("STOPPING", "1")]);
    }

    fn send(&self, lines: &[(&str, &str)]) {
        if let Err(e) = self.notifier.send(lines) {
            tracing::warn!("service manager notification: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_is_one_datagram_of_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.to_str().unwrap(), None).unwrap();
        n.send(&[("READY", "1"), ("STATUS", "two\nlines")]).unwrap();
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=two lines\n");
    }

    #[test]
    fn an_abstract_socket_is_named_after_an_at_sign() {
        let name = format!("edgefwd-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        let n = Notifier::new(&format!("@{name}"), None).unwrap();
        n.send(&[("WATCHDOG", "1")]).unwrap();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1\n");
    }

    fn received(rx: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = rx.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn the_watchdog_is_fed_only_while_every_worker_beats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_nonblocking(true).unwrap();
        let n = Notifier::new(path.to_str().unwrap(), Some(Duration::from_millis(500))).unwrap();
        let mut h = Health::new(std::sync::Arc::new(n));
        let status = || "ok".to_owned();
        // Not ready until every worker has beaten once.
        h.check(&[1, 0], status);
        assert!(received(&rx).is_empty());
        h.check(&[1, 1], status);
        assert_eq!(received(&rx), ["READY=1\nSTATUS=ok\n"]);
        // Both beat: fed.
        std::thread::sleep(Duration::from_millis(260));
        h.check(&[3, 2], status);
        assert_eq!(received(&rx), ["WATCHDOG=1\nSTATUS=ok\n"]);
        // Not yet a period later: nothing.
        h.check(&[4, 3], status);
        assert!(received(&rx).is_empty());
        std::thread::sleep(Duration::from_millis(260));
        h.check(&[5, 3], status);
        assert_eq!(received(&rx), ["WATCHDOG=1\nSTATUS=ok\n"]);
        // Worker 1 stuck at 3: no ping, the status says which.
        std::thread::sleep(Duration::from_millis(260));
        h.check(&[6, 3], status);
        assert_eq!(received(&rx), ["STATUS=worker 1 has stopped\n"]);
        // Beating again: fed again.
        std::thread::sleep(Duration::from_millis(260));
        h.check(&[7, 4], status);
        assert_eq!(received(&rx), ["WATCHDOG=1\nSTATUS=ok\n"]);
    }
}
