//! The worker's settings (`worker --help` lists them with their defaults).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::settings::{AmqpArgs, AmqpSettings, LogArgs, Missing, SettingsError};
use secrecy::{ExposeSecret, SecretString};

use crate::email::{MailArgs, MailSettings};

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
    /// Address of /healthz, /readyz and /metrics (a second worker on one host sets its own)
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
    #[arg(long, env = "INTAKE_PREFETCH", default_value_t = DEFAULT_PREFETCH, global = true)]
    pub prefetch: u16,
    /// Most deliveries applied in one database transaction and acked together
    #[arg(long, env = "INTAKE_BATCH_SIZE", default_value_t = DEFAULT_BATCH_SIZE, global = true)]
    pub batch_size: usize,
    /// How long a batch waits for more deliveries after its first
    #[arg(long, env = "INTAKE_BATCH_LINGER", default_value = "5ms", value_parser = humantime::parse_duration, global = true)]
    pub batch_linger: Duration,
    /// Consumers (each applying its own batches in parallel) per sender queue in this process
    #[arg(long, env = "INTAKE_CONSUMERS", default_value_t = 8, global = true)]
    pub consumers: usize,
    /// JSON pointer to the applicant's e-mail address in an LT profile
    #[arg(
        long,
        env = "INTAKE_LT_EMAIL_POINTER",
        default_value = "/email",
        global = true
    )]
    pub lt_email_pointer: String,
    /// Key of the keyed hashes that stand for people in subject_state, erasure_log and logs
    /// (at least 16 bytes; changing it forgets every subject's order and tombstone) (required)
    #[arg(
        long,
        env = "INTAKE_SUBJECT_HASH_KEY",
        hide_env_values = true,
        global = true
    )]
    pub subject_hash_key: Option<String>,
    /// File holding the subject hash key (instead of INTAKE_SUBJECT_HASH_KEY)
    #[arg(long, env = "INTAKE_SUBJECT_HASH_KEY_FILE", global = true)]
    pub subject_hash_key_file: Option<PathBuf>,
    /// JSON pointer to LT's own event time (RFC 3339) in a profile, used to order events
    /// instead of the receive time when present; unset: receive time (LT documents none)
    #[arg(long, env = "INTAKE_LT_EVENT_TIME_POINTER", global = true)]
    pub lt_event_time_pointer: Option<String>,
    /// An LT body equal to one received for the same person within this long is LT resending
    /// it (a counted no-op); outside it, an equal body is a new event (a change back)
    #[arg(long, env = "INTAKE_LT_RESEND_WINDOW", default_value = "1h", value_parser = humantime::parse_duration, global = true)]
    pub lt_resend_window: Duration,
    /// An erasure on request or a store's removal is ordered this long after the database's
    /// clock, so events a gateway with a clock this far ahead received before it are stale too
    #[arg(long, env = "INTAKE_ERASURE_CLOCK_MARGIN", default_value = "2s", value_parser = humantime::parse_duration, global = true)]
    pub erasure_clock_margin: Duration,
    /// A batch held this long (the database refusing it) is put back at the end of its queue as
    /// new messages, so the broker's consumer_timeout (30 min by default) never closes the
    /// channel and no redelivery counts against the queue's delivery limit; keep it below that
    #[arg(long, env = "INTAKE_HOLD_REQUEUE_AFTER", default_value = "10m", value_parser = humantime::parse_duration, global = true)]
    pub hold_requeue_after: Duration,
    /// Database connections per worker process. Unset: 2 × consumers + 20, room for every
    /// consumer's batch, the background noting of published e-mail jobs (16), the e-mail
    /// sender (2), the sweeper and retention, so no batch waits for a connection
    #[arg(long, env = "INTAKE_DATABASE_POOL_SIZE", global = true)]
    pub database_pool_size: Option<usize>,
    /// How often pending e-mails whose job was never published are looked for
    #[arg(long, env = "INTAKE_OUTBOX_SWEEP_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub outbox_sweep_interval: Duration,
    /// Erase applications and employees not updated for this long, like a revocation
    /// (e.g. 2y); unset: kept until revoked or withdrawn
    #[arg(long, env = "INTAKE_RETENTION", value_parser = humantime::parse_duration, global = true)]
    pub retention: Option<Duration>,
    /// Purge dead letters (which hold personal data) parked longer than this
    #[arg(long, env = "INTAKE_DLQ_RETENTION", default_value = "14d", value_parser = humantime::parse_duration, global = true)]
    pub dlq_retention: Duration,
    /// How often the retention rounds run
    #[arg(long, env = "INTAKE_RETENTION_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration, global = true)]
    pub retention_interval: Duration,
    #[command(flatten)]
    pub mail: MailArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// `INTAKE_PREFETCH`'s default.
