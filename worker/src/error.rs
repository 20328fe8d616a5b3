//! Every job error knows what should happen to its message.

#[derive(Clone, Debug, thiserror::Error)]
pub enum JobError {
    /// Worth trying again later: the database or SMTP server is unavailable,
    /// a timeout, a deadlock.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Will never succeed as it is: goes to the dead-letter queue with `reason`.
    #[error("permanent failure ({reason}): {detail}")]
    Permanent {
        reason: &'static str,
        detail: String,
    },
}

impl JobError {
    pub fn permanent(reason: &'static str, detail: impl Into<String>) -> Self {
        JobError::Permanent {
            reason,
            detail: detail.into(),
        }
    }

    /// A short, bounded code for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            JobError::Transient(_) => "transient",
            JobError::Permanent { reason, .. } => reason,
        }
    }
}

impl From<tokio_postgres::Error> for JobError {
    /// Connection trouble, deadlocks, serialization failures, lack of
    /// resources and an administrator's shutdown pass with time; anything
    /// else PostgreSQL refuses (bad data, constraint) will be refused again.
    fn from(error: tokio_postgres::Error) -> Self {
        let Some(db_error) = error.as_db_error() else {
            return JobError::Transient(error.to_string());
        };
        // A database error's message and detail can quote the data: keep
        // only its code (logs and dead-letter headers must stay free of
        // personal data).
        let code = db_error.code().code();
        match &code[..2] {
            "08" | "40" | "53" | "55" | "57" | "58" => {
                JobError::Transient(format!("SQLSTATE {code}"))
            }
            _ => JobError::permanent("database_rejected", format!("SQLSTATE {code}")),
        }
    }
}

impl From<deadpool_postgres::PoolError> for JobError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        JobError::Transient(error.to_string())
    }
}
