//! The replay's workers: one router each, run one after another, with what
//! the daemon's workers pass between them (packets of flows another owns,
//! MAC addresses, neighbour answers) passed after every burst, until
//! nothing moves.

use edgefwd_core::l2::Learning;
use edgefwd_core::packet::{Next, Offload, Packet, PacketBuf};
use edgefwd_core::pipeline::watch::TraceFilter;
use edgefwd_core::pipeline::Router;
use edgefwd_core::port::PortId;
use edgefwd_core::stats::DropReason;
use edgefwd_core::time::Time;
use edgefwd_io::{Device, QueueIo};

use super::PcapPort;

/// Rounds of passing packets on after one burst: a packet moves at most
/// twice (a hairpin's two owners), so this is never reached.
const MAX_ROUNDS: usize = 8;

/// Every worker's router and its burst being gathered.
pub(super) struct Workers {
    routers: Vec<Router>,
    bursts: Vec<Vec<Packet>>,
    /// Packets on their way to each worker.
    moving: Vec<Vec<Packet>>,
    neighbors: Vec<(PortId, std::net::IpAddr, edgefwd_core::packet::MacAddr)>,
    macs: Vec<Learning>,
}

impl Workers {
    pub(super) fn new(routers: Vec<Router>) -> Workers {
        let n = routers.len();
        Workers {
            routers,
            bursts: (0..n).map(|_| Vec::new()).collect(),
            moving: (0..n).map(|_| Vec::new()).collect(),
            neighbors: Vec::new(),
            macs: Vec::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.routers.len()
    }

    pub(super) fn routers(&self) -> &[Router] {
        &self.routers
    }

    pub(super) fn first(&self) -> &Router {
        &self.routers[0]
    }

    pub(super) fn first_mut(&mut self) -> &mut Router {
        &mut self.routers[0]
    }

    pub(super) fn start_trace(&mut self, count: u64) {
        for r in &mut self.routers {
            r.start_trace(count, TraceFilter::default());
        }
    }

    /// True when no burst is being gathered.
    pub(super) fn is_idle(&self) -> bool {
        self.bursts.iter().all(Vec::is_empty)
    }

    /// The largest burst being gathered.
    pub(super) fn longest(&self) -> usize {
        self.bursts.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// A frame for worker `to`'s next burst.
    pub(super) fn receive(
        &mut self,
        to: usize,
        port: PortId,
        now: Time,
        buf: PacketBuf,
        offload: Result<Offload, DropReason>,
    ) {
        self.routers[to].receive_buf(&mut self.bursts[to], port, now, buf, offload);
    }

    /// Runs every worker's burst, then passes on what they hand over and
    /// learn, until nothing moves.
    pub(super) fn process(&mut self, now: Time) {
        for (r, b) in self.routers.iter_mut().zip(&mut self.bursts) {
            r.process(b, now);
        }
        for _ in 0..MAX_ROUNDS {
            if !self.pass_on() {
                break;
            }
            for (i, r) in self.routers.iter_mut().enumerate() {
                let mut burst = std::mem::take(&mut self.moving[i]);
                for p in burst.drain(..) {
                    r.receive_handed(&mut self.bursts[i], p);
                }
                self.moving[i] = burst;
                r.process(&mut self.bursts[i], now);
            }
        }
    }

    /// Passes handed packets, MAC addresses and neighbour answers between
    /// the routers; true when packets moved.
    fn pass_on(&mut self) -> bool {
        let mut moved = false;
        for i in 0..self.routers.len() {
            let n = self.moving.len();
            let moving = &mut self.moving;
            let mut handed = 0;
            self.routers[i].take_handoffs(|p| {
                if let Next::HandOff { to, .. } = p.meta.next {
                    moving[usize::from(to) % n].push(p);
                    handed += 1;
                }
            });
            self.routers[i].count_handed(handed);
            moved |= handed > 0;
            self.routers[i].take_learned_macs(&mut self.macs);
            self.routers[i].take_learned(&mut self.neighbors);
            for (j, r) in self.routers.iter_mut().enumerate() {
                if j != i {
                    self.macs.iter().for_each(|&l| r.learn_mac(l));
                    for &(port, addr, mac) in &self.neighbors {
                        r.learn_neighbor(port, addr, mac);
                    }
                }
            }
            self.macs.clear();
            self.neighbors.clear();
        }
        moved
    }

    /// Runs every router's timers at `now`.
    pub(super) fn tick(&mut self, now: Time) {
        for r in &mut self.routers {
            r.tick(now);
        }
    }

    /// Ends the run: packets still waiting for a neighbour are dropped.
    pub(super) fn finish(&mut self) {
        for r in &mut self.routers {
            r.finish();
        }
    }

    /// Hands what the routers queued for each port to its device.
    pub(super) fn drain(&mut self, ports: &[PcapPort], qio: &mut QueueIo) {
        for r in &mut self.routers {
            for (port, dev) in ports.iter().enumerate() {
                r.drain_tx_all(port as PortId, |pkts| {
                    dev.tx_burst(qio, pkts);
                });
            }
        }
    }
}
