//! The control socket: a Unix socket at `[control] socket`, mode 0600 (or
//! 0660 with `[control] group`), whose clients are checked by their kernel
//! credentials (SO_PEERCRED) and logged.
//!
//! One thread serves every connection at once, non-blocking (mio), each with
//! its own buffers and deadline, so a client that connects and says
//! nothing, or trickles its request a byte at a time, holds up no one else.
//! A complete request goes to the daemon's control thread, which applies
//! commands one at a time, in the order they arrived, and answers through
//! [`Reply`]; nothing here ever blocks on that thread, so the daemon stops
//! promptly whatever its clients do.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Gid, Group, Uid};
use tracing::{info, warn};

use crate::api::{self, Command, Response};

/// A command from a client, with where to send the answer.
pub struct Call {
    /// What the client asked.
    pub command: Command,
    /// Where the answer goes.
    pub reply: Reply,
}

/// What carries on with a connection once its answer line is out (a
/// capture's stream), on a thread of its own, with the socket blocking.
pub type Streamer = Box<dyn FnOnce(std::os::unix::net::UnixStream) + Send>;

/// An answer on its way back to a connection.
type Answer = (usize, Response, Option<Streamer>);

/// The way back to the client that made a [`Call`].
pub struct Reply {
    conn: usize,
    answers: Sender<Answer>,
    waker: Arc<Waker>,
}

impl Reply {
    /// Sends the answer (dropped if the server has stopped).
    pub fn send(self, answer: Response) {
        self.send_then(answer, None);
    }

    /// Sends the answer, then hands the connection to `streamer` (on its
    /// own thread) instead of closing it.
    pub fn stream(self, answer: Response, streamer: Streamer) {
        self.send_then(answer, Some(streamer));
    }

