//! The checker: once the fault is over and the system has settled, compares
//! what the senders were told (every 200) with the final database, the
//! dead-letter queues and the e-mails the SMTP server received.
//!
//! - lost: an acknowledged event whose effect is not visible, not
//!   superseded by a later event of its subject, and not dead-lettered with
//!   a reason. Must be 0.
//! - every subject's state is its newest acknowledged event, or a later
//!   unacknowledged one (LINA: a call that died after it was stored);
//! - an erased subject's personal values appear nowhere in `pg_dump`;
//! - one acknowledgement e-mail per application that created a profile
//!   (again after a revocation); duplicates (same Message-ID) are the
//!   documented crash window, allowed up to the scenario's bound.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use common::amqp::WorkQueue;
use lapin::options::BasicGetOptions;
use serde_json::Value;
use tokio::time::Instant;

use super::driver::Results;
use super::workload::{Sender, Subject, Workload};
use crate::TestApp;
use crate::smtp::SmtpServer;

/// What a scenario tolerates.
#[derive(Clone, Debug, Default)]
pub struct Tolerance {
    /// Duplicate e-mails the scenario's crashes may cause (each crash: at
    /// most the e-mails in flight).
    pub duplicate_emails: usize,
    /// Spool directories that must be empty at the end (a gateway binary's).
    pub spool_dirs: Vec<PathBuf>,
}

/// The figures of one scenario.
#[derive(Debug, Default)]
pub struct Report {
    pub scenario: String,
    pub sent: usize,
    pub acknowledged: usize,
    pub lost: usize,
    pub dead_lettered: usize,
    pub emails: usize,
    pub duplicate_emails: usize,
    /// E-mails received whose outbox row an erasure removed before it was
    /// marked sent (the same crash window as a duplicate).
    pub unrecorded_emails: usize,
    pub allowed_duplicates: usize,
    pub lt_resends: usize,
    /// LINA calls not answered 200, by what they got (LINA does not resend).
    pub lina_refused: std::collections::BTreeMap<String, usize>,
    /// Fault end → system applying / answering again, per fault.
    pub recoveries: Vec<super::Recovery>,
    pub settled_in: Duration,
    /// Everything that fails the scenario, with its evidence.
    pub failures: Vec<String>,
}

impl Report {
    pub fn line(&self) -> String {
        let recoveries: Vec<String> = self.recoveries.iter().map(ToString::to_string).collect();
        format!(
            "chaos {}: events sent {}, acknowledged (200) {}, lost {}, dead-lettered {}, \
             duplicated e-mails {} (allowed {}), time to recover {}; \
             e-mails {} ({} without an outbox row), LT resends {}, LINA not answered 200 {:?}, settled {:.1} s after the load",
            self.scenario,
            self.sent,
            self.acknowledged,
            self.lost,
            self.dead_lettered,
            self.duplicate_emails,
            self.allowed_duplicates,
            recoveries.join(" / "),
            self.emails,
            self.unrecorded_emails,
            self.lt_resends,
            self.lina_refused,
            self.settled_in.as_secs_f64(),
        )
    }

    /// Prints the figures and fails the test on any loss or broken invariant.
    pub fn assert_ok(&self) {
        println!("{}", self.line());
        if !self.failures.is_empty() {
            let shown: Vec<&str> = self.failures.iter().take(30).map(String::as_str).collect();
            panic!(
                "{}\n{} failure(s):\n  {}",
                self.line(),
                self.failures.len(),
                shown.join("\n  ")
            );
        }
    }
}

