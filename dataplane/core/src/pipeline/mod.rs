//! The router pipeline, VPP style: each stage is a function over a burst of
//! packets, one file per stage, and each packet leaves a stage with the next
//! stage or a drop reason in its [`Meta::next`].
//!
//! ```text
//! l2 ─┬─ eth-input ─┬─ arp-input ───────────────────────────────────────────────┐
//!     │             ├─ ip4-input ─ nat44-in ─┬─ ip-lookup ─ nat44-out ─ ip-rewrite ─ tx ─ (l2) │ local /
//!     │             │                        │     (neighbour hold, ARP/NS)                  │ drop
//!     │             └─ ip6-input ────────────┘                                              │
//!     └─ tx (bridged between switch members)                                                │
//! ```
//!
//! Before the stages, ip4-fast takes plain IPv4 unicast from eth-input to
//! tx in one pass (see its module); what it leaves goes through the stages.
//!
//! l2 only sees frames from switch members; the router's output on a
//! switch's router port goes back down through it at transmit.
//!
//! Packets the appliance makes (ICMP errors, echo replies) enter at ip-lookup
//! in a second pass over the same stages, so they are routed, rate-limited
//! and resolved like any other. Nothing here allocates per packet once the
//! buffer pool and queues have warmed up, takes a lock or makes a syscall.

mod arp_input;
mod eth_input;
mod flow;
pub(crate) mod icmp;
mod ip4_fast;
mod ip4_input;
mod ip6_input;
mod ip_lookup;
mod ip_rewrite;
mod l2;
mod nat;
mod nd;
mod ratelimit;

use std::net::IpAddr;
use std::sync::Arc;

use crate::fib::Fib;
use crate::l2::Switching;
use crate::nat::{Nat, NatConfig};
use crate::neigh::{NeighTable, NeighborView};
use crate::packet::{BufPool, MacAddr, Meta, Next, Offload, Origin, Packet, PacketBuf};
use crate::port::{PortId, PortTable};
use crate::stats::{DropReason, Stats};
use crate::time::Time;
use ratelimit::TokenBucket;

/// Tunables of the router.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// ICMP errors per second per port.
    pub icmp_rate: u32,
    /// ICMP errors allowed in a burst per port.
    pub icmp_burst: u32,
    /// Packets a port's transmit queue holds before drops (`tx_queue_full`).
    pub tx_queue_depth: usize,
    /// Buffers allocated up front (more are allocated if ever needed, and
    /// then kept).
    pub buffers: usize,
    /// Largest frame a buffer holds (a device with segmentation offload
    /// hands over 64 KiB super-packets).
    pub max_frame: usize,
    /// Bytes of buffers that packets waiting for a neighbour may hold, over
    /// all neighbours; beyond it they are dropped as `neighbor_queue_full`.
    pub hold_bytes: usize,
    /// Plain IPv4 unicast takes ip4-fast, one pass instead of the stages
    /// (same result; off only to compare the two).
    pub fast_path: bool,
}

/// Default [`RouterConfig::hold_bytes`].
pub const HOLD_BYTES: usize = 32 << 20;

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            icmp_rate: 10,
            icmp_burst: 10,
            tx_queue_depth: 1024,
            buffers: 256,
            max_frame: crate::packet::buf::MAX_FRAME,
            hold_bytes: HOLD_BYTES,
            fast_path: true,
        }
    }
}

/// The forwarding core: ports, FIB snapshot, neighbours, counters and the
/// per-port transmit queues.
pub struct Router {
    ports: PortTable,
    fib: Arc<Fib>,
    neigh: NeighTable,
    pool: BufPool,
    stats: Stats,
    limiters: Vec<TokenBucket>,
    tx: Vec<Vec<Packet>>,
    tx_depth: usize,
    generated: Vec<Packet>,
    scratch: Vec<Packet>,
    probes: Vec<(PortId, IpAddr)>,
    lookup_dsts: Vec<std::net::Ipv4Addr>,
    lookup_found: Vec<Option<u32>>,
    fast_path: bool,
    fast_at: Vec<(u32, u16)>,
    rewrites: Vec<ip4_fast::Rewrite>,
    topology: u64,
    group_hits: Vec<u64>,
    learned: Vec<(PortId, IpAddr, MacAddr)>,
    l2: Switching,
    flooded: Vec<Packet>,
    nat: Vec<Nat>,
    nat_flows: Vec<crate::nat::Flow>,
    nat_at: Vec<usize>,
    nat_answers: Vec<Result<u16, DropReason>>,
    now: Time,
}

