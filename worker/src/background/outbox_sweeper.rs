//! Republishes the e-mail jobs of pending outbox rows that a crash left
//! unpublished (or whose job was lost), so every acknowledgement goes out.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::context::WorkerContext;
use crate::email::outbox;
use crate::email::publish_jobs;

/// A row younger than this is left to the normal path (publish after commit).
const GRACE: Duration = Duration::from_secs(10);
/// A job published this long after the whole retry schedule without its
/// row being sent is taken as lost (the queue's own backlog is the slack).
const RESEND_SLACK: Duration = Duration::from_secs(3600);
const BATCH: i64 = 500;

/// How long after its job was published a pending row is taken as lost:
/// the whole retry schedule (`INTAKE_RETRY_DELAYS`), plus an hour.
pub fn resend_after(context: &WorkerContext) -> Duration {
    context.retry.whole_schedule() + RESEND_SLACK
}

pub async fn run_sweeper(
    context: std::sync::Arc<WorkerContext>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = sweep(&context).await {
            tracing::warn!(message = "Outbox sweep failed; will try again.", %error);
        }
    }
}

/// One sweep; returns how many jobs were republished.
pub async fn sweep(context: &WorkerContext) -> Result<usize, crate::error::JobError> {
    let claimed =
        outbox::claim_unpublished(&context.pool, GRACE, resend_after(context), BATCH).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let published = publish_jobs(context, &claimed).await;
    let unpublished: Vec<_> = claimed
        .iter()
        .filter(|id| !published.contains(id))
        .copied()
        .collect();
    if !unpublished.is_empty() {
        outbox::unclaim(&context.pool, &unpublished).await?;
    }
    tracing::info!(message = "Outbox swept.", republished = published.len());
    Ok(published.len())
}
