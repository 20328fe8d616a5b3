//! Waiting for something to become true, with a deadline instead of a sleep.

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 25 ms until it returns `Some`, or panics with `what`
/// after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until a worker's counters satisfy `condition`, or panics with `what`.
pub async fn until<F>(what: &str, stats: &worker::context::WorkerStats, condition: F)
where
    F: Fn(&worker::context::WorkerStats) -> bool,
{
    eventually(what, Duration::from_secs(20), || async {
        condition(stats).then_some(())
    })
    .await;
}
