//! What every part of the worker shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::amqp::{AmqpConnector, Topology};
use common::db::DbPool;

use crate::settings::WorkerSettings;

pub struct WorkerContext {
    pub pool: DbPool,
    pub connector: Arc<AmqpConnector>,
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
    pub events_failed: AtomicU64,
}

impl WorkerStats {
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    pub fn events_applied(&self) -> u64 {
        self.events_applied.load(Ordering::Relaxed)
    }
}
