//! One namespace's watch: its sockets, the routes through its mirrors,
//! and what changed since the last batch.

use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use edgefwd_core::port::PortId;
use edgefwd_io::Rtnl;
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_APPEND, NLM_F_REPLACE};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::kernel::{self, RouteKey};
use super::{
    Batch, Hops, MirrorCounts, MirrorSpec, BATCH_DELAY, BATCH_MESSAGES, GROUPS, RTM_DELNEXTHOP,
    RTNLGRP_NEXTHOP,
};

/// How far a read of an event socket got.
pub(super) enum Read {
    /// The socket is empty.
    Drained,
    /// A batch's worth of messages is pending; more may wait.
    More,
    /// The socket failed.
    Failed,
}

/// One namespace's sockets and view.
pub(super) struct Watch {
    pub(super) netns: Option<PathBuf>,
    pub(super) events: Socket,
    dump: Rtnl,
    /// Mirror device names and their ports.
    pub(super) mirrors: Vec<(String, PortId)>,
    /// Interface index of each mirror present.
    ifindex: HashMap<u32, PortId>,
    /// Routes through mirrors, by key.
    pub(super) routes: HashMap<RouteKey, Hops>,
    /// Keys of routes that name next-hop objects.
    pub(super) nexthop_objects: HashSet<RouteKey>,
    /// Keys changed since the last batch, messages since, and when the
    /// first came.
    pending: HashSet<RouteKey>,
    pub(super) messages: usize,
    pub(super) since: Option<Instant>,
    pub(super) resync: bool,
}

impl Watch {
    pub(super) fn open(m: &MirrorSpec, rcvbuf: usize) -> io::Result<Watch> {
        let subscribe = || -> io::Result<(Socket, Rtnl)> {
            let mut s = Socket::new(NETLINK_ROUTE)?;
            s.bind(&SocketAddr::new(0, GROUPS))?;
            // Kernels without next-hop objects refuse: nothing to follow.
            let _ = s.add_membership(RTNLGRP_NEXTHOP);
            s.set_non_blocking(true)?;
            let size = libc::c_int::try_from(rcvbuf).unwrap_or(libc::c_int::MAX);
            if edgefwd_io::set_socket_option(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                size,
            )
            .is_err()
            {
                // Without CAP_NET_ADMIN: as much as rmem_max allows; an
                // overrun is repaired by a dump.
                let _ = s.set_rx_buf_sz(rcvbuf);
            }
            Ok((s, Rtnl::new()?))
        };
        let (events, dump) = match &m.netns {
            Some(ns) => edgefwd_io::in_netns(ns, subscribe)?,
            None => subscribe()?,
        };
        Ok(Watch {
            netns: m.netns.clone(),
            events,
            dump,
            mirrors: vec![(m.name.clone(), m.port)],
            ifindex: HashMap::new(),
            routes: HashMap::new(),
            nexthop_objects: HashSet::new(),
            pending: HashSet::new(),
            messages: 0,
            since: None,
            resync: true,
        })
    }

    pub(super) fn ports(&self) -> Vec<PortId> {
        self.mirrors.iter().map(|(_, p)| *p).collect()
    }

    /// Notes a change of `key` (or just a message, when `None`).
    pub(super) fn touch(&mut self, key: Option<RouteKey>) {
        self.messages += 1;
        self.since.get_or_insert_with(Instant::now);
        if let Some(k) = key {
            self.pending.insert(k);
        }
    }

