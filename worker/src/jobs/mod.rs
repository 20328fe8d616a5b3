//! One module per kind of job, dispatched in one `match`.
//!
//! An event is first *prepared* (parsed once, its subject and order key
//! known), so the batch can lock every subject up front in sorted order;
//! then *planned* under the subject-state rules: duplicates and stale events
//! are dropped and counted, everything else is applied and recorded.

pub mod lina_consent;
mod lina_withdrawal;
mod lt_application;
mod lt_revocation;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use common::senders::lina::{self, LinaConsent, LinaPayload};
use common::senders::lt::{self, LtPayload};
use common::subject::{BodyHash, SubjectKey};
use common::{Envelope, EventKind, Source};
use serde_json::Value;
use uuid::Uuid;

use crate::context::WorkerContext;
use crate::error::JobError;
use crate::pipeline::Statement;
use crate::subject_state::{self, OrderKey, SubjectState, Verdict};
use lt_application::ApplicationRow;

/// What applying an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The event changed the stored state.
    Applied,
    /// The event erased the subject's personal data (and left a tombstone).
    Erased,
    /// Already applied (the same event, or a resend of the same body): dropped.
    Duplicate,
    /// Older than the subject's newest state or tombstone: dropped.
    Stale,
    /// An e-mail was handed to the SMTP server (or written as a file).
    Sent,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Erased => "erased",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::Sent => "sent",
        }
    }
}

/// The work an event asks for, parsed.
#[derive(Debug)]
pub enum Job {
    LtApplication(LtPayload),
    LtRevocation(LtPayload),
    LinaConsent(LinaConsent),
    LinaWithdrawal {
        webhook: uuid::Uuid,
        user: uuid::Uuid,
    },
}

impl Job {
    fn is_erasure(&self) -> bool {
        matches!(self, Job::LtRevocation(_) | Job::LinaWithdrawal { .. })
    }

    /// The LINA store (webhook) the event concerns.
    pub fn store(&self) -> Option<&Uuid> {
        match self {
            Job::LinaConsent(LinaConsent { webhook, .. }) | Job::LinaWithdrawal { webhook, .. } => {
                Some(webhook)
            }
            Job::LtApplication(_) | Job::LtRevocation(_) => None,
        }
    }

    /// Only LT resends: for LINA a body seen before is a new event (the same
    /// consent given again after a withdrawal).
    fn recognises_resends(&self) -> bool {
        matches!(self, Job::LtApplication(_))
    }

    /// Why an erasure happened, for the erasure log.
    fn erasure_cause(&self) -> &'static str {
        match self {
            Job::LinaWithdrawal { .. } => "withdrawal",
            _ => "revocation",
        }
    }
}

/// An event ready to apply.
#[derive(Debug)]
pub struct Prepared {
    pub subject: SubjectKey,
    pub source: Source,
    pub order: OrderKey,
    pub body_hash: BodyHash,
    pub job: Job,
}

/// Parses an event once: what to do, to whom, and where it stands in order.
pub fn prepare(context: &WorkerContext, envelope: &Envelope) -> Result<Prepared, JobError> {
    let settings = &context.settings;
    let (job, body, subject, event_time) = match envelope.kind {
        EventKind::LtApplication | EventKind::LtRevocation => {
            let payload = lt::parse(&envelope.body, &settings.lt_email_pointer)
                .map_err(|error| JobError::permanent(error.code(), error.to_string()))?;
            let subject = context.hasher.lt(&payload.user_id);
            let event_time =
                sender_time(&payload.profile, settings.lt_event_time_pointer.as_deref());
            let body = context.hasher.body(&payload.profile);
            // The payload decides, not the header: the gateway derived one from the other.
            let job = if payload.is_revocation() {
                Job::LtRevocation(payload)
            } else {
                Job::LtApplication(payload)
            };
            (job, body, subject, event_time)
        }
        EventKind::LinaConsent | EventKind::LinaWithdrawal => {
            let payload = lina::parse(&envelope.body)
                .map_err(|error| JobError::permanent(error.code(), error.to_string()))?;
            let subject = context
                .hasher
                .lina(&payload.webhook().to_string(), &payload.user().to_string());
            let body = match &payload {
                LinaPayload::Consent(consent) => context.hasher.body(&consent.data),
                LinaPayload::Withdrawal { .. } => context.hasher.body(&Value::Null),
            };
            let job = match payload {
                LinaPayload::Consent(consent) => Job::LinaConsent(consent),
                LinaPayload::Withdrawal { webhook, user } => Job::LinaWithdrawal { webhook, user },
            };
            (job, body, subject, None)
        }
        EventKind::EmailAcknowledgement => {
            return Err(JobError::permanent(
                "unsupported_kind",
                format!("this worker does not handle {}", envelope.kind),
            ));
        }
    };
    Ok(Prepared {
        subject,
        source: envelope.kind.source(),
        order: OrderKey {
            at: event_time.unwrap_or(envelope.received_at),
            id: envelope.id,
        },
        body_hash: body,
        job,
    })
}