/// Waits until the system is quiet: work queues and delay tiers empty,
/// spools drained, and the database and inbox unchanged for a while (longer
/// while e-mails are pending: the outbox sweeper waits out its grace).
pub async fn settle(app: &TestApp, smtp: &SmtpServer, tolerance: &Tolerance) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut last = None;
    let mut since = Instant::now();
    loop {
        let busy = queued(app).await + spooled(app, tolerance);
        let (fingerprint, pending) = fingerprint(app, smtp).await;
        if last.as_ref() != Some(&fingerprint) || busy > 0 {
            last = Some(fingerprint);
            since = Instant::now();
        }
        let quiet_for = if pending > 0 { 15 } else { 2 };
        if since.elapsed() >= Duration::from_secs(quiet_for) || Instant::now() >= deadline {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Messages waiting in the work queues and delay tiers.
async fn queued(app: &TestApp) -> u32 {
    let mut queues: Vec<String> = WorkQueue::ALL.map(|queue| app.queue(queue)).to_vec();
    queues.extend(app.topology.exchange_names());
    let mut total = 0;
    for queue in queues {
        total += crate::broker::depth_at(&app.amqp, &queue).await;
    }
    total
}

fn spooled(app: &TestApp, tolerance: &Tolerance) -> u32 {
    let segments = |dir: &PathBuf| crate::app::spool_segments_in(dir);
    (segments(&app.spool_dir) + tolerance.spool_dirs.iter().map(segments).sum::<usize>()) as u32
}

/// What changes while the system still works; and the pending e-mails.
async fn fingerprint(app: &TestApp, smtp: &SmtpServer) -> (Vec<String>, i64) {
    let row = app
        .db
        .query_one(
            "SELECT (SELECT count(*) FROM lt_application), (SELECT count(*) FROM lina_employee),
                    (SELECT count(*) FROM erasure_log),
                    (SELECT count(*) FROM email_outbox WHERE status = 'pending'),
                    (SELECT count(*) FROM email_outbox WHERE status <> 'pending'),
                    (SELECT coalesce(sum(attempts), 0) FROM email_outbox),
                    (SELECT coalesce(max(updated_at)::text, '') FROM subject_state)",
            &[],
        )
        .await
        .unwrap();
    let mut values: Vec<String> = (0..6).map(|n| row.get::<_, i64>(n).to_string()).collect();
    values.push(row.get(6));
    values.push(smtp.received().len().to_string());
    (values, row.get(3))
}

/// The final state the checker compares against.
struct Final {
    applications: HashMap<String, Value>,
    employees: HashMap<String, Value>,
    tombstones: HashSet<Vec<u8>>,
    /// Outbox rows per subject key: (id, status).
    outbox: HashMap<Vec<u8>, Vec<(uuid::Uuid, String)>>,
    /// Bodies in the dead-letter queues and the quarantine, with their reasons.
    dead_letters: Vec<(String, String)>,
    /// Per recipient: every Message-ID received (duplicates included).
    inbox: HashMap<String, Vec<String>>,
    dump: String,
}

impl Final {
    async fn read(app: &TestApp, smtp: &SmtpServer) -> Final {
        let rows = |query: &'static str| async move { app.db.query(query, &[]).await.unwrap() };
        let applications = rows("SELECT mydatashare_user_id, profile FROM lt_application")
            .await
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let employees = rows("SELECT user_uuid::text, data FROM lina_employee")
            .await
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let tombstones = rows("SELECT subject_key FROM subject_state WHERE erased_at IS NOT NULL")
            .await
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut outbox: HashMap<Vec<u8>, Vec<(uuid::Uuid, String)>> = HashMap::new();
        for row in rows("SELECT subject_key, id, status FROM email_outbox").await {
            outbox
                .entry(row.get(0))
                .or_default()
                .push((row.get(1), row.get(2)));
        }
        let mut inbox: HashMap<String, Vec<String>> = HashMap::new();
        for mail in smtp.received() {
            let id = mail.parsed().message_id().unwrap_or_default().to_owned();
            for to in &mail.to {
                inbox.entry(to.clone()).or_default().push(id.clone());
            }
        }
        Final {
            applications,
            employees,
            tombstones,
            outbox,
            dead_letters: dead_letters(app).await,
            inbox,
            dump: app.dump().await,
        }
    }
}

/// Every parked message's body and reason; all are returned to their
/// queues when the channel closes.
async fn dead_letters(app: &TestApp) -> Vec<(String, String)> {
    let connection = crate::broker::connect_with(&app.amqp).await;
    let mut parked = Vec::new();
    for queue in app.topology.dead_letter_queues() {
        let channel = connection.create_channel().await.unwrap();
        while let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            let message = worker::dead_letters::ParkedMessage::new(
                &queue,
                message.delivery.properties.clone(),
                message.delivery.data,
            );
            parked.push((
                String::from_utf8_lossy(&message.body).into_owned(),
                message.reason.unwrap_or_else(|| "(none)".into()),
            ));
        }
        let _ = channel.close(200, "browsed".into()).await;
    }
    let _ = connection.close(200, "done".into()).await;
    parked
}

/// Settles, then checks every invariant; the report says what failed.
pub async fn check(
    scenario: &str,
    app: &TestApp,
    workload: &Workload,
    results: &Results,
    smtp: &SmtpServer,
    tolerance: &Tolerance,
    recoveries: Vec<super::Recovery>,
) -> Report {
    let settled_in = settle(app, smtp, tolerance).await;
    let state = Final::read(app, smtp).await;
    let mut report = Report {
        scenario: scenario.to_owned(),
        sent: results.sent(),
        acknowledged: results.acknowledged(),
        dead_lettered: state.dead_letters.len(),
        emails: smtp.received().len(),
        allowed_duplicates: tolerance.duplicate_emails,
        lt_resends: results.lt_resends,
        lina_refused: results.lina_refused.clone(),
        recoveries,
        settled_in,
        ..Report::default()
    };
    let parked: HashSet<&str> = state
        .dead_letters
        .iter()
        .map(|(body, _)| body.as_str())
        .collect();
    for (body, reason) in &state.dead_letters {
        report.failures.push(format!(
            "dead-lettered ({reason}): {}",
            if body.contains("outbox_id") {
                body.as_str()
            } else {
                "an event"
            }
        ));
    }
    let hasher = app.hasher();
    for (n, subject) in workload.subjects.iter().enumerate() {
        let key = match subject.sender {
            Sender::Lt => hasher.lt(&subject.user),
            Sender::Lina => hasher.lina(&workload.store, &subject.user),
        };
        let Some(reflected) = reflected_event(subject, &state, key.as_bytes()) else {
            report.failures.push(format!(
                "{:?} subject {n}: the stored data matches none of its events",
                subject.sender
            ));
            continue;
        };
        check_subject(
            n,
            subject,
            &results.acked[n],
            reflected,
            &parked,
            &mut report,
        );
        if let Some(index) = reflected
            && subject.events[index].erasure
        {
            check_erased(n, subject, &workload.store, &state.dump, &mut report);
        }
        if subject.sender == Sender::Lt {
            let applied_up_to = reflected
                .into_iter()
                .chain(last_acked(&results.acked[n]))
                .max();
            check_emails(
                n,
                subject,
                applied_up_to,
                &state,
                key.as_bytes(),
                &mut report,
            );
        }
    }
    for (what, count) in [
        ("duplicate e-mails", report.duplicate_emails),
        ("e-mails without an outbox row", report.unrecorded_emails),
    ] {
        if count > report.allowed_duplicates {
            report.failures.push(format!(
                "more {what} ({count}) than the scenario's crash window allows ({})",
                report.allowed_duplicates
            ));
        }
    }
    if settled_in >= Duration::from_secs(120) {
        report
            .failures
            .push("the system did not settle within 120 s".into());
    }
    for answer in &results.unexpected {
        report.failures.push(format!("unexpected answer: {answer}"));
    }
    if results.lt_gave_up > 0 {
        report.failures.push(format!(
            "{} LT event(s) never got 200 (the gateway did not recover)",
            results.lt_gave_up
        ));
    }
    report
}

fn last_acked(acked: &[bool]) -> Option<usize> {
    acked.iter().rposition(|acked| *acked)
}

/// The event the subject's final state comes from: the one whose body is
/// stored, the last erasure if the subject is a tombstone, `Some(None)` if
/// nothing was applied; `None` if the stored data is none of its events.
fn reflected_event(subject: &Subject, state: &Final, key: &[u8]) -> Option<Option<usize>> {
    let stored = match subject.sender {
        Sender::Lt => state.applications.get(&subject.user),
        Sender::Lina => state.employees.get(&subject.user),
    };
    match stored {
        Some(stored) => subject
            .events
            .iter()
            .position(|event| !event.erasure && &event.value() == stored)
            .map(Some),
        None if state.tombstones.contains(key) => {
            Some(subject.events.iter().rposition(|event| event.erasure))
        }
        None => Some(None),
    }
}

/// Every acknowledged event is reflected, superseded, or dead-lettered.
fn check_subject(
    n: usize,
    subject: &Subject,
    acked: &[bool],
    reflected: Option<usize>,
    parked: &HashSet<&str>,
    report: &mut Report,
) {
    let name = format!("{:?} subject {n}", subject.sender);
    let Some(newest) = last_acked(acked) else {
        return;
    };
    if reflected.is_some_and(|index| index >= newest) {
        return;
    }
    let after = reflected.map_or(0, |index| index + 1);
    for index in (after..=newest).filter(|index| acked[*index]) {
        // A resend is dropped by design; a parked event is not lost.
        if subject.events[index].resend || parked.contains(subject.events[index].body.as_str()) {
            continue;
        }
        report.lost += 1;
        report.failures.push(format!(
            "LOST: {name}, event #{index} of {} ({}) was answered 200; the final state reflects {}",
            subject.events.len(),
            if subject.events[index].erasure {
                "erasure"
            } else {
                "data"
            },
            reflected.map_or("nothing".into(), |index| format!("event #{index}")),
        ));
    }
}

/// An erased subject's personal values are nowhere in the database.
fn check_erased(n: usize, subject: &Subject, store: &str, dump: &str, report: &mut Report) {
    let left: Vec<String> = subject
        .personal_strings(store)
        .into_iter()
        .filter(|text| dump.contains(text.as_str()))
        .collect();
    if !left.is_empty() {
        report.failures.push(format!(
            "{:?} subject {n} is erased but {} of its personal values are still in pg_dump",
            subject.sender,
            left.len()
        ));
    }
}

/// One acknowledgement per application that created the profile, each
/// received at least once; more than once is a duplicate. A revocation
/// deletes the person's unsent acknowledgements (by design), so a creation
/// followed by an erasure may have none.
fn check_emails(
    n: usize,
    subject: &Subject,
    applied_up_to: Option<usize>,
    state: &Final,
    key: &[u8],
    report: &mut Report,
) {
    let Some(up_to) = applied_up_to else {
        return;
    };
    let (must, may) = expected_acknowledgements(&subject.events[..=up_to]);
    let received = state.inbox.get(&subject.email).cloned().unwrap_or_default();
    let distinct: HashSet<&String> = received.iter().collect();
    report.duplicate_emails += received.len() - distinct.len();
    let rows = state.outbox.get(key).cloned().unwrap_or_default();
    let unsent = rows.iter().filter(|(_, status)| status != "sent").count();
    let unreceived = rows
        .iter()
        .filter(|(id, _)| {
            !distinct
                .iter()
                .any(|message| message.starts_with(&id.to_string()))
        })
        .count();
    // A sent e-mail whose row is gone: the connection was lost after the
    // SMTP server's 250 and before the commit, and a revocation then erased
    // the still-pending row (the crash window, seen from the other side).
    report.unrecorded_emails += distinct.len().saturating_sub(rows.len());
    if !(must..=may).contains(&distinct.len())
        || distinct.len() < rows.len()
        || unsent > 0
        || unreceived > 0
    {
        let script: Vec<String> = subject.events[..=up_to]
            .iter()
            .map(|event| event.value()["status"].as_str().unwrap_or("?").to_owned())
            .collect();
        report.failures.push(format!(
            "LT subject {n}: {must}..={may} acknowledgement(s) expected, {} distinct received \
             ({} in all); outbox rows {} ({unsent} not sent, {unreceived} not received); events {}",
            distinct.len(),
            received.len(),
            rows.len(),
            script.join(",")
        ));
    }
}

/// (acknowledgements that must arrive, that may arrive) for these events
/// applied in order (resends are dropped): every creation may; one not
/// erased afterwards must.
fn expected_acknowledgements(events: &[super::workload::Event]) -> (usize, usize) {
    let mut present = false;
    let (mut must, mut may) = (0, 0);
    for event in events.iter().filter(|event| !event.resend) {
        if event.erasure {
            // The pending acknowledgement of the last creation may be erased.
            if present && must > 0 {
                must -= 1;
            }
        } else if !present {
            must += 1;
            may += 1;
        }
        present = !event.erasure;
    }
    (must, may)
}
