//! The subject state row (DESIGN.md, invariant 4; README "Ordering and
//! erasure"): the order key of the newest applied event (or of the
//! tombstone), keyed hashes of recent bodies with the time each was last
//! received, and the tombstone mark. The verdict on an event is a pure
//! function, unit-tested here; the SQL around it locks the row for the
//! whole transaction.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::Source;
use common::db::Transaction;
use common::subject::{BodyHash, SubjectKey};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::apply::pipeline::Statement;
use crate::error::JobError;

/// How many body hashes a subject remembers (the least recently received
/// one makes room). A resend arrives within the resend window, so only
/// recent bodies matter.
pub const RECENT_BODIES: usize = 16;

/// Events are ordered by (event time, event id); UUIDv7 ids break ties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderKey {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

/// A body the subject received: its keyed hash and when it last arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecentBody {
    pub hash: BodyHash,
    pub received_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectState {
    /// The newest applied event's key, or the tombstone's.
    pub newest: Option<OrderKey>,
    /// At most `RECENT_BODIES`, in no particular order.
    pub recent_bodies: Vec<RecentBody>,
    pub erased: bool,
}

/// What an event does to its subject, as far as ordering is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Creates or replaces the data: an LT application (`new`, or no
    /// status), a LINA consent.
    Create,
    /// Changes existing data: an LT `updated`. For someone we never had it
    /// creates the data (the application went missing); after a tombstone
    /// it is dropped (there is no application left to update).
    Update,
    /// Erases the data: an LT revocation, a LINA withdrawal.
    Erase,
}

/// An event, as the verdict sees it.
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Apply,
    /// This very event (same order key) was applied already: a redelivery.
    Duplicate,
    /// An equal body was received within the resend window: LT sending the
    /// same message again. A no-op that keeps the order key.
    Resend,
    /// Older than what the subject already reflects (its newest event or
    /// tombstone).
    Stale,
    /// An update for a tombstone: there is no application left to update.
    NothingToUpdate,
}

impl SubjectState {
    /// The verdict on `event`; `resend_window` is `INTAKE_LT_RESEND_WINDOW`.
    /// The checks run in this order: the same event, older than the
    /// subject, a resend, an update of nothing.
    pub fn judge(&self, event: &Event, resend_window: Duration) -> Verdict {
        match self.newest {
            Some(newest) if newest == event.order => return Verdict::Duplicate,
            Some(newest) if newest > event.order => return Verdict::Stale,
            _ => {}
        }
        if self.is_resend(event, resend_window) {
            return Verdict::Resend;
        }
        if self.erased && event.effect == Effect::Update {
            return Verdict::NothingToUpdate;
        }
        Verdict::Apply
    }

    /// Only LT resends. An erasure is never taken for a resend: against live
    /// data an identical revocation (a second one after a re-application
    /// looks exactly like the first) must erase, and against a tombstone it
    /// must still move the tombstone's key forward — a re-application that
    /// waited in a delay tier and was received before it would otherwise
    /// bring the data back after the person's last revocation.
    fn is_resend(&self, event: &Event, window: Duration) -> bool {
        if !event.sender_resends || event.effect == Effect::Erase {
            return false;
        }
        let window = TimeDelta::from_std(window).unwrap_or(TimeDelta::MAX);
        self.recent_bodies.iter().any(|body| {
            body.hash == event.body && (event.received_at - body.received_at).abs() <= window
        })
    }

    /// The state after applying `event`.
    pub fn applied(&mut self, event: &Event) {
        self.newest = Some(event.order);
        self.erased = event.effect == Effect::Erase;
        self.received(event);
    }

    /// The state after a resend of `event`'s body: only its receipt time
    /// moves (LT resending for longer than the window is still recognised).
    pub fn received(&mut self, event: &Event) {
        match self
            .recent_bodies
            .iter_mut()
            .find(|body| body.hash == event.body)
        {
            Some(body) => body.received_at = body.received_at.max(event.received_at),
            None => self.recent_bodies.push(RecentBody {
                hash: event.body,
                received_at: event.received_at,
            }),
        }
        while self.recent_bodies.len() > RECENT_BODIES {
            let oldest = (0..self.recent_bodies.len())
                .min_by_key(|&n| self.recent_bodies[n].received_at)
                .unwrap_or(0);
            self.recent_bodies.swap_remove(oldest);
        }
    }

