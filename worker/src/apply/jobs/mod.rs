//! Parsing a delivery into its task and planning a sender's event: pure, unit-tested.
//! Here: one module per kind, the planning rules' inputs, the LINA stores; not here: the
//! database round trips (`apply/batch.rs`) or the verdict itself (`apply/subject_state.rs`).
//!
//! An event is first *prepared* (parsed once, its subject and order key
//! known), so the batch can lock every subject up front in sorted order;
//! then *planned* under the subject-state rules: duplicates and stale events
//! are dropped and counted, everything else is applied and recorded.

pub mod lina_consent;
mod lt_application;
mod rules;
pub mod stores;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use common::senders::json::Json;
use common::senders::lina::{self, LinaConsent, LinaPayload};
use common::senders::lt::{self, LtPayload};
use common::subject::SubjectKey;
use common::{Envelope, EventKind, Source};
use uuid::Uuid;

use crate::apply::erasure::{self, Cause, Person};
use crate::apply::pipeline::Statement;
use crate::apply::subject_state::{Effect, Event, OrderKey, SubjectState, Verdict};
use crate::error::JobError;
use lina_consent::ConsentRow;
use lt_application::ApplicationRow;
use stores::Stores;

pub use rules::{IdSource, Rules, UuidV7};

/// What applying an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The event changed the stored state.
    Applied,
    /// The event erased the subject's personal data (and left a tombstone).
    Erased,
    /// Already applied (the same event, or a resend of the same body): dropped.
    Duplicate,
    /// Older than the subject's newest state or tombstone: dropped.
    Stale,
    /// An e-mail was handed to the SMTP server (or written as a file).
    Sent,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Erased => "erased",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::Sent => "sent",
        }
    }
}

/// The work an event asks for, parsed (borrowing from the event's body).
#[derive(Debug)]
pub enum Job<'a> {
    LtApplication(LtPayload<'a>),
    LtRevocation(LtPayload<'a>),
    LinaConsent(LinaConsent<'a>),
    LinaWithdrawal {
        webhook: uuid::Uuid,
        user: uuid::Uuid,
    },
}

impl Job<'_> {
    /// What the event does to its subject, for the ordering rules.
    fn effect(&self) -> Effect {
        match self {
            Job::LtApplication(_) | Job::LinaConsent(_) => Effect::Write,
            Job::LtRevocation(_) | Job::LinaWithdrawal { .. } => Effect::Erase,
        }
    }

    /// The LINA store (webhook) the event concerns.
    pub fn store(&self) -> Option<&Uuid> {
        match self {
            Job::LinaConsent(LinaConsent { webhook, .. }) | Job::LinaWithdrawal { webhook, .. } => {
                Some(webhook)
            }
            Job::LtApplication(_) | Job::LtRevocation(_) => None,
        }
    }

    /// Why an erasure happened, for the erasure log. An LT application
    /// erases when it reveals that the newest one was a resend of a body
    /// received before a revocation: the revocation is the cause.
    fn erasure_cause(&self) -> Cause {
        match self.store() {
            Some(_) => Cause::Withdrawal,
            None => Cause::Revocation,
        }
    }
}

/// An event ready to apply.
#[derive(Debug)]
pub struct Prepared<'a> {
    pub subject: SubjectKey,
    pub source: Source,
    /// Whom the event concerns (whose row an erasure deletes).
    pub person: Person,
    /// The event as the ordering rules see it.
    pub event: Event,
    pub job: Job<'a>,
}

/// What a delivery asks of the worker, from any queue: one dispatch.
// One per delivery, moved straight into its batch: boxing the event would
// cost an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Task<'a> {
    /// A sender's event, applied in a batch transaction (`apply::batch`).
    Event(Prepared<'a>),
    /// An acknowledgement e-mail to send: the outbox row's id
    /// (`consume::email`).
    Email(Uuid),
}

