//! The subject state row (DESIGN.md, invariant 4): the order key of the
//! newest applied event, keyed hashes of recent bodies, and the tombstone
//! mark. The verdict on an event is a pure function, unit-tested here; the
//! SQL around it locks the row for the whole transaction.

use chrono::{DateTime, Utc};
use common::Source;
use common::db::Transaction;
use common::subject::{BodyHash, SubjectKey};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::error::JobError;
use crate::pipeline::{self, Statement};

/// How many body hashes a subject remembers (resends of anything older are
/// recognised by their age instead: they are stale).
pub const RECENT_BODIES: usize = 16;

/// Events are ordered by (event time, event id); UUIDv7 ids break ties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderKey {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectState {
    pub newest: Option<OrderKey>,
    /// Oldest first, at most `RECENT_BODIES`.
    pub recent_bodies: Vec<BodyHash>,
    pub erased: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Apply,
    /// Already applied: the same event again, or a resend of a body applied before.
    Duplicate,
    /// Older than what the subject already reflects (its newest event or tombstone).
    Stale,
}

impl SubjectState {
    /// What to do with an event. `recognise_resends` drops a body that was
    /// applied before (LT resends until it gets 200). It is off for erasures
    /// (a second revocation after a re-application looks exactly like the
    /// first and must still erase) and for LINA (which never resends, while
    /// the same consent given again after a withdrawal must apply).
    pub fn judge(&self, order: OrderKey, body: &BodyHash, recognise_resends: bool) -> Verdict {
        match self.newest {
            Some(newest) if newest == order => return Verdict::Duplicate,
            _ => {}
        }
        if recognise_resends && self.recent_bodies.contains(body) {
            return Verdict::Duplicate;
        }
        match self.newest {
            Some(newest) if newest > order => Verdict::Stale,
            _ => Verdict::Apply,
        }
    }

    /// The state after applying an event.
    pub fn applied(&mut self, order: OrderKey, body: BodyHash, is_erasure: bool) {
        self.newest = Some(order);
        self.erased = is_erasure;
        if !self.recent_bodies.contains(&body) {
            self.recent_bodies.push(body);
        }
        let excess = self.recent_bodies.len().saturating_sub(RECENT_BODIES);
        self.recent_bodies.drain(..excess);
    }
}

/// The locked states of a batch's subjects.
pub type States = std::collections::HashMap<SubjectKey, SubjectState>;

/// Creates the state rows that do not exist yet, locks every one of
/// `subjects` for the rest of the transaction, in sorted order (so two
/// workers with overlapping batches cannot deadlock), and returns their
/// states: one statement for the whole batch, not one per event.
pub async fn lock(
    transaction: &Transaction<'_>,
    subjects: &[(SubjectKey, Source)],
) -> Result<States, JobError> {
    let mut subjects = subjects.to_vec();
    subjects.sort();
    subjects.dedup_by_key(|(key, _)| *key);
    if subjects.is_empty() {
        return Ok(States::new());
    }
    let keys: Vec<&[u8]> = subjects.iter().map(|(key, _)| key.as_bytes()).collect();
    let sources: Vec<&str> = subjects.iter().map(|(_, source)| source.as_str()).collect();
    let insert = transaction
        .prepare_cached(
            "INSERT INTO subject_state (subject_key, source)
             SELECT key, source FROM unnest($1::bytea[], $2::text[]) AS s(key, source)
             ORDER BY key
             ON CONFLICT (subject_key) DO NOTHING",
        )
        .await?;
    // Planned at each execution, like `Statement::planned_each_time`.
    let select = "SELECT subject_key, newest_event_at, newest_event_id, recent_body_hashes,
                    erased_at IS NOT NULL
             FROM subject_state WHERE subject_key = ANY($1)
             ORDER BY subject_key FOR UPDATE";
    // Both at once (pipelined: `try_join` sends the insert first), so the
    // select still runs after the insert.
    let (_, rows) = futures_util::future::try_join(
        transaction.execute(&insert, &[&keys, &sources]),
        transaction.query_typed(select, &[(&keys, Type::BYTEA_ARRAY)]),
    )
    .await?;
    let mut states = States::with_capacity(subjects.len());
    for row in rows {
        let Some(key) = SubjectKey::from_bytes(row.get::<_, &[u8]>(0)) else {
            continue;
        };
        states.insert(key, state_from(&row, 1));
    }
    Ok(states)
}

