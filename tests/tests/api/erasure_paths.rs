//! An erasure on request or by a store's removal wins over every event
//! received before it, wherever that event waited until after the erasure:
//! the queue backlog (the worker stopped), a delay tier, the dead-letter
//! queue (replayed), and for LINA the gateway's spool. Each case ends with
//! no personal data in `pg_dump` and no e-mail queued, the late events
//! counted as stale (README "Ordering and erasure"). Retention is not among
//! them: it takes the newest applied key, so an event received after the
//! expired data and still waiting shows the person is active and applies
//! (`ordering::an_update_waiting_when_retention_erases_applies_after_it`).

use std::time::Duration;

use common::amqp::{ConfirmedPublisher, WorkQueue};
use common::{Envelope, EventKind};
use gateway::settings::{GatewaySettings, HttpTimeouts};
use gateway::spool::{Spool, SpoolRecord, Target};
use gateway::startup::Application;
use intake_tests::app::{LINA_SECRET, TEST_TOKEN};
use intake_tests::{TestApp, TestOptions, personal_strings, spawn_app_with, until};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use worker::admin::stores::{LinaCommand, LinaContext, WebhooksCommand};
use worker::admin::subject::{SubjectCommand, Who};

const STORE: &str = "3d0f7a51-9c2e-4b8a-8f61-2a7e5c9b0d14";
const LT_USER: &str = "erasure-paths-lt-1";
const LINA_USER: &str = "c0a80101-4d2b-4e6f-9a3c-5b7d9e1f2a4c";
/// An employee who had no row when the store was removed.
const LINA_NEWCOMER: &str = "c0a80102-7e4f-4a1b-8c2d-3e5f7a9b1c3d";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Request,
    StoreRemoved,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// Waiting in the work queue while no worker runs.
    Backlog,
    /// Waiting in a delay tier (published straight into it).
    RetryTier,
    /// Dead-lettered, then replayed after the erasure.
    Replay,
    /// LINA only: in a gateway's spool, drained after the erasure.
    Spool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sender {
    Lt,
    Lina,
}

fn lt_application() -> String {
    serde_json::json!({
        "mydatashare_user_id": LT_USER, "email": "pauliina.path@example.fi",
        "first_name": "Pauliina", "last_name": "Polkunen", "phone": "+358 40 111 2222"
    })
    .to_string()
}

/// What waits: a changed application (applied, it would re-create the
/// row and queue an e-mail).
fn lt_late() -> String {
    serde_json::json!({
        "mydatashare_user_id": LT_USER, "status": "new", "email": "pauliina.late@example.fi",
        "first_name": "Pauliina", "last_name": "Myohainen", "phone": "+358 40 999 8888"
    })
    .to_string()
}

fn lina_consent(user: &str, last_name: &str, bereich: &str) -> String {
    serde_json::json!({
        "webhook": STORE, "userUuid": user, "userVorname": "Wilhelmine",
        "userName": last_name, "userEmail": format!("{last_name}@example.de").to_lowercase(),
        "bereich": bereich
    })
    .to_string()
}

/// The events received before the erasure that must not apply after it.
fn late_bodies(sender: Sender, cause: Cause) -> Vec<String> {
    match sender {
        Sender::Lt => vec![lt_late()],
        Sender::Lina => {
            let mut bodies = vec![lina_consent(LINA_USER, "Spaeterin", "Spaetschicht")];
            if cause == Cause::StoreRemoved {
                bodies.push(lina_consent(LINA_NEWCOMER, "Neulingin", "Spaetschicht"));
            }
            bodies
        }
    }
}

fn envelope(sender: Sender, body: &str) -> Envelope {
    match sender {
        Sender::Lt => Envelope::new(EventKind::LtApplication, None, body.as_bytes().to_vec()),
        Sender::Lina => Envelope::new(
            EventKind::LinaConsent,
            Some(STORE.parse().unwrap()),
            body.as_bytes().to_vec(),
        ),
    }
}

fn work_queue(sender: Sender) -> WorkQueue {
    match sender {
        Sender::Lt => WorkQueue::Lt,
        Sender::Lina => WorkQueue::Lina,
    }
}

async fn post(app: &TestApp, sender: Sender, body: &str) {
    let response = match sender {
        Sender::Lt => app.post_lt(body).await,
        Sender::Lina => app.post_lina(body).await,
    };
    assert_eq!(response.status(), 200);
}

