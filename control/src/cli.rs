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
use crate::demo;
use crate::replay::{replay, Input, Source};
use crate::rib::{LookupRoute, Rib};

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
}

#[derive(Subcommand, Debug)]
enum RouteCommand {
    /// Show the routes the FIB selects for addresses.
    Lookup {
        /// Addresses to look up.
        #[arg(required = true)]
        addresses: Vec<IpAddr>,
        /// Look up in this config instead of the running daemon.
        #[arg(long)]
        config: Option<PathBuf>,
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
        } => {
            let (cfg, inputs) = match config {
                Some(path) => (Config::load(&path)?, parse_inputs(&inputs)?),
                None if inputs.is_empty() => (Config::parse(demo::CONFIG)?, demo::inputs()),
                None => (Config::parse(demo::CONFIG)?, parse_inputs(&inputs)?),
            };
            let report = replay(&cfg, inputs, &dir, std::io::stderr().is_terminal())?;
            if json {
                writeln!(out, "{}", report.to_json())?;
            } else {
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
                crate::run::counters_text(&summary.names, &summary.links, &summary.stats)
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
                    config,
                    json,
                },
        } => {
            let Some(path) = config else {
                return Err(Failure(
                    "route lookup needs --config FILE (talking to a running daemon is not implemented yet)".into(),
                ));
            };
            let cfg = Config::load(&path)?;
            let rib = Rib::from_config(&cfg, false);
            let (fib, selection) = rib.build_fib();
            for a in addresses {
                let routes = rib.lookup(&fib, &selection, a);
                print_lookup(out, a, &routes, json)?;
            }
        }
    }
    Ok(())
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