/// A state from `row`, whose columns from `first` are: newest event time,
/// newest event id, recent body hashes, erased.
fn state_from(row: &tokio_postgres::Row, first: usize) -> SubjectState {
    let at: Option<DateTime<Utc>> = row.get(first);
    let id: Option<Uuid> = row.get(first + 1);
    let hashes: Vec<Vec<u8>> = row.get(first + 2);
    SubjectState {
        newest: at.zip(id).map(|(at, id)| OrderKey { at, id }),
        recent_bodies: hashes
            .iter()
            .filter_map(|hash| <BodyHash>::try_from(hash.as_slice()).ok())
            .collect(),
        erased: row.get(first + 3),
    }
}

/// The (already locked) state of `subject`.
pub async fn load(
    transaction: &Transaction<'_>,
    subject: &SubjectKey,
) -> Result<SubjectState, JobError> {
    let select = transaction
        .prepare_cached(
            "SELECT newest_event_at, newest_event_id, recent_body_hashes, erased_at IS NOT NULL
             FROM subject_state WHERE subject_key = $1 FOR UPDATE",
        )
        .await?;
    let row = transaction
        .query_one(&select, &[&subject.as_bytes()])
        .await?;
    Ok(state_from(&row, 0))
}

/// Writes `state` back; an erased state becomes (or stays) a tombstone.
pub async fn save(
    transaction: &Transaction<'_>,
    subject: &SubjectKey,
    state: &SubjectState,
) -> Result<(), JobError> {
    let statement = save_statement(&[(subject, state)]);
    pipeline::send_all(transaction, &[&statement]).await?;
    Ok(())
}

/// `save` as one statement for any number of subjects (a batch writes its
/// final states at once).
pub fn save_statement<'a>(states: &[(&'a SubjectKey, &SubjectState)]) -> Statement<'a> {
    let mut keys: Vec<&'a [u8]> = Vec::with_capacity(states.len());
    let mut times = Vec::with_capacity(states.len());
    let mut ids = Vec::with_capacity(states.len());
    // An array of arrays cannot be ragged: each subject's hashes travel as
    // one text, comma-separated hex, split again by the statement.
    let mut hashes = Vec::with_capacity(states.len());
    let mut erased = Vec::with_capacity(states.len());
    for (key, state) in states {
        keys.push(key.as_bytes());
        times.push(state.newest.map(|order| order.at));
        ids.push(state.newest.map(|order| order.id));
        hashes.push(
            state
                .recent_bodies
                .iter()
                .map(hex::encode)
                .collect::<Vec<_>>()
                .join(","),
        );
        erased.push(state.erased);
    }
    Statement::new(
        SAVE,
        vec![
            Box::new(keys),
            Box::new(times),
            Box::new(ids),
            Box::new(hashes),
            Box::new(erased),
        ],
    )
    .planned_each_time(&[
        Type::BYTEA_ARRAY,
        Type::TIMESTAMPTZ_ARRAY,
        Type::UUID_ARRAY,
        Type::TEXT_ARRAY,
        Type::BOOL_ARRAY,
    ])
}

const SAVE: &str = "
    UPDATE subject_state AS s SET
        newest_event_at = u.at, newest_event_id = u.id,
        recent_body_hashes = ARRAY(
            SELECT decode(h.hash, 'hex')
            FROM unnest(string_to_array(u.hashes, ',')) WITH ORDINALITY AS h(hash, n)
            ORDER BY h.n),
        erased_at = CASE WHEN u.erased THEN coalesce(s.erased_at, now()) END,
        updated_at = now()
    FROM unnest($1::bytea[], $2::timestamptz[], $3::uuid[], $4::text[], $5::bool[])
        AS u(key, at, id, hashes, erased)
    WHERE s.subject_key = u.key";

