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
        // Registering a fresh collector in a fresh registry cannot clash.
        let _ = registry.register(Box::new(process::ProcessMetrics::for_self()));
    }
    registry
}

/// The prometheus crate's process collector, but for CPU time: it counts
/// whole seconds only (`(utime + stime) / ticks` in integers), so a quiet
/// process that used 0.4 s reads 0 and a CPU panel stays flat. Here
/// `process_cpu_seconds_total` is counted to the clock tick (10 ms).
#[cfg(target_os = "linux")]
mod process {
    use prometheus::core::{Collector, Desc};
    use prometheus::process_collector::ProcessCollector;
    use prometheus::proto::MetricFamily;
    use prometheus::{Counter, Opts};

    const CPU: &str = "process_cpu_seconds_total";

    pub struct ProcessMetrics {
        others: ProcessCollector,
        cpu: Counter,
        descs: Vec<Desc>,
    }

    impl ProcessMetrics {
        pub fn for_self() -> ProcessMetrics {
            let others = ProcessCollector::for_self();
            let cpu = Counter::with_opts(Opts::new(
                CPU,
                "Total user and system CPU time spent in seconds.",
            ))
            .expect("a valid metric");
            let mut descs: Vec<Desc> = others
                .desc()
                .into_iter()
                .filter(|desc| desc.fq_name != CPU)
                .cloned()
                .collect();
            descs.extend(cpu.desc().into_iter().cloned());
            ProcessMetrics { others, cpu, descs }
        }

        pub(super) fn cpu_seconds_now() -> Option<f64> {
            let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
            Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
        }
    }

    impl Collector for ProcessMetrics {
        fn desc(&self) -> Vec<&Desc> {
            self.descs.iter().collect()
        }

        fn collect(&self) -> Vec<MetricFamily> {
            let mut families: Vec<MetricFamily> = self
                .others
                .collect()
                .into_iter()
                .filter(|family| family.name() != CPU)
                .collect();
            if let Some(total) = Self::cpu_seconds_now() {
                // Collections may overlap: the counter only moves forward.
                let past = self.cpu.get();
                if total > past {
                    self.cpu.inc_by(total - past);
                }
            }
            families.extend(self.cpu.collect());
            families
        }
    }
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

/// Buckets for latencies from a millisecond to a minute. Between 50 and
/// 250 ms they are closer together: that is where a busy system's tail
/// lies, and `histogram_quantile` interpolates within a bucket as if it
/// were filled evenly. With one bucket from 100 to 250 ms, the benchmark's
/// p99 at half rate read 233-248 ms in every run; with these, 149-353 ms,
/// most runs below 200 ms (BENCHMARKS.md).
pub fn latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0, 60.0,
    ]
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn exported_cpu_seconds(registry: &Registry) -> f64 {
        let text = encode(registry);
        text.lines()
            .find_map(|line| line.strip_prefix("process_cpu_seconds_total "))
            .and_then(|value| value.trim().parse().ok())
            .expect("process_cpu_seconds_total is exported")
    }

    #[test]
    fn cpu_time_is_exported_to_the_tick_not_in_whole_seconds() {
        let registry = registry();
        // Burn CPU until this process has used half a second in all.
        let mut spin = 0u64;
        while process::ProcessMetrics::cpu_seconds_now().unwrap_or(1.0) < 0.5 {
            spin = spin.wrapping_add(std::hint::black_box(1));
        }
        let exported = exported_cpu_seconds(&registry);
        // Whole seconds (the prometheus crate's collector) would read 0 here.
        assert!(exported >= 0.5, "exported {exported} s, spun {spin}");
        assert!(
            encode(&registry).contains("process_resident_memory_bytes"),
            "the other process metrics are still there"
        );
    }
}
