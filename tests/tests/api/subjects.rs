//! Data-subject requests and retention: export what is stored, erase on
//! request (and a later resend of the old body stays dropped), erase what
//! is older than the retention and nothing newer, purge old dead letters.

use std::time::Duration;

use common::amqp::WorkQueue;
use intake_tests::{TestApp, eventually, example, spawn_app, until};
use worker::admin::subject::{SubjectCommand, Who};

const USER: &str = "7f3c2a9e-5b1d-4c8e-9a2f-0e6d4b8c1a37";

async fn run(app: &TestApp, command: SubjectCommand) -> String {
    let pool = app.pool();
    let hasher = app.hasher();
    let mailer = worker::email::Mailer::new(&app.mail_settings()).unwrap();
    let mut out = Vec::new();
    let margin = app.options.erasure_clock_margin;
    worker::admin::subject::run(command, &pool, &hasher, &mailer, margin, &mut out)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn lt(user: &str) -> Who {
    Who {
        lt: Some(user.to_owned()),
        lina: None,
    }
}

#[tokio::test]
async fn export_returns_what_is_stored_and_erase_leaves_nothing_personal() {
    let app = spawn_app().await;
    app.post_lt(&example("lt/new.json")).await;
    eventually("stored", Duration::from_secs(10), || app.application(USER)).await;
    let stats = app.worker.as_ref().unwrap().stats.clone();
    until("the acknowledgement is written", &stats, |stats| {
        stats.emails_sent() == 1
    })
    .await;

    let exported: serde_json::Value =
        serde_json::from_str(&run(&app, SubjectCommand::Export { who: lt(USER) }).await).unwrap();
    assert_eq!(exported["source"], "lt");
    assert_eq!(exported["data"]["email"], "aino.korhonen@example.fi");
    assert_eq!(exported["data"]["profile"]["last_name"], "Korhonen");
    assert_eq!(exported["emails"][0]["status"], "sent");
    assert!(exported["processing_state"]["erased_at"].is_null());

    let erased = run(&app, SubjectCommand::Erase { who: lt(USER) }).await;
    assert!(erased.contains("erased: 1 data row(s)"), "{erased}");
    let dump = app.dump().await;
    for value in ["aino.korhonen@example.fi", "Korhonen", USER] {
        assert!(!dump.contains(value), "the dump still contains {value}");
    }
    let exported: serde_json::Value =
        serde_json::from_str(&run(&app, SubjectCommand::Export { who: lt(USER) }).await).unwrap();
    assert!(exported["data"].is_null());
    assert_eq!(exported["erasures"][0]["cause"], "request");

    // LT resends the old application: still dropped (received before the
    // erasure's key, so it is stale, not even a resend).
    app.post_lt(&example("lt/new.json")).await;
    until("the resend is dropped", &stats, |stats| {
        stats.events_stale() == 1
    })
    .await;
    assert_eq!(app.application(USER).await, None);
}

#[tokio::test]
async fn retention_erases_what_is_older_than_the_setting_and_nothing_newer() {
    let app = spawn_app().await;
    app.post_lt(r#"{"mydatashare_user_id":"old-1","email":"old@example.fi"}"#)
        .await;
    app.post_lt(r#"{"mydatashare_user_id":"new-1","email":"new@example.fi"}"#)
        .await;
    eventually("both stored", Duration::from_secs(10), || async {
        (app.application_count().await == 2).then_some(())
    })
    .await;
    app.db
        .execute(
            "UPDATE lt_application SET updated_at = now() - interval '400 days' WHERE mydatashare_user_id = 'old-1'",
            &[],
        )
        .await
        .unwrap();

    let worker = worker::startup::Worker::build(app.worker_settings())
        .await
        .unwrap();
    let context = worker.context();
    let erased = worker::background::retention::erase_expired(
        &context,
        Duration::from_secs(365 * 24 * 3600),
    )
    .await
    .unwrap();
    assert_eq!(erased, 1);
    assert_eq!(app.application("old-1").await, None);
    assert!(app.application("new-1").await.is_some(), "newer data stays");
    assert_eq!(context.stats.retention_erasures(), 1);
    let causes = app.erasure_causes().await;
    assert_eq!(causes, vec!["retention".to_owned()]);
}

#[tokio::test]
async fn dead_letters_past_their_retention_are_purged_and_counted() {
    let app = spawn_app().await;
    app.db
        .batch_execute("ALTER TABLE lt_application ADD CONSTRAINT refuse CHECK (email <> 'refused@example.fi')")
        .await
        .unwrap();
    app.post_lt(r#"{"mydatashare_user_id":"dl-1","email":"refused@example.fi"}"#)
        .await;
    app.wait_for_dead_letters(WorkQueue::Lt, 1).await;
    let worker = worker::startup::Worker::build(app.worker_settings())
        .await
        .unwrap();
    let context = worker.context();

    let kept =
        worker::background::retention::purge_dead_letters(&context, Duration::from_secs(3600))
            .await
            .unwrap();
    assert_eq!(kept, 0, "a young dead letter is kept");
    assert_eq!(app.dead_letters(WorkQueue::Lt).await, 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let purged =
        worker::background::retention::purge_dead_letters(&context, Duration::from_secs(1))
            .await
            .unwrap();
    assert_eq!(purged, 1);
    assert_eq!(app.dead_letters(WorkQueue::Lt).await, 0);
    assert_eq!(context.stats.dead_letters_purged_total(), 1);
}
