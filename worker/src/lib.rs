//! The worker: consumes events from RabbitMQ in batches and applies them to
//! PostgreSQL, acking only after commit. Many worker processes may run side
//! by side (competing consumers); nothing here assumes it is alone.
#![forbid(unsafe_code)]

pub mod apply;
pub mod batch;
pub mod cli;
pub mod consumer;
pub mod context;
pub mod dlq;
pub mod email;
pub mod erasure;
pub mod error;
pub mod jobs;
pub mod lina;
pub mod metrics;
pub mod pipeline;
pub mod process;
pub mod retention;
pub mod retry;
pub mod settings;
pub mod startup;
pub mod subject;
pub mod subject_state;
