//! The gateway binary: settings, telemetry, build, run until SIGTERM.
#![forbid(unsafe_code)]

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
