//! The one erasure (DESIGN.md, invariants 4 and 5; README "Ordering and
//! erasure"). Every cause — an LT revocation, a LINA withdrawal, a request
//! made to the partner (`worker subject erase`), retention, a store's
//! removal — erases a subject here and nowhere else: the personal row, the
//! subject's unsent e-mails and their `.eml` copies, the tombstone and the
//! erasure record, as statements sent inside the caller's transaction (the
//! batch pipeline sends them with the rest of its batch).
//!
//! The erasure's order key decides what may still apply afterwards, so it
//! depends on the cause (`tombstone_now`):
//! - an event (revocation, withdrawal): that event's key
//!   (`SubjectState::decide`);
//! - a request or a store's removal: the newest applied key or the
//!   database's clock under the lock plus a margin for gateway clock skew,
//!   whichever is later, so everything received before the erasure is stale
//!   wherever it waited (a queue backlog, a retry tier, a dead letter, the
//!   LINA spool);
//! - retention: the newest applied key (an event still waiting shows the
//!   person is active, and applies).

use std::time::Duration;

use common::Source;
use common::db::Transaction;
use common::subject::{SubjectHasher, SubjectKey};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::apply::pipeline::{self, Statement, Yields};
use crate::apply::subject_state::{self, OrderKey, SubjectState};
use crate::email::Mailer;
use crate::error::JobError;

/// Why a subject is erased: the `cause` column of `erasure_log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Revocation,
    Withdrawal,
    Request,
    Retention,
    StoreRemoved,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Revocation => "revocation",
            Cause::Withdrawal => "withdrawal",
            Cause::Request => "request",
            Cause::Retention => "retention",
            Cause::StoreRemoved => "store_removed",
        }
    }
}

/// A person, as one sender knows them: whose personal row goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Person {
    Lt { user_id: String },
    Lina { webhook: Uuid, user: Uuid },
}

impl Person {
    pub fn key(&self, hasher: &SubjectHasher) -> SubjectKey {
        match self {
            Person::Lt { user_id } => hasher.lt(user_id),
            Person::Lina { webhook, user } => hasher.lina(&webhook.to_string(), &user.to_string()),
        }
    }

    pub fn source(&self) -> Source {
        match self {
            Person::Lt { .. } => Source::Lt,
            Person::Lina { .. } => Source::Lina,
        }
    }
}

/// One subject's erasure, as the batch will write it: the personal row,
/// the unsent e-mails, the erasure record (`statements`).
pub struct Row<'a> {
    pub person: &'a Person,
    pub subject: &'a SubjectKey,
    pub cause: Cause,
}

/// The statements that erase `rows`, any number of subjects at once: a
/// statement per table, not per subject. Rows of one subject named twice
/// are deleted once and logged twice (harmless).
pub fn statements<'a>(rows: &[Row<'a>]) -> Vec<Statement<'a>> {
    let mut applicants: Vec<&'a str> = Vec::new();
    let (mut webhooks, mut users): (Vec<Uuid>, Vec<Uuid>) = (Vec::new(), Vec::new());
    for row in rows {
        match row.person {
            Person::Lt { user_id } => applicants.push(user_id),
            Person::Lina { webhook, user } => {
                webhooks.push(*webhook);
                users.push(*user);
            }
        }
    }
    let subjects: Vec<&'a [u8]> = rows.iter().map(|row| row.subject.as_bytes()).collect();
    let mut statements = Vec::with_capacity(5);
    if !applicants.is_empty() {
        statements.push(
            Statement::new(DELETE_APPLICATIONS, vec![Box::new(applicants)])
                .planned_each_time(&[Type::TEXT_ARRAY])
                .yielding(Yields::ErasedRows),
        );
    }
    if !webhooks.is_empty() {
        statements.push(
            Statement::new(DELETE_EMPLOYEES, vec![Box::new(webhooks), Box::new(users)])
                .planned_each_time(&[Type::UUID_ARRAY, Type::UUID_ARRAY])
                .yielding(Yields::ErasedRows),
        );
    }
    // Locks the rows first, so an e-mail being sent finishes before they
    // go; the ids are those of the `.eml` copies to delete.
    statements.push(
        Statement::new(LOCK_EMAILS, vec![Box::new(subjects.clone())])
            .planned_each_time(&[Type::BYTEA_ARRAY])
            .yielding(Yields::ErasedOutbox),
    );
    // A sent row keeps no address (`outbox::mark_sent`).
    statements.push(
        Statement::new(DELETE_UNSENT_EMAILS, vec![Box::new(subjects.clone())])
            .planned_each_time(&[Type::BYTEA_ARRAY]),
    );
    statements.push(Statement::new(
        LOG,
        vec![
            Box::new(subjects),
            Box::new(
                rows.iter()
                    .map(|row| row.person.source().as_str())
                    .collect::<Vec<_>>(),
            ),
            Box::new(
                rows.iter()
                    .map(|row| row.cause.as_str())
                    .collect::<Vec<_>>(),
            ),
        ],
    ));
    statements
}

