//! The worker's metrics, served on its ops listener at `/metrics`, and read
//! directly by in-process tests through the getters.

use common::EventKind;
use common::amqp::{Topology, WorkQueue};
use lapin::Connection;
use prometheus::core::Collector;

use crate::consume::health::ConsumerState;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, register_histogram_vec_with_registry, register_histogram_with_registry,
    register_int_counter_vec_with_registry, register_int_counter_with_registry,
    register_int_gauge_vec_with_registry, register_int_gauge_with_registry,
};

/// Outcomes of the senders' events and of e-mail jobs in `intake_events_total`.
pub mod outcome {
    pub const APPLIED: &str = "applied";
    pub const ERASED: &str = "erased";
    pub const DUPLICATE: &str = "duplicate";
    pub const STALE: &str = "stale";
    pub const SENT: &str = "sent";
    pub const RETRIED: &str = "retried";
    pub const DEAD_LETTERED: &str = "dead_lettered";
}

/// The outcomes of `intake_emails_total`.
pub mod email_outcome {
    pub const SENT: &str = "sent";
    pub const FAILED: &str = "failed";
    pub const SKIPPED: &str = "skipped";
    pub const ALL: [&str; 3] = [SENT, FAILED, SKIPPED];
}

const SENDER_KINDS: [EventKind; 4] = [
    EventKind::LtApplication,
    EventKind::LtRevocation,
    EventKind::LinaConsent,
    EventKind::LinaWithdrawal,
];

pub struct WorkerStats {
    pub registry: Registry,
    events: IntCounterVec,
    event_age: HistogramVec,
    emails: IntCounterVec,
    erasures: IntCounterVec,
    batches: IntCounter,
    batch_size: Histogram,
    batch_seconds: HistogramVec,
    queue_messages: IntGaugeVec,
    queue_consumers: IntGaugeVec,
    retention_erasures: IntCounterVec,
    dead_letters_purged: IntCounterVec,
    dead_letter_oldest: IntGaugeVec,
    dead_letter_retention: IntGauge,
    consumers: IntGaugeVec,
    environment_failures: IntCounterVec,
    requeued: IntCounterVec,
    task_restarts: IntCounterVec,
    batch_panics: IntCounter,
}

/// The worker's supervised tasks (`intake_task_restarts_total{task}`).
pub mod task {
    pub const RETENTION: &str = "retention";
    pub const OUTBOX_SWEEPER: &str = "outbox_sweeper";

    /// A work queue's consumers.
    pub fn consumer(queue: common::amqp::WorkQueue) -> &'static str {
        match queue {
            common::amqp::WorkQueue::Lt => "consumer_lt",
            common::amqp::WorkQueue::Lina => "consumer_lina",
            common::amqp::WorkQueue::Email => "consumer_email",
        }
    }

    pub fn all() -> impl Iterator<Item = &'static str> {
        common::amqp::WorkQueue::ALL
            .into_iter()
            .map(consumer)
            .chain([RETENTION, OUTBOX_SWEEPER])
    }
}

