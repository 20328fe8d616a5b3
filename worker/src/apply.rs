//! Applying a batch of events in ONE transaction: each event inside its own
//! savepoint, so one bad event is set aside without undoing the others.

use common::Envelope;
use common::envelope::EnvelopeError;

use crate::context::WorkerContext;
use crate::error::JobError;
use crate::jobs::{self, Applied};

/// What happened to one event of a committed batch.
pub type EventResult = Result<Applied, JobError>;

/// Applies every envelope (those that did not parse are failed permanently)
/// and commits. `Err` means nothing was committed: the whole batch is to be
/// tried again.
pub async fn apply_batch(
    context: &WorkerContext,
    envelopes: &[Result<Envelope, EnvelopeError>],
) -> Result<Vec<EventResult>, JobError> {
    let mut client = context.pool.get().await?;
    let mut transaction = client.transaction().await?;
    let mut results = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        let envelope = match envelope {
            Ok(envelope) => envelope,
            Err(error) => {
                results.push(Err(JobError::permanent("bad_envelope", error.to_string())));
                continue;
            }
        };
        let savepoint = transaction.savepoint("event").await?;
        match jobs::apply(&savepoint, context, envelope).await {
            Ok(applied) => {
                savepoint.commit().await?;
                results.push(Ok(applied));
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
