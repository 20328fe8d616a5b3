//! `bench`: measurements of the intake on this machine, with its real
//! RabbitMQ, PostgreSQL and a loopback SMTP server; each run uses its own
//! database and queue prefix and removes them afterwards. Results and the
//! commands that produced them are in BENCHMARKS.md (`scripts/bench` builds
//! everything in release mode and runs `bench all`).
#![forbid(unsafe_code)]
// A measuring tool: a setup that fails should stop it loudly, as in the tests.
#![allow(clippy::unwrap_used)]

mod ceilings;
mod cluster;
mod cpu;
mod e2e;
mod email;
mod gateway;
mod load;
mod overload;
mod payload;
mod system;
mod wrk;

use clap::Parser;

#[derive(clap::Parser)]
#[command(
    name = "bench",
    about = "Measure the intake on this machine (run in release mode)."
)]
enum Bench {
    /// Acknowledgement e-mails per second through one worker to a loopback SMTP server
    Email(email::EmailArgs),
    /// Everything: ceilings, the gateway under HTTP load, end to end, memory; a Markdown table
    All(AllArgs),
    /// The two ceilings alone: (a) confirmed publishes, (b) single-row upserts
    Ceilings(ceilings::CeilingArgs),
    /// End to end only: events through the gateway and the workers
    E2e(e2e::E2eArgs),
    /// The gateway under twice its in-flight bound for a minute: answers and memory
    Overload(overload::OverloadArgs),
    /// The gateway against a three-node RabbitMQ cluster of our own versus one node
    Cluster(cluster::ClusterArgs),
    /// The gateway alone under the bench's wrk script and under plain wrk, beside ceiling (a)
    Gateway(gateway::GatewayArgs),
}

#[derive(clap::Args)]
struct AllArgs {
    #[command(flatten)]
    ceilings: ceilings::CeilingArgs,
    /// Events in each full-speed end-to-end run
    #[arg(long, default_value_t = 50_000)]
    events: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Bench::parse() {
        Bench::Email(args) => email::run(args).await,
        Bench::All(args) => all(args).await,
        Bench::Ceilings(args) => {
            let (publishes, upserts) = measure_ceilings(&args).await?;
            println!("(a) {publishes:.0} confirmed publishes/s, (b) {upserts:.0} upserts/s");
            Ok(())
        }
        Bench::Overload(args) => overload::run(&args).await,
        Bench::Cluster(args) => cluster::run(&args).await,
        Bench::Gateway(args) => gateway::run(&args).await,
        Bench::E2e(args) => {
            let result = e2e::run(&args).await?;
            println!("{}", e2e_line(&args, &result, None));
            for line in cpu_lines(&args, &result) {
                println!("{line}");
            }
            Ok(())
        }
    }
}

