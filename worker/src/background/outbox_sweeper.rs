//! Republishes the e-mail jobs of pending outbox rows that a crash left
//! unpublished (or whose job was lost), so every acknowledgement goes out.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::context::WorkerContext;
use crate::email::outbox;
use crate::email::publish_jobs;

/// A row younger than this is left to the normal path (publish after commit).
const GRACE: Duration = Duration::from_secs(10);
/// A job published this long ago without the row being sent is taken as lost
/// (longer than the whole retry schedule).
const RESEND_AFTER: Duration = Duration::from_secs(6 * 3600);
const BATCH: i64 = 500;

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
    let claimed = outbox::claim_unpublished(&context.pool, GRACE, RESEND_AFTER, BATCH).await?;
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
