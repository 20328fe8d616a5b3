//! Collecting a batch: the first delivery waits as long as it takes, the
//! rest only as long as the linger, so a burst fills batches and a trickle
//! is not held back.

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use lapin::message::Delivery;

/// Returns `first` plus whatever else arrives within `linger`, up to `max`.
/// A stream error or end ends the batch early; the caller sees it on its
/// next read.
pub async fn collect<S>(
    first: Delivery,
    deliveries: &mut S,
    max: usize,
    linger: Duration,
) -> Vec<Delivery>
where
    S: Stream<Item = Result<Delivery, lapin::Error>> + Unpin,
{
    let mut batch = Vec::with_capacity(max);
    batch.push(first);
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, deliveries.next()).await {
            Ok(Some(Ok(delivery))) => batch.push(delivery),
            Ok(Some(Err(_)) | None) | Err(_) => break,
        }
    }
    batch
}
