//! Tests that stop or disturb the shared RabbitMQ: they run alone
//! (`scripts/test` runs this binary after the others, one test at a time),
//! and every fault is undone by a guard, whatever happens.
#![allow(clippy::unwrap_used)]

mod broker_restart;
mod chaos;
mod cluster;
mod database_read_only;
mod prometheus;
mod spool;
