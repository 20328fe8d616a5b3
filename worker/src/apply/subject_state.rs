//! The subject state row (DESIGN.md, invariant 4; README "Ordering and
//! erasure") and the ordering rule, a pure function unit-tested here; the
//! SQL around it locks the row for the whole transaction.
//!
//! **The rule.** A subject's data is the body of its newest write (an LT
//! application or update, a LINA consent), unless its newest erasure (any
//! cause) is at least as new as that write's *first key*. The first key is
//! the write's own key, or for an LT resend (an equal body received within
//! the resend window of an earlier one, and so on back) the key of the
//! first time that body was received. Every part of it is a maximum or a
//! minimum over the events received, so the state after any set of events
//! is the same in every processing order and with any event delivered
//! twice: an event processed late moves a maximum or a minimum it belongs
//! to, or nothing.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::Source;
use common::db::Transaction;
use common::subject::{BodyHash, SubjectKey};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::apply::pipeline::Statement;
use crate::error::JobError;

/// How many LT writes a subject remembers for recognising resends (the
/// least recently received makes room). The rule is exact while a person
/// has at most this many LT messages within one resend window.
pub const RECENT_WRITES: usize = 16;

/// Events are ordered by (event time, event id); UUIDv7 ids break ties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderKey {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

/// The newest write the subject has received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewestWrite {
    pub key: OrderKey,
    /// The key of the first receipt of this write's message: its own key,
    /// or for an LT resend the first key of the body it repeats.
    pub first: OrderKey,
    pub body: BodyHash,
}

/// An LT write received recently (applied or not): resends are
/// recognised among these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecentWrite {
    pub body: BodyHash,
    pub key: OrderKey,
    pub received_at: DateTime<Utc>,
    /// The first key of the message this write belongs to.
    pub first: OrderKey,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectState {
    pub write: Option<NewestWrite>,
    /// The newest erasure's key, whatever its cause, also when it was
    /// older than the data (a later-learned resend may still let it win).
    pub erasure: Option<OrderKey>,
    /// At most `RECENT_WRITES`, in no particular order.
    pub recent: Vec<RecentWrite>,
}

/// What an event does to its subject, as far as ordering is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Creates or replaces the data: an LT application (`new`, `updated`
    /// or no status: an update after a revocation re-creates the
    /// application, since LT decides whether a share is active), a LINA
    /// consent.
    Write,
    /// Erases the data: an LT revocation, a LINA withdrawal.
    Erase,
}

/// An event, as the rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub order: OrderKey,
    /// The gateway's receive time (resends are recognised by it, whatever
    /// the order key's time is).
    pub received_at: DateTime<Utc>,
    pub body: BodyHash,
    pub effect: Effect,
    /// The sender resends until it gets 200 (LT): an equal body received
    /// within the resend window is the same message again. Off for LINA,
    /// which never resends (the same consent given again applies).
    pub sender_resends: bool,
}

/// What an event changes, the state it leaves being `Decision::state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// This very event (same order key) was received already: a redelivery.
    Duplicate,
    /// Older than the data (or the erasure) it would replace: the data
    /// stays as it is (the state may still remember the event).
    Stale,
    /// An LT resend (or the original of a resend processed first): the
    /// data stays as it is.
    Resend,
    /// The event's body becomes the subject's data.
    Store,
    /// The subject's data goes, or, already gone, the erasure is recorded
    /// again.
    Erase,
}

/// The verdict on an event and the state after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub state: SubjectState,
}

impl SubjectState {
    /// Whether the subject has data: a write no erasure outranks.
    pub fn is_live(&self) -> bool {
        self.write
            .is_some_and(|write| self.erasure.is_none_or(|erasure| erasure < write.first))
    }

    /// Whether the subject is a tombstone: erased, and not written since.
    pub fn is_tombstone(&self) -> bool {
        self.erasure.is_some() && !self.is_live()
    }

    /// The newest key the subject has seen (a write's or an erasure's).
    pub fn newest(&self) -> Option<OrderKey> {
        self.write.map(|write| write.key).max(self.erasure)
    }

    fn has_seen(&self, key: OrderKey) -> bool {
        self.write.is_some_and(|write| write.key == key)
            || self.erasure == Some(key)
            || self.recent.iter().any(|write| write.key == key)
    }