    /// The state as a tombstone with order key `key` (the erasure decides
    /// it: see `erasure::tombstone_key`).
    pub fn tombstone(&mut self, key: Option<OrderKey>) {
        self.newest = key;
        self.erased = true;
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
                    recent_body_received_at, erased_at IS NOT NULL
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

/// A state from a row of `lock`'s select.
fn state_from(row: &tokio_postgres::Row) -> Result<SubjectState, JobError> {
    let at: Option<DateTime<Utc>> = row.try_get(1)?;
    let id: Option<Uuid> = row.try_get(2)?;
    let hashes: Vec<&[u8]> = row.try_get(3)?;
    let times: Vec<DateTime<Utc>> = row.try_get(4)?;
    Ok(SubjectState {
        newest: at.zip(id).map(|(at, id)| OrderKey { at, id }),
        // The arrays are written together (`SAVE`); a hash without a time
        // is not recognised as received recently.
        recent_bodies: hashes
            .iter()
            .zip(
                times
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(DateTime::UNIX_EPOCH)),
            )
            .filter_map(|(hash, received_at)| {
                Some(RecentBody {
                    hash: <BodyHash>::try_from(*hash).ok()?,
                    received_at,
                })
            })
            .collect(),
        erased: row.try_get(5)?,
    })
}

/// Writes the final `states` of any number of subjects back in one
/// statement; an erased state becomes (or stays) a tombstone.
pub fn save_statement<'a>(states: &[(&'a SubjectKey, &SubjectState)]) -> Statement<'a> {
    let mut keys: Vec<&'a [u8]> = Vec::with_capacity(states.len());
    let mut times = Vec::with_capacity(states.len());
    let mut ids = Vec::with_capacity(states.len());
    // An array of arrays cannot be ragged: each subject's bodies travel as
    // one text, comma-separated `<hex hash>@<received, Unix µs>`, split
    // again by the statement.
    let mut bodies = Vec::with_capacity(states.len());
    let mut erased = Vec::with_capacity(states.len());
    for (key, state) in states {
        keys.push(key.as_bytes());
        times.push(state.newest.map(|order| order.at));
        ids.push(state.newest.map(|order| order.id));
        bodies.push(encode_bodies(&state.recent_bodies));
        erased.push(state.erased);
    }
    Statement::new(
        SAVE,
        vec![
            Box::new(keys),
            Box::new(times),
            Box::new(ids),
            Box::new(bodies),
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

fn encode_bodies(bodies: &[RecentBody]) -> String {
    let mut text = String::with_capacity(bodies.len() * 82);
    for (n, body) in bodies.iter().enumerate() {
        if n > 0 {
            text.push(',');
        }
        text.push_str(&hex::encode(body.hash));
        text.push('@');
        text.push_str(&body.received_at.timestamp_micros().to_string());
    }
    text
}

const SAVE: &str = "
    UPDATE subject_state AS s SET
        newest_event_at = u.at, newest_event_id = u.id,
        recent_body_hashes = ARRAY(
            SELECT decode(split_part(b.body, '@', 1), 'hex')
            FROM unnest(string_to_array(u.bodies, ',')) WITH ORDINALITY AS b(body, n)
            ORDER BY b.n),
        recent_body_received_at = ARRAY(
            SELECT timestamptz 'epoch' + split_part(b.body, '@', 2)::bigint * interval '1 microsecond'
            FROM unnest(string_to_array(u.bodies, ',')) WITH ORDINALITY AS b(body, n)
            ORDER BY b.n),
        erased_at = CASE WHEN u.erased THEN coalesce(s.erased_at, now()) END,
        updated_at = now()
    FROM unnest($1::bytea[], $2::timestamptz[], $3::uuid[], $4::text[], $5::bool[])
        AS u(key, at, id, bodies, erased)
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

    const KINDS: [Kind; 5] = [
        Kind::LtNew,
        Kind::LtUpdated,
        Kind::LtRevocation,
        Kind::LinaConsent,
        Kind::LinaWithdrawal,
    ];

    fn event(kind: Kind, second: i64, id: u128, body: BodyHash) -> Event {
        let (effect, sender_resends) = match kind {
            Kind::LtNew => (Effect::Create, true),
            Kind::LtUpdated => (Effect::Update, true),
            Kind::LtRevocation => (Effect::Erase, true),
            Kind::LinaConsent => (Effect::Create, false),
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

    use Verdict::{Apply, NothingToUpdate as Nothing, Resend, Stale};

    /// Every kind × live/tombstone × an equal body received inside/outside
    /// the window × older/newer than the subject. The subject's newest key
    /// is at 100 s; the event is at 50 s (older) or 200 s (newer); the equal
    /// body was last received 30 s (inside) or 100 s (outside) before it.
    #[test]
    fn the_verdict_table() {
        #[rustfmt::skip]
        let table: [(bool, bool, bool, [Verdict; 5]); 8] = [
            // tombstone, inside, newer: LtNew, LtUpdated, LtRevocation, LinaConsent, LinaWithdrawal
            (false, true,  true,  [Resend, Resend,  Apply,  Apply, Apply]),
            (false, false, true,  [Apply,  Apply,   Apply,  Apply, Apply]),
            (true,  true,  true,  [Resend, Resend,  Apply,  Apply, Apply]),
            (true,  false, true,  [Apply,  Nothing, Apply,  Apply, Apply]),
            (false, true,  false, [Stale,  Stale,   Stale,  Stale, Stale]),
            (false, false, false, [Stale,  Stale,   Stale,  Stale, Stale]),
            (true,  true,  false, [Stale,  Stale,   Stale,  Stale, Stale]),
            (true,  false, false, [Stale,  Stale,   Stale,  Stale, Stale]),
        ];
        for (tombstone, inside, newer, expected) in table {
            for (kind, expected) in KINDS.into_iter().zip(expected) {
                let second = if newer { 200 } else { 50 };
                let gap = if inside { 30 } else { 100 };
                let state = SubjectState {
                    newest: Some(order(100, 100)),
                    recent_bodies: vec![RecentBody {
                        hash: BODY,
                        received_at: at(second - gap),
                    }],
                    erased: tombstone,
                };
                let verdict = state.judge(&event(kind, second, 7, BODY), WINDOW);
                assert_eq!(
                    verdict, expected,
                    "{kind:?}, tombstone {tombstone}, inside {inside}, newer {newer}"
                );
            }
        }
    }

    #[test]
    fn the_same_event_again_is_a_duplicate_for_every_kind() {
        for kind in KINDS {
            let mut state = SubjectState::default();
            let first = event(kind, 10, 1, BODY);
            state.applied(&first);
            assert_eq!(state.judge(&first, WINDOW), Verdict::Duplicate, "{kind:?}");
        }
    }

    #[test]
    fn a_first_event_of_any_kind_applies_an_update_for_someone_never_seen_too() {
        for kind in KINDS {
            let verdict = SubjectState::default().judge(&event(kind, 1, 1, BODY), WINDOW);
            assert_eq!(verdict, Verdict::Apply, "{kind:?}");
        }
    }

    #[test]
    fn a_change_back_after_the_window_applies_and_within_it_is_a_resend() {
        let mut state = SubjectState::default();
        state.applied(&event(Kind::LtUpdated, 0, 1, BODY));
        state.applied(&event(Kind::LtUpdated, 10, 2, OTHER));
        let inside = event(Kind::LtUpdated, 50, 3, BODY);
        assert_eq!(state.judge(&inside, WINDOW), Verdict::Resend);
        let outside = event(Kind::LtUpdated, 61, 3, BODY);
        assert_eq!(state.judge(&outside, WINDOW), Verdict::Apply);
    }

    #[test]
    fn a_resend_keeps_the_order_key_and_moves_its_receipt_time() {
        let mut state = SubjectState::default();
        state.applied(&event(Kind::LtNew, 0, 1, BODY));
        let resend = event(Kind::LtNew, 50, 2, BODY);
        assert_eq!(state.judge(&resend, WINDOW), Verdict::Resend);
        state.received(&resend);
        assert_eq!(state.newest, Some(order(0, 1)));
        // 100 s after the first, 50 s after the resend: still a resend.
        let again = event(Kind::LtNew, 100, 3, BODY);
        assert_eq!(state.judge(&again, WINDOW), Verdict::Resend);
    }

    #[test]
    fn an_identical_re_share_after_a_revocation_outside_the_window_applies() {
        let mut state = SubjectState::default();
        state.applied(&event(Kind::LtNew, 0, 1, BODY));
        state.applied(&event(Kind::LtRevocation, 10, 2, OTHER));
        assert_eq!(
            state.judge(&event(Kind::LtNew, 20, 3, BODY), WINDOW),
            Verdict::Resend
        );
        assert_eq!(
            state.judge(&event(Kind::LtNew, 100, 3, BODY), WINDOW),
            Verdict::Apply
        );
    }

    #[test]
    fn a_second_identical_revocation_after_a_re_application_still_erases() {
        let mut state = SubjectState::default();
        state.applied(&event(Kind::LtNew, 0, 1, BODY));
        state.applied(&event(Kind::LtRevocation, 1, 2, OTHER));
        state.applied(&event(Kind::LtNew, 2, 3, [3; 32]));
        let second = event(Kind::LtRevocation, 3, 4, OTHER);
        assert_eq!(state.judge(&second, WINDOW), Verdict::Apply);
    }

    #[test]
    fn the_least_recently_received_bodies_make_room() {
        let mut state = SubjectState::default();
        for n in 0..(RECENT_BODIES as u8 + 4) {
            state.applied(&event(
                Kind::LtUpdated,
                i64::from(n),
                u128::from(n),
                [n; 32],
            ));
        }
        assert_eq!(state.recent_bodies.len(), RECENT_BODIES);
        let hashes: Vec<BodyHash> = state.recent_bodies.iter().map(|body| body.hash).collect();
        assert!(!hashes.contains(&[0; 32]));
        assert!(hashes.contains(&[RECENT_BODIES as u8 + 3; 32]));
    }

    #[test]
    fn order_keys_compare_by_time_then_id() {
        assert!(order(1, 9) < order(2, 1));
        assert!(order(1, 1) < order(1, 2));
    }

    #[test]
    fn bodies_travel_as_hex_and_microseconds() {
        let bodies = [RecentBody {
            hash: [0xab; 32],
            received_at: at(2),
        }];
        let text = encode_bodies(&bodies);
        assert_eq!(text, format!("{}@2000000", "ab".repeat(32)));
        assert_eq!(encode_bodies(&[]), "");
    }

    /// What a subject's data is after a history was applied: the body of
    /// the event that holds it, or none (never had, or erased).
    fn data_after(events: &[Event]) -> (Option<BodyHash>, bool) {
        let mut state = SubjectState::default();
        let mut data = None;
        for event in events {
            if state.judge(event, WINDOW) != Verdict::Apply {
                continue;
            }
            data = match event.effect {
                Effect::Erase => None,
                Effect::Create | Effect::Update => Some(event.body),
            };
            state.applied(event);
        }
        (data, state.erased)
    }

    /// A history without resends (every body distinct): events of one
    /// subject received a second apart. An LT `updated` comes only before
    /// the subject's first erasure: after one, whether an `updated` applies
    /// depends on whether the re-application before it was applied first
    /// (README, "Known limits"), so processing order can matter there.
    fn history() -> impl Strategy<Value = Vec<Event>> {
        (any::<bool>(), proptest::collection::vec(0..3u8, 1..8)).prop_map(|(lt, picks)| {
            let mut erased_once = false;
            let mut events = Vec::new();
            for (n, pick) in picks.into_iter().enumerate() {
                let kind = match (lt, pick, erased_once) {
                    (true, 0, _) | (true, 1, true) => Kind::LtNew,
                    (true, 1, false) => Kind::LtUpdated,
                    (true, _, _) => Kind::LtRevocation,
                    (false, 2, _) => Kind::LinaWithdrawal,
                    (false, _, _) => Kind::LinaConsent,
                };
                erased_once |= matches!(kind, Kind::LtRevocation | Kind::LinaWithdrawal);
                let second = 1000 * (n as i64 + 1);
                events.push(event(kind, second, n as u128, [n as u8 + 10; 32]));
            }
            events
        })
    }

    proptest! {
        #[test]
        fn every_processing_order_ends_where_receipt_order_does(
            (events, order) in history().prop_flat_map(|events| {
                let n = events.len();
                (Just(events), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
            })
        ) {
            let shuffled: Vec<Event> = order.iter().map(|&n| events[n]).collect();
            prop_assert_eq!(data_after(&shuffled), data_after(&events));
        }
    }
}
