//! How many messages wait in a queue, and how many consumers it has: a
//! passive declare, which changes nothing (and closes the channel if the
//! queue does not exist).

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

/// A queue's ready messages and consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueDepth {
    pub messages: u32,
    pub consumers: u32,
}

pub async fn queue_depth(channel: &Channel, queue: &str) -> Result<QueueDepth, lapin::Error> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(QueueDepth {
        messages: declared.message_count(),
        consumers: declared.consumer_count(),
    })
}
