//! The worker: consumes events from RabbitMQ in batches and applies them to
//! PostgreSQL, acking only after commit. Many worker processes may run side
//! by side (competing consumers); nothing here assumes it is alone.
#![forbid(unsafe_code)]

pub mod admin;
pub mod apply;
pub mod background;
pub mod consume;
pub mod context;
pub mod dead_letters;
pub mod email;
pub mod error;
pub mod fault_hooks;
pub mod metrics;
pub mod settings;
pub mod startup;
