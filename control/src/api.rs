//! The control protocol between the `edgefwd` commands and the running
//! daemon, over a Unix stream socket.
//!
//! One request per connection: the client writes one JSON object on one
//! line, the daemon answers with one JSON object on one line and closes.
//! Every request carries `"version": 1`; a daemon refuses versions it does
//! not speak, so an old client and a new daemon fail clearly instead of
//! misreading each other.
//!
//! ```text
//! → {"version":1,"command":"route_add","routes":[{"interface":"Port3","destination":"192.168.20.0/24","next_hop":"192.168.20.1","metric":100}]}
//! ← {"ok":true,"data":{"added":1}}
//! → {"version":1,"command":"route_remove","interface":"Port3","destination":"10.9.0.0/16","next_hop":null}
//! ← {"ok":false,"error":"no route to 10.9.0.0/16 on Port3"}
//! ```
//!
//! Commands: `route_add` (`routes`: one or many, applied as one change),
//! `route_remove` (`interface`, `destination`, optional `next_hop`),
//! `route_show` (optional `interface`, `all`, `after`), `route_lookup`
//! (`addresses`), `port_show`, `port_bind` (`port`, `binding`),
//! `port_unbind` (`port`), `stats`, `reload`, `nat_sessions`, `host_show`,
//! `trace_start` (`count`, optional `port`, `filter`), `trace_show`, and
//! `capture` (`port`, optional `direction`, `drops`, `count`, `snaplen`),
//! whose answer line is followed by the capture itself, pcapng, until
//! `count` frames or the client closes; `service_show` (optional `name`),
//! `service_announce` and `service_remove` (`name`), `service_flows`
//! (`name`, optional `cursor`: a page, with `next` when more follow),
//! `service_add`
//! (`entry`: its `[[service]]` entry, as the config has them),
//! `service_backend` (`name`, `action`, `address`, optional `weight`). The
//! `data` of each answer is what the command prints with `--json`, except
//! that `route_show` answers a page: `{"routes":[...],"next":PREFIX}` when
//! more follow, to be asked for with `"after":PREFIX` (the CLI does, and
//! prints them all). A full table thus never holds the daemon's control
//! thread for seconds, nor makes one answer of tens of MB.

use std::io::{self, BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Protocol version.
pub const VERSION: u32 = 1;
/// Most routes in one `route_show` answer.
pub const ROUTE_PAGE: usize = 2_000;
/// Most prefixes one `route_show` answer looks at (a page of a port's few
/// routes beside a full table ends here).
pub const ROUTE_PAGE_SCAN: usize = 20_000;
/// Where the daemon listens unless `[control] socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/edgefwd/control.sock";
/// Longest request line accepted (a route file of a full table fits).
pub const MAX_REQUEST: usize = 256 << 20;
/// How long a client waits for an answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A route as `route add` sends it (validated by the daemon).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// Port name.
    pub interface: String,
    /// Destination prefix, as typed.
    pub destination: String,
    /// Gateway, as typed (`None`: on the link).
    pub next_hop: Option<String>,
    /// Metric (`None`: the default).
    pub metric: Option<i64>,
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Add custom routes, all or none.
    RouteAdd {
        /// The routes.
        routes: Vec<RouteSpec>,
    },
    /// Remove custom routes to a destination on an interface (only the one
    /// via `next_hop` when given).
    RouteRemove {
        /// Port name.
        interface: String,
        /// Destination prefix.
        destination: String,
        /// Gateway.
        next_hop: Option<String>,
    },
    /// List routes, a page at a time (see [`ROUTE_PAGE`]).
    RouteShow {
        /// Only this port's.
        interface: Option<String>,
        /// Connected and default routes too.
        all: bool,
        /// Start after this prefix (the previous page's `next`).
        #[serde(default)]
        after: Option<IpNet>,
    },
    /// The routes the FIB selects for addresses.
    RouteLookup {
        /// The addresses.
        addresses: Vec<IpAddr>,
    },
    /// Ports with binding and link state.
    PortShow {},
    /// Rebind a port to another device.
    PortBind {
        /// Port name.
        port: String,
        /// The new binding (`tap:…`, `afpacket:…`, `none`).
        binding: String,
    },
    /// Unbind a port (bind it to `none`).
    PortUnbind {
        /// Port name.
        port: String,
    },
    /// Counters.
    Stats {},
    /// Re-read the config file and apply the difference.
    Reload {},
    /// NAT sessions.
    NatSessions {},
    /// Host mirrors, punt counters and the route mirror's netlink state.
    HostShow {},
    /// Arm every worker to trace its next `count` packets (those passing
    /// `filter`, arriving on `port`).
    TraceStart {
        /// Only packets arriving on this port.
        #[serde(default)]
        port: Option<String>,
        /// Packets per worker.
        count: u64,
        /// A filter: `host ADDR`, `tcp`/`udp`/`icmp`/`icmp6`/`proto N`,
        /// `port N`, joined by `and`.
        #[serde(default)]
        filter: Option<String>,
    },
    /// The packet traces recorded so far.
    TraceShow {},
    /// Services with their backends (one, when `name` is given).
    ServiceShow {
        /// Only this service.
        #[serde(default)]
        name: Option<String>,
    },
    /// Adds a service: its `[[service]]` entry, as the config has them.
    ServiceAdd {
        /// The entry (TOML).
        entry: String,
    },
    /// A page of a service's flows (`cursor`: where the previous page's
    /// `next` said to go on).
    ServiceFlows {
        /// The service.
        name: String,
        /// Where to go on from.
        #[serde(default)]
        cursor: Option<usize>,
    },
    /// Removes a service.
    ServiceRemove {
        /// Its name.
        name: String,
    },
    /// Announces a load balancer's address again (gratuitous ARP).
    ServiceAnnounce {
        /// The service.
        name: String,
    },
    /// Adds, removes or drains a service's backend.
    ServiceBackend {
        /// The service.
        name: String,
        /// `add`, `remove` or `drain`.
        action: String,
        /// The backend's address.
        address: String,
        /// Its weight (add).
        #[serde(default)]
        weight: Option<u32>,
    },
    /// Stream a port's frames as pcapng: the answer line, then the
    /// capture until `count` frames or the client goes.
    Capture {
        /// Port name.
        port: String,
        /// `rx`, `tx` or `both` (the default).
        #[serde(default)]
        direction: Option<String>,
        /// Capture the packets dropped on the port (with why and where)
        /// instead of its traffic.
        #[serde(default)]
        drops: bool,
        /// Stop after this many frames.
        #[serde(default)]
        count: Option<u64>,
        /// Bytes kept of each frame (default: all).
        #[serde(default)]
        snaplen: Option<usize>,
    },
}

