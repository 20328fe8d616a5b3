//! A LINA consent: upsert the employee's master data for that store.

use common::Envelope;
use common::senders::lina::LinaConsent;

use crate::apply::pipeline::Statement;
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

pub fn statement<'a>(envelope: &Envelope, consent: &'a LinaConsent) -> Statement<'a> {
    Statement::new(
        UPSERT,
        vec![
            Box::new(&consent.webhook),
            Box::new(&consent.user),
            Box::new(&consent.first_name),
            Box::new(&consent.last_name),
            Box::new(&consent.email),
            Box::new(&consent.bereich),
            Box::new(&consent.data),
            Box::new(envelope.received_at),
        ],
    )
}

/// An event naming a store we never registered is not applied blindly:
/// it is dead-lettered, so registering the store and replaying recovers it.
pub fn unknown_webhook() -> JobError {
    JobError::permanent(
        "unknown_webhook",
        "the store's webhook is not registered (worker lina webhooks add)",
    )
}
