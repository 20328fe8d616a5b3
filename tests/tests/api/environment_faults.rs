//! A fault of the environment is not the events' fault: while the database
//! refuses the worker's writes (here a privilege revoked from the ordinary
//! role it runs as), the batch is held and tried again in the worker, the
//! worker reports itself not ready, and nothing is dead-lettered or moved
//! to a delay tier. Once the privilege is back, everything is applied.

use std::time::Duration;

use common::amqp::WorkQueue;
use intake_tests::database::OrdinaryRole;
use intake_tests::{TestApp, TestOptions, eventually, spawn_app_with};
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

#[tokio::test]
async fn a_revoked_privilege_holds_the_batch_until_granted_back_and_dead_letters_nothing() {
    let mut app = spawn_app_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    let role = OrdinaryRole::create(&app.db_name).await;
    let mut settings = app.worker_settings();
    settings.database_url = SecretString::from(role.url());
    app.worker = Some(app.spawn_worker_with(settings).await);

    post_applications(&app, "before", 3).await;
    eventually(
        "the first applications",
        Duration::from_secs(20),
        || async { (applications(&app).await == 3).then_some(()) },
    )
    .await;

    role.as_admin(&format!(
        "REVOKE INSERT, UPDATE ON lt_application FROM \"{}\"",
        role.name
    ))
    .await;
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

    role.as_admin(&format!(
        "GRANT INSERT, UPDATE ON lt_application TO \"{}\"",
        role.name
    ))
    .await;
    eventually(
        "everything applied after the grant",
        Duration::from_secs(30),
        || async { (applications(&app).await == 8).then_some(()) },
    )
    .await;
    eventually("ready again", Duration::from_secs(10), || async {
        (app.worker_ops_get("/readyz").await.status() == 200).then_some(())
    })
    .await;
    assert_eq!(stats.events_dead_lettered(), 0);
    assert_eq!(stats.events_retried(), 0);
    assert_eq!(app.dead_letters(WorkQueue::Lt).await, 0);
    app.worker.take().unwrap().stop().await;
}
