//! The gateway's settings (`gateway --help` lists them with their defaults).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::settings::{AmqpArgs, AmqpSettings, LogArgs, Missing, SettingsError, resolve_secret};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};

use crate::source::{SourceRules, parse_cidrs};

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
    /// Address of /healthz, /readyz and /metrics (keep it private)
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
    /// How long a LINA call waits for the broker's confirm before it is spooled instead
    /// (at most INTAKE_PUBLISH_TIMEOUT; LINA is answered 200 either way)
    #[arg(long, env = "INTAKE_LINA_SPOOL_AFTER", default_value = "1s", value_parser = humantime::parse_duration)]
    pub lina_spool_after: Duration,
    /// Most bytes the spool may hold; beyond it LINA calls get 503 (and are lost: LINA never resends)
    #[arg(long, env = "INTAKE_SPOOL_MAX_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub spool_max_bytes: u64,
    /// Largest accepted request body, in bytes (larger: 413)
    #[arg(long, env = "INTAKE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Publishes waiting for a confirm at once; beyond it LT gets 503 with Retry-After
    #[arg(long, env = "INTAKE_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// A new connection's first request head must arrive within this (else 408 and closed);
    /// idle connections that never send anything are closed after it too
    #[arg(long, env = "INTAKE_REQUEST_HEAD_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_head_timeout: Duration,
    /// A request's whole body must arrive within this after its head (else 408 and closed)
    #[arg(long, env = "INTAKE_REQUEST_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_body_timeout: Duration,
    /// How long a connection may sit idle between requests before it is closed (0: no keep-alive)
    #[arg(long, env = "INTAKE_KEEP_ALIVE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub keep_alive: Duration,
    /// How long a closing connection waits for the client to disconnect before it is dropped
    #[arg(long, env = "INTAKE_CLIENT_DISCONNECT_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub client_disconnect_timeout: Duration,
    /// Addresses LT may call from: comma-separated CIDRs (or single addresses). Unset: any
    #[arg(long, env = "INTAKE_LT_ALLOWED_SOURCES")]
    pub lt_allowed_sources: Option<String>,
    /// Addresses LINA may call from: comma-separated CIDRs (or single addresses). Unset: any
    #[arg(long, env = "INTAKE_LINA_ALLOWED_SOURCES")]
    pub lina_allowed_sources: Option<String>,
    /// Proxies (CIDRs) whose X-Forwarded-For is believed when checking the allowed sources;
    /// from any other peer the header is ignored
    #[arg(long, env = "INTAKE_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
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
    pub lina_spool_after: Duration,
    pub http: HttpTimeouts,
    pub sources: SourceRules,
}

/// How long the gateway waits for slow or idle clients.
#[derive(Clone, Copy, Debug)]
pub struct HttpTimeouts {
    pub request_head: Duration,
    pub request_body: Duration,
    /// Zero: no keep-alive.
    pub keep_alive: Duration,
    pub client_disconnect: Duration,
}

impl Default for HttpTimeouts {
    /// The defaults of `gateway --help`.
    fn default() -> Self {
        HttpTimeouts {
            request_head: Duration::from_secs(5),
            request_body: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            client_disconnect: Duration::from_secs(1),
        }
    }
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
        common::settings::validate_pointer("INTAKE_LT_EMAIL_POINTER", &self.lt_email_pointer)?;
        if self.max_in_flight == 0 {
            return Err(SettingsError::Invalid {
                name: "INTAKE_MAX_IN_FLIGHT",
                reason: "must be at least 1".into(),
            });
        }
        let http = HttpTimeouts {
            request_head: non_zero("INTAKE_REQUEST_HEAD_TIMEOUT", self.request_head_timeout)?,
            request_body: non_zero("INTAKE_REQUEST_BODY_TIMEOUT", self.request_body_timeout)?,
            keep_alive: self.keep_alive,
            client_disconnect: self.client_disconnect_timeout,
        };
        let sources = SourceRules {
            lt: cidrs("INTAKE_LT_ALLOWED_SOURCES", self.lt_allowed_sources)?,
            lina: cidrs("INTAKE_LINA_ALLOWED_SOURCES", self.lina_allowed_sources)?,
            trusted_proxies: cidrs("INTAKE_TRUSTED_PROXIES", self.trusted_proxies)?
                .unwrap_or_default(),
        };
        let amqp = amqp.ok_or_else(|| SettingsError::Missing(vec!["INTAKE_AMQP_URL".into()]))?;
        let lina_spool_after =
            non_zero("INTAKE_LINA_SPOOL_AFTER", self.lina_spool_after)?.min(amqp.publish_timeout);
        Ok(GatewaySettings {
            gateway_addr: self.gateway_addr,
            ops_addr: self.ops_addr,
            amqp,
            lt_tokens,
            lt_email_pointer: self.lt_email_pointer,
            max_body_bytes: self.max_body_bytes,
            max_in_flight: self.max_in_flight,
            lina_path_secrets,
            spool_dir: self.spool_dir,
            spool_max_bytes: self.spool_max_bytes,
            lina_spool_after,
            http,
            sources,
        })
    }
}

/// A zero timeout would disable actix's (head) or refuse every body: refused.
fn non_zero(name: &'static str, timeout: Duration) -> Result<Duration, SettingsError> {
    if timeout.is_zero() {
        Err(SettingsError::Invalid {
            name,
            reason: "must be more than 0".into(),
        })
    } else {
        Ok(timeout)
    }
}

/// A CIDR list setting; unset or blank: `None`.
fn cidrs(name: &'static str, text: Option<String>) -> Result<Option<Vec<IpNet>>, SettingsError> {
    let Some(text) = text else {
        return Ok(None);
    };
    parse_cidrs(name, &text).map_err(|error| SettingsError::Invalid {
        name: error.name,
        reason: error.to_string(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn settings(extra: &[&str]) -> Result<GatewaySettings, SettingsError> {
        let base = [
            "gateway",
            "--amqp-url",
            "amqp://localhost",
            "--lt-tokens",
            "t",
        ];
        GatewayArgs::try_parse_from(base.iter().chain(extra))
            .expect("known flags")
            .into_settings()
    }

    #[test]
    fn an_invalid_cidr_stops_the_start_naming_its_setting() {
        for (flag, name) in [
            ("--lt-allowed-sources", "INTAKE_LT_ALLOWED_SOURCES"),
            ("--lina-allowed-sources", "INTAKE_LINA_ALLOWED_SOURCES"),
            ("--trusted-proxies", "INTAKE_TRUSTED_PROXIES"),
        ] {
            let error = settings(&[flag, "10.0.0.0/8,300.1.2.3/24"]).expect_err(flag);
            let text = error.to_string();
            assert!(
                text.contains(name) && text.contains("300.1.2.3/24"),
                "{text}"
            );
        }
    }

    #[test]
    fn allowlists_are_off_unless_set_and_timeouts_have_defaults() {
        let settings = settings(&["--lina-allowed-sources", "192.0.2.0/24, 2001:db8::1"])
            .expect("valid settings");
        assert!(settings.sources.lt.is_none());
        assert_eq!(settings.sources.lina.map(|nets| nets.len()), Some(2));
        assert!(settings.sources.trusted_proxies.is_empty());
        assert_eq!(settings.http.request_head, Duration::from_secs(5));
        assert_eq!(settings.http.request_body, Duration::from_secs(10));
    }

    #[test]
    fn a_zero_head_or_body_timeout_is_refused() {
        let error = settings(&["--request-body-timeout", "0s"]).expect_err("zero");
        assert!(error.to_string().contains("INTAKE_REQUEST_BODY_TIMEOUT"));
    }
}
