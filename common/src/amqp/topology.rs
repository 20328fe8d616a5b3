//! Every queue and exchange the system uses, declared idempotently by both
//! binaries whenever they (re)connect. Names follow DESIGN.md; the prefix
//! (`INTAKE_QUEUE_PREFIX`) lets tests and deployments share one broker.

use std::sync::OnceLock;
use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

use super::AmqpError;

/// A work queue delivers one kind of job; separate queues keep a slow SMTP
/// server from holding back profile upserts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkQueue {
    Lt,
    Lina,
    Email,
}

impl WorkQueue {
    pub const ALL: [WorkQueue; 3] = [WorkQueue::Lt, WorkQueue::Lina, WorkQueue::Email];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkQueue::Lt => "lt",
            WorkQueue::Lina => "lina",
            WorkQueue::Email => "email",
        }
    }
}

/// How often a work-queue message may be delivered before RabbitMQ
/// dead-letters it (a message that crashes every worker that takes it).
/// Explicit because RabbitMQ 4.x silently applies 20 and, without a
/// dead-letter exchange, DROPS the message past it.
pub const WORK_QUEUE_DELIVERY_LIMIT: i64 = 20;

#[derive(Clone, Debug)]
pub struct Topology {
    prefix: String,
    retry_delays: Vec<Duration>,
}

/// The delivery-limit probe's answer, once it is definite: the broker's
/// version decides it, so one answer serves the process (every topology,
/// node and reconnect; a process restarted after a broker upgrade asks
/// again). Probing at every reconnect created a quorum queue each time,
/// which in a cluster that had just lost a node took longer than a connect
/// may: the cluster tests saw the gateway's reconnects time out on it.
static MINUS_ONE_MEANS_UNLIMITED: OnceLock<bool> = OnceLock::new();

impl Topology {
    pub fn new(prefix: impl Into<String>, retry_delays: Vec<Duration>) -> Self {
        Topology {
            prefix: prefix.into(),
            retry_delays,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn work_queue(&self, queue: WorkQueue) -> String {
        format!("{}.{}", self.prefix, queue.as_str())
    }

    pub fn dead_letter_queue(&self, queue: WorkQueue) -> String {
        format!("{}.{}.dlq", self.prefix, queue.as_str())
    }

    /// LINA calls that failed validation: kept, because LINA never resends.
    pub fn quarantine_queue(&self) -> String {
        format!("{}.quarantine", self.prefix)
    }

    /// The delay tier's queue, and the fanout exchange in front of it (same name).
    pub fn retry_tier(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.prefix, delay_label(delay))
    }

    pub fn dead_letter_queues(&self) -> Vec<String> {
        let mut queues: Vec<String> = WorkQueue::ALL
            .into_iter()
            .map(|queue| self.dead_letter_queue(queue))
            .collect();
        queues.push(self.quarantine_queue());
        queues
    }

    /// Every queue this topology declares.
    pub fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = WorkQueue::ALL
            .into_iter()
            .map(|queue| self.work_queue(queue))
            .collect();
        names.extend(self.dead_letter_queues());
        names.extend(self.exchange_names());
        names
    }

    /// Every exchange this topology declares (one per delay tier).
    pub fn exchange_names(&self) -> Vec<String> {
        self.retry_delays
            .iter()
            .map(|delay| self.retry_tier(*delay))
            .collect()
    }

    /// Declares everything; safe to repeat, and repeated after every reconnect.
    pub async fn declare(&self, connection: &Connection) -> Result<(), AmqpError> {
        let unlimited = match MINUS_ONE_MEANS_UNLIMITED.get() {
            Some(known) => *known,
            // Not definite (the probe's message never showed): no `-1` this
            // time, as on a 3.x broker, and asked again at the next connect.
            None => match self.minus_one_means_unlimited(connection).await? {
                Some(probed) => *MINUS_ONE_MEANS_UNLIMITED.get_or_init(|| probed),
                None => false,
            },
        };
        for queue in self.dead_letter_queues() {
            declare_parking_queue(connection, &queue, FieldTable::default(), unlimited).await?;
        }
        let channel = connection.create_channel().await?;
        for queue in WorkQueue::ALL {
            let arguments = work_queue_arguments(&self.dead_letter_queue(queue));
            channel
                .queue_declare(self.work_queue(queue).into(), durable(), arguments)
                .await?;
        }
        for delay in &self.retry_delays {
            self.declare_retry_tier(connection, *delay, unlimited)
                .await?;
        }
        channel.close(200, "declared".into()).await?;
        Ok(())
    }