    /// The verdict on `event` and the state after it; `resend_window` is
    /// `INTAKE_LT_RESEND_WINDOW`.
    pub fn decide(&self, event: &Event, resend_window: Duration) -> Decision {
        if self.has_seen(event.order) {
            return Decision {
                verdict: Verdict::Duplicate,
                state: self.clone(),
            };
        }
        let mut next = self.clone();
        match event.effect {
            Effect::Erase => next.erasure = next.erasure.max(Some(event.order)),
            Effect::Write => next.take_write(event, resend_window),
        }
        let verdict = self.verdict(&next, event);
        Decision {
            verdict,
            state: next,
        }
    }

    /// Records a write: among the recent ones (LT), and as the newest
    /// write if it is newer than the one there.
    fn take_write(&mut self, event: &Event, window: Duration) {
        let first = if event.sender_resends {
            self.remember(event, window)
        } else {
            event.order
        };
        match &mut self.write {
            Some(write) if write.key > event.order => {}
            _ => {
                self.write = Some(NewestWrite {
                    key: event.order,
                    first,
                    body: event.body,
                })
            }
        }
    }

    /// Adds an LT write to the recent ones, works out again the first key
    /// of every message among them (a write processed late may be the
    /// first of a message whose resends came before it), lowers the newest
    /// write's first key accordingly, and returns the event's own.
    fn remember(&mut self, event: &Event, window: Duration) -> OrderKey {
        self.recent.push(RecentWrite {
            body: event.body,
            key: event.order,
            received_at: event.received_at,
            first: event.order,
        });
        let window = TimeDelta::from_std(window).unwrap_or(TimeDelta::MAX);
        self.recent.sort_by_key(|write| write.key);
        // In key order, each write's first key is the least of its own and
        // those of earlier equal bodies received within the window of it.
        for later in 0..self.recent.len() {
            for earlier in 0..later {
                let (a, b) = (self.recent[earlier], self.recent[later]);
                if a.body == b.body && (b.received_at - a.received_at).abs() <= window {
                    self.recent[later].first = b.first.min(a.first);
                }
            }
        }
        let first_of = |key: OrderKey, recent: &[RecentWrite]| {
            recent
                .iter()
                .find(|write| write.key == key)
                .map(|write| write.first)
        };
        let first = first_of(event.order, &self.recent).unwrap_or(event.order);
        if let Some(write) = &mut self.write
            && let Some(first) = first_of(write.key, &self.recent)
        {
            write.first = write.first.min(first);
        }
        while self.recent.len() > RECENT_WRITES {
            let oldest = (0..self.recent.len())
                .min_by_key(|&n| self.recent[n].received_at)
                .unwrap_or(0);
            self.recent.remove(oldest);
        }
        first
    }

    /// The verdict, from the states before (`self`) and after (`next`).
    fn verdict(&self, next: &SubjectState, event: &Event) -> Verdict {
        let is_newest_write = next.write.is_some_and(|write| write.key == event.order);
        match (self.is_live(), next.is_live()) {
            (was_live, true) if is_newest_write => {
                let first = next.write.map(|write| write.first);
                let repeats_data = was_live
                    && self.write.map(|write| write.body) == Some(event.body)
                    && first != Some(event.order);
                if repeats_data {
                    Verdict::Resend
                } else {
                    Verdict::Store
                }
            }
            (true, false) => Verdict::Erase,
            (false, false) if next.erasure == Some(event.order) => Verdict::Erase,
            _ if next.erasure.is_some_and(|erasure| event.order < erasure) => Verdict::Stale,
            _ if event.effect == Effect::Write && next.resend_learned(self, event) => {
                Verdict::Resend
            }
            _ => Verdict::Stale,
        }
    }

    /// Whether the write `event` is (or revealed) a resend: its own
    /// message began earlier, or the newest write's message turned out to
    /// begin earlier than known.
    fn resend_learned(&self, before: &SubjectState, event: &Event) -> bool {
        let own = self
            .recent
            .iter()
            .any(|write| write.key == event.order && write.first != event.order);
        let lowered = match (before.write, self.write) {
            (Some(before), Some(after)) => after.key == before.key && after.first < before.first,
            _ => false,
        };
        own || lowered
    }

    /// The state after an erasure with key `key` that is not an event (a
    /// request, retention, a store's removal): see `erasure::tombstone`.
    pub fn erase_at(&mut self, key: OrderKey) {
        self.erasure = self.erasure.max(Some(key));
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
    let select = "SELECT subject_key, write_at, write_id, write_origin_at, write_origin_id,
                    write_body, erasure_at, erasure_id, recent_writes
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
        let Some(key) = SubjectKey::from_bytes(row.try_get::<_, &[u8]>(0)?) else {
            continue;
        };
        states.insert(key, state_from(&row)?);
    }
    Ok(states)
}

