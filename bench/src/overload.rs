//! Overload: twice as many connections as the gateway's in-flight bound
//! keep posting for a minute while one worker drains. LT is to get 503 with
//! Retry-After beyond the bound, LINA is to go to the spool, and the
//! gateway's memory is to stay flat: its resident memory is sampled every
//! half second.

use std::time::Duration;

use crate::system::System;
use crate::wrk;

#[derive(clap::Args, Clone, Debug)]
pub struct OverloadArgs {
    /// How long the overload lasts
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// The gateway's in-flight bound (INTAKE_MAX_IN_FLIGHT) for the run;
    /// twice as many connections post
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
}

pub async fn run(args: &OverloadArgs) -> anyhow::Result<()> {
    let system =
        System::start_with(1, &[("INTAKE_MAX_IN_FLIGHT", args.in_flight.to_string())]).await?;
    let db = intake_tests::database::connect(&system.db_url).await;
    let store: uuid::Uuid = crate::payload::STORE.parse()?;
    db.execute(
        "INSERT INTO lina_webhook (uuid, label) VALUES ($1, 'bench')",
        &[&store],
    )
    .await?;
    let gateway_pid = system.gateway.id();
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn(sample_rss(gateway_pid, sampling.clone()));
    let connections = 2 * args.in_flight;
    eprintln!(
        "overload: {connections} connections against an in-flight bound of {} for {:?}",
        args.in_flight, args.duration
    );
    let load = wrk::run_for(&system.gateway_url, connections, args.duration).await?;
    sampling.cancel();
    let samples = sampler.await?;
    let metrics = reqwest::get(format!("{}/metrics", system.gateway_ops))
        .await?
        .text()
        .await?;
    let answers: Vec<String> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("intake_http_requests_total"))
        .map(|line| line.replace(['{', '}', '"'], ""))
        .collect();
    let spooled = metrics
        .lines()
        .filter(|line| {
            line.starts_with("intake_gateway_events_total{") && line.contains("stored=\"spooled\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    let first = samples.first().copied().unwrap_or_default();
    let peak = samples.iter().copied().fold(0.0, f64::max);
    let last = samples.last().copied().unwrap_or_default();
    println!(
        "| overload: {connections} connections, in-flight bound {}, {:.0} s | {:.0} req/s, p99 {:.1} ms, answers: {}; LINA calls spooled: {spooled:.0} | gateway RSS {first:.1} MiB after 0.5 s, peak {peak:.1} MiB, {last:.1} MiB at the end (VmHWM {:.1} MiB) |",
        args.in_flight,
        load.seconds,
        load.rate(),
        load.p99_ms,
        answers.join(", "),
        System::peak_rss_mib(&system.gateway),
    );
    system.stop().await;
    Ok(())
}

/// The gateway's resident memory every half second until `done`.
async fn sample_rss(pid: Option<u32>, done: tokio_util::sync::CancellationToken) -> Vec<f64> {
    let mut samples = Vec::new();
    let Some(pid) = pid else { return samples };
    loop {
        tokio::select! {
            _ = done.cancelled() => return samples,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        samples.push(System::rss_mib(pid));
    }
}
