//! What every part of the worker shares.

use std::sync::Arc;

use common::amqp::{AmqpConnector, ConfirmedPublisher, Topology};
use common::db::DbPool;
use common::subject::SubjectHasher;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::consume::retry::RetryPolicy;
use crate::email::Email;
use crate::fault_hooks::FaultHooks;
pub use crate::metrics::WorkerStats;
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
    /// Work a batch leaves behind once it is committed and acked (publishing
    /// its e-mail jobs); the worker waits for it on shutdown.
    pub background: TaskTracker,
    /// Bounds that work: a consumer waits before it leaves more.
    pub background_slots: Arc<Semaphore>,
    /// Unarmed outside tests.
    pub faults: FaultHooks,
}

impl WorkerContext {
    /// What planning a batch needs of the settings (`apply::jobs::Rules`).
    pub fn rules(&self) -> crate::apply::jobs::Rules<'_> {
        crate::apply::jobs::Rules {
            hasher: &self.hasher,
            lt_email_pointer: &self.settings.lt_email_pointer,
            lt_event_time_pointer: self.settings.lt_event_time_pointer.as_deref(),
            lt_resend_window: self.settings.lt_resend_window,
            first_name_pointer: &self.email.settings.first_name_pointer,
            language_pointer: &self.email.settings.language_pointer,
            ids: &crate::apply::jobs::UuidV7,
        }
    }
}