/// Parses a delivery once: for an event, what to do, to whom, and where it
/// stands in order; for an e-mail job, its outbox row.
pub fn prepare<'a>(rules: &Rules<'_>, envelope: &'a Envelope) -> Result<Task<'a>, JobError> {
    let (job, body, person, event_time) = match envelope.kind {
        EventKind::LtApplication | EventKind::LtRevocation => {
            let payload = lt::parse(&envelope.body, rules.lt_email_pointer)
                .map_err(|error| JobError::permanent(error.code(), error.to_string()))?;
            let person = Person::Lt {
                user_id: payload.user_id.clone(),
            };
            let event_time = sender_time(&payload.profile, rules.lt_event_time_pointer);
            let body = rules.hasher.body(&payload.profile);
            // The payload decides, not the header: the gateway derived one from the other.
            let job = if payload.is_revocation() {
                Job::LtRevocation(payload)
            } else {
                Job::LtApplication(payload)
            };
            (job, body, person, event_time)
        }
        EventKind::LinaConsent | EventKind::LinaWithdrawal => {
            let payload = lina::parse(&envelope.body)
                .map_err(|error| JobError::permanent(error.code(), error.to_string()))?;
            let person = Person::Lina {
                webhook: payload.webhook(),
                user: payload.user(),
            };
            let body = match &payload {
                LinaPayload::Consent(consent) => rules.hasher.body(&consent.data),
                LinaPayload::Withdrawal { .. } => rules.hasher.body(&Json::Null),
            };
            let job = match payload {
                LinaPayload::Consent(consent) => Job::LinaConsent(consent),
                LinaPayload::Withdrawal { webhook, user } => Job::LinaWithdrawal { webhook, user },
            };
            (job, body, person, None)
        }
        EventKind::EmailAcknowledgement => {
            return crate::email::outbox_id_of_job(&envelope.body)
                .map(Task::Email)
                .ok_or_else(|| {
                    JobError::permanent("bad_email_job", "the job names no outbox row")
                });
        }
    };
    let event = Event {
        order: OrderKey {
            at: event_time_clamped(event_time, envelope.received_at),
            id: envelope.id,
        },
        received_at: envelope.received_at,
        body,
        effect: job.effect(),
        sender_resends: envelope.kind.source() == Source::Lt,
    };
    Ok(Task::Event(Prepared {
        subject: person.key(rules.hasher),
        source: envelope.kind.source(),
        person,
        event,
        job,
    }))
}

/// The sender's event time, never later than the gateway received the
/// event: a sender clock ahead must not make an event outrank a later
/// erasure. Kept to microseconds, as stored keys are (a redelivery must
/// compare equal to the key it left).
fn event_time_clamped(sender: Option<DateTime<Utc>>, received_at: DateTime<Utc>) -> DateTime<Utc> {
    sender.map_or(received_at, |sender| {
        common::envelope::truncate_to_micros(sender).min(received_at)
    })
}

/// The sender's own event time, where configured and present (RFC 3339).
fn sender_time(body: &Json<'_>, pointer: Option<&str>) -> Option<DateTime<Utc>> {
    let text = body.pointer(pointer?)?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// One write of an event: a row of one of the batch's multi-row
/// statements (`statements`).
pub enum Write<'a> {
    /// An LT application's upsert (with its acknowledgement).
    Application(ApplicationRow<'a>),
    /// A LINA consent's upsert.
    Consent(ConsentRow<'a>),
    /// An erasure, whatever its cause.
    Erasure(erasure::Row<'a>),
}

impl Write<'_> {
    fn subject(&self) -> &SubjectKey {
        match self {
            Write::Application(row) => row.subject,
            Write::Consent(row) => row.subject,
            Write::Erasure(row) => row.subject,
        }
    }
}

/// The statements for `writes`, a few per batch rather than one per event:
/// a subject's first write goes to the first group, its second to the
/// second, and so on, and each group is a statement per kind. A subject's
/// writes thus stay in their order, and one statement never touches a row
/// twice; writes of different subjects touch different rows, so their
/// order does not matter. Measured: one statement per erasure and per
/// consent was half of the statements of a drain (BENCHMARKS.md, issue 19).
pub fn statements<'a>(writes: impl IntoIterator<Item = Write<'a>>) -> Vec<Statement<'a>> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    let mut writes_so_far: HashMap<SubjectKey, usize> = HashMap::new();
    for write in writes {
        let earlier = writes_so_far.entry(*write.subject()).or_default();
        if groups.len() == *earlier {
            groups.push(Group::default());
        }
        groups[*earlier].push(write);
        *earlier += 1;
    }
    groups.into_iter().flat_map(Group::statements).collect()
}

