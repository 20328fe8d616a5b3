//! RabbitMQ: the topology (every queue and exchange, in one file), a connector
//! that reconnects by itself, and publishing that only counts once the broker
//! confirmed it.

mod connection;
mod depth;
mod publisher;
mod tls;
mod topology;

pub use connection::AmqpConnector;
pub use depth::{QueueDepth, queue_depth};
pub use publisher::{ConfirmedPublisher, PublishError};
pub use tls::AmqpTls;
pub use topology::{Topology, WorkQueue, delay_label};

/// The nodes of `INTAKE_AMQP_URL`: URLs separated by commas (a comma in a
/// password is written `%2C`), blanks around them ignored.
pub fn nodes(url: &str) -> impl Iterator<Item = &str> {
    url.split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
}

/// Why a broker operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("broker unreachable: {0}")]
    Connect(#[source] lapin::Error),
    #[error("broker did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("broker connection failed recently; next attempt in a moment")]
    CoolingDown,
    #[error("INTAKE_AMQP_URL names no broker")]
    NoAddress,
    #[error("broker operation failed: {0}")]
    Protocol(#[from] lapin::Error),
}
