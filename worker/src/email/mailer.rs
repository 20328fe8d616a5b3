//! Handing an e-mail over: to an SMTP server (lettre, pooled connections),
//! or, with no server configured, as an `.eml` file named after the outbox
//! row, so the system runs on a bare machine and a person can open what
//! would have been sent.

use std::path::PathBuf;

use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::{EmailSetupError, MailSettings, smtp_tls};
use crate::error::JobError;

pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

impl Mailer {
    pub fn new(settings: &MailSettings) -> Result<Mailer, EmailSetupError> {
        let Some(smtp) = &settings.smtp else {
            std::fs::create_dir_all(&settings.outbox_dir)?;
            return Ok(Mailer::Files(settings.outbox_dir.clone()));
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp.url.expose_secret())
            .map_err(|error| EmailSetupError::Smtp(error.to_string()))?
            .timeout(Some(smtp.timeout))
            // One connection per concurrent send.
            .pool_config(PoolConfig::new().max_size(settings.concurrency.max(1) as u32));
        if let Some(tls) = smtp_tls::transport_tls(smtp.url.expose_secret(), &smtp.tls)? {
            builder = builder.tls(tls);
        }
        if let Some(password) = &smtp.password {
            let user = url_user(smtp.url.expose_secret());
            builder =
                builder.credentials(Credentials::new(user, password.expose_secret().to_owned()));
        }
        Ok(Mailer::Smtp(builder.build()))
    }

    /// Hands `message` over. SMTP 4xx, refused connections, timeouts and
    /// failed TLS (a certificate that does not verify, a relay without
    /// STARTTLS) are transient (retried); 5xx is permanent (`smtp_rejected`).
    pub async fn send(&self, message: Message, outbox_id: Uuid) -> Result<(), JobError> {
        match self {
            Mailer::Smtp(transport) => transport.send(message).await.map(|_| ()).map_err(classify),
            Mailer::Files(dir) => {
                let path = dir.join(format!("{outbox_id}.eml"));
                let partial = dir.join(format!(".{outbox_id}.eml.partial"));
                tokio::fs::write(&partial, message.formatted())
                    .await
                    .map_err(|error| {
                        JobError::Transient(format!("cannot write the .eml file: {}", error.kind()))
                    })?;
                tokio::fs::rename(&partial, &path).await.map_err(|error| {
                    JobError::Transient(format!("cannot write the .eml file: {}", error.kind()))
                })
            }
        }
    }

    /// Removes the `.eml` copies of these outbox rows (an erasure), if any,
    /// with a half-written one. A copy that cannot be removed fails the
    /// erasure (an environment failure: the batch is held and tried again,
    /// `/readyz` says so and the held-batch alert fires), so invariant 5
    /// never rests on a log line.
    pub async fn remove_copies(&self, outbox_ids: &[Uuid]) -> Result<(), JobError> {
        let Mailer::Files(dir) = self else {
            return Ok(());
        };
        for id in outbox_ids {
            for name in [format!("{id}.eml"), format!(".{id}.eml.partial")] {
                match tokio::fs::remove_file(dir.join(name)).await {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        return Err(JobError::Environment(format!(
                            "cannot delete an e-mail copy of an erased person: {}",
                            error.kind()
                        )));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn classify(error: lettre::transport::smtp::Error) -> JobError {
    // The server's text may quote the address: keep only the code.
    let code = error
        .status()
        .map(|code| code.to_string())
        .unwrap_or_default();
    if let Some(reason) = smtp_tls::failure_reason(&error) {
        JobError::Transient(reason)
    } else if error.is_permanent() {
        JobError::permanent("smtp_rejected", format!("SMTP {code}"))
    } else if error.is_transient() {
        JobError::Transient(format!("SMTP {code}"))
    } else if error.is_timeout() {
        JobError::Transient("SMTP timeout".into())
    } else if error.is_client() {
        // lettre's own fixed words ("STARTTLS is not supported on this
        // server", …), never the server's text or an address.
        let words = std::error::Error::source(&error)
            .map(|source| source.to_string())
            .unwrap_or_default();
        JobError::Transient(format!("SMTP client: {words}"))
    } else {
        JobError::Transient("SMTP server unreachable".into())
    }
}

/// The user name in `smtp://user@host`, for credentials whose password comes
/// from `INTAKE_SMTP_PASSWORD`.
fn url_user(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    match after_scheme.split_once('@') {
        Some((user, _)) => user.split(':').next().unwrap_or_default().to_owned(),
        None => String::new(),
    }
}
