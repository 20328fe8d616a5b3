//! Failures: permanent ones are dead-lettered with their reason and can be
//! replayed once the cause is fixed; a database that is away holds the
//! batch (no tier, no dead letter); a bad event in a batch leaves the
//! others alone.

use std::time::Duration;

use common::amqp::WorkQueue;
use intake_tests::{TestApp, TestOptions, eventually, spawn_app, spawn_app_with, until};

const BLOCKED: &str = "blocked@example.fi";

fn application(user: &str, email: &str) -> String {
    format!(r#"{{"mydatashare_user_id":"{user}","email":"{email}","first_name":"Testi"}}"#)
}

/// Makes the database refuse one e-mail address: a cause that can be fixed.
async fn refuse_blocked_address(app: &intake_tests::TestApp) {
    app.db
        .batch_execute(&format!(
            "ALTER TABLE lt_application ADD CONSTRAINT refuse_blocked CHECK (email <> '{BLOCKED}')"
        ))
        .await
        .unwrap();
}

/// The LT dead-letter queue holds its one message as soon as a browsing
/// command has returned (and stays so).
async fn still_one(app: &TestApp, what: &str) {
    assert_eq!(app.dead_letters(WorkQueue::Lt).await, 1, "{what}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.dead_letters(WorkQueue::Lt).await, 1, "{what}");
}

#[tokio::test]
async fn a_message_that_cannot_apply_is_dead_lettered_and_replayed_once_fixed() {
    let app = spawn_app().await;
    refuse_blocked_address(&app).await;
    app.post_lt(&application("refused-1", BLOCKED)).await;
    app.post_lt(&application("fine-1", "fine1@example.fi"))
        .await;
    app.post_lt(&application("fine-2", "fine2@example.fi"))
        .await;

    app.wait_for_dead_letters(WorkQueue::Lt, 1).await;
    eventually(
        "the others still apply",
        Duration::from_secs(10),
        || async { (app.application_count().await == 2).then_some(()) },
    )
    .await;

    let listing = app.dlq(&["list"]).await.unwrap();
    assert!(listing.contains("database_rejected"), "{listing}");
    assert!(listing.contains("lt.application"), "{listing}");
    assert!(listing.contains("1 matching message(s)"), "{listing}");
    assert!(!listing.contains(BLOCKED), "no personal data in a listing");
    // Browsing twice loses nothing. A browse holds the messages until it
    // closes its channel, and a quorum queue takes them back through its
    // log, a moment later on a busy broker: the command returns only once
    // they are back, so the next command (a replay) finds them.
    app.dlq(&["list", "--queue", "lt"]).await.unwrap();
    still_one(&app, "browsing loses nothing").await;

    let dry_run = app.dlq(&["replay", "--dry-run"]).await.unwrap();
    assert!(dry_run.contains("would replay 1"), "{dry_run}");
    still_one(&app, "a dry run changes nothing").await;

    app.db
        .batch_execute("ALTER TABLE lt_application DROP CONSTRAINT refuse_blocked")
        .await
        .unwrap();
    let replayed = app
        .dlq(&["replay", "--reason", "database_rejected"])
        .await
        .unwrap();
    assert!(replayed.contains("replayed 1"), "{replayed}");
    eventually(
        "the replayed message applies",
        Duration::from_secs(10),
        || app.application("refused-1"),
    )
    .await;
    assert_eq!(app.dead_letters(WorkQueue::Lt).await, 0);
}

#[tokio::test]
async fn show_redacts_the_payload_and_purge_needs_yes() {
    let app = spawn_app().await;
    refuse_blocked_address(&app).await;
    let response: serde_json::Value = app
        .post_lt(&application("refused-2", BLOCKED))
        .await
        .json()
        .await
        .unwrap();
    let id = response["id"].as_str().unwrap().to_owned();
    app.wait_for_dead_letters(WorkQueue::Lt, 1).await;

    let shown = app.dlq(&["show", &id]).await.unwrap();
    assert!(
        shown.contains("header reason: database_rejected"),
        "{shown}"
    );
    assert!(shown.contains("header original_queue:"), "{shown}");
    assert!(shown.contains("header first_failed_at:"), "{shown}");
    // How often it was tried, said once (not also the envelope's tier counter).
    assert!(shown.contains("(tries before it was parked)"), "{shown}");
    assert!(!shown.contains("header attempt:"), "{shown}");
    assert!(shown.contains("<redacted"), "{shown}");
    assert!(!shown.contains(BLOCKED), "{shown}");
    let revealed = app.dlq(&["show", &id, "--reveal"]).await.unwrap();
    assert!(revealed.contains(BLOCKED), "{revealed}");

    let refused = app.dlq(&["purge"]).await.unwrap_err();
    assert!(
        matches!(refused, worker::dead_letters::DlqError::PurgeNeedsYes(1)),
        "{refused}"
    );
    let dry_run = app.dlq(&["purge", "--dry-run"]).await.unwrap();
    assert!(dry_run.contains("would purge 1"), "{dry_run}");
    assert_eq!(app.dead_letters(WorkQueue::Lt).await, 1);
    let purged = app.dlq(&["purge", "--yes"]).await.unwrap();
    assert!(purged.contains("purged 1"), "{purged}");
    assert_eq!(app.dead_letters(WorkQueue::Lt).await, 0);
}

#[tokio::test]
async fn a_poisoned_event_in_a_batch_neither_loses_nor_dead_letters_the_others() {
    let mut app = spawn_app_with(TestOptions {
        start_worker: false,
        batch_size: 10,
        batch_linger: Duration::from_millis(500),
        ..TestOptions::default()
    })
    .await;
    refuse_blocked_address(&app).await;
    for n in 0..5 {
        let email = if n == 2 {
            BLOCKED.to_owned()
        } else {
            format!("p{n}@example.fi")
        };
        app.post_lt(&application(&format!("poison-{n}"), &email))
            .await;
    }
    let worker = app.spawn_worker().await;
    let stats = worker.stats.clone();
    app.worker = Some(worker);

    eventually(
        "four applied, one dead-lettered",
        Duration::from_secs(10),
        || async {
            (stats.events_applied() == 4 && stats.events_dead_lettered() == 1).then_some(())
        },
    )
    .await;
    assert_eq!(stats.batches(), 1, "all five were in one batch");
    assert_eq!(app.application_count().await, 4);
    assert_eq!(app.dead_letters(WorkQueue::Lt).await, 1);
    app.worker.take().unwrap().stop().await;
    assert_eq!(
        app.depth(WorkQueue::Lt).await,
        0,
        "every delivery was acked"
    );
}

#[tokio::test]
async fn an_event_is_held_while_the_database_is_unavailable_and_applied_once_it_is_back() {
    let app = spawn_app().await;
    let admin = intake_tests::database::connect(&intake_tests::admin_database_url()).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{0}\" ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{0}';",
            app.db_name
        ))
        .await
        .unwrap();
    assert_eq!(
        app.post_lt(&application("outage-1", "o1@example.fi"))
            .await
            .status(),
        200
    );
    let stats = app.worker.as_ref().unwrap().stats.clone();
    // Not the event's fault: its batch is held and tried again in the
    // worker, not moved to a delay tier.
    until("the batch is held", &stats, |stats| {
        stats.environment_failures() >= 1
    })
    .await;

    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS true",
            app.db_name
        ))
        .await
        .unwrap();
    let db = intake_tests::database::connect(&app.db_url).await;
    eventually("the event is applied", Duration::from_secs(20), || async {
        db.query_opt(
            "SELECT 1 FROM lt_application WHERE mydatashare_user_id = 'outage-1'",
            &[],
        )
        .await
        .ok()
        .flatten()
    })
    .await;
    assert_eq!(stats.events_dead_lettered(), 0);
    assert_eq!(stats.events_retried(), 0);
}
