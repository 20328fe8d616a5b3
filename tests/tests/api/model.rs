//! A model-based test of the ordering and erasure rules (README "Ordering
//! and erasure"): seeded random histories over a few LT and LINA subjects
//! run against the real gateway, worker, broker and database, and a small
//! reference model, written here, computes from the history alone what each
//! subject's row, tombstone and acknowledgement e-mails must be, and how many
//! events are applied, duplicates, stale or dead-lettered.
//!
//! A history mixes: LT applications (new, changed), updates, changes back to
//! an earlier body after the resend window, resends inside the window,
//! revocations; LINA consents (changed or identical to an earlier one) and
//! withdrawals; the same envelope published twice (broker redelivery) or an
//! earlier one again; `worker subject erase`; retention of one subject; a
//! store removed and added again; the worker stopped while events queue; a
//! consent for a store not registered yet, dead-lettered, the store added and
//! the dead letters replayed. Receive times are the real ones (the clock read
//! around each call): a resend is only generated well inside the window
//! (< W/3), a change back well outside it (> W + 500 ms), and the test waits
//! out the erasure clock margin after each erasure before posting more.
//!
//! After each step the test waits until the worker settled (its counters
//! reached what the model expects, no e-mail pending) and compares every
//! subject with the model; at the end it also checks that nothing personal
//! of a subject without data is left in `pg_dump`.
//!
//! Replay a failing history (the failure message names its seed):
//! `INTAKE_MODEL_SEED=<seed> cargo nextest run -p intake-tests --test api -E 'test(model::)'`.
//! `INTAKE_MODEL_VERBOSE=1` (with `--no-capture`) prints every history.
//! Run more histories (in all, split over the four tests; default 64):
//! `INTAKE_MODEL_HISTORIES=200 cargo nextest run -p intake-tests --test api -E 'test(model::)'`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Cursor;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::amqp::WorkQueue;
use common::{Envelope, EventKind};
use intake_tests::{TestApp, TestOptions, personal_strings, spawn_app_with};
use serde_json::{Value, json};
use uuid::Uuid;
use worker::admin::stores::{LinaCommand, LinaContext, WebhooksCommand};
use worker::admin::subject::{SubjectCommand, Who as SubjectWho};

/// `INTAKE_LT_RESEND_WINDOW` of the test workers.
const WINDOW_MS: i64 = 1500;
/// `INTAKE_ERASURE_CLOCK_MARGIN` of the test workers and admin commands.
const MARGIN_MS: u64 = 100;
/// Histories in all by default (split over the four tests).
const DEFAULT_HISTORIES: u64 = 64;
const TESTS: u64 = 4;
const LT_SUBJECTS: usize = 2;
/// LINA employees: the first two of store 0 (registered at the start), the
/// last of store 1 (not registered at the start).
const LINA_STORE: [usize; 3] = [0, 0, 1];
/// How long the system may take to settle after a step.
const SETTLE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn random_histories_agree_with_the_reference_model_a() {
    histories(0).await;
}

#[tokio::test]
async fn random_histories_agree_with_the_reference_model_b() {
    histories(1).await;
}

#[tokio::test]
async fn random_histories_agree_with_the_reference_model_c() {
    histories(2).await;
}

#[tokio::test]
async fn random_histories_agree_with_the_reference_model_d() {
    histories(3).await;
}

/// Runs this test's share of the histories (or the one seed asked for, in
/// the first test only).
async fn histories(test: u64) {
    if let Some(seed) = env_u64("INTAKE_MODEL_SEED") {
        if test == 0 {
            run_history(seed).await;
        }
        return;
    }
    let total = env_u64("INTAKE_MODEL_HISTORIES").unwrap_or(DEFAULT_HISTORIES);
    let mine = total / TESTS + u64::from(test < total % TESTS);
    // Fresh seeds each run (the failure message names the one that failed).
    let mut seeds = Rng::new(Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64 ^ (test << 56));
    for _ in 0..mine {
        run_history(seeds.next() >> 1).await;
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}")),
    )
}

