//! Looking at and cleaning up the test's queues on the real broker.

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};

pub async fn connect() -> Connection {
    Connection::connect(&crate::amqp_url(), ConnectionProperties::default())
        .await
        .unwrap()
}

/// Ready messages in `queue` (a passive declare: changes nothing).
pub async fn depth(queue: &str) -> u32 {
    let connection = connect().await;
    let channel = connection.create_channel().await.unwrap();
    let depth = common::amqp::queue_depth(&channel, queue).await.unwrap();
    let _ = connection.close(200, "done".into()).await;
    depth.messages
}

/// Deletes the given queues and exchanges, ignoring the ones already gone.
pub async fn delete(queues: &[String], exchanges: &[String]) {
    let connection = connect().await;
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