impl WorkerStats {
    pub fn new() -> Result<WorkerStats, prometheus::Error> {
        let registry = common::metrics::registry();
        let stats = WorkerStats {
            events: register_int_counter_vec_with_registry!(
                Opts::new(
                    "intake_events_total",
                    "Events and jobs settled by the worker, by kind and outcome.",
                ),
                &["kind", "outcome"],
                registry
            )?,
            event_age: register_histogram_vec_with_registry!(
                HistogramOpts::new(
                    "intake_event_age_seconds",
                    "Time from the gateway's receipt to the event being applied.",
                )
                .buckets(common::metrics::latency_buckets()),
                &["kind"],
                registry
            )?,
            emails: register_int_counter_vec_with_registry!(
                Opts::new(
                    "intake_emails_total",
                    "Acknowledgement e-mails: sent, failed (refused for good), skipped (already sent or withdrawn).",
                ),
                &["outcome"],
                registry
            )?,
            erasures: register_int_counter_vec_with_registry!(
                Opts::new(
                    "intake_erasures_total",
                    "Erasures of a person's data, by source.",
                ),
                &["source"],
                registry
            )?,
            batches: register_int_counter_with_registry!(
                "intake_worker_batches_total",
                "Batches applied (one transaction each).",
                registry
            )?,
            batch_size: register_histogram_with_registry!(
                HistogramOpts::new("intake_worker_batch_size", "Deliveries per applied batch.")
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
                registry
            )?,
            batch_seconds: register_histogram_vec_with_registry!(
                HistogramOpts::new(
                    "intake_worker_batch_seconds",
                    "Time to process a batch, from applying (or sending) to its ack, by queue.",
                )
                .buckets(common::metrics::latency_buckets()),
                &["queue"],
                registry
            )?,
            queue_messages: register_int_gauge_vec_with_registry!(
                Opts::new(
                    "intake_queue_messages",
                    "Messages ready in each queue, read when scraped.",
                ),
                &["queue"],
                registry
            )?,
            queue_consumers: register_int_gauge_vec_with_registry!(
                Opts::new(
                    "intake_queue_consumers",
                    "Consumers on each queue, read when scraped.",
                ),
                &["queue"],
                registry
            )?,
            retention_erasures: register_int_counter_vec_with_registry!(
                Opts::new(
                    "intake_retention_erasures_total",
                    "People erased because INTAKE_RETENTION passed.",
                ),
                &["source"],
                registry
            )?,
            dead_letters_purged: register_int_counter_vec_with_registry!(
                Opts::new(
                    "intake_dead_letters_purged_total",
                    "Dead letters purged because INTAKE_DLQ_RETENTION passed.",
                ),
                &["queue"],
                registry
            )?,
            dead_letter_oldest: register_int_gauge_vec_with_registry!(
                Opts::new(
                    "intake_dead_letter_oldest_age_seconds",
                    "Age of the oldest message left in each parking queue (0: empty), at the last retention round.",
                ),
                &["queue"],
                registry
            )?,
            dead_letter_retention: register_int_gauge_with_registry!(
                "intake_dead_letter_retention_seconds",
                "INTAKE_DLQ_RETENTION: dead letters older than this are purged.",
                registry
            )?,
            consumers: register_int_gauge_vec_with_registry!(
                Opts::new(
                    "intake_worker_consumers",
                    "This worker's consumers by queue and state: consuming, held (a batch the environment refused is being tried again) or down (connecting or restarting).",
                ),
                &["queue", "state"],
                registry
            )?,
            environment_failures: register_int_counter_vec_with_registry!(
                Opts::new(
                    "intake_worker_environment_failures_total",
                    "Batch attempts refused by the environment (privileges, schema, read-only database, connections, locks); the batch is held and tried again, nothing is dead-lettered.",
                ),
                &["queue"],
                registry
            )?,
            requeued: register_int_counter_vec_with_registry!(
                Opts::new(
                    "intake_worker_requeued_total",
                    "Messages of batches held past INTAKE_HOLD_REQUEUE_AFTER, put back at the end of their queue.",
                ),
                &["queue"],
                registry
            )?,
            task_restarts: common::supervise::restart_counter(&registry, task::all())?,
            batch_panics: register_int_counter_with_registry!(
                "intake_worker_batch_panics_total",
                "Batches that panicked; each of their events climbed a delay tier.",
                registry
            )?,
            registry,
        };
        stats.initialise();
        Ok(stats)
    }

