//! One consumer per work queue: consume, apply in batches, ack after commit;
//! reconnect with backoff whenever the broker goes away; stop between
//! batches on shutdown, so in-flight work is finished and acked.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use common::Envelope;
use common::amqp::{AmqpError, WorkQueue};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use crate::apply::{EventResult, apply_batch};
use crate::batch;
use crate::context::WorkerContext;

/// A consuming session that lasted this long counts as healthy: the next
/// reconnect starts again from the shortest delay.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);

/// How long a batch that failed for a transient reason waits before its
/// deliveries go back to the queue.
const TRANSIENT_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    #[error("broker operation failed: {0}")]
    Lapin(#[from] lapin::Error),
    #[error("the broker closed the consumer")]
    Closed,
}

/// Consumes `queue` until `shutdown`, reconnecting as often as needed.
pub async fn run(context: Arc<WorkerContext>, queue: WorkQueue, shutdown: CancellationToken) {
    let mut delays = reconnect_delays();
    loop {
        let started = Instant::now();
        let error = match consume(&context, queue, &shutdown).await {
            Ok(()) => return,
            Err(error) => error,
        };
        if started.elapsed() > HEALTHY_SESSION {
            delays = reconnect_delays();
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(5));
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

fn reconnect_delays() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

async fn consume(
    context: &WorkerContext,
    queue: WorkQueue,
    shutdown: &CancellationToken,
) -> Result<(), ConsumeError> {
    let connection = context.connector.connection().await?;
    let channel = connection.create_channel().await?;
    // Before consuming: the prefetch bounds what this consumer holds in flight.
    channel
        .basic_qos(context.settings.prefetch, BasicQosOptions::default())
        .await?;
    let queue_name = context.topology.work_queue(queue);
    let tag = format!("{}-{}", queue_name, uuid::Uuid::now_v7());
    let mut deliveries = channel
        .basic_consume(
            queue_name.as_str().into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(message = "Consuming.", queue = %queue_name);
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            next = deliveries.next() => next,
        };
        let first = next.ok_or(ConsumeError::Closed)??;
        let settings = &context.settings;
        let batch = batch::collect(
            first,
            &mut deliveries,
            settings.batch_size,
            settings.batch_linger,
        )
        .await;
        process_batch(context, batch).await?;
    }
    // Deliveries prefetched but not started go back to the queue with the channel.
    let _ = channel.close(200, "shutting down".into()).await;
    Ok(())
}

/// Applies a batch and settles every delivery in it: acked together after
/// commit; permanent failures rejected to the dead-letter queue.
async fn process_batch(
    context: &WorkerContext,
    deliveries: Vec<Delivery>,
) -> Result<(), lapin::Error> {
    let envelopes: Vec<_> = deliveries
        .iter()
        .map(|delivery| Envelope::from_amqp(&delivery.properties, &delivery.data))
        .collect();
    let results = match apply_batch(context, &envelopes).await {
        Ok(results) => results,
        Err(error) => {
            tracing::warn!(
                message = "Batch not applied; returning it to the queue.",
                size = deliveries.len(),
                %error,
            );
            tokio::time::sleep(TRANSIENT_PAUSE).await;
            return nack_all(&deliveries).await;
        }
    };
    context.stats.batches.fetch_add(1, Ordering::Relaxed);
    let mut last_applied = None;
    for ((delivery, envelope), result) in deliveries.iter().zip(&envelopes).zip(&results) {
        log_result(envelope.as_ref().ok(), result);
        match result {
            Ok(_) => {
                context.stats.events_applied.fetch_add(1, Ordering::Relaxed);
                last_applied = Some(delivery);
            }
            Err(_) => {
                context.stats.events_failed.fetch_add(1, Ordering::Relaxed);
                // Without requeue the work queue dead-letters it to its DLQ.
                delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await?;
            }
        }
    }
    if let Some(delivery) = last_applied {
        // One ack for the whole batch: every earlier delivery on this channel
        // is either in this batch or already settled.
        delivery
            .acker
            .ack(BasicAckOptions { multiple: true })
            .await?;
    }
    Ok(())
}

async fn nack_all(deliveries: &[Delivery]) -> Result<(), lapin::Error> {
    if let Some(last) = deliveries.last() {
        last.acker
            .nack(BasicNackOptions {
                multiple: true,
                requeue: true,
            })
            .await?;
    }
    Ok(())
}

fn log_result(envelope: Option<&Envelope>, result: &EventResult) {
    let event_id = envelope.map(|envelope| envelope.id.to_string());
    let kind = envelope.map(|envelope| envelope.kind.as_str());
    match result {
        Ok(applied) => tracing::info!(
            message = "Event processed.",
            event_id,
            kind,
            outcome = applied.as_str(),
        ),
        Err(error) => tracing::warn!(
            message = "Event failed.",
            event_id,
            kind,
            outcome = "failed",
            reason = error.reason(),
        ),
    }
}
