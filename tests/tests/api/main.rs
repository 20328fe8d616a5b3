//! End-to-end tests against real RabbitMQ and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod dead_letters;
mod deploy_files;
mod email;
mod erasure;
mod lina;
mod lina_admin;
mod lt_gateway;
mod lt_worker;
mod metrics;
mod ordering;
mod run_command;
mod shutdown;
mod subjects;