/// The chaos workload's SplitMix64: small and good enough for choosing steps.
struct Rng(intake_tests::chaos::workload::SplitMix);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(intake_tests::chaos::workload::SplitMix(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
}

// ---------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Lt(usize),
    Lina(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    LtApply { updated: bool },
    LtRevoke,
    LinaConsent,
    LinaWithdraw,
}

impl Kind {
    fn event_kind(self) -> EventKind {
        match self {
            Kind::LtApply { .. } => EventKind::LtApplication,
            Kind::LtRevoke => EventKind::LtRevocation,
            Kind::LinaConsent => EventKind::LinaConsent,
            Kind::LinaWithdraw => EventKind::LinaWithdrawal,
        }
    }
}

/// The bounds of a receive time: the clock read before and after the call.
#[derive(Clone, Copy, Debug)]
struct Received {
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
}

/// One event of the history, as the sender produced it.
#[derive(Clone)]
struct Ev {
    /// The rank of its order key among every key of the history (events
    /// and erasures happen one after another, with safety gaps).
    seq: u64,
    id: Uuid,
    who: Who,
    kind: Kind,
    body: Value,
    received: Received,
    /// Set when the test published it itself (it can be published again).
    envelope: Option<Envelope>,
}

/// The newest write of a subject, in the model's terms.
#[derive(Clone)]
struct NewestWrite {
    seq: u64,
    id: Uuid,
    /// The rank of the first receipt of its message (its own, or for an LT
    /// resend that of the body it repeats).
    first: u64,
}

/// An LT write received (applied or not).
#[derive(Clone)]
struct SeenWrite {
    seq: u64,
    id: Uuid,
    body: Value,
    received: Received,
    first: u64,
}

#[derive(Clone, Default)]
struct State {
    write: Option<NewestWrite>,
    /// The rank of the newest erasure and its event id (none for an
    /// erasure "now").
    erasure: Option<(u64, Option<Uuid>)>,
    /// LT writes received, in rank order.
    writes: Vec<SeenWrite>,
    /// The LT profile or the LINA `data`.
    row: Option<Value>,
    /// Acknowledgements created (LT); the minimum is lower when an unsent
    /// one may have been erased with its subject in the same drain.
    emails_min: i64,
    emails_max: i64,
    /// Acknowledgements created since the last settle (still maybe unsent).
    unsettled_emails: i64,
}

/// Whether two receipts are within `window` of each other: `Err` when the
/// bounds straddle it (a test generator bug: too close to predict).
fn within(a: Received, b: Received, window: TimeDelta) -> Result<bool, String> {
    let lo = (b.lo - a.hi).max(a.lo - b.hi).max(TimeDelta::zero());
    let hi = (b.hi - a.lo).max(a.hi - b.lo);
    let margin = TimeDelta::milliseconds(50);
    if hi <= window - margin {
        Ok(true)
    } else if lo > window + margin {
        Ok(false)
    } else {
        Err(format!(
            "two receipts {lo} to {hi} apart are too close to the window to predict (a test generator bug)"
        ))
    }
}

impl State {
    /// The rule: the newest write's data, unless the newest erasure is at
    /// least as new as the first receipt of that write's message.
    fn live(&self) -> bool {
        self.write.as_ref().is_some_and(|write| {
            self.erasure
                .is_none_or(|(erasure, _)| erasure < write.first)
        })
    }

    fn erased(&self) -> bool {
        self.erasure.is_some() && !self.live()
    }

    fn has_seen(&self, id: Uuid) -> bool {
        self.write.as_ref().is_some_and(|write| write.id == id)
            || self.erasure.is_some_and(|(_, erasure)| erasure == Some(id))
            || self.writes.iter().any(|write| write.id == id)
    }

    /// Records an LT write and works out every write's first receipt
    /// again (chains of equal bodies each within the window of an earlier
    /// one); returns the event's own.
    fn remember(&mut self, ev: &Ev, window: TimeDelta) -> Result<u64, String> {
        self.writes.push(SeenWrite {
            seq: ev.seq,
            id: ev.id,
            body: ev.body.clone(),
            received: ev.received,
            first: ev.seq,
        });
        self.writes.sort_by_key(|write| write.seq);
        for later in 0..self.writes.len() {
            for earlier in 0..later {
                let (a, b) = (&self.writes[earlier], &self.writes[later]);
                if a.body == b.body && within(a.received, b.received, window)? {
                    self.writes[later].first = b.first.min(a.first);
                }
            }
        }
        let first_of = |seq: u64, writes: &[SeenWrite]| {
            writes
                .iter()
                .find(|write| write.seq == seq)
                .map(|write| write.first)
        };
        if let Some(write) = &mut self.write
            && let Some(first) = first_of(write.seq, &self.writes)
        {
            write.first = write.first.min(first);
        }
        Ok(first_of(ev.seq, &self.writes).unwrap_or(ev.seq))
    }

    /// An erasure: unsent acknowledgements go with the data.
    fn erase(&mut self) {
        self.row = None;
        self.emails_min -= self.unsettled_emails;
        self.unsettled_emails = 0;
    }

    fn erase_at(&mut self, seq: u64, id: Option<Uuid>) {
        if self.erasure.is_none_or(|(erasure, _)| erasure < seq) {
            self.erasure = Some((seq, id));
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Applied,
    Duplicate,
    Stale,
    DeadLettered,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    applied: u64,
    duplicate: u64,
    stale: u64,
    dead_lettered: u64,
}

impl Counts {
    fn minus(self, other: Counts) -> Counts {
        Counts {
            applied: self.applied - other.applied,
            duplicate: self.duplicate - other.duplicate,
            stale: self.stale - other.stale,
            dead_lettered: self.dead_lettered - other.dead_lettered,
        }
    }

    fn plus(self, other: Counts) -> Counts {
        Counts {
            applied: self.applied + other.applied,
            duplicate: self.duplicate + other.duplicate,
            stale: self.stale + other.stale,
            dead_lettered: self.dead_lettered + other.dead_lettered,
        }
    }

    fn sum(self) -> u64 {
        self.applied + self.duplicate + self.stale + self.dead_lettered
    }

    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.applied += 1,
            Outcome::Duplicate => self.duplicate += 1,
            Outcome::Stale => self.stale += 1,
            Outcome::DeadLettered => self.dead_lettered += 1,
        }
    }

    fn of(stats: &worker::context::WorkerStats) -> Counts {
        Counts {
            applied: stats.events_applied(),
            duplicate: stats.events_duplicate(),
            stale: stats.events_stale(),
            dead_lettered: stats.events_dead_lettered(),
        }
    }
}

struct Model {
    window: TimeDelta,
    seq: u64,
    lt: Vec<State>,
    lina: Vec<State>,
    events: Vec<Ev>,
    registered: [bool; 2],
    /// The rank of each store's removal key.
    removal: [Option<u64>; 2],
    running: bool,
    /// Events waiting for a stopped worker, in FIFO order.
    queue: VecDeque<usize>,
    /// Dead-lettered events, in order.
    dlq: Vec<usize>,
    totals: Counts,
    /// `totals` when the current worker started (its stats start at 0).
    baseline: Counts,
}

impl Model {
    fn new() -> Model {
        Model {
            window: TimeDelta::milliseconds(WINDOW_MS),
            seq: 0,
            lt: vec![State::default(); LT_SUBJECTS],
            lina: vec![State::default(); LINA_STORE.len()],
            events: Vec::new(),
            registered: [true, false],
            removal: [None, None],
            running: true,
            queue: VecDeque::new(),
            dlq: Vec::new(),
            totals: Counts::default(),
            baseline: Counts::default(),
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn state(&mut self, who: Who) -> &mut State {
        match who {
            Who::Lt(i) => &mut self.lt[i],
            Who::Lina(j) => &mut self.lina[j],
        }
    }

    fn state_ref(&self, who: Who) -> &State {
        match who {
            Who::Lt(i) => &self.lt[i],
            Who::Lina(j) => &self.lina[j],
        }
    }

    /// An event reaches the worker's queue: judged now if the worker runs.
    fn deliver(&mut self, event: usize) -> Result<Option<(Outcome, &'static str)>, String> {
        if self.running {
            self.process(event).map(Some)
        } else {
            self.queue.push_back(event);
            Ok(None)
        }
    }

    /// The worker judges and applies `event` (the spec, in its order).
    fn process(&mut self, index: usize) -> Result<(Outcome, &'static str), String> {
        let ev = self.events[index].clone();
        let (outcome, why) = self.judge(index, &ev)?;
        self.totals.add(outcome);
        if outcome == Outcome::DeadLettered {
            self.dlq.push(index);
        }
        Ok((outcome, why))
    }

    fn judge(&mut self, index: usize, ev: &Ev) -> Result<(Outcome, &'static str), String> {
        if let Who::Lina(j) = ev.who {
            let store = LINA_STORE[j];
            if self.removal[store].is_some_and(|removal| ev.seq <= removal) {
                return Ok((Outcome::Stale, "before its store's removal"));
            }
            if !self.registered[store] {
                return Ok((Outcome::DeadLettered, "unknown_webhook"));
            }
        }
        let window = self.window;
        let state = self.state(ev.who);
        if state.has_seen(ev.id) {
            return Ok((Outcome::Duplicate, "the same event again"));
        }
        let was_live = state.live();
        let before = state.write.as_ref().map(|write| (write.seq, write.first));
        let mut own_first = ev.seq;
        match ev.kind {
            Kind::LtRevoke | Kind::LinaWithdraw => state.erase_at(ev.seq, Some(ev.id)),
            Kind::LtApply { .. } | Kind::LinaConsent => {
                if matches!(ev.who, Who::Lt(_)) {
                    own_first = state
                        .remember(ev, window)
                        .map_err(|error| format!("event #{index}: {error}"))?;
                }
                if state.write.as_ref().is_none_or(|write| write.seq < ev.seq) {
                    state.write = Some(NewestWrite {
                        seq: ev.seq,
                        id: ev.id,
                        first: own_first,
                    });
                }
            }
        }
        let live = state.live();
        let newest = state
            .write
            .as_ref()
            .is_some_and(|write| write.seq == ev.seq);
        let erases = state.erasure.is_some_and(|(seq, _)| seq == ev.seq);
        // A resend: the event's own message began earlier, or the newest
        // write's message turned out to begin earlier than known.
        let lowered = match (before, state.write.as_ref()) {
            (Some((seq, first)), Some(write)) => write.seq == seq && write.first < first,
            _ => false,
        };
        let resend = own_first != ev.seq || lowered;
        if live && newest {
            let repeats = was_live && own_first != ev.seq && state.row.as_ref() == Some(&ev.body);
            if repeats {
                return Ok((Outcome::Duplicate, "a resend of the data"));
            }
            if state.row.is_none() && matches!(ev.who, Who::Lt(_)) {
                state.emails_min += 1;
                state.emails_max += 1;
                state.unsettled_emails += 1;
            }
            state.row = Some(ev.body.clone());
            return Ok((Outcome::Applied, "stored"));
        }
        if !live && (was_live || erases) {
            state.erase();
            return Ok((Outcome::Applied, "erased"));
        }
        if state.erasure.is_some_and(|(erasure, _)| ev.seq < erasure) {
            return Ok((Outcome::Stale, "older than the erasure"));
        }
        if resend && matches!(ev.kind, Kind::LtApply { .. }) {
            return Ok((Outcome::Duplicate, "a resend"));
        }
        Ok((Outcome::Stale, "older than the data or the erasure"))
    }

    /// An erasure "now" (request, store removal): K = max(K, now + margin),
    /// which is newer than everything so far.
    fn erase_now(&mut self, who: Who) {
        let seq = self.next_seq();
        let state = self.state(who);
        state.erase();
        state.erase_at(seq, None);
    }

    /// Retention: the erasure takes the newest key the subject has.
    fn erase_retention(&mut self, who: Who) {
        let state = self.state(who);
        let newest = state.write.as_ref().map(|write| write.seq);
        state.erase();
        if let Some(newest) = newest {
            state.erase_at(newest, None);
        }
    }

    fn remove_store(&mut self, store: usize) -> usize {
        let seq = self.next_seq();
        let mut erased = 0;
        for (j, &of) in LINA_STORE.iter().enumerate() {
            if of == store && self.lina[j].row.is_some() {
                self.lina[j].erase();
                self.lina[j].erase_at(seq, None);
                erased += 1;
            }
        }
        self.removal[store] = Some(seq);
        self.registered[store] = false;
        erased
    }

    fn settled(&mut self) {
        for state in self.lt.iter_mut().chain(self.lina.iter_mut()) {
            state.unsettled_emails = 0;
        }
    }
}

// ---------------------------------------------------------------------------
// The runner: generates a history step by step and runs it for real.
// ---------------------------------------------------------------------------

struct History {
    seed: u64,
    app: TestApp,
    rng: Rng,
    model: Model,
    steps: Vec<String>,
    tag: String,
    lt_users: Vec<String>,
    stores: [Uuid; 2],
    lina_users: Vec<Uuid>,
    versions: u32,
    /// The counters of the workers stopped so far.
    stopped_counts: Counts,
    last_posted: Option<Who>,
}

impl Drop for History {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.report());
        }
    }
}