pub const DEFAULT_PREFETCH: u16 = 256;
/// `INTAKE_BATCH_SIZE`'s default.
pub const DEFAULT_BATCH_SIZE: usize = 128;

/// Database connections a worker needs besides its consumers' batches:
/// the background noting of published e-mail jobs (`BACKGROUND_SLOTS`),
/// the e-mail sender (one per chunk, two while a held row waits), the
/// outbox sweeper and retention. It does not grow with the e-mail
/// concurrency: a chunk of e-mails shares one transaction.
const POOL_BESIDES_BATCHES: usize = crate::startup::BACKGROUND_SLOTS + 2 + 2;

#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub database_url: SecretString,
    pub ops_addr: SocketAddr,
    pub amqp: AmqpSettings,
    pub prefetch: u16,
    pub batch_size: usize,
    pub batch_linger: Duration,
    pub consumers: usize,
    pub lt_email_pointer: String,
    pub lt_event_time_pointer: Option<String>,
    pub lt_resend_window: Duration,
    pub erasure_clock_margin: Duration,
    pub hold_requeue_after: Duration,
    pub subject_hash_key: SecretString,
    pub database_pool_size: usize,
    pub outbox_sweep_interval: Duration,
    pub retention: Option<Duration>,
    pub dlq_retention: Duration,
    pub retention_interval: Duration,
    pub mail: MailSettings,
}

impl WorkerArgs {
    /// What the database-only commands (`worker lina`) need: the database
    /// URL and the subject hash key.
    pub fn database_and_key(self) -> Result<(SecretString, SecretString), SettingsError> {
        let mut missing = Missing::default();
        let database_url = missing.require(
            "INTAKE_DATABASE_URL",
            self.database_url,
            self.database_url_file,
        )?;
        let key = missing.require(
            "INTAKE_SUBJECT_HASH_KEY",
            self.subject_hash_key,
            self.subject_hash_key_file,
        )?;
        missing.into_result()?;
        match (database_url, key) {
            (Some(database_url), Some(key)) => Ok((database_url, key)),
            _ => Err(SettingsError::Missing(vec!["INTAKE_DATABASE_URL".into()])),
        }
    }

    /// Validates everything and names every missing setting at once.
    pub fn into_settings(self) -> Result<WorkerSettings, SettingsError> {
        let mut missing = Missing::default();
        let database_url = missing.require(
            "INTAKE_DATABASE_URL",
            self.database_url,
            self.database_url_file,
        )?;
        let amqp = self.amqp.resolve(&mut missing)?;
        let subject_hash_key = missing.require(
            "INTAKE_SUBJECT_HASH_KEY",
            self.subject_hash_key,
            self.subject_hash_key_file,
        )?;
        missing.into_result()?;
        let (Some(database_url), Some(amqp), Some(subject_hash_key)) =
            (database_url, amqp, subject_hash_key)
        else {
            return Err(SettingsError::Missing(vec!["INTAKE_DATABASE_URL".into()]));
        };
        if subject_hash_key.expose_secret().len() < common::subject::MIN_KEY_LEN {
            return Err(invalid("INTAKE_SUBJECT_HASH_KEY", "use at least 16 bytes"));
        }
        common::settings::validate_pointer("INTAKE_LT_EMAIL_POINTER", &self.lt_email_pointer)?;
        if let Some(pointer) = &self.lt_event_time_pointer {
            common::settings::validate_pointer("INTAKE_LT_EVENT_TIME_POINTER", pointer)?;
        }
        if self.hold_requeue_after.is_zero() {
            return Err(invalid(
                "INTAKE_HOLD_REQUEUE_AFTER",
                "must be above zero (and below the broker's consumer_timeout)",
            ));
        }
        let mail = self.mail.into_settings()?;
        let consumers = self.consumers.max(1);
        let database_pool_size = self
            .database_pool_size
            .unwrap_or(2 * consumers + POOL_BESIDES_BATCHES);
        if self.prefetch == 0 || self.batch_size == 0 || database_pool_size == 0 {
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
            consumers,
            lt_email_pointer: self.lt_email_pointer,
            lt_event_time_pointer: self.lt_event_time_pointer,
            lt_resend_window: self.lt_resend_window,
            erasure_clock_margin: self.erasure_clock_margin,
            hold_requeue_after: self.hold_requeue_after,
            subject_hash_key,
            outbox_sweep_interval: self.outbox_sweep_interval,
            retention: self.retention,
            dlq_retention: self.dlq_retention,
            retention_interval: self.retention_interval,
            mail,
            database_pool_size,
        })
    }
}

fn invalid(name: &'static str, reason: &str) -> SettingsError {
    SettingsError::Invalid {
        name,
        reason: reason.into(),
    }
}
