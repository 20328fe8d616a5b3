//! A fault of the environment is not the events' fault: while the database
//! refuses the worker's writes (here a privilege revoked from the ordinary
//! role it runs as), the batch is held and tried again in the worker, the
//! worker reports itself not ready, and nothing is dead-lettered or moved
//! to a delay tier. Once the privilege is back, everything is applied.

use std::time::Duration;

use common::amqp::WorkQueue;
use intake_tests::database::OrdinaryRole;
use intake_tests::{
    TestApp, TestOptions, assert_recovered_without_dead_letters, eventually, spawn_app_with,
};
use secrecy::SecretString;

fn application(user: &str) -> String {
    format!(
        r#"{{"mydatashare_user_id":"{user}","email":"{user}@example.fi","first_name":"Testi"}}"#
    )
}

/// Posts `count` applications named `{prefix}-{i}`.
async fn post_applications(app: &TestApp, prefix: &str, count: usize) {
    for i in 0..count {
        let response = app.post_lt(&application(&format!("{prefix}-{i}"))).await;
        assert_eq!(response.status(), 200);
    }
}

async fn applications(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM lt_application").await
}

/// An app whose worker runs as an ordinary role, holding batches for at
/// most `hold_requeue_after`.
async fn app_as_ordinary_role(hold_requeue_after: Duration) -> (TestApp, OrdinaryRole) {
    let mut app = spawn_app_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    let role = OrdinaryRole::create(&app.db_name).await;
    let mut settings = app.worker_settings();
    settings.database_url = SecretString::from(role.url());
    settings.hold_requeue_after = hold_requeue_after;
    app.worker = Some(app.spawn_worker_with(settings).await);
    (app, role)
}

async fn revoke_writes(role: &OrdinaryRole) {
    role.as_admin(&format!(
        "REVOKE INSERT, UPDATE ON lt_application FROM \"{}\"",
        role.name
    ))
    .await;
}

async fn grant_writes(role: &OrdinaryRole) {
    role.as_admin(&format!(
        "GRANT INSERT, UPDATE ON lt_application TO \"{}\"",
        role.name
    ))
    .await;
}

#[tokio::test]
async fn a_revoked_privilege_holds_the_batch_until_granted_back_and_dead_letters_nothing() {
    let (mut app, role) = app_as_ordinary_role(Duration::from_secs(600)).await;

    post_applications(&app, "before", 3).await;
    eventually(
        "the first applications",
        Duration::from_secs(20),
        || async { (applications(&app).await == 3).then_some(()) },
    )
    .await;

    revoke_writes(&role).await;
    post_applications(&app, "during", 5).await;
    eventually(
        "the worker holds the batch and says it is not ready",
        Duration::from_secs(20),
        || async {
            let held = app
                .worker_metrics()
                .await
                .contains(r#"intake_worker_consumers{queue="lt",state="held"} 1"#);
            let ready = app.worker_ops_get("/readyz").await.status() == 200;
            (held && !ready).then_some(())
        },
    )
    .await;
    // Long enough for several attempts (0.2 s, doubling).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = app.worker.as_ref().unwrap().stats.clone();
    assert!(
        stats.environment_failures() >= 3,
        "tried again, and counted"
    );
    assert_eq!(applications(&app).await, 3, "nothing applied meanwhile");
    assert_eq!(stats.events_retried(), 0, "no event spent a delay tier");
    assert_eq!(stats.events_dead_lettered(), 0);
    assert_eq!(app.dead_letters(WorkQueue::Lt).await, 0);

    grant_writes(&role).await;
    eventually(
        "everything applied after the grant",
        Duration::from_secs(30),
        || async { (applications(&app).await == 8).then_some(()) },
    )
    .await;
    assert_recovered_without_dead_letters(&app, &[WorkQueue::Lt]).await;
    app.worker.take().unwrap().stop().await;
}

#[tokio::test]
async fn a_batch_held_too_long_goes_back_to_the_end_of_its_queue_and_is_applied_later() {
    let (mut app, role) = app_as_ordinary_role(Duration::from_secs(1)).await;
    revoke_writes(&role).await;
    post_applications(&app, "requeued", 3).await;
    let stats = app.worker.as_ref().unwrap().stats.clone();
    eventually(
        "the held batch is put back, more than once",
        Duration::from_secs(20),
        || async { (stats.requeued() >= 6).then_some(()) },
    )
    .await;
    assert_eq!(applications(&app).await, 0);
    assert_eq!(stats.events_retried(), 0);
    assert_eq!(stats.events_dead_lettered(), 0);

    grant_writes(&role).await;
    eventually("applied once writable", Duration::from_secs(30), || async {
        (applications(&app).await == 3).then_some(())
    })
    .await;
    assert_eq!(stats.events_dead_lettered(), 0);
    assert_eq!(app.dead_letters(WorkQueue::Lt).await, 0);
    eventually(
        "nothing left in the queue",
        Duration::from_secs(10),
        || async { (app.depth(WorkQueue::Lt).await == 0).then_some(()) },
    )
    .await;
    assert!(
        app.worker_metrics()
            .await
            .contains("intake_worker_requeued_total{queue=\"lt\"}"),
        "counted"
    );
    app.worker.take().unwrap().stop().await;
}

#[tokio::test]
async fn an_erasure_refused_by_a_constraint_someone_added_is_held_not_dead_lettered() {
    let app = spawn_app_with(TestOptions::default()).await;
    post_applications(&app, "kept", 1).await;
    eventually("the application", Duration::from_secs(20), || async {
        (applications(&app).await == 1).then_some(())
    })
    .await;
    // A partner's table pointing at ours, without ON DELETE CASCADE.
    app.db
        .batch_execute(
            "CREATE TABLE partner_note (user_id text REFERENCES lt_application (mydatashare_user_id));
             INSERT INTO partner_note VALUES ('kept-0')",
        )
        .await
        .unwrap();
    let revocation = r#"{"mydatashare_user_id":"kept-0","status":"revoked"}"#;
    assert_eq!(app.post_lt(revocation).await.status(), 200);
    let stats = app.worker.as_ref().unwrap().stats.clone();
    eventually("the erasure is held", Duration::from_secs(20), || async {
        (stats.environment_failures() >= 2).then_some(())
    })
    .await;
    assert_eq!(
        stats.events_dead_lettered(),
        0,
        "an erasure is never dead-lettered for it"
    );
    assert_eq!(applications(&app).await, 1);

    app.db
        .batch_execute("DROP TABLE partner_note")
        .await
        .unwrap();
    eventually(
        "erased once the constraint is gone",
        Duration::from_secs(30),
        || async { (applications(&app).await == 0).then_some(()) },
    )
    .await;
    assert_eq!(stats.events_dead_lettered(), 0);
    assert_eq!(app.dead_letters(WorkQueue::Lt).await, 0);
}