    /// Every known label set exists from the start, at 0: a rate or a
    /// ratio over a series that appears only on first use (the first
    /// retry, the first dead letter) is "No data" until then, not 0.
    fn initialise(&self) {
        for kind in SENDER_KINDS {
            for outcome in [
                outcome::APPLIED,
                outcome::ERASED,
                outcome::DUPLICATE,
                outcome::STALE,
                outcome::RETRIED,
                outcome::DEAD_LETTERED,
            ] {
                self.events.with_label_values(&[kind.as_str(), outcome]);
            }
        }
        for outcome in [outcome::SENT, outcome::RETRIED, outcome::DEAD_LETTERED] {
            self.events
                .with_label_values(&[EventKind::EmailAcknowledgement.as_str(), outcome]);
        }
        for outcome in email_outcome::ALL {
            self.emails.with_label_values(&[outcome]);
        }
        for source in common::Source::SENDERS.map(common::Source::as_str) {
            self.erasures.with_label_values(&[source]);
            self.retention_erasures.with_label_values(&[source]);
        }
        for queue in WorkQueue::ALL {
            for state in ConsumerState::ALL {
                self.consumers
                    .with_label_values(&[queue.as_str(), state.as_str()]);
            }
            self.environment_failures
                .with_label_values(&[queue.as_str()]);
            self.requeued.with_label_values(&[queue.as_str()]);
        }
    }

    pub fn consumer_entered(&self, queue: WorkQueue, state: ConsumerState) {
        self.consumers
            .with_label_values(&[queue.as_str(), state.as_str()])
            .inc();
    }

    pub fn consumer_left(&self, queue: WorkQueue, state: ConsumerState) {
        self.consumers
            .with_label_values(&[queue.as_str(), state.as_str()])
            .dec();
    }

    /// Consumers down or held, over every queue (`/readyz` wants none).
    pub fn consumers_not_consuming(&self) -> i64 {
        WorkQueue::ALL
            .iter()
            .flat_map(|queue| {
                [ConsumerState::Down, ConsumerState::Held].map(|state| {
                    self.consumers
                        .with_label_values(&[queue.as_str(), state.as_str()])
                        .get()
                })
            })
            .sum()
    }

    pub fn environment_failure(&self, queue: WorkQueue) {
        self.environment_failures
            .with_label_values(&[queue.as_str()])
            .inc();
    }

    pub fn environment_failures(&self) -> u64 {
        WorkQueue::ALL
            .iter()
            .map(|queue| {
                self.environment_failures
                    .with_label_values(&[queue.as_str()])
                    .get()
            })
            .sum()
    }

    pub fn batch_requeued(&self, queue: WorkQueue, messages: usize) {
        self.requeued
            .with_label_values(&[queue.as_str()])
            .inc_by(messages as u64);
    }

    pub fn requeued(&self) -> u64 {
        WorkQueue::ALL
            .iter()
            .map(|queue| self.requeued.with_label_values(&[queue.as_str()]).get())
            .sum()
    }

    pub fn task_restarted(&self, task: &str) {
        self.task_restarts.with_label_values(&[task]).inc();
    }

    pub fn task_restarts(&self) -> u64 {
        task::all()
            .map(|name| self.task_restarts.with_label_values(&[name]).get())
            .sum()
    }

    pub fn batch_panicked(&self) {
        self.batch_panics.inc();
    }

    pub fn event(&self, kind: Option<EventKind>, outcome: &str) {
        let kind = kind.map_or("unknown", EventKind::as_str);
        self.events.with_label_values(&[kind, outcome]).inc();
    }

    pub fn event_age(&self, kind: EventKind, seconds: f64) {
        self.event_age
            .with_label_values(&[kind.as_str()])
            .observe(seconds.max(0.0));
    }

    /// `outcome`: `sent`, `failed` or `skipped`.
    pub fn email(&self, outcome: &str) {
        self.emails.with_label_values(&[outcome]).inc();
    }

    pub fn erasure(&self, source: &str) {
        self.erasures.with_label_values(&[source]).inc();
    }

    pub fn retention_erasure(&self, source: &str) {
        self.retention_erasures.with_label_values(&[source]).inc();
    }

