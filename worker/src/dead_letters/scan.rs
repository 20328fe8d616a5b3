//! Walking the parking queues: list, show, replay, purge.

use std::sync::Arc;
use std::time::Duration;

use common::amqp::{AmqpConnector, ConfirmedPublisher, Topology};
use common::settings::AmqpSettings;
use indicatif::ProgressBar;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::{Channel, Connection};

use super::{DlqError, Filter, ParkedMessage, ParkingQueue};
use common::dead_letter;

/// What `list` found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Every selected queue and how many messages it holds.
    pub counts: Vec<(String, u32)>,
    /// The matching messages (payloads left out).
    pub messages: Vec<ParkedMessage>,
}

/// What `replay` or `purge` did (or, with `dry_run`, would do).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub scanned: usize,
    pub matched: usize,
    pub dry_run: bool,
    /// When the oldest message left in the queues was parked.
    pub oldest_kept: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    List,
    Replay,
    Purge,
}

/// The state of one walk over the selected queues.
struct Walk<'a> {
    topology: Topology,
    filter: &'a Filter,
    action: Action,
    dry_run: bool,
    publisher: Option<ConfirmedPublisher>,
    progress: &'a ProgressBar,
    summary: Summary,
    listing: Listing,
}

pub async fn list(settings: &AmqpSettings, filter: &Filter) -> Result<Listing, DlqError> {
    let hidden = ProgressBar::hidden();
    let walk = walk(settings, filter, Action::List, true, &hidden).await?;
    Ok(walk.listing)
}

pub async fn replay(
    settings: &AmqpSettings,
    filter: &Filter,
    dry_run: bool,
    progress: &ProgressBar,
) -> Result<Summary, DlqError> {
    Ok(walk(settings, filter, Action::Replay, dry_run, progress)
        .await?
        .summary)
}

pub async fn purge(
    settings: &AmqpSettings,
    filter: &Filter,
    dry_run: bool,
    progress: &ProgressBar,
) -> Result<Summary, DlqError> {
    Ok(walk(settings, filter, Action::Purge, dry_run, progress)
        .await?
        .summary)
}

/// The parked message with event id `id`, payload included.
pub async fn show(settings: &AmqpSettings, id: &str) -> Result<ParkedMessage, DlqError> {
    let connector = connector(settings);
    let connection = connector.connection().await?;
    let topology = settings.topology();
    for queue in ParkingQueue::ALL {
        let name = queue.name(&topology);
        let channel = connection.create_channel().await?;
        let depth = depth(&channel, &name).await?;
        let mut found = None;
        for _ in 0..depth {
            let Some(message) = channel
                .basic_get(name.as_str().into(), BasicGetOptions::default())
                .await?
            else {
                break;
            };
            let parked = ParkedMessage::new(
                &name,
                message.delivery.properties.clone(),
                message.delivery.data,
            );
            if parked.id.as_deref() == Some(id) {
                found = Some(parked);
                break;
            }
        }
        // Closing the channel returns every message taken: nothing changes.
        let _ = channel.close(200, "browsed".into()).await;
        await_returned(&connection, &name, depth).await?;
        if let Some(parked) = found {
            connector.close().await;
            return Ok(parked);
        }
    }
    connector.close().await;
    Err(DlqError::NotFound(id.to_owned()))
}

/// Total messages in the selected queues (for a progress bar's length).
pub async fn total_depth(settings: &AmqpSettings, filter: &Filter) -> Result<u64, DlqError> {
    let connector = connector(settings);
    let connection = connector.connection().await?;
    let channel = connection.create_channel().await?;
    let mut total = 0;
    for queue in filter.queues() {
        total += u64::from(depth(&channel, &queue.name(&settings.topology())).await?);
    }
    connector.close().await;
    Ok(total)
}

async fn walk<'a>(
    settings: &AmqpSettings,
    filter: &'a Filter,
    action: Action,
    dry_run: bool,
    progress: &'a ProgressBar,
) -> Result<Walk<'a>, DlqError> {
    let connector = connector(settings);
    let connection = connector.connection().await?;
    let mut walk = Walk {
        topology: settings.topology(),
        filter,
        action,
        dry_run,
        publisher: (action == Action::Replay && !dry_run)
            .then(|| ConfirmedPublisher::new(connector.clone(), settings.publish_timeout)),
        progress,
        summary: Summary {
            dry_run,
            ..Summary::default()
        },
        listing: Listing::default(),
    };
    for queue in filter.queues() {
        walk.queue(&connection, queue).await?;
    }
    progress.finish_and_clear();
    connector.close().await;
    Ok(walk)
}