async fn run_history(seed: u64) {
    let app = spawn_app_with(TestOptions {
        lt_resend_window: Duration::from_millis(WINDOW_MS as u64),
        erasure_clock_margin: Duration::from_millis(MARGIN_MS),
        ..TestOptions::default()
    })
    .await;
    let mut rng = Rng::new(seed);
    let tag = format!("{:06x}", rng.next() & 0xff_ffff);
    let mut ids = Rng::new(rng.next());
    let mut uuid = || {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&ids.next().to_le_bytes());
        bytes[8..].copy_from_slice(&ids.next().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    };
    let stores = [uuid(), uuid()];
    let lina_users = (0..LINA_STORE.len()).map(|_| uuid()).collect();
    let mut history = History {
        seed,
        app,
        rng,
        model: Model::new(),
        steps: Vec::new(),
        lt_users: (0..LT_SUBJECTS).map(|i| format!("m{tag}-lt{i}")).collect(),
        tag,
        stores,
        lina_users,
        versions: 0,
        stopped_counts: Counts::default(),
        last_posted: None,
    };
    history.run().await;
}

impl History {
    fn report(&self) -> String {
        let mut report = format!(
            "model history seed {seed} ({} steps):\n",
            self.steps.len(),
            seed = self.seed
        );
        for (n, step) in self.steps.iter().enumerate() {
            let _ = writeln!(report, "  {n:>2}. {step}");
        }
        let _ = write!(
            report,
            "replay: INTAKE_MODEL_SEED={} cargo nextest run -p intake-tests --test api -E 'test(model::)'",
            self.seed
        );
        report
    }

