//! Hand-off between workers: packets whose flow another worker owns, the
//! buffers that carried them, and the MAC addresses switches learn.
//!
//! Every NAT flow has one owning worker (see `edgefwd_core::nat::claims`);
//! packets that arrive on another are handed over a burst at a time, as
//! VPP hands frames of buffers to another thread: a [`Parcel`] of packets
//! goes through a bounded lock-free queue per pair of workers (one
//! producer, one consumer), so the queue's atomics are paid once a burst.
//! A full queue drops the parcel's packets as `handoff_full`.
//!
//! A handed packet keeps its buffer, so the receiver owes the sender one
//! for each: once it has sent them, it fills the same parcel with as many
//! of its free buffers and sends it back. Both pools stay the size they
//! were, the parcels go round, and nothing is allocated on the way once
//! they exist.
//!
//! Each worker's switches keep their own MAC tables; what one learns it
//! tells the others through a queue of its own, as workers already share
//! neighbour answers.

use crossbeam_queue::ArrayQueue;
use edgefwd_core::l2::Learning;
use edgefwd_core::packet::{Next, Packet, PacketBuf};
use edgefwd_core::pipeline::Router;

/// Parcels one worker's queue to another holds.
pub const HANDOFF_QUEUE: usize = 64;
/// Packets a parcel carries at most.
const PARCEL: usize = 256;
/// MAC addresses a worker's inbox holds (beyond it a peer floods until the
/// next refresh tells it again).
const MAC_INBOX: usize = 4096;

/// Packets handed from one worker to another; on the way back, the buffers
/// given in return.
pub struct Parcel {
    from: usize,
    pkts: Vec<Packet>,
    /// Packets it carried, so buffers owed.
    carried: usize,
    bufs: Vec<PacketBuf>,
}

/// The queues between every pair of workers.
pub struct HandOffs {
    /// `queues[to][from]`: parcels of packets.
    queues: Vec<Vec<ArrayQueue<Parcel>>>,
    /// `returns[to]`: parcels going back to their sender with buffers.
    returns: Vec<ArrayQueue<Parcel>>,
    /// MAC addresses learned by the others, per worker.
    macs: Vec<ArrayQueue<Learning>>,
}

/// One worker's side of the hand-off: its parcels being filled, empty ones
/// to reuse, and those it owes buffers for.
pub struct Desk {
    me: usize,
    /// By receiving worker: the parcel being filled.
    filling: Vec<Option<Parcel>>,
    spare: Vec<Parcel>,
    owed: Vec<Parcel>,
    macs: Vec<Learning>,
}

impl Desk {
    /// The desk of worker `me` of `workers`.
    pub fn new(me: usize, workers: usize) -> Desk {
        Desk {
            me,
            filling: (0..workers).map(|_| None).collect(),
            spare: Vec::new(),
            owed: Vec::new(),
            macs: Vec::new(),
        }
    }

    fn parcel(&mut self) -> Parcel {
        self.spare.pop().unwrap_or_else(|| Parcel {
            from: self.me,
            pkts: Vec::with_capacity(PARCEL),
            carried: 0,
            bufs: Vec::with_capacity(PARCEL),
        })
    }

    /// True when this worker owes buffers for parcels it took.
    pub fn owes(&self) -> bool {
        !self.owed.is_empty()
    }
}

impl HandOffs {
    /// Queues for `workers` workers.
    pub fn new(workers: usize) -> HandOffs {
        let n = workers.max(1);
        // One worker hands nothing over: no queue is ever used.
        let cap = |c: usize| if n > 1 { c } else { 1 };
        HandOffs {
            queues: (0..n)
                .map(|_| {
                    (0..n)
                        .map(|_| ArrayQueue::new(cap(HANDOFF_QUEUE)))
                        .collect()
                })
                .collect(),
            returns: (0..n)
                .map(|_| ArrayQueue::new(cap(HANDOFF_QUEUE * n)))
                .collect(),
            macs: (0..n).map(|_| ArrayQueue::new(cap(MAC_INBOX))).collect(),
        }
    }

