//! An LT application or update: upsert the person's row, keeping the whole
//! profile as received. When the upsert creates the row (a first share, an
//! update for someone we never had, a re-application after a revocation),
//! the acknowledgement e-mail is queued in the same transaction.

use common::Envelope;
use common::db::Transaction;
use common::senders::lt::LtPayload;
use serde_json::Value;

use super::{Followups, Outcome, Prepared};
use crate::context::WorkerContext;
use crate::email::{language_of, outbox};
use crate::error::JobError;

/// `xmax = 0` is true for a row this statement inserted, false for one it updated.
const UPSERT: &str = "
    INSERT INTO lt_application
        (mydatashare_user_id, email, status, profile, first_received_at, last_received_at)
    VALUES ($1, $2, $3, $4, $5, $5)
    ON CONFLICT (mydatashare_user_id) DO UPDATE SET
        email = EXCLUDED.email,
        status = EXCLUDED.status,
        profile = EXCLUDED.profile,
        last_received_at = EXCLUDED.last_received_at,
        updated_at = now()
    RETURNING (xmax = 0) AS created";

pub async fn apply(
    transaction: &Transaction<'_>,
    context: &WorkerContext,
    envelope: &Envelope,
    prepared: &Prepared,
    payload: &LtPayload,
    followups: &mut Followups,
) -> Result<Outcome, JobError> {
    let email = payload
        .email
        .as_deref()
        .ok_or_else(|| JobError::permanent("missing_email", "an application needs an e-mail"))?;
    let statement = transaction.prepare_cached(UPSERT).await?;
    let row = transaction
        .query_one(
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
    let created: bool = row.get(0);
    if created {
        let settings = &context.email.settings;
        let first_name = payload
            .profile
            .pointer(&settings.first_name_pointer)
            .and_then(Value::as_str)
            .filter(|name| !name.trim().is_empty());
        let acknowledgement = outbox::NewAcknowledgement {
            subject: &prepared.subject,
            language: language_of(&payload.profile, &settings.language_pointer),
            recipient: email,
            first_name,
        };
        followups
            .emails
            .push(outbox::create(transaction, &acknowledgement).await?);
    }
    Ok(Outcome::Applied)
}
