//! One module per kind of job, dispatched in one `match`.
//!
//! An event is first *prepared* (parsed once, its subject and order key
//! known), so the batch can lock every subject up front in sorted order;
//! then *applied* under the subject-state rules: duplicates and stale events
//! are dropped and counted, everything else is applied and recorded.

mod lina_consent;
mod lina_withdrawal;
mod lt_application;
mod lt_revocation;

use chrono::{DateTime, Utc};
use common::db::Transaction;
use common::senders::lina::{self, LinaConsent, LinaPayload};
use common::senders::lt::{self, LtPayload};
use common::subject::{BodyHash, SubjectKey};
use common::{Envelope, EventKind, Source};
use serde_json::Value;
use uuid::Uuid;

use crate::context::WorkerContext;
use crate::error::JobError;
use crate::subject_state::{self, OrderKey, States, Verdict};

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

/// What must happen once the batch committed.
#[derive(Debug, Default)]
pub struct Followups {
    /// Outbox rows whose e-mail jobs are to be published.
    pub emails: Vec<Uuid>,
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

/// Applies one prepared event inside `transaction` (a savepoint of the
/// batch), its subject already locked.
pub async fn apply(
    transaction: &Transaction<'_>,
    context: &WorkerContext,
    envelope: &Envelope,
    prepared: &Prepared,
    followups: &mut Followups,
    states: &mut States,
) -> Result<Outcome, JobError> {
    if let Job::LinaConsent(LinaConsent { webhook, .. }) | Job::LinaWithdrawal { webhook, .. } =
        &prepared.job
    {
        lina_consent::require_registered(transaction, webhook).await?;
    }
    // The batch locked and read every state; an event changes it only once
    // it has fully succeeded (a failed event leaves the map as it was).
    let mut state = match states.get(&prepared.subject) {
        Some(state) => state.clone(),
        None => subject_state::load(transaction, &prepared.subject).await?,
    };
    let is_erasure = prepared.job.is_erasure();
    match state.judge(
        prepared.order,
        &prepared.body_hash,
        prepared.job.recognises_resends(),
    ) {
        Verdict::Apply => {}
        Verdict::Duplicate => return Ok(Outcome::Duplicate),
        Verdict::Stale => return Ok(Outcome::Stale),
    }
    let outcome = match &prepared.job {
        Job::LtApplication(payload) => {
            lt_application::apply(transaction, context, envelope, prepared, payload, followups)
                .await?
        }
        Job::LtRevocation(payload) => {
            lt_revocation::apply(transaction, context, prepared, payload).await?
        }
        Job::LinaConsent(consent) => lina_consent::apply(transaction, envelope, consent).await?,
        Job::LinaWithdrawal { webhook, user } => {
            lina_withdrawal::apply(transaction, webhook, user).await?
        }
    };
    state.applied(prepared.order, prepared.body_hash, is_erasure);
    subject_state::save(transaction, &prepared.subject, &state).await?;
    if is_erasure {
        subject_state::log_erasure(
            transaction,
            &prepared.subject,
            prepared.source,
            prepared.job.erasure_cause(),
        )
        .await?;
    }
    states.insert(prepared.subject, state);
    Ok(outcome)
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
