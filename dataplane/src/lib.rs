//! The edgefwd forwarding library.
//!
//! Everything here is a core without I/O (STYLE.md 6): the [`pipeline::Router`]
//! takes bursts of packets and leaves them in per-port transmit queues, drops
//! them with a [`stats::DropReason`], or consumes them as local traffic.
//! Ports, pcap replay, TAP devices and the control plane live outside and feed
//! it; time is injected ([`time::Time`]) so that a replay is deterministic.
#![deny(unsafe_code)]

pub mod fib;
pub mod neigh;
pub mod packet;
pub mod pipeline;
pub mod port;
pub mod stats;
pub mod time;
