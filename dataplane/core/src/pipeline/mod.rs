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
//! The router's state is four groups: `Tables` (ports, FIB, neighbours,
//! switches, NAT: what forwarding consults and learns), `Output` (the
//! buffer pool, transmit queues, counters, rate limiters and clock: where
//! packets end and the counts of it), `Scratch` and ip4-fast's state. A
//! stage takes the groups it uses, `&` for those it only reads, so its
//! signature says what it touches: eth-input reads the port table alone,
//! ip4-input and ip-lookup read the tables and write only the output,
//! arp-input and ip-rewrite learn neighbours.
//!
//! Packets the appliance makes (ICMP errors, echo replies) enter at ip-lookup
//! in a second pass over the same stages, so they are routed, rate-limited
//! and resolved like any other. Nothing here allocates per packet once the
//! buffer pool and queues have warmed up, takes a lock or makes a syscall.

mod arp_input;
mod eth_input;
mod flow;
pub mod handoff;
pub(crate) mod icmp;
mod ip4_fast;
mod ip4_input;
mod ip6_input;
mod ip_lookup;
mod ip_rewrite;
mod l2;
mod nat;
mod nd;
pub mod punt;
mod ratelimit;
mod service;
pub mod watch;

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
use watch::{KeptDrop, PacketTrace, Stage, TraceEnd, TraceFilter, Watch};

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
    /// Packets per second a worker punts to host mirrors.
    pub punt_rate: u32,
    /// Packets a worker punts in a burst.
    pub punt_burst: u32,
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
            punt_rate: punt::PUNT_RATE,
            punt_burst: punt::PUNT_BURST,
        }
    }
}

/// A neighbour answer: port, address, MAC.
type Learned = (PortId, IpAddr, MacAddr);

/// What forwarding consults and learns: the ports, the FIB, the
/// neighbours, the switches' MAC tables and NAT's mappings. A stage that
/// takes `&Tables` only reads them.
struct Tables {
    ports: PortTable,
    fib: Arc<Fib>,
    neigh: NeighTable,
    l2: Switching,
    nat: Vec<Nat>,
    svc: crate::service::Services,
    /// Host mirrors: which ports punt to one, which ports are one.
    mirrors: punt::Mirrors,
    /// This router's worker, and how many there are: a flow another
    /// worker owns is handed to it (see `nat`).
    worker: usize,
    workers: usize,
}

/// Where packets end, and the counts of it: the buffer pool, the per-port
/// transmit queues, what the appliance makes (ICMP errors and replies,
/// flood copies) for a later pass, neighbour answers for the other
/// workers, the counters, the ICMP rate limiters and the clock.
struct Output {
    pool: BufPool,
    tx: Vec<Vec<Packet>>,
    tx_depth: usize,
    stats: Stats,
    group_hits: Vec<u64>,
    limiters: Vec<TokenBucket>,
    generated: Vec<Packet>,
    flooded: Vec<Packet>,
    learned: Vec<Learned>,
    now: Time,
    /// What is watched (a trace, ports whose drops are kept), when
    /// anything is.
    watch: Option<Box<Watch>>,
    /// The stage the drops being made now are charged to, for kept drops.
    stage: Stage,
    /// Gratuitous ARPs still to send: when, on which port, for which
    /// address.
    announcements: Vec<(Time, PortId, IpAddr)>,
    /// Packets whose flows other workers own ([`Next::HandOff`]).
    handoffs: Vec<Packet>,
    /// MAC addresses learned that the other workers' switches should know.
    macs: Vec<crate::l2::Learning>,
    /// The punt policer.
    punt_limit: TokenBucket,
}

/// Space the stages reuse burst after burst, so nothing allocates per
/// packet.
struct Scratch {
    /// Packets between passes, and packets a timer gave up on.
    spare: Vec<Packet>,
    probes: Vec<(PortId, IpAddr)>,
    lookup_dsts: Vec<std::net::Ipv4Addr>,
    lookup_found: Vec<Option<u32>>,
    fast_at: Vec<(u32, u16)>,
    nat_flows: Vec<crate::nat::Flow>,
    nat_at: Vec<usize>,
    nat_answers: Vec<Result<u16, DropReason>>,
}

