//! The edgefwd control plane: config, RIB, pcap replay, the `run` daemon and
//! the `edgefwd` command line.
//!
//! Everything that decides (which routes exist, which ports are up, what a
//! config means) lives here; the dataplane only forwards. Dependencies go one
//! way: control uses dataplane, never the reverse.
#![deny(unsafe_code)]

pub mod api;
pub mod capture;
pub mod cli;
pub mod config;
pub mod counters;
pub mod daemon;
pub mod demo;
pub mod devices;
pub mod metrics;
pub mod notify;
pub mod packet_trace;
pub mod replay;
pub mod report;
pub mod rib;
pub mod ribfile;
pub mod route_mirror;
pub mod run;
pub mod server;
pub mod services;
pub mod store;
pub mod trace;