// Statements that look rows up by an array of keys are planned at each
// execution (`Statement::planned_each_time`).
const DELETE_APPLICATIONS: &str =
    "DELETE FROM lt_application WHERE mydatashare_user_id = ANY($1) RETURNING 1";
const DELETE_EMPLOYEES: &str = "
    DELETE FROM lina_employee AS e
    USING unnest($1::uuid[], $2::uuid[]) AS p(webhook, user_uuid)
    WHERE e.webhook = p.webhook AND e.user_uuid = p.user_uuid
    RETURNING 1";
const LOCK_EMAILS: &str = "SELECT id FROM email_outbox WHERE subject_key = ANY($1) FOR UPDATE";
const DELETE_UNSENT_EMAILS: &str =
    "DELETE FROM email_outbox WHERE subject_key = ANY($1) AND status <> 'sent'";
const LOG: &str = "
    INSERT INTO erasure_log (subject_key, source, cause)
    SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[])";

/// The subject's state once erased now (a request, retention, a store's
/// removal; an event's erasure is `SubjectState::decide`'s): its erasure
/// key by cause (module note). Either way the state becomes a tombstone:
/// the key is at least the newest write's.
pub fn tombstone_now(state: &SubjectState, cause: Cause, now: OrderKey) -> SubjectState {
    let mut tombstone = state.clone();
    let key = match (cause, state.newest()) {
        (Cause::Retention, Some(newest)) => newest,
        (_, newest) => newest.map_or(now, |newest| newest.max(now)),
    };
    tombstone.erase_at(key);
    tombstone
}

/// What an erasure (or several) removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    /// Rows of personal data deleted (applications or employees).
    pub rows: u64,
    /// E-mail outbox rows of the subjects (unsent ones deleted, sent ones
    /// kept without an address; the `.eml` copies of all deleted).
    pub emails: usize,
    /// Their ids: the `.eml` copies to delete before the commit.
    outbox_ids: Vec<Uuid>,
}

impl Erased {
    /// Takes in the rows one erasure statement returned. An outbox id that
    /// cannot be read fails the erasure: its copy could not be found.
    pub fn note(&mut self, yields: Yields, rows: &[tokio_postgres::Row]) -> Result<(), JobError> {
        match yields {
            Yields::ErasedRows => self.rows += rows.len() as u64,
            Yields::ErasedOutbox => {
                for row in rows {
                    self.outbox_ids.push(row.try_get(0)?);
                }
                self.emails += rows.len();
            }
            Yields::Nothing | Yields::Acknowledgement => {}
        }
        Ok(())
    }

    /// Deletes the `.eml` copies of the erased outbox rows. Called before
    /// the commit: the rows are locked by then, so no copy can be written
    /// for them any more, and a crash between the commit and the deletion
    /// can never leave a copy of an erased person behind. A copy that
    /// cannot be deleted fails the erasure, which is tried again (a batch
    /// is held, retention's next round) or fails (an admin command) — a
    /// copy deleted early costs nothing.
    pub async fn remove_copies(&self, mailer: &Mailer) -> Result<(), JobError> {
        mailer.remove_copies(&self.outbox_ids).await
    }
}