/// ip4-fast's state: whether it runs, the rewrites it keeps per next-hop
/// group, and a count of the changes that make them stale.
struct FastPath {
    enabled: bool,
    rewrites: Vec<ip4_fast::Rewrite>,
    topology: u64,
}

/// The forwarding core: its tables, where packets end, scratch space and
/// ip4-fast's state, each a group of its own so that a stage's signature
/// says which it reads and which it writes.
pub struct Router {
    t: Tables,
    out: Output,
    s: Scratch,
    fast: FastPath,
    /// Finished packet traces, oldest first.
    traces: Vec<PacketTrace>,
}

impl Router {
    /// A router over `ports` forwarding with `fib`.
    pub fn new(ports: PortTable, fib: Arc<Fib>, cfg: &RouterConfig) -> Self {
        let n = ports.len();
        Router {
            out: Output {
                pool: BufPool::new(cfg.buffers, cfg.max_frame),
                tx: (0..n)
                    .map(|_| Vec::with_capacity(cfg.tx_queue_depth))
                    .collect(),
                tx_depth: cfg.tx_queue_depth,
                stats: Stats::new(n),
                group_hits: vec![0; fib.groups().len()],
                limiters: vec![TokenBucket::new(cfg.icmp_rate, cfg.icmp_burst); n],
                generated: Vec::with_capacity(64),
                flooded: Vec::new(),
                learned: Vec::new(),
                now: Time(0),
                watch: None,
                stage: Stage::Rx,
                announcements: Vec::new(),
                handoffs: Vec::with_capacity(256),
                macs: Vec::new(),
                punt_limit: TokenBucket::new(cfg.punt_rate, cfg.punt_burst),
            },
            s: Scratch {
                spare: Vec::with_capacity(64),
                probes: Vec::new(),
                lookup_dsts: Vec::with_capacity(256),
                lookup_found: Vec::with_capacity(256),
                fast_at: Vec::with_capacity(256),
                nat_flows: Vec::with_capacity(256),
                nat_at: Vec::with_capacity(256),
                nat_answers: Vec::with_capacity(256),
            },
            fast: FastPath {
                enabled: cfg.fast_path,
                rewrites: vec![ip4_fast::Rewrite::default(); fib.groups().len()],
                topology: 1,
            },
            t: Tables {
                neigh: NeighTable::with_limits(
                    n,
                    cfg.hold_bytes / (crate::packet::buf::HEADROOM + cfg.max_frame),
                ),
                ports,
                fib,
                l2: Switching::default(),
                nat: Vec::new(),
                svc: crate::service::Services::new(0),
                mirrors: punt::Mirrors::default(),
                worker: 0,
                workers: 1,
            },
            traces: Vec::new(),
        }
    }

    /// Installs the virtual switches (MAC tables start empty).
    pub fn set_switching(&mut self, l2: Switching) {
        self.fast.topology += 1;
        self.t.l2 = l2;
    }

    /// Installs the host mirrors: `(port, mirror)` pairs.
    pub fn set_mirrors(&mut self, pairs: &[(PortId, PortId)]) {
        self.t.mirrors = punt::Mirrors::new(self.t.ports.len(), pairs);
    }

    /// The virtual switches.
    pub fn switching(&self) -> &Switching {
        &self.t.l2
    }

    /// Makes this router worker `worker` of `workers`, whose NAT instances
    /// share `claims` (one per instance, in order): tables start empty, and
    /// packets of flows another worker owns are handed to it
    /// ([`Router::take_handoffs`]).
    pub fn set_worker_nat(
        &mut self,
        cfgs: Vec<NatConfig>,
        claims: &[Arc<crate::nat::PortClaims>],
        worker: usize,
        workers: usize,
    ) {
        self.fast.topology += 1;
        self.t.worker = worker;
        self.t.workers = workers.max(1);
        self.t.nat = cfgs
            .into_iter()
            .zip(claims)
            .map(|(c, claims)| Nat::of_worker(c, Arc::clone(claims), worker, workers))
            .collect();
    }

