//! Publishing that counts only once the broker confirmed it: publisher
//! confirms, `mandatory` (an unroutable message is returned, not silently
//! dropped) and a deadline.

use std::sync::Arc;
use std::time::Duration;

use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel};

use super::{AmqpConnector, AmqpError};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Unavailable(#[from] AmqpError),
    #[error("broker blocked publishing (resource alarm)")]
    Blocked,
    #[error("broker did not confirm within {0:?}")]
    Timeout(Duration),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("message was unroutable (returned with code {0})")]
    Returned(u16),
}

impl PublishError {
    /// Every `code`, for metrics that exist before the first failure.
    pub const CODES: [&'static str; 5] =
        ["unavailable", "blocked", "timeout", "nacked", "returned"];

    /// A short, bounded code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Unavailable(_) => "unavailable",
            PublishError::Blocked => "blocked",
            PublishError::Timeout(_) => "timeout",
            PublishError::Nacked => "nacked",
            PublishError::Returned(_) => "returned",
        }
    }
}

pub struct ConfirmedPublisher {
    connector: Arc<AmqpConnector>,
    channel: tokio::sync::Mutex<Option<Channel>>,
    confirm_timeout: Duration,
}

impl ConfirmedPublisher {
    pub fn new(connector: Arc<AmqpConnector>, confirm_timeout: Duration) -> Self {
        ConfirmedPublisher {
            connector,
            channel: tokio::sync::Mutex::new(None),
            confirm_timeout,
        }
    }

    /// How long `publish` waits for the broker's confirm.
    pub fn confirm_timeout(&self) -> Duration {
        self.confirm_timeout
    }

    /// Publishes persistently-marked `properties` + `body`; `Ok` only after the
    /// broker's ack with no return, within the confirm timeout.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        self.publish_within(
            self.confirm_timeout,
            exchange,
            routing_key,
            body,
            properties,
        )
        .await
    }

    /// `publish`, giving up after `deadline` (connecting included) instead of
    /// the confirm timeout: for a caller with somewhere else to put the event.
    pub async fn publish_within(
        &self,
        deadline: Duration,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        if self.connector.is_blocked() {
            return Err(PublishError::Blocked);
        }
        let attempt = self.publish_and_confirm(exchange, routing_key, body, properties);
        match tokio::time::timeout(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Err(PublishError::Timeout(deadline)),
        }
    }

    async fn publish_and_confirm(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let channel = self.channel().await?;
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                body,
                properties,
            )
            .await
            .map_err(|error| PublishError::Unavailable(error.into()))?;
        let confirmation = confirm
            .await
            .map_err(|error| PublishError::Unavailable(error.into()))?;
        match confirmation {
            Confirmation::Ack(Some(returned)) => Err(PublishError::Returned(returned.reply_code)),
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Nack(_) => Err(PublishError::Nacked),
            // Only a channel without confirm mode answers this; ours always has it.
            Confirmation::NotRequested => Err(PublishError::Nacked),
        }
    }

    /// The shared confirm-mode channel, reopened when it or its connection died.
    async fn channel(&self) -> Result<Channel, AmqpError> {
        let mut cached = self.channel.lock().await;
        if let Some(channel) = cached.as_ref()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        let connection = self.connector.connection().await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        *cached = Some(channel.clone());
        Ok(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_for_the_metrics() {
        let errors = [
            PublishError::Unavailable(AmqpError::NoAddress),
            PublishError::Blocked,
            PublishError::Timeout(Duration::from_secs(1)),
            PublishError::Nacked,
            PublishError::Returned(312),
        ];
        let codes: Vec<&str> = errors.iter().map(PublishError::code).collect();
        assert_eq!(codes, PublishError::CODES);
    }
}
