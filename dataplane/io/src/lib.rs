//! edgefwd's I/O half: the port devices and the worker threads that run
//! the forwarding core (`edgefwd-core`) over them in real time.
//!
//! Every kind of port is one implementation of [`Device`]: receive a burst
//! into pool buffers, transmit a burst, say its link state, its offloads
//! and what a worker polls to learn it has frames. The workers and the
//! replay drive nothing else, so a new kind of port is one new file.
//! Wrappers take any device: [`Recorder`] writes what passes to a pcap,
//! [`Faulty`] injects faults for tests.
//!
//! All syscalls, and all `unsafe`, are in `sys`.
#![deny(unsafe_code)]

pub mod afpacket;
pub mod afxdp;
pub mod binding;
pub mod capture;
pub mod device;
pub mod faults;
pub mod link;
pub mod link_events;
pub mod mem;
pub mod mirror;
pub mod none;
pub mod recorder;
pub mod rtnl;
mod sys;
pub mod tap;
pub mod vhost;
pub mod worker;

pub use afpacket::AfPacket;
pub use afxdp::AfXdp;
pub use binding::Binding;
pub use device::{
    BufSource, Capabilities, Device, DeviceCounts, QueueIo, Readiness, Received, RxStatus,
};
pub use faults::{FaultCounts, Faults, Faulty};
pub use link::LinkProbe;
pub use link_events::LinkEvents;
pub use mem::MemPort;
pub use none::NoDevice;
pub use recorder::Recorder;
pub use rtnl::Rtnl;
pub use sys::{in_netns, set_socket_option, Ring};
pub use tap::Tap;
pub use vhost::VhostUser;
