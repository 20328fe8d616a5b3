//! Processing one batch: apply (one transaction), then settle every delivery.
//! A batch the environment refused is held and tried again first
//! (`consume::hold`); a batch that panics is that batch's failure. A failed
//! event moves on to its next delay tier or to the dead-letter queue, and
//! only once the broker confirmed that move is the batch acked, with one
//! multiple-ack. Nothing is acked that is not committed or moved.

use common::amqp::{PublishError, WorkQueue};
use common::envelope::EnvelopeError;
use common::envelope::{header, header_int};
use common::{Envelope, EventKind};
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::apply::batch::PreparedEvent;
use crate::apply::jobs::Outcome;
use crate::apply::jobs::{self, Task};
use crate::apply::{EventResult, apply_batch};
use crate::consume::health::{ConsumerState, Session};
use crate::consume::hold::{self, Held};
use crate::consume::retry::Disposition;
use crate::context::WorkerContext;
use crate::email;
use crate::error::JobError;
use crate::metrics::{email_outcome, outcome};
use common::dead_letter;
use common::subject::SubjectKey;

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("could not move a failed message on: {0}")]
    Publish(#[from] PublishError),
    #[error("could not ack the batch: {0}")]
    Ack(#[from] lapin::Error),
    #[error("the broker did not answer the batch's ack in time")]
    AckTimeout,
    #[error("shut down while the batch was held; it was put back at the end of its queue")]
    ShutDownWhileHeld,
}

pub async fn process_batch(
    context: &Arc<WorkerContext>,
    queue: WorkQueue,
    deliveries: &[Delivery],
    session: &Session<'_>,
    shutdown: &CancellationToken,
) -> Result<(), SettleError> {
    let started = std::time::Instant::now();
    let envelopes: Vec<_> = deliveries
        .iter()
        .map(|delivery| Envelope::from_amqp(&delivery.properties, &delivery.data))
        .collect();
    let attempt = || run_tasks_caught(context, &envelopes);
    let outcomes = match hold::until_accepted(context, queue, session, shutdown, attempt).await {
        Held::Accepted(outcomes) => outcomes,
        // Put back as new messages: closing the channel on them would count a
        // redelivery against the queue's delivery limit, at every restart.
        Held::ShutDown => {
            requeue(context, queue, deliveries).await?;
            ack_batch(context, deliveries).await?;
            return Err(SettleError::ShutDownWhileHeld);
        }
        Held::TooLong => {
            requeue(context, queue, deliveries).await?;
            ack_batch(context, deliveries).await?;
            // Nothing is held any more; the next batch shows what the
            // database says now.
            session.set(ConsumerState::Consuming);
            return Ok(());
        }
    };
    for ((delivery, envelope), outcome) in deliveries.iter().zip(&envelopes).zip(outcomes) {
        let envelope = envelope.as_ref().ok();
        match outcome {
            Ok((outcome, subject)) => note_processed(context, envelope, outcome, subject.as_ref()),
            Err(error) => {
                let disposition = move_on(context, queue, delivery, &error).await?;
                note_failed(context, envelope, &error, &disposition);
            }
        }
    }
    ack_batch(context, deliveries).await?;
    context.stats.batch_took(queue.as_str(), started.elapsed());
    Ok(())
}

/// Acks every delivery of the batch with one multiple-ack.
async fn ack_batch(context: &WorkerContext, deliveries: &[Delivery]) -> Result<(), SettleError> {
    let Some(last) = deliveries.last() else {
        return Ok(());
    };
    // Every delivery up to this one on this channel belongs to the batch.
    let ack = last.acker.ack(BasicAckOptions { multiple: true });
    // An ack on a connection that died can wait forever: bounded, so the
    // consumer notices and reconnects (the batch is then redelivered and
    // dropped as duplicates).
    match tokio::time::timeout(context.settings.amqp.publish_timeout, ack).await {
        Ok(result) => {
            result?;
            Ok(())
        }
        Err(_) => Err(SettleError::AckTimeout),
    }
}

/// Puts a batch held too long back at the end of its work queue as new
/// messages, unchanged (same id, headers and attempt), confirmed by the
/// broker before the originals are acked: a redelivery would count against
/// the queue's delivery limit, a new message starts from none. Order does
/// not matter: events are ordered by their order key, not by the queue.
async fn requeue(
    context: &WorkerContext,
    queue: WorkQueue,
    deliveries: &[Delivery],
) -> Result<(), PublishError> {
    let work_queue = context.topology.work_queue(queue);
    for delivery in deliveries {
        context
            .publisher
            .publish(
                "",
                &work_queue,
                &delivery.data,
                dead_letter::for_requeue(&delivery.properties),
            )
            .await?;
    }
    context.stats.batch_requeued(queue, deliveries.len());
    tracing::warn!(
        message = "Batch held too long; put back at the end of its queue.",
        queue = queue.as_str(),
        size = deliveries.len(),
    );
    Ok(())
}

/// `run_tasks`, with a panic caught as the batch's failure: every event of
/// it climbs its delay tiers (where a poisonous one ends up dead-lettered
/// with the rest applied), instead of the panic ending the consumer and
/// the broker redelivering the batch until its delivery limit.
async fn run_tasks_caught(
    context: &Arc<WorkerContext>,
    envelopes: &[Result<Envelope, EnvelopeError>],
) -> Vec<EventResult> {
    match AssertUnwindSafe(run_tasks(context, envelopes))
        .catch_unwind()
        .await
    {
        Ok(results) => results,
        Err(_) => {
            // The panic's message is left out: it may quote the data.
            tracing::error!(
                message = "A batch panicked; its events will be retried.",
                size = envelopes.len()
            );
            context.stats.batch_panicked();
            envelopes
                .iter()
                .map(|_| Err(JobError::Transient("the batch panicked".into())))
                .collect()
        }
    }
}

/// Parses every delivery into its task (`jobs::prepare`) and runs them: the
/// senders' events in one batch transaction, e-mail jobs in chunks. One
/// result per delivery, in order; one that does not parse fails on its own.
async fn run_tasks(
    context: &Arc<WorkerContext>,
    envelopes: &[Result<Envelope, EnvelopeError>],
) -> Vec<EventResult> {
    context.faults.batch();
    let rules = context.rules();
    let mut results: Vec<Option<EventResult>> = vec![None; envelopes.len()];
    let (mut events, mut event_slots) = (Vec::new(), Vec::new());
    let (mut emails, mut email_slots) = (Vec::new(), Vec::new());
    for (slot, envelope) in envelopes.iter().enumerate() {
        let task = envelope
            .as_ref()
            .map_err(|error| JobError::permanent("bad_envelope", error.to_string()))
            .and_then(|envelope| Ok((envelope, jobs::prepare(&rules, envelope)?)));
        match task {
            Ok((envelope, Task::Event(prepared))) => {
                events.push((envelope, prepared));
                event_slots.push(slot);
            }
            Ok((_, Task::Email(outbox_id))) => {
                emails.push(outbox_id);
                email_slots.push(slot);
            }
            Err(error) => results[slot] = Some(Err(error)),
        }
    }
    if !events.is_empty() {
        context.stats.batch(envelopes.len());
        let applied = apply_events(context, &events).await;
        for (slot, result) in event_slots.into_iter().zip(applied) {
            results[slot] = Some(result);
        }
    }
    if !emails.is_empty() {
        let sent = super::email::send_batch(context, &emails).await;
        for (slot, result) in email_slots.into_iter().zip(sent) {
            results[slot] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|result| result.unwrap_or_else(|| Err(JobError::Transient("not run".into()))))
        .collect()
}

/// Applies a batch of the senders' events in one transaction, then queues
/// the e-mails it created. A batch-wide failure fails every event in it.
async fn apply_events(
    context: &Arc<WorkerContext>,
    events: &[PreparedEvent<'_>],
) -> Vec<EventResult> {
    match apply_batch(context, events).await {
        Ok(applied) => {
            queue_emails(context, applied.followups.emails).await;
            applied.results
        }
        Err(error) => {
            // An environment failure is logged where the batch is held.
            if !error.is_environment() {
                tracing::warn!(
                    message = "Batch not applied; every event in it will be retried.",
                    size = events.len(),
                    %error,
                );
            }
            events.iter().map(|_| Err(error.clone())).collect()
        }
    }
}

/// Publishes the e-mail jobs of a committed batch, in the background: the
/// batch need not wait for their confirms before it is acked, since the
/// outbox rows are committed. What fails here is left to the outbox
/// sweeper, so nothing is lost.
async fn queue_emails(context: &Arc<WorkerContext>, outbox_ids: Vec<uuid::Uuid>) {
    if outbox_ids.is_empty() {
        return;
    }
    // Waits when too much is still publishing (the broker is slow): the
    // consumer then slows down instead of piling up tasks.
    let Ok(slot) = context.background_slots.clone().acquire_owned().await else {
        return;
    };
    let tracker = context.background.clone();
    let context = context.clone();
    tracker.spawn(async move {
        let published = email::publish_jobs(&context, &outbox_ids).await;
        if let Err(error) = email::outbox::mark_enqueued(&context.pool, &published).await {
            tracing::warn!(message = "Could not note published e-mail jobs.", %error);
        }
        drop(slot);
    });
}

/// Republishes a failed delivery to its next delay tier or to the kind's
/// dead-letter queue, confirmed by the broker.
async fn move_on(
    context: &WorkerContext,
    queue: WorkQueue,
    delivery: &Delivery,
    error: &JobError,
) -> Result<Disposition, PublishError> {
    let attempt = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| header_int(headers, header::ATTEMPT))
        .and_then(|attempt| u32::try_from(attempt).ok())
        .unwrap_or(0);
    let disposition = context.retry.decide(attempt, error);
    let detail = error.to_string();
    let topology = &context.topology;
    match &disposition {
        Disposition::Retry { delay, attempt } => {
            let properties = dead_letter::for_retry(&delivery.properties, *attempt, &detail);
            // The tier's fanout exchange ignores the routing key; the tier
            // keeps it and, on expiry, dead-letters back to that work queue.
            context
                .publisher
                .publish(
                    &topology.retry_tier(*delay),
                    &topology.work_queue(queue),
                    &delivery.data,
                    properties,
                )
                .await?;
        }
        Disposition::DeadLetter { reason, attempts } => {
            let properties = dead_letter::for_dead_letter(
                &delivery.properties,
                reason,
                &detail,
                &topology.work_queue(queue),
                *attempts,
            );
            context
                .publisher
                .publish(
                    "",
                    &topology.dead_letter_queue(queue),
                    &delivery.data,
                    properties,
                )
                .await?;
        }
    }
    Ok(disposition)
}

/// One log line per event: id, kind, hashed subject, outcome; never content.
fn note_processed(
    context: &WorkerContext,
    envelope: Option<&Envelope>,
    outcome: Outcome,
    subject: Option<&SubjectKey>,
) {
    let stats = &context.stats;
    let kind = envelope.map(|envelope| envelope.kind);
    stats.event(kind, outcome.as_str());
    match outcome {
        Outcome::Sent => stats.email(email_outcome::SENT),
        Outcome::Duplicate | Outcome::Stale if kind == Some(EventKind::EmailAcknowledgement) => {
            stats.email(email_outcome::SKIPPED);
        }
        Outcome::Applied | Outcome::Erased => {
            if let Some(envelope) = envelope {
                let age = chrono::Utc::now() - envelope.received_at;
                stats.event_age(
                    envelope.kind,
                    age.num_microseconds().unwrap_or(0) as f64 / 1e6,
                );
            }
            if outcome == Outcome::Erased {
                stats.erasure(kind.map_or("unknown", |kind| kind.source().as_str()));
            }
        }
        Outcome::Duplicate | Outcome::Stale => {}
    }
    tracing::info!(
        message = "Event processed.",
        event_id = envelope.map(|envelope| envelope.id.to_string()),
        kind = envelope.map(|envelope| envelope.kind.as_str()),
        subject = subject.map(|subject| subject.to_string()),
        outcome = outcome.as_str(),
    );
}

fn note_failed(
    context: &WorkerContext,
    envelope: Option<&Envelope>,
    error: &JobError,
    disposition: &Disposition,
) {
    let outcome = match disposition {
        Disposition::Retry { .. } => outcome::RETRIED,
        Disposition::DeadLetter { .. } => outcome::DEAD_LETTERED,
    };
    context
        .stats
        .event(envelope.map(|envelope| envelope.kind), outcome);
    tracing::warn!(
        message = "Event failed.",
        event_id = envelope.map(|envelope| envelope.id.to_string()),
        kind = envelope.map(|envelope| envelope.kind.as_str()),
        outcome,
        reason = error.reason(),
    );
}
