//! The retry policy: a pure decision, unit-tested without a broker.

use std::time::Duration;

use crate::error::JobError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Republish to the delay tier of `delay`, as attempt `attempt`.
    Retry { delay: Duration, attempt: u32 },
    /// Park in the dead-letter queue with `reason`, after `attempts` tries.
    DeadLetter { reason: &'static str, attempts: u32 },
}

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// One delay per retry, shortest first (`INTAKE_RETRY_DELAYS`).
    delays: Vec<Duration>,
}

impl RetryPolicy {
    pub fn new(delays: Vec<Duration>) -> Self {
        RetryPolicy { delays }
    }

    /// The longest a message can take through every delay tier before it
    /// is dead-lettered (the sum of the delays).
    pub fn whole_schedule(&self) -> Duration {
        self.delays.iter().sum()
    }

    /// What to do with a message that failed on its `attempt`-th try
    /// (0 for the first delivery).
    pub fn decide(&self, attempt: u32, error: &JobError) -> Disposition {
        let attempts = attempt.saturating_add(1);
        match error {
            JobError::Permanent { reason, .. } => Disposition::DeadLetter { reason, attempts },
            // An environment failure is held in the worker, not moved on
            // (`consume::hold`); should one reach here, it climbs the tiers.
            JobError::Transient(_) | JobError::Environment(_) => {
                match self.delays.get(attempt as usize) {
                    Some(delay) => Disposition::Retry {
                        delay: *delay,
                        attempt: attempts,
                    },
                    None => Disposition::DeadLetter {
                        reason: "retries_exhausted",
                        attempts,
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(vec![Duration::from_secs(1), Duration::from_secs(30)])
    }

    fn transient() -> JobError {
        JobError::Transient("SMTP 451".into())
    }

    #[test]
    fn transient_failures_climb_the_delay_tiers() {
        assert_eq!(
            policy().decide(0, &transient()),
            Disposition::Retry {
                delay: Duration::from_secs(1),
                attempt: 1
            }
        );
        assert_eq!(
            policy().decide(1, &transient()),
            Disposition::Retry {
                delay: Duration::from_secs(30),
                attempt: 2
            }
        );
    }

    #[test]
    fn after_the_last_tier_a_transient_failure_is_dead_lettered() {
        assert_eq!(
            policy().decide(2, &transient()),
            Disposition::DeadLetter {
                reason: "retries_exhausted",
                attempts: 3
            }
        );
    }

    #[test]
    fn a_permanent_failure_is_dead_lettered_at_once_with_its_reason() {
        let error = JobError::permanent("missing_email", "no e-mail");
        assert_eq!(
            policy().decide(0, &error),
            Disposition::DeadLetter {
                reason: "missing_email",
                attempts: 1
            }
        );
    }

    #[test]
    fn the_whole_schedule_is_the_sum_of_the_tiers() {
        assert_eq!(policy().whole_schedule(), Duration::from_secs(31));
        assert_eq!(RetryPolicy::new(vec![]).whole_schedule(), Duration::ZERO);
    }

    #[test]
    fn no_tiers_means_no_retries() {
        assert!(matches!(
            RetryPolicy::new(vec![]).decide(0, &transient()),
            Disposition::DeadLetter { .. }
        ));
    }
}