/// Erases `people` now, for `cause` (a request, retention, a store's
/// removal), inside the caller's transaction (the caller commits): locks
/// their states in sorted order, reads the database's clock under the
/// lock, and sends every erasure's statements and the tombstones at once.
/// Returns what went, and the "now" key the tombstones were given
/// (`margin` after the database's clock).
pub async fn erase_now(
    transaction: &Transaction<'_>,
    people: &[(Person, SubjectKey)],
    cause: Cause,
    margin: Duration,
    mailer: &Mailer,
) -> Result<(Erased, OrderKey), JobError> {
    let subjects: Vec<_> = people
        .iter()
        .map(|(person, key)| (*key, person.source()))
        .collect();
    let states = subject_state::lock(transaction, &subjects).await?;
    let now = now_key(transaction, margin).await?;
    let mut rows = Vec::with_capacity(people.len());
    let mut tombstones = Vec::with_capacity(people.len());
    for (person, key) in people {
        let state = states
            .get(key)
            .ok_or_else(|| JobError::Transient("a subject to erase was not locked".into()))?;
        rows.push(Row {
            person,
            subject: key,
            cause,
        });
        tombstones.push((key, tombstone_now(state, cause, now)));
    }
    let mut owned = statements(&rows);
    // A subject named twice is erased twice (harmless): its last tombstone wins.
    tombstones.sort_by_key(|(key, _)| **key);
    tombstones.dedup_by_key(|(key, _)| **key);
    let finals: Vec<(&SubjectKey, &SubjectState)> = tombstones
        .iter()
        .map(|(key, state)| (*key, state))
        .collect();
    if !finals.is_empty() {
        owned.push(subject_state::save_statement(&finals));
    }
    let statements: Vec<&Statement<'_>> = owned.iter().collect();
    let rows = pipeline::send_all(transaction, &statements).await?;
    let mut erased = Erased::default();
    for (statement, rows) in statements.iter().zip(&rows) {
        erased.note(statement.yields, rows)?;
    }
    erased.remove_copies(mailer).await?;
    Ok((erased, now))
}

/// The order key of "now": the database's clock (one clock for every
/// worker and admin command) plus `margin`, since gateways stamp receive
/// times with their own clocks, which may be a little ahead; a new UUIDv7
/// breaks ties.
async fn now_key(transaction: &Transaction<'_>, margin: Duration) -> Result<OrderKey, JobError> {
    let row = transaction
        .query_one(
            "SELECT clock_timestamp() + make_interval(secs => $1)",
            &[&margin.as_secs_f64()],
        )
        .await?;
    Ok(OrderKey {
        at: row.try_get(0)?,
        id: Uuid::now_v7(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use subject_state::NewestWrite;

    fn order(second: i64) -> OrderKey {
        OrderKey {
            at: Utc.timestamp_opt(second, 0).single().unwrap_or_default(),
            id: Uuid::from_u128(second as u128),
        }
    }

    fn live_at(second: i64) -> SubjectState {
        SubjectState {
            write: Some(NewestWrite {
                key: order(second),
                first: order(second),
                body: [0; 32],
            }),
            ..SubjectState::default()
        }
    }

    #[test]
    fn a_request_or_removal_takes_now_unless_something_newer_was_applied() {
        for cause in [Cause::Request, Cause::StoreRemoved] {
            let stone = tombstone_now(&live_at(10), cause, order(20));
            assert_eq!(stone.erasure, Some(order(20)), "{cause:?}");
            let stone = tombstone_now(&live_at(30), cause, order(20));
            assert_eq!(stone.erasure, Some(order(30)), "{cause:?}");
            let stone = tombstone_now(&SubjectState::default(), cause, order(20));
            assert_eq!(stone.erasure, Some(order(20)), "{cause:?}");
            assert!(stone.is_tombstone(), "{cause:?}");
        }
    }

    #[test]
    fn retention_keeps_the_newest_applied_key() {
        let stone = tombstone_now(&live_at(10), Cause::Retention, order(20));
        assert_eq!(stone.erasure, Some(order(10)));
        assert!(stone.is_tombstone());
    }

    #[test]
    fn the_causes_keep_their_logged_names() {
        let names: Vec<_> = [
            Cause::Revocation,
            Cause::Withdrawal,
            Cause::Request,
            Cause::Retention,
            Cause::StoreRemoved,
        ]
        .map(Cause::as_str)
        .into();
        assert_eq!(
            names,
            [
                "revocation",
                "withdrawal",
                "request",
                "retention",
                "store_removed"
            ]
        );
    }
}
