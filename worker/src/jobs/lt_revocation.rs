//! An LT revocation: the person withdrew the application; erase their data.

use common::Envelope;
use common::db::Transaction;
use common::senders::lt;

use super::Applied;
use crate::error::JobError;

const DELETE: &str = "DELETE FROM lt_application WHERE mydatashare_user_id = $1";

pub async fn apply(
    transaction: &Transaction<'_>,
    envelope: &Envelope,
) -> Result<Applied, JobError> {
    // A revocation carries no e-mail, so the pointer does not matter here.
    let payload = lt::parse(&envelope.body, "/email")
        .map_err(|error| JobError::permanent(error.code(), error.to_string()))?;
    let statement = transaction.prepare_cached(DELETE).await?;
    transaction.execute(&statement, &[&payload.user_id]).await?;
    Ok(Applied::Applied)
}
