//! The worker binary: `worker [run]` consumes and applies events,
//! `worker migrate` applies the database migrations, and the admin commands
//! (`worker dlq`, `worker lina`, `worker subject`) are run by `admin::run`.
#![forbid(unsafe_code)]

// glibc's malloc took a quarter of the worker's CPU per event (perf, in a
// drain of 100,000 events: malloc, free and their consolidation). jemalloc
// cut the worker's CPU per event by 15 % and the gateway's by 18 % for
// 3 MiB more RSS; mimalloc cut as much but grew RSS by 20-30 MiB.
// See BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::Parser;
use intake_worker::admin::cli::{Cli, Command};
use intake_worker::settings::WorkerArgs;
use intake_worker::startup::Worker;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking threads write the embedded mailer's `.eml` copies (tokio::fs),
        // one per e-mail of a chunk at once: tokio's default of up to 512 gave
        // 36 threads in a drain, each keeping an allocator cache of its own
        // (RSS, BENCHMARKS.md). They also resolve host names (PostgreSQL,
        // the broker, the relay), so enough stay free for a reconnect while
        // a chunk's files are written.
        .max_blocking_threads(BLOCKING_THREADS)
        .build()?
        .block_on(run())
}

const BLOCKING_THREADS: usize = 16;

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run);
    match command {
        Command::Run | Command::Migrate => {
            common::telemetry::init(&cli.args.log.log, cli.args.log.log_format);
        }
        // A person at a shell reads what the command prints.
        _ => common::telemetry::init_for_people(),
    }
    match command {
        Command::Run => {
            let worker = Worker::build(settings(cli.args)).await?;
            let shutdown = CancellationToken::new();
            common::shutdown::cancel_on_signal(shutdown.clone());
            worker.run(shutdown).await?;
        }
        Command::Migrate => {
            let settings = settings(cli.args);
            let pool = common::db::pool(&settings.database_url, 1)?;
            let applied = common::db::run_migrations(&pool).await?;
            println!("migrations applied: {applied}");
        }
        admin => std::process::exit(intake_worker::admin::run(admin, cli.args).await),
    }
    Ok(())
}

/// Every setting validated, or the process stops naming what is wrong.
fn settings(args: WorkerArgs) -> intake_worker::settings::WorkerSettings {
    args.into_settings().unwrap_or_else(|error| {
        eprintln!("worker: {error}");
        std::process::exit(2);
    })
}