fn key_from(at: Option<DateTime<Utc>>, id: Option<Uuid>) -> Option<OrderKey> {
    at.zip(id).map(|(at, id)| OrderKey { at, id })
}

/// A state from a row of `lock`'s select.
fn state_from(row: &tokio_postgres::Row) -> Result<SubjectState, JobError> {
    let write_key = key_from(row.try_get(1)?, row.try_get(2)?);
    let first = key_from(row.try_get(3)?, row.try_get(4)?);
    let body: Option<&[u8]> = row.try_get(5)?;
    let body = body.and_then(|body| BodyHash::try_from(body).ok());
    Ok(SubjectState {
        // A write without a body hash (a row from before the hash was
        // kept) compares unequal to every body: it is rewritten, not
        // taken for a resend.
        write: write_key.map(|key| NewestWrite {
            key,
            first: first.unwrap_or(key),
            body: body.unwrap_or_default(),
        }),
        erasure: key_from(row.try_get(6)?, row.try_get(7)?),
        recent: decode_recent(row.try_get(8)?),
    })
}

/// Bytes of one recent write: body hash, receipt, key, first key.
const RECENT_WRITE_BYTES: usize = 32 + 8 + 24 + 24;

fn encode_recent(recent: &[RecentWrite]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(recent.len() * RECENT_WRITE_BYTES);
    for write in recent {
        bytes.extend_from_slice(&write.body);
        bytes.extend_from_slice(&write.received_at.timestamp_micros().to_be_bytes());
        for key in [write.key, write.first] {
            bytes.extend_from_slice(&key.at.timestamp_micros().to_be_bytes());
            bytes.extend_from_slice(key.id.as_bytes());
        }
    }
    bytes
}

/// The recent writes from their bytes; a malformed tail is ignored (the
/// rule then recognises fewer resends, never more).
fn decode_recent(bytes: &[u8]) -> Vec<RecentWrite> {
    let micros = |bytes: &[u8]| {
        let micros = i64::from_be_bytes(bytes.try_into().unwrap_or_default());
        DateTime::from_timestamp_micros(micros).unwrap_or_default()
    };
    let key = |bytes: &[u8]| OrderKey {
        at: micros(&bytes[..8]),
        id: Uuid::from_slice(&bytes[8..24]).unwrap_or_default(),
    };
    bytes
        .chunks_exact(RECENT_WRITE_BYTES)
        .map(|chunk| RecentWrite {
            body: chunk[..32].try_into().unwrap_or_default(),
            received_at: micros(&chunk[32..40]),
            key: key(&chunk[40..64]),
            first: key(&chunk[64..88]),
        })
        .collect()
}

/// Writes the final `states` of any number of subjects back in one
/// statement; a tombstone gets (or keeps) its `erased_at`.
pub fn save_statement<'a>(states: &[(&'a SubjectKey, &SubjectState)]) -> Statement<'a> {
    let n = states.len();
    let mut keys: Vec<&'a [u8]> = Vec::with_capacity(n);
    let (mut newest_at, mut newest_id) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut write_at, mut write_id) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut first_at, mut first_id) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut write_body = Vec::with_capacity(n);
    let (mut erasure_at, mut erasure_id) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut recent = Vec::with_capacity(n);
    let mut tombstone = Vec::with_capacity(n);
    for (key, state) in states {
        keys.push(key.as_bytes());
        let newest = state.newest();
        newest_at.push(newest.map(|key| key.at));
        newest_id.push(newest.map(|key| key.id));
        write_at.push(state.write.map(|write| write.key.at));
        write_id.push(state.write.map(|write| write.key.id));
        first_at.push(state.write.map(|write| write.first.at));
        first_id.push(state.write.map(|write| write.first.id));
        write_body.push(state.write.map(|write| write.body.to_vec()));
        erasure_at.push(state.erasure.map(|key| key.at));
        erasure_id.push(state.erasure.map(|key| key.id));
        recent.push(encode_recent(&state.recent));
        tombstone.push(state.is_tombstone());
    }
    Statement::new(
        SAVE,
        vec![
            Box::new(keys),
            Box::new(newest_at),
            Box::new(newest_id),
            Box::new(write_at),
            Box::new(write_id),
            Box::new(first_at),
            Box::new(first_id),
            Box::new(write_body),
            Box::new(erasure_at),
            Box::new(erasure_id),
            Box::new(recent),
            Box::new(tombstone),
        ],
    )
    .planned_each_time(&[
        Type::BYTEA_ARRAY,
        Type::TIMESTAMPTZ_ARRAY,
        Type::UUID_ARRAY,
        Type::TIMESTAMPTZ_ARRAY,
        Type::UUID_ARRAY,
        Type::TIMESTAMPTZ_ARRAY,
        Type::UUID_ARRAY,
        Type::BYTEA_ARRAY,
        Type::TIMESTAMPTZ_ARRAY,
        Type::UUID_ARRAY,
        Type::BYTEA_ARRAY,
        Type::BOOL_ARRAY,
    ])
}

