//! The apply core: what a batch of events does to PostgreSQL, in one transaction.
//! Here: the batch transaction, statement pipelining, subject state and its verdict, the per-kind
//! jobs and the one erasure; not here: consuming and acking (`consume/`), admin commands.

pub mod batch;
pub mod erasure;
pub mod hash_key;
pub mod jobs;
pub mod json_text;
pub mod pipeline;
pub mod subject_state;

pub use batch::{Applied, EventResult, Followups, apply_batch};
