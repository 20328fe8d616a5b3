//! The broker cancels a consumer (`basic.cancel`) when its queue is deleted
//! or, in a cluster, when the queue's node goes: the worker declares its
//! queues again and consumes again on a fresh channel, closing the old one
//! (which returns what it still held), and events keep being applied.

use std::time::Duration;

use common::amqp::WorkQueue;
use intake_tests::spawn_app;
use lapin::options::QueueDeleteOptions;

/// Channels of the worker's broker connection (its consumers, at most one
/// per queue, and the publisher's), as the broker counts them.
async fn worker_channels(prefix: &str) -> Option<u64> {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "client_properties", "channels"])
        .args(["--formatter", "json"])
        .output()
        .await
        .ok()?;
    let connections: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).ok()?;
    // The connection's name is among its client properties.
    let name = serde_json::Value::from(format!("{prefix}:worker")).to_string();
    connections
        .iter()
        .find(|connection| connection["client_properties"].to_string().contains(&name))?
        .get("channels")?
        .as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_consumer_consumes_again_on_a_fresh_channel_and_events_are_applied() {
    let app = spawn_app().await;
    let prefix = app.topology.prefix().to_owned();
    // One event through first, so every channel the worker opens on
    // first use (its publisher's) is open before counting.
    app.apply_lt("cancel-0").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = intake_tests::eventually("channels counted", Duration::from_secs(10), || {
        worker_channels(&prefix)
    })
    .await;

    let connection = intake_tests::broker::connect().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_delete(
            app.queue(WorkQueue::Lt).as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;

    let response = app
        .post_lt_until_accepted(r#"{"mydatashare_user_id":"cancel-1","email":"c@example.fi"}"#)
        .await;
    assert_eq!(response.status(), 200, "the queue is there again");
    intake_tests::eventually("applied after the cancel", Duration::from_secs(20), || {
        app.application("cancel-1")
    })
    .await;
    let mut after = None;
    for _ in 0..40 {
        after = worker_channels(&prefix).await;
        if after == Some(before) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        after,
        Some(before),
        "the cancelled consumer's channel is closed, not left open"
    );
}