    fn fail(&self, what: &str) -> ! {
        panic!("{what}\n{}", self.report());
    }

    fn log(&mut self, step: String) {
        self.steps.push(step);
    }

    async fn run(&mut self) {
        let length = 15 + self.rng.below(16);
        self.log(format!(
            "store 0 ({}) registered; store 1 ({}) not",
            self.stores[0], self.stores[1]
        ));
        self.app.add_store(&self.stores[0].to_string()).await;
        for _ in 0..length {
            self.step().await;
            if self.model.running {
                self.settle().await;
            }
            self.compare().await;
        }
        if !self.model.running {
            self.start_worker().await;
            self.settle().await;
            self.compare().await;
        }
        self.finish().await;
        if std::env::var_os("INTAKE_MODEL_VERBOSE").is_some() {
            eprintln!("{}", self.report());
        }
    }

    async fn step(&mut self) {
        if !self.model.running && self.rng.percent(35) {
            return self.start_worker().await;
        }
        let lt = Who::Lt(self.rng.below(LT_SUBJECTS));
        let lina = Who::Lina(self.rng.below(LINA_STORE.len()));
        let direct = self.rng.percent(20);
        // While the worker is stopped, more of what makes queued events stale.
        if !self.model.running {
            match self.rng.below(100) {
                0..=19 => return self.lina_consent(lina, direct).await,
                20..=29 => return self.lina_withdraw(lina, direct).await,
                30..=41 => return self.remove_store().await,
                42..=49 => return self.add_store().await,
                50..=59 => return self.erase_request().await,
                _ => {}
            }
        }
        match self.rng.below(100) {
            0..=13 => self.lt_new(lt, direct).await,
            14..=21 => self.lt_updated(lt, direct).await,
            22..=25 => self.lt_change_back(lt).await,
            26..=34 => self.lt_resend().await,
            35..=41 => self.lt_revoke(lt, direct).await,
            42..=55 => self.lina_consent(lina, direct).await,
            56..=61 => self.lina_withdraw(lina, direct).await,
            62..=67 => self.redeliver().await,
            68..=71 => self.erase_request().await,
            72..=74 => self.retention().await,
            75..=78 => self.remove_store().await,
            79..=83 => self.add_store().await,
            84..=87 => self.stop_worker().await,
            88..=92 => self.replay().await,
            // More of the most common step.
            _ => self.lt_new(lt, direct).await,
        }
    }

    // --- bodies -------------------------------------------------------------

    fn lt_body(&mut self, i: usize, status: Option<&str>) -> Value {
        self.versions += 1;
        let v = self.versions;
        let tag = &self.tag;
        let mut body = json!({
            "mydatashare_user_id": self.lt_users[i],
            "email": format!("lt{i}.{tag}@example.fi"),
            "first_name": format!("Etu{i}{tag}"),
            "phone": format!("+358 40 {i}{v:04}"),
            "free_text": format!("Vapaa {tag} lt{i} v{v:04}"),
        });
        if let Some(status) = status {
            body["status"] = status.into();
        }
        body
    }

    fn lt_revocation(&self, i: usize) -> Value {
        json!({"mydatashare_user_id": self.lt_users[i], "status": "revoked"})
    }

    fn lina_consent_body(&mut self, j: usize) -> Value {
        self.versions += 1;
        let v = self.versions;
        let tag = &self.tag;
        json!({
            "webhook": self.stores[LINA_STORE[j]].to_string(),
            "userUuid": self.lina_users[j].to_string(),
            "userVorname": format!("Vor{j}{tag}"),
            "userName": format!("Nach{j}{tag}v{v:04}"),
            "userEmail": format!("l{j}.{tag}@example.de"),
            "bereich": format!("Ber{j}{tag}"),
        })
    }