/// A request on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version ([`VERSION`]).
    pub version: u32,
    /// The command.
    #[serde(flatten)]
    pub command: Command,
}

/// An answer on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    /// True when the command was applied (or answered).
    pub ok: bool,
    /// The answer's data (`--json` output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// Why the command was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The socket a command talks to: `--socket`, else `EDGEFWD_SOCKET`, else
/// [`DEFAULT_SOCKET`].
pub fn socket_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("EDGEFWD_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Sends one command to the daemon at `socket`; its data, or its refusal
/// as the error.
pub fn call(socket: &Path, command: Command) -> Result<serde_json::Value, String> {
    let talk = || -> io::Result<Response> {
        let mut s = UnixStream::connect(socket)?;
        s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        s.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        let req = Request {
            version: VERSION,
            command,
        };
        let mut line = serde_json::to_vec(&req)?;
        line.push(b'\n');
        s.write_all(&line)?;
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer)?;
        serde_json::from_str(&answer)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad answer: {e}")))
    };
    let r = talk().map_err(|e| format!("daemon at {}: {e}", socket.display()))?;
    match (r.ok, r.data, r.error) {
        (true, data, _) => Ok(data.unwrap_or(serde_json::Value::Null)),
        (false, _, e) => Err(e.unwrap_or_else(|| "refused".to_owned())),
    }
}

/// Sends `command` (a `capture`) and copies the stream that follows its
/// answer to `out`, flushing as data comes, until the daemon ends it.
/// Returns the answer's data, or its refusal as the error.
pub fn stream(
    socket: &Path,
    command: Command,
    out: &mut dyn Write,
) -> Result<serde_json::Value, String> {
    let at = |e: io::Error| format!("daemon at {}: {e}", socket.display());
    let mut s = UnixStream::connect(socket).map_err(at)?;
    s.set_write_timeout(Some(CLIENT_TIMEOUT)).map_err(at)?;
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(at)?;
    let mut line = serde_json::to_vec(&Request {
        version: VERSION,
        command,
    })
    .map_err(|e| e.to_string())?;
    line.push(b'\n');
    s.write_all(&line).map_err(at)?;
    let mut r = BufReader::new(s);
    let mut answer = String::new();
    r.read_line(&mut answer).map_err(at)?;
    let answer: Response =
        serde_json::from_str(&answer).map_err(|e| format!("bad answer from the daemon: {e}"))?;
    if !answer.ok {
        return Err(answer.error.unwrap_or_else(|| "refused".to_owned()));
    }
    // A capture may be quiet for as long as its port is.
    r.get_ref().set_read_timeout(None).map_err(at)?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match io::Read::read(&mut r, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(at(e)),
        };
        match out.write_all(&buf[..n]).and_then(|()| out.flush()) {
            Ok(()) => {}
            // The reader had enough (`| tcpdump -c N`, `| head`): done.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(format!("writing the capture: {e}")),
        }
    }
    Ok(answer.data.unwrap_or(serde_json::Value::Null))
}

