//! A batch the environment refused (`JobError::Environment`: a revoked
//! privilege, a missing table, a read-only database, a lost connection) is
//! held: left unacked, tried again here with backoff, the consumer reported
//! held (`/readyz` 503, `intake_worker_consumers{state="held"}`) and every
//! failed attempt counted. Nothing is moved on, so no event spends a delay
//! tier, a delivery or a dead-letter for a fault that is not its own; the
//! consumer takes nothing new meanwhile. Trying a batch again is always
//! safe: events are idempotent by their order key, e-mails by their outbox
//! row. A batch held past `INTAKE_HOLD_REQUEUE_AFTER` is put back at the
//! end of its queue as new messages (`settle`), before the broker's
//! consumer timeout would close the channel and count a redelivery.

use std::future::Future;
use std::time::{Duration, Instant};

use common::amqp::WorkQueue;
use tokio_util::sync::CancellationToken;

use crate::apply::EventResult;
use crate::consume::health::{ConsumerState, Session};
use crate::context::WorkerContext;

/// How holding a batch ended.
pub enum Held {
    /// No result is an environment failure (any more): settle these.
    Accepted(Vec<EventResult>),
    /// Held for `INTAKE_HOLD_REQUEUE_AFTER`: put it back at the end of its queue.
    TooLong,
    /// Shutdown came first: the batch goes back to the queue with the
    /// channel, unacked.
    ShutDown,
}

/// Runs `attempt` until no result is an environment failure, for at most
/// `INTAKE_HOLD_REQUEUE_AFTER`.
pub async fn until_accepted<F, Fut>(
    context: &WorkerContext,
    queue: WorkQueue,
    session: &Session<'_>,
    shutdown: &CancellationToken,
    mut attempt: F,
) -> Held
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<EventResult>>,
{
    let mut delays = hold_delays();
    let held_since = Instant::now();
    loop {
        let results = attempt().await;
        let refused = results
            .iter()
            .filter_map(|result| result.as_ref().err())
            .find(|error| error.is_environment());
        let Some(error) = refused else {
            session.set(ConsumerState::Consuming);
            return Held::Accepted(results);
        };
        session.set(ConsumerState::Held);
        context.stats.environment_failure(queue);
        let delay = delays.next().unwrap_or(Duration::from_secs(10));
        tracing::warn!(
            message = "Batch held: the environment refused it; trying again.",
            queue = queue.as_str(),
            size = results.len(),
            %error,
            retry_in_ms = delay.as_millis() as u64,
        );
        if held_since.elapsed() + delay > context.settings.hold_requeue_after {
            return Held::TooLong;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Held::ShutDown,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// From 0.2 s up to 10 s: a database back after a failover is used within
/// seconds, while a long outage costs one attempt per 10 s per consumer.
fn hold_delays() -> impl Iterator<Item = Duration> {
    common::supervise::backoff(Duration::from_millis(200), Duration::from_secs(10))
}