    /// This router's worker and the number of workers.
    pub fn worker(&self) -> (usize, usize) {
        (self.t.worker, self.t.workers)
    }

    /// Moves each packet whose flow another worker owns to `send` (its
    /// [`Meta::next`] says which worker and where it resumes); the caller
    /// counts those it hands over ([`Router::count_handed`]) and gives back
    /// those it cannot ([`Router::refuse_handoff`]).
    pub fn take_handoffs(&mut self, send: impl FnMut(Packet)) {
        self.out.handoffs.drain(..).for_each(send);
    }

    /// Counts `n` packets handed to other workers.
    pub fn count_handed(&mut self, n: u64) {
        self.out.stats.handed_off += n;
    }

    /// Drops a packet that could not be handed over (the owner's queue from
    /// this worker was full) as `handoff_full`.
    pub fn refuse_handoff(&mut self, p: Packet) {
        self.out.stage = Stage::HandOff;
        self.out.drop_packet(p, DropReason::HandOffFull);
    }

    /// True when packets wait to be handed to other workers.
    pub fn has_handoffs(&self) -> bool {
        !self.out.handoffs.is_empty()
    }

    /// Takes in a packet another worker handed over, to resume where its
    /// [`Meta::next`] says, with the next [`Router::process`] of `burst`.
    pub fn receive_handed(&mut self, burst: &mut Vec<Packet>, mut pkt: Packet) {
        if let Next::HandOff { at, .. } = pkt.meta.next {
            pkt.meta.next = at.next();
        }
        self.out.stats.handed_in += 1;
        burst.push(pkt);
    }

    /// A free buffer, if the pool has one (never allocates): to give back
    /// to a worker that handed this one its buffers.
    pub fn spare_buf(&mut self) -> Option<PacketBuf> {
        self.out.pool.take_free()
    }

    /// Moves the MAC addresses this router learned, for the other workers'
    /// switches, into `out`.
    pub fn take_learned_macs(&mut self, out: &mut Vec<crate::l2::Learning>) {
        out.append(&mut self.out.macs);
    }

    /// Learns a MAC address another worker's switch learned.
    pub fn learn_mac(&mut self, l: crate::l2::Learning) {
        self.t.l2.learn_from_peer(l, self.out.now);
    }

    /// Installs NAT instances, with empty tables.
    pub fn set_nat(&mut self, cfgs: Vec<NatConfig>) {
        self.fast.topology += 1;
        self.t.nat = cfgs.into_iter().map(Nat::new).collect();
    }

    /// Installs services: `internal` marks, by port, the interfaces their
    /// cluster IPs answer; the connection table holds `flows` flows (kept
    /// across calls, so established flows keep their backends).
    pub fn set_services(
        &mut self,
        services: Vec<crate::service::ServiceConfig>,
        internal: Vec<bool>,
        flows: usize,
    ) {
        self.fast.topology += 1;
        self.t.svc.set(services, internal, flows);
    }