/// Decodes one request line: the version first (so a client of another
/// version hears that, not a parse error), then the command. Parsed typed,
/// field by field into [`Wire`], never through a JSON tree: a full table's
/// `route_add` then takes about what its routes take.
pub fn parse_request(line: &[u8]) -> Result<Command, String> {
    match serde_json::from_slice::<Wire>(line) {
        Ok(w) => {
            check_version(w.version)?;
            w.into_command()
        }
        Err(e) => {
            // A request another version could read: say so first.
            if let Ok(v) = serde_json::from_slice::<VersionOnly>(line) {
                check_version(v.version)?;
            }
            Err(if e.is_syntax() || e.is_eof() {
                format!("request is not JSON: {e}")
            } else {
                format!("bad request: {e}")
            })
        }
    }
}

fn check_version(v: Option<u64>) -> Result<(), String> {
    match v {
        Some(n) if n == u64::from(VERSION) => Ok(()),
        Some(n) => Err(format!(
            "protocol version {n} (this daemon speaks {VERSION})"
        )),
        None => Err("request has no version".to_owned()),
    }
}

/// Just the version of a request, whatever else it holds.
#[derive(Deserialize)]
struct VersionOnly {
    version: Option<u64>,
}

/// Every field any command takes, as a flat struct: serde reads it in one
/// pass in any order (an internally tagged enum would first buffer the
/// whole request to find its tag). [`Wire::into_command`] then refuses
/// fields the named command does not take.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    version: Option<u64>,
    command: String,
    routes: Option<Vec<RouteSpec>>,
    interface: Option<String>,
    destination: Option<String>,
    next_hop: Option<String>,
    all: Option<bool>,
    after: Option<IpNet>,
    addresses: Option<Vec<IpAddr>>,
    port: Option<String>,
    binding: Option<String>,
    count: Option<u64>,
    filter: Option<String>,
    direction: Option<String>,
    drops: Option<bool>,
    snaplen: Option<usize>,
    name: Option<String>,
    action: Option<String>,
    address: Option<String>,
    weight: Option<u32>,
    entry: Option<String>,
    cursor: Option<usize>,
}

