//! Prometheus metrics: one registry per process (never the global one, so
//! tests can run several processes' worth in one), every name prefixed
//! `intake_`, labels bounded (kinds, outcomes, status codes, queue names),
//! never personal data or raw error text.

use prometheus::{Encoder, Registry, TextEncoder};

/// A registry with the process's own metrics (RSS, CPU, open fds) already in it.
pub fn registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let collector = prometheus::process_collector::ProcessCollector::for_self();
        // Registering a fresh collector in a fresh registry cannot clash.
        let _ = registry.register(Box::new(collector));
    }
    registry
}

/// The registry in Prometheus's text format.
pub fn encode(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(error) = encoder.encode(&registry.gather(), &mut buffer) {
        tracing::warn!(message = "Could not encode the metrics.", %error);
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// Buckets for latencies from a millisecond to a minute.
pub fn latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ]
}
