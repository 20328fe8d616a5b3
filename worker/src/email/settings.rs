//! E-mail settings (part of `worker --help`).

use std::path::PathBuf;
use std::time::Duration;

use common::settings::{SettingsError, resolve_secret};
use lettre::message::Mailbox;
use secrecy::SecretString;

use super::SmtpTls;

/// SMTP connections per worker by default. Each message waits about 45 ms
/// on its connection, whatever the server: lettre (0.11.23) writes the
/// body and the final dot as two writes with Nagle's algorithm on, so the
/// dot waits for the server's delayed ACK of the body (measured with `bench
/// email`: 22 e-mails/s on one connection, 314/s on 16, 560/s on 32). The
/// fix, TCP_NODELAY, is merged upstream (lettre#1159) but not released yet.
pub const DEFAULT_CONCURRENCY: usize = 32;

#[derive(clap::Args, Debug, Clone)]
pub struct MailArgs {
    /// SMTP server: smtp://host:25 (plain), smtp://host:587?tls=required (STARTTLS),
    /// smtps://host:465 (TLS); a user name may be in the URL. Unset: every e-mail is
    /// written as an .eml file to INTAKE_MAIL_OUTBOX_DIR instead of being sent
    #[arg(long, env = "INTAKE_SMTP_URL", hide_env_values = true, global = true)]
    pub smtp_url: Option<String>,
    /// SMTP password (instead of one in the URL)
    #[arg(
        long,
        env = "INTAKE_SMTP_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub smtp_password: Option<String>,
    /// File holding the SMTP password
    #[arg(long, env = "INTAKE_SMTP_PASSWORD_FILE", global = true)]
    pub smtp_password_file: Option<PathBuf>,
    /// PEM file of the CA certificate(s) the relay's certificate must chain to (an internal
    /// CA). Set: only these are trusted, not the built-in public roots; INTAKE_SMTP_URL must
    /// then be smtps:// or smtp://…?tls=required
    #[arg(long, env = "INTAKE_SMTP_CA_FILE", global = true)]
    pub smtp_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate for a relay that asks for one (its first
    /// certificate is presented; with INTAKE_SMTP_CLIENT_KEY)
    #[arg(long, env = "INTAKE_SMTP_CLIENT_CERT", global = true)]
    pub smtp_client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1)
    #[arg(long, env = "INTAKE_SMTP_CLIENT_KEY", global = true)]
    pub smtp_client_key: Option<PathBuf>,
    /// How long one SMTP conversation may take
    #[arg(long, env = "INTAKE_SMTP_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub smtp_timeout: Duration,
    /// E-mails handed to the SMTP server at once per worker: its connections (lower it if
    /// the relay limits connections per client)
    #[arg(
        long,
        env = "INTAKE_EMAIL_CONCURRENCY",
        default_value_t = DEFAULT_CONCURRENCY,
        global = true
    )]
    pub email_concurrency: usize,
    /// Where e-mails are written as .eml files when no SMTP server is configured
    #[arg(
        long,
        env = "INTAKE_MAIL_OUTBOX_DIR",
        default_value = "/var/lib/intake/mail-outbox",
        global = true
    )]
    pub mail_outbox_dir: PathBuf,
    /// Sender of the acknowledgements, e.g. "Rekrytointi <rekrytointi@example.fi>"
    #[arg(
        long,
        env = "INTAKE_MAIL_FROM",
        default_value = "Recruitment <no-reply@localhost>",
        global = true
    )]
    pub mail_from: String,
    /// Where replies go, if not to the sender
    #[arg(long, env = "INTAKE_MAIL_REPLY_TO", global = true)]
    pub mail_reply_to: Option<String>,
    /// The partner's name, as the e-mails sign it
    #[arg(
        long,
        env = "INTAKE_PARTNER_NAME",
        default_value = "Recruitment",
        global = true
    )]
    pub partner_name: String,
    /// JSON pointer to the applicant's language (fi, sv or en; anything else: fi) in an LT profile
    #[arg(
        long,
        env = "INTAKE_LT_LANGUAGE_POINTER",
        default_value = "/language",
        global = true
    )]
    pub lt_language_pointer: String,
    /// JSON pointer to the applicant's first name in an LT profile (absent: a neutral greeting)
    #[arg(
        long,
        env = "INTAKE_LT_FIRST_NAME_POINTER",
        default_value = "/first_name",
        global = true
    )]
    pub lt_first_name_pointer: String,
    /// Directory of template files overriding the built-in ones, by the same names
    /// (acknowledgement.<fi|sv|en>.<subject.txt|txt|html>)
    #[arg(long, env = "INTAKE_TEMPLATES_DIR", global = true)]
    pub templates_dir: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct SmtpSettings {
    pub url: SecretString,
    pub password: Option<SecretString>,
    pub timeout: Duration,
    /// The CA file and client certificate; default: none.
    pub tls: SmtpTls,
}

