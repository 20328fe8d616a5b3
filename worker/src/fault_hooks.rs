//! Test-only fault hooks: tests that run the worker in-process arm them to
//! make a batch or a consumer panic (the supervision tests). Production
//! never arms them; unarmed, each costs one atomic load.

use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, Default)]
pub struct FaultHooks {
    batch_panics: AtomicU32,
    consumer_panics: AtomicU32,
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