/// Writes of different subjects, by kind.
#[derive(Default)]
struct Group<'a> {
    applications: Vec<ApplicationRow<'a>>,
    consents: Vec<ConsentRow<'a>>,
    erasures: Vec<erasure::Row<'a>>,
}

impl<'a> Group<'a> {
    fn push(&mut self, write: Write<'a>) {
        match write {
            Write::Application(row) => self.applications.push(row),
            Write::Consent(row) => self.consents.push(row),
            Write::Erasure(row) => self.erasures.push(row),
        }
    }

    fn statements(self) -> Vec<Statement<'a>> {
        let mut statements = Vec::new();
        if !self.applications.is_empty() {
            statements.push(lt_application::upsert_all(&self.applications));
        }
        if !self.consents.is_empty() {
            statements.push(lina_consent::upsert_all(&self.consents));
        }
        if !self.erasures.is_empty() {
            statements.extend(erasure::statements(&self.erasures));
        }
        statements
    }
}

/// What an event will do, decided before anything is written.
pub struct Planned<'a> {
    pub outcome: Outcome,
    /// Its writes, erasure record included (none when dropped).
    pub writes: Vec<Write<'a>>,
    /// The subject's state once the statements ran (`None`: unchanged); the
    /// batch writes it back.
    pub state: Option<SubjectState>,
}

impl Planned<'_> {
    fn dropped(outcome: Outcome) -> Self {
        Planned {
            outcome,
            writes: Vec::new(),
            state: None,
        }
    }
}

/// Decides what an event does, from its subject's locked `state` and the
/// batch's LINA `stores`, without touching the database: the batch then
/// sends every event's statements at once (see `pipeline`). An `Err` is
/// this event's alone (it is set aside, the others go on).
pub fn plan<'a>(
    rules: &Rules<'_>,
    envelope: &'a Envelope,
    prepared: &'a Prepared<'a>,
    state: &SubjectState,
    stores: &Stores,
) -> Result<Planned<'a>, JobError> {
    let event = &prepared.event;
    if let Some(store) = prepared.job.store() {
        if stores.removed_after(store, &event.order) {
            return Ok(Planned::dropped(Outcome::Stale));
        }
        if !stores.is_registered(store) {
            return Err(lina_consent::unknown_webhook());
        }
    }
    let decision = state.decide(event, rules.lt_resend_window);
    let saved = (decision.state != *state).then_some(decision.state);
    let (outcome, write) = match decision.verdict {
        Verdict::Duplicate => return Ok(Planned::dropped(Outcome::Duplicate)),
        // Counted as a duplicate: LT sending the same message again.
        Verdict::Resend => (Outcome::Duplicate, None),
        Verdict::Stale => (Outcome::Stale, None),
        Verdict::Store => (
            Outcome::Applied,
            Some(data_write(rules, envelope, prepared)?),
        ),
        Verdict::Erase => (
            Outcome::Erased,
            Some(Write::Erasure(erasure::Row {
                person: &prepared.person,
                subject: &prepared.subject,
                cause: prepared.job.erasure_cause(),
            })),
        ),
    };
    Ok(Planned {
        outcome,
        writes: write.into_iter().collect(),
        state: saved,
    })
}

