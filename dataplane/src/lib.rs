//! The edgefwd forwarding library.
//!
//! The forwarding core is without I/O (STYLE.md 6): the [`pipeline::Router`]
//! takes bursts of packets and leaves them in per-port transmit queues, drops
//! them with a [`stats::DropReason`], or consumes them as local traffic; time
//! is injected ([`time::Time`]) so that a replay is deterministic. Around it,
//! [`port`] has the device drivers (TAP) and [`worker`] the threads that run
//! the core over them in real time; pcap replay and the control plane live in
//! the `control` crate and feed the same core.
#![deny(unsafe_code)]

pub mod fib;
pub mod l2;
pub mod nat;
pub mod neigh;
pub mod packet;
pub mod pipeline;
pub mod port;
pub mod prefetch;
pub mod stats;
pub mod time;
pub mod worker;
