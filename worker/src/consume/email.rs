//! The e-mail queue's jobs: send one outbox row's acknowledgement, exactly once.
//!
//! The row is locked, the e-mail handed over, and the row marked sent in one
//! transaction: a redelivered job (or a second worker) waits for the lock and
//! then finds the row sent. Jobs are sent in chunks of
//! `INTAKE_EMAIL_CONCURRENCY`, one transaction per chunk (one lock, the
//! hand-overs at once, one update, one commit), instead of one transaction
//! per e-mail: four statements per chunk rather than per e-mail, on the
//! database the worker's batches need. The one window for a duplicate is a crash (or a lost database
//! connection) after the SMTP server accepted the messages and before the
//! commit, as many as a chunk: the jobs are then redelivered and sent again,
//! with the same Message-ID (`<outbox id@sender domain>`), so a duplicate is
//! recognisable downstream.

use std::collections::HashMap;

use common::subject::SubjectKey;
use uuid::Uuid;

use crate::apply::EventResult;
use crate::apply::jobs::Outcome;
use crate::context::WorkerContext;
use crate::email::compose::compose;
use crate::email::outbox::{self, OutboxRow};
use crate::error::{JobError, once_handed_over};
use crate::metrics::email_outcome;

/// Sends each job's e-mail; one result per job, in order. A chunk's failure
/// to reach the database fails that chunk's jobs only (they are retried).
/// A chunk's e-mails are handed over at once because an SMTP conversation
/// spends most of its time waiting: lettre writes a message's body and its
/// final dot separately, so each message waits out the server's delayed ACK
/// (~40 ms).
pub async fn send_batch(context: &WorkerContext, outbox_ids: &[Uuid]) -> Vec<EventResult> {
    let jobs: Vec<Result<Uuid, JobError>> = outbox_ids.iter().copied().map(Ok).collect();
    let chunk_size = context.email.settings.concurrency.max(1);
    let mut results = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(chunk_size) {
        results.extend(send_chunk(context, chunk).await);
    }
    results
}

/// The chunk's free rows in one transaction; then, one by one, the jobs
/// whose rows another transaction held (or that are gone, or named twice).
async fn send_chunk(context: &WorkerContext, jobs: &[Result<Uuid, JobError>]) -> Vec<EventResult> {
    let ids: Vec<Uuid> = jobs
        .iter()
        .filter_map(|job| job.as_ref().ok().copied())
        .collect();
    let mut settled = match send_unheld(context, &ids).await {
        Ok(settled) => settled,
        Err(error) => {
            return jobs
                .iter()
                .map(|job| job.clone().and(Err(error.clone())))
                .collect();
        }
    };
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        results.push(match job {
            Err(error) => Err(error.clone()),
            Ok(id) => match settled.remove(id) {
                Some(result) => result,
                None => send_one(context, *id).await,
            },
        });
    }
    results
}

/// Sends the e-mails of the rows of `ids` that no other transaction holds,
/// in one transaction; the answer has a result for each of those rows.
async fn send_unheld(
    context: &WorkerContext,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, EventResult>, JobError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut client = context.pool.get().await?;
    let transaction = client.transaction().await?;
    let (pending, done): (Vec<OutboxRow>, Vec<OutboxRow>) = outbox::lock_unheld(&transaction, ids)
        .await?
        .into_iter()
        .partition(|row| row.status == "pending");
    let handed_over =
        futures_util::future::join_all(pending.iter().map(|row| hand_over(context, row))).await;
    let sent: Vec<Uuid> = pending
        .iter()
        .zip(&handed_over)
        .filter(|(_, result)| result.is_ok())
        .map(|(row, _)| row.id)
        .collect();
    let failures: Vec<outbox::Failure> = pending
        .iter()
        .zip(&handed_over)
        .filter_map(|(row, result)| result.as_ref().err().map(|error| failure(row.id, error)))
        .collect();
    let recorded = async {
        outbox::mark_sent(&transaction, &sent).await?;
        outbox::note_failures(&transaction, &failures).await?;
        transaction.commit().await.map_err(JobError::from)
    };
    recorded.await.map_err(once_handed_over)?;
    let mut settled: HashMap<Uuid, EventResult> = done
        .into_iter()
        .map(|row| (row.id, Ok((Outcome::Duplicate, row.subject))))
        .collect();
    for (row, result) in pending.into_iter().zip(handed_over) {
        settled.insert(row.id, settle(context, row.subject, result));
    }
    Ok(settled)
}

/// One row in a transaction of its own, waiting for whoever holds it (an
/// erasure, another sender) and then finding it gone or sent.
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
    let result = hand_over(context, &row).await;
    let recorded = async {
        match &result {
            Ok(()) => outbox::mark_sent(&transaction, &[id]).await?,
            Err(error) => outbox::note_failures(&transaction, &[failure(id, error)]).await?,
        }
        transaction.commit().await.map_err(JobError::from)
    };
    recorded.await.map_err(once_handed_over)?;
    settle(context, row.subject, result)
}

/// Composes the row's e-mail and hands it to the SMTP server (or the file).
async fn hand_over(context: &WorkerContext, row: &OutboxRow) -> Result<(), JobError> {
    let message = compose(context, row)?;
    let result = context.email.mailer.send(message, row.id).await;
    if let Err(JobError::Transient(reason)) = &result {
        // The mailer's words (a code, a fixed phrase), never an address.
        tracing::warn!(
            message = "E-mail not handed over; it will be retried.",
            outbox_id = %row.id,
            %reason,
        );
    }
    result
}

fn failure(id: Uuid, error: &JobError) -> outbox::Failure {
    outbox::Failure {
        id,
        permanent: matches!(error, JobError::Permanent { .. }),
        reason: match error {
            JobError::Transient(words) => words.clone(),
            other => other.reason().to_owned(),
        },
    }
}

/// The job's result once its row's transaction committed.
fn settle(
    context: &WorkerContext,
    subject: Option<SubjectKey>,
    handed_over: Result<(), JobError>,
) -> EventResult {
    match handed_over {
        Ok(()) => Ok((Outcome::Sent, subject)),
        Err(error) => {
            if matches!(error, JobError::Permanent { .. }) {
                context.stats.email(email_outcome::FAILED);
            }
            Err(error)
        }
    }
}
