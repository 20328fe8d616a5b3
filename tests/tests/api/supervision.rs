//! Supervision: a panic inside a batch is that batch's failure (its events
//! climb their delay tiers and are applied), and a consumer task that dies
//! is restarted, counted, and reported not ready meanwhile. Nothing is lost
//! or dead-lettered either way.

use std::time::Duration;

use common::amqp::WorkQueue;
use intake_tests::{TestApp, eventually, spawn_app};

fn application(user: &str) -> String {
    format!(
        r#"{{"mydatashare_user_id":"{user}","email":"{user}@example.fi","first_name":"Testi"}}"#
    )
}

async fn worker_ready(app: &TestApp) -> bool {
    app.worker_ops_get("/readyz").await.status() == 200
}

#[tokio::test]
async fn a_batch_that_panics_is_retried_through_its_tier_and_applied() {
    let app = spawn_app().await;
    let worker = app.worker.as_ref().unwrap();
    eventually("the worker is ready", Duration::from_secs(10), || async {
        worker_ready(&app).await.then_some(())
    })
    .await;
    worker.context.faults.panic_in_batches(1);
    assert_eq!(app.post_lt(&application("panicky-1")).await.status(), 200);

    eventually(
        "the application is applied",
        Duration::from_secs(20),
        || app.application("panicky-1"),
    )
    .await;
    let stats = &worker.stats;
    assert!(
        stats.events_retried() >= 1,
        "the panicked batch was retried"
    );
    assert_eq!(stats.events_dead_lettered(), 0);
    assert_eq!(stats.task_restarts(), 0, "the consumer itself kept running");
    assert_eq!(app.dead_letters(WorkQueue::Lt).await, 0);
    assert!(
        app.worker_metrics()
            .await
            .contains("intake_worker_batch_panics_total 1"),
        "the panic is counted"
    );
}

#[tokio::test]
async fn a_consumer_that_dies_is_restarted_counted_and_not_ready_meanwhile() {
    let app = spawn_app().await;
    let worker = app.worker.as_ref().unwrap();
    eventually("the worker is ready", Duration::from_secs(10), || async {
        worker_ready(&app).await.then_some(())
    })
    .await;
    // Twice: the second restart waits longer, so the gap is easy to see.
    worker.context.faults.panic_in_consumers(2);
    assert_eq!(app.post_lt(&application("restarted-1")).await.status(), 200);

    eventually(
        "/readyz says a consumer is down",
        Duration::from_secs(10),
        || async {
            let answer = app.worker_ops_get("/readyz").await;
            let status = answer.status();
            let body: serde_json::Value = answer.json().await.unwrap_or_default();
            (status == 503 && body["checks"]["consumers"] == false).then_some(())
        },
    )
    .await;
    eventually(
        "the batch is redelivered to the restarted consumer and applied",
        Duration::from_secs(30),
        || app.application("restarted-1"),
    )
    .await;
    eventually("ready again", Duration::from_secs(10), || async {
        worker_ready(&app).await.then_some(())
    })
    .await;
    let stats = &worker.stats;
    assert_eq!(stats.task_restarts(), 2);
    assert_eq!(stats.events_dead_lettered(), 0);
    assert_eq!(stats.events_retried(), 0, "a redelivery is no retry");
    assert_eq!(app.dead_letters(WorkQueue::Lt).await, 0);
    let metrics = app.worker_metrics().await;
    assert!(
        metrics.contains(r#"intake_task_restarts_total{task="consumer_lt"} 2"#),
        "the restarts are counted by task"
    );
    assert!(metrics.contains(r#"intake_worker_consumers{queue="lt",state="consuming"} 1"#));
}
