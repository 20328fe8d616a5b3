//! `bench`: measurements of the intake on this machine, with its real
//! RabbitMQ, PostgreSQL and a loopback SMTP server; each run uses its own
//! database and queue prefix and removes them afterwards. Results and the
//! commands that produced them are in BENCHMARKS.md (`scripts/bench` builds
//! everything in release mode and runs `bench all`).
#![forbid(unsafe_code)]
// A measuring tool: a setup that fails should stop it loudly, as in the tests.
#![allow(clippy::unwrap_used)]

mod ceilings;
mod e2e;
mod email;
mod load;
mod payload;
mod system;

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
}

#[derive(clap::Args)]
struct AllArgs {
    #[command(flatten)]
    ceilings: ceilings::CeilingArgs,
    /// Events in the end-to-end run
    #[arg(long, default_value_t = 50_000)]
    events: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Bench::parse() {
        Bench::Email(args) => email::run(args).await,
        Bench::All(args) => all(args).await,
    }
}

async fn all(args: AllArgs) -> anyhow::Result<()> {
    let duration = args.ceilings.duration;
    let in_flight = args.ceilings.in_flight;
    eprintln!("ceiling (a): confirmed publishes, {in_flight} in flight, {duration:?}");
    let publishes = ceilings::publish_ceiling(duration, in_flight).await?;
    eprintln!(
        "ceiling (b): single-row upserts, {} connections",
        args.ceilings.connections
    );
    let scratch = format!(
        "intake_t_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let scratch_url = intake_tests::database::create(&scratch).await;
    let upserts =
        ceilings::upsert_ceiling(&scratch_url, duration, args.ceilings.connections).await?;
    intake_tests::database::drop(&scratch).await;

    eprintln!("gateway: HTTP load, {in_flight} connections, {duration:?}");
    let system = system::System::start(false).await?;
    let gateway = load::run_for(&system.gateway_url, in_flight, duration).await;
    let gateway_rss = system::System::peak_rss_mib(&system.gateway);
    system.stop().await;

    eprintln!("end to end: {} events", args.events);
    let e2e = e2e::run(args.events, in_flight).await?;
    let e2e_rate = e2e.events as f64 / e2e.seconds;

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
        gateway.percentile_ms(0.50),
        gateway.percentile_ms(0.99),
        gateway.percentile_ms(1.0),
        gateway.errors,
        gateway.rate() / publishes
    );
    println!(
        "| end to end, {} mixed events | {e2e_rate:.0} events/s in {:.1} s, receipt→applied p50 {:.0} ms, p99 {:.0} ms, {} errors | worker {:.2} × (b) |",
        e2e.events,
        e2e.seconds,
        e2e.p50_ms,
        e2e.p99_ms,
        e2e.errors,
        e2e_rate / upserts
    );
    println!(
        "| peak RSS | gateway {gateway_rss:.1} MiB (HTTP load), {:.1} MiB (end to end); worker {:.1} MiB | |",
        e2e.gateway_rss_mib, e2e.worker_rss_mib
    );
    Ok(())
}
