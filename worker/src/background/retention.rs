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
use crate::apply::subject_state;
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
    context.faults.retention_chosen().await;
    let mut erased = 0;
    for chunk in expired.chunks(ERASURES_PER_TRANSACTION) {
        let people: Vec<(Person, SubjectKey)> = chunk
            .iter()
            .map(|person| (person.clone(), person.key(&context.hasher)))
            .collect();
        let mut client = context.pool.get().await?;
        let transaction = client.transaction().await?;
        // Chosen without a lock: someone updated or re-created since is
        // fresh again. Every writer of a person's row locks their state
        // first, so once locked, the rows read here stay as they are.
        let subjects: Vec<_> = people
            .iter()
            .map(|(person, key)| (*key, person.source()))
            .collect();
        subject_state::lock(&transaction, &subjects).await?;
        let still = still_expired(&transaction, chunk, seconds).await?;
        let people: Vec<(Person, SubjectKey)> = people
            .into_iter()
            .filter(|(person, _)| still.contains(person))
            .collect();
        if !people.is_empty() {
            erasure::erase_now(
                &transaction,
                &people,
                Cause::Retention,
                context.settings.erasure_clock_margin,
                &context.email.mailer,
            )
            .await?;
        }
        transaction.commit().await?;
        for (person, _) in &people {
            context.stats.retention_erasure(person.source().as_str());
        }
        erased += people.len();
    }
    if erased > 0 {
        tracing::info!(
            message = "Retention erased expired data.",
            subjects = erased
        );
    }
    Ok(erased)
}

/// Which of `people` are still not updated for `seconds`, read under
/// their state locks.
async fn still_expired(
    transaction: &common::db::Transaction<'_>,
    people: &[Person],
    seconds: f64,
) -> Result<Vec<Person>, JobError> {
    let mut applicants: Vec<&str> = Vec::new();
    let (mut webhooks, mut users) = (Vec::new(), Vec::new());
    for person in people {
        match person {
            Person::Lt { user_id } => applicants.push(user_id),
            Person::Lina { webhook, user } => {
                webhooks.push(*webhook);
                users.push(*user);
            }
        }
    }
    let mut still = Vec::with_capacity(people.len());
    for row in transaction
        .query(
            "SELECT mydatashare_user_id FROM lt_application
             WHERE mydatashare_user_id = ANY($1)
               AND updated_at < now() - make_interval(secs => $2)",
            &[&applicants, &seconds],
        )
        .await?
    {
        still.push(Person::Lt {
            user_id: column(&row, "mydatashare_user_id")?,
        });
    }
    for row in transaction
        .query(
            "SELECT e.webhook, e.user_uuid FROM lina_employee AS e
             JOIN unnest($1::uuid[], $2::uuid[]) AS p(webhook, user_uuid)
               ON e.webhook = p.webhook AND e.user_uuid = p.user_uuid
             WHERE e.updated_at < now() - make_interval(secs => $3)",
            &[&webhooks, &users, &seconds],
        )
        .await?
    {
        still.push(Person::Lina {
            webhook: column(&row, "webhook")?,
            user: column(&row, "user_uuid")?,
        });
    }
    Ok(still)
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
