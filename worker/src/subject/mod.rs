//! Data-subject requests made to the partner directly (GDPR access and
//! erasure), and the same erasure for retention: `worker subject export` and
//! `worker subject erase`.
//!
//! An erasure here is exactly a revocation's or withdrawal's: the person's
//! data goes and their state row becomes a tombstone (keeping its order key
//! and body hashes, so a later resend of an old body is still dropped), with
//! an erasure record naming the cause.

mod command;
mod erase;
mod export;

pub use command::{SubjectCommand, Who, run};
pub use erase::{Erased, erase};
pub use export::export;

use common::Source;
use common::subject::{SubjectHasher, SubjectKey};
use uuid::Uuid;

/// A person, as one sender knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Lt { user_id: String },
    Lina { webhook: Uuid, user: Uuid },
}

impl Subject {
    pub fn key(&self, hasher: &SubjectHasher) -> SubjectKey {
        match self {
            Subject::Lt { user_id } => hasher.lt(user_id),
            Subject::Lina { webhook, user } => hasher.lina(&webhook.to_string(), &user.to_string()),
        }
    }

    pub fn source(&self) -> Source {
        match self {
            Subject::Lt { .. } => Source::Lt,
            Subject::Lina { .. } => Source::Lina,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Job(#[from] crate::error::JobError),
    #[error("cannot write the output: {0}")]
    Output(String),
}
