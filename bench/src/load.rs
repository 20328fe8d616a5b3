//! An HTTP load driver: `connections` keep-alive connections, each sending
//! requests one after another for a fixed time, every latency recorded.

use std::time::{Duration, Instant};

use crate::payload;
use crate::system::{LINA_SECRET, LT_TOKEN};

pub struct LoadResult {
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    /// Latencies in microseconds, sorted.
    pub latencies: Vec<u64>,
}

impl LoadResult {
    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * percentile).round() as usize;
        self.latencies[index] as f64 / 1000.0
    }
}

/// One request of the mix: nine LT profiles (about 2 KiB) to one LINA consent.
fn request(client: &reqwest::Client, base: &str, n: u64) -> reqwest::RequestBuilder {
    if n % 10 == 9 {
        client
            .post(format!("{base}/webhooks/lina/{LINA_SECRET}"))
            .header("Content-Type", "application/json")
            .body(payload::lina_consent(n))
    } else {
        client
            .post(format!("{base}/webhooks/lt"))
            .header("Authorization", format!("Bearer {LT_TOKEN}"))
            .header("Content-Type", "application/json")
            .body(payload::lt_profile(n))
    }
}

pub async fn run_for(base: &str, connections: usize, duration: Duration) -> LoadResult {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            let mut n = connection as u64 * 1_000_000;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match request(&client, &base, n).send().await {
                    Ok(response) if response.status() == 200 => {}
                    _ => errors += 1,
                }
                latencies.push(sent.elapsed().as_micros() as u64);
                n += 1;
            }
            (latencies, errors)
        }));
    }
    let mut result = LoadResult {
        requests: 0,
        errors: 0,
        seconds: 0.0,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (latencies, errors) = task.await.unwrap_or_default();
        result.errors += errors;
        result.latencies.extend(latencies);
    }
    result.seconds = started.elapsed().as_secs_f64();
    result.requests = result.latencies.len();
    result.latencies.sort_unstable();
    result
}

impl From<LoadResult> for crate::wrk::WrkResult {
    fn from(result: LoadResult) -> Self {
        crate::wrk::WrkResult {
            requests: result.requests as u64,
            errors: result.errors as u64,
            seconds: result.seconds,
            p50_ms: result.percentile_ms(0.50),
            p99_ms: result.percentile_ms(0.99),
            max_ms: result.percentile_ms(1.0),
        }
    }
}