impl Walk<'_> {
    async fn queue(
        &mut self,
        connection: &Connection,
        queue: ParkingQueue,
    ) -> Result<(), DlqError> {
        let name = queue.name(&self.topology);
        let channel = connection.create_channel().await?;
        let depth = depth(&channel, &name).await?;
        self.listing.counts.push((name.clone(), depth));
        let mut removed = 0;
        for _ in 0..depth {
            let Some(message) = channel
                .basic_get(name.as_str().into(), BasicGetOptions::default())
                .await?
            else {
                break;
            };
            self.summary.scanned += 1;
            self.progress.inc(1);
            let acker = message.delivery.acker.clone();
            let parked = ParkedMessage::new(
                &name,
                message.delivery.properties.clone(),
                message.delivery.data,
            );
            if !self.selects(&parked) {
                self.note_kept(&parked);
                continue; // kept: returned when the channel closes
            }
            if self.dry_run {
                self.note_kept(&parked);
            }
            self.summary.matched += 1;
            if self.act(queue, parked, &acker).await? {
                removed += 1;
            }
        }
        // Returns every message that was not replayed or purged.
        let _ = channel.close(200, "scanned".into()).await;
        await_returned(connection, &name, depth - removed).await
    }

    fn note_kept(&mut self, parked: &ParkedMessage) {
        if let Some(parked_at) = parked.parked_at {
            let oldest = self.summary.oldest_kept.get_or_insert(parked_at);
            *oldest = (*oldest).min(parked_at);
        }
    }

    fn selects(&self, parked: &ParkedMessage) -> bool {
        let under_limit = self
            .filter
            .limit
            .is_none_or(|limit| self.summary.matched < limit);
        under_limit && self.filter.matches(parked)
    }

    /// Does the walk's action to one selected message; true when it left the queue.
    async fn act(
        &mut self,
        queue: ParkingQueue,
        mut parked: ParkedMessage,
        acker: &lapin::Acker,
    ) -> Result<bool, DlqError> {
        match self.action {
            Action::List => {
                parked.body.clear();
                self.listing.messages.push(parked);
                Ok(false)
            }
            Action::Replay if !self.dry_run => {
                let Some(publisher) = &self.publisher else {
                    return Ok(false);
                };
                let target = self.topology.work_queue(queue.work_queue());
                let properties = dead_letter::for_replay(&parked.properties);
                publisher
                    .publish("", &target, &parked.body, properties)
                    .await?;
                acker.ack(BasicAckOptions::default()).await?;
                Ok(true)
            }
            Action::Purge if !self.dry_run => {
                acker.ack(BasicAckOptions::default()).await?;
                Ok(true)
            }
            Action::Replay | Action::Purge => Ok(false),
        }
    }
}

fn connector(settings: &AmqpSettings) -> Arc<AmqpConnector> {
    settings.connector("dlq")
}

/// How long a command waits for the messages it browsed to be back.
const RETURN_WAIT: Duration = Duration::from_secs(10);

/// Waits (bounded) until `queue` holds at least `expected` messages again.
///
/// Closing a channel hands its unacknowledged messages back, but a quorum
/// queue takes them back through its log, a moment after the close returns
/// (on a busy broker, long enough for a `replay` run straight after a `list`
/// to find the queue empty). So a command returns only once what it browsed
/// is back. After the bound it returns anyway: the messages are not lost, and
/// the broker returns them on its own.
async fn await_returned(
    connection: &Connection,
    queue: &str,
    expected: u32,
) -> Result<(), DlqError> {
    let channel = connection.create_channel().await?;
    let back = async {
        while depth(&channel, queue).await? < expected {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok::<_, DlqError>(())
    };
    let counted = tokio::time::timeout(RETURN_WAIT, back).await;
    let _ = channel.close(200, "counted".into()).await;
    counted.unwrap_or_else(|_| {
        tracing::warn!(
            message = "Browsed messages are not back in the queue yet; the broker returns them.",
            queue,
            expected,
        );
        Ok(())
    })
}

/// Messages ready in `queue`.
async fn depth(channel: &Channel, queue: &str) -> Result<u32, DlqError> {
    Ok(common::amqp::queue_depth(channel, queue).await?.messages)
}
