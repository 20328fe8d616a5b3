//! The acknowledgement e-mail every new LT applicant gets (LT's contract).
//! Here: the outbox table, templates, composing, the mailer and publishing jobs; not here: the
//! e-mail queue's consumer (`consume/email.rs`) and the outbox sweeper (`background/`).
//!
//! Exactly once per application: the outbox row is written in the same
//! transaction that creates the application; the job (the row's id, never an
//! address) is published after commit, and a sweeper republishes rows a crash
//! left unpublished; sending locks the row, sends, and marks it sent (keeping
//! no address) in one transaction, so a redelivered job finds it sent.

pub mod compose;
pub mod jobs;
mod mailer;
pub mod outbox;
mod settings;
mod smtp_tls;
mod templates;

pub use jobs::{job_body, outbox_id_of_job, publish_jobs};
pub use mailer::Mailer;
pub use settings::{DEFAULT_CONCURRENCY, MailArgs, MailSettings, SmtpSettings};
pub use smtp_tls::{ClientIdentity, SmtpTls};
pub use templates::{Rendered, TemplateError, Templates, language_of};

/// Everything the worker needs to send e-mails.
pub struct Email {
    pub settings: MailSettings,
    pub templates: Templates,
    pub mailer: Mailer,
}

impl Email {
    pub fn new(settings: MailSettings) -> Result<Email, EmailSetupError> {
        let templates = Templates::load(settings.templates_dir.as_deref())?;
        let mailer = Mailer::new(&settings)?;
        Ok(Email {
            settings,
            templates,
            mailer,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmailSetupError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("invalid SMTP settings: {0}")]
    Smtp(String),
    #[error("cannot create the mail outbox directory: {0}")]
    OutboxDir(#[from] std::io::Error),
}