    /// Announces the addresses of load-balancer service `name` on its
    /// port: three gratuitous ARPs or unsolicited neighbour advertisements
    /// each, a second apart, from the next tick. False when there is no
    /// such load balancer.
    pub fn announce_service(&mut self, name: &str) -> bool {
        let due: Vec<_> = self
            .t
            .svc
            .announced()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, v, p)| (v, p))
            .collect();
        for &(vip, port) in &due {
            self.schedule_announcements(port, vip);
        }
        !due.is_empty()
    }

    /// Announces every load balancer announced on `port` (it came up).
    pub fn announce_port(&mut self, port: PortId) {
        let due: Vec<_> = self
            .t
            .svc
            .announced()
            .filter(|(_, _, p)| *p == port)
            .map(|(_, v, _)| v)
            .collect();
        for vip in due {
            self.schedule_announcements(port, vip);
        }
    }

    fn schedule_announcements(&mut self, port: PortId, vip: IpAddr) {
        let now = self.out.now;
        self.out
            .announcements
            .retain(|(_, p, v)| (*p, *v) != (port, vip));
        for i in 0..ANNOUNCEMENTS {
            let at = now.after(ANNOUNCE_SPACING * i);
            self.out.announcements.push((at, port, vip));
        }
    }

    /// The services.
    pub fn services(&self) -> &crate::service::Services {
        &self.t.svc
    }

    /// The NAT instances.
    pub fn nat(&self) -> &[Nat] {
        &self.t.nat
    }

    /// The time the router last saw.
    pub fn now(&self) -> Time {
        self.out.now
    }

    /// Installs a new FIB snapshot (per-group hit counters restart).
    pub fn set_fib(&mut self, fib: Arc<Fib>) {
        self.fast.topology += 1;
        self.fast.rewrites = vec![ip4_fast::Rewrite::default(); fib.groups().len()];
        self.out.group_hits = vec![0; fib.groups().len()];
        self.t.fib = fib;
    }

    /// The FIB in use.
    pub fn fib(&self) -> &Fib {
        &self.t.fib
    }

    /// Packets forwarded through each next-hop group of the current FIB.
    pub fn group_hits(&self) -> &[u64] {
        &self.out.group_hits
    }

    /// The ports.
    pub fn ports(&self) -> &PortTable {
        &self.t.ports
    }

    /// Marks a port's link up or down. Packets routed to a down port are
    /// dropped as `port_down`; the FIB that avoids it comes from the control
    /// plane ([`Router::set_fib`]).
    pub fn set_link(&mut self, port: PortId, up: bool) {
        if self.t.ports.get(port).is_some_and(|p| p.up != up) {
            self.fast.topology += 1;
        }
        self.t.ports.set_up(port, up);
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.out.stats
    }

    /// Adds a static neighbour.
    pub fn add_static_neighbor(&mut self, port: PortId, addr: IpAddr, mac: MacAddr) {
        self.t.neigh.add_static(port, addr, mac);
    }

    /// Hands over the neighbour answers (ARP, NDP) seen since the last call,
    /// for other routers sharing the ports: with several workers, the ARP
    /// reply that answers one worker's request may reach another.
    pub fn take_learned(&mut self, out: &mut Vec<(PortId, IpAddr, MacAddr)>) {
        out.append(&mut self.out.learned);
    }

    /// Takes a neighbour another router saw: resolves or refreshes an entry
    /// this router has (sending what waited for it), never creates one.
    pub fn learn_neighbor(&mut self, port: PortId, addr: IpAddr, mac: MacAddr) {
        ip_rewrite::learn(
            &mut self.t,
            &mut self.out,
            port,
            addr,
            mac,
            crate::neigh::Entry::RefreshOnly,
            ip_rewrite::Share::No,
        );
    }

    /// How full the tables are.
    pub fn census(&self) -> crate::census::Census {
        crate::census::Census {
            neighbors: self.t.neigh.census(self.out.now),
            nat: self.t.nat.iter().map(|n| n.census(self.out.now)).collect(),
            held: self.t.neigh.held() as u64,
            services: self
                .t
                .svc
                .counters()
                .map(|(n, c)| (n.to_owned(), c.clone()))
                .collect(),
            service_evictions: self.t.svc.evicted(),
        }
    }

    /// The neighbour table.
    pub fn neighbors(&self) -> Vec<NeighborView> {
        self.t.neigh.entries(self.out.now)
    }

    /// Packets waiting for a neighbour to resolve.
    pub fn held(&self) -> usize {
        self.t.neigh.held()
    }

    /// Takes in one received frame: counts it and appends it to `burst`, or
    /// drops it at once when it cannot be carried (larger than a buffer).
    pub fn receive(&mut self, burst: &mut Vec<Packet>, port: PortId, ts: Time, frame: &[u8]) {
        let out = &mut self.out;
        let Some(ps) = out.stats.ports.get_mut(usize::from(port)) else {
            return;
        };
        ps.rx += 1;
        ps.rx_bytes += frame.len() as u64;
        let meta = Meta::received(port, ts);
        let mut buf = out.pool.get();
        if buf.set_frame(frame).is_err() {
            out.pool.put(buf);
            out.count_drop(&meta, DropReason::Oversize);
            return;
        }
        burst.push(Packet { buf, meta });
    }

    /// Takes in a frame a capture cut short: counted as received, and
    /// dropped as `truncated`.
    pub fn receive_truncated(&mut self, port: PortId, ts: Time, frame: &[u8]) {
        let Some(ps) = self.out.stats.ports.get_mut(usize::from(port)) else {
            return;
        };
        ps.rx += 1;
        ps.rx_bytes += frame.len() as u64;
        self.out
            .count_drop(&Meta::received(port, ts), DropReason::Truncated);
    }

    /// An empty buffer from the router's pool, for a driver to read into.
    pub fn take_buf(&mut self) -> PacketBuf {
        self.out.pool.get()
    }

    /// Packet buffers this router ever allocated (its memory for packets is
    /// this many times the buffer size).
    pub fn buffers_allocated(&self) -> usize {
        self.out.pool.allocated()
    }

    /// Returns a buffer a driver did not use.
    pub fn recycle(&mut self, buf: PacketBuf) {
        self.out.pool.put(buf);
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
        let out = &mut self.out;
        let Some(ps) = out.stats.ports.get_mut(usize::from(port)) else {
            return out.pool.put(buf);
        };
        ps.rx += 1;
        ps.rx_bytes += buf.len() as u64;
        let mut meta = Meta::received(port, ts);
        match offload {
            Ok(o) if o.fits(buf.len()) => meta.offload = o,
            Ok(_) => {
                out.count_drop(&meta, DropReason::OffloadInvalid);
                return out.pool.put(buf);
            }
            Err(reason) => {
                out.count_drop(&meta, reason);
                return out.pool.put(buf);
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
        while !self.out.generated.is_empty() {
            let spare = std::mem::take(&mut self.s.spare);
            let mut gen = std::mem::replace(&mut self.out.generated, spare);
            self.run(&mut gen);
            self.s.spare = gen;
        }
    }

    fn run(&mut self, pkts: &mut Vec<Packet>) {
        // One branch per burst: the plain run has no watching in it.
        if self.out.watch.is_some() {
            self.run_as::<true>(pkts);
            self.collect_traces();
        } else {
            self.run_as::<false>(pkts);
        }
    }

    /// The stages over a burst, then each packet's disposition; with
    /// `WATCHED`, the watch looks at the burst after every stage.
    fn run_as<const WATCHED: bool>(&mut self, pkts: &mut Vec<Packet>) {
        let (t, out, s) = (&mut self.t, &mut self.out, &mut self.s);
        if WATCHED {
            if let Some(w) = &mut out.watch {
                w.begin(pkts);
            }
        }
        let look = |out: &mut Output, stage: Stage, pkts: &[Packet], t: &Tables| {
            if WATCHED {
                let now = out.now;
                if let Some(w) = &mut out.watch {
                    w.after(stage, pkts, t, now);
                }
            }
        };
        punt::inject(t, out, pkts);
        l2::run(t, out, pkts);
        look(out, Stage::L2, pkts, t);
        // A frame whose tail is still in its sender's memory was only let
        // in because a switch sends it on as it is (`Router::switched_to`).
        debug_assert!(
            pkts.iter()
                .all(|p| p.buf.deferred_tail().is_none() || !p.meta.next.is_stage()),
            "a frame without its tail reached the stages"
        );
        // Service traffic needs svc-in and svc-out: ip4-fast leaves it to
        // the stages.
        if self.fast.enabled {
            ip4_fast::run(t, out, s, &mut self.fast, pkts);
            look(out, Stage::Ip4Fast, pkts, t);
        }
        // When ip4-fast took the whole burst, the stages have nothing to do.
        if pkts.iter().any(|p| p.meta.next.is_stage()) {
            eth_input::run(&t.ports, pkts);
            look(out, Stage::EthInput, pkts, t);
            arp_input::run(t, out, pkts);
            look(out, Stage::ArpInput, pkts, t);
            ip4_input::run(t, out, pkts);
            look(out, Stage::Ip4Input, pkts, t);
            nat::input_stage(t, out, pkts);
            look(out, Stage::Nat44In, pkts, t);
            ip6_input::run(t, out, pkts);
            look(out, Stage::Ip6Input, pkts, t);
            service::input(t, out, pkts);
            look(out, Stage::SvcIn, pkts, t);
            ip_lookup::run(t, out, s, pkts);
            look(out, Stage::IpLookup, pkts, t);
            service::output(t, out, pkts);
            look(out, Stage::SvcOut, pkts, t);
            nat::output(t, out, s, pkts);
            look(out, Stage::Nat44Out, pkts, t);
            ip_rewrite::run(t, out, pkts);
            look(out, Stage::IpRewrite, pkts, t);
        }
        if !WATCHED {
            for pkt in pkts.drain(..) {
                dispose(t, out, pkt);
            }
            return;
        }
        for (i, pkt) in pkts.drain(..).enumerate() {
            let Some(w) = &mut out.watch else {
                unreachable!("watched without a watch")
            };
            if w.traced(i) {
                let end = match pkt.meta.next {
                    Next::Tx => TraceEnd::Sent {
                        port: pkt.meta.tx_port,
                    },
                    Next::Resolve => TraceEnd::Held {
                        neighbor: pkt.meta.neighbor,
                    },
                    Next::Drop(reason) => TraceEnd::Dropped {
                        reason,
                        stage: w.stamp(i).unwrap_or(Stage::EthInput),
                    },
                    Next::HandOff { to, .. } => TraceEnd::HandedOff { worker: to },
                    Next::Punt => match t.mirrors.mirror(pkt.meta.iface) {
                        Some(port) => TraceEnd::Sent { port },
                        None => TraceEnd::Dropped {
                            reason: DropReason::LocalUnsupported,
                            stage: w.stamp(i).unwrap_or(Stage::EthInput),
                        },
                    },
                    _ => TraceEnd::Local,
                };
                w.end(i, end);
            }
            out.stage = match pkt.meta.next {
                Next::Tx => Stage::Tx,
                Next::Resolve => Stage::NeighborHold,
                _ => w.stamp(i).unwrap_or(Stage::EthInput),
            };
            dispose(t, out, pkt);
        }
    }

    /// Moves finished traces out of the watch, and lets the watch go when
    /// there is nothing left to watch.
    fn collect_traces(&mut self) {
        let Some(w) = &mut self.out.watch else {
            return;
        };
        for tr in w.traces.drain(..) {
            if self.traces.len() < watch::TRACES_MAX {
                self.traces.push(tr);
            }
        }
        if w.is_idle() && w.kept.is_empty() {
            self.out.watch = None;
        }
    }

    /// Traces the next `count` packets that pass `filter` (received or
    /// made by the appliance), forgetting earlier traces.
    pub fn start_trace(&mut self, count: u64, filter: TraceFilter) {
        self.traces.clear();
        let w = self.out.watch.get_or_insert_with(Box::default);
        w.trace_left = count;
        w.filter = filter;
        self.collect_traces();
    }

    /// True while a trace or kept drops make every burst take the watched
    /// run.
    pub fn watching(&self) -> bool {
        self.out.watch.is_some()
    }

    /// The switch member a frame received on `port` will be sent to
    /// unchanged, if the burst it is in runs at `now` while nothing is
    /// watched (see [`l2::unicast_member`]): such a frame's payload may
    /// stay where its device received it until that member's device sends
    /// it ([`PacketBuf::defer_tail`]). Only `frame`'s Ethernet header is
    /// read.
    pub fn switched_to(&self, port: PortId, frame: &[u8], now: Time) -> Option<PortId> {
        if self.watching() {
            return None;
        }
        l2::unicast_member(&self.t, port, frame, now)
    }

    /// The finished traces, oldest first.
    pub fn traces(&self) -> &[PacketTrace] {
        &self.traces
    }

    /// Keeps the packets received on the ports marked `true` (by port id)
    /// that are then dropped, for [`Router::take_kept_drops`]; all
    /// `false` stops keeping them.
    pub fn keep_drops(&mut self, ports: &[bool]) {
        let w = self.out.watch.get_or_insert_with(Box::default);
        w.keep_drops = ports.to_vec();
        self.collect_traces();
    }

    /// Hands every kept drop to `f`, then recycles their buffers.
    pub fn take_kept_drops(&mut self, mut f: impl FnMut(&KeptDrop)) {
        let Some(w) = &mut self.out.watch else {
            return;
        };
        let kept = std::mem::take(&mut w.kept);
        for k in kept {
            f(&k);
            self.out.pool.put(k.pkt.buf);
        }
        self.collect_traces();
    }

    /// Advances timers to `now`: neighbour requests are repeated, and queues
    /// of neighbours that never answered are dropped.
    pub fn tick(&mut self, now: Time) {
        let (t, out, s) = (&mut self.t, &mut self.out, &mut self.s);
        out.now = out.now.max(now);
        t.neigh.tick(out.now, &mut s.probes, &mut s.spare);
        for (port, addr) in s.probes.drain(..) {
            solicit(t, out, port, addr);
        }
        t.l2.sweep(out.now);
        for n in &mut t.nat {
            n.table_mut().tick(out.now);
        }
        out.stage = Stage::NeighborHold;
        for p in s.spare.drain(..) {
            out.drop_packet(p, DropReason::NeighborUnresolved);
        }
        if !out.announcements.is_empty() {
            send_announcements(t, out);
        }
    }

    /// Forgets the neighbours and switch MAC entries learned on `port` (its
    /// device was replaced); packets waiting for those neighbours are
    /// dropped as `neighbor_unresolved`.
    pub fn forget_neighbors(&mut self, port: PortId) {
        self.t.l2.forget_port(port);
        let mut failed = Vec::new();
        self.t.neigh.forget_port(port, &mut failed);
        self.out.stage = Stage::NeighborHold;
        for p in failed {
            self.out.drop_packet(p, DropReason::NeighborUnresolved);
        }
    }

    /// Ends a run: packets still waiting for a neighbour are dropped as
    /// `neighbor_unresolved`.
    pub fn finish(&mut self) {
        let mut failed = Vec::new();
        self.t.neigh.flush(&mut failed);
        self.out.stage = Stage::NeighborHold;
        for p in failed {
            self.out.drop_packet(p, DropReason::NeighborUnresolved);
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
        let Some(q) = self.out.tx.get_mut(usize::from(port)) else {
            return;
        };
        out(q);
        // The buffers go back in one pass over the queue, copied from where
        // they lie rather than through the stack one packet at a time.
        self.out.pool.put_all(q.drain(..).map(|p| p.buf));
    }

    /// Counts frames the device of `port` refused after they were queued.
    pub fn count_tx_errors(&mut self, port: PortId, n: u64) {
        if let Some(ps) = self.out.stats.ports.get_mut(usize::from(port)) {
            ps.tx_errors += n;
        }
    }

    /// True when some port has packets waiting in its transmit queue.
    pub fn has_tx(&self) -> bool {
        self.out.tx.iter().any(|q| !q.is_empty())
    }
}

impl Output {
    /// Counts a drop under `reason`: against the port the packet came in
    /// on, or, for one the appliance made, among the generated drops.
    fn count_drop(&mut self, meta: &Meta, reason: DropReason) {
        let i = reason as usize;
        match meta.origin {
            Origin::Received => self.stats.ports[usize::from(meta.rx_port)].drops[i] += 1,
            Origin::Generated | Origin::Flooded => self.stats.generated_drops[i] += 1,
        }
    }

    /// Drops `pkt` under `reason`: counted, its buffer back in the pool
    /// (or kept, when its port's drops are watched).
    fn drop_packet(&mut self, pkt: Packet, reason: DropReason) {
        self.count_drop(&pkt.meta, reason);
        if let Some(w) = &mut self.watch {
            if w.keeps(pkt.meta.rx_port, pkt.meta.origin) {
                let stage = self.stage;
                w.kept.push(KeptDrop { pkt, reason, stage });
                return;
            }
        }
        self.pool.put(pkt.buf);
    }
}

/// Where a packet ends once the stages are done with it.
#[inline(always)]
fn dispose(t: &mut Tables, out: &mut Output, pkt: Packet) {
    match pkt.meta.next {
        Next::Tx => transmit(t, out, pkt),
        Next::Resolve => ip_rewrite::hold(t, out, pkt),
        Next::Local => {
            out.stats.local += 1;
            out.pool.put(pkt.buf);
        }
        Next::Drop(reason) => out.drop_packet(pkt, reason),
        Next::Punt => punt::send(t, out, pkt),
        Next::HandOff { .. } => out.handoffs.push(pkt),
        // Every stage hands each packet to a later stage or a final
        // disposition; should one not, the packet is still counted.
        other => {
            debug_assert!(false, "packet left the pipeline at {other:?}");
            out.drop_packet(pkt, DropReason::LocalUnsupported)
        }
    }
}

/// Queues `pkt` on its port (down a switch, for a switch's router port),
/// counted as sent; dropped when the port is down or its queue is full.
fn transmit(t: &Tables, out: &mut Output, mut pkt: Packet) {
    let port = pkt.meta.tx_port;
    if !pkt.meta.switched {
        if let Some(sw) = t.l2.router_of(port) {
            return l2::output(t, out, sw, pkt);
        }
    } else if !t.ports.get(port).is_some_and(|p| p.up) {
        return out.drop_packet(pkt, DropReason::PortDown);
    }
    let q = &mut out.tx[usize::from(port)];
    if q.len() >= out.tx_depth {
        return out.drop_packet(pkt, DropReason::TxQueueFull);
    }
    pkt.meta.ts = pkt.meta.ts.max(out.now);
    let ps = &mut out.stats.ports[usize::from(port)];
    ps.tx += 1;
    ps.tx_bytes += pkt.buf.len() as u64;
    match pkt.meta.origin {
        Origin::Received => out.stats.forwarded += 1,
        Origin::Generated => out.stats.generated += 1,
        Origin::Flooded => out.stats.flooded += 1,
    }
    q.push(pkt);
}

/// Sends an ARP request or neighbour solicitation for `addr` out of `port`.
/// Gratuitous ARPs or unsolicited neighbour advertisements for a service
/// address: as many, as far apart, as keepalived sends by default.
const ANNOUNCEMENTS: u32 = 3;
const ANNOUNCE_SPACING: std::time::Duration = std::time::Duration::from_secs(1);

/// Sends the gratuitous ARPs and unsolicited advertisements that are due.
fn send_announcements(t: &Tables, out: &mut Output) {
    let now = out.now;
    let mut due = Vec::new();
    out.announcements.retain(|&(at, port, vip)| {
        if at <= now {
            due.push((port, vip));
            false
        } else {
            true
        }
    });
    for (port, vip) in due {
        let Some(info) = t.ports.get(port) else {
            continue;
        };
        let mut buf = out.pool.get();
        match vip {
            IpAddr::V4(a) => nd::build_gratuitous(&mut buf, info.mac, a),
            IpAddr::V6(a) => nd::build_unsolicited_advert(&mut buf, info.mac, a),
        }
        let mut meta = Meta::received(port, now);
        meta.origin = Origin::Generated;
        meta.tx_port = port;
        transmit(t, out, Packet { buf, meta });
    }
}

fn solicit(t: &Tables, out: &mut Output, port: PortId, addr: IpAddr) {
    let mut buf = out.pool.get();
    let built = match t.ports.get(port) {
        Some(info) => nd::build_solicit(&mut buf, info, addr),
        None => false,
    };
    if !built {
        out.pool.put(buf);
        return;
    }
    let mut meta = Meta::received(port, out.now);
    meta.origin = Origin::Generated;
    meta.tx_port = port;
    transmit(t, out, Packet { buf, meta });
}

#[cfg(test)]
mod tests;