    /// The dead-letter series of this worker's parking queues, from the
    /// start: the retention it applies, and 0 purged and 0 s oldest until
    /// the first round says otherwise.
    pub fn initialise_parking(&self, queues: &[String], retention: std::time::Duration) {
        self.dead_letter_retention
            .set(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
        for queue in queues {
            self.dead_letters_purged.with_label_values(&[queue]);
            self.dead_letter_oldest.with_label_values(&[queue]);
        }
    }

    pub fn dead_letters_purged(
        &self,
        queue: &str,
        purged: usize,
        oldest_kept: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        self.dead_letters_purged
            .with_label_values(&[queue])
            .inc_by(purged as u64);
        let age = oldest_kept.map_or(0, |parked_at| {
            (chrono::Utc::now() - parked_at).num_seconds().max(0)
        });
        self.dead_letter_oldest.with_label_values(&[queue]).set(age);
    }

    /// Dead letters purged by retention, over every queue.
    pub fn dead_letters_purged_total(&self) -> u64 {
        self.dead_letters_purged
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|metric| metric.get_counter().get_value() as u64)
            .sum()
    }

    pub fn retention_erasures(&self) -> u64 {
        ["lt", "lina"]
            .iter()
            .map(|source| self.retention_erasures.with_label_values(&[source]).get())
            .sum()
    }

    pub fn batch(&self, size: usize) {
        self.batches.inc();
        self.batch_size.observe(size as f64);
    }

    /// A batch of `queue` processed, settled and acked in `took`.
    pub fn batch_took(&self, queue: &str, took: std::time::Duration) {
        self.batch_seconds
            .with_label_values(&[queue])
            .observe(took.as_secs_f64());
    }

    /// The metrics as text, with every queue's depth and consumers read now.
    pub async fn render(&self, connection: Option<&Connection>, topology: &Topology) -> String {
        if let Some(connection) = connection {
            self.read_queues(connection, topology).await;
        }
        common::metrics::encode(&self.registry)
    }

    async fn read_queues(&self, connection: &Connection, topology: &Topology) {
        let Ok(channel) = connection.create_channel().await else {
            return;
        };
        for queue in topology.queue_names() {
            match common::amqp::queue_depth(&channel, &queue).await {
                Ok(depth) => {
                    self.queue_messages
                        .with_label_values(&[&queue])
                        .set(i64::from(depth.messages));
                    self.queue_consumers
                        .with_label_values(&[&queue])
                        .set(i64::from(depth.consumers));
                }
                // A failed passive declare closes the channel: stop here.
                Err(_) => break,
            }
        }
        let _ = channel.close(200, "metrics read".into()).await;
    }

    fn count(&self, kinds: &[EventKind], outcomes: &[&str]) -> u64 {
        let mut total = 0;
        for kind in kinds {
            for outcome in outcomes {
                total += self
                    .events
                    .with_label_values(&[kind.as_str(), outcome])
                    .get();
            }
        }
        total
    }

    /// Senders' events applied (erasures included).
    pub fn events_applied(&self) -> u64 {
        self.count(&SENDER_KINDS, &[outcome::APPLIED, outcome::ERASED])
    }

    pub fn events_duplicate(&self) -> u64 {
        self.count(&SENDER_KINDS, &[outcome::DUPLICATE])
    }

    pub fn events_stale(&self) -> u64 {
        self.count(&SENDER_KINDS, &[outcome::STALE])
    }

    /// Every retried message, e-mail jobs included.
    pub fn events_retried(&self) -> u64 {
        self.count(&EventKind::ALL, &[outcome::RETRIED])
    }

    /// Every dead-lettered message, e-mail jobs included.
    pub fn events_dead_lettered(&self) -> u64 {
        self.count(&EventKind::ALL, &[outcome::DEAD_LETTERED])
    }

    pub fn erasures(&self) -> u64 {
        ["lt", "lina"]
            .iter()
            .map(|source| self.erasures.with_label_values(&[source]).get())
            .sum()
    }

    pub fn emails_sent(&self) -> u64 {
        self.emails.with_label_values(&[email_outcome::SENT]).get()
    }

    pub fn emails_failed(&self) -> u64 {
        self.emails
            .with_label_values(&[email_outcome::FAILED])
            .get()
    }

    pub fn emails_skipped(&self) -> u64 {
        self.emails
            .with_label_values(&[email_outcome::SKIPPED])
            .get()
    }

    pub fn batches(&self) -> u64 {
        self.batches.get()
    }
}
