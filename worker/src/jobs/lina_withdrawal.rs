//! A LINA withdrawal: the employee withdrew consent. Their data at that
//! store goes, in the same transaction that turns their state row into a
//! tombstone (see `jobs::apply`).

use common::db::Transaction;
use uuid::Uuid;

use super::Outcome;
use crate::error::JobError;

const DELETE: &str = "DELETE FROM lina_employee WHERE webhook = $1 AND user_uuid = $2";

pub async fn apply(
    transaction: &Transaction<'_>,
    webhook: &Uuid,
    user: &Uuid,
) -> Result<Outcome, JobError> {
    let statement = transaction.prepare_cached(DELETE).await?;
    transaction.execute(&statement, &[webhook, user]).await?;
    Ok(Outcome::Erased)
}