impl Wire {
    fn into_command(self) -> Result<Command, String> {
        let Wire {
            version: _,
            command,
            routes,
            interface,
            destination,
            next_hop,
            all,
            after,
            addresses,
            port,
            binding,
            count,
            filter,
            direction,
            drops,
            snaplen,
            name,
            action,
            address,
            weight,
            entry,
            cursor,
        } = self;
        let given = [
            ("routes", routes.is_some()),
            ("interface", interface.is_some()),
            ("destination", destination.is_some()),
            ("next_hop", next_hop.is_some()),
            ("all", all.is_some()),
            ("after", after.is_some()),
            ("addresses", addresses.is_some()),
            ("port", port.is_some()),
            ("binding", binding.is_some()),
            ("count", count.is_some()),
            ("filter", filter.is_some()),
            ("direction", direction.is_some()),
            ("drops", drops.is_some()),
            ("snaplen", snaplen.is_some()),
            ("name", name.is_some()),
            ("action", action.is_some()),
            ("address", address.is_some()),
            ("weight", weight.is_some()),
            ("entry", entry.is_some()),
            ("cursor", cursor.is_some()),
        ];
        let takes: &[&str] = match command.as_str() {
            "route_add" => &["routes"],
            "route_remove" => &["interface", "destination", "next_hop"],
            "route_show" => &["interface", "all", "after"],
            "route_lookup" => &["addresses"],
            "port_bind" => &["port", "binding"],
            "port_unbind" => &["port"],
            "trace_start" => &["port", "count", "filter"],
            "capture" => &["port", "direction", "drops", "count", "snaplen"],
            "service_show" => &["name"],
            "service_announce" | "service_remove" => &["name"],
            "service_add" => &["entry"],
            "service_flows" => &["name", "cursor"],
            "service_backend" => &["name", "action", "address", "weight"],
            "port_show" | "stats" | "reload" | "nat_sessions" | "trace_show" | "host_show" => &[],
            other => return Err(format!("bad request: unknown command {other:?}")),
        };
        if let Some((field, _)) = given.iter().find(|(f, set)| *set && !takes.contains(f)) {
            return Err(format!(
                "bad request: unknown field `{field}` for {command}"
            ));
        }
        let need = |field: &str| format!("bad request: missing field `{field}` for {command}");
        Ok(match command.as_str() {
            "route_add" => Command::RouteAdd {
                routes: routes.ok_or_else(|| need("routes"))?,
            },
            "route_remove" => Command::RouteRemove {
                interface: interface.ok_or_else(|| need("interface"))?,
                destination: destination.ok_or_else(|| need("destination"))?,
                next_hop,
            },
            "route_show" => Command::RouteShow {
                interface,
                all: all.ok_or_else(|| need("all"))?,
                after,
            },
            "route_lookup" => Command::RouteLookup {
                addresses: addresses.ok_or_else(|| need("addresses"))?,
            },
            "port_bind" => Command::PortBind {
                port: port.ok_or_else(|| need("port"))?,
                binding: binding.ok_or_else(|| need("binding"))?,
            },
            "port_unbind" => Command::PortUnbind {
                port: port.ok_or_else(|| need("port"))?,
            },
            "port_show" => Command::PortShow {},
            "host_show" => Command::HostShow {},
            "stats" => Command::Stats {},
            "reload" => Command::Reload {},
            "trace_start" => Command::TraceStart {
                port,
                count: count.ok_or_else(|| need("count"))?,
                filter,
            },
            "trace_show" => Command::TraceShow {},
            "capture" => Command::Capture {
                port: port.ok_or_else(|| need("port"))?,
                direction,
                drops: drops.unwrap_or(false),
                count,
                snaplen,
            },
            "service_show" => Command::ServiceShow { name },
            "service_announce" => Command::ServiceAnnounce {
                name: name.ok_or_else(|| need("name"))?,
            },
            "service_remove" => Command::ServiceRemove {
                name: name.ok_or_else(|| need("name"))?,
            },
            "service_flows" => Command::ServiceFlows {
                name: name.ok_or_else(|| need("name"))?,
                cursor,
            },
            "service_add" => Command::ServiceAdd {
                entry: entry.ok_or_else(|| need("entry"))?,
            },
            "service_backend" => Command::ServiceBackend {
                name: name.ok_or_else(|| need("name"))?,
                action: action.ok_or_else(|| need("action"))?,
                address: address.ok_or_else(|| need("address"))?,
                weight,
            },
            _ => Command::NatSessions {},
        })
    }
}

impl Command {
    /// The command's name, as the CLI spells it (for logs and metrics).
    pub fn name(&self) -> &'static str {
        match self {
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
            Command::HostShow {} => "host show",
            Command::TraceStart { .. } => "trace start",
            Command::TraceShow {} => "trace show",
            Command::Capture { .. } => "capture",
            Command::ServiceShow { .. } => "service show",
            Command::ServiceAnnounce { .. } => "service announce",
            Command::ServiceAdd { .. } => "service add",
            Command::ServiceFlows { .. } => "service flows",
            Command::ServiceRemove { .. } => "service remove",
            Command::ServiceBackend { .. } => "service backend",
        }
    }
}

/// The answer line: one JSON object and a newline.
pub fn encode_response(r: &Response) -> Vec<u8> {
    let mut line = serde_json::to_vec(r).unwrap_or_else(|e| {
        format!("{{\"ok\":false,\"error\":\"answer not encodable: {e}\"}}").into_bytes()
    });
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn requests_round_trip_and_bad_ones_are_named() {
        let (a, b) = UnixStream::pair().unwrap();
        let cmd = Command::RouteRemove {
            interface: "Port3".into(),
            destination: "10.0.0.0/8".into(),
            next_hop: None,
        };
        let mut line = serde_json::to_vec(&Request {
            version: VERSION,
            command: cmd.clone(),
        })
        .unwrap();
        line.push(b'\n');
        (&a).write_all(&line).unwrap();
        drop(a);
        let mut got = Vec::new();
        (&b).read_to_end(&mut got).unwrap();
        assert_eq!(parse_request(&got).unwrap(), cmd);
        for (bad, why) in [
            (
                "{\"version\":2,\"command\":\"stats\"}\n",
                "protocol version 2",
            ),
            ("{\"command\":\"stats\"}\n", "no version"),
            (
                "{\"version\":1,\"command\":\"route_flip\"}\n",
                "bad request",
            ),
            (
                "{\"version\":1,\"command\":\"stats\",\"x\":1}\n",
                "bad request",
            ),
            ("not json\n", "not JSON"),
        ] {
            let e = parse_request(bad.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
