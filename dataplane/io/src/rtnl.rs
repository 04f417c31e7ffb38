//! Requests and dumps over rtnetlink, blocking, one socket per namespace:
//! what sets up a host mirror (its MAC, MTU, addresses) and what the
//! route mirror reads the kernel's tables with.
//!
//! Messages are built and parsed by `netlink-packet-route`; this module
//! only frames them, numbers them and waits for the kernel's answer.

use std::io;
use std::path::Path;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Room for one datagram of a dump.
const RECV_BUF: usize = 1 << 20;

/// A blocking rtnetlink socket for requests and dumps.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// A socket in the calling thread's namespace.
    pub fn new() -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Refusals name the attribute at fault.
        let _ = sock.set_ext_ack(true);
        Ok(Rtnl {
            sock,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// A socket in the namespace at `netns` (`None`: ours).
    pub fn in_netns(netns: Option<&Path>) -> io::Result<Rtnl> {
        match netns {
            Some(ns) => crate::sys::in_netns(ns, Rtnl::new),
            None => Rtnl::new(),
        }
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let mut out = vec![0; m.buffer_len()];
        m.serialize(&mut out);
        self.sock.send(&out, 0)?;
        Ok(self.seq)
    }

    /// Sends `msg` with `flags` (besides request and ack) and waits for
    /// the kernel's acknowledgement; a refusal is its errno.
    pub fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        let mut result = None;
        self.read_until(seq, |payload| match payload {
            NetlinkPayload::Error(e) => {
                result = Some(match e.code {
                    None => Ok(()),
                    Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                });
                true
            }
            NetlinkPayload::Done(_) => true,
            _ => false,
        })?;
        result.unwrap_or_else(|| Err(io::Error::other("no acknowledgement")))
    }

    /// Dumps what `msg` asks for, calling `each` for every object.
    pub fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<()> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut error = None;
        self.read_until(seq, |payload| match payload {
            NetlinkPayload::InnerMessage(m) => {
                each(m);
                false
            }
            NetlinkPayload::Error(e) => {
                if let Some(code) = e.code {
                    error = Some(io::Error::from_raw_os_error(-code.get()));
                }
                true
            }
            NetlinkPayload::Done(_) => true,
            _ => false,
        })?;
        error.map_or(Ok(()), Err)
    }

    /// Reads messages answering `seq` until `done` says the answer ended.
    fn read_until(
        &mut self,
        seq: u32,
        mut done: impl FnMut(NetlinkPayload<RouteNetlinkMessage>) -> bool,
    ) -> io::Result<()> {
        loop {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut at = 0;
            while at + 16 <= n {
                let b = &self.buf[at..n];
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                if len < 16 || len > b.len() {
                    break;
                }
                at += len.next_multiple_of(4);
                let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&b[..len]) else {
                    // An object this parser does not know: skipped.
                    continue;
                };
                if m.header.sequence_number != seq {
                    continue;
                }
                if done(m.payload) {
                    return Ok(());
                }
            }
        }
    }
}
