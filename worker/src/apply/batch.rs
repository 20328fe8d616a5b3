//! Applying a batch of events in ONE transaction: every subject of the
//! batch locked and read first (sorted, one round trip), each event planned
//! in order against those states, then every event's statements sent at
//! once (pipelined) and committed. Only when PostgreSQL refuses a statement
//! is the batch redone event by event, each in its own savepoint, so that
//! one bad event is set aside without undoing the others (the common case
//! pays neither savepoints nor a round trip per statement).

use common::Envelope;
use common::subject::SubjectKey;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::apply::erasure::Erased;
use crate::apply::jobs::stores::Stores;
use crate::apply::jobs::{self, Outcome, Planned, Prepared};
use crate::apply::pipeline::{self, Statement, Yields};
use crate::apply::subject_state::{self, States};
use crate::context::WorkerContext;
use crate::error::JobError;

/// What happened to one event of a committed batch, and whom it concerned
/// (where known).
pub type EventResult = Result<(Outcome, Option<SubjectKey>), JobError>;

/// What must happen once the batch committed.
#[derive(Debug, Default)]
pub struct Followups {
    /// Outbox rows whose e-mail jobs are to be published.
    pub emails: Vec<Uuid>,
}

/// A committed batch: each event's result, and what is to happen now.
pub struct Applied {
    pub results: Vec<EventResult>,
    pub followups: Followups,
}

/// An event of the batch, with its envelope.
pub type PreparedEvent<'a> = (&'a Envelope, Prepared<'a>);

