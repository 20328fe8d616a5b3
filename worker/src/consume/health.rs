//! Whether each consumer is consuming: every consumer has a slot for the
//! worker's life, in exactly one state at a time, exported as
//! `intake_worker_consumers{queue,state}` and read by `/readyz` (ready only
//! while every slot is consuming).

use std::sync::{Arc, Mutex};

use common::amqp::WorkQueue;

use crate::metrics::WorkerStats;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerState {
    /// Not consuming: connecting, reconnecting, or being restarted.
    Down,
    Consuming,
    /// Holding a batch the environment refused (`consume::hold`).
    Held,
}

impl ConsumerState {
    pub const ALL: [ConsumerState; 3] = [
        ConsumerState::Down,
        ConsumerState::Consuming,
        ConsumerState::Held,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerState::Down => "down",
            ConsumerState::Consuming => "consuming",
            ConsumerState::Held => "held",
        }
    }
}

/// One consumer's place, kept across its restarts.
pub struct ConsumerSlot {
    queue: WorkQueue,
    state: Mutex<ConsumerState>,
    stats: Arc<WorkerStats>,
}

impl ConsumerSlot {
    pub fn new(stats: Arc<WorkerStats>, queue: WorkQueue) -> Arc<ConsumerSlot> {
        stats.consumer_entered(queue, ConsumerState::Down);
        Arc::new(ConsumerSlot {
            queue,
            state: Mutex::new(ConsumerState::Down),
            stats,
        })
    }

    pub fn set(&self, state: ConsumerState) {
        let mut current = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *current == state {
            return;
        }
        self.stats.consumer_left(self.queue, *current);
        self.stats.consumer_entered(self.queue, state);
        *current = state;
    }

    /// A consuming session: the slot is down again when it ends, however it
    /// ends (an error, shutdown, or a panic unwinding through it).
    pub fn session(&self) -> Session<'_> {
        Session { slot: self }
    }
}

pub struct Session<'a> {
    slot: &'a ConsumerSlot,
}

impl Session<'_> {
    pub fn set(&self, state: ConsumerState) {
        self.slot.set(state);
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.slot.set(ConsumerState::Down);
    }
}