    /// Passes what `desk`'s router hands off to the owners, a parcel per
    /// owner; a bit per worker that got one (to be woken).
    pub fn send(&self, desk: &mut Desk, router: &mut Router) -> u64 {
        let mut refused = Vec::new();
        router.take_handoffs(|p| {
            let to = match p.meta.next {
                Next::HandOff { to, .. } if usize::from(to) < desk.filling.len() => usize::from(to),
                _ => return refused.push(p),
            };
            if desk.filling[to].is_none() {
                desk.filling[to] = Some(desk.parcel());
            }
            if let Some(parcel) = &mut desk.filling[to] {
                parcel.pkts.push(p);
            }
        });
        // Only a packet naming no worker lands here: never allocates.
        for p in refused {
            router.refuse_handoff(p);
        }
        let mut woke = 0u64;
        for to in 0..desk.filling.len() {
            let Some(parcel) = desk.filling[to].take() else {
                continue;
            };
            let n = parcel.pkts.len() as u64;
            match self.queues[to][desk.me].push(parcel) {
                Ok(()) => {
                    router.count_handed(n);
                    woke |= 1 << (to % 64);
                }
                Err(mut parcel) => {
                    parcel.pkts.drain(..).for_each(|p| router.refuse_handoff(p));
                    desk.spare.push(parcel);
                }
            }
        }
        woke
    }

    /// True when parcels wait for worker `me`.
    pub fn pending(&self, me: usize) -> bool {
        self.queues
            .get(me)
            .is_some_and(|qs| qs.iter().any(|q| !q.is_empty()))
    }

    /// Moves packets handed to `desk`'s worker into `burst`, parcels from
    /// each sender in turn until `burst` holds `max` or more (a backlog
    /// drains, since each round takes more than a sender's one parcel),
    /// for its router's next `process`.
    pub fn receive(
        &self,
        desk: &mut Desk,
        router: &mut Router,
        burst: &mut Vec<Packet>,
        max: usize,
    ) {
        let Some(qs) = self.queues.get(desk.me) else {
            return;
        };
        let mut took = true;
        while took && burst.len() < max {
            took = false;
            for q in qs {
                let Some(mut parcel) = q.pop() else {
                    continue;
                };
                took = true;
                // The frames were written on the sender's core: start
                // every miss now, together, rather than one per stage.
                for p in &parcel.pkts {
                    let f = p.buf.frame();
                    if let (Some(a), b) = (f.first(), f.get(64)) {
                        edgefwd_prefetch::prefetch(a);
                        b.map(edgefwd_prefetch::prefetch);
                    }
                }
                parcel.carried = parcel.pkts.len();
                for p in parcel.pkts.drain(..) {
                    router.receive_handed(burst, p);
                }
                desk.owed.push(parcel);
            }
        }
    }

    /// Sends back the parcels `desk`'s worker took, each with as many free
    /// buffers as it carried packets (call after transmitting them, when
    /// the pool has them back).
    pub fn give_back(&self, desk: &mut Desk, router: &mut Router) {
        while let Some(mut parcel) = desk.owed.pop() {
            while parcel.bufs.len() < parcel.carried {
                match router.spare_buf() {
                    Some(b) => parcel.bufs.push(b),
                    None => break,
                }
            }
            // A full return queue frees the parcel and its buffers; the
            // sender allocates when it runs short.
            let _ = self.returns[parcel.from].push(parcel);
        }
    }

    /// Puts the buffers given back to `desk`'s worker in its pool, and
    /// keeps the parcels for reuse.
    pub fn take_back(&self, desk: &mut Desk, router: &mut Router) {
        let Some(q) = self.returns.get(desk.me) else {
            return;
        };
        while let Some(mut parcel) = q.pop() {
            for b in parcel.bufs.drain(..) {
                router.recycle(b);
            }
            if desk.spare.len() < HANDOFF_QUEUE * desk.filling.len() {
                desk.spare.push(parcel);
            }
        }
    }

    /// Tells the other workers the MAC addresses `desk`'s worker learned.
    pub fn tell_macs(&self, desk: &mut Desk, router: &mut Router) {
        router.take_learned_macs(&mut desk.macs);
        if desk.macs.is_empty() {
            return;
        }
        for (i, inbox) in self.macs.iter().enumerate() {
            if i != desk.me {
                for &l in &desk.macs {
                    let _ = inbox.push(l);
                }
            }
        }
        desk.macs.clear();
    }

    /// Learns what the other workers told `desk`'s worker.
    pub fn learn_macs(&self, desk: &Desk, router: &mut Router) {
        if let Some(inbox) = self.macs.get(desk.me) {
            while let Some(l) = inbox.pop() {
                router.learn_mac(l);
            }
        }
    }
}