impl Router {
    /// A router over `ports` forwarding with `fib`.
    pub fn new(ports: PortTable, fib: Arc<Fib>, cfg: &RouterConfig) -> Self {
        let n = ports.len();
        Router {
            stats: Stats::new(n),
            limiters: vec![TokenBucket::new(cfg.icmp_rate, cfg.icmp_burst); n],
            tx: (0..n)
                .map(|_| Vec::with_capacity(cfg.tx_queue_depth))
                .collect(),
            tx_depth: cfg.tx_queue_depth,
            group_hits: vec![0; fib.groups().len()],
            rewrites: vec![ip4_fast::Rewrite::default(); fib.groups().len()],
            topology: 1,
            ports,
            fib,
            neigh: NeighTable::with_limits(
                n,
                cfg.hold_bytes / (crate::packet::buf::HEADROOM + cfg.max_frame),
            ),
            pool: BufPool::new(cfg.buffers, cfg.max_frame),
            generated: Vec::with_capacity(64),
            scratch: Vec::with_capacity(64),
            probes: Vec::new(),
            lookup_dsts: Vec::with_capacity(256),
            lookup_found: Vec::with_capacity(256),
            fast_path: cfg.fast_path,
            fast_at: Vec::with_capacity(256),
            learned: Vec::new(),
            l2: Switching::default(),
            flooded: Vec::new(),
            nat: Vec::new(),
            nat_flows: Vec::with_capacity(256),
            nat_at: Vec::with_capacity(256),
            nat_answers: Vec::with_capacity(256),
            now: Time(0),
        }
    }

    /// Installs the virtual switches (MAC tables start empty).
    pub fn set_switching(&mut self, l2: Switching) {
        self.topology += 1;
        self.l2 = l2;
    }

    /// The virtual switches.
    pub fn switching(&self) -> &Switching {
        &self.l2
    }

    /// Installs NAT instances, with empty tables.
    pub fn set_nat(&mut self, cfgs: Vec<NatConfig>) {
        self.topology += 1;
        self.nat = cfgs.into_iter().map(Nat::new).collect();
    }

    /// The NAT instances.
    pub fn nat(&self) -> &[Nat] {
        &self.nat
    }

    /// The time the router last saw.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Installs a new FIB snapshot (per-group hit counters restart).
    pub fn set_fib(&mut self, fib: Arc<Fib>) {
        self.topology += 1;
        self.rewrites = vec![ip4_fast::Rewrite::default(); fib.groups().len()];
        self.group_hits = vec![0; fib.groups().len()];
        self.fib = fib;
    }

    /// The FIB in use.
    pub fn fib(&self) -> &Fib {
        &self.fib
    }

    /// Packets forwarded through each next-hop group of the current FIB.
    pub fn group_hits(&self) -> &[u64] {
        &self.group_hits
    }

    /// The ports.
    pub fn ports(&self) -> &PortTable {
        &self.ports
    }

