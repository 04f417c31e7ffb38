//! The control socket: a Unix socket at `[control] socket`, mode 0600 (or
//! 0660 with `[control] group`), whose clients are checked by their kernel
//! credentials (SO_PEERCRED) and logged. One thread accepts, reads each
//! request and hands it to the daemon's control thread, which applies it
//! and answers; so commands apply one at a time, in order.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Gid, Group, Uid};
use tracing::{info, warn};

use crate::api::{self, Command, Response};

/// A command from a client, with where to send the answer.
pub struct Call {
    /// What the client asked.
    pub command: Command,
    /// Where the answer goes.
    pub reply: Sender<Response>,
}

/// How long a client has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The listening socket and its thread; removed on drop.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
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
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: another daemon is listening", path.display()),
            ));
        }
        let _ = fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        if let Some(g) = gid {
            std::os::unix::fs::chown(path, None, Some(g.as_raw()))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("edgefwd-control".to_owned())
            .spawn(move || serve(listener, gid, &flag, &calls))?;
        info!(socket = %path.display(), mode = format!("{mode:o}"), "control socket");
        Ok(Server {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

fn serve(listener: UnixListener, gid: Option<Gid>, stop: &AtomicBool, calls: &Sender<Call>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(s) = conn else { continue };
        let answer = match allowed(&s, gid) {
            Ok(who) => match s
                .set_read_timeout(Some(READ_TIMEOUT))
                .map_err(|e| e.to_string())
                .and_then(|()| api::read_request(&s))
            {
                Ok(command) => {
                    info!(peer = %who, command = command_name(&command), "control");
                    ask(calls, command)
                }
                Err(e) => refusal(e),
            },
            Err(e) => {
                warn!("control: {e}");
                refusal(e)
            }
        };
        if let Err(e) = api::write_response(&s, &answer) {
            warn!("control: answering: {e}");
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

fn ask(calls: &Sender<Call>, command: Command) -> Response {
    let (reply, answer) = crossbeam_channel::bounded(1);
    if calls.send(Call { command, reply }).is_err() {
        return refusal("the daemon is stopping".to_owned());
    }
    answer
        .recv()
        .unwrap_or_else(|_| refusal("the daemon is stopping".to_owned()))
}

/// An answer refusing with `error`.
pub fn refusal(error: String) -> Response {
    Response {
        ok: false,
        data: None,
        error: Some(error),
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::RouteAdd { .. } => "route add",
        Command::RouteRemove { .. } => "route remove",
        Command::RouteShow { .. } => "route show",
        Command::RouteLookup { .. } => "route lookup",
        Command::PortShow {} => "port show",
        Command::PortBind { .. } => "port bind",
        Command::PortUnbind { .. } => "port unbind",
        Command::Stats {} => "stats",
        Command::Reload {} => "reload",
        Command::NatSessions {} => "nat sessions",
    }
}
