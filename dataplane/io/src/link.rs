//! Link state of a device: administratively up, carrier present, still
//! there. The control plane asks every port whenever the kernel says a
//! link changed ([`crate::LinkEvents`]) and once a second besides, and
//! feeds changes to the FIB, so routes through a port that went down fall
//! out and the next metric takes over.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::sys::{self, IfSocket};
pub use edgefwd_core::port::LinkState;

/// Asks the kernel about one interface, in the namespace the device was
/// opened in. The interface index taken at open time tells a device that was
/// removed and re-created under the same name from the one we hold.
///
/// A TAP's probe follows the device itself: orchestrators (CNI plugins,
/// libvirt) create a TAP in one namespace and then move it into a pod's or
/// VM's, often renaming it. The TAP's own fd says where the device lives
/// now and what it is called (`TUNGETDEVNETNS`, `TUNGETIFF`), and the probe
/// asks the kernel there.
pub struct LinkProbe {
    sock: IfSocket,
    name: String,
    index: u32,
    /// A queue of the TAP this probes, and the namespace (device and inode
    /// of its file) the socket asks in.
    tap: Option<(File, (u64, u64))>,
}

/// A namespace file's identity.
fn netns_id(f: &File) -> io::Result<(u64, u64)> {
    let m = f.metadata()?;
    Ok((m.dev(), m.ino()))
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
            tap: None,
        })
    }

    /// A probe for the TAP that `queue` (one of its queues' files) belongs
    /// to, in the calling thread's namespace, where the TAP is now.
    pub fn for_tap(queue: File) -> io::Result<Self> {
        let name = sys::tap_name(&queue)?;
        let ns = netns_id(&sys::tap_netns(&queue)?)?;
        let mut probe = LinkProbe::new(&name)?;
        probe.tap = Some((queue, ns));
        Ok(probe)
    }

    /// The device's name now (a TAP may have been renamed since it was
    /// opened).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// For a TAP: follows it to where it lives now and what it is called
    /// now. False when it is gone.
    fn follow(&mut self) -> bool {
        let Some((queue, ns)) = &mut self.tap else {
            return true;
        };
        let (Ok(name), Ok(netns)) = (sys::tap_name(queue), sys::tap_netns(queue)) else {
            return false;
        };
        let Ok(id) = netns_id(&netns) else {
            return false;
        };
        if id == *ns && name == self.name {
            return true;
        }
        // Moved or renamed: ask in its namespace, by its new name.
        let path = PathBuf::from(format!("/proc/self/fd/{}", netns.as_raw_fd()));
        let moved = sys::in_netns(&path, || {
            let sock = IfSocket::new()?;
            let index = sock.index(&name)?;
            Ok((sock, index))
        });
        match moved {
            Ok((sock, index)) => {
                tracing::info!(from = %self.name, to = %name, "TAP moved or renamed; following it");
                *ns = id;
                self.sock = sock;
                self.index = index;
                self.name = name;
                true
            }
            Err(_) => false,
        }
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

    /// The current state (a few ioctls; not for the packet path).
    pub fn state(&mut self) -> LinkState {
        if !self.follow() {
            return LinkState::Gone;
        }
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