    /// Asks the broker itself what `x-delivery-limit: -1` means: a throwaway
    /// quorum queue gets one message, which is requeued once; if it is still
    /// there, `-1` means unlimited (4.x). The server's version is not needed
    /// (lapin does not expose it) and behaviour is what matters. `None`:
    /// no definite answer (the message did not show up in time).
    async fn minus_one_means_unlimited(
        &self,
        connection: &Connection,
    ) -> Result<Option<bool>, AmqpError> {
        let name = format!("{}.probe.{}", self.prefix, uuid::Uuid::now_v7());
        let channel = connection.create_channel().await?;
        let mut arguments = quorum();
        arguments.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(-1));
        // A probe left behind by a crash disappears by itself.
        arguments.insert("x-expires".into(), AMQPValue::LongLongInt(60_000));
        if channel
            .queue_declare(name.as_str().into(), durable(), arguments)
            .await
            .is_err()
        {
            // Refused (a broker that does not take `-1`, or one in trouble):
            // no `-1` this time, and no answer kept.
            return Ok(None);
        }
        let survived = requeue_survives(&channel, &name).await;
        let _ = channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = channel.close(200, "probed".into()).await;
        let survived = survived?;
        tracing::debug!(
            message = "Delivery-limit probe done.",
            minus_one_means_unlimited = ?survived
        );
        Ok(survived)
    }

    async fn declare_retry_tier(
        &self,
        connection: &Connection,
        delay: Duration,
        unlimited: bool,
    ) -> Result<(), AmqpError> {
        let name = self.retry_tier(delay);
        let mut arguments = FieldTable::default();
        // Queue-level TTL: every message in a tier waits the same time, so
        // expiry at the head is exact (per-message TTL only expires from the head).
        arguments.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
        );
        // Expired messages go back through the default exchange with the routing
        // key they were published with: the name of their work queue.
        arguments.insert("x-dead-letter-exchange".into(), long_string(""));
        add_safe_dead_lettering(&mut arguments);
        declare_parking_queue(connection, &name, arguments, unlimited).await?;
        let channel = connection.create_channel().await?;
        channel
            .exchange_declare(
                name.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                name.as_str().into(),
                name.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel.close(200, "declared".into()).await?;
        Ok(())
    }
}

/// Publishes one message to `queue`, takes it, requeues it, and says whether
/// it can be taken again.
async fn requeue_survives(channel: &Channel, queue: &str) -> Result<Option<bool>, AmqpError> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"probe",
            BasicProperties::default(),
        )
        .await?
        .await?;
    let Some(first) = get_soon(channel, queue).await? else {
        return Ok(None);
    };
    first
        .delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        })
        .await?;
    Ok(Some(get_soon(channel, queue).await?.is_some()))
}

/// `basic.get`, polled briefly: a quorum queue makes a message available
/// only once its log committed it.
async fn get_soon(
    channel: &Channel,
    queue: &str,
) -> Result<Option<lapin::message::BasicGetMessage>, AmqpError> {
    // Up to half a second: a loaded or degraded cluster commits slowly, and a
    // message not seen in time reads as "dropped" (a 3.x answer).
    for _ in 0..25 {
        let message = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?;
        if message.is_some() {
            return Ok(message);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(None)
}

/// Work queues: quorum (replicated in a cluster), dead-lettering to the
/// kind's dead-letter queue at least once, and an explicit delivery limit.
fn work_queue_arguments(dead_letter_queue: &str) -> FieldTable {
    let mut arguments = quorum();
    // The default exchange routes by queue name, so no extra exchange is needed.
    arguments.insert("x-dead-letter-exchange".into(), long_string(""));
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        long_string(dead_letter_queue),
    );
    add_safe_dead_lettering(&mut arguments);
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(WORK_QUEUE_DELIVERY_LIMIT),
    );
    arguments
}

/// The default dead-lettering of quorum queues is at-most-once (drop-head);
/// at-least-once keeps a message until the target queue confirmed it, and
/// requires `reject-publish` overflow.
fn add_safe_dead_lettering(arguments: &mut FieldTable) {
    arguments.insert(
        "x-dead-letter-strategy".into(),
        long_string("at-least-once"),
    );
    arguments.insert("x-overflow".into(), long_string("reject-publish"));
}

/// Dead-letter, quarantine and delay queues must never drop a message however
/// often it is redelivered (browsing redelivers). RabbitMQ 4.x applies a
/// delivery limit of 20 unless told `-1` (unlimited); 3.x has no default
/// limit but takes `-1` literally and drops a message at its first requeue.
/// So `-1` is set only where the probe showed it means unlimited.
async fn declare_parking_queue(
    connection: &Connection,
    name: &str,
    extra: FieldTable,
    minus_one_means_unlimited: bool,
) -> Result<(), AmqpError> {
    let mut arguments = quorum();
    for (key, value) in &extra {
        arguments.insert(key.clone(), value.clone());
    }
    if minus_one_means_unlimited {
        arguments.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(-1));
    }
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(name.into(), durable(), arguments)
        .await?;
    channel.close(200, "declared".into()).await?;
    Ok(())
}

fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), long_string("quorum"));
    arguments
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn long_string(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text))
}

/// `30s`, `2m`, `1h`, `250ms`: the largest unit that divides the delay, so a
/// tier's name says its delay and changing the list never redeclares a queue
/// with other arguments.
pub fn delay_label(delay: Duration) -> String {
    let millis = delay.as_millis();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if millis >= size && millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_names_say_their_delay() {
        assert_eq!(delay_label(Duration::from_secs(30)), "30s");
        assert_eq!(delay_label(Duration::from_secs(120)), "2m");
        assert_eq!(delay_label(Duration::from_secs(90)), "90s");
        assert_eq!(delay_label(Duration::from_secs(3 * 3600)), "3h");
        assert_eq!(delay_label(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn names_follow_the_design() {
        let topology = Topology::new("intake", vec![Duration::from_secs(30)]);
        assert_eq!(topology.work_queue(WorkQueue::Lt), "intake.lt");
        assert_eq!(
            topology.dead_letter_queue(WorkQueue::Email),
            "intake.email.dlq"
        );
        assert_eq!(topology.quarantine_queue(), "intake.quarantine");
        assert_eq!(
            topology.retry_tier(Duration::from_secs(30)),
            "intake.retry.30s"
        );
    }
}
