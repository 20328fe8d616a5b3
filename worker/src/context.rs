//! What every part of the worker shares.

use std::sync::Arc;

use common::amqp::{AmqpConnector, ConfirmedPublisher, Topology};
use common::db::DbPool;
use common::subject::SubjectHasher;

use crate::email::Email;
pub use crate::metrics::WorkerStats;
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