/// Ceiling (a) then ceiling (b), in a scratch database of their own.
async fn measure_ceilings(args: &ceilings::CeilingArgs) -> anyhow::Result<(f64, f64)> {
    let (duration, in_flight) = (args.duration, args.in_flight);
    eprintln!("ceiling (a): confirmed publishes, {in_flight} in flight, {duration:?}");
    let publishes = ceilings::publish_ceiling(duration, in_flight).await?;
    eprintln!(
        "ceiling (b): single-row upserts, {} connections",
        args.connections
    );
    let scratch = format!(
        "intake_t_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let scratch_url = intake_tests::database::create(&scratch).await;
    let upserts = ceilings::upsert_ceiling(&scratch_url, duration, args.connections).await?;
    intake_tests::database::drop(&scratch).await;
    Ok((publishes, upserts))
}

/// The gateway of `system` under HTTP load: wrk where installed, else the
/// Rust load driver.
async fn gateway_load(
    system: &system::System,
    connections: usize,
    duration: std::time::Duration,
) -> anyhow::Result<wrk::WrkResult> {
    if wrk::available() {
        return wrk::run_for(&system.gateway_url, connections, duration).await;
    }
    eprintln!("wrk is not installed: the Rust load driver takes its place (slower)");
    Ok(load::run_for(&system.gateway_url, connections, duration)
        .await
        .into())
}

async fn all(args: AllArgs) -> anyhow::Result<()> {
    let duration = args.ceilings.duration;
    let in_flight = args.ceilings.in_flight;
    let (publishes, upserts) = measure_ceilings(&args.ceilings).await?;

    eprintln!("gateway: HTTP load, {in_flight} connections, {duration:?}");
    let system = system::System::start(0).await?;
    let (gateway, gateway_cpu) =
        gateway::with_cpu(&system, gateway_load(&system, in_flight, duration)).await?;
    let gateway_rss = system::System::peak_rss_mib(&system.gateway);
    system.stop().await;

    let one = e2e::E2eArgs {
        events: args.events,
        concurrency: in_flight,
        workers: 1,
        rate: None,
        drain: false,
    };
    eprintln!("end to end: {} events, one worker", one.events);
    let e2e = e2e::run(&one).await?;
    let e2e_rate = e2e.events as f64 / e2e.seconds;
    let drain_one = e2e::E2eArgs {
        drain: true,
        ..one.clone()
    };
    eprintln!("drain: {} events, one worker", drain_one.events);
    let drained_one = e2e::run(&drain_one).await?;
    let drain_two = e2e::E2eArgs {
        workers: 2,
        ..drain_one.clone()
    };
    eprintln!("drain: {} events, two workers", drain_two.events);
    let drained_two = e2e::run(&drain_two).await?;
    // Half the one-worker end-to-end maximum, for 20 s: the latency a
    // steady load sees.
    let half_rate = e2e_rate / 2.0;
    let half = e2e::E2eArgs {
        events: (half_rate * 20.0) as usize,
        rate: Some(half_rate),
        ..one.clone()
    };
    eprintln!(
        "end to end: {} events at {half_rate:.0}/s, one worker",
        half.events
    );
    let e2e_half = e2e::run(&half).await?;

    println!("| measurement | result | ratio |");
    println!("|---|---|---|");
    println!(
        "| (a) confirmed 2 KiB publishes, quorum queue, {in_flight} in flight | {publishes:.0}/s | |"
    );
    println!(
        "| (b) single-row upserts, one commit each, {} connections | {upserts:.0}/s | |",
        args.ceilings.connections
    );
    println!(
        "| gateway, {in_flight} connections, {:.0} s | {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} errors | {:.2} × (a) |",
        duration.as_secs_f64(),
        gateway.rate(),
        gateway.p50_ms,
        gateway.p99_ms,
        gateway.max_ms,
        gateway.errors,
        gateway.rate() / publishes
    );
    println!(
        "| CPU per request, gateway alone | {} | |",
        gateway_cpu.cells()
    );
    for (args, result) in [
        (&one, &e2e),
        (&drain_one, &drained_one),
        (&drain_two, &drained_two),
        (&half, &e2e_half),
    ] {
        println!("{}", e2e_line(args, result, Some(upserts)));
        for line in cpu_lines(args, result) {
            println!("{line}");
        }
    }
    println!(
        "| peak RSS | gateway {gateway_rss:.1} MiB (HTTP load), {:.1} MiB (end to end); worker {:.1} MiB | |",
        e2e.gateway_rss_mib, e2e.worker_rss_mib
    );
    Ok(())
}

/// The table rows of a run's CPU per event, one per phase.
fn cpu_lines(args: &e2e::E2eArgs, result: &e2e::E2eResult) -> Vec<String> {
    result
        .cpu
        .iter()
        .map(|(phase, per_event)| {
            format!(
                "| CPU per event, {} worker(s), {phase} | {} | |",
                args.workers,
                per_event.cells()
            )
        })
        .collect()
}

/// One table row for an end-to-end run; the ratio to ceiling (b) when known.
fn e2e_line(args: &e2e::E2eArgs, result: &e2e::E2eResult, upserts: Option<f64>) -> String {
    let rate = result.events as f64 / result.seconds;
    let paced = args
        .rate
        .map_or(String::new(), |rate| format!(", posted at {rate:.0}/s"));
    let what = if args.drain {
        "queues drained"
    } else {
        "end to end"
    };
    let ratio = upserts.map_or(String::new(), |upserts| {
        format!("worker {:.2} × (b)", rate / upserts)
    });
    format!(
        "| {what}, {} mixed events, {} worker(s){paced} | {rate:.0} events/s in {:.1} s, receipt→applied p50 {:.0} ms, p99 {:.0} ms, {} errors, peak RSS gateway {:.1} MiB, worker {:.1} MiB | {ratio} |",
        result.events,
        args.workers,
        result.seconds,
        result.p50_ms,
        result.p99_ms,
        result.errors,
        result.gateway_rss_mib,
        result.worker_rss_mib,
    )
}