const SAVE: &str = "
    UPDATE subject_state AS s SET
        newest_event_at = u.newest_at, newest_event_id = u.newest_id,
        write_at = u.write_at, write_id = u.write_id,
        write_origin_at = u.first_at, write_origin_id = u.first_id,
        write_body = u.write_body,
        erasure_at = u.erasure_at, erasure_id = u.erasure_id,
        recent_writes = u.recent,
        erased_at = CASE WHEN u.tombstone THEN coalesce(s.erased_at, now()) END,
        updated_at = now()
    FROM unnest($1::bytea[], $2::timestamptz[], $3::uuid[], $4::timestamptz[], $5::uuid[],
                $6::timestamptz[], $7::uuid[], $8::bytea[], $9::timestamptz[], $10::uuid[],
                $11::bytea[], $12::bool[])
        AS u(key, newest_at, newest_id, write_at, write_id, first_at, first_id, write_body,
             erasure_at, erasure_id, recent, tombstone)
    WHERE s.subject_key = u.key";

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn at(second: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(second, 0).single().unwrap_or_default()
    }

    fn order(second: i64, id: u128) -> OrderKey {
        OrderKey {
            at: at(second),
            id: Uuid::from_u128(id),
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Kind {
        LtNew,
        LtUpdated,
        LtRevocation,
        LinaConsent,
        LinaWithdrawal,
    }

    const LT: [Kind; 3] = [Kind::LtNew, Kind::LtUpdated, Kind::LtRevocation];
    const LINA: [Kind; 2] = [Kind::LinaConsent, Kind::LinaWithdrawal];

    /// An event received at `second` (its key's time too), id `id`.
    fn event(kind: Kind, second: i64, id: u128, body: BodyHash) -> Event {
        let (effect, sender_resends) = match kind {
            Kind::LtNew | Kind::LtUpdated => (Effect::Write, true),
            Kind::LtRevocation => (Effect::Erase, true),
            Kind::LinaConsent => (Effect::Write, false),
            Kind::LinaWithdrawal => (Effect::Erase, false),
        };
        Event {
            order: order(second, id),
            received_at: at(second),
            body,
            effect,
            sender_resends,
        }
    }

    const BODY: BodyHash = [1; 32];
    const OTHER: BodyHash = [2; 32];
    const REVOKED: BodyHash = [9; 32];

    /// The data a database holds after the verdicts on `events`, processed
    /// in the order given: the body of the event last stored, or none.
    fn processed(events: &[Event]) -> (SubjectState, Option<BodyHash>) {
        let mut state = SubjectState::default();
        let mut data = None;
        for event in events {
            let decision = state.decide(event, WINDOW);
            match decision.verdict {
                Verdict::Store => data = Some(event.body),
                Verdict::Erase => data = None,
                Verdict::Duplicate | Verdict::Stale | Verdict::Resend => {}
            }
            state = decision.state;
        }
        (state, data)
    }

    /// What a subject holds after a set of events, computed from the set
    /// alone (the reference the processing is checked against): the
    /// newest write's body, unless the newest erasure is at least as new as
    /// the first key of that write's message. A message's first key: in key
    /// order, an LT write takes the first key of an earlier equal body
    /// received within the window of it.
    fn reference(events: &[Event]) -> (Option<BodyHash>, bool) {
        let mut writes: Vec<Event> = events
            .iter()
            .filter(|event| event.effect == Effect::Write)
            .copied()
            .collect();
        writes.sort_by_key(|event| event.order);
        writes.dedup_by_key(|event| event.order);
        let mut firsts: Vec<OrderKey> = writes.iter().map(|event| event.order).collect();
        for later in 0..writes.len() {
            for earlier in 0..later {
                let (a, b) = (writes[earlier], writes[later]);
                let within = (b.received_at - a.received_at).abs() <= TimeDelta::seconds(60);
                if a.sender_resends && b.sender_resends && a.body == b.body && within {
                    firsts[later] = firsts[later].min(firsts[earlier]);
                }
            }
        }
        let erasure = events
            .iter()
            .filter(|event| event.effect == Effect::Erase)
            .map(|event| event.order)
            .max();
        let newest = writes.last().zip(firsts.last());
        let live = newest.is_some_and(|(_, first)| erasure.is_none_or(|erasure| erasure < *first));
        let data = newest.filter(|_| live).map(|(write, _)| write.body);
        (data, erasure.is_some() && !live)
    }

    /// A history of one subject: up to 8 events of one sender, a second to
    /// two minutes apart (so some equal bodies fall within the 60 s window
    /// and some outside), bodies drawn from three (so resends, changes back
    /// and re-shares all occur), every kind anywhere, an `updated` after a
    /// revocation included.
    fn history() -> impl Strategy<Value = Vec<Event>> {
        (
            any::<bool>(),
            proptest::collection::vec((0..3usize, 0..3u8, 1..120i64), 1..=8),
        )
            .prop_map(|(lt, picks)| {
                let mut second = 0;
                let mut events = Vec::new();
                for (n, (kind, body, gap)) in picks.into_iter().enumerate() {
                    second += gap;
                    let kind = if lt { LT[kind] } else { LINA[kind % 2] };
                    let body = match kind {
                        Kind::LtRevocation | Kind::LinaWithdrawal => REVOKED,
                        _ => [body + 1; 32],
                    };
                    events.push(event(kind, second, n as u128, body));
                }
                events
            })
    }

    /// A history and a processing of it: every event at least once, in
    /// any order, some of them twice (a redelivery, a replay).
    fn processing() -> impl Strategy<Value = (Vec<Event>, Vec<Event>)> {
        history()
            .prop_flat_map(|events| {
                let n = events.len();
                let twice = proptest::collection::vec(0..n, 0..=n);
                (Just(events), twice).prop_flat_map(|(events, twice)| {
                    let mut picks: Vec<usize> = (0..events.len()).collect();
                    picks.extend(twice);
                    let order = Just(picks).prop_shuffle();
                    (Just(events), order)
                })
            })
            .prop_map(|(events, order)| {
                let processing = order.iter().map(|&n| events[n]).collect();
                (events, processing)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Nothing is excluded: every kind after an erasure, resends,
        /// changes back, LT and LINA.
        #[test]
        fn every_processing_order_ends_where_the_set_of_events_says(
            (events, processing) in processing()
        ) {
            let (state, data) = processed(&processing);
            let (expected_data, expected_tombstone) = reference(&events);
            prop_assert_eq!(data, expected_data);
            prop_assert_eq!(state.is_tombstone(), expected_tombstone);
            prop_assert_eq!(state.is_live(), expected_data.is_some());
        }

        #[test]
        fn an_event_delivered_twice_changes_nothing_more(
            (events, processing) in processing()
        ) {
            let (once, data_once) = processed(&events);
            let (twice, data_twice) = processed(&processing);
            prop_assert_eq!(data_once, data_twice);
            prop_assert_eq!(once.write, twice.write);
            prop_assert_eq!(once.erasure, twice.erasure);
        }
    }

    /// The histories the issue found, in receipt order and in the order a
    /// crash redelivery gave them: both end alike.
    #[test]
    fn the_reported_histories_end_alike_in_both_orders() {
        use Kind::*;
        let cases: [(&[Kind], &[usize]); 4] = [
            // The revocation redelivered after the two later updates.
            (
                &[LtNew, LtUpdated, LtRevocation, LtUpdated, LtUpdated],
                &[0, 1, 3, 4, 2],
            ),
            (&[LtRevocation, LtRevocation, LtUpdated], &[2, 0, 1]),
            (&[LtNew, LtRevocation, LtUpdated], &[0, 2, 1]),
            (
                &[LtRevocation, LtRevocation, LtNew, LtUpdated],
                &[0, 1, 3, 2],
            ),
        ];
        for (kinds, reordered) in cases {
            let events: Vec<Event> = kinds
                .iter()
                .enumerate()
                .map(|(n, &kind)| {
                    let body = if kind == LtRevocation {
                        REVOKED
                    } else {
                        [n as u8 + 10; 32]
                    };
                    event(kind, 1000 * (n as i64 + 1), n as u128, body)
                })
                .collect();
            let reordered: Vec<Event> = reordered.iter().map(|&n| events[n]).collect();
            let (_, in_order) = processed(&events);
            let (_, out_of_order) = processed(&reordered);
            assert_eq!(in_order, out_of_order, "{kinds:?}");
            // An update after a revocation re-creates the application: the
            // last event decides.
            let last = events.last().map(|event| event.body);
            assert_eq!(in_order, last, "{kinds:?}");
        }
    }

    #[test]
    fn the_same_event_again_is_a_duplicate_for_every_kind() {
        for kind in LT.into_iter().chain(LINA) {
            let first = event(kind, 10, 1, BODY);
            let (state, _) = processed(&[first]);
            assert_eq!(
                state.decide(&first, WINDOW).verdict,
                Verdict::Duplicate,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn a_change_back_after_the_window_is_stored_and_within_it_is_a_resend() {
        let (state, _) = processed(&[
            event(Kind::LtUpdated, 0, 1, BODY),
            event(Kind::LtUpdated, 10, 2, OTHER),
        ]);
        let inside = event(Kind::LtUpdated, 50, 3, BODY);
        // A resend of an older body is the newest write: its body is the data.
        assert_eq!(state.decide(&inside, WINDOW).verdict, Verdict::Store);
        let outside = event(Kind::LtUpdated, 61, 3, BODY);
        assert_eq!(state.decide(&outside, WINDOW).verdict, Verdict::Store);
        let (state, _) = processed(&[event(Kind::LtNew, 0, 1, BODY)]);
        let again = event(Kind::LtNew, 50, 2, BODY);
        assert_eq!(state.decide(&again, WINDOW).verdict, Verdict::Resend);
    }

    #[test]
    fn a_resend_of_a_body_received_before_a_revocation_never_brings_it_back() {
        let original = event(Kind::LtNew, 0, 1, BODY);
        let revocation = event(Kind::LtRevocation, 10, 2, REVOKED);
        let resend = event(Kind::LtNew, 20, 3, BODY);
        for order in [
            [original, revocation, resend],
            [resend, original, revocation],
            [resend, revocation, original],
            [revocation, resend, original],
        ] {
            let (state, data) = processed(&order);
            assert_eq!((data, state.is_tombstone()), (None, true), "{order:?}");
        }
        // Outside the window it is a re-share, stored again.
        let reshare = event(Kind::LtNew, 100, 3, BODY);
        let (_, data) = processed(&[reshare, revocation, original]);
        assert_eq!(data, Some(BODY));
    }

    #[test]
    fn a_resend_chain_counts_from_its_first_receipt() {
        // Each 50 s after the last, 150 s in all: one message.
        let events = [
            event(Kind::LtNew, 0, 1, BODY),
            event(Kind::LtRevocation, 10, 2, REVOKED),
            event(Kind::LtNew, 50, 3, BODY),
            event(Kind::LtNew, 100, 4, BODY),
            event(Kind::LtNew, 150, 5, BODY),
        ];
        let (_, data) = processed(&events);
        assert_eq!(data, None);
        let reversed: Vec<Event> = events.iter().rev().copied().collect();
        let (_, data) = processed(&reversed);
        assert_eq!(data, None);
    }

    #[test]
    fn the_least_recently_received_writes_make_room() {
        let events: Vec<Event> = (0..(RECENT_WRITES as u8 + 4))
            .map(|n| event(Kind::LtUpdated, i64::from(n), u128::from(n), [n; 32]))
            .collect();
        let (state, _) = processed(&events);
        assert_eq!(state.recent.len(), RECENT_WRITES);
        let bodies: Vec<BodyHash> = state.recent.iter().map(|write| write.body).collect();
        assert!(!bodies.contains(&[0; 32]));
        assert!(bodies.contains(&[RECENT_WRITES as u8 + 3; 32]));
    }

    #[test]
    fn order_keys_compare_by_time_then_id() {
        assert!(order(1, 9) < order(2, 1));
        assert!(order(1, 1) < order(1, 2));
    }

    #[test]
    fn recent_writes_travel_as_bytes_and_back() {
        let recent = vec![RecentWrite {
            body: [0xab; 32],
            received_at: at(2),
            key: order(1, 7),
            first: order(0, 3),
        }];
        let bytes = encode_recent(&recent);
        assert_eq!(bytes.len(), RECENT_WRITE_BYTES);
        assert_eq!(decode_recent(&bytes), recent);
        assert!(decode_recent(&[]).is_empty());
        assert_eq!(decode_recent(&bytes[..50]), Vec::new());
    }
}
