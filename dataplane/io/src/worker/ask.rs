//! Questions the control plane puts to every worker: its NAT sessions,
//! its packet traces, or to start a trace. Each worker owns its router,
//! so it answers itself, at its next wake-up or tick (10 ms), and the
//! control plane waits for every answer (a second at most).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use edgefwd_core::nat::SessionView;
use edgefwd_core::pipeline::watch::{PacketTrace, TraceFilter};
use mio::Waker;
use parking_lot::Mutex;

/// A question.
#[derive(Clone, Debug, Default)]
pub enum Ask {
    /// Nothing (yet).
    #[default]
    Nothing,
    /// Every NAT session of the worker's router.
    NatSessions,
    /// Trace the next `count` packets that pass `filter` (each worker
    /// traces up to `count`), forgetting earlier traces.
    StartTrace {
        /// Packets per worker.
        count: u64,
        /// Which.
        filter: TraceFilter,
    },
    /// The traces the worker has.
    Traces,
    /// A page of a service's flows, from a way of the connection table.
    ServiceFlows {
        /// The service.
        name: String,
        /// The way to start from.
        cursor: usize,
    },
}

/// An answer.
#[derive(Debug, Default)]
pub enum Answer {
    /// Done, nothing to say.
    #[default]
    Done,
    /// The NAT sessions.
    NatSessions(Vec<SessionView>),
    /// The traces.
    Traces(Vec<PacketTrace>),
    /// A page of flows, and where the next starts.
    ServiceFlows(Vec<edgefwd_core::service::FlowView>, Option<usize>),
}

/// The question of the moment and the workers' answers.
pub struct Asks {
    generation: AtomicU64,
    ask: Mutex<Ask>,
    answers: Vec<Mutex<(u64, Answer)>>,
}

impl Asks {
    /// For `workers` workers.
    pub fn new(workers: usize) -> Asks {
        Asks {
            generation: AtomicU64::new(0),
            ask: Mutex::new(Ask::Nothing),
            answers: (0..workers).map(|_| Mutex::default()).collect(),
        }
    }

    /// Asks every worker (waking each) and waits up to `wait` for all the
    /// answers, in worker order. One question at a time: the control
    /// thread asks.
    pub fn ask(
        &self,
        ask: Ask,
        wakers: &[OnceLock<Arc<Waker>>],
        wait: Duration,
    ) -> Result<Vec<Answer>, String> {
        *self.ask.lock() = ask;
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        for w in wakers.iter().filter_map(|w| w.get()) {
            let _ = w.wake();
        }
        let deadline = Instant::now() + wait;
        while self.answers.iter().any(|a| a.lock().0 < generation) {
            if Instant::now() >= deadline {
                return Err(format!(
                    "the workers did not answer within {wait:?}; try again"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(self
            .answers
            .iter()
            .map(|a| std::mem::take(&mut a.lock().1))
            .collect())
    }

    /// Worker `id`'s side: answers a question it has not answered yet
    /// (`served` is the last it did) with `f`.
    pub(super) fn serve(&self, id: usize, served: &mut u64, f: impl FnOnce(&Ask) -> Answer) {
        let generation = self.generation.load(Ordering::Acquire);
        if generation == *served {
            return;
        }
        *served = generation;
        let ask = self.ask.lock().clone();
        let answer = f(&ask);
        if let Some(slot) = self.answers.get(id) {
            *slot.lock() = (generation, answer);
        }
    }
}
