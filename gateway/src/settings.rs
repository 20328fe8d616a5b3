//! The gateway's settings (`gateway --help` lists them with their defaults).

use std::net::SocketAddr;
use std::path::PathBuf;

use common::settings::{AmqpArgs, AmqpSettings, LogArgs, Missing, SettingsError, resolve_secret};
use secrecy::{ExposeSecret, SecretString};

#[derive(clap::Parser, Debug)]
#[command(
    name = "gateway",
    version,
    about = "Receives the senders' webhooks and publishes each event durably to RabbitMQ.",
    long_about = "Receives the senders' webhooks and publishes each event durably to RabbitMQ.\n\
                  Answers 200 only after the broker confirmed the event. Every setting can be \
                  given as an INTAKE_* environment variable; secrets also as <NAME>_FILE."
)]
pub struct GatewayArgs {
    /// Address the webhook endpoints listen on
    #[arg(long, env = "INTAKE_GATEWAY_ADDR", default_value = "0.0.0.0:8080")]
    pub gateway_addr: SocketAddr,
    /// Address of /healthz and /readyz (keep it private)
    #[arg(long, env = "INTAKE_OPS_ADDR", default_value = "127.0.0.1:9180")]
    pub ops_addr: SocketAddr,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    /// Bearer tokens LT may use, comma-separated; several at once during a rotation (required)
    #[arg(long, env = "INTAKE_LT_TOKENS", hide_env_values = true)]
    pub lt_tokens: Option<String>,
    /// File holding the LT tokens (instead of INTAKE_LT_TOKENS)
    #[arg(long, env = "INTAKE_LT_TOKENS_FILE")]
    pub lt_tokens_file: Option<PathBuf>,
    /// JSON pointer to the applicant's e-mail address in an LT profile
    #[arg(long, env = "INTAKE_LT_EMAIL_POINTER", default_value = "/email")]
    pub lt_email_pointer: String,
    /// Secrets LINA's URL carries (/webhooks/lina/<secret>), comma-separated; several at
    /// once during a rotation. Unset: the LINA endpoint answers 404
    #[arg(long, env = "INTAKE_LINA_PATH_SECRETS", hide_env_values = true)]
    pub lina_path_secrets: Option<String>,
    /// File holding the LINA path secrets (instead of INTAKE_LINA_PATH_SECRETS)
    #[arg(long, env = "INTAKE_LINA_PATH_SECRETS_FILE")]
    pub lina_path_secrets_file: Option<PathBuf>,
    /// Where LINA calls wait while the broker cannot take them (one gateway per directory)
    #[arg(
        long,
        env = "INTAKE_SPOOL_DIR",
        default_value = "/var/lib/intake/spool"
    )]
    pub spool_dir: PathBuf,
    /// Most bytes the spool may hold; beyond it LINA calls get 503 (and are lost: LINA never resends)
    #[arg(long, env = "INTAKE_SPOOL_MAX_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub spool_max_bytes: u64,
    /// Largest accepted request body, in bytes (larger: 413)
    #[arg(long, env = "INTAKE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Publishes waiting for a confirm at once; beyond it LT gets 503 with Retry-After
    #[arg(long, env = "INTAKE_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Clone, Debug)]
pub struct GatewaySettings {
    pub gateway_addr: SocketAddr,
    pub ops_addr: SocketAddr,
    pub amqp: AmqpSettings,
    pub lt_tokens: Vec<SecretString>,
    pub lt_email_pointer: String,
    pub max_body_bytes: usize,
    pub max_in_flight: usize,
    /// Empty: the LINA endpoint is off.
    pub lina_path_secrets: Vec<SecretString>,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
}

impl GatewayArgs {
    /// Validates everything and names every missing setting at once.
    pub fn into_settings(self) -> Result<GatewaySettings, SettingsError> {
        let mut missing = Missing::default();
        let amqp = self.amqp.resolve(&mut missing)?;
        let tokens = resolve_secret("INTAKE_LT_TOKENS", self.lt_tokens, self.lt_tokens_file)?;
        let lt_tokens = tokens
            .map(|tokens| split_tokens(&tokens))
            .unwrap_or_default();
        if lt_tokens.is_empty() {
            missing.note("INTAKE_LT_TOKENS");
        }
        let lina = resolve_secret(
            "INTAKE_LINA_PATH_SECRETS",
            self.lina_path_secrets,
            self.lina_path_secrets_file,
        )?;
        let lina_path_secrets = lina
            .map(|secrets| split_tokens(&secrets))
            .unwrap_or_default();
        missing.into_result()?;
        validate_pointer("INTAKE_LT_EMAIL_POINTER", &self.lt_email_pointer)?;
        if self.max_in_flight == 0 {
            return Err(SettingsError::Invalid {
                name: "INTAKE_MAX_IN_FLIGHT",
                reason: "must be at least 1".into(),
            });
        }
        Ok(GatewaySettings {
            gateway_addr: self.gateway_addr,
            ops_addr: self.ops_addr,
            amqp: amqp.ok_or_else(|| SettingsError::Missing(vec!["INTAKE_AMQP_URL".into()]))?,
            lt_tokens,
            lt_email_pointer: self.lt_email_pointer,
            max_body_bytes: self.max_body_bytes,
            max_in_flight: self.max_in_flight,
            lina_path_secrets,
            spool_dir: self.spool_dir,
            spool_max_bytes: self.spool_max_bytes,
        })
    }
}

fn split_tokens(tokens: &SecretString) -> Vec<SecretString> {
    tokens
        .expose_secret()
        .split(',')
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .map(|token| SecretString::from(token.to_owned()))
        .collect()
}

/// A JSON pointer is empty or starts with `/` (RFC 6901).
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
