//! The gateway binary: settings, telemetry, build, run until SIGTERM.
#![forbid(unsafe_code)]

// glibc's malloc took a quarter of the worker's CPU per event (perf, in a
// drain of 100,000 events: malloc, free and their consolidation). jemalloc
// cut the worker's CPU per event by 15 % and the gateway's by 18 % for
// 3 MiB more RSS; mimalloc cut as much but grew RSS by 20-30 MiB.
// See BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::Parser;
use intake_gateway::settings::GatewayArgs;
use intake_gateway::startup::Application;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = GatewayArgs::parse();
    common::telemetry::init(&args.log.log, args.log.log_format);
    let settings = match args.into_settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("gateway: {error}");
            std::process::exit(2);
        }
    };
    let application = Application::build(settings).await?;
    tracing::info!(
        message = "Gateway listening.",
        port = application.port(),
        ops_port = application.ops_port()
    );
    let shutdown = CancellationToken::new();
    common::shutdown::cancel_on_signal(shutdown.clone());
    application.run(shutdown).await?;
    Ok(())
}
