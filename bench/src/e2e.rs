//! End to end: `events` mixed events (LT new, updated, revoked; LINA
//! consent, withdrawal) posted by `concurrency` connections to the real
//! gateway, timed from the first request to the last event settled by the
//! worker; receipt-to-applied latency from the worker's own histogram.

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::cpu::CpuPerEvent;
use crate::payload;
use crate::system::{LINA_SECRET, LT_TOKEN, System};

pub struct E2eResult {
    pub events: usize,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: usize,
    pub gateway_rss_mib: f64,
    pub worker_rss_mib: f64,
    /// CPU per event of each process, by phase: end to end, or the posting
    /// (no worker yet) and the drain.
    pub cpu: Vec<(&'static str, CpuPerEvent)>,
}

/// The body and endpoint of event `n` of the mix.
fn event(n: u64) -> (bool, String) {
    match n % 10 {
        0..=5 => (false, payload::lt_profile(n)),
        6 => (false, payload::lt_profile_with_status(n - 6, "updated")),
        7 => (false, payload::lt_revocation(n - 7)),
        8 => (true, payload::lina_consent(n)),
        _ => (true, payload::lina_withdrawal(n - 1)),
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct E2eArgs {
    /// Events in the end-to-end run
    #[arg(long, default_value_t = 50_000)]
    pub events: usize,
    /// HTTP connections posting at once
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Worker processes
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Post at this many events per second instead of as fast as possible
    #[arg(long)]
    pub rate: Option<f64>,
    /// Post every event first, then start the workers and time how fast they
    /// drain the queues: the workers' throughput without the HTTP load on
    /// the same cores
    #[arg(long)]
    pub drain: bool,
}

pub async fn run(args: &E2eArgs) -> anyhow::Result<E2eResult> {
    let mut system = System::start(if args.drain { 0 } else { args.workers }).await?;
    let db = intake_tests::database::connect(&system.db_url).await;
    let store: uuid::Uuid = payload::STORE.parse()?;
    db.execute(
        "INSERT INTO lina_webhook (uuid, label) VALUES ($1, 'bench')",
        &[&store],
    )
    .await?;
    let client = reqwest::Client::new();
    let before = system.processes().sample();
    let mut started = Instant::now();
    let schedule = |n: u64| {
        args.rate.map(|rate| {
            tokio::time::Instant::from_std(started) + Duration::from_secs_f64(n as f64 / rate)
        })
    };
    let errors = futures::stream::iter(0..args.events as u64)
        .map(|n| {
            let (lina, body) = event(n);
            let request = if lina {
                client.post(format!(
                    "{}/webhooks/lina/{LINA_SECRET}",
                    system.gateway_url
                ))
            } else {
                client
                    .post(format!("{}/webhooks/lt", system.gateway_url))
                    .header("Authorization", format!("Bearer {LT_TOKEN}"))
            };
            let at = schedule(n);
            async move {
                if let Some(at) = at {
                    tokio::time::sleep_until(at).await;
                }
                let sent = request
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await;
                usize::from(!matches!(sent, Ok(response) if response.status() == 200))
            }
        })
        .buffer_unordered(args.concurrency)
        .fold(0, |total, error| async move { total + error })
        .await;
    let events = args.events;
    let posted = system.processes().sample();
    if args.drain {
        started = Instant::now();
        system.add_workers(args.workers).await?;
    }
    let metrics = loop {
        let text = workers_metrics(&client, &system).await?;
        if settled(&text) >= (events - errors) as f64 {
            break text;
        }
        if started.elapsed() > Duration::from_secs(900) {
            anyhow::bail!(
                "only {} of {events} events settled in 15 minutes",
                settled(&text)
            );
        }
        // Each look costs the worker a scrape (and the broker a queue
        // declare per queue) and this process a parse: every 20 ms that was
        // a tenth of the worker's CPU per event in a drain.
        tokio::time::sleep(SETTLED_POLL).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let done = system.processes().sample();
    let accepted = events - errors;
    let cpu = if args.drain {
        vec![
            ("posting, no worker", before.per_event(&posted, accepted)),
            ("drain", posted.per_event(&done, accepted)),
        ]
    } else {
        vec![("end to end", before.per_event(&done, accepted))]
    };
    let batches = sample(&metrics, "intake_worker_batch_size_count");
    let batched = sample(&metrics, "intake_worker_batch_size_sum");
    eprintln!(
        "worker batches: {batches:.0}, {:.1} deliveries each on average; LT batches applied to acked p50 {:.1} ms, p99 {:.1} ms",
        if batches > 0.0 {
            batched / batches
        } else {
            0.0
        },
        quantile(&metrics, LT_BATCH_SECONDS, 0.50) * 1000.0,
        quantile(&metrics, LT_BATCH_SECONDS, 0.99) * 1000.0,
    );
    let result = E2eResult {
        events,
        seconds,
        p50_ms: quantile(&metrics, EVENT_AGE, 0.50) * 1000.0,
        p99_ms: quantile(&metrics, EVENT_AGE, 0.99) * 1000.0,
        errors,
        gateway_rss_mib: System::peak_rss_mib(&system.gateway),
        worker_rss_mib: system
            .workers
            .iter()
            .map(System::peak_rss_mib)
            .fold(0.0, f64::max),
        cpu,
    };
    system.stop().await;
    Ok(result)
}

/// How often the run looks whether every event has settled: the end time's
/// resolution, a few per cent of a drain of 10 s.
const SETTLED_POLL: Duration = Duration::from_millis(200);

/// Every worker's metrics, one after the other (the samples add up).
async fn workers_metrics(client: &reqwest::Client, system: &System) -> anyhow::Result<String> {
    let mut text = String::new();
    for ops in &system.worker_ops {
        text += &client
            .get(format!("{ops}/metrics"))
            .send()
            .await?
            .text()
            .await?;
    }
    Ok(text)
}

/// Senders' events the workers settled (applied, erased, duplicate or stale).
fn settled(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("intake_events_total{") && !line.contains("email."))
        .filter(|line| {
            ["applied", "erased", "duplicate", "stale"]
                .iter()
                .any(|o| line.contains(&format!("outcome=\"{o}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A quantile of `intake_event_age_seconds` over every kind, interpolated
/// within its bucket as Prometheus's `histogram_quantile` does.
/// The worker histograms the bench reads (bucket lines start with these).
const EVENT_AGE: &str = "intake_event_age_seconds_bucket{";
const LT_BATCH_SECONDS: &str = "intake_worker_batch_seconds_bucket{queue=\"lt\"";

fn quantile(metrics: &str, series: &str, q: f64) -> f64 {
    let mut buckets: std::collections::BTreeMap<u64, (f64, f64)> = Default::default();
    for line in metrics.lines().filter(|line| line.starts_with(series)) {
        let Some(le) = line
            .split("le=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0);
        let entry = buckets.entry(bound.to_bits()).or_insert((bound, 0.0));
        entry.1 += count;
    }
    let mut sorted: Vec<(f64, f64)> = buckets.into_values().collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = sorted.last().map_or(0.0, |(_, count)| *count);
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for (bound, count) in sorted {
        if count >= rank {
            if bound.is_infinite() {
                return previous.0;
            }
            let within = if count > previous.1 {
                (rank - previous.1) / (count - previous.1)
            } else {
                0.0
            };
            return previous.0 + (bound - previous.0) * within;
        }
        previous = (bound, count);
    }
    0.0
}

/// One unlabelled sample's value, summed over the workers (0 when absent).
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .filter_map(|value| value.trim().parse::<f64>().ok())
        .sum()
}