#[derive(Clone, Debug)]
pub struct MailSettings {
    /// `None`: .eml files in `outbox_dir`.
    pub smtp: Option<SmtpSettings>,
    pub concurrency: usize,
    pub outbox_dir: PathBuf,
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub partner_name: String,
    pub language_pointer: String,
    pub first_name_pointer: String,
    pub templates_dir: Option<PathBuf>,
}

impl MailSettings {
    /// The defaults, writing .eml files to `outbox_dir`.
    pub fn files(outbox_dir: PathBuf) -> MailSettings {
        MailSettings {
            smtp: None,
            concurrency: DEFAULT_CONCURRENCY,
            outbox_dir,
            from: "Recruitment <no-reply@localhost>"
                .parse()
                .expect("the built-in sender address parses"),
            reply_to: None,
            partner_name: "Recruitment".into(),
            language_pointer: "/language".into(),
            first_name_pointer: "/first_name".into(),
            templates_dir: None,
        }
    }
}

impl MailArgs {
    pub fn into_settings(mut self) -> Result<MailSettings, SettingsError> {
        let smtp = match self.smtp_url.take().filter(|url| !url.is_empty()) {
            None => {
                refuse_tls_files_without_relay(&self)?;
                None
            }
            Some(url) => Some(SmtpSettings {
                url: SecretString::from(url),
                password: resolve_secret(
                    "INTAKE_SMTP_PASSWORD",
                    self.smtp_password,
                    self.smtp_password_file,
                )?,
                timeout: self.smtp_timeout,
                tls: SmtpTls::from_files(
                    self.smtp_ca_file.as_deref(),
                    self.smtp_client_cert.as_deref(),
                    self.smtp_client_key.as_deref(),
                )?,
            }),
        };
        let mailbox = |name: &'static str, text: &str| {
            text.parse::<Mailbox>().map_err(|_| SettingsError::Invalid {
                name,
                reason: "not an e-mail address (e.g. \"Name <name@example.fi>\")".into(),
            })
        };
        Ok(MailSettings {
            smtp,
            concurrency: self.email_concurrency,
            outbox_dir: self.mail_outbox_dir,
            from: mailbox("INTAKE_MAIL_FROM", &self.mail_from)?,
            reply_to: self
                .mail_reply_to
                .map(|text| mailbox("INTAKE_MAIL_REPLY_TO", &text))
                .transpose()?,
            partner_name: self.partner_name,
            language_pointer: self.lt_language_pointer,
            first_name_pointer: self.lt_first_name_pointer,
            templates_dir: self.templates_dir,
        })
    }
}

/// TLS files without a relay would be ignored, and every e-mail become an
/// .eml file: a mistake to name at start.
fn refuse_tls_files_without_relay(args: &MailArgs) -> Result<(), SettingsError> {
    let set = [
        ("INTAKE_SMTP_CA_FILE", &args.smtp_ca_file),
        ("INTAKE_SMTP_CLIENT_CERT", &args.smtp_client_cert),
        ("INTAKE_SMTP_CLIENT_KEY", &args.smtp_client_key),
    ]
    .into_iter()
    .find(|(_, path)| path.is_some());
    match set {
        Some((name, _)) => Err(SettingsError::Invalid {
            name,
            reason: "set without INTAKE_SMTP_URL".into(),
        }),
        None => Ok(()),
    }
}
