//! An LT application or update: upsert the person's row, keeping the whole
//! profile as received. When the upsert creates the row (a first share, an
//! update for someone we never had, a re-application after a revocation),
//! the acknowledgement e-mail is queued in the same statement (outbox).
//!
//! A batch upserts the applications of different people in one statement
//! (`upsert_all`, grouped by `jobs::statements`): one statement cannot
//! touch the same row twice, and the order between two events of the same
//! person must stay theirs.

use chrono::{DateTime, Utc};
use common::Envelope;
use common::senders::json::Json;
use common::senders::lt::LtPayload;
use common::subject::SubjectKey;
use uuid::Uuid;

use super::{Prepared, Rules};
use crate::apply::json_text::JsonText;
use crate::apply::pipeline::{Param, Statement, Yields};
use crate::email::language_of;
use crate::error::JobError;

/// `xmax = 0` is true for a row the upsert inserted, and only then does
/// the outbox get a row (its id is returned). The e-mail job carries only
/// that id; the address waits in the outbox until the e-mail is sent.
const UPSERT_AND_ACKNOWLEDGE: &str = "
    WITH application AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[],
                             $5::timestamptz[], $6::uuid[], $7::bytea[], $8::text[], $9::text[])
            AS a(user_id, email, status, profile, received_at, outbox_id, subject_key,
                 language, first_name)
    ), upsert AS (
        INSERT INTO lt_application
            (mydatashare_user_id, email, status, profile, first_received_at, last_received_at)
        SELECT user_id, email, status, profile, received_at, received_at FROM application
        ON CONFLICT (mydatashare_user_id) DO UPDATE SET
            email = EXCLUDED.email,
            status = EXCLUDED.status,
            profile = EXCLUDED.profile,
            last_received_at = EXCLUDED.last_received_at,
            updated_at = now()
        RETURNING mydatashare_user_id, (xmax = 0) AS created
    )
    INSERT INTO email_outbox (id, subject_key, template, language, recipient, first_name)
    SELECT a.outbox_id, a.subject_key, 'acknowledgement', a.language, a.email, a.first_name
    FROM upsert JOIN application AS a ON a.user_id = upsert.mydatashare_user_id
    WHERE upsert.created
    RETURNING id";

/// One person's application, as the batch will write it (no `Debug`: it
/// holds personal data).
pub struct ApplicationRow<'a> {
    pub subject: &'a SubjectKey,
    user_id: &'a str,
    email: &'a str,
    status: &'static str,
    /// The whole profile as LT sent it.
    profile: JsonText<'a>,
    received_at: DateTime<Utc>,
    /// The acknowledgement's id, used only if the upsert creates the row.
    outbox_id: Uuid,
    language: &'static str,
    first_name: Option<&'a str>,
}

pub fn row<'a>(
    rules: &Rules<'_>,
    envelope: &'a Envelope,
    prepared: &'a Prepared<'a>,
    payload: &'a LtPayload<'a>,
) -> Result<ApplicationRow<'a>, JobError> {
    let email = payload
        .email
        .as_deref()
        .ok_or_else(|| JobError::permanent("missing_email", "an application needs an e-mail"))?;
    let first_name = payload
        .profile
        .pointer(rules.first_name_pointer)
        .and_then(Json::as_str)
        .filter(|name| !name.trim().is_empty());
    Ok(ApplicationRow {
        subject: &prepared.subject,
        user_id: &payload.user_id,
        email,
        status: payload.status.as_str(),
        profile: JsonText::of_body(&envelope.body),
        received_at: envelope.received_at,
        outbox_id: rules.ids.next_id(),
        language: language_of(&payload.profile, rules.language_pointer),
        first_name,
    })
}

/// One statement for the applications of different people; its rows are
/// the acknowledgements it created.
pub fn upsert_all<'a>(rows: &[ApplicationRow<'a>]) -> Statement<'a> {
    let params: Vec<Param<'a>> = vec![
        Box::new(rows.iter().map(|row| row.user_id).collect::<Vec<_>>()),
        Box::new(rows.iter().map(|row| row.email).collect::<Vec<_>>()),
        Box::new(rows.iter().map(|row| row.status).collect::<Vec<_>>()),
        Box::new(rows.iter().map(|row| row.profile).collect::<Vec<_>>()),
        Box::new(rows.iter().map(|row| row.received_at).collect::<Vec<_>>()),
        Box::new(rows.iter().map(|row| row.outbox_id).collect::<Vec<_>>()),
        Box::new(
            rows.iter()
                .map(|row| row.subject.as_bytes())
                .collect::<Vec<_>>(),
        ),
        Box::new(rows.iter().map(|row| row.language).collect::<Vec<_>>()),
        Box::new(rows.iter().map(|row| row.first_name).collect::<Vec<_>>()),
    ];
    Statement::new(UPSERT_AND_ACKNOWLEDGE, params).yielding(Yields::Acknowledgement)
}
