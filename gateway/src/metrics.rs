//! The gateway's metrics, served on its ops listener at `/metrics`.

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    register_histogram_vec_with_registry, register_histogram_with_registry,
    register_int_counter_vec_with_registry, register_int_counter_with_registry,
    register_int_gauge_with_registry,
};

use crate::routes::{LINA_ROUTE, LT_ROUTE};
use crate::spool::Spool;

pub struct GatewayMetrics {
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    confirm: Histogram,
    publish_failures: IntCounterVec,
    stored: IntCounterVec,
    spool_refused: IntCounter,
    spool_write_failures: IntCounter,
    spool_damaged: IntCounter,
    spool_bytes: IntGauge,
    spool_events: IntGauge,
    broker_up: IntGauge,
    task_restarts: IntCounterVec,
    connections_closed: IntCounterVec,
}

impl GatewayMetrics {
    pub fn new() -> Result<GatewayMetrics, prometheus::Error> {
        let registry = common::metrics::registry();
        let latency = common::metrics::latency_buckets();
        let metrics = GatewayMetrics {
            requests: register_int_counter_vec_with_registry!(
                Opts::new(
                    "intake_http_requests_total",
                    "Webhook requests by sender and answer.",
                ),
                &["source", "status"],
                registry
            )?,
            duration: register_histogram_vec_with_registry!(
                HistogramOpts::new(
                    "intake_http_request_duration_seconds",
                    "Time to answer a webhook request.",
                )
                .buckets(latency.clone()),
                &["source"],
                registry
            )?,
            confirm: register_histogram_with_registry!(
                HistogramOpts::new(
                    "intake_publish_confirm_seconds",
                    "Time for the broker to confirm a publish.",
                )
                .buckets(latency),
                registry
            )?,
            publish_failures: register_int_counter_vec_with_registry!(
                Opts::new(
                    "intake_publish_failures_total",
                    "Publishes the broker did not confirm, by reason.",
                ),
                &["reason"],
                registry
            )?,
            stored: register_int_counter_vec_with_registry!(
                Opts::new(
                    "intake_gateway_events_total",
                    "Events kept by the gateway: published, spooled, or quarantined (LINA calls that failed validation).",
                ),
                &["kind", "stored"],
                registry
            )?,
            spool_refused: register_int_counter_with_registry!(
                "intake_spool_refused_total",
                "LINA calls refused because the spool was full (lost: LINA never resends).",
                registry
            )?,
            spool_write_failures: register_int_counter_with_registry!(
                "intake_spool_write_failures_total",
                "LINA calls refused because writing the spool failed (a full disk): answered 503, not kept.",
                registry
            )?,
            spool_damaged: register_int_counter_with_registry!(
                "intake_spool_damaged_segments_total",
                "Spool segments set aside because a record in them could not be read.",
                registry
            )?,
            spool_bytes: register_int_gauge_with_registry!(
                "intake_spool_bytes",
                "Bytes waiting in the LINA spool.",
                registry
            )?,
            spool_events: register_int_gauge_with_registry!(
                "intake_spool_events",
                "Events waiting in the LINA spool.",
                registry
            )?,
            broker_up: register_int_gauge_with_registry!(
                "intake_broker_up",
                "1 while the gateway's broker connection is up.",
                registry
            )?,
            task_restarts: common::supervise::restart_counter(
                &registry,
                [crate::startup::SPOOL_DRAINER],
            )?,
            connections_closed: register_int_counter_vec_with_registry!(
                Opts::new(
                    "intake_http_connections_closed_total",
                    "Connections the gateway closed itself, by reason (idle: no next request within keep-alive plus the head timeout after a response).",
                ),
                &["reason"],
                registry
            )?,
            registry,
        };
        metrics.initialise();
        metrics
            .registry
            .register(Box::new(common::telemetry::HTTP_REFUSALS.clone()))?;
        Ok(metrics)
    }

    /// Every known label set exists from the start, at 0, so the 5xx ratio
    /// and the failure rates read 0 (not "No data") before the first one.
    fn initialise(&self) {
        self.connections_closed.with_label_values(&["idle"]);
        for source in common::Source::SENDERS.map(common::Source::as_str) {
            for status in [
                "200", "400", "401", "403", "408", "413", "415", "417", "503",
            ] {
                self.requests.with_label_values(&[source, status]);
            }
        }
        for reason in common::amqp::PublishError::CODES {
            self.publish_failures.with_label_values(&[reason]);
        }
        for kind in common::envelope::EventKind::ALL {
            if kind.work_queue() == common::amqp::WorkQueue::Email {
                continue;
            }
            for stored in ["published", "spooled", "quarantined"] {
                self.stored.with_label_values(&[kind.as_str(), stored]);
            }
        }
    }

    pub fn connection_closed(&self, reason: &str) {
        self.connections_closed.with_label_values(&[reason]).inc();
    }

    pub fn task_restarted(&self, task: &str) {
        self.task_restarts.with_label_values(&[task]).inc();
    }

    pub fn request(&self, source: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[source, &status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[source])
            .observe(elapsed.as_secs_f64());
    }

    pub fn confirmed(&self, elapsed: Duration) {
        self.confirm.observe(elapsed.as_secs_f64());
    }

    pub fn publish_failed(&self, reason: &str) {
        self.publish_failures.with_label_values(&[reason]).inc();
    }

    /// `stored`: `published`, `spooled` or `quarantined`.
    pub fn stored(&self, kind: &str, stored: &str) {
        self.stored.with_label_values(&[kind, stored]).inc();
    }

    /// The metrics as text, with the gauges read now.
    pub fn render(&self, spool: Option<&Spool>, broker_up: bool) -> String {
        self.broker_up.set(i64::from(broker_up));
        if let Some(spool) = spool {
            let depth = spool.depth();
            self.spool_bytes
                .set(i64::try_from(depth.bytes).unwrap_or(i64::MAX));
            self.spool_events
                .set(i64::try_from(depth.events).unwrap_or(i64::MAX));
            for (counter, total) in [
                (&self.spool_refused, spool.refused()),
                (&self.spool_write_failures, spool.write_failures()),
                (&self.spool_damaged, spool.damaged()),
            ] {
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        }
        common::metrics::encode(&self.registry)
    }
}

/// The sender a request path belongs to (a bounded label; LINA's secret never appears).
/// The sender label of a request, from the route it matched.
pub fn source_of(pattern: Option<&str>) -> &'static str {
    match pattern {
        Some(LT_ROUTE) => "lt",
        Some(LINA_ROUTE) => "lina",
        _ => "other",
    }
}
