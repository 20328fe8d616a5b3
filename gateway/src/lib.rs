//! The thin gateway: authenticate, validate, publish durably, answer.
//! It never touches the database.
#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod connection;
pub mod error;
pub mod expect;
pub mod head;
pub mod metrics;
pub mod publish;
pub mod routes;
pub mod settings;
pub mod source;
pub mod spool;
pub mod startup;
pub mod state;
