//! Test-only fault hooks: tests that run the worker in-process arm them to
//! make a batch or a consumer panic (the supervision tests), or to hold
//! retention between choosing whom to erase and locking them (the race
//! retention must survive). Production never arms them; unarmed, each costs
//! one atomic load or one uncontended lock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::oneshot;

#[derive(Debug, Default)]
pub struct FaultHooks {
    batch_panics: AtomicU32,
    consumer_panics: AtomicU32,
    retention_gate: Mutex<Option<Gate>>,
}

/// A point a task waits at: it says it got there, then waits to be let go.
#[derive(Debug)]
struct Gate {
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

impl FaultHooks {
    /// The next `times` batches panic while being applied.
    pub fn panic_in_batches(&self, times: u32) {
        self.batch_panics.store(times, Ordering::SeqCst);
    }

    /// The next `times` consumers that collected a batch panic before
    /// processing it (outside the batch: the consumer task ends).
    pub fn panic_in_consumers(&self, times: u32) {
        self.consumer_panics.store(times, Ordering::SeqCst);
    }

    /// The next retention round stops once it has chosen whom to erase,
    /// before it locks them: the first receiver fires when it got there,
    /// and it goes on when the sender is used (or dropped).
    pub fn hold_retention(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached, reached_rx) = oneshot::channel();
        let (release_tx, release) = oneshot::channel();
        if let Ok(mut gate) = self.retention_gate.lock() {
            *gate = Some(Gate { reached, release });
        }
        (reached_rx, release_tx)
    }

    pub(crate) async fn retention_chosen(&self) {
        let gate = self
            .retention_gate
            .lock()
            .ok()
            .and_then(|mut gate| gate.take());
        if let Some(gate) = gate {
            let _ = gate.reached.send(());
            let _ = gate.release.await;
        }
    }

    pub(crate) fn batch(&self) {
        if take(&self.batch_panics) {
            panic!("fault hook: a batch panics");
        }
    }

    pub(crate) fn consumer(&self) {
        if take(&self.consumer_panics) {
            panic!("fault hook: a consumer panics");
        }
    }
}

fn take(armed: &AtomicU32) -> bool {
    armed
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}
