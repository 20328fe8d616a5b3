//! What the gateway and the worker share: the event envelope and its kinds,
//! the senders' payload rules, the RabbitMQ topology and confirmed publishing,
//! the database pool and migrations, settings helpers, telemetry and the ops
//! listener.
#![forbid(unsafe_code)]

pub mod amqp;
pub mod db;
pub mod dead_letter;
pub mod envelope;
pub mod metrics;
pub mod ops;
pub mod pem;
pub mod senders;
pub mod settings;
pub mod shutdown;
pub mod subject;
pub mod supervise;
pub mod telemetry;

pub use envelope::{Envelope, EventKind, Source};
