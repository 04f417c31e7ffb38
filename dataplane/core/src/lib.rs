//! The edgefwd forwarding core, without I/O (STYLE.md 6).
//!
//! The [`pipeline::Router`] takes bursts of packets and leaves them in
//! per-port transmit queues, drops them with a [`stats::DropReason`], or
//! consumes them as local traffic; time is injected ([`time::Time`]) so
//! that a replay is deterministic. Nothing here opens a device, makes a
//! syscall or touches `unsafe`: the port devices and the worker threads
//! that run the core over them are the `edgefwd-io` crate's, and pcap
//! replay and the control plane are the `control` crate's. The compiler
//! holds that line: this crate forbids `unsafe` and has no OS crate
//! (libc, mio, io-uring, pnet) among its dependencies; its one audited
//! `unsafe`, the prefetch hint, is the `edgefwd-prefetch` crate's.
#![forbid(unsafe_code)]

pub mod census;
pub mod fib;
pub mod l2;
pub mod nat;
pub mod neigh;
pub mod packet;
pub mod pipeline;
pub mod port;
pub mod service;
pub mod stats;
pub mod time;
