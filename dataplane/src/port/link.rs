//! Link state of a device: administratively up, carrier present, still
//! there. The control plane asks every port a few times a second and feeds
//! changes to the FIB, so routes through a port that went down fall out and
//! the next metric takes over.

use std::fmt;
use std::io;
use std::path::Path;

use super::sys::{self, IfSocket};

/// What a probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Up with carrier.
    Up,
    /// Administratively down (`ip link set … down`).
    AdminDown,
    /// Up but without carrier.
    NoCarrier,
    /// The device is gone (removed, or moved to another namespace).
    Gone,
}

impl LinkState {
    /// True when traffic can flow.
    pub fn is_up(self) -> bool {
        self == LinkState::Up
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkState::Up => "up",
            LinkState::AdminDown => "admin-down",
            LinkState::NoCarrier => "no-carrier",
            LinkState::Gone => "gone",
        })
    }
}

/// Asks the kernel about one interface, in the namespace the device was
/// opened in. The interface index taken at open time tells a device that was
/// removed and re-created under the same name from the one we hold.
pub struct LinkProbe {
    sock: IfSocket,
    name: String,
    index: u32,
}

impl LinkProbe {
    /// A probe for `name` in the calling thread's namespace.
    pub fn new(name: &str) -> io::Result<Self> {
        let sock = IfSocket::new()?;
        let index = sock.index(name)?;
        Ok(LinkProbe {
            sock,
            name: name.to_owned(),
            index,
        })
    }

    /// A probe for `name` in the namespace at `netns`.
    pub fn in_netns(netns: &Path, name: &str) -> io::Result<Self> {
        sys::in_netns(netns, || LinkProbe::new(name))
    }

    /// Sets the device's transmit queue length (see
    /// `IfSocket::set_txqueuelen`).
    pub fn set_txqueuelen(&self, len: u32) -> io::Result<()> {
        self.sock.set_txqueuelen(&self.name, len)
    }

    /// The current state (one ioctl or two; not for the packet path).
    pub fn state(&self) -> LinkState {
        match (self.sock.index(&self.name), self.sock.flags(&self.name)) {
            (Ok(i), Ok(flags)) if i == self.index => {
                if flags & libc::IFF_UP as u32 == 0 {
                    LinkState::AdminDown
                } else if flags & libc::IFF_RUNNING as u32 == 0 {
                    LinkState::NoCarrier
                } else {
                    LinkState::Up
                }
            }
            _ => LinkState::Gone,
        }
    }
}
