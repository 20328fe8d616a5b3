//! The e-mail job: send one outbox row's acknowledgement, exactly once.
//!
//! The row is locked, the e-mail handed over, and the row marked sent in one
//! transaction: a redelivered job (or a second worker) waits for the lock and
//! then finds the row sent. The one window for a duplicate is a crash (or a
//! lost database connection) after the SMTP server accepted the message and
//! before the commit: the job is then redelivered and sent again, with the
//! same Message-ID (`<outbox id@sender domain>`), so the duplicate is
//! recognisable downstream.

use common::Envelope;
use common::envelope::EnvelopeError;
use futures_util::StreamExt;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use serde_json::Value;
use uuid::Uuid;

use super::outbox::{self, OutboxRow};
use crate::apply::EventResult;
use crate::context::WorkerContext;
use crate::error::JobError;
use crate::jobs::Outcome;

/// The job's body: the outbox row's id, nothing personal.
pub fn job_body(outbox_id: Uuid) -> Vec<u8> {
    serde_json::json!({ "outbox_id": outbox_id })
        .to_string()
        .into_bytes()
}

/// Sends each job's e-mail, `INTAKE_EMAIL_CONCURRENCY` at a time; one result
/// per job, in order (no batch-wide failure: each e-mail is its own
/// transaction). Concurrency, because an SMTP conversation spends most of
/// its time waiting: lettre writes a message's body and its final dot
/// separately, so each message waits out the server's delayed ACK (~40 ms).
pub async fn send_batch(
    context: &WorkerContext,
    envelopes: &[Result<Envelope, EnvelopeError>],
) -> Vec<EventResult> {
    let concurrency = context.email.settings.concurrency.max(1);
    let jobs: Vec<_> = envelopes
        .iter()
        .map(|envelope| send_job(context, envelope))
        .collect();
    futures_util::stream::iter(jobs)
        .buffered(concurrency)
        .collect()
        .await
}

async fn send_job(
    context: &WorkerContext,
    envelope: &Result<Envelope, EnvelopeError>,
) -> EventResult {
    match envelope {
        Ok(envelope) => match outbox_id(envelope) {
            Some(id) => send_one(context, id).await,
            None => Err(JobError::permanent(
                "bad_email_job",
                "the job names no outbox row",
            )),
        },
        Err(error) => Err(JobError::permanent("bad_envelope", error.to_string())),
    }
}

fn outbox_id(envelope: &Envelope) -> Option<Uuid> {
    let body: Value = serde_json::from_slice(&envelope.body).ok()?;
    Uuid::parse_str(body.get("outbox_id")?.as_str()?).ok()
}

async fn send_one(context: &WorkerContext, id: Uuid) -> EventResult {
    let mut client = context.pool.get().await?;
    let transaction = client.transaction().await?;
    let Some(row) = outbox::lock(&transaction, id).await? else {
        // Erased: the application was withdrawn before its e-mail went out.
        return Ok((Outcome::Stale, None));
    };
    if row.status != "pending" {
        return Ok((Outcome::Duplicate, row.subject));
    }
    let sent = match compose(context, &row) {
        Ok(message) => context.email.mailer.send(message, id).await,
        Err(error) => Err(error),
    };
    match sent {
        Ok(()) => {
            outbox::mark_sent(&transaction, id).await?;
            transaction.commit().await?;
            Ok((Outcome::Sent, row.subject))
        }
        Err(error) => {
            let permanent = matches!(error, JobError::Permanent { .. });
            outbox::note_failure(&transaction, id, permanent, error.reason()).await?;
            transaction.commit().await?;
            if permanent {
                context.stats.email("failed");
            }
            Err(error)
        }
    }
}

/// Builds the e-mail: text and HTML parts in the applicant's language, the
/// Message-ID derived from the outbox row.
fn compose(context: &WorkerContext, row: &OutboxRow) -> Result<Message, JobError> {
    let email = &context.email;
    let settings = &email.settings;
    let to: Mailbox = row
        .recipient
        .as_deref()
        .and_then(|recipient| recipient.parse().ok())
        .ok_or_else(|| {
            JobError::permanent("invalid_address", "the recipient address does not parse")
        })?;
    let rendered = email
        .templates
        .render_acknowledgement(
            &row.language,
            row.first_name.as_deref(),
            &settings.partner_name,
        )
        .map_err(|error| JobError::permanent("template_error", error.to_string()))?;
    let mut builder = Message::builder()
        .from(settings.from.clone())
        .to(to)
        .subject(rendered.subject)
        .message_id(Some(format!(
            "<{}@{}>",
            row.id,
            settings.from.email.domain()
        )));
    if let Some(reply_to) = &settings.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            rendered.text,
            rendered.html,
        ))
        .map_err(|error| JobError::permanent("unbuildable_email", error.to_string()))
}

/// Publishes the jobs of these outbox rows; returns the ids published.
pub async fn publish_jobs(context: &WorkerContext, ids: &[Uuid]) -> Vec<Uuid> {
    // Confirmed concurrently: a batch of new applications should not wait
    // for one confirm after another before it is acked.
    let jobs: Vec<_> = ids.iter().map(|id| publish_job(context, *id)).collect();
    futures_util::future::join_all(jobs)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Publishes one outbox row's job; `None` when the broker did not confirm it.
async fn publish_job(context: &WorkerContext, id: Uuid) -> Option<Uuid> {
    let queue = context.topology.work_queue(common::amqp::WorkQueue::Email);
    let envelope = Envelope::new(common::EventKind::EmailAcknowledgement, None, job_body(id));
    match context
        .publisher
        .publish("", &queue, &envelope.body, envelope.amqp_properties())
        .await
    {
        Ok(()) => Some(id),
        Err(error) => {
            tracing::warn!(
                message = "E-mail job not published; the sweeper will.",
                outbox_id = %id,
                reason = error.code()
            );
            None
        }
    }
}
