//! The command-line tools for people: `worker dlq`, `worker lina`, `worker subject`.
//! Here: their argument parsing and output; not here: the operations themselves, which are the
//! same core the running worker uses (`dead_letters/`, `apply/erasure.rs`). The running worker
//! imports nothing from this folder.

pub mod cli;
pub mod dlq;
pub mod stores;
pub mod subject;
