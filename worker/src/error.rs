//! Every job error knows whose fault it is, and so what should happen to
//! its message. This is the one place that classifies database errors.

use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

#[derive(Clone, Debug, thiserror::Error)]
pub enum JobError {
    /// The event's own trouble that may pass (the SMTP server refused for
    /// now or is unreachable, a batch that panicked, an e-mail's record
    /// failing after its hand-over): its next delay tier.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The event's own, for good: the dead-letter queue with `reason`.
    #[error("permanent failure ({reason}): {detail}")]
    Permanent {
        reason: &'static str,
        detail: String,
    },
    /// Not the event's fault: the database refuses everyone (a revoked
    /// privilege, a table or column missing after a bad deploy, read-only
    /// after a failover), a connection or a lock failed, the commit did not
    /// answer. The whole batch is held unacked and tried again in the
    /// worker (`consume::hold`); no event is moved on or counted for it.
    #[error("environment failure: {0}")]
    Environment(String),
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
            JobError::Environment(_) => "environment",
            JobError::Permanent { reason, .. } => reason,
        }
    }

    pub fn is_environment(&self) -> bool {
        matches!(self, JobError::Environment(_))
    }
}

/// Whose fault a SQLSTATE is: only the classes a value of the event can
/// cause are the event's (21 cardinality, 22 data exception, 23 integrity
/// constraint, 54 program limit exceeded, e.g. a document too large, P0 a
/// trigger's RAISE), and the batch then pins them on one event in its
/// savepoints. An erasure refused even so is held (`apply::batch`): it only
/// deletes our rows. Everything else (42
/// privileges and schema, 25 read-only, 08 connection, 40 deadlock, 53
/// resources, 55/57 locks and shutdown, XX internal, and codes not known
/// here) is the environment's: holding a batch until it passes loses
/// nothing, while dead-lettering every event for a fault that is not theirs
/// would bury them where retention purges them.
pub fn is_the_events(sqlstate: &str) -> bool {
    matches!(sqlstate.get(..2), Some("21" | "22" | "23" | "54" | "P0"))
}

impl From<tokio_postgres::Error> for JobError {
    fn from(error: tokio_postgres::Error) -> Self {
        let Some(db_error) = error.as_db_error() else {
            // A connection, TLS, protocol or decoding failure.
            return JobError::Environment(common::db::with_causes(&error));
        };
        // A database error's message and detail can quote the data: keep
        // only its code (logs and dead-letter headers must stay free of
        // personal data).
        let code = db_error.code().code();
        if is_the_events(code) {
            JobError::permanent("database_rejected", format!("SQLSTATE {code}"))
        } else {
            JobError::Environment(format!("SQLSTATE {code}"))
        }
    }
}

impl From<deadpool_postgres::PoolError> for JobError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        JobError::Environment(common::db::pool_error(&error))
    }
}

/// Column `name` of `row`. A type that drifted from the code's (a bad
/// deploy) is an environment failure naming the column, never a panic.
/// An environment failure met after an e-mail was handed over (recording it
/// failed) climbs the delay tiers instead of being held: holding would hand
/// the e-mail over again at every attempt, the tiers bound how often.
pub fn once_handed_over(error: JobError) -> JobError {
    match error {
        JobError::Environment(detail) => {
            JobError::Transient(format!("recording a sent e-mail failed: {detail}"))
        }
        other => other,
    }
}

pub fn column<'a, T: FromSql<'a>>(row: &'a Row, name: &str) -> Result<T, JobError> {
    row.try_get(name).map_err(|_| {
        // The decoding error is left out: it may quote the value.
        JobError::Environment(format!("column {name} missing or of another type"))
    })
}

#[cfg(test)]
mod tests {
    use super::is_the_events;

    #[test]
    fn only_data_and_constraint_errors_are_the_events() {
        for code in [
            "21000", "22P02", "22001", "23505", "23503", "54000", "P0001",
        ] {
            assert!(is_the_events(code), "{code}");
        }
        for code in [
            "42501", "42P01", "42703", "25006", "08006", "40001", "40P01", "53300", "55P03",
            "57P01", "XX000", "0A000", "",
        ] {
            assert!(!is_the_events(code), "{code}");
        }
    }
}
