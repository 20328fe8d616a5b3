//! Several broker addresses (`INTAKE_AMQP_URL` comma-separated): a node
//! that is down is passed over, and a reconnect moves on to the next node.

use std::time::Duration;

use intake_tests::{TestOptions, amqp_url, spawn_app_with};
use secrecy::SecretString;

/// A node nobody listens on, then this machine's broker.
fn nodes() -> String {
    format!("amqp://guest:guest@127.0.0.1:1/%2f, {}", amqp_url())
}

#[tokio::test]
async fn a_node_that_is_down_is_passed_over_and_a_reconnect_finds_a_live_one() {
    let app = spawn_app_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    let settings = common::settings::AmqpSettings {
        url: SecretString::from(nodes()),
        ..app.amqp.clone()
    };
    let connector = settings.connector("nodes-test");
    let first = connector.connection().await.expect("the live node");
    assert!(first.status().connected());
    first.close(200, "a node going away".into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The next attempt starts after the node it was on (the dead one),
    // and comes round to the live one.
    let second = connector.connection().await.expect("reconnected");
    assert!(second.status().connected());
    connector.close().await;
}

#[tokio::test]
async fn the_gateway_publishes_through_the_list_when_its_first_node_is_down() {
    let app = spawn_app_with(TestOptions {
        gateway_amqp_url: Some(nodes()),
        ..TestOptions::default()
    })
    .await;
    app.apply_lt("nodes-1").await;
}
