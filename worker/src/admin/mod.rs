//! The command-line tools for people: `worker dlq`, `worker lina`, `worker subject`.
//! Here: their argument parsing and output; not here: the operations themselves, which are the
//! same core the running worker uses (`dead_letters/`, `apply/erasure.rs`). The running worker
//! imports nothing from this folder.

pub mod cli;
pub mod dlq;
pub mod stores;
pub mod subject;

use common::settings::{Missing, SettingsError};

use crate::admin::cli::Command;
use crate::apply::hash_key::HashKeyError;
use crate::email::Mailer;
use crate::settings::WorkerArgs;

/// Runs an admin command; returns the process's exit code (0 done, 1 the
/// command failed, 2 a setting is missing or invalid). Admin commands do not
/// migrate the schema: `worker migrate` (or a starting worker) does.
pub async fn run(command: Command, args: WorkerArgs) -> i32 {
    match execute(command, args).await {
        Ok(()) => 0,
        Err(AdminError::Settings(error)) => {
            eprintln!("worker: {error}");
            2
        }
        Err(AdminError::Key(error)) => {
            eprintln!("worker: {error}");
            2
        }
        Err(AdminError::Failed(what, error)) => {
            eprintln!("worker {what}: {error}");
            1
        }
    }
}

enum AdminError {
    Settings(SettingsError),
    /// The subject hash key does not match the database's.
    Key(HashKeyError),
    Failed(&'static str, String),
}

impl From<SettingsError> for AdminError {
    fn from(error: SettingsError) -> Self {
        AdminError::Settings(error)
    }
}

fn failed(what: &'static str, error: impl std::fmt::Display) -> AdminError {
    AdminError::Failed(what, error.to_string())
}

async fn execute(command: Command, args: WorkerArgs) -> Result<(), AdminError> {
    let out = &mut std::io::stdout();
    match command {
        Command::Dlq { command } => {
            let mut missing = Missing::default();
            let amqp = args.amqp.resolve(&mut missing)?;
            missing.into_result()?;
            let amqp =
                amqp.ok_or_else(|| SettingsError::Missing(vec!["INTAKE_AMQP_URL".into()]))?;
            dlq::run(command, &amqp, out)
                .await
                .map_err(|error| failed("dlq", error))
        }
        Command::Lina { command } => {
            let database = Database::open(args).await?;
            let context = stores::LinaContext {
                pool: &database.pool,
                hasher: &database.hasher,
                mailer: &database.mailer,
                erasure_clock_margin: database.erasure_clock_margin,
                answers: &mut std::io::stdin().lock(),
                out,
            };
            stores::run(command, context)
                .await
                .map_err(|error| failed("lina", error))
        }
        Command::Subject { command } => {
            let database = Database::open(args).await?;
            subject::run(
                command,
                &database.pool,
                &database.hasher,
                &database.mailer,
                database.erasure_clock_margin,
                out,
            )
            .await
            .map_err(|error| failed("subject", error))
        }
        Command::Run | Command::Migrate => {
            Err(failed("admin", "run and migrate are not admin commands"))
        }
    }
}

/// What the database commands (`worker lina`, `worker subject`) share.
struct Database {
    pool: common::db::DbPool,
    hasher: common::subject::SubjectHasher,
    mailer: Mailer,
    erasure_clock_margin: std::time::Duration,
}

impl Database {
    /// The pool, with `INTAKE_SUBJECT_HASH_KEY` checked against the
    /// database (`apply::hash_key`).
    async fn open(args: WorkerArgs) -> Result<Database, AdminError> {
        let mail = args.mail.clone().into_settings()?;
        let erasure_clock_margin = args.erasure_clock_margin;
        let (database_url, key) = args.database_and_key()?;
        let pool = common::db::pool(&database_url, 2).map_err(|error| failed("database", error))?;
        let mailer = Mailer::new(&mail).map_err(|error| failed("mail", error))?;
        let hasher = common::subject::SubjectHasher::new(key);
        let client = pool
            .get()
            .await
            .map_err(|error| failed("database", error))?;
        crate::apply::hash_key::check(&client, &hasher)
            .await
            .map_err(|error| match error {
                mismatch @ HashKeyError::Mismatch(_) => AdminError::Key(mismatch),
                other => failed("database", other),
            })?;
        drop(client);
        Ok(Database {
            pool,
            hasher,
            mailer,
            erasure_clock_margin,
        })
    }
}
