//! The worker's command line.

use crate::admin::dlq::DlqCommand;
use crate::settings::WorkerArgs;

#[derive(clap::Parser, Debug)]
#[command(
    name = "worker",
    version,
    about = "Applies the intake's events to PostgreSQL.",
    long_about = "Applies the intake's events to PostgreSQL: consumes from RabbitMQ in batches, \
                  acks after commit. Every setting can be given as an INTAKE_* environment \
                  variable; secrets also as <NAME>_FILE."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub args: WorkerArgs,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Apply pending migrations, then consume and apply events until SIGTERM (the default)
    Run,
    /// Apply pending database migrations (under an advisory lock) and exit
    Migrate,
    /// The LINA stores we take employee data from: add, list, remove, register with LINA
    Lina {
        #[command(subcommand)]
        command: crate::admin::stores::LinaCommand,
    },
    /// Data-subject requests: export or erase everything about one person
    Subject {
        #[command(subcommand)]
        command: crate::admin::subject::SubjectCommand,
    },
    /// Look at, replay or purge dead-lettered and quarantined messages (needs only the broker)
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}
