//! Settings shared by both binaries. Each binary has one typed settings
//! struct, read from `INTAKE_*` environment variables through clap (so
//! `--help` lists every variable with its default) and validated at start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::amqp::{AmqpConnector, AmqpTls, Topology};
use crate::telemetry::LogFormat;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("missing required settings: {}", .0.join(", "))]
    Missing(Vec<String>),
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Collects every missing required setting, so one start names them all.
#[derive(Default)]
pub struct Missing(Vec<String>);

impl Missing {
    pub fn note(&mut self, name: &str) {
        self.0.push(format!("{name} (or {name}_FILE)"));
    }

    /// A required secret from `NAME` or `NAME_FILE`; noted here when missing.
    pub fn require(
        &mut self,
        name: &'static str,
        value: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Option<SecretString>, SettingsError> {
        let secret = resolve_secret(name, value, file)?;
        if secret.is_none() {
            self.note(name);
        }
        Ok(secret)
    }

    pub fn into_result(self) -> Result<(), SettingsError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(SettingsError::Missing(self.0))
        }
    }
}

/// A secret from `NAME` or, when that is unset, from the file named by
/// `NAME_FILE` (trailing newline removed).
pub fn resolve_secret(
    name: &'static str,
    value: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<SecretString>, SettingsError> {
    if let Some(value) = value.filter(|value| !value.is_empty()) {
        return Ok(Some(SecretString::from(value)));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|error| SettingsError::Invalid {
        name,
        reason: format!("cannot read its _FILE {}: {error}", path.display()),
    })?;
    let text = text.trim_end_matches(['\r', '\n']).to_owned();
    Ok((!text.is_empty()).then(|| SecretString::from(text)))
}

/// RabbitMQ settings, as both binaries read them.
#[derive(clap::Args, Debug, Clone)]
pub struct AmqpArgs {
    /// RabbitMQ URL, e.g. amqp://user:password@127.0.0.1:5672/%2f (required)
    #[arg(long, env = "INTAKE_AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// File holding the RabbitMQ URL (instead of INTAKE_AMQP_URL)
    #[arg(long, env = "INTAKE_AMQP_URL_FILE")]
    pub amqp_url_file: Option<PathBuf>,
    /// CA certificates (PEM) that may sign the broker's certificate, besides
    /// the system's roots; every node must then be amqps://
    #[arg(long, env = "INTAKE_AMQP_CA_FILE")]
    pub amqp_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a broker that asks for one (with INTAKE_AMQP_CLIENT_KEY)
    #[arg(long, env = "INTAKE_AMQP_CLIENT_CERT")]
    pub amqp_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM)
    #[arg(long, env = "INTAKE_AMQP_CLIENT_KEY")]
    pub amqp_client_key: Option<PathBuf>,
    /// Prepended to every queue and exchange name
    #[arg(long, env = "INTAKE_QUEUE_PREFIX", default_value = "intake")]
    pub queue_prefix: String,
    /// How long to wait for the broker to confirm a publish
    #[arg(long, env = "INTAKE_PUBLISH_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub publish_timeout: Duration,
    /// Delay tiers for retries, shortest first; one queue per delay
    #[arg(
        long,
        env = "INTAKE_RETRY_DELAYS",
        default_value = DEFAULT_RETRY_DELAYS,
        value_delimiter = ',',
        value_parser = humantime::parse_duration
    )]
    pub retry_delays: Vec<Duration>,
}

/// The default delay tiers (`INTAKE_RETRY_DELAYS`).
pub const DEFAULT_RETRY_DELAYS: &str = "1s,5s,30s,2m,10m,30m,1h,3h";

/// A JSON pointer setting is empty or starts with `/` (RFC 6901); `name`
/// is the setting, for the message.
pub fn validate_pointer(name: &'static str, pointer: &str) -> Result<(), SettingsError> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(())
    } else {
        Err(SettingsError::Invalid {
            name,
            reason: "a JSON pointer starts with `/`, e.g. /email".into(),
        })
    }
}

pub fn default_retry_delays() -> Vec<Duration> {
    DEFAULT_RETRY_DELAYS
        .split(',')
        .filter_map(|delay| humantime::parse_duration(delay).ok())
        .collect()
}

#[derive(Clone, Debug)]
pub struct AmqpSettings {
    pub url: SecretString,
    pub tls: AmqpTls,
    pub queue_prefix: String,
    pub publish_timeout: Duration,
    pub retry_delays: Vec<Duration>,
}

impl AmqpArgs {
    pub fn resolve(self, missing: &mut Missing) -> Result<Option<AmqpSettings>, SettingsError> {
        validate_prefix(&self.queue_prefix)?;
        let url = resolve_secret("INTAKE_AMQP_URL", self.amqp_url, self.amqp_url_file)?;
        let Some(url) = url else {
            missing.note("INTAKE_AMQP_URL");
            return Ok(None);
        };
        let tls = AmqpTls::from_files(
            self.amqp_ca_file.as_deref(),
            self.amqp_client_cert.as_deref(),
            self.amqp_client_key.as_deref(),
        )?;
        require_tls_nodes(&url, &tls)?;
        let mut retry_delays = self.retry_delays;
        retry_delays.sort();
        retry_delays.dedup();
        Ok(Some(AmqpSettings {
            url,
            tls,
            queue_prefix: self.queue_prefix,
            publish_timeout: self.publish_timeout,
            retry_delays,
        }))
    }
}

impl AmqpSettings {
    pub fn topology(&self) -> Topology {
        Topology::new(self.queue_prefix.clone(), self.retry_delays.clone())
    }

    /// A connector named after the process, as shown in the management UI.
    pub fn connector(&self, process: &str) -> Arc<AmqpConnector> {
        Arc::new(AmqpConnector::new(
            self.url.clone(),
            format!("{}:{process}", self.queue_prefix),
            self.topology(),
            self.tls.clone(),
            self.publish_timeout,
        ))
    }
}

/// Either every node is reached over TLS or none is: a plain `amqp://`
/// node beside `amqps://` ones (or beside a CA file or client certificate,
/// which say TLS) would carry the events in clear after a failover, so it
/// is refused at start rather than used.
fn require_tls_nodes(url: &SecretString, tls: &AmqpTls) -> Result<(), SettingsError> {
    use secrecy::ExposeSecret;
    let encrypted = |node: &str| node.starts_with("amqps://");
    let nodes: Vec<&str> = crate::amqp::nodes(url.expose_secret()).collect();
    let some_tls = tls.is_configured() || nodes.iter().any(|node| encrypted(node));
    if some_tls && !nodes.iter().all(|node| encrypted(node)) {
        return Err(SettingsError::Invalid {
            name: "INTAKE_AMQP_URL",
            reason: "some nodes are amqps:// (or INTAKE_AMQP_CA_FILE or a client certificate is set), so every node must be amqps://".into(),
        });
    }
    Ok(())
}

fn validate_prefix(prefix: &str) -> Result<(), SettingsError> {
    let valid = !prefix.is_empty()
        && prefix.len() <= 100
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if valid {
        Ok(())
    } else {
        Err(SettingsError::Invalid {
            name: "INTAKE_QUEUE_PREFIX",
            reason: "use 1 to 100 of A-Z a-z 0-9 . - _".into(),
        })
    }
}

/// Logging, as both binaries read it.
#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `intake_worker=debug,info`
    #[arg(long, env = "INTAKE_LOG", default_value = "info")]
    pub log: String,
    /// Log line format
    #[arg(long, env = "INTAKE_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}
