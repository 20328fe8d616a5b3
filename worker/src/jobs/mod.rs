//! One module per kind of job, dispatched in one `match`.

mod lt_application;
mod lt_revocation;

use common::db::Transaction;
use common::{Envelope, EventKind};

use crate::context::WorkerContext;
use crate::error::JobError;

/// What applying an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The event changed the stored state.
    Applied,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Applied => "applied",
        }
    }
}

/// Applies one event inside `transaction` (a savepoint of the batch).
pub async fn apply(
    transaction: &Transaction<'_>,
    context: &WorkerContext,
    envelope: &Envelope,
) -> Result<Applied, JobError> {
    match envelope.kind {
        EventKind::LtApplication => lt_application::apply(transaction, context, envelope).await,
        EventKind::LtRevocation => lt_revocation::apply(transaction, envelope).await,
        EventKind::LinaConsent | EventKind::LinaWithdrawal | EventKind::EmailAcknowledgement => {
            Err(JobError::permanent(
                "unsupported_kind",
                format!("this worker does not handle {}", envelope.kind),
            ))
        }
    }
}