/// A column check that refuses the late events, so they are dead-lettered.
const REFUSE_LATE: [&str; 2] = [
    "ALTER TABLE lt_application ADD CONSTRAINT refuse_late CHECK (profile->>'phone' <> '+358 40 999 8888')",
    "ALTER TABLE lina_employee ADD CONSTRAINT refuse_late CHECK (bereich <> 'Spaetschicht')",
];

async fn scenario(sender: Sender, cause: Cause, path: Path) {
    let mut app = spawn_app_with(TestOptions {
        erasure_clock_margin: Duration::from_millis(200),
        ..TestOptions::default()
    })
    .await;
    app.add_store(STORE).await;
    let first = match sender {
        Sender::Lt => lt_application(),
        Sender::Lina => lina_consent(LINA_USER, "Ersterin", "Service"),
    };
    post(&app, sender, &first).await;
    let stats = app.worker.as_ref().unwrap().stats.clone();
    until("the person's data is applied", &stats, |stats| {
        stats.events_applied() == 1
    })
    .await;
    if sender == Sender::Lt {
        until("the acknowledgement is written", &stats, |stats| {
            stats.emails_sent() == 1
        })
        .await;
    }
    let late = late_bodies(sender, cause);

    // The late events are received now, before the erasure...
    let held: Vec<Envelope> = late.iter().map(|body| envelope(sender, body)).collect();
    match path {
        Path::Backlog => {
            app.worker.take().unwrap().stop().await;
            for body in &late {
                post(&app, sender, body).await;
            }
        }
        Path::Replay => {
            for refusal in REFUSE_LATE {
                app.db.batch_execute(refusal).await.unwrap();
            }
            for body in &late {
                post(&app, sender, body).await;
            }
            app.wait_for_dead_letters(work_queue(sender), late.len() as u32)
                .await;
        }
        Path::RetryTier | Path::Spool => {}
    }

    erase(&app, sender, cause).await;

    // ... and come back after it.
    let mut extra_gateway = None;
    match path {
        Path::Backlog => app.worker = Some(app.spawn_worker().await),
        Path::RetryTier => {
            let publisher =
                ConfirmedPublisher::new(app.amqp.connector("test"), Duration::from_secs(5));
            let tier = app.topology.retry_tier(Duration::from_secs(1));
            let queue = app.queue(work_queue(sender));
            for envelope in &held {
                publisher
                    .publish(&tier, &queue, &envelope.body, envelope.amqp_properties())
                    .await
                    .unwrap();
            }
        }
        Path::Replay => {
            for table in ["lt_application", "lina_employee"] {
                app.db
                    .batch_execute(&format!("ALTER TABLE {table} DROP CONSTRAINT refuse_late"))
                    .await
                    .unwrap();
            }
            let queue = match sender {
                Sender::Lt => "lt",
                Sender::Lina => "lina",
            };
            app.dlq(&["replay", "--queue", queue]).await.unwrap();
        }
        Path::Spool => {
            let dir = app.spool_dir.join("second-gateway");
            let spool = Spool::open(&dir, 1024 * 1024).unwrap();
            for envelope in held {
                let record = SpoolRecord {
                    envelope,
                    target: Target::Work,
                    reason: None,
                };
                spool.append(&record).unwrap();
            }
            drop(spool);
            extra_gateway = Some(gateway_on_spool(&app, &dir).await);
        }
    }

    let stats = app.worker.as_ref().unwrap().stats.clone();
    let expected = late.len() as u64;
    until("the late events are dropped as stale", &stats, |stats| {
        stats.events_stale() >= expected
    })
    .await;
    if let Some(gateway) = extra_gateway {
        gateway.cancel();
    }
    assert_eq!(stats.events_stale(), expected);
    // The replay path parked them once on purpose, before the erasure.
    let parked = if path == Path::Replay { expected } else { 0 };
    assert_eq!(stats.events_dead_lettered(), parked);
    assert_eq!(
        app.dead_letters(work_queue(sender)).await,
        0,
        "nothing is parked instead"
    );
    let dump = app.dump().await;
    let mut personal: Vec<String> = std::iter::once(&first)
        .chain(&late)
        .flat_map(|body| personal_strings(&serde_json::from_str(body).unwrap()))
        .filter(|text| text != STORE)
        .collect();
    personal.push(LT_USER.into());
    for value in personal {
        assert!(
            !dump.contains(&value),
            "{sender:?}/{cause:?}/{path:?}: the dump still contains {value:?}"
        );
    }
    let queued = app
        .count("SELECT count(*) FROM email_outbox WHERE status <> 'sent'")
        .await;
    assert_eq!(queued, 0, "no e-mail is queued");
    let acknowledgements = app.count("SELECT count(*) FROM email_outbox").await;
    assert_eq!(
        acknowledgements,
        i64::from(sender == Sender::Lt),
        "only the first application's acknowledgement, sent before the erasure"
    );
    assert_eq!(
        app.tombstones().await,
        1,
        "the erased person is a tombstone"
    );
}