    /// Marks a port's link up or down. Packets routed to a down port are
    /// dropped as `port_down`; the FIB that avoids it comes from the control
    /// plane ([`Router::set_fib`]).
    pub fn set_link(&mut self, port: PortId, up: bool) {
        if self.ports.get(port).is_some_and(|p| p.up != up) {
            self.topology += 1;
        }
        self.ports.set_up(port, up);
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Adds a static neighbour.
    pub fn add_static_neighbor(&mut self, port: PortId, addr: IpAddr, mac: MacAddr) {
        self.neigh.add_static(port, addr, mac);
    }

    /// Hands over the neighbour answers (ARP, NDP) seen since the last call,
    /// for other routers sharing the ports: with several workers, the ARP
    /// reply that answers one worker's request may reach another.
    pub fn take_learned(&mut self, out: &mut Vec<(PortId, IpAddr, MacAddr)>) {
        out.append(&mut self.learned);
    }

    /// Takes a neighbour another router saw: resolves or refreshes an entry
    /// this router has (sending what waited for it), never creates one.
    pub fn learn_neighbor(&mut self, port: PortId, addr: IpAddr, mac: MacAddr) {
        ip_rewrite::learn(
            self,
            port,
            addr,
            mac,
            crate::neigh::Entry::RefreshOnly,
            ip_rewrite::Share::No,
        );
    }

    /// The neighbour table.
    pub fn neighbors(&self) -> Vec<NeighborView> {
        self.neigh.entries(self.now)
    }

    /// Packets waiting for a neighbour to resolve.
    pub fn held(&self) -> usize {
        self.neigh.held()
    }

    /// Takes in one received frame: counts it and appends it to `burst`, or
    /// drops it at once when it cannot be carried (larger than a buffer).
    pub fn receive(&mut self, burst: &mut Vec<Packet>, port: PortId, ts: Time, frame: &[u8]) {
        let Some(ps) = self.stats.ports.get_mut(usize::from(port)) else {
            return;
        };
        ps.rx += 1;
        ps.rx_bytes += frame.len() as u64;
        let meta = Meta::received(port, ts);
        let mut buf = self.pool.get();
        if buf.set_frame(frame).is_err() {
            self.pool.put(buf);
            self.count_drop(&meta, DropReason::Oversize);
            return;
        }
        burst.push(Packet { buf, meta });
    }

    /// Takes in a frame a capture cut short: counted as received, and
    /// dropped as `truncated`.
    pub fn receive_truncated(&mut self, port: PortId, ts: Time, frame: &[u8]) {
        let Some(ps) = self.stats.ports.get_mut(usize::from(port)) else {
            return;
        };
        ps.rx += 1;
        ps.rx_bytes += frame.len() as u64;
        self.count_drop(&Meta::received(port, ts), DropReason::Truncated);
    }

    /// An empty buffer from the router's pool, for a driver to read into.
    pub fn take_buf(&mut self) -> PacketBuf {
        self.pool.get()
    }

    /// Packet buffers this router ever allocated (its memory for packets is
    /// this many times the buffer size).
    pub fn buffers_allocated(&self) -> usize {
        self.pool.allocated()
    }

    /// Returns a buffer a driver did not use.
    pub fn recycle(&mut self, buf: PacketBuf) {
        self.pool.put(buf);
    }

    /// Takes in a frame a driver read into `buf` (from [`Router::take_buf`])
    /// with its device offload state: counts it and appends it to `burst`.
    /// When the driver found the frame unusable (`Err(reason)`), it is
    /// counted as received and dropped under that reason.
    pub fn receive_buf(
        &mut self,
        burst: &mut Vec<Packet>,
        port: PortId,
        ts: Time,
        buf: PacketBuf,
        offload: Result<Offload, DropReason>,
    ) {
        let Some(ps) = self.stats.ports.get_mut(usize::from(port)) else {
            return self.pool.put(buf);
        };
        ps.rx += 1;
        ps.rx_bytes += buf.len() as u64;
        let mut meta = Meta::received(port, ts);
        match offload {
            Ok(o) if o.fits(buf.len()) => meta.offload = o,
            Ok(_) => {
                self.count_drop(&meta, DropReason::OffloadInvalid);
                return self.pool.put(buf);
            }
            Err(reason) => {
                self.count_drop(&meta, reason);
                return self.pool.put(buf);
            }
        }
        burst.push(Packet { buf, meta });
    }

    /// Runs a burst through the pipeline at time `now`. Afterwards `burst` is
    /// empty and every packet is in a transmit queue, held for a neighbour,
    /// counted as local or dropped.
    pub fn process(&mut self, burst: &mut Vec<Packet>, now: Time) {
        self.tick(now);
        self.run(burst);
        // Packets made during a pass (ICMP errors, echo replies) take a pass
        // of their own; they never make further packets, so this ends.
        while !self.generated.is_empty() {
            let mut gen = std::mem::replace(&mut self.generated, std::mem::take(&mut self.scratch));
            self.run(&mut gen);
            self.scratch = gen;
        }
    }

    fn run(&mut self, pkts: &mut Vec<Packet>) {
        l2::run(self, pkts);
        if self.fast_path {
            ip4_fast::run(self, pkts);
        }
        // When ip4-fast took the whole burst, the stages have nothing to do.
        if pkts.iter().any(|p| p.meta.next.is_stage()) {
            eth_input::run(self, pkts);
            arp_input::run(self, pkts);
            ip4_input::run(self, pkts);
            nat::input_stage(self, pkts);
            ip6_input::run(self, pkts);
            ip_lookup::run(self, pkts);
            nat::output(self, pkts);
            ip_rewrite::run(self, pkts);
        }
        for pkt in pkts.drain(..) {
            match pkt.meta.next {
                Next::Tx => self.transmit(pkt),
                Next::Resolve => ip_rewrite::hold(self, pkt),
                Next::Local => {
                    self.stats.local += 1;
                    self.pool.put(pkt.buf);
                }
                Next::Drop(reason) => self.drop_packet(pkt, reason),
                // Every stage hands each packet to a later stage or a final
                // disposition; should one not, the packet is still counted.
                other => {
                    debug_assert!(false, "packet left the pipeline at {other:?}");
                    self.drop_packet(pkt, DropReason::LocalUnsupported)
                }
            }
        }
    }

    /// Advances timers to `now`: neighbour requests are repeated, and queues
    /// of neighbours that never answered are dropped.
    pub fn tick(&mut self, now: Time) {
        self.now = self.now.max(now);
        let mut failed = std::mem::take(&mut self.scratch);
        let mut probes = std::mem::take(&mut self.probes);
        self.neigh.tick(self.now, &mut probes, &mut failed);
        for (port, addr) in probes.drain(..) {
            self.solicit(port, addr);
        }
        self.probes = probes;
        self.l2.sweep(self.now);
        for n in &mut self.nat {
            n.table_mut().tick(self.now);
        }
        for p in failed.drain(..) {
            self.drop_packet(p, DropReason::NeighborUnresolved);
        }
        self.scratch = failed;
    }

    /// Forgets the neighbours and switch MAC entries learned on `port` (its
    /// device was replaced); packets waiting for those neighbours are
    /// dropped as `neighbor_unresolved`.
    pub fn forget_neighbors(&mut self, port: PortId) {
        self.l2.forget_port(port);
        let mut failed = Vec::new();
        self.neigh.forget_port(port, &mut failed);
        for p in failed {
            self.drop_packet(p, DropReason::NeighborUnresolved);
        }
    }

    /// Ends a run: packets still waiting for a neighbour are dropped as
    /// `neighbor_unresolved`.
    pub fn finish(&mut self) {
        let mut failed = Vec::new();
        self.neigh.flush(&mut failed);
        for p in failed {
            self.drop_packet(p, DropReason::NeighborUnresolved);
        }
    }

    /// Hands every packet queued for `port` to `out`, then recycles the
    /// buffers.
    pub fn drain_tx(&mut self, port: PortId, mut out: impl FnMut(&mut Packet)) {
        self.drain_tx_all(port, |q| q.iter_mut().for_each(&mut out));
    }

    /// [`Router::drain_tx`] with the whole queue at once, for a driver
    /// that writes a batch of frames in one call.
    pub fn drain_tx_all(&mut self, port: PortId, out: impl FnOnce(&mut [Packet])) {
        let Some(q) = self.tx.get_mut(usize::from(port)) else {
            return;
        };
        out(q);
        // The buffers go back in one pass over the queue, copied from where
        // they lie rather than through the stack one packet at a time.
        self.pool.put_all(q.drain(..).map(|p| p.buf));
    }

    /// Counts frames the device of `port` refused after they were queued.
    pub fn count_tx_errors(&mut self, port: PortId, n: u64) {
        if let Some(ps) = self.stats.ports.get_mut(usize::from(port)) {
            ps.tx_errors += n;
        }
    }

    /// True when some port has packets waiting in its transmit queue.
    pub fn has_tx(&self) -> bool {
        self.tx.iter().any(|q| !q.is_empty())
    }

    fn transmit(&mut self, mut pkt: Packet) {
        let port = pkt.meta.tx_port;
        if !pkt.meta.switched {
            if let Some(sw) = self.l2.router_of(port) {
                return l2::output(self, sw, pkt);
            }
        } else if !self.ports.get(port).is_some_and(|p| p.up) {
            return self.drop_packet(pkt, DropReason::PortDown);
        }
        let q = &mut self.tx[usize::from(port)];
        if q.len() >= self.tx_depth {
            return self.drop_packet(pkt, DropReason::TxQueueFull);
        }
        pkt.meta.ts = pkt.meta.ts.max(self.now);
        let ps = &mut self.stats.ports[usize::from(port)];
        ps.tx += 1;
        ps.tx_bytes += pkt.buf.len() as u64;
        match pkt.meta.origin {
            Origin::Received => self.stats.forwarded += 1,
            Origin::Generated => self.stats.generated += 1,
            Origin::Flooded => self.stats.flooded += 1,
        }
        q.push(pkt);
    }

    fn count_drop(&mut self, meta: &Meta, reason: DropReason) {
        let i = reason as usize;
        match meta.origin {
            Origin::Received => self.stats.ports[usize::from(meta.rx_port)].drops[i] += 1,
            Origin::Generated | Origin::Flooded => self.stats.generated_drops[i] += 1,
        }
    }

    fn drop_packet(&mut self, pkt: Packet, reason: DropReason) {
        self.count_drop(&pkt.meta, reason);
        self.pool.put(pkt.buf);
    }

    /// Sends an ARP request or neighbour solicitation for `addr` out of `port`.
    fn solicit(&mut self, port: PortId, addr: IpAddr) {
        let mut buf = self.pool.get();
        let built = match self.ports.get(port) {
            Some(info) => nd::build_solicit(&mut buf, info, addr),
            None => false,
        };
        if !built {
            self.pool.put(buf);
            return;
        }
        let mut meta = Meta::received(port, self.now);
        meta.origin = Origin::Generated;
        meta.tx_port = port;
        self.transmit(Packet { buf, meta });
    }
}

#[cfg(test)]
mod tests;
