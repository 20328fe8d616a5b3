//! The worker binary: `worker [run]` consumes and applies events,
//! `worker migrate` applies the database migrations, `worker dlq …` tends
//! the dead-letter queues.
#![forbid(unsafe_code)]

use clap::Parser;
use common::settings::{Missing, SettingsError};
use intake_worker::admin::cli::{Cli, Command};
use intake_worker::startup::Worker;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    common::telemetry::init(&cli.args.log.log, cli.args.log.log_format);
    match cli.command.unwrap_or(Command::Run) {
        Command::Dlq { command } => {
            let mut missing = Missing::default();
            let amqp = cli
                .args
                .amqp
                .resolve(&mut missing)
                .unwrap_or_else(|error| exit_with(error));
            missing
                .into_result()
                .unwrap_or_else(|error| exit_with(error));
            let Some(amqp) = amqp else {
                exit_with(SettingsError::Missing(vec!["INTAKE_AMQP_URL".into()]));
            };
            if let Err(error) =
                intake_worker::admin::dlq::run(command, &amqp, &mut std::io::stdout()).await
            {
                eprintln!("worker dlq: {error}");
                std::process::exit(1);
            }
        }
        Command::Lina { command } => {
            let mail = cli
                .args
                .mail
                .clone()
                .into_settings()
                .unwrap_or_else(|error| exit_with(error));
            let erasure_clock_margin = cli.args.erasure_clock_margin;
            let (database_url, key) = cli
                .args
                .database_and_key()
                .unwrap_or_else(|error| exit_with(error));
            let pool = common::db::pool(&database_url, 2)?;
            common::db::run_migrations(&pool).await?;
            let hasher = common::subject::SubjectHasher::new(key);
            let mailer = intake_worker::email::Mailer::new(&mail)?;
            let context = intake_worker::admin::stores::LinaContext {
                pool: &pool,
                hasher: &hasher,
                mailer: &mailer,
                erasure_clock_margin,
                answers: &mut std::io::stdin().lock(),
                out: &mut std::io::stdout(),
            };
            if let Err(error) = intake_worker::admin::stores::run(command, context).await {
                eprintln!("worker lina: {error}");
                std::process::exit(1);
            }
        }
        Command::Subject { command } => {
            let mail = cli
                .args
                .mail
                .clone()
                .into_settings()
                .unwrap_or_else(|error| exit_with(error));
            let erasure_clock_margin = cli.args.erasure_clock_margin;
            let (database_url, key) = cli
                .args
                .database_and_key()
                .unwrap_or_else(|error| exit_with(error));
            let pool = common::db::pool(&database_url, 2)?;
            common::db::run_migrations(&pool).await?;
            let hasher = common::subject::SubjectHasher::new(key);
            let mailer = intake_worker::email::Mailer::new(&mail)?;
            if let Err(error) = intake_worker::admin::subject::run(
                command,
                &pool,
                &hasher,
                &mailer,
                erasure_clock_margin,
                &mut std::io::stdout(),
            )
            .await
            {
                eprintln!("worker subject: {error}");
                std::process::exit(1);
            }
        }
        Command::Run => {
            let settings = cli
                .args
                .into_settings()
                .unwrap_or_else(|error| exit_with(error));
            let worker = Worker::build(settings).await?;
            let shutdown = CancellationToken::new();
            common::shutdown::cancel_on_signal(shutdown.clone());
            worker.run(shutdown).await?;
        }
        Command::Migrate => {
            let settings = cli
                .args
                .into_settings()
                .unwrap_or_else(|error| exit_with(error));
            let pool = common::db::pool(&settings.database_url, 1)?;
            let applied = common::db::run_migrations(&pool).await?;
            println!("migrations applied: {applied}");
        }
    }
    Ok(())
}

fn exit_with(error: SettingsError) -> ! {
    eprintln!("worker: {error}");
    std::process::exit(2);
}
