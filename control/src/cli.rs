//! The `edgefwd` command line (ARCHITECTURE.md §5).
//!
//! Errors go to stderr as one line naming what is wrong, with a non-zero
//! exit; `--json` output is for scripts and stays stable.

use clap::{Parser, Subcommand};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::counters::Counters;
use crate::demo;
use crate::replay::{self, Input, Source};
use crate::report::NatSessionReport;
use crate::rib::{LookupRoute, PortsUp, Rib, RouteView};
use crate::{api, ribfile};

/// edgefwd: a userspace packet-forwarding dataplane for an edge appliance.
#[derive(Parser, Debug)]
#[command(name = "edgefwd", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the dataplane on the configured ports until SIGINT or SIGTERM
    /// (SIGUSR1 logs the counters; RUST_LOG sets the log level).
    Run {
        /// Config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Replay pcap traces through the router and write one pcap per port.
    /// With no arguments, runs the bundled demo.
    Replay {
        /// Config file (default: the bundled demo appliance).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A capture arriving on a port; repeat for several ports.
        #[arg(long = "in", value_name = "PORT=PCAP")]
        inputs: Vec<String>,
        /// Directory for PORT.pcap outputs.
        #[arg(long, default_value = "replay-out")]
        out: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Trace the first N packets (and those the appliance makes in
        /// answer): print what every stage decided, before the report.
        #[arg(long, value_name = "N", default_value_t = 0)]
        trace: u64,
        /// Worker routers: each frame goes to the one a multi-queue TAP
        /// would hand it to, and flows another worker owns are handed over.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        workers: u16,
    },
    /// Validate a config file.
    Check {
        /// Config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Route commands.
    Route {
        #[command(subcommand)]
        command: RouteCommand,
    },
    /// Port commands (against the running daemon).
    Port {
        #[command(subcommand)]
        command: PortCommand,
    },
    /// Counters of the running daemon.
    Stats {
        #[command(flatten)]
        daemon: Daemon,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// NAT commands (against the running daemon).
    Nat {
        #[command(subcommand)]
        command: NatCommand,
    },
    /// The host's own traffic: mirrors, punt counters, routes mirrored
    /// from the kernel (against the running daemon).
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
    /// Make the running daemon re-read its config file (as SIGHUP does).
    Reload {
        #[command(flatten)]
        daemon: Daemon,
    },
    /// Kubernetes services (against the running daemon).
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
    /// Packet traces: what each stage decided (against the running daemon).
    Trace {
        #[command(subcommand)]
        command: TraceCommand,
    },
    /// Stream a port's frames from the running daemon as pcapng
    /// (`edgefwd capture Port2 -w - | tcpdump -nn -r -`).
    Capture {
        #[command(flatten)]
        daemon: Daemon,
        /// Port.
        port: String,
        /// Frames received (rx), sent (tx) or both.
        #[arg(long, default_value = "both")]
        direction: String,
        /// Stop after this many frames.
        #[arg(long)]
        count: Option<u64>,
        /// Capture the packets dropped on the port instead, each with its
        /// drop reason and stage in its comment.
        #[arg(long)]
        drops: bool,
        /// Bytes kept of each frame (default: all).
        #[arg(long)]
        snaplen: Option<usize>,
        /// Where to write: a file, or - for stdout.
        #[arg(short = 'w', value_name = "FILE")]
        write: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ServiceCommand {
    /// Services with their ports and backends.
    Show {
        #[command(flatten)]
        daemon: Daemon,
        /// Only this service.
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a service (the fields of a `[[service]]`; kept across restarts
    /// with `[control] state`).
    Add {
        #[command(flatten)]
        daemon: Daemon,
        /// Its name.
        name: String,
        /// `load-balancer` or `cluster-ip`.
        #[arg(long)]
        kind: String,
        /// Its address; repeat for a dual-stack service's second (a load
        /// balancer's default: the lowest free one of each family its
        /// backends have in `[services] load_balancer_pool`).
        #[arg(long = "address", value_name = "ADDR")]
        addresses: Vec<String>,
        /// The port that answers ARP and NDP for it (load balancers).
        #[arg(long)]
        announce: Option<String>,
        /// `PROTOCOL:PORT[:TARGET_PORT]`, e.g. `tcp:80:8080`; repeat.
        #[arg(long = "port", value_name = "PROTO:PORT[:TARGET]")]
        ports: Vec<String>,
        /// `ADDR` or `ADDR:WEIGHT`; repeat.
        #[arg(long = "backend", value_name = "ADDR[:WEIGHT]")]
        backends: Vec<String>,
        /// `none` or `client-ip`.
        #[arg(long)]
        affinity: Option<String>,
        /// Seconds a client's affinity lasts (with `--affinity client-ip`).
        #[arg(long)]
        affinity_timeout: Option<u32>,
    },
    /// A service's flows: client, service port, backend, time left.
    Flows {
        #[command(flatten)]
        daemon: Daemon,
        /// The service.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a service.
    Remove {
        #[command(flatten)]
        daemon: Daemon,
        /// Its name.
        name: String,
    },
    /// Announce a load balancer's addresses again: three gratuitous ARPs
    /// or unsolicited neighbour advertisements on its port.
    Announce {
        #[command(flatten)]
        daemon: Daemon,
        /// The service.
        name: String,
    },
    /// Add, remove or drain a backend (kept across restarts with
    /// `[control] state`).
    Backend {
        #[command(flatten)]
        daemon: Daemon,
        /// `add` (or set the weight of, active again), `remove` (no new
        /// flows; UDP flows move at once, TCP ones are reset) or `drain`
        /// (no new flows; its flows carry on).
        action: String,
        /// The service.
        name: String,
        /// The backend's address.
        address: String,
        /// Its weight, 1-255 (add).
        #[arg(long)]
        weight: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
enum TraceCommand {
    /// Arm every worker to trace its next packets (earlier traces are
    /// forgotten).
    Start {
        #[command(flatten)]
        daemon: Daemon,
        /// Only packets arriving on this port.
        #[arg(long)]
        port: Option<String>,
        /// Packets per worker.
        #[arg(long, default_value_t = 50)]
        count: u64,
        /// Only packets matching: `host ADDR`, `tcp`, `udp`, `icmp`,
        /// `icmp6`, `proto N`, `port N`, joined by `and`.
        #[arg(long = "match", value_name = "EXPR")]
        filter: Option<String>,
    },
    /// The traced packets, each with what every stage decided.
    Show {
        #[command(flatten)]
        daemon: Daemon,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where the running daemon listens.
#[derive(clap::Args, Debug)]
struct Daemon {
    /// The daemon's control socket (default: $EDGEFWD_SOCKET, else
    /// /run/edgefwd/control.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl Daemon {
    fn call(&self, command: api::Command) -> Result<serde_json::Value, Failure> {
        api::call(&api::socket_path(self.socket.clone()), command).map_err(Failure)
    }
}

#[derive(Subcommand, Debug)]
enum PortCommand {
    /// Rebind a port to another device at run time (kept across restarts
    /// with `[control] state`).
    Bind {
        #[command(flatten)]
        daemon: Daemon,
        /// Port.
        port: String,
        /// `tap:NAME[@NETNS]`, `afpacket:IFNAME[@NETNS]` or `none`.
        binding: String,
    },
    /// Unbind a port (its link goes down).
    Unbind {
        #[command(flatten)]
        daemon: Daemon,
        /// Port.
        port: String,
    },
    /// Ports with their binding and link state.
    Show {
        #[command(flatten)]
        daemon: Daemon,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum HostCommand {
    /// Host mirrors, punt counters and the route mirror's netlink state.
    Show {
        #[command(flatten)]
        daemon: Daemon,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum NatCommand {
    /// NAT sessions.
    Sessions {
        #[command(flatten)]
        daemon: Daemon,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum RouteCommand {
    /// Add a custom route (or, with --file, every route of a PREFIX/LEN
    /// NEXTHOP list, as one change).
    Add {
        #[command(flatten)]
        daemon: Daemon,
        /// Egress port.
        #[arg(long)]
        interface: String,
        /// Destination prefix.
        #[arg(long, required_unless_present = "file", conflicts_with = "file")]
        destination: Option<String>,
        /// Gateway (omitted: the destination is on the link).
        #[arg(long, conflicts_with = "file")]
        next_hop: Option<String>,
        /// Metric, 0-65535 (default 256).
        #[arg(long, allow_negative_numbers = true)]
        metric: Option<i64>,
        /// A route list, one `PREFIX/LEN NEXTHOP` per line.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Remove custom routes to a destination on a port.
    Remove {
        #[command(flatten)]
        daemon: Daemon,
        /// Port.
        #[arg(long)]
        interface: String,
        /// Destination prefix.
        #[arg(long)]
        destination: String,
        /// Only the route via this gateway.
        #[arg(long)]
        next_hop: Option<String>,
    },
    /// List the custom routes (with --all, connected and default routes
    /// too), marking those the FIB uses.
    Show {
        #[command(flatten)]
        daemon: Daemon,
        /// Only this port's routes.
        #[arg(long)]
        interface: Option<String>,
        /// Connected and default routes too.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the routes the FIB selects for addresses.
    Lookup {
        /// Addresses to look up.
        #[arg(required = true)]
        addresses: Vec<IpAddr>,
        /// Look up in this config instead of the running daemon.
        #[arg(long, conflicts_with = "socket")]
        config: Option<PathBuf>,
        #[command(flatten)]
        daemon: Daemon,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// A command that failed, with the message to print.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

/// Parses the process arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let mut out = std::io::stdout().lock();
    match run(cli, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            let _ = out.flush();
            eprintln!("edgefwd: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, out: &mut impl Write) -> Result<(), Failure> {
    match cli.command {
        Command::Replay {
            config,
            inputs,
            out: dir,
            json,
            trace,
            workers,
        } => {
            let (cfg, inputs) = match config {
                Some(path) => (Config::load(&path)?, parse_inputs(&inputs)?),
                None if inputs.is_empty() => (Config::parse(demo::CONFIG)?, demo::inputs()),
                None => (Config::parse(demo::CONFIG)?, parse_inputs(&inputs)?),
            };
            let opts = replay::Options {
                progress: std::io::stderr().is_terminal(),
                trace,
                workers: usize::from(workers),
            };
            let (report, traces) = replay::replay_with(&cfg, inputs, &dir, &opts)?;
            if json && trace > 0 {
                let mut v: serde_json::Value = serde_json::from_str(&report.to_json())?;
                v["trace"] = traces;
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else if json {
                writeln!(out, "{}", report.to_json())?;
            } else {
                if trace > 0 {
                    write!(out, "{}", crate::packet_trace::to_text(&traces))?;
                }
                write!(out, "{}", report.to_text())?;
            }
        }
        Command::Run { config } => {
            let cfg = Config::load(&config)?;
            let control = crate::run::Control::from_signals()?;
            let summary = crate::run::run(&cfg, &config, &control)?;
            write!(
                out,
                "{}",
                Counters::new(&summary.names, Some(&summary.links), &summary.stats).to_text()
            )?;
        }
        Command::Check { config } => {
            let cfg = Config::load(&config)?;
            writeln!(
                out,
                "{}: OK ({} ports, {} routes, {} neighbors)",
                config.display(),
                cfg.ports.len(),
                cfg.routes.len(),
                cfg.neighbors.len()
            )?;
        }
        Command::Route {
            command:
                RouteCommand::Lookup {
                    addresses,
                    config: Some(path),
                    json,
                    ..
                },
        } => {
            let cfg = Config::load(&path)?;
            let rib = Rib::from_config(&cfg, PortsUp::All);
            let (fib, selection) = rib.build_fib();
            for a in addresses {
                let routes = rib.lookup(&fib, &selection.selected, a);
                print_lookup(out, a, &routes, json)?;
            }
        }
        Command::Route {
            command:
                RouteCommand::Lookup {
                    addresses,
                    config: None,
                    json,
                    daemon,
                },
        } => {
            let data = daemon.call(api::Command::RouteLookup { addresses })?;
            let answers: Vec<LookupAnswer> = serde_json::from_value(data)?;
            for a in answers {
                print_lookup(out, a.address, &a.routes, json)?;
            }
        }
        Command::Route {
            command:
                RouteCommand::Add {
                    daemon,
                    interface,
                    destination,
                    next_hop,
                    metric,
                    file,
                },
        } => {
            let routes = match (file, destination) {
                (Some(f), _) => ribfile::load(&f)?
                    .into_iter()
                    .map(|r| api::RouteSpec {
                        interface: interface.clone(),
                        destination: r.prefix.to_string(),
                        next_hop: r.next_hop.map(|n| n.to_string()),
                        metric,
                    })
                    .collect(),
                (None, Some(d)) => vec![api::RouteSpec {
                    interface,
                    destination: d,
                    next_hop,
                    metric,
                }],
                (None, None) => return Err(Failure("--destination or --file is needed".into())),
            };
            let data = daemon.call(api::Command::RouteAdd { routes })?;
            writeln!(out, "added {}", data["added"])?;
        }
        Command::Route {
            command:
                RouteCommand::Remove {
                    daemon,
                    interface,
                    destination,
                    next_hop,
                },
        } => {
            let data = daemon.call(api::Command::RouteRemove {
                interface,
                destination,
                next_hop,
            })?;
            writeln!(out, "removed {}", data["removed"])?;
        }
        Command::Route {
            command:
                RouteCommand::Show {
                    daemon,
                    interface,
                    all,
                    json,
                },
        } => {
            // Page by page (see the protocol), printed as one list.
            let mut routes: Vec<serde_json::Value> = Vec::new();
            let mut after = None;
            loop {
                let mut page = daemon.call(api::Command::RouteShow {
                    interface: interface.clone(),
                    all,
                    after,
                })?;
                if let Some(r) = page["routes"].as_array_mut() {
                    routes.append(r);
                }
                after = match page.get("next") {
                    Some(n) => Some(serde_json::from_value(n.clone())?),
                    None => break,
                };
            }
            let data = serde_json::json!({ "routes": routes });
            if json {
                writeln!(out, "{data}")?;
            } else {
                let routes: Vec<RouteView> = serde_json::from_value(data["routes"].clone())?;
                writeln!(
                    out,
                    "{:<12} {:<24} {:<24} {:>6} {:<10} selected",
                    "interface", "destination", "next_hop", "metric", "kind"
                )?;
                for r in routes {
                    let nh = r.next_hop.map_or("on-link".to_owned(), |n| n.to_string());
                    writeln!(
                        out,
                        "{:<12} {:<24} {:<24} {:>6} {:<10} {}",
                        r.interface,
                        r.destination.to_string(),
                        nh,
                        r.metric,
                        r.kind.name(),
                        if r.selected { "yes" } else { "no" }
                    )?;
                }
            }
        }
        Command::Port {
            command: PortCommand::Show { daemon, json },
        } => {
            let data = daemon.call(api::Command::PortShow {})?;
            if json {
                writeln!(out, "{data}")?;
            } else {
                writeln!(
                    out,
                    "{:<12} {:<28} {:<10} {:<17} addresses",
                    "port", "bind", "link", "mac"
                )?;
                for p in data["ports"].as_array().into_iter().flatten() {
                    let addrs: Vec<&str> = p["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str())
                        .collect();
                    let addrs = match p["mirror_of"].as_str() {
                        Some(of) => format!("(host mirror of {of})"),
                        None => addrs.join(" "),
                    };
                    writeln!(
                        out,
                        "{:<12} {:<28} {:<10} {:<17} {}",
                        p["name"].as_str().unwrap_or("?"),
                        p["bind"].as_str().unwrap_or("?"),
                        p["link"].as_str().unwrap_or("?"),
                        p["mac"].as_str().unwrap_or("?"),
                        addrs
                    )?;
                    if let Some(d) = p["device"].as_object() {
                        let kv: Vec<String> = d.iter().map(|(k, v)| format!("{k} {v}")).collect();
                        writeln!(out, "{:<12} {}", "", kv.join(", "))?;
                    }
                }
            }
        }
        Command::Port {
            command:
                PortCommand::Bind {
                    daemon,
                    port,
                    binding,
                },
        } => {
            let data = daemon.call(api::Command::PortBind { port, binding })?;
            writeln!(
                out,
                "{} bound to {}",
                data["port"].as_str().unwrap_or("?"),
                data["bind"].as_str().unwrap_or("?")
            )?;
        }
        Command::Port {
            command: PortCommand::Unbind { daemon, port },
        } => {
            let data = daemon.call(api::Command::PortUnbind { port })?;
            writeln!(out, "{} unbound", data["port"].as_str().unwrap_or("?"))?;
        }
        Command::Stats { daemon, json } => {
            let data = daemon.call(api::Command::Stats {})?;
            if json {
                writeln!(out, "{data}")?;
            } else {
                let counters: Counters = serde_json::from_value(data)
                    .map_err(|e| format!("the daemon's counters: {e}"))?;
                write!(out, "{}", counters.to_text())?;
            }
        }
        Command::Service {
            command: ServiceCommand::Show { daemon, name, json },
        } => {
            let data = daemon.call(api::Command::ServiceShow { name })?;
            if json {
                writeln!(out, "{data}")?;
            } else {
                let list = data["services"].as_array().cloned().unwrap_or_default();
                write!(out, "{}", crate::services::to_text(&list))?;
            }
        }
        Command::Service {
            command:
                ServiceCommand::Add {
                    daemon,
                    name,
                    kind,
                    addresses,
                    announce,
                    ports,
                    backends,
                    affinity,
                    affinity_timeout,
                },
        } => {
            let mut entry = crate::services::entry_from_flags(
                &name,
                &kind,
                &addresses,
                announce.as_deref(),
                &ports,
                &backends,
            )
            .map_err(Failure)?;
            if let Some(a) = affinity {
                entry += &format!("affinity = {}\n", toml::Value::String(a));
            }
            if let Some(t) = affinity_timeout {
                entry += &format!("affinity_timeout = {t}\n");
            }
            let data = daemon.call(api::Command::ServiceAdd { entry })?;
            write!(out, "{}", crate::services::to_text(&[data]))?;
        }
        Command::Service {
            command: ServiceCommand::Flows { daemon, name, json },
        } => {
            // A page per call, each looking at a slice of the workers'
            // tables, so that no call holds a worker long.
            let mut flows = Vec::new();
            let mut cursor = None;
            loop {
                let page = daemon.call(api::Command::ServiceFlows {
                    name: name.clone(),
                    cursor,
                })?;
                flows.extend(page["flows"].as_array().cloned().unwrap_or_default());
                match page["next"].as_u64() {
                    Some(n) => cursor = Some(n as usize),
                    None => break,
                }
            }
            if json {
                writeln!(out, "{}", serde_json::json!({ "flows": flows }))?;
            } else {
                write!(out, "{}", crate::services::flows_text(&flows))?;
            }
        }
        Command::Service {
            command: ServiceCommand::Remove { daemon, name },
        } => {
            let data = daemon.call(api::Command::ServiceRemove { name })?;
            writeln!(
                out,
                "removed {} ({})",
                data["removed"].as_str().unwrap_or_default(),
                addresses(&data)
            )?;
        }
        Command::Service {
            command: ServiceCommand::Announce { daemon, name },
        } => {
            let data = daemon.call(api::Command::ServiceAnnounce { name })?;
            writeln!(
                out,
                "announcing {} on {}",
                addresses(&data),
                data["port"].as_str().unwrap_or_default()
            )?;
        }
        Command::Service {
            command:
                ServiceCommand::Backend {
                    daemon,
                    action,
                    name,
                    address,
                    weight,
                },
        } => {
            let data = daemon.call(api::Command::ServiceBackend {
                name,
                action,
                address,
                weight,
            })?;
            write!(out, "{}", crate::services::to_text(&[data]))?;
        }
        Command::Trace {
            command:
                TraceCommand::Start {
                    daemon,
                    port,
                    count,
                    filter,
                },
        } => {
            daemon.call(api::Command::TraceStart {
                port,
                count,
                filter,
            })?;
            writeln!(out, "tracing the next {count} packets on each worker")?;
        }
        Command::Trace {
            command: TraceCommand::Show { daemon, json },
        } => {
            let data = daemon.call(api::Command::TraceShow {})?;
            if json {
                writeln!(out, "{data}")?;
            } else {
                write!(out, "{}", crate::packet_trace::to_text(&data))?;
            }
        }
        Command::Capture {
            daemon,
            port,
            direction,
            count,
            drops,
            snaplen,
            write,
        } => {
            let cmd = api::Command::Capture {
                port,
                direction: Some(direction),
                drops,
                count,
                snaplen,
            };
            let socket = api::socket_path(daemon.socket.clone());
            if write.as_os_str() == "-" {
                api::stream(&socket, cmd, &mut std::io::stdout().lock()).map_err(Failure)?;
            } else {
                let mut f = std::fs::File::create(&write)
                    .map_err(|e| Failure(format!("-w {}: {e}", write.display())))?;
                api::stream(&socket, cmd, &mut f).map_err(Failure)?;
            }
        }
        Command::Nat {
            command: NatCommand::Sessions { daemon, json },
        } => {
            let data = daemon.call(api::Command::NatSessions {})?;
            if json {
                writeln!(out, "{data}")?;
            } else {
                let sessions: Vec<NatSessionReport> =
                    serde_json::from_value(data["sessions"].clone()).unwrap_or_default();
                writeln!(out, "{} NAT sessions", sessions.len())?;
                for s in &sessions {
                    writeln!(out, "{}", s.line())?;
                }
            }
        }
        Command::Host {
            command: HostCommand::Show { daemon, json },
        } => {
            let data = daemon.call(api::Command::HostShow {})?;
            if json {
                writeln!(out, "{data}")?;
            } else {
                for m in data["mirrors"].as_array().into_iter().flatten() {
                    writeln!(
                        out,
                        "{} mirror {} ({}) link {}",
                        m["port"].as_str().unwrap_or("?"),
                        m["device"].as_str().unwrap_or("?"),
                        m["bind"].as_str().unwrap_or("?"),
                        m["link"].as_str().unwrap_or("?"),
                    )?;
                }
                let p = &data["punt"];
                writeln!(
                    out,
                    "punted {} injected {} punt_dropped {}",
                    p["punted"], p["injected"], p["punt_dropped"]
                )?;
                let n = &data["netlink"];
                writeln!(
                    out,
                    "kernel routes {} (not mirrored, next-hop objects: {}); netlink events {} overruns {} resyncs {} batches {} last sync lag {} ms",
                    n["routes"],
                    n["nexthop_objects"],
                    n["events"],
                    n["overruns"],
                    n["resyncs"],
                    n["batches"],
                    n["last_sync_lag_ms"]
                )?;
            }
        }
        Command::Reload { daemon } => {
            let data = daemon.call(api::Command::Reload {})?;
            writeln!(out, "reloaded: {} custom routes", data["routes"])?;
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct LookupAnswer {
    address: IpAddr,
    routes: Vec<LookupRoute>,
}

fn parse_inputs(raw: &[String]) -> Result<Vec<Input>, Failure> {
    raw.iter()
        .map(|s| match s.split_once('=') {
            Some((port, path)) if !port.is_empty() && !path.is_empty() => Ok(Input {
                port: port.to_owned(),
                source: Source::File(PathBuf::from(path)),
            }),
            _ => Err(Failure(format!("--in {s:?}: expected PORT=PCAP"))),
        })
        .collect()
}

#[derive(Serialize)]
struct LookupJson<'a> {
    address: IpAddr,
    routes: &'a [LookupRoute],
}

fn print_lookup(
    out: &mut impl Write,
    a: IpAddr,
    routes: &[LookupRoute],
    json: bool,
) -> Result<(), Failure> {
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&LookupJson { address: a, routes })?
        )?;
        return Ok(());
    }
    if routes.is_empty() {
        writeln!(out, "{a}: unreachable (no route)")?;
    }
    for r in routes {
        let via = r
            .next_hop
            .map_or_else(|| "directly connected".to_owned(), |n| format!("via {n}"));
        writeln!(
            out,
            "{a}: {} {via} dev {} metric {}",
            r.destination, r.interface, r.metric
        )?;
    }
    Ok(())
}

/// A reply's `addresses`, joined by commas.
fn addresses(data: &serde_json::Value) -> String {
    let list = data["addresses"].as_array().map(Vec::as_slice);
    (list.unwrap_or_default().iter())
        .filter_map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(",")
}
