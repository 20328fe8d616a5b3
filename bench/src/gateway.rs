//! The gateway alone (no worker) under wrk, two ways in one run: the bench's
//! script (100 requests, 90 LT profiles and 10 LINA consents, one Lua call
//! per request) and wrk as one runs it by hand (one static LT body), beside
//! ceiling (a), with the CPU per request of every process. The two must
//! agree within noise for the bench to be trusted about the product.

use std::time::Duration;

use crate::cpu::CpuPerEvent;
use crate::system::System;
use crate::wrk::{self, WrkResult};

#[derive(clap::Args)]
pub struct GatewayArgs {
    /// How long each load runs
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// HTTP connections of the load
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
}

pub async fn run(args: &GatewayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        wrk::available(),
        "wrk is not installed (scripts/bench installs it)"
    );
    eprintln!(
        "ceiling (a): confirmed publishes, {} in flight",
        args.connections
    );
    let ceiling = crate::ceilings::publish_ceiling(args.duration, args.connections).await?;
    let mut rows = Vec::new();
    // Each load on a gateway and queues of its own: a backlog of a quarter
    // million messages left by the one before makes every publish dearer.
    // Plain wrk first and last, so a drift of the machine shows.
    let loads = [
        ("plain wrk: one static LT body", false),
        ("bench's script: 90 LT + 10 LINA bodies", true),
        ("plain wrk again", false),
    ];
    for (what, mix) in loads {
        eprintln!("gateway: {what}");
        let system = System::start(0).await?;
        let (url, connections, duration) = (&system.gateway_url, args.connections, args.duration);
        let (result, cpu) = if mix {
            with_cpu(&system, wrk::run_for(url, connections, duration)).await?
        } else {
            with_cpu(&system, wrk::run_static_lt(url, connections, duration)).await?
        };
        system.stop().await;
        rows.push((what, result, cpu));
    }
    println!(
        "| load, {} connections, {:.0} s each | result | ratio | CPU per request |",
        args.connections,
        args.duration.as_secs_f64()
    );
    println!("|---|---|---|---|");
    println!("| (a) confirmed 2 KiB publishes | {ceiling:.0}/s | | |");
    for (what, result, cpu) in &rows {
        println!("{}", row(what, result, cpu, ceiling));
    }
    Ok(())
}

/// `load` against `system`'s gateway, and what each process spent per request on it.
pub async fn with_cpu(
    system: &System,
    load: impl std::future::Future<Output = anyhow::Result<WrkResult>>,
) -> anyhow::Result<(WrkResult, CpuPerEvent)> {
    let before = system.processes().sample();
    let result = load.await?;
    let cpu = before.per_event(&system.processes().sample(), result.requests as usize);
    Ok((result, cpu))
}

fn row(what: &str, result: &WrkResult, cpu: &CpuPerEvent, ceiling: f64) -> String {
    format!(
        "| {what} | {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, {} errors | {:.2} × (a) | {} |",
        result.rate(),
        result.p50_ms,
        result.p99_ms,
        result.errors,
        result.rate() / ceiling,
        cpu.cells()
    )
}