    fn send_then(self, answer: Response, then: Option<Streamer>) {
        if self.answers.send((self.conn, answer, then)).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// How long a client has to send its whole request, and to take the whole
/// answer.
const CLIENT_DEADLINE: Duration = Duration::from_secs(10);
/// Clients connected at once; more are refused.
pub const MAX_CLIENTS: usize = 64;
/// Bytes of requests being read, over all clients; a request that would go
/// past it is refused (a full table's `route add --file` fits).
const READ_BUDGET: usize = 2 * api::MAX_REQUEST;

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);

/// The listening socket and its thread; removed on drop.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens at `path` (refusing if a daemon answers there already) and
    /// sends each request to `calls`.
    pub fn start(path: &Path, group: Option<&str>, calls: Sender<Call>) -> io::Result<Server> {
        let gid = match group {
            Some(g) => Some(
                Group::from_name(g)?
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, format!("no group {g:?}"))
                    })?
                    .gid,
            ),
            None => None,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: another daemon is listening", path.display()),
            ));
        }
        let _ = fs::remove_file(path);
        let mut listener = UnixListener::bind(path)?;
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        if let Some(g) = gid {
            std::os::unix::fs::chown(path, None, Some(g.as_raw()))?;
        }
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (answers_tx, answers) = crossbeam_channel::unbounded();
        let mut loop_ = Loop {
            poll,
            listener,
            gid,
            stop: Arc::clone(&stop),
            calls,
            answers_tx,
            answers,
            waker: Arc::clone(&waker),
            conns: HashMap::new(),
            next_id: 0,
            reading: 0,
        };
        let thread = std::thread::Builder::new()
            .name("edgefwd-control".to_owned())
            .spawn(move || loop_.run())?;
        info!(socket = %path.display(), mode = format!("{mode:o}"), "control socket");
        Ok(Server {
            path: path.to_owned(),
            stop,
            waker,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

/// Where a connection is.
enum Phase {
    /// Reading its request line.
    Reading,
    /// The control thread has its command.
    Waiting,
    /// Writing the answer; closed when it is all out.
    Writing {
        /// Bytes of the answer written so far.
        done: usize,
    },
}

struct Conn {
    stream: UnixStream,
    who: String,
    phase: Phase,
    deadline: Instant,
    buf: Vec<u8>,
    /// What takes the connection over once the answer is out.
    then: Option<Streamer>,
}

struct Loop {
    poll: Poll,
    listener: UnixListener,
    gid: Option<Gid>,
    stop: Arc<AtomicBool>,
    calls: Sender<Call>,
    answers_tx: Sender<Answer>,
    answers: Receiver<Answer>,
    waker: Arc<Waker>,
    conns: HashMap<usize, Conn>,
    next_id: usize,
    /// Request bytes held over all connections still reading.
    reading: usize,
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        while !self.stop.load(Ordering::Relaxed) {
            let timeout = self
                .conns
                .values()
                .filter(|c| !matches!(c.phase, Phase::Waiting))
                .map(|c| c.deadline.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(Duration::from_secs(1));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!("control: poll: {e}");
                    return;
                }
            }
            for ev in &events {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(id) => self.ready(id),
                }
            }
            while let Ok((id, answer, then)) = self.answers.try_recv() {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.then = then;
                }
                self.answer(id, &answer);
            }
            self.expire();
        }
        // Stopping: whoever is still connected hears so, as far as their
        // socket takes it without waiting.
        let stopping = api::encode_response(&refusal("the daemon is stopping".to_owned()));
        for (_, mut c) in self.conns.drain() {
            if !matches!(c.phase, Phase::Writing { .. }) {
                let _ = c.stream.write(&stopping);
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!("control: accept: {e}");
                    return;
                }
            };
            let who = match allowed(&stream, self.gid) {
                Ok(who) if self.conns.len() < MAX_CLIENTS => who,
                Ok(who) => {
                    warn!(peer = %who, "control: {MAX_CLIENTS} clients already; refused");
                    let msg = format!("the daemon serves {MAX_CLIENTS} clients at most; try again");
                    let _ = stream.write(&api::encode_response(&refusal(msg)));
                    continue;
                }
                Err(e) => {
                    warn!("control: {e}");
                    let _ = stream.write(&api::encode_response(&refusal(e)));
                    continue;
                }
            };
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1) % (usize::MAX - 2);
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut stream, Token(id), Interest::READABLE)
            {
                warn!("control: {e}");
                continue;
            }
            self.conns.insert(
                id,
                Conn {
                    stream,
                    who,
                    phase: Phase::Reading,
                    deadline: Instant::now() + CLIENT_DEADLINE,
                    buf: Vec::new(),
                    then: None,
                },
            );
        }
    }

    /// The connection `id` can be read or written.
    fn ready(&mut self, id: usize) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match c.phase {
            Phase::Reading => self.read(id),
            Phase::Writing { .. } => self.write(id),
            Phase::Waiting => {}
        }
    }

    fn read(&mut self, id: usize) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let mut chunk = [0u8; 64 << 10];
        let outcome = loop {
            match c.stream.read(&mut chunk) {
                Ok(0) => break Some(Ok(())),
                Ok(n) => {
                    if c.buf.len() + n > api::MAX_REQUEST {
                        break Some(Err(format!(
                            "request longer than {} bytes",
                            api::MAX_REQUEST
                        )));
                    }
                    if self.reading + n > READ_BUDGET {
                        break Some(Err("the daemon is reading other large requests; \
                             try again"
                            .to_owned()));
                    }
                    self.reading += n;
                    let start = c.buf.len();
                    c.buf.extend_from_slice(&chunk[..n]);
                    if c.buf[start..].contains(&b'\n') {
                        break Some(Ok(()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(Err(format!("reading the request: {e}"))),
            }
        };
        let Some(outcome) = outcome else {
            return;
        };
        self.reading -= c.buf.len();
        let line = std::mem::take(&mut c.buf);
        let parsed = outcome.and_then(|()| {
            if line.is_empty() {
                Err("empty request".to_owned())
            } else {
                api::parse_request(&line)
            }
        });
        drop(line);
        match parsed {
            Ok(command) => {
                info!(peer = %c.who, command = command.name(), "control");
                c.phase = Phase::Waiting;
                let reply = Reply {
                    conn: id,
                    answers: self.answers_tx.clone(),
                    waker: Arc::clone(&self.waker),
                };
                match self.calls.try_send(Call { command, reply }) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => self.answer(
                        id,
                        &refusal("the daemon is busy with other commands; try again".to_owned()),
                    ),
                    Err(TrySendError::Disconnected(_)) => {
                        self.answer(id, &refusal("the daemon is stopping".to_owned()))
                    }
                }
            }
            Err(e) => {
                warn!(peer = %c.who, "control: {e}");
                self.answer(id, &refusal(e));
            }
        }
    }

    /// Starts writing `answer` to connection `id`.
    fn answer(&mut self, id: usize, answer: &Response) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.buf = api::encode_response(answer);
        c.phase = Phase::Writing { done: 0 };
        c.deadline = Instant::now() + CLIENT_DEADLINE;
        if self
            .poll
            .registry()
            .reregister(&mut c.stream, Token(id), Interest::WRITABLE)
            .is_err()
        {
            self.close(id);
            return;
        }
        self.write(id);
    }

    fn write(&mut self, id: usize) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Phase::Writing { done } = &mut c.phase else {
            return;
        };
        while *done < c.buf.len() {
            match c.stream.write(&c.buf[*done..]) {
                Ok(n) => *done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!(peer = %c.who, "control: answering: {e}");
                    c.then = None;
                    break;
                }
            }
        }
        match c.then.take() {
            Some(then) => self.hand_over(id, then),
            None => self.close(id),
        }
    }

    /// Gives connection `id` to `then`, on a thread of its own.
    fn hand_over(&mut self, id: usize, then: Streamer) {
        let Some(mut c) = self.conns.remove(&id) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        let stream = std::os::unix::net::UnixStream::from(c.stream);
        if let Err(e) = stream.set_nonblocking(false) {
            warn!(peer = %c.who, "control: {e}");
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("edgefwd-stream".to_owned())
            .spawn(move || then(stream));
        if let Err(e) = spawned {
            warn!(peer = %c.who, "control: no thread for the stream: {e}");
        }
    }

    /// Drops clients past their deadline: one that has not sent its whole
    /// request is told so; one that does not take its answer is cut off.
    fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| !matches!(c.phase, Phase::Waiting) && c.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if matches!(c.phase, Phase::Reading) {
                warn!(peer = %c.who, "control: no whole request within {CLIENT_DEADLINE:?}");
                let msg = format!("no whole request within {CLIENT_DEADLINE:?}");
                let _ = c.stream.write(&api::encode_response(&refusal(msg)));
            } else {
                warn!(peer = %c.who, "control: the client did not take its answer");
            }
            self.close(id);
        }
    }

    fn close(&mut self, id: usize) {
        if let Some(mut c) = self.conns.remove(&id) {
            if matches!(c.phase, Phase::Reading) {
                self.reading -= c.buf.len();
            }
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }
}

/// The client's credentials if it may use the socket: root, the daemon's
/// own user, or (when a group is configured) a member of that group, which
/// the socket's mode already limits connections to.
fn allowed(s: &UnixStream, gid: Option<Gid>) -> Result<String, String> {
    let c = getsockopt(s, PeerCredentials).map_err(|e| format!("peer credentials: {e}"))?;
    let who = format!("pid {} uid {} gid {}", c.pid(), c.uid(), c.gid());
    let uid = Uid::from_raw(c.uid());
    if uid.is_root() || uid == Uid::effective() || gid.is_some() {
        Ok(who)
    } else {
        Err(format!("{who} may not use the control socket"))
    }
}

/// An answer refusing with `error`.
pub fn refusal(error: String) -> Response {
    Response {
        ok: false,
        data: None,
        error: Some(error),
    }
}
