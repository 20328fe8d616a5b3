//! The gateway against a three-node RabbitMQ cluster versus one node, in
//! one run: both are nodes of the bench's own (`intake_tests::private_rabbitmq`,
//! the same settings), so the ratio is the cluster's cost (a publish is
//! confirmed once a majority of the quorum queue's members has it) and not
//! a difference between brokers.

use std::time::Duration;

use intake_tests::private_rabbitmq::PrivateRabbit;

use crate::system::System;
use crate::wrk::WrkResult;

#[derive(clap::Args)]
pub struct ClusterArgs {
    /// How long each broker is loaded
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// HTTP connections of the load
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
}

pub async fn run(args: &ClusterArgs) -> anyhow::Result<()> {
    eprintln!("cluster: one node of our own");
    let single = PrivateRabbit::single().await;
    let one = measure(&single.url(0), args).await?;
    drop(single);
    eprintln!("cluster: three nodes of our own");
    let cluster = PrivateRabbit::start(3, None).await;
    let three = measure(&cluster.urls(), args).await?;
    drop(cluster);
    println!(
        "| broker | gateway, {} connections, {:.0} s | ratio |",
        args.connections,
        args.duration.as_secs_f64()
    );
    println!("|---|---|---|");
    for (what, result) in [("one node", &one), ("three-node cluster", &three)] {
        println!(
            "| {what} | {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, {} errors | {:.2} × one node |",
            result.rate(),
            result.p50_ms,
            result.p99_ms,
            result.errors,
            result.rate() / one.rate()
        );
    }
    Ok(())
}

/// The gateway alone (no worker) on the broker at `url`, under load.
async fn measure(url: &str, args: &ClusterArgs) -> anyhow::Result<WrkResult> {
    let system = System::start_with(0, &[("INTAKE_AMQP_URL", url.to_owned())]).await?;
    let result = crate::gateway_load(&system, args.connections, args.duration).await?;
    system.stop().await;
    Ok(result)
}