/// The write that makes an event's body the subject's data.
fn data_write<'a>(
    rules: &Rules<'_>,
    envelope: &'a Envelope,
    prepared: &'a Prepared<'a>,
) -> Result<Write<'a>, JobError> {
    match &prepared.job {
        Job::LtApplication(payload) => Ok(Write::Application(lt_application::row(
            rules, envelope, prepared, payload,
        )?)),
        Job::LinaConsent(consent) => Ok(Write::Consent(lina_consent::row(
            envelope,
            &prepared.subject,
            consent,
        ))),
        // An erasure's verdict is never `Store`; should a revocation reach
        // here, refusing it is safer than guessing.
        Job::LtRevocation(_) | Job::LinaWithdrawal { .. } => Err(JobError::Transient(
            "an erasure was planned as a write".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::subject_state::{NewestWrite, RecentWrite};
    use serde_json::json;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// Ids 1, 2, 3, …: a plan's statements are the same every run.
    struct Counting(AtomicU64);

    impl IdSource for Counting {
        fn next_id(&self) -> Uuid {
            Uuid::from_u128(u128::from(self.0.fetch_add(1, Ordering::Relaxed) + 1))
        }
    }

    const STORE: &str = "48138367-3eba-4772-b2bf-6bbd11840efb";
    const USER: &str = "c6425258-a870-498d-8173-6c2341c934e0";

    fn body(kind: EventKind) -> String {
        match kind {
            EventKind::LtApplication => {
                r#"{"mydatashare_user_id":"u1","status":"updated","email":"a@example.fi"}"#.into()
            }
            EventKind::LtRevocation => r#"{"mydatashare_user_id":"u1","status":"revoked"}"#.into(),
            EventKind::LinaConsent => {
                format!(r#"{{"webhook":"{STORE}","userUuid":"{USER}","userName":"Weiß"}}"#)
            }
            _ => format!(r#"{{"delete":true,"webhook":"{STORE}","userUuid":"{USER}"}}"#),
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum Before {
        Nothing,
        LiveOlder,
        TombstoneOlder,
        ThisEvent,
        Newer,
        SameBodyLive,
        SameBodyTombstone,
    }

    fn state(before: Before, event: &Event) -> SubjectState {
        let key = |seconds: i64, id: Uuid| OrderKey {
            at: event.order.at + chrono::TimeDelta::seconds(seconds),
            id,
        };
        let (older, newer) = (key(-10, Uuid::nil()), key(10, Uuid::max()));
        let write = |key: OrderKey, body: [u8; 32]| NewestWrite {
            key,
            first: key,
            body,
        };
        let same_body = |key: OrderKey| RecentWrite {
            body: event.body,
            key,
            received_at: key.at,
            first: key,
        };
        let this_event = match event.effect {
            Effect::Write => SubjectState {
                write: Some(write(event.order, event.body)),
                ..SubjectState::default()
            },
            Effect::Erase => SubjectState {
                erasure: Some(event.order),
                ..SubjectState::default()
            },
        };
        let earliest = key(-20, Uuid::nil());
        match before {
            Before::Nothing => SubjectState::default(),
            Before::LiveOlder => SubjectState {
                write: Some(write(older, [7; 32])),
                ..SubjectState::default()
            },
            Before::TombstoneOlder => SubjectState {
                erasure: Some(older),
                ..SubjectState::default()
            },
            Before::ThisEvent => this_event,
            Before::Newer => SubjectState {
                write: Some(write(newer, [7; 32])),
                ..SubjectState::default()
            },
            Before::SameBodyLive => SubjectState {
                write: Some(write(older, event.body)),
                recent: vec![same_body(older)],
                ..SubjectState::default()
            },
            Before::SameBodyTombstone => SubjectState {
                write: Some(write(earliest, event.body)),
                erasure: Some(older),
                recent: vec![same_body(earliest)],
            },
        }
    }

    static HASHER: std::sync::LazyLock<common::subject::SubjectHasher> =
        std::sync::LazyLock::new(|| {
            common::subject::SubjectHasher::new("a-key-of-sixteen-bytes".to_owned().into())
        });

    fn rules(ids: &dyn IdSource) -> Rules<'_> {
        Rules {
            hasher: &HASHER,
            lt_email_pointer: "/email",
            lt_event_time_pointer: None,
            lt_resend_window: Duration::from_secs(3600),
            first_name_pointer: "/first_name",
            language_pointer: "/language",
            ids,
        }
    }

    fn event_of(task: Result<Task, JobError>) -> Prepared {
        match task {
            Ok(Task::Event(prepared)) => prepared,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn an_email_job_is_a_task_of_its_own_and_a_job_naming_no_row_is_refused() {
        let rules = rules(&UuidV7);
        let id = Uuid::now_v7();
        let job = Envelope::new(
            EventKind::EmailAcknowledgement,
            None,
            crate::email::job_body(id),
        );
        assert!(matches!(prepare(&rules, &job), Ok(Task::Email(named)) if named == id));
        let bad = Envelope::new(EventKind::EmailAcknowledgement, None, b"{}".to_vec());
        let refused = prepare(&rules, &bad).err().map(|error| error.reason());
        assert_eq!(refused, Some("bad_email_job"));
    }

    /// A plan's statements as their first words (the table each writes).
    fn heads(planned: &mut Planned<'_>) -> Vec<String> {
        statements(std::mem::take(&mut planned.writes))
            .iter()
            .map(|statement| {
                let words: Vec<&str> = statement.sql.split_whitespace().take(4).collect();
                words.join(" ")
            })
            .collect()
    }

    const ERASE_LT: [&str; 4] = [
        "DELETE FROM lt_application WHERE",
        "SELECT id FROM email_outbox",
        "DELETE FROM email_outbox WHERE",
        "INSERT INTO erasure_log (subject_key,",
    ];
    const ERASE_LINA: [&str; 4] = [
        "DELETE FROM lina_employee AS",
        "SELECT id FROM email_outbox",
        "DELETE FROM email_outbox WHERE",
        "INSERT INTO erasure_log (subject_key,",
    ];
    const UPSERT_LT: [&str; 1] = ["WITH application AS ("];
    const UPSERT_LINA: [&str; 1] = ["INSERT INTO lina_employee (webhook,"];

    /// Every kind × what the subject's state was × the plan: its outcome,
    /// its statements, and whether the state is written back.
    #[test]
    fn the_plan_table() {
        use Before::*;
        use EventKind::*;
        use Outcome::{Applied, Duplicate, Erased, Stale};
        let none: &[&str] = &[];
        #[rustfmt::skip]
        let table: Vec<(EventKind, Before, Outcome, &[&str], bool)> = vec![
            (LtApplication, Nothing, Applied, &UPSERT_LT, true),
            (LtApplication, LiveOlder, Applied, &UPSERT_LT, true),
            (LtApplication, TombstoneOlder, Applied, &UPSERT_LT, true), // an `updated` re-creates
            (LtApplication, ThisEvent, Duplicate, none, false),
            (LtApplication, Newer, Stale, none, true), // remembered: it may be a resend's original
            (LtApplication, SameBodyLive, Duplicate, none, true), // a resend
            (LtApplication, SameBodyTombstone, Duplicate, none, true), // a resend from before the erasure
            (LtRevocation, Nothing, Erased, &ERASE_LT, true),
            (LtRevocation, LiveOlder, Erased, &ERASE_LT, true),
            (LtRevocation, TombstoneOlder, Erased, &ERASE_LT, true),
            (LtRevocation, ThisEvent, Duplicate, none, false),
            (LtRevocation, Newer, Stale, none, true), // remembered: a resend may still let it win
            (LtRevocation, SameBodyLive, Erased, &ERASE_LT, true),
            (LtRevocation, SameBodyTombstone, Erased, &ERASE_LT, true), // moves the key on
            (LinaConsent, Nothing, Applied, &UPSERT_LINA, true),
            (LinaConsent, LiveOlder, Applied, &UPSERT_LINA, true),
            (LinaConsent, TombstoneOlder, Applied, &UPSERT_LINA, true), // consent given again
            (LinaConsent, ThisEvent, Duplicate, none, false),
            (LinaConsent, Newer, Stale, none, false),
            (LinaConsent, SameBodyLive, Applied, &UPSERT_LINA, true), // LINA never resends
            (LinaConsent, SameBodyTombstone, Applied, &UPSERT_LINA, true),
            (LinaWithdrawal, Nothing, Erased, &ERASE_LINA, true),
            (LinaWithdrawal, LiveOlder, Erased, &ERASE_LINA, true),
            (LinaWithdrawal, TombstoneOlder, Erased, &ERASE_LINA, true),
            (LinaWithdrawal, ThisEvent, Duplicate, none, false),
            (LinaWithdrawal, Newer, Stale, none, true),
            (LinaWithdrawal, SameBodyLive, Erased, &ERASE_LINA, true),
            (LinaWithdrawal, SameBodyTombstone, Erased, &ERASE_LINA, true),
        ];
        let ids = Counting(AtomicU64::new(0));
        let rules = rules(&ids);
        let store: Uuid = STORE.parse().unwrap_or_default();
        let stores = Stores::with(&[store], &[]);
        for (kind, before, outcome, statements, saves) in table {
            let tenant = (kind.source() == Source::Lina).then_some(store);
            let envelope = Envelope::new(kind, tenant, body(kind).into_bytes());
            let prepared = event_of(prepare(&rules, &envelope));
            let state = state(before, &prepared.event);
            let mut planned = plan(&rules, &envelope, &prepared, &state, &stores)
                .unwrap_or_else(|error| panic!("{kind:?} {before:?}: {error}"));
            let case = format!("{kind:?} after {before:?}");
            assert_eq!(planned.outcome, outcome, "{case}");
            assert_eq!(heads(&mut planned), statements, "{case}");
            assert_eq!(planned.state.is_some(), saves, "{case}");
            if let Some(next) = &planned.state
                && matches!(outcome, Applied | Erased)
            {
                assert_eq!(
                    next.newest(),
                    Some(prepared.event.order),
                    "{case}: the new order key"
                );
                assert_eq!(next.is_tombstone(), outcome == Erased, "{case}");
            }
        }
    }

    /// The writes of a batch: applications of A and B, A's revocation, a
    /// consent of C, B's revocation, A's application again.
    #[test]
    fn a_batch_writes_a_statement_per_kind_and_round_of_its_subjects() {
        let rules = rules(&UuidV7);
        let store: Uuid = STORE.parse().unwrap_or_default();
        let stores = Stores::with(&[store], &[]);
        let lt = |user: &str, status: &str| {
            let kind = match status {
                "revoked" => EventKind::LtRevocation,
                _ => EventKind::LtApplication,
            };
            let body = format!(
                r#"{{"mydatashare_user_id":"{user}","status":"{status}","email":"{user}@example.fi"}}"#
            );
            Envelope::new(kind, None, body.into_bytes())
        };
        let envelopes = [
            lt("a", "new"),
            lt("b", "new"),
            lt("a", "revoked"),
            Envelope::new(
                EventKind::LinaConsent,
                Some(store),
                body(EventKind::LinaConsent).into_bytes(),
            ),
            lt("b", "revoked"),
            lt("a", "new"),
        ];
        let prepared: Vec<Prepared> = envelopes
            .iter()
            .map(|envelope| event_of(prepare(&rules, envelope)))
            .collect();
        let mut writes = Vec::new();
        for (envelope, prepared) in envelopes.iter().zip(&prepared) {
            let planned = plan(
                &rules,
                envelope,
                prepared,
                &SubjectState::default(),
                &stores,
            )
            .unwrap_or_else(|error| panic!("{error}"));
            writes.extend(planned.writes);
        }
        let statements = statements(writes);
        let heads: Vec<String> = statements
            .iter()
            .map(|statement| {
                statement
                    .sql
                    .split_whitespace()
                    .take(4)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        // Each statement's first parameter: whom it concerns.
        let whom: Vec<String> = statements
            .iter()
            .map(|statement| format!("{:?}", statement.params.first()))
            .collect();
        let mut expected: Vec<&str> = Vec::new();
        // Round 1: A's and B's applications, C's consent.
        expected.extend(UPSERT_LT);
        expected.extend(UPSERT_LINA);
        // Round 2: A's and B's revocations, one erasure.
        expected.extend(ERASE_LT);
        // Round 3: A's application again, after A's revocation.
        expected.extend(UPSERT_LT);
        assert_eq!(heads, expected);
        assert_eq!(whom[0], r#"Some(["a", "b"])"#, "{whom:?}");
        assert_eq!(whom[2], r#"Some(["a", "b"])"#, "{whom:?}");
        assert_eq!(whom[6], r#"Some(["a"])"#, "{whom:?}");
    }

    #[test]
    fn a_lina_event_before_its_store_was_removed_is_stale_and_an_unknown_store_parks_it() {
        let rules = rules(&UuidV7);
        let store: Uuid = STORE.parse().unwrap_or_default();
        let envelope = Envelope::new(
            EventKind::LinaConsent,
            Some(store),
            body(EventKind::LinaConsent).into_bytes(),
        );
        let prepared = event_of(prepare(&rules, &envelope));
        let removal = OrderKey {
            at: prepared.event.order.at + chrono::TimeDelta::seconds(1),
            id: Uuid::nil(),
        };
        let state = SubjectState::default();
        for stores in [
            Stores::with(&[], &[(store, removal)]),
            Stores::with(&[store], &[(store, removal)]),
        ] {
            let planned = plan(&rules, &envelope, &prepared, &state, &stores)
                .unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(planned.outcome, Outcome::Stale, "removed, re-added or not");
        }
        let unknown = plan(&rules, &envelope, &prepared, &state, &Stores::default());
        assert_eq!(
            unknown.err().map(|error| error.reason()),
            Some("unknown_webhook")
        );
    }

    #[test]
    fn the_sender_time_is_used_only_where_configured_and_valid() {
        let text = json!({"shared_at": "2026-11-20T08:14:03Z", "bad": "yesterday"}).to_string();
        let body = common::senders::json::parse(text.as_bytes()).expect("JSON");
        assert!(sender_time(&body, None).is_none());
        assert!(sender_time(&body, Some("/bad")).is_none());
        assert!(sender_time(&body, Some("/missing")).is_none());
        let time = sender_time(&body, Some("/shared_at")).map(|time| time.to_rfc3339());
        assert_eq!(time.as_deref(), Some("2026-11-20T08:14:03+00:00"));
    }

    #[test]
    fn a_sender_time_ahead_of_the_receive_time_is_clamped_to_it() {
        let received = DateTime::parse_from_rfc3339("2026-11-20T08:00:00Z")
            .map(|time| time.with_timezone(&Utc))
            .unwrap_or_default();
        let earlier = received - chrono::TimeDelta::seconds(30);
        let later = received + chrono::TimeDelta::seconds(30);
        assert_eq!(event_time_clamped(None, received), received);
        assert_eq!(event_time_clamped(Some(earlier), received), earlier);
        assert_eq!(event_time_clamped(Some(later), received), received);
    }
}
