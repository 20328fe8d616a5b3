//! The worker binary: `worker [run]` consumes and applies events,
//! `worker migrate` applies the database migrations and exits.
#![forbid(unsafe_code)]

use clap::Parser;
use intake_worker::cli::{Cli, Command};
use intake_worker::startup::Worker;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    common::telemetry::init(&cli.args.log.log, cli.args.log.log_format);
    let settings = match cli.args.into_settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("worker: {error}");
            std::process::exit(2);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let worker = Worker::build(settings).await?;
            let shutdown = CancellationToken::new();
            common::shutdown::cancel_on_signal(shutdown.clone());
            worker.run(shutdown).await?;
        }
        Command::Migrate => {
            let pool = common::db::pool(&settings.database_url, 1)?;
            let applied = common::db::run_migrations(&pool).await?;
            println!("migrations applied: {applied}");
        }
    }
    Ok(())
}
