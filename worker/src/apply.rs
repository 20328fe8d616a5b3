//! Applying a batch of events in ONE transaction: every subject of the
//! batch locked and read first (sorted, one statement), then each event
//! applied in order. Only when an event fails for good is the batch redone
//! with a savepoint per event, so that one bad event is set aside without
//! undoing the others (the common case pays no savepoints).

use common::Envelope;
use common::envelope::EnvelopeError;
use common::subject::SubjectKey;

use crate::context::WorkerContext;
use crate::error::JobError;
use crate::jobs::{self, Followups, Outcome, Prepared};
use crate::subject_state;

/// What happened to one event of a committed batch, and whom it concerned
/// (where known).
pub type EventResult = Result<(Outcome, Option<SubjectKey>), JobError>;

/// A committed batch: each event's result, and what is to happen now.
pub struct Applied {
    pub results: Vec<EventResult>,
    pub followups: Followups,
}

/// Applies every envelope (those that do not parse fail permanently) and
/// commits. `Err` means nothing was committed: the whole batch is to be
/// tried again.
pub async fn apply_batch(
    context: &WorkerContext,
    envelopes: &[Result<Envelope, EnvelopeError>],
) -> Result<Applied, JobError> {
    let prepared: Vec<Result<(&Envelope, Prepared), JobError>> = envelopes
        .iter()
        .map(|envelope| {
            let envelope = envelope
                .as_ref()
                .map_err(|error| JobError::permanent("bad_envelope", error.to_string()))?;
            Ok((envelope, jobs::prepare(context, envelope)?))
        })
        .collect();
    let subjects: Vec<_> = prepared
        .iter()
        .flatten()
        .map(|(_, prepared)| (prepared.subject, prepared.source))
        .collect();

    let mut client = context.pool.get().await?;
    match apply_in_transaction(&mut client, context, &prepared, &subjects, false).await? {
        Some(applied) => Ok(applied),
        // An event failed for good: redo the batch, each event in its own
        // savepoint, so the others still commit.
        None => apply_in_transaction(&mut client, context, &prepared, &subjects, true)
            .await?
            .ok_or_else(|| JobError::Transient("the batch failed twice".into())),
    }
}

type PreparedEvent<'a> = Result<(&'a Envelope, Prepared), JobError>;

/// One attempt at the batch in one transaction. Without `savepoints` (the
/// fast path: two round trips fewer per event) the first event that fails
/// for good abandons the attempt (`Ok(None)`, nothing committed); with
/// them, a failing event is rolled back alone.
async fn apply_in_transaction(
    client: &mut common::db::Client,
    context: &WorkerContext,
    prepared: &[PreparedEvent<'_>],
    subjects: &[(SubjectKey, common::Source)],
    savepoints: bool,
) -> Result<Option<Applied>, JobError> {
    let mut transaction = client.transaction().await?;
    let mut states = subject_state::lock(&transaction, subjects).await?;
    let mut results = Vec::with_capacity(prepared.len());
    let mut followups = Followups::default();
    for item in prepared {
        let (envelope, event) = match item {
            Ok(item) => item,
            Err(error) => {
                results.push(Err(error.clone()));
                continue;
            }
        };
        let queued = followups.emails.len();
        let outcome = if savepoints {
            let savepoint = transaction.savepoint("event").await?;
            let outcome = jobs::apply(
                &savepoint,
                context,
                envelope,
                event,
                &mut followups,
                &mut states,
            )
            .await;
            match &outcome {
                Ok(_) => savepoint.commit().await?,
                Err(_) => savepoint.rollback().await?,
            }
            outcome
        } else {
            jobs::apply(
                &transaction,
                context,
                envelope,
                event,
                &mut followups,
                &mut states,
            )
            .await
        };
        match outcome {
            Ok(outcome) => results.push(Ok((outcome, Some(event.subject)))),
            Err(error @ JobError::Permanent { .. }) if savepoints => {
                // What the rolled-back event queued never happened.
                followups.emails.truncate(queued);
                results.push(Err(error));
            }
            // The fast path cannot set one event aside: start again with savepoints.
            Err(JobError::Permanent { .. }) => return Ok(None),
            // Transient trouble (connection lost, deadlock): retry the batch.
            Err(error @ JobError::Transient(_)) => return Err(error),
        }
    }
    transaction.commit().await?;
    Ok(Some(Applied { results, followups }))
}
