//! The `email_outbox` table.

use common::db::{DbPool, Transaction};
use common::subject::SubjectKey;
use std::time::Duration;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::error::{JobError, column};

pub struct OutboxRow {
    pub id: Uuid,
    pub subject: Option<SubjectKey>,
    pub language: String,
    pub recipient: Option<String>,
    pub first_name: Option<String>,
    pub status: String,
}

const ROW_COLUMNS: &str = "id, subject_key, language, recipient, first_name, status";

/// The row, locked for the sending transaction (waiting for whoever holds
/// it); `None` when it is gone (the application was withdrawn).
pub async fn lock(transaction: &Transaction<'_>, id: Uuid) -> Result<Option<OutboxRow>, JobError> {
    let select = transaction
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM email_outbox WHERE id = $1 FOR UPDATE"
        ))
        .await?;
    let row = transaction.query_opt(&select, &[&id]).await?;
    row.as_ref().map(outbox_row).transpose()
}

/// The rows of `ids` that no other transaction holds, locked for the
/// sending transaction. Rows held elsewhere (an erasure, another sender)
/// or gone are not returned: never waiting while holding several rows is
/// what keeps a sender out of deadlocks.
pub async fn lock_unheld(
    transaction: &Transaction<'_>,
    ids: &[Uuid],
) -> Result<Vec<OutboxRow>, JobError> {
    // Planned at each execution, like `pipeline::Statement::planned_each_time`.
    let select =
        format!("SELECT {ROW_COLUMNS} FROM email_outbox WHERE id = ANY($1) FOR UPDATE SKIP LOCKED");
    let rows = transaction
        .query_typed(&select, &[(&ids, Type::UUID_ARRAY)])
        .await?;
    rows.iter().map(outbox_row).collect()
}

fn outbox_row(row: &tokio_postgres::Row) -> Result<OutboxRow, JobError> {
    Ok(OutboxRow {
        id: column(row, "id")?,
        subject: SubjectKey::from_bytes(column(row, "subject_key")?),
        language: column(row, "language")?,
        recipient: column(row, "recipient")?,
        first_name: column(row, "first_name")?,
        status: column(row, "status")?,
    })
}

/// Sent: the address and name are no longer needed, so they go.
pub async fn mark_sent(transaction: &Transaction<'_>, ids: &[Uuid]) -> Result<(), JobError> {
    if ids.is_empty() {
        return Ok(());
    }
    // Planned at each execution, like `pipeline::Statement::planned_each_time`.
    transaction
        .execute_typed(
            "UPDATE email_outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1,
                 recipient = NULL, first_name = NULL, last_error = NULL
             WHERE id = ANY($1)",
            &[(&ids, Type::UUID_ARRAY)],
        )
        .await?;
    Ok(())
}

/// A try that failed: permanently (the row becomes `failed`) or to be
/// retried (it stays `pending`).
pub struct Failure {
    pub id: Uuid,
    pub permanent: bool,
    /// The reason code of a permanent failure, the mailer's bounded words
    /// for a transient one ("SMTP 451", "SMTP TLS handshake failed: …").
    pub reason: String,
}

/// Notes failed tries, counting the attempt and keeping the reason.
pub async fn note_failures(
    transaction: &Transaction<'_>,
    failures: &[Failure],
) -> Result<(), JobError> {
    if failures.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = failures.iter().map(|failure| failure.id).collect();
    let reasons: Vec<&str> = failures
        .iter()
        .map(|failure| failure.reason.as_str())
        .collect();
    let permanent: Vec<bool> = failures.iter().map(|failure| failure.permanent).collect();
    // Planned at each execution, like `pipeline::Statement::planned_each_time`.
    transaction
        .execute_typed(
            "UPDATE email_outbox AS o SET attempts = o.attempts + 1, last_error = f.reason,
                 status = CASE WHEN f.permanent THEN 'failed' ELSE o.status END
             FROM unnest($1::uuid[], $2::text[], $3::bool[]) AS f(id, reason, permanent)
             WHERE o.id = f.id",
            &[
                (&ids, Type::UUID_ARRAY),
                (&reasons, Type::TEXT_ARRAY),
                (&permanent, Type::BOOL_ARRAY),
            ],
        )
        .await?;
    Ok(())
}

/// Notes that these rows' jobs were published.
pub async fn mark_enqueued(pool: &DbPool, ids: &[Uuid]) -> Result<(), JobError> {
    if ids.is_empty() {
        return Ok(());
    }
    let client = pool.get().await?;
    client
        .execute_typed(
            // Rows another transaction holds (being sent, or claimed by the
            // sweeper) are skipped rather than waited for: waiting on rows
            // locked in another order could deadlock, and those rows are
            // seen to by whoever holds them. Planned at each execution, like
            // `pipeline::Statement::planned_each_time`.
            "UPDATE email_outbox SET enqueued_at = now()
             WHERE id IN (
                 SELECT id FROM email_outbox WHERE id = ANY($1)
                 ORDER BY id FOR UPDATE SKIP LOCKED)",
            &[(&ids, Type::UUID_ARRAY)],
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
    rows.iter().map(|row| column(row, "id")).collect()
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