/// The non-personal record an erasure leaves: when, which source, why.
pub async fn log_erasure(
    transaction: &Transaction<'_>,
    subject: &SubjectKey,
    source: Source,
    cause: &str,
) -> Result<(), JobError> {
    let statement = log_erasure_statement(subject, source, cause);
    pipeline::send_all(transaction, &[&statement]).await?;
    Ok(())
}

/// `log_erasure` as a statement of a batch.
pub fn log_erasure_statement<'a>(
    subject: &'a SubjectKey,
    source: Source,
    cause: &'a str,
) -> Statement<'a> {
    Statement::new(
        "INSERT INTO erasure_log (subject_key, source, cause) VALUES ($1, $2, $3)",
        vec![
            Box::new(subject.as_bytes()),
            Box::new(source.as_str()),
            Box::new(cause),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn order(second: i64, id: u128) -> OrderKey {
        OrderKey {
            at: Utc.timestamp_opt(second, 0).single().unwrap_or_default(),
            id: Uuid::from_u128(id),
        }
    }

    const BODY_A: BodyHash = [1; 32];
    const BODY_B: BodyHash = [2; 32];
    const REVOKE: BodyHash = [9; 32];

    #[test]
    fn a_first_event_applies() {
        assert_eq!(
            SubjectState::default().judge(order(1, 1), &BODY_A, true),
            Verdict::Apply
        );
    }

    #[test]
    fn the_same_event_again_is_a_duplicate() {
        let mut state = SubjectState::default();
        state.applied(order(1, 1), BODY_A, false);
        assert_eq!(state.judge(order(1, 1), &BODY_A, true), Verdict::Duplicate);
    }

    #[test]
    fn a_resend_of_an_applied_body_is_a_duplicate_even_after_an_erasure() {
        let mut state = SubjectState::default();
        state.applied(order(1, 1), BODY_A, false);
        state.applied(order(2, 2), REVOKE, true);
        assert_eq!(state.judge(order(3, 3), &BODY_A, true), Verdict::Duplicate);
    }

    #[test]
    fn an_older_event_is_stale() {
        let mut state = SubjectState::default();
        state.applied(order(5, 5), REVOKE, true);
        assert_eq!(state.judge(order(4, 9), &BODY_B, true), Verdict::Stale);
    }

    #[test]
    fn a_changed_body_newer_than_the_tombstone_is_a_re_application() {
        let mut state = SubjectState::default();
        state.applied(order(1, 1), BODY_A, false);
        state.applied(order(2, 2), REVOKE, true);
        assert_eq!(state.judge(order(3, 3), &BODY_B, true), Verdict::Apply);
        state.applied(order(3, 3), BODY_B, false);
        assert!(!state.erased);
    }

    #[test]
    fn a_second_identical_erasure_after_a_re_application_still_erases() {
        let mut state = SubjectState::default();
        state.applied(order(1, 1), BODY_A, false);
        state.applied(order(2, 2), REVOKE, true);
        state.applied(order(3, 3), BODY_B, false);
        assert_eq!(state.judge(order(4, 4), &REVOKE, false), Verdict::Apply);
    }

    #[test]
    fn the_same_consent_again_after_a_withdrawal_applies_where_resends_are_not_recognised() {
        let mut state = SubjectState::default();
        state.applied(order(1, 1), BODY_A, false);
        state.applied(order(2, 2), REVOKE, true);
        assert_eq!(state.judge(order(3, 3), &BODY_A, false), Verdict::Apply);
    }

    #[test]
    fn only_the_most_recent_bodies_are_remembered() {
        let mut state = SubjectState::default();
        for n in 0..(RECENT_BODIES as u8 + 4) {
            state.applied(order(i64::from(n), u128::from(n)), [n; 32], false);
        }
        assert_eq!(state.recent_bodies.len(), RECENT_BODIES);
        assert!(!state.recent_bodies.contains(&[0; 32]));
        assert!(state.recent_bodies.contains(&[RECENT_BODIES as u8 + 3; 32]));
    }

    #[test]
    fn order_keys_compare_by_time_then_id() {
        assert!(order(1, 9) < order(2, 1));
        assert!(order(1, 1) < order(1, 2));
    }
}