/// The sender's own event time, where configured and present (RFC 3339).
fn sender_time(body: &Value, pointer: Option<&str>) -> Option<DateTime<Utc>> {
    let text = body.pointer(pointer?)?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// One write of an event.
pub enum Write<'a> {
    Statement(Statement<'a>),
    /// An LT application's upsert: a batch writes those of consecutive
    /// events for different people in one statement.
    Application(ApplicationRow<'a>),
}

/// The statements for `writes`, in their order; consecutive applications
/// of different people become one statement.
pub fn statements<'a>(writes: impl IntoIterator<Item = Write<'a>>) -> Vec<Statement<'a>> {
    let mut statements = Vec::new();
    let mut applications: Vec<ApplicationRow<'a>> = Vec::new();
    for write in writes {
        match write {
            Write::Application(row) => {
                // One statement cannot touch a row twice, and a person's
                // two events must stay in their order.
                if applications
                    .iter()
                    .any(|other| other.user_id == row.user_id)
                {
                    statements.push(lt_application::upsert_all(&applications));
                    applications.clear();
                }
                applications.push(row);
            }
            Write::Statement(statement) => {
                if !applications.is_empty() {
                    statements.push(lt_application::upsert_all(&applications));
                    applications.clear();
                }
                statements.push(statement);
            }
        }
    }
    if !applications.is_empty() {
        statements.push(lt_application::upsert_all(&applications));
    }
    statements
}

/// What an event will do, decided before anything is written.
pub struct Planned<'a> {
    pub outcome: Outcome,
    /// Its writes, erasure record included (none when dropped).
    pub writes: Vec<Write<'a>>,
    /// The subject's state once the statements ran (`None`: unchanged); the
    /// batch writes it back.
    pub state: Option<SubjectState>,
}

impl Planned<'_> {
    fn dropped(outcome: Outcome) -> Self {
        Planned {
            outcome,
            writes: Vec::new(),
            state: None,
        }
    }
}

/// Decides what an event does, from its subject's locked `state` and the
/// registered LINA `stores`, without touching the database: the batch then
/// sends every event's statements at once (see `pipeline`). An `Err` is
/// this event's alone (it is set aside, the others go on).
pub fn plan<'a>(
    context: &WorkerContext,
    envelope: &'a Envelope,
    prepared: &'a Prepared,
    state: &SubjectState,
    stores: &HashSet<Uuid>,
) -> Result<Planned<'a>, JobError> {
    if let Some(store) = prepared.job.store()
        && !stores.contains(store)
    {
        return Err(lina_consent::unknown_webhook());
    }
    let is_erasure = prepared.job.is_erasure();
    match state.judge(
        prepared.order,
        &prepared.body_hash,
        prepared.job.recognises_resends(),
    ) {
        Verdict::Apply => {}
        Verdict::Duplicate => return Ok(Planned::dropped(Outcome::Duplicate)),
        Verdict::Stale => return Ok(Planned::dropped(Outcome::Stale)),
    }
    let mut writes = match &prepared.job {
        Job::LtApplication(payload) => vec![Write::Application(lt_application::row(
            context, envelope, prepared, payload,
        )?)],
        Job::LtRevocation(payload) => lt_revocation::statements(prepared, payload)
            .into_iter()
            .map(Write::Statement)
            .collect(),
        Job::LinaConsent(consent) => {
            vec![Write::Statement(lina_consent::statement(envelope, consent))]
        }
        Job::LinaWithdrawal { webhook, user } => {
            vec![Write::Statement(lina_withdrawal::statement(webhook, user))]
        }
    };
    let mut next = state.clone();
    next.applied(prepared.order, prepared.body_hash, is_erasure);
    if is_erasure {
        writes.push(Write::Statement(subject_state::log_erasure_statement(
            &prepared.subject,
            prepared.source,
            prepared.job.erasure_cause(),
        )));
    }
    Ok(Planned {
        outcome: if is_erasure {
            Outcome::Erased
        } else {
            Outcome::Applied
        },
        writes,
        state: Some(next),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_sender_time_is_used_only_where_configured_and_valid() {
        let body = json!({"shared_at": "2026-11-20T08:14:03Z", "bad": "yesterday"});
        assert!(sender_time(&body, None).is_none());
        assert!(sender_time(&body, Some("/bad")).is_none());
        assert!(sender_time(&body, Some("/missing")).is_none());
        let time = sender_time(&body, Some("/shared_at")).map(|time| time.to_rfc3339());
        assert_eq!(time.as_deref(), Some("2026-11-20T08:14:03+00:00"));
    }
}
