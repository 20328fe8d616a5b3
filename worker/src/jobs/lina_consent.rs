//! A LINA consent: upsert the employee's master data for that store.

use common::Envelope;
use common::db::Transaction;
use common::senders::lina::LinaConsent;
use uuid::Uuid;

use super::Outcome;
use crate::error::JobError;

const UPSERT: &str = "
    INSERT INTO lina_employee
        (webhook, user_uuid, first_name, last_name, email, bereich, data, consented_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (webhook, user_uuid) DO UPDATE SET
        first_name = EXCLUDED.first_name,
        last_name = EXCLUDED.last_name,
        email = EXCLUDED.email,
        bereich = EXCLUDED.bereich,
        data = EXCLUDED.data,
        updated_at = now()";

pub async fn apply(
    transaction: &Transaction<'_>,
    envelope: &Envelope,
    consent: &LinaConsent,
) -> Result<Outcome, JobError> {
    let statement = transaction.prepare_cached(UPSERT).await?;
    transaction
        .execute(
            &statement,
            &[
                &consent.webhook,
                &consent.user,
                &consent.first_name,
                &consent.last_name,
                &consent.email,
                &consent.bereich,
                &consent.data,
                &envelope.received_at,
            ],
        )
        .await?;
    Ok(Outcome::Applied)
}

/// Events for a store we never registered are not applied blindly: they are
/// dead-lettered, so registering the store and replaying recovers them.
pub async fn require_registered(
    transaction: &Transaction<'_>,
    webhook: &Uuid,
) -> Result<(), JobError> {
    let statement = transaction
        .prepare_cached("SELECT 1 FROM lina_webhook WHERE uuid = $1")
        .await?;
    match transaction.query_opt(&statement, &[webhook]).await? {
        Some(_) => Ok(()),
        None => Err(JobError::permanent(
            "unknown_webhook",
            "the store's webhook is not registered (worker lina webhooks add)",
        )),
    }
}
