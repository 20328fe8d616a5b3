//! A LINA consent: upsert the employee's master data for that store.

use chrono::{DateTime, Utc};
use common::Envelope;
use common::senders::lina::LinaConsent;
use common::subject::SubjectKey;

use crate::apply::json_text::JsonText;
use crate::apply::pipeline::{Param, Statement};
use crate::error::JobError;

/// The consents of different employees in one statement (see
/// `jobs::statements`).
const UPSERT_ALL: &str = "
    INSERT INTO lina_employee
        (webhook, user_uuid, first_name, last_name, email, bereich, data, consented_at)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::jsonb[], $8::timestamptz[])
    ON CONFLICT (webhook, user_uuid) DO UPDATE SET
        first_name = EXCLUDED.first_name,
        last_name = EXCLUDED.last_name,
        email = EXCLUDED.email,
        bereich = EXCLUDED.bereich,
        data = EXCLUDED.data,
        updated_at = now()";

/// One employee's consent, as the batch will write it (no `Debug`: it
/// holds personal data).
pub struct ConsentRow<'a> {
    pub subject: &'a SubjectKey,
    consent: &'a LinaConsent<'a>,
    /// The whole call as LINA sent it.
    data: JsonText<'a>,
    received_at: DateTime<Utc>,
}

pub fn row<'a>(
    envelope: &'a Envelope,
    subject: &'a SubjectKey,
    consent: &'a LinaConsent<'a>,
) -> ConsentRow<'a> {
    ConsentRow {
        subject,
        consent,
        data: JsonText::of_body(&envelope.body),
        received_at: envelope.received_at,
    }
}

/// One statement for the consents of different employees.
pub fn upsert_all<'a>(rows: &[ConsentRow<'a>]) -> Statement<'a> {
    let column = |field: fn(&'a LinaConsent<'a>) -> Option<&'a str>| -> Param<'a> {
        Box::new(
            rows.iter()
                .map(|row| field(row.consent))
                .collect::<Vec<_>>(),
        )
    };
    let params: Vec<Param<'a>> = vec![
        Box::new(
            rows.iter()
                .map(|row| row.consent.webhook)
                .collect::<Vec<_>>(),
        ),
        Box::new(rows.iter().map(|row| row.consent.user).collect::<Vec<_>>()),
        column(|consent| consent.first_name.as_deref()),
        column(|consent| consent.last_name.as_deref()),
        column(|consent| consent.email.as_deref()),
        column(|consent| consent.bereich.as_deref()),
        Box::new(rows.iter().map(|row| row.data).collect::<Vec<_>>()),
        Box::new(rows.iter().map(|row| row.received_at).collect::<Vec<_>>()),
    ];
    Statement::new(UPSERT_ALL, params)
}

/// An event naming a store we never registered is not applied blindly:
/// it is dead-lettered, so registering the store and replaying recovers it.
pub fn unknown_webhook() -> JobError {
    JobError::permanent(
        "unknown_webhook",
        "the store's webhook is not registered (worker lina webhooks add)",
    )
}
