//! An LT revocation: the person withdrew the application. Every piece of
//! their personal data goes, in the same transaction that turns their state
//! row into a tombstone (see `jobs::apply`): the application, their unsent
//! acknowledgements, and the `.eml` copies of any (the copies go before the
//! commit: if the transaction then fails, the revocation is retried anyway).

use common::db::Transaction;
use common::senders::lt::LtPayload;

use super::{Outcome, Prepared};
use crate::context::WorkerContext;
use crate::email::outbox;
use crate::error::JobError;

const DELETE: &str = "DELETE FROM lt_application WHERE mydatashare_user_id = $1";

pub async fn apply(
    transaction: &Transaction<'_>,
    context: &WorkerContext,
    prepared: &Prepared,
    payload: &LtPayload,
) -> Result<Outcome, JobError> {
    let statement = transaction.prepare_cached(DELETE).await?;
    transaction.execute(&statement, &[&payload.user_id]).await?;
    let outbox_ids = outbox::erase_for(transaction, &prepared.subject).await?;
    context.email.mailer.remove_copies(&outbox_ids);
    Ok(Outcome::Erased)
}
