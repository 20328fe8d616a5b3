//! Long-running tasks (consumers, the e-mail sender, the outbox sweeper,
//! retention, the spool drainer) run under a supervisor: a task that
//! panics or returns before shutdown is started again after a backoff and
//! counted, so no part of a process dies quietly while the rest looks
//! healthy.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// A task that ran this long before it ended counts as having been healthy:
/// the next restart starts again from the shortest delay.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// Runs `start()` until `shutdown`, starting it again whenever it ends
/// early (returns or panics), after a backoff of 0.5 s doubling up to 30 s.
/// `restarted` is called for every restart (the restart counter). A task
/// sees `shutdown` itself and returns when it is cancelled; this waits for
/// it.
pub async fn supervise<F, Fut>(
    task: &'static str,
    shutdown: CancellationToken,
    restarted: impl Fn(),
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut delays = restart_delays();
    loop {
        let started = Instant::now();
        // Spawned, so that a panic ends the task, not the supervisor.
        let ended = tokio::spawn(start()).await;
        if shutdown.is_cancelled() {
            return;
        }
        if started.elapsed() > HEALTHY_RUN {
            delays = restart_delays();
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(30));
        // The panic's message is left out: it may quote the data at hand.
        let panicked = ended.as_ref().is_err_and(|error| error.is_panic());
        tracing::error!(
            message = "A task ended unexpectedly; restarting it.",
            task,
            panicked,
            restart_in_ms = delay.as_millis() as u64,
        );
        restarted();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn restart_delays() -> impl Iterator<Item = Duration> {
    backoff(Duration::from_millis(500), Duration::from_secs(30))
}

/// Delays doubling from `min` to `max`, with jitter (up to as much again),
/// for ever: the schedule of every retry loop (restarts, reconnects, held
/// batches), each with its own bounds.
pub fn backoff(min: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// `intake_task_restarts_total{task}` in `registry`, every task's series at 0.
pub fn restart_counter<'a>(
    registry: &prometheus::Registry,
    tasks: impl IntoIterator<Item = &'a str>,
) -> Result<prometheus::IntCounterVec, prometheus::Error> {
    let counter = prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "intake_task_restarts_total",
            "Long-running tasks restarted after they panicked or ended unexpectedly.",
        ),
        &["task"],
    )?;
    registry.register(Box::new(counter.clone()))?;
    for task in tasks {
        counter.with_label_values(&[task]);
    }
    Ok(counter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_or_returns_early_is_restarted_and_counted() {
        let shutdown = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let restarts = Arc::new(AtomicUsize::new(0));
        let supervisor = {
            let (runs, restarts, shutdown) = (runs.clone(), restarts.clone(), shutdown.clone());
            tokio::spawn(async move {
                let counted = restarts.clone();
                supervise(
                    "test",
                    shutdown.clone(),
                    move || {
                        counted.fetch_add(1, Ordering::SeqCst);
                    },
                    move || {
                        let run = runs.fetch_add(1, Ordering::SeqCst);
                        let shutdown = shutdown.clone();
                        async move {
                            match run {
                                0 => panic!("first run panics"),
                                1 => {}
                                _ => shutdown.cancelled().await,
                            }
                        }
                    },
                )
                .await;
            })
        };
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "started again twice");
        assert_eq!(restarts.load(Ordering::SeqCst), 2);
        shutdown.cancel();
        supervisor.await.expect("the supervisor ends on shutdown");
        assert_eq!(
            restarts.load(Ordering::SeqCst),
            2,
            "a shutdown is no restart"
        );
    }
}
