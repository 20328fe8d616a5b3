//! What every part of the worker shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::amqp::{AmqpConnector, ConfirmedPublisher, Topology};
use common::db::DbPool;
use common::subject::SubjectHasher;

use crate::email::Email;
use crate::retry::RetryPolicy;
use crate::settings::WorkerSettings;

pub struct WorkerContext {
    pub pool: DbPool,
    pub connector: Arc<AmqpConnector>,
    /// Moves failed messages on (delay tiers, dead-letter queues).
    pub publisher: ConfirmedPublisher,
    pub retry: RetryPolicy,
    pub hasher: SubjectHasher,
    pub email: Email,
    pub topology: Topology,
    pub settings: WorkerSettings,
    pub stats: Arc<WorkerStats>,
}

/// Counters the process keeps about itself (exported as metrics by the ops
/// listener; read directly by in-process tests).
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub batches: AtomicU64,
    pub events_applied: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub events_stale: AtomicU64,
    pub erasures: AtomicU64,
    pub emails_sent: AtomicU64,
    pub emails_failed: AtomicU64,
    /// E-mail jobs dropped: already sent, or the application was withdrawn.
    pub emails_skipped: AtomicU64,
    pub events_retried: AtomicU64,
    pub events_dead_lettered: AtomicU64,
}

impl WorkerStats {
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    pub fn events_applied(&self) -> u64 {
        self.events_applied.load(Ordering::Relaxed)
    }

    pub fn events_duplicate(&self) -> u64 {
        self.events_duplicate.load(Ordering::Relaxed)
    }

    pub fn events_stale(&self) -> u64 {
        self.events_stale.load(Ordering::Relaxed)
    }

    pub fn erasures(&self) -> u64 {
        self.erasures.load(Ordering::Relaxed)
    }

    pub fn emails_sent(&self) -> u64 {
        self.emails_sent.load(Ordering::Relaxed)
    }

    pub fn emails_failed(&self) -> u64 {
        self.emails_failed.load(Ordering::Relaxed)
    }

    pub fn events_retried(&self) -> u64 {
        self.events_retried.load(Ordering::Relaxed)
    }

    pub fn events_dead_lettered(&self) -> u64 {
        self.events_dead_lettered.load(Ordering::Relaxed)
    }
}
