//! Looking at and cleaning up the test's queues on the real broker.

use common::amqp::AmqpTls;
use common::settings::AmqpSettings;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use secrecy::ExposeSecret;

/// The test broker (`INTAKE_TEST_AMQP_URL`).
pub async fn connect() -> Connection {
    connect_to(&crate::amqp_url(), &AmqpTls::default()).await
}

/// The first node of `urls` (comma-separated) that answers.
pub async fn connect_to(urls: &str, tls: &AmqpTls) -> Connection {
    let mut last_error = None;
    for url in common::amqp::nodes(urls) {
        let runtime = lapin::runtime::default_runtime().unwrap();
        match Connection::connect_with_config(
            url,
            ConnectionProperties::default(),
            tls.config(),
            runtime,
        )
        .await
        {
            Ok(connection) => return connection,
            Err(error) => last_error = Some(error),
        }
    }
    panic!("no broker node answers: {last_error:?}")
}

/// The broker of `settings` (a test's own cluster or TLS node).
pub async fn connect_with(settings: &AmqpSettings) -> Connection {
    connect_to(settings.url.expose_secret(), &settings.tls).await
}

/// Ready messages in `queue` (a passive declare: changes nothing).
pub async fn depth(queue: &str) -> u32 {
    depth_of(connect().await, queue).await
}

/// Ready messages in `queue` on the broker of `settings`.
pub async fn depth_at(settings: &AmqpSettings, queue: &str) -> u32 {
    depth_of(connect_with(settings).await, queue).await
}

async fn depth_of(connection: Connection, queue: &str) -> u32 {
    let channel = connection.create_channel().await.unwrap();
    let depth = common::amqp::queue_depth(&channel, queue).await.unwrap();
    let _ = connection.close(200, "done".into()).await;
    depth.messages
}

/// Deletes the given queues and exchanges, ignoring the ones already gone.
pub async fn delete(queues: &[String], exchanges: &[String]) {
    delete_on(connect().await, queues, exchanges).await;
}

/// `delete` on the broker of `settings`.
pub async fn delete_at(settings: &AmqpSettings, queues: &[String], exchanges: &[String]) {
    delete_on(connect_with(settings).await, queues, exchanges).await;
}

async fn delete_on(connection: Connection, queues: &[String], exchanges: &[String]) {
    for queue in queues {
        // A failed delete closes the channel: one channel per delete.
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    for exchange in exchanges {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = connection.close(200, "done".into()).await;
}
