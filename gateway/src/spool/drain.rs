//! Draining the spool into the broker, oldest first, as soon as the broker
//! confirms again; a segment is deleted once every record in it is confirmed.
//! A record published twice (a crash between publish and delete) is the same
//! event id twice, which the worker drops as a duplicate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::amqp::{ConfirmedPublisher, PublishError, Topology};
use tokio_util::sync::CancellationToken;

use super::{Spool, SpoolError};

/// How often the drainer looks at the spool.
const DRAIN_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
enum DrainError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("a blocking spool task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Drains until `shutdown`.
pub async fn run_drain(
    spool: Arc<Spool>,
    publisher: Arc<ConfirmedPublisher>,
    topology: Topology,
    shutdown: CancellationToken,
) {
    // Records of a segment already confirmed, so a retry resumes after them.
    let mut confirmed: HashMap<u64, usize> = HashMap::new();
    loop {
        if spool.depth().events > 0 {
            match drain_once(&spool, &publisher, &topology, &mut confirmed).await {
                Ok(drained) if drained > 0 => {
                    let left = spool.depth();
                    tracing::info!(
                        message = "Spool drained.",
                        events = drained,
                        events_left = left.events,
                        bytes_left = left.bytes
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(message = "Spool drain paused; will retry.", %error),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(DRAIN_INTERVAL) => {}
        }
    }
}

async fn drain_once(
    spool: &Arc<Spool>,
    publisher: &ConfirmedPublisher,
    topology: &Topology,
    confirmed: &mut HashMap<u64, usize>,
) -> Result<usize, DrainError> {
    let sealed = spool.seal();
    let mut drained = 0;
    for sequence in sealed {
        let reader = spool.clone();
        let (records, torn) = tokio::task::spawn_blocking(move || reader.read(sequence)).await??;
        let done = confirmed.get(&sequence).copied().unwrap_or(0);
        for (index, record) in records.iter().enumerate().skip(done) {
            if let Err(error) = record
                .publish(publisher, topology, publisher.confirm_timeout())
                .await
            {
                confirmed.insert(sequence, index);
                return Err(error.into());
            }
            drained += 1;
        }
        let remover = spool.clone();
        if torn {
            set_aside(remover, sequence, &records).await?;
        } else {
            tokio::task::spawn_blocking(move || remover.remove(sequence)).await??;
        }
        confirmed.remove(&sequence);
    }
    Ok(drained)
}

/// A segment with a frame the drainer could not read is never deleted:
/// what follows the damage may be calls answered 200. Its readable records
/// were published; the segment is moved aside, counted (an alert), and the
/// ids of what it could read are logged, so ops can find what is missing.
async fn set_aside(
    spool: Arc<Spool>,
    sequence: u64,
    records: &[super::SpoolRecord],
) -> Result<(), DrainError> {
    let aside = tokio::task::spawn_blocking(move || spool.set_aside(sequence)).await??;
    let read: Vec<String> = records
        .iter()
        .map(|record| record.envelope.id.to_string())
        .collect();
    tracing::error!(
        message = "A spool segment holds a frame that cannot be read; it was set aside, not deleted.",
        segment = sequence,
        path = %aside.display(),
        events_read = read.len(),
        event_ids_read = %read.join(","),
    );
    Ok(())
}
