//! Applying a batch of events in ONE transaction: every subject of the
//! batch locked first (sorted), then each event inside its own savepoint, so
//! one bad event is set aside without undoing the others.

use common::Envelope;
use common::envelope::EnvelopeError;
use common::subject::SubjectKey;

use crate::context::WorkerContext;
use crate::error::JobError;
use crate::jobs::{self, Outcome, Prepared};
use crate::subject_state;

/// What happened to one event of a committed batch, and whom it concerned.
pub type EventResult = Result<(Outcome, SubjectKey), JobError>;

/// Applies every envelope (those that do not parse fail permanently) and
/// commits. `Err` means nothing was committed: the whole batch is to be
/// tried again.
pub async fn apply_batch(
    context: &WorkerContext,
    envelopes: &[Result<Envelope, EnvelopeError>],
) -> Result<Vec<EventResult>, JobError> {
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
    for item in prepared {
        let (envelope, prepared) = match item {
            Ok(item) => item,
            Err(error) => {
                results.push(Err(error));
                continue;
            }
        };
        let savepoint = transaction.savepoint("event").await?;
        match jobs::apply(&savepoint, envelope, &prepared).await {
            Ok(outcome) => {
                savepoint.commit().await?;
                results.push(Ok((outcome, prepared.subject)));
            }
            Err(error @ JobError::Permanent { .. }) => {
                savepoint.rollback().await?;
                results.push(Err(error));
            }
            // Transient trouble (connection lost, deadlock): retry the batch.
            Err(error @ JobError::Transient(_)) => return Err(error),
        }
    }
    transaction.commit().await?;
    Ok(results)
}