/// Applies the prepared events (one result each, in order) and commits.
/// `Err` means nothing was committed: the whole batch is to be tried again.
pub async fn apply_batch(
    context: &WorkerContext,
    prepared: &[PreparedEvent<'_>],
) -> Result<Applied, JobError> {
    let mut client = context.pool.get().await?;
    match apply_pipelined(&mut client, context, prepared).await? {
        Some(applied) => Ok(applied),
        // PostgreSQL refused a statement: redo the batch, each event in its
        // own savepoint, so the others still commit.
        None => apply_one_by_one(&mut client, context, prepared).await,
    }
}

/// The fast path: every statement of the batch in one round trip. `Ok(None)`
/// when PostgreSQL refused one (nothing committed).
async fn apply_pipelined(
    client: &mut common::db::Client,
    context: &WorkerContext,
    prepared: &[PreparedEvent<'_>],
) -> Result<Option<Applied>, JobError> {
    let transaction = client.transaction().await?;
    let (mut states, stores) = lock_batch(&transaction, prepared).await?;
    let mut results = Vec::with_capacity(prepared.len());
    let mut plans = Vec::with_capacity(prepared.len());
    for item in prepared {
        match plan(context, item, &states, &stores) {
            Ok((subject, planned)) => {
                if let Some(state) = &planned.state {
                    states.insert(subject, state.clone());
                }
                results.push(Ok((planned.outcome, Some(subject))));
                plans.push((subject, planned));
            }
            Err(error) => results.push(Err(error)),
        }
    }
    // Each changed subject's final state, written back in one statement.
    let mut changed: Vec<SubjectKey> = plans
        .iter()
        .filter(|(_, planned)| planned.state.is_some())
        .map(|(subject, _)| *subject)
        .collect();
    changed.sort();
    changed.dedup();
    let finals: Vec<_> = changed
        .iter()
        .filter_map(|subject| Some((subject, states.get(subject)?)))
        .collect();
    let mut owned = jobs::statements(plans.into_iter().flat_map(|(_, planned)| planned.writes));
    if !finals.is_empty() {
        owned.push(subject_state::save_statement(&finals));
    }
    let statements: Vec<&Statement<'_>> = owned.iter().collect();
    let rows = match pipeline::send_all(&transaction, &statements).await {
        Ok(rows) => rows,
        // Dropping the transaction rolls it back.
        Err(JobError::Permanent { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut followups = Followups::default();
    follow_up(context, &statements, &rows, &mut followups).await?;
    transaction.commit().await?;
    Ok(Some(Applied { results, followups }))
}

/// The slow path: each event in its own savepoint; an event PostgreSQL
/// refuses is rolled back alone.
async fn apply_one_by_one(
    client: &mut common::db::Client,
    context: &WorkerContext,
    prepared: &[PreparedEvent<'_>],
) -> Result<Applied, JobError> {
    let mut transaction = client.transaction().await?;
    let (mut states, stores) = lock_batch(&transaction, prepared).await?;
    let mut results = Vec::with_capacity(prepared.len());
    let mut followups = Followups::default();
    for item in prepared {
        let (subject, planned) = match plan(context, item, &states, &stores) {
            Ok(planned) => planned,
            Err(error) => {
                results.push(Err(error));
                continue;
            }
        };
        let mut owned = jobs::statements(planned.writes);
        if let Some(state) = &planned.state {
            owned.push(subject_state::save_statement(&[(&subject, state)]));
        }
        let statements: Vec<&Statement<'_>> = owned.iter().collect();
        let savepoint = transaction.savepoint("event").await?;
        match pipeline::send_all(&savepoint, &statements).await {
            Ok(rows) => {
                savepoint.commit().await?;
                follow_up(context, &statements, &rows, &mut followups).await?;
                if let Some(state) = planned.state {
                    states.insert(subject, state);
                }
                results.push(Ok((planned.outcome, Some(subject))));
            }
            // An erasure only deletes our rows and writes a tombstone: a
            // refusal (a foreign key or trigger someone added) is not the
            // request's fault, and dead-lettering it would leave the data.
            Err(JobError::Permanent { detail, .. }) if planned.outcome == Outcome::Erased => {
                return Err(JobError::Environment(format!("erasure refused: {detail}")));
            }
            Err(error @ JobError::Permanent { .. }) => {
                savepoint.rollback().await?;
                results.push(Err(error));
            }
            // The environment's (connection lost, deadlock, privileges): the
            // whole batch is held and tried again.
            Err(error) => return Err(error),
        }
    }
    transaction.commit().await?;
    Ok(Applied { results, followups })
}

/// Looks up the batch's LINA stores (locking them against a removal) and
/// locks and reads every subject of the batch: one round trip (pipelined,
/// stores first, the order a store's removal locks in too).
async fn lock_batch(
    transaction: &common::db::Transaction<'_>,
    prepared: &[PreparedEvent<'_>],
) -> Result<(States, Stores), JobError> {
    let events = || prepared.iter().map(|(_, event)| event);
    let subjects: Vec<_> = events()
        .map(|event| (event.subject, event.source))
        .collect();
    let mut stores: Vec<Uuid> = events()
        .filter_map(|event| event.job.store())
        .copied()
        .collect();
    stores.sort();
    stores.dedup();
    let (stores, states) = futures_util::future::try_join(
        Stores::lookup(transaction, &stores),
        subject_state::lock(transaction, &subjects),
    )
    .await?;
    Ok((states, stores))
}

/// Plans one prepared event against its subject's state.
fn plan<'a>(
    context: &WorkerContext,
    item: &'a PreparedEvent<'a>,
    states: &States,
    stores: &Stores,
) -> Result<(SubjectKey, Planned<'a>), JobError> {
    let (envelope, event) = item;
    // The batch locked every subject it holds: a missing state is a bug,
    // and guessing one could apply a stale event.
    let state = states
        .get(&event.subject)
        .ok_or_else(|| JobError::Transient("a subject of the batch was not locked".into()))?;
    Ok((
        event.subject,
        jobs::plan(&context.rules(), envelope, event, state, stores)?,
    ))
}

/// What the statements' answers ask for: e-mail jobs to publish after the
/// commit, `.eml` copies of erased subjects to delete before it (see
/// `Erased::remove_copies`; a copy that cannot go holds the batch).
async fn follow_up(
    context: &WorkerContext,
    statements: &[&Statement<'_>],
    rows: &[Vec<Row>],
    followups: &mut Followups,
) -> Result<(), JobError> {
    let mut erased = Erased::default();
    for (statement, rows) in statements.iter().zip(rows) {
        match statement.yields {
            Yields::Acknowledgement => {
                for row in rows {
                    followups.emails.push(row.try_get(0)?);
                }
            }
            yields => erased.note(yields, rows)?,
        }
    }
    erased.remove_copies(&context.email.mailer).await
}