    /// Dumps links and routes and takes them as the truth.
    pub(super) fn resync(&mut self, counts: &MirrorCounts) -> io::Result<()> {
        counts.resyncs.fetch_add(1, Ordering::Relaxed);
        self.resync = false;
        let mut links = Vec::new();
        self.dump
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()), |m| {
                if let RouteNetlinkMessage::NewLink(l) = m {
                    links.push(l);
                }
            })?;
        self.ifindex.clear();
        for l in &links {
            self.link(l, true);
        }
        let mut fresh: HashMap<RouteKey, Hops> = HashMap::new();
        let mut objects = HashSet::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut ask = RouteMessage::default();
            ask.header.address_family = family;
            let mut got = Vec::new();
            self.dump.dump(RouteNetlinkMessage::GetRoute(ask), |m| {
                if let RouteNetlinkMessage::NewRoute(r) = m {
                    got.push(r);
                }
            })?;
            for r in &got {
                if let Some((key, hops, object)) = self.through_mirrors(r) {
                    if object {
                        objects.insert(key);
                    }
                    if !hops.is_empty() {
                        let e = fresh.entry(key).or_default();
                        for h in hops {
                            if !e.contains(&h) {
                                e.push(h);
                            }
                        }
                    }
                }
            }
        }
        // Mark and sweep: every key that differs is pending.
        let keys: Vec<RouteKey> = self.routes.keys().chain(fresh.keys()).copied().collect();
        for k in keys {
            if self.routes.get(&k) != fresh.get(&k) {
                self.touch(Some(k));
            }
        }
        self.routes = fresh;
        self.nexthop_objects = objects;
        Ok(())
    }

    /// A route message's key and its next hops through mirrors, and
    /// whether it names a next-hop object; `None` when the mirror does
    /// not take it.
    pub(super) fn through_mirrors(&self, r: &RouteMessage) -> Option<(RouteKey, Hops, bool)> {
        let k = kernel::read(r)?;
        if !k.eligible {
            return Some((k.key, Vec::new(), false));
        }
        let hops: Hops = k
            .hops
            .iter()
            .filter_map(|&(oif, gw)| self.ifindex.get(&oif).map(|&p| (p, gw)))
            .collect();
        Some((k.key, hops, k.nexthop_object && k.hops.is_empty()))
    }

    /// A link message: tracks mirrors' indices; a mirror that went down or
    /// away lost routes silently, so the next step is a dump.
    pub(super) fn link(&mut self, l: &LinkMessage, present: bool) {
        let Some(name) = l.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.as_str()),
            _ => None,
        }) else {
            return;
        };
        let Some(&(_, port)) = self.mirrors.iter().find(|(n, _)| n == name) else {
            return;
        };
        let index = l.header.index;
        let up = l.header.flags.contains(LinkFlags::Up);
        if present {
            let was = self.ifindex.insert(index, port);
            if !up && was.is_some() {
                self.resync = true;
            }
        } else {
            self.ifindex.remove(&index);
            self.resync = true;
        }
    }

    pub(super) fn address_gone(&mut self, a: &AddressMessage) {
        if self.ifindex.contains_key(&a.header.index) {
            self.resync = true;
        }
    }

    pub(super) fn route(&mut self, r: &RouteMessage, flags: u16, added: bool) {
        let Some((key, hops, object)) = self.through_mirrors(r) else {
            return;
        };
        if object {
            self.nexthop_objects.insert(key);
        } else if !added {
            self.nexthop_objects.remove(&key);
        }
        let v6 = key.0.addr().is_ipv6();
        let now = self.routes.get(&key).cloned().unwrap_or_default();
        let next: Hops = if added {
            // IPv6 adds next hops to a key unless it replaces it; IPv4's
            // message states the key's whole route.
            if v6 && flags & NLM_F_REPLACE == 0 && (flags & NLM_F_APPEND != 0 || !now.is_empty()) {
                let mut n = now.clone();
                for h in hops {
                    if !n.contains(&h) {
                        n.push(h);
                    }
                }
                n
            } else {
                hops
            }
        } else if v6 && !hops.is_empty() {
            now.iter().filter(|h| !hops.contains(h)).copied().collect()
        } else {
            Vec::new()
        };
        if next != now {
            if next.is_empty() {
                self.routes.remove(&key);
            } else {
                self.routes.insert(key, next);
            }
            self.touch(Some(key));
        } else {
            self.touch(None);
        }
    }

    /// Reads datagrams until the socket is empty or a batch's worth of
    /// messages is pending.
    pub(super) fn read(&mut self, buf: &mut [u8], counts: &MirrorCounts) -> Read {
        loop {
            if self.messages >= BATCH_MESSAGES {
                return Read::More;
            }
            let n = match self.events.recv(&mut &mut buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    counts.overruns.fetch_add(1, Ordering::Relaxed);
                    self.resync = true;
                    continue;
                }
                Err(e) => {
                    tracing::warn!("route mirror: {e}");
                    return Read::Failed;
                }
            };
            let mut at = 0;
            while at + 16 <= n {
                let b = &buf[at..n];
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                if len < 16 || len > b.len() {
                    break;
                }
                at += len.next_multiple_of(4);
                counts.events.fetch_add(1, Ordering::Relaxed);
                // Route messages carry their next-hop objects' next hops
                // and follow a replaced object; a deleted one takes its
                // routes without a word, so its deletion means a dump.
                if u16::from_ne_bytes([b[4], b[5]]) == RTM_DELNEXTHOP {
                    self.resync = true;
                    continue;
                }
                let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&b[..len]) else {
                    continue;
                };
                let flags = m.header.flags;
                if let NetlinkPayload::InnerMessage(m) = m.payload {
                    match m {
                        RouteNetlinkMessage::NewRoute(r) => self.route(&r, flags, true),
                        RouteNetlinkMessage::DelRoute(r) => self.route(&r, flags, false),
                        RouteNetlinkMessage::NewLink(l) => self.link(&l, true),
                        RouteNetlinkMessage::DelLink(l) => self.link(&l, false),
                        RouteNetlinkMessage::DelAddress(a) => self.address_gone(&a),
                        _ => {}
                    }
                }
            }
        }
    }

    /// The pending batch, if it is due (or `force`d).
    pub(super) fn take_batch(&mut self, force: bool) -> Option<Batch> {
        let since = self.since?;
        if !force && self.messages < BATCH_MESSAGES && since.elapsed() < BATCH_DELAY {
            return None;
        }
        self.since = None;
        self.messages = 0;
        if self.pending.is_empty() {
            return None;
        }
        let changes = self
            .pending
            .drain()
            .map(|k| (k, self.routes.get(&k).cloned().unwrap_or_default()))
            .collect();
        Some(Batch {
            ports: self.ports(),
            changes,
            since,
        })
    }

    /// When its pending batch falls due.
    pub(super) fn due(&self) -> Option<Instant> {
        self.since.map(|s| s + BATCH_DELAY)
    }
}
