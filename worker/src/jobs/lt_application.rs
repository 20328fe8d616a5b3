//! An LT application or update: upsert the person's row, keeping the whole
//! profile as received.

use common::Envelope;
use common::db::Transaction;
use common::senders::lt::LtPayload;

use super::Outcome;
use crate::error::JobError;

const UPSERT: &str = "
    INSERT INTO lt_application
        (mydatashare_user_id, email, status, profile, first_received_at, last_received_at)
    VALUES ($1, $2, $3, $4, $5, $5)
    ON CONFLICT (mydatashare_user_id) DO UPDATE SET
        email = EXCLUDED.email,
        status = EXCLUDED.status,
        profile = EXCLUDED.profile,
        last_received_at = EXCLUDED.last_received_at,
        updated_at = now()";

pub async fn apply(
    transaction: &Transaction<'_>,
    envelope: &Envelope,
    payload: &LtPayload,
) -> Result<Outcome, JobError> {
    let email = payload
        .email
        .as_deref()
        .ok_or_else(|| JobError::permanent("missing_email", "an application needs an e-mail"))?;
    let statement = transaction.prepare_cached(UPSERT).await?;
    transaction
        .execute(
            &statement,
            &[
                &payload.user_id,
                &email,
                &payload.status.as_str(),
                &payload.profile,
                &envelope.received_at,
            ],
        )
        .await?;
    Ok(Outcome::Applied)
}
