//! One consumer per work queue: consume, apply in batches, ack after commit;
//! reconnect with backoff whenever the broker goes away; consume again when
//! the broker cancels the consumer (`basic.cancel`: its queue was deleted,
//! or its node went away in a cluster); stop between batches on shutdown,
//! so in-flight work is finished and acked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::amqp::{AmqpError, WorkQueue};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use crate::consume::collect;
use crate::consume::health::{ConsumerSlot, ConsumerState};
use crate::consume::settle::{SettleError, process_batch};
use crate::context::WorkerContext;

/// How often an idle consumer checks that its channel is still open.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);

/// A consuming session that lasted this long counts as healthy: the next
/// reconnect starts again from the shortest delay.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    #[error("broker operation failed: {0}")]
    Lapin(#[from] lapin::Error),
    #[error("the broker closed the consumer")]
    Closed,
    #[error("the broker cancelled the consumer")]
    Cancelled,
    #[error(transparent)]
    Settle(#[from] SettleError),
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
}

/// Consumes `queue` until `shutdown`, reconnecting as often as needed,
/// keeping `slot` up to date (runs under `common::supervise`).
pub async fn run(
    context: Arc<WorkerContext>,
    queue: WorkQueue,
    shutdown: CancellationToken,
    slot: Arc<ConsumerSlot>,
) {
    let mut delays = reconnect_delays();
    let mut redeclare = false;
    loop {
        let started = Instant::now();
        let error = match consume(&context, queue, &shutdown, &slot, &mut redeclare).await {
            Ok(()) => return,
            Err(error) => error,
        };
        if started.elapsed() > HEALTHY_SESSION {
            delays = reconnect_delays();
        }
        // A cancelled consumer's queue may be gone: declared again first
        // (declaring is idempotent), as a new connection does; the flag
        // stays set until a consume succeeds.
        redeclare |= matches!(error, ConsumeError::Cancelled);
        let delay = delays.next().unwrap_or(Duration::from_secs(1));
        tracing::warn!(
            message = "Consumer lost the broker; reconnecting.",
            queue = queue.as_str(),
            %error,
            retry_in_ms = delay.as_millis() as u64,
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// At most a second apart: an attempt against a broker that is away costs
/// next to nothing, while a longer wait delays the recovery after an
/// outage (the chaos tests saw up to 6 s with a 5 s ceiling).
fn reconnect_delays() -> impl Iterator<Item = Duration> {
    common::supervise::backoff(Duration::from_millis(100), Duration::from_secs(1))
}

async fn consume(
    context: &Arc<WorkerContext>,
    queue: WorkQueue,
    shutdown: &CancellationToken,
    slot: &ConsumerSlot,
    redeclare: &mut bool,
) -> Result<(), ConsumeError> {
    let session = slot.session();
    let connection = context.connector.connection().await?;
    let deadline = context.settings.amqp.publish_timeout;
    if *redeclare {
        match tokio::time::timeout(deadline, context.topology.declare(&connection)).await {
            Ok(declared) => declared?,
            Err(_) => return Err(ConsumeError::Timeout(deadline)),
        }
    }
    let channel = bounded(deadline, connection.create_channel()).await?;
    // Before consuming: the prefetch bounds what this consumer holds in flight.
    let qos = channel.basic_qos(context.settings.prefetch, BasicQosOptions::default());
    bounded(deadline, qos).await?;
    let queue_name = context.topology.work_queue(queue);
    let tag = format!("{}-{}", queue_name, uuid::Uuid::now_v7());
    let consume = channel.basic_consume(
        queue_name.as_str().into(),
        tag.into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    );
    // A queue that is not there (deleted while no consumer was on it) is
    // declared again at the next attempt.
    let mut deliveries = bounded(deadline, consume)
        .await
        .inspect_err(|_| *redeclare = true)?;
    *redeclare = false;
    tracing::info!(message = "Consuming.", queue = %queue_name);
    session.set(ConsumerState::Consuming);
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            next = deliveries.next() => next,
            // Do not trust the delivery stream alone to report a dead
            // connection: look at the channel itself now and then.
            _ = tokio::time::sleep(LIVENESS_CHECK) => {
                if channel.status().connected() {
                    continue;
                }
                return Err(ConsumeError::Closed);
            }
        };
        let Some(first) = next else {
            // The stream ends without an error when the broker cancelled
            // the consumer, or when the channel closed with its connection.
            if !channel.status().connected() {
                return Err(ConsumeError::Closed);
            }
            // Closing the channel returns what it still held to the queue.
            let _ = bounded(deadline, channel.close(200, "consumer cancelled".into())).await;
            return Err(ConsumeError::Cancelled);
        };
        let first = first?;
        let settings = &context.settings;
        let batch = collect::collect(
            first,
            &mut deliveries,
            settings.batch_size,
            settings.batch_linger,
        )
        .await;
        context.faults.consumer();
        match process_batch(context, queue, &batch, &session, shutdown).await {
            Ok(()) => {}
            Err(SettleError::ShutDownWhileHeld) => break,
            Err(error) => return Err(error.into()),
        }
    }
    // Deliveries prefetched but not started go back to the queue with the channel.
    let _ = bounded(deadline, channel.close(200, "shutting down".into())).await;
    Ok(())
}

/// A broker operation with a deadline: on a connection that died without
/// lapin noticing, an operation can wait forever, and a consumer stuck there
/// would never reconnect.
async fn bounded<T>(
    deadline: Duration,
    operation: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, ConsumeError> {
    match tokio::time::timeout(deadline, operation).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ConsumeError::Timeout(deadline)),
    }
}