    fn lina_withdrawal(&self, j: usize) -> Value {
        json!({
            "delete": true,
            "webhook": self.stores[LINA_STORE[j]].to_string(),
            "userUuid": self.lina_users[j].to_string(),
        })
    }

    fn name(&self, who: Who) -> String {
        match who {
            Who::Lt(i) => format!("lt{i}"),
            Who::Lina(j) => format!("lina{j}(store {})", LINA_STORE[j]),
        }
    }

    fn bodies_of(&self, who: Who) -> Vec<&Ev> {
        self.model
            .events
            .iter()
            .filter(|ev| ev.who == who)
            .collect()
    }

    // --- sending ------------------------------------------------------------

    /// Waits, if needed, until every earlier receipt of `body` for `who` is
    /// clearly inside (< W/3) or clearly outside (> W + 500 ms) the window.
    async fn keep_clear_of_the_window(&self, who: Who, body: &Value) {
        let inside = TimeDelta::milliseconds(WINDOW_MS / 3);
        let outside = TimeDelta::milliseconds(WINDOW_MS + 500);
        loop {
            let now = Utc::now();
            let grey = self
                .model
                .events
                .iter()
                .filter(|ev| ev.who == who && ev.body == *body)
                .filter(|ev| now - ev.received.lo >= inside && now - ev.received.hi <= outside)
                .map(|ev| ev.received.hi + outside)
                .max();
            let Some(until) = grey else { return };
            let wait = (until - now + TimeDelta::milliseconds(20))
                .to_std()
                .unwrap_or_default();
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends one event (through the gateway, or published directly) and
    /// hands it to the model.
    async fn send(&mut self, who: Who, kind: Kind, body: Value, direct: bool, what: &str) {
        if matches!(who, Who::Lt(_)) {
            self.keep_clear_of_the_window(who, &body).await;
        }
        let seq = self.model.next_seq();
        let text = body.to_string();
        let (id, received, envelope) = if direct {
            let tenant = match who {
                Who::Lt(_) => None,
                Who::Lina(j) => Some(self.stores[LINA_STORE[j]]),
            };
            let envelope = Envelope::new(kind.event_kind(), tenant, text.clone().into_bytes());
            self.app.publish(&envelope).await;
            let at = envelope.received_at;
            (envelope.id, Received { lo: at, hi: at }, Some(envelope))
        } else {
            let lo = Utc::now() - TimeDelta::milliseconds(1);
            let response = match who {
                Who::Lt(_) => self.app.post_lt(&text).await,
                Who::Lina(_) => self.app.post_lina(&text).await,
            };
            let hi = Utc::now() + TimeDelta::milliseconds(1);
            let status = response.status();
            let answer = response.text().await.unwrap_or_default();
            if status != 200 {
                self.fail(&format!("the gateway answered {status} {answer} to {text}"));
            }
            let answer: Value = serde_json::from_str(&answer).unwrap_or_default();
            let id = answer["id"].as_str().and_then(|id| id.parse().ok());
            let Some(id) = id.filter(|_| answer["status"] == "accepted") else {
                self.fail(&format!("unexpected 200 answer {answer}"));
            };
            (id, Received { lo, hi }, None)
        };
        let index = self.model.events.len();
        self.model.events.push(Ev {
            seq,
            id,
            who,
            kind,
            body,
            received,
            envelope,
        });
        self.last_posted = Some(who);
        let how = if direct { "published" } else { "posted" };
        self.deliver(index, &format!("{} {how} {what}", self.name(who)));
    }

    fn deliver(&mut self, index: usize, what: &str) {
        let id = self.model.events[index].id;
        let outcome = match self.model.deliver(index) {
            Ok(Some((outcome, why))) => format!("{outcome:?} ({why})"),
            Ok(None) => "queued".to_owned(),
            Err(error) => self.fail(&error),
        };
        self.log(format!("{what} [event #{index} {id}] -> {outcome}"));
    }

    // --- steps --------------------------------------------------------------

    async fn lt_new(&mut self, who: Who, direct: bool) {
        let Who::Lt(i) = who else { return };
        let status = [None, Some("new"), Some("ok")][self.rng.below(3)];
        let body = self.lt_body(i, status);
        let what = format!("application (status {status:?}, phone {})", body["phone"]);
        self.send(who, Kind::LtApply { updated: false }, body, direct, &what)
            .await;
    }

    async fn lt_updated(&mut self, who: Who, direct: bool) {
        let Who::Lt(i) = who else { return };
        let body = self.lt_body(i, Some("updated"));
        let what = format!("update (phone {})", body["phone"]);
        self.send(who, Kind::LtApply { updated: true }, body, direct, &what)
            .await;
    }

    async fn lt_change_back(&mut self, who: Who) {
        let earlier: Vec<(Kind, Value)> = self
            .bodies_of(who)
            .iter()
            .filter(|ev| matches!(ev.kind, Kind::LtApply { .. }))
            .map(|ev| (ev.kind, ev.body.clone()))
            .collect();
        let latest = self.bodies_of(who).last().map(|ev| ev.body.clone());
        let candidates: Vec<_> = earlier
            .into_iter()
            .filter(|(_, body)| Some(body) != latest.as_ref())
            .collect();
        if candidates.is_empty() {
            return self.lt_new(who, false).await;
        }
        let (kind, body) = candidates[self.rng.below(candidates.len())].clone();
        // Outside the window of every earlier receipt of this body.
        let outside = TimeDelta::milliseconds(WINDOW_MS + 500);
        let last = self
            .bodies_of(who)
            .iter()
            .filter(|ev| ev.body == body)
            .map(|ev| ev.received.hi)
            .max();
        if let Some(last) = last {
            let wait = (last + outside - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
        }
        let what = format!("change back to an earlier body (phone {})", body["phone"]);
        self.send(who, kind, body, false, &what).await;
    }

    /// The latest body of an LT subject again (inside the window if it came
    /// just now; else it waits until outside and it is a change back).
    async fn lt_resend(&mut self) {
        let who = match self.last_posted {
            Some(who @ Who::Lt(_)) if self.rng.percent(70) => who,
            _ => Who::Lt(self.rng.below(LT_SUBJECTS)),
        };
        let Some(latest) = self.bodies_of(who).last().map(|ev| (*ev).clone()) else {
            return self.lt_new(who, false).await;
        };
        let inside = Utc::now() - latest.received.lo < TimeDelta::milliseconds(WINDOW_MS / 3);
        let what = if inside {
            "resend of the latest body, inside the window"
        } else {
            "the latest body again, outside the window"
        };
        self.send(who, latest.kind, latest.body, false, what).await;
    }

    async fn lt_revoke(&mut self, who: Who, direct: bool) {
        let Who::Lt(i) = who else { return };
        let body = self.lt_revocation(i);
        self.send(who, Kind::LtRevoke, body, direct, "revocation")
            .await;
    }

    async fn lina_consent(&mut self, who: Who, direct: bool) {
        let Who::Lina(j) = who else { return };
        let earlier: Vec<Value> = self
            .bodies_of(who)
            .iter()
            .filter(|ev| ev.kind == Kind::LinaConsent)
            .map(|ev| ev.body.clone())
            .collect();
        if !earlier.is_empty() && self.rng.percent(35) {
            let body = earlier[self.rng.below(earlier.len())].clone();
            let what = format!("consent identical to an earlier one ({})", body["userName"]);
            return self.send(who, Kind::LinaConsent, body, direct, &what).await;
        }
        let body = self.lina_consent_body(j);
        let what = format!("consent ({})", body["userName"]);
        self.send(who, Kind::LinaConsent, body, direct, &what).await;
    }

    async fn lina_withdraw(&mut self, who: Who, direct: bool) {
        let Who::Lina(j) = who else { return };
        let body = self.lina_withdrawal(j);
        self.send(who, Kind::LinaWithdraw, body, direct, "withdrawal")
            .await;
    }

    /// Broker redelivery: an earlier envelope published again, or a new one
    /// published twice.
    async fn redeliver(&mut self) {
        let published: Vec<usize> = (0..self.model.events.len())
            .filter(|&n| self.model.events[n].envelope.is_some())
            .collect();
        // Preferably one of a store removed since it was published.
        let removed: Vec<usize> = published
            .iter()
            .copied()
            .filter(|&n| {
                let ev = &self.model.events[n];
                matches!(ev.who, Who::Lina(j) if self.model.removal[LINA_STORE[j]].is_some_and(|r| ev.seq < r))
            })
            .collect();
        if !removed.is_empty() && self.rng.percent(50) {
            let index = removed[self.rng.below(removed.len())];
            return self.redeliver_event(index).await;
        }
        if !published.is_empty() && self.rng.percent(50) {
            let index = published[self.rng.below(published.len())];
            return self.redeliver_event(index).await;
        }
        let who = if self.rng.percent(50) {
            Who::Lt(self.rng.below(LT_SUBJECTS))
        } else {
            Who::Lina(self.rng.below(LINA_STORE.len()))
        };
        match who {
            Who::Lt(_) => self.lt_new(who, true).await,
            Who::Lina(_) => self.lina_consent(who, true).await,
        }
        let index = self.model.events.len() - 1;
        let envelope = self.model.events[index].envelope.clone();
        self.app
            .publish(envelope.as_ref().unwrap_or_else(|| unreachable!()))
            .await;
        let what = format!("{} the same envelope again", self.name(who));
        self.deliver(index, &what);
    }

    async fn redeliver_event(&mut self, index: usize) {
        let ev = self.model.events[index].clone();
        let envelope = ev.envelope.as_ref().unwrap_or_else(|| unreachable!());
        self.app.publish(envelope).await;
        let what = format!("{} earlier envelope redelivered", self.name(ev.who));
        self.deliver(index, &what);
    }

    async fn wait_out_the_margin(&self) {
        tokio::time::sleep(Duration::from_millis(MARGIN_MS + 250)).await;
    }

    async fn erase_request(&mut self) {
        let who = if self.rng.percent(60) {
            Who::Lt(self.rng.below(LT_SUBJECTS))
        } else {
            Who::Lina(self.rng.below(LINA_STORE.len()))
        };
        let subject = match who {
            Who::Lt(i) => SubjectWho {
                lt: Some(self.lt_users[i].clone()),
                lina: None,
            },
            Who::Lina(j) => SubjectWho {
                lt: None,
                lina: Some(vec![self.stores[LINA_STORE[j]], self.lina_users[j]]),
            },
        };
        let pool = self.app.pool();
        let mailer = worker::email::Mailer::new(&self.app.mail_settings()).unwrap();
        let mut out = Vec::new();
        let result = worker::admin::subject::run(
            SubjectCommand::Erase { who: subject },
            &pool,
            &self.app.hasher(),
            &mailer,
            self.app.options.erasure_clock_margin,
            &mut out,
        )
        .await;
        if let Err(error) = result {
            self.fail(&format!("subject erase failed: {error}"));
        }
        self.model.erase_now(who);
        let out = String::from_utf8_lossy(&out).trim().to_owned();
        self.log(format!("{} erased on request ({out})", self.name(who)));
        self.wait_out_the_margin().await;
    }

    async fn retention(&mut self) {
        let candidates: Vec<Who> = (0..LT_SUBJECTS)
            .map(Who::Lt)
            .chain((0..LINA_STORE.len()).map(Who::Lina))
            .filter(|&who| self.model.state_ref(who).row.is_some())
            .collect();
        if candidates.is_empty() {
            let who = Who::Lt(self.rng.below(LT_SUBJECTS));
            return self.lt_new(who, false).await;
        }
        let who = candidates[self.rng.below(candidates.len())];
        let aged = match who {
            Who::Lt(i) => {
                self.app
                    .db
                    .execute(
                        "UPDATE lt_application SET updated_at = now() - interval '400 days' WHERE mydatashare_user_id = $1",
                        &[&self.lt_users[i]],
                    )
                    .await
            }
            Who::Lina(j) => {
                self.app
                    .db
                    .execute(
                        "UPDATE lina_employee SET updated_at = now() - interval '400 days' WHERE webhook = $1 AND user_uuid = $2",
                        &[&self.stores[LINA_STORE[j]], &self.lina_users[j]],
                    )
                    .await
            }
        };
        if aged.ok() != Some(1) {
            self.fail(&format!("{}: the row to age is not there", self.name(who)));
        }
        let erased = self
            .app
            .erase_expired(Duration::from_secs(365 * 24 * 3600))
            .await;
        if erased.as_ref().ok() != Some(&1) {
            self.fail(&format!("retention erased {erased:?}, expected 1"));
        }
        self.model.erase_retention(who);
        self.log(format!("{} erased by retention", self.name(who)));
    }

    async fn lina_command(&self, command: WebhooksCommand) -> String {
        let pool = self.app.pool();
        let hasher = self.app.hasher();
        let mailer = worker::email::Mailer::new(&self.app.mail_settings()).unwrap();
        let mut out = Vec::new();
        let context = LinaContext {
            pool: &pool,
            hasher: &hasher,
            mailer: &mailer,
            erasure_clock_margin: self.app.options.erasure_clock_margin,
            answers: &mut Cursor::new(Vec::new()),
            out: &mut out,
        };
        if let Err(error) =
            worker::admin::stores::run(LinaCommand::Webhooks { command }, context).await
        {
            self.fail(&format!("worker lina failed: {error}"));
        }
        String::from_utf8_lossy(&out).trim().to_owned()
    }

    async fn remove_store(&mut self) {
        let registered: Vec<usize> = (0..2).filter(|&s| self.model.registered[s]).collect();
        if registered.is_empty() {
            return self.add_store().await;
        }
        let store = registered[self.rng.below(registered.len())];
        let uuid = self.stores[store];
        let out = self
            .lina_command(WebhooksCommand::Remove { uuid, yes: true })
            .await;
        let erased = self.model.remove_store(store);
        self.log(format!("store {store} removed ({out})"));
        if !out.contains(&format!("{erased} employee(s) erased")) {
            self.fail(&format!("the model erased {erased} employee(s): {out}"));
        }
        self.wait_out_the_margin().await;
    }

    async fn add_store(&mut self) {
        let missing: Vec<usize> = (0..2).filter(|&s| !self.model.registered[s]).collect();
        if missing.is_empty() {
            return self.lina_consent(Who::Lina(0), false).await;
        }
        let store = missing[self.rng.below(missing.len())];
        let out = self
            .lina_command(WebhooksCommand::Add {
                uuid: self.stores[store],
                label: format!("Model store {store}"),
            })
            .await;
        self.model.registered[store] = true;
        self.log(format!("store {store} added ({out})"));
    }

    async fn stop_worker(&mut self) {
        if !self.model.running {
            return self.start_worker().await;
        }
        let worker = self.app.worker.take().unwrap_or_else(|| unreachable!());
        self.stopped_counts = self.stopped_counts.plus(Counts::of(&worker.stats));
        worker.stop().await;
        self.model.running = false;
        self.log("worker stopped".to_owned());
    }

    async fn start_worker(&mut self) {
        self.app.worker = Some(self.app.spawn_worker().await);
        self.model.running = true;
        self.model.baseline = self.model.totals;
        let mut outcomes = Vec::new();
        while let Some(index) = self.model.queue.pop_front() {
            match self.model.process(index) {
                Ok((outcome, why)) => outcomes.push(format!("#{index} {outcome:?} ({why})")),
                Err(error) => self.fail(&error),
            }
        }
        self.log(format!(
            "worker started; the queue drains: [{}]",
            outcomes.join(", ")
        ));
    }

    async fn replay(&mut self) {
        if self.model.dlq.is_empty() {
            return self.lina_consent(Who::Lina(2), false).await;
        }
        // Every dead letter is in the queue before it is replayed.
        let expected = self.model.dlq.len() as u32;
        let mut waited = Duration::ZERO;
        while self.app.dead_letters(WorkQueue::Lina).await != expected {
            if waited > SETTLE {
                self.fail(&format!("{expected} dead letter(s) expected in lina.dlq"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            waited += Duration::from_millis(25);
        }
        let out = match self
            .app
            .dlq(&["replay", "--reason", "unknown_webhook"])
            .await
        {
            Ok(out) => out,
            Err(error) => self.fail(&format!("dlq replay failed: {error}")),
        };
        if !out.contains(&format!("replayed {expected}")) {
            self.fail(&format!("expected to replay {expected}: {out}"));
        }
        let replayed = std::mem::take(&mut self.model.dlq);
        let mut outcomes = Vec::new();
        for index in replayed {
            match self.model.deliver(index) {
                Ok(Some((outcome, why))) => outcomes.push(format!("#{index} {outcome:?} ({why})")),
                Ok(None) => outcomes.push(format!("#{index} queued")),
                Err(error) => self.fail(&error),
            }
        }
        self.log(format!(
            "dlq replay --reason unknown_webhook: [{}]",
            outcomes.join(", ")
        ));
    }

    // --- checks -------------------------------------------------------------

    /// Waits until the running worker's counters reach the model's and no
    /// e-mail is pending, then checks each counter.
    async fn settle(&mut self) {
        let expected = self.model.totals.minus(self.model.baseline);
        let stats = self
            .app
            .worker
            .as_ref()
            .unwrap_or_else(|| unreachable!())
            .stats
            .clone();
        let deadline = tokio::time::Instant::now() + SETTLE;
        while Counts::of(&stats).sum() < expected.sum() {
            if tokio::time::Instant::now() > deadline {
                self.fail(&format!(
                    "the worker did not settle: {:?}, the model expects {expected:?}",
                    Counts::of(&stats)
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let actual = Counts::of(&stats);
        if actual != expected {
            self.fail(&format!(
                "the worker counted {actual:?}; the model expects {expected:?}"
            ));
        }
        loop {
            let pending = self
                .app
                .count("SELECT count(*) FROM email_outbox WHERE status <> 'sent'")
                .await;
            if pending == 0 {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                self.fail(&format!("{pending} e-mail(s) not sent"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.model.settled();
    }

    fn key(&self, who: Who) -> Vec<u8> {
        let hasher = self.app.hasher();
        let key = match who {
            Who::Lt(i) => hasher.lt(&self.lt_users[i]),
            Who::Lina(j) => hasher.lina(
                &self.stores[LINA_STORE[j]].to_string(),
                &self.lina_users[j].to_string(),
            ),
        };
        key.as_bytes().to_vec()
    }

    /// Every subject's row, tombstone and e-mails against the model.
    async fn compare(&self) {
        let mut wrong = Vec::new();
        let everyone = (0..LT_SUBJECTS)
            .map(Who::Lt)
            .chain((0..LINA_STORE.len()).map(Who::Lina));
        for who in everyone {
            let state = self.model.state_ref(who);
            let name = self.name(who);
            let key = self.key(who);
            let row: Option<Value> = match who {
                Who::Lt(i) => self
                    .app
                    .application(&self.lt_users[i])
                    .await
                    .map(|(_, _, profile)| profile),
                Who::Lina(j) => self.employee(j).await,
            };
            if row != state.row {
                wrong.push(format!(
                    "{name}: the row is {row:?}, the model expects {:?}",
                    state.row
                ));
            }
            let erased: Option<bool> = self
                .app
                .db
                .query_opt(
                    "SELECT erased_at IS NOT NULL FROM subject_state WHERE subject_key = $1",
                    &[&key],
                )
                .await
                .unwrap()
                .map(|row| row.get(0));
            if erased.unwrap_or(false) != state.erased() {
                wrong.push(format!(
                    "{name}: tombstone {erased:?}, the model expects a tombstone: {}",
                    state.erased()
                ));
            }
            if let Who::Lt(_) = who {
                let emails: i64 = self
                    .app
                    .db
                    .query_one(
                        "SELECT count(*) FROM email_outbox WHERE subject_key = $1",
                        &[&key],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if emails < state.emails_min || emails > state.emails_max {
                    wrong.push(format!(
                        "{name}: {emails} e-mail(s), the model expects {}..={}",
                        state.emails_min, state.emails_max
                    ));
                }
            }
        }
        if !wrong.is_empty() {
            self.fail(&format!(
                "the system disagrees with the model:\n  {}",
                wrong.join("\n  ")
            ));
        }
    }

    /// The employee's `data`, after checking its columns agree with it.
    async fn employee(&self, j: usize) -> Option<Value> {
        let store = self.stores[LINA_STORE[j]];
        let user = self.lina_users[j];
        let data: Value = self
            .app
            .db
            .query_opt(
                "SELECT data FROM lina_employee WHERE webhook = $1 AND user_uuid = $2",
                &[&store, &user],
            )
            .await
            .unwrap()?
            .get(0);
        let columns = self
            .app
            .employee(&store.to_string(), &user.to_string())
            .await;
        let field = |name: &str| data[name].as_str().map(str::to_owned);
        let expected = [
            field("userVorname"),
            field("userName"),
            field("userEmail"),
            field("bereich"),
        ];
        if columns.as_ref() != Some(&expected) {
            self.fail(&format!(
                "lina{j}: the columns {columns:?} do not match its data {data}"
            ));
        }
        Some(data)
    }

    /// The totals of every worker, and nothing personal of a subject
    /// without data anywhere in the database.
    async fn finish(&mut self) {
        let current = self
            .app
            .worker
            .as_ref()
            .map(|worker| Counts::of(&worker.stats))
            .unwrap_or_default();
        let all = self.stopped_counts.plus(current);
        if all != self.model.totals {
            self.fail(&format!(
                "the workers counted {all:?} in all; the model expects {:?}",
                self.model.totals
            ));
        }
        let dump = self.app.dump().await;
        let stores: Vec<String> = self.stores.iter().map(Uuid::to_string).collect();
        let mut left = Vec::new();
        let everyone = (0..LT_SUBJECTS)
            .map(Who::Lt)
            .chain((0..LINA_STORE.len()).map(Who::Lina));
        for who in everyone {
            if self.model.state_ref(who).row.is_some() {
                continue;
            }
            for ev in self.bodies_of(who) {
                for value in personal_strings(&ev.body) {
                    if !stores.contains(&value) && dump.contains(&value) {
                        left.push(format!("{}: {value:?}", self.name(who)));
                    }
                }
            }
        }
        left.sort();
        left.dedup();
        if !left.is_empty() {
            self.fail(&format!(
                "personal data of subjects without data is still in the database:\n  {}",
                left.join("\n  ")
            ));
        }
        let total = self.model.totals;
        self.log(format!("done: {total:?}"));
    }
}
