//! End-to-end tests against real RabbitMQ and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod lt_gateway;
mod lt_worker;
mod run_command;
