//! The worker's settings (`worker --help` lists them with their defaults).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::settings::{AmqpArgs, AmqpSettings, LogArgs, Missing, SettingsError, resolve_secret};
use secrecy::SecretString;

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// PostgreSQL URL, e.g. postgres://intake@127.0.0.1:5432/intake (required)
    #[arg(
        long,
        env = "INTAKE_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,
    /// File holding the PostgreSQL URL (instead of INTAKE_DATABASE_URL)
    #[arg(long, env = "INTAKE_DATABASE_URL_FILE", global = true)]
    pub database_url_file: Option<PathBuf>,
    /// Address of /healthz and /readyz (a second worker on one host sets its own)
    #[arg(
        long,
        env = "INTAKE_OPS_ADDR",
        default_value = "127.0.0.1:9181",
        global = true
    )]
    pub ops_addr: SocketAddr,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    /// Deliveries a consumer holds unacknowledged at once (bounds in-flight work)
    #[arg(long, env = "INTAKE_PREFETCH", default_value_t = 64, global = true)]
    pub prefetch: u16,
    /// Most deliveries applied in one database transaction and acked together
    #[arg(long, env = "INTAKE_BATCH_SIZE", default_value_t = 32, global = true)]
    pub batch_size: usize,
    /// How long a batch waits for more deliveries after its first
    #[arg(long, env = "INTAKE_BATCH_LINGER", default_value = "5ms", value_parser = humantime::parse_duration, global = true)]
    pub batch_linger: Duration,
    /// JSON pointer to the applicant's e-mail address in an LT profile
    #[arg(
        long,
        env = "INTAKE_LT_EMAIL_POINTER",
        default_value = "/email",
        global = true
    )]
    pub lt_email_pointer: String,
    /// Database connections per worker process
    #[arg(
        long,
        env = "INTAKE_DATABASE_POOL_SIZE",
        default_value_t = 8,
        global = true
    )]
    pub database_pool_size: usize,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub database_url: SecretString,
    pub ops_addr: SocketAddr,
    pub amqp: AmqpSettings,
    pub prefetch: u16,
    pub batch_size: usize,
    pub batch_linger: Duration,
    pub lt_email_pointer: String,
    pub database_pool_size: usize,
}

impl WorkerArgs {
    /// Validates everything and names every missing setting at once.
    pub fn into_settings(self) -> Result<WorkerSettings, SettingsError> {
        let mut missing = Missing::default();
        let database_url = resolve_secret(
            "INTAKE_DATABASE_URL",
            self.database_url,
            self.database_url_file,
        )?;
        if database_url.is_none() {
            missing.note("INTAKE_DATABASE_URL");
        }
        let amqp = self.amqp.resolve(&mut missing)?;
        missing.into_result()?;
        let (Some(database_url), Some(amqp)) = (database_url, amqp) else {
            return Err(SettingsError::Missing(vec!["INTAKE_DATABASE_URL".into()]));
        };
        if !(self.lt_email_pointer.is_empty() || self.lt_email_pointer.starts_with('/')) {
            return Err(invalid(
                "INTAKE_LT_EMAIL_POINTER",
                "a JSON pointer starts with `/`",
            ));
        }
        if self.prefetch == 0 || self.batch_size == 0 || self.database_pool_size == 0 {
            return Err(invalid(
                "INTAKE_PREFETCH / INTAKE_BATCH_SIZE / INTAKE_DATABASE_POOL_SIZE",
                "must be at least 1",
            ));
        }
        Ok(WorkerSettings {
            database_url,
            ops_addr: self.ops_addr,
            amqp,
            prefetch: self.prefetch,
            // A batch can never hold more than the broker lets us have at once.
            batch_size: self.batch_size.min(usize::from(self.prefetch)),
            batch_linger: self.batch_linger,
            lt_email_pointer: self.lt_email_pointer,
            database_pool_size: self.database_pool_size,
        })
    }
}

fn invalid(name: &'static str, reason: &str) -> SettingsError {
    SettingsError::Invalid {
        name,
        reason: reason.into(),
    }
}
