//! `worker subject export` and `worker subject erase`: data-subject requests made to the partner.
//! Here: the command line and the export; not here: the erasure itself (`apply/erasure.rs`),
//! which retention (`background/`) calls as well.
//!
//! An erasure here is the one erasure every cause goes through
//! (`crate::apply::erasure`): the person's data goes and their state row becomes a
//! tombstone ordered after everything received before the request, with an
//! erasure record naming the cause.

mod command;
mod erase;
mod export;

pub use crate::apply::erasure::Erased;
pub use command::{SubjectCommand, Who, run};
pub use erase::erase;
pub use export::export;

/// A person, as one sender knows them.
pub use crate::apply::erasure::Person as Subject;

#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    #[error("database unavailable: {}", common::db::pool_error(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Shown as its SQLSTATE: the server's text can quote the data.
    #[error("database error: {}", common::db::describe(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Job(#[from] crate::error::JobError),
    #[error("cannot write the output: {0}")]
    Output(String),
}
