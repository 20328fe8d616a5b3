//! Applying a batch of events in ONE transaction: every subject of the
//! batch locked first (sorted), then each event inside its own savepoint, so
//! one bad event is set aside without undoing the others.

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
    let mut transaction = client.transaction().await?;
    subject_state::lock(&transaction, &subjects).await?;
    let mut results = Vec::with_capacity(envelopes.len());
    let mut followups = Followups::default();
    for item in prepared {
        let (envelope, prepared) = match item {
            Ok(item) => item,
            Err(error) => {
                results.push(Err(error));
                continue;
            }
        };
        let savepoint = transaction.savepoint("event").await?;
        let queued = followups.emails.len();
        match jobs::apply(&savepoint, context, envelope, &prepared, &mut followups).await {
            Ok(outcome) => {
                savepoint.commit().await?;
                results.push(Ok((outcome, Some(prepared.subject))));
            }
            Err(error @ JobError::Permanent { .. }) => {
                savepoint.rollback().await?;
                // What the rolled-back event queued never happened.
                followups.emails.truncate(queued);
                results.push(Err(error));
            }
            // Transient trouble (connection lost, deadlock): retry the batch.
            Err(error @ JobError::Transient(_)) => return Err(error),
        }
    }
    transaction.commit().await?;
    Ok(Applied { results, followups })
}
