//! Hand-off between workers: packets whose flow another worker owns, the
//! buffers that carried them, and the MAC addresses switches learn.
//!
//! Every NAT and service flow has one owning worker (see
//! `edgefwd_core::pipeline::handoff`); packets that arrive on another are
//! handed over a burst at a time, as
//! VPP hands frames of buffers to another thread: a [`Parcel`] of packets
//! goes through a bounded lock-free queue per pair of workers (one
//! producer, one consumer), so the queue's atomics are paid once a burst.
//! A full queue drops the parcel's packets as `handoff_full`.
//!
//! The receiver copies a small frame into a buffer of its own and puts the
//! sender's buffer back in the parcel, which goes straight home: neither
//! core writes cache lines the other holds, which is most of what a
//! hand-off costs. A large frame (a TSO super-packet) keeps its buffer, and
//! the receiver owes one for it: once it has sent the packets, it fills
//! the parcel with as many free buffers of its own. Either way both pools
//! stay the size they were, the parcels go round, and nothing is allocated
//! on the way once they exist. A worker takes up to four bursts of
//! hand-offs a round, so that one behind on them catches up.
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
/// Packets a new parcel has room for (a burst's hand-offs to one worker;
/// more, from a burst with generated packets, grow it once).
const PARCEL: usize = 256;
/// Bursts of hand-offs a worker takes in a round at most.
pub const ROUND_BURSTS: usize = 4;
/// Frames up to this size are copied into the receiver's own buffer.
const COPY_MAX: usize = 2048;
/// MAC addresses a worker's inbox holds (beyond it a peer floods until the
/// next refresh tells it again).
const MAC_INBOX: usize = 4096;

/// Packets handed from one worker to another; on the way back, the buffers
/// given in return.
pub struct Parcel {
    from: usize,
    pkts: Vec<Packet>,
    /// Buffers still owed for it.
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

    /// True when packets wait for any worker.
    pub fn any_pending(&self) -> bool {
        (0..self.queues.len()).any(|w| self.pending(w))
    }

    /// Moves packets handed to `desk`'s worker into `burst`, parcels from
    /// each sender in turn, until `burst` holds [`ROUND_BURSTS`] bursts of
    /// `burst_size` or nothing is left, for its router's next `process`.
    ///
    /// More than a sender puts in a round: a worker behind on its
    /// hand-offs has longer rounds than the senders, whose rounds then
    /// bring more; taking one burst a round, it would never catch up.
    pub fn receive(
        &self,
        desk: &mut Desk,
        router: &mut Router,
        burst: &mut Vec<Packet>,
        burst_size: usize,
    ) {
        let max = burst_size * ROUND_BURSTS;
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
                // A small frame is copied into a buffer of this worker's
                // own, and the sender's buffer goes straight back in the
                // parcel: neither core then writes lines the other holds.
                // A large one keeps its buffer, and one is owed for it.
                parcel.carried = 0;
                for mut p in parcel.pkts.drain(..) {
                    if p.buf.len() <= COPY_MAX {
                        let mut mine = router.take_buf();
                        if mine.set_frame(p.buf.frame()).is_ok() {
                            parcel.bufs.push(std::mem::replace(&mut p.buf, mine));
                        } else {
                            router.recycle(mine);
                            parcel.carried += 1;
                        }
                    } else {
                        parcel.carried += 1;
                    }
                    router.receive_handed(burst, p);
                }
                if parcel.carried == 0 {
                    self.send_back(parcel);
                } else {
                    desk.owed.push(parcel);
                }
            }
        }
    }

    /// Returns a parcel to its sender; a full return queue frees it and
    /// its buffers (the sender allocates when it runs short).
    fn send_back(&self, parcel: Parcel) {
        let _ = self.returns[parcel.from].push(parcel);
    }

    /// Sends back the parcels `desk`'s worker took, each with as many free
    /// buffers as it carried packets (call after transmitting them, when
    /// the pool has them back).
    pub fn give_back(&self, desk: &mut Desk, router: &mut Router) {
        while let Some(mut parcel) = desk.owed.pop() {
            for _ in 0..parcel.carried {
                match router.spare_buf() {
                    Some(b) => parcel.bufs.push(b),
                    None => break,
                }
            }
            self.send_back(parcel);
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
