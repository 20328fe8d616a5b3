//! An LT revocation: the person withdrew the application. Every piece of
//! their personal data goes, in the same transaction that turns their state
//! row into a tombstone (see `jobs::apply`).

use common::db::Transaction;
use common::senders::lt::LtPayload;

use super::Outcome;
use crate::error::JobError;

const DELETE: &str = "DELETE FROM lt_application WHERE mydatashare_user_id = $1";

pub async fn apply(
    transaction: &Transaction<'_>,
    payload: &LtPayload,
) -> Result<Outcome, JobError> {
    let statement = transaction.prepare_cached(DELETE).await?;
    transaction.execute(&statement, &[&payload.user_id]).await?;
    Ok(Outcome::Erased)
}
