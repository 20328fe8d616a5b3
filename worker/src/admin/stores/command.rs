//! The `worker lina` command line.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use common::db::DbPool;
use common::settings::{SettingsError, resolve_secret};
use common::subject::SubjectHasher;
use uuid::Uuid;

use crate::email::Mailer;

use super::webhooks::employee_count;
use super::{LinaApi, LinaError, add_webhook, list_webhooks, register, remove_webhook};

#[derive(clap::Subcommand, Debug, Clone)]
pub enum LinaCommand {
    /// The stores (LINA webhooks) we take employee data from
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Register our webhook URL for a store with LINA's Third Party API, store the uuid LINA
    /// returns, and print it
    Register {
        /// Our public webhook URL for LINA (…/webhooks/lina/<secret>)
        #[arg(long)]
        url: String,
        /// A name for the store, for people
        #[arg(long)]
        label: String,
        #[command(flatten)]
        api: LinaArgs,
    },
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum WebhooksCommand {
    /// Remember a store registered elsewhere, by its webhook uuid
    Add {
        uuid: Uuid,
        #[arg(long)]
        label: String,
    },
    /// List the stores with their employee counts
    List,
    /// Forget a store. THIS ERASES THE PERSONAL DATA OF ALL ITS EMPLOYEES (each gets a
    /// tombstone, as after a withdrawal); asks first unless --yes
    Remove {
        uuid: Uuid,
        /// Do not ask
        #[arg(long)]
        yes: bool,
    },
}

/// LINA's Third Party API, as `worker lina register` reaches it.
#[derive(clap::Args, Debug, Clone)]
pub struct LinaArgs {
    /// Base URL of LINA's Third Party API
    #[arg(
        long,
        env = "INTAKE_LINA_API_BASE",
        default_value = "https://app.lina.de"
    )]
    pub lina_api_base: String,
    /// Our API key for LINA's Third Party API (required for register)
    #[arg(long, env = "INTAKE_LINA_API_KEY", hide_env_values = true)]
    pub lina_api_key: Option<String>,
    /// File holding the API key (instead of INTAKE_LINA_API_KEY)
    #[arg(long, env = "INTAKE_LINA_API_KEY_FILE")]
    pub lina_api_key_file: Option<PathBuf>,
    /// The HTTP header that carries the API key
    #[arg(long, env = "INTAKE_LINA_API_KEY_HEADER", default_value = "X-API-Key")]
    pub lina_api_key_header: String,
    /// How long to wait for LINA's answer
    #[arg(long, env = "INTAKE_LINA_API_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lina_api_timeout: Duration,
}

impl LinaArgs {
    pub fn into_api(self) -> Result<LinaApi, SettingsError> {
        let key = resolve_secret(
            "INTAKE_LINA_API_KEY",
            self.lina_api_key,
            self.lina_api_key_file,
        )?
        .ok_or_else(|| {
            SettingsError::Missing(vec![
                "INTAKE_LINA_API_KEY (or INTAKE_LINA_API_KEY_FILE)".into(),
            ])
        })?;
        Ok(LinaApi {
            base: self.lina_api_base,
            key,
            key_header: self.lina_api_key_header,
            timeout: self.lina_api_timeout,
        })
    }
}

/// What `worker lina` needs besides its arguments.
pub struct LinaContext<'a> {
    pub pool: &'a DbPool,
    pub hasher: &'a SubjectHasher,
    /// Removing a store erases its employees (their unsent e-mails too).
    pub mailer: &'a Mailer,
    /// `INTAKE_ERASURE_CLOCK_MARGIN`, for a store's removal key.
    pub erasure_clock_margin: Duration,
    /// Where a confirmation is read from (the terminal).
    pub answers: &'a mut dyn BufRead,
    pub out: &'a mut dyn Write,
}

pub async fn run(command: LinaCommand, context: LinaContext<'_>) -> Result<(), LinaError> {
    let LinaContext {
        pool,
        hasher,
        mailer,
        erasure_clock_margin,
        answers,
        out,
    } = context;
    match command {
        LinaCommand::Webhooks {
            command: WebhooksCommand::Add { uuid, label },
        } => {
            add_webhook(pool, uuid, &label).await?;
            writeln!(out, "store {uuid} added ({label})")?;
        }
        LinaCommand::Webhooks {
            command: WebhooksCommand::List,
        } => {
            writeln!(
                out,
                "{:<36}  {:>9}  {:<25}  LABEL",
                "UUID", "EMPLOYEES", "CREATED"
            )?;
            for store in list_webhooks(pool).await? {
                let created = store.created_at.format("%Y-%m-%d %H:%M:%S UTC");
                writeln!(
                    out,
                    "{:<36}  {:>9}  {:<25}  {}",
                    store.uuid, store.employees, created, store.label
                )?;
            }
        }
        LinaCommand::Webhooks {
            command: WebhooksCommand::Remove { uuid, yes },
        } => {
            if !yes {
                let employees = employee_count(pool, uuid).await?;
                write!(
                    out,
                    "Removing store {uuid} erases the personal data of its {employees} employee(s).\n\
                     Type the store's uuid to confirm: "
                )?;
                out.flush()?;
                let mut answer = String::new();
                answers.read_line(&mut answer)?;
                if answer.trim() != uuid.to_string() {
                    return Err(LinaError::NotConfirmed);
                }
            }
            let erased = remove_webhook(pool, hasher, mailer, uuid, erasure_clock_margin).await?;
            writeln!(out, "store {uuid} removed; {erased} employee(s) erased")?;
        }
        LinaCommand::Register { url, label, api } => {
            let api = api.into_api()?;
            let uuid = register(pool, &api, &url, &label).await?;
            writeln!(out, "{uuid}")?;
        }
    }
    Ok(())
}
