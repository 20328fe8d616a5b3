//! Retention, run periodically by every worker (`INTAKE_RETENTION_INTERVAL`):
//!
//! - personal data not updated for `INTAKE_RETENTION` (off by default) is
//!   erased exactly like a revocation or withdrawal (cause `retention`);
//! - dead letters older than `INTAKE_DLQ_RETENTION` are purged (they hold
//!   personal data too), counted, and the age of the oldest one left is a
//!   metric, so ops are warned before a dead letter expires unseen.
//!
//! Several workers may run it at once: each erasure locks its subject, and
//! a dead letter one worker holds during its walk is invisible to another.

use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use tokio_util::sync::CancellationToken;

use crate::context::WorkerContext;
use crate::dead_letters::{self, DlqError, Filter, ParkingQueue};
use common::subject::SubjectKey;

use crate::apply::erasure::{self, Cause, Person};
use crate::error::{JobError, column};

/// Most subjects one round erases (the next round takes the rest).
const ROUND: i64 = 1000;

/// Subjects erased in one transaction (their state rows stay locked until
/// its commit, so batches touching them wait that long at most).
const ERASURES_PER_TRANSACTION: usize = 100;

pub async fn run_retention(context: Arc<WorkerContext>, shutdown: CancellationToken) {
    let interval = context.settings.retention_interval;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Some(retention) = context.settings.retention
            && let Err(error) = erase_expired(&context, retention).await
        {
            tracing::warn!(message = "Retention round failed; will try again.", %error);
        }
        if let Err(error) = purge_dead_letters(&context, context.settings.dlq_retention).await {
            tracing::warn!(message = "Dead-letter retention failed; will try again.", %error);
        }
    }
}

/// Erases every application and employee not updated for `retention`;
/// returns how many.
pub async fn erase_expired(
    context: &WorkerContext,
    retention: Duration,
) -> Result<usize, JobError> {
    let seconds = retention.as_secs_f64();
    let client = context.pool.get().await?;
    let mut expired: Vec<Person> = client
        .query(
            "SELECT mydatashare_user_id FROM lt_application
             WHERE updated_at < now() - make_interval(secs => $1) LIMIT $2",
            &[&seconds, &ROUND],
        )
        .await?
        .iter()
        .map(|row| {
            Ok(Person::Lt {
                user_id: column(row, "mydatashare_user_id")?,
            })
        })
        .collect::<Result<_, JobError>>()?;
    for row in client
        .query(
            "SELECT webhook, user_uuid FROM lina_employee
             WHERE updated_at < now() - make_interval(secs => $1) LIMIT $2",
            &[&seconds, &ROUND],
        )
        .await?
    {
        expired.push(Person::Lina {
            webhook: column(&row, "webhook")?,
            user: column(&row, "user_uuid")?,
        });
    }
    drop(client);
    for chunk in expired.chunks(ERASURES_PER_TRANSACTION) {
        let people: Vec<(Person, SubjectKey)> = chunk
            .iter()
            .map(|person| (person.clone(), person.key(&context.hasher)))
            .collect();
        let mut client = context.pool.get().await?;
        let transaction = client.transaction().await?;
        erasure::erase_now(
            &transaction,
            &people,
            Cause::Retention,
            context.settings.erasure_clock_margin,
            &context.email.mailer,
        )
        .await?;
        transaction.commit().await?;
        for person in chunk {
            context.stats.retention_erasure(person.source().as_str());
        }
    }
    if !expired.is_empty() {
        tracing::info!(
            message = "Retention erased expired data.",
            subjects = expired.len()
        );
    }
    Ok(expired.len())
}

/// Purges dead letters parked longer than `retention`; returns how many.
pub async fn purge_dead_letters(
    context: &WorkerContext,
    retention: Duration,
) -> Result<usize, DlqError> {
    let mut purged = 0;
    for queue in ParkingQueue::ALL {
        let filter = Filter {
            queues: vec![queue],
            older_than: Some(retention),
            ..Filter::default()
        };
        let summary = dead_letters::purge(
            &context.settings.amqp,
            &filter,
            false,
            &ProgressBar::hidden(),
        )
        .await?;
        let name = queue.name(&context.topology);
        context
            .stats
            .dead_letters_purged(&name, summary.matched, summary.oldest_kept);
        purged += summary.matched;
    }
    if purged > 0 {
        tracing::info!(
            message = "Dead letters past their retention purged.",
            purged
        );
    }
    Ok(purged)
}
