//! The `email_outbox` table.

use common::db::{DbPool, Transaction};
use common::subject::SubjectKey;
use std::time::Duration;
use uuid::Uuid;

use crate::error::JobError;
use crate::pipeline::{self, Statement, Yields};

pub struct OutboxRow {
    pub id: Uuid,
    pub subject: Option<SubjectKey>,
    pub language: String,
    pub recipient: Option<String>,
    pub first_name: Option<String>,
    pub status: String,
}

/// The row, locked for the sending transaction; `None` when it is gone
/// (the application was withdrawn).
pub async fn lock(transaction: &Transaction<'_>, id: Uuid) -> Result<Option<OutboxRow>, JobError> {
    let select = transaction
        .prepare_cached(
            "SELECT subject_key, language, recipient, first_name, status
             FROM email_outbox WHERE id = $1 FOR UPDATE",
        )
        .await?;
    let row = transaction.query_opt(&select, &[&id]).await?;
    Ok(row.map(|row| OutboxRow {
        id,
        subject: SubjectKey::from_bytes(row.get::<_, &[u8]>(0)),
        language: row.get(1),
        recipient: row.get(2),
        first_name: row.get(3),
        status: row.get(4),
    }))
}

/// Sent: the address and name are no longer needed, so they go.
pub async fn mark_sent(transaction: &Transaction<'_>, id: Uuid) -> Result<(), JobError> {
    let update = transaction
        .prepare_cached(
            "UPDATE email_outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1,
                 recipient = NULL, first_name = NULL, last_error = NULL
             WHERE id = $1",
        )
        .await?;
    transaction.execute(&update, &[&id]).await?;
    Ok(())
}

/// A permanent failure (`failed`) or a try that will be retried (`pending`).
pub async fn note_failure(
    transaction: &Transaction<'_>,
    id: Uuid,
    permanent: bool,
    reason: &str,
) -> Result<(), JobError> {
    let update = transaction
        .prepare_cached(
            "UPDATE email_outbox SET attempts = attempts + 1, last_error = $2,
                 status = CASE WHEN $3 THEN 'failed' ELSE status END
             WHERE id = $1",
        )
        .await?;
    transaction
        .execute(&update, &[&id, &reason, &permanent])
        .await?;
    Ok(())
}

/// An erasure: the person's unsent rows go; sent rows keep no address
/// already. Returns every row id of theirs (their `.eml` copies go too).
pub async fn erase_for(
    transaction: &Transaction<'_>,
    subject: &SubjectKey,
) -> Result<Vec<Uuid>, JobError> {
    let [select, delete] = erase_statements(subject);
    let rows = pipeline::send_all(transaction, &[&select, &delete]).await?;
    Ok(rows[0].iter().map(|row| row.get(0)).collect())
}

/// `erase_for` as statements of a batch: the first one's rows are the ids
/// (it locks them, so a send in progress finishes first).
pub fn erase_statements(subject: &SubjectKey) -> [Statement<'_>; 2] {
    [
        Statement::new(
            "SELECT id FROM email_outbox WHERE subject_key = $1 FOR UPDATE",
            vec![Box::new(subject.as_bytes())],
        )
        .yielding(Yields::ErasedOutbox),
        Statement::new(
            "DELETE FROM email_outbox WHERE subject_key = $1 AND status <> 'sent'",
            vec![Box::new(subject.as_bytes())],
        ),
    ]
}

/// Notes that these rows' jobs were published.
pub async fn mark_enqueued(pool: &DbPool, ids: &[Uuid]) -> Result<(), JobError> {
    if ids.is_empty() {
        return Ok(());
    }
    let client = pool.get().await?;
    client
        .execute(
            // Rows another transaction holds (being sent, or claimed by the
            // sweeper) are skipped rather than waited for: waiting on rows
            // locked in another order could deadlock, and those rows are
            // seen to by whoever holds them.
            "UPDATE email_outbox SET enqueued_at = now()
             WHERE id IN (
                 SELECT id FROM email_outbox WHERE id = ANY($1)
                 ORDER BY id FOR UPDATE SKIP LOCKED)",
            &[&ids],
        )
        .await?;
    Ok(())
}

/// Claims pending rows whose job was never published (older than `grace`)
/// or was published so long ago (`resend_after`) that it must have been
/// lost; several workers may sweep at once (`SKIP LOCKED`).
pub async fn claim_unpublished(
    pool: &DbPool,
    grace: Duration,
    resend_after: Duration,
    limit: i64,
) -> Result<Vec<Uuid>, JobError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "UPDATE email_outbox SET enqueued_at = now()
             WHERE id IN (
                 SELECT id FROM email_outbox
                 WHERE status = 'pending'
                   AND ((enqueued_at IS NULL AND created_at < now() - make_interval(secs => $1))
                        OR enqueued_at < now() - make_interval(secs => $2))
                 ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id",
            &[&grace.as_secs_f64(), &resend_after.as_secs_f64(), &limit],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Gives claimed rows back when their jobs could not be published.
pub async fn unclaim(pool: &DbPool, ids: &[Uuid]) -> Result<(), JobError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE email_outbox SET enqueued_at = NULL WHERE id = ANY($1)",
            &[&ids],
        )
        .await?;
    Ok(())
}