async fn erase(app: &TestApp, sender: Sender, cause: Cause) {
    match (cause, sender) {
        (Cause::Request, _) => {
            let who = match sender {
                Sender::Lt => Who {
                    lt: Some(LT_USER.into()),
                    lina: None,
                },
                Sender::Lina => Who {
                    lt: None,
                    lina: Some(vec![STORE.parse().unwrap(), LINA_USER.parse().unwrap()]),
                },
            };
            let pool = app.pool();
            let mailer = worker::email::Mailer::new(&app.mail_settings()).unwrap();
            let mut out = Vec::new();
            worker::admin::subject::run(
                SubjectCommand::Erase { who },
                &pool,
                &app.hasher(),
                &mailer,
                app.options.erasure_clock_margin,
                &mut out,
            )
            .await
            .unwrap();
        }
        (Cause::StoreRemoved, _) => {
            let store = STORE.parse().unwrap();
            lina(
                app,
                WebhooksCommand::Remove {
                    uuid: store,
                    yes: true,
                },
            )
            .await;
            // Added again: what was received before the removal stays stale.
            lina(
                app,
                WebhooksCommand::Add {
                    uuid: store,
                    label: "Laden, wieder da".into(),
                },
            )
            .await;
        }
    }
}

async fn lina(app: &TestApp, command: WebhooksCommand) {
    let pool = app.pool();
    let mailer = worker::email::Mailer::new(&app.mail_settings()).unwrap();
    let mut out = Vec::new();
    let context = LinaContext {
        pool: &pool,
        hasher: &app.hasher(),
        mailer: &mailer,
        erasure_clock_margin: app.options.erasure_clock_margin,
        answers: &mut std::io::Cursor::new(Vec::new()),
        out: &mut out,
    };
    worker::admin::stores::run(LinaCommand::Webhooks { command }, context)
        .await
        .unwrap();
}

/// Starts a second gateway on `spool_dir` (it drains what waits there).
async fn gateway_on_spool(app: &TestApp, spool_dir: &std::path::Path) -> CancellationToken {
    let settings = GatewaySettings {
        gateway_addr: "127.0.0.1:0".parse().unwrap(),
        ops_addr: "127.0.0.1:0".parse().unwrap(),
        amqp: app.amqp.clone(),
        lt_tokens: vec![SecretString::from(TEST_TOKEN)],
        lt_email_pointer: "/email".into(),
        max_body_bytes: 64 * 1024,
        max_in_flight: 64,
        lina_path_secrets: vec![SecretString::from(LINA_SECRET)],
        spool_dir: spool_dir.to_owned(),
        spool_max_bytes: 1024 * 1024,
        lina_spool_after: Duration::from_secs(1),
        http: HttpTimeouts::default(),
        sources: Default::default(),
    };
    let gateway = Application::build(settings).await.unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(gateway.run(shutdown.clone()));
    shutdown
}

macro_rules! cases {
    ($($name:ident: $sender:ident, $cause:ident, $path:ident;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                scenario(Sender::$sender, Cause::$cause, Path::$path).await;
            }
        )*
    };
}

cases! {
    lt_request_backlog: Lt, Request, Backlog;
    lt_request_retry_tier: Lt, Request, RetryTier;
    lt_request_replay: Lt, Request, Replay;
    lina_request_backlog: Lina, Request, Backlog;
    lina_request_retry_tier: Lina, Request, RetryTier;
    lina_request_replay: Lina, Request, Replay;
    lina_request_spool: Lina, Request, Spool;
    lina_store_removed_backlog: Lina, StoreRemoved, Backlog;
    lina_store_removed_retry_tier: Lina, StoreRemoved, RetryTier;
    lina_store_removed_replay: Lina, StoreRemoved, Replay;
    lina_store_removed_spool: Lina, StoreRemoved, Spool;
}
