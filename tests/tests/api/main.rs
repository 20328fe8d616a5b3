//! End-to-end tests against real RabbitMQ and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod admin_output;
mod bad_input;
mod broker_nodes;
mod broker_tls;
mod chaos_checker;
mod consumer_cancel;
mod database_pool;
mod database_tls;
mod dead_letters;
mod deploy_files;
mod email;
mod environment_faults;
mod erasure;
mod erasure_paths;
mod hash_key;
mod http_edge;
mod lina;
mod lina_admin;
mod lt_gateway;
mod lt_worker;
mod metrics;
mod model;
mod openapi;
mod ordering;
mod run_command;
mod shutdown;
mod smtp_tls;
mod source_allowlist;
mod subjects;
mod supervision;
