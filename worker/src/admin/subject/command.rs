//! The `worker subject` command line.

use std::io::Write;

use uuid::Uuid;

use super::{Subject, SubjectError, erase, export};
use crate::apply::erasure::Cause;
use crate::email::Mailer;

#[derive(clap::Subcommand, Debug, Clone)]
pub enum SubjectCommand {
    /// Print everything stored about a person as JSON (a GDPR access request)
    Export {
        #[command(flatten)]
        who: Who,
    },
    /// Erase a person's data, exactly as a revocation or withdrawal would (a GDPR erasure
    /// request made to the partner); leaves a non-personal tombstone and erasure record
    Erase {
        #[command(flatten)]
        who: Who,
    },
}

/// Whom: an LT applicant, or a LINA employee of one store.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct Who {
    /// An LT applicant's mydatashare_user_id
    #[arg(long, value_name = "MYDATASHARE_USER_ID")]
    pub lt: Option<String>,
    /// A LINA employee: the store's webhook uuid and the userUuid
    #[arg(long, num_args = 2, value_names = ["WEBHOOK", "USER_UUID"])]
    pub lina: Option<Vec<Uuid>>,
}

impl Who {
    pub fn subject(self) -> Option<Subject> {
        match (self.lt, self.lina.as_deref()) {
            (Some(user_id), _) => Some(Subject::Lt { user_id }),
            (None, Some([webhook, user])) => Some(Subject::Lina {
                webhook: *webhook,
                user: *user,
            }),
            _ => None,
        }
    }
}

pub async fn run(
    command: SubjectCommand,
    pool: &common::db::DbPool,
    hasher: &common::subject::SubjectHasher,
    mailer: &Mailer,
    erasure_clock_margin: std::time::Duration,
    out: &mut dyn Write,
) -> Result<(), SubjectError> {
    match command {
        SubjectCommand::Export { who } => {
            let Some(subject) = who.subject() else {
                return Ok(());
            };
            let exported = export(pool, hasher, &subject).await?;
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&exported).unwrap_or_default()
            )
            .map_err(|error| SubjectError::Output(error.to_string()))?;
        }
        SubjectCommand::Erase { who } => {
            let Some(subject) = who.subject() else {
                return Ok(());
            };
            let erased = erase(
                pool,
                hasher,
                mailer,
                &subject,
                Cause::Request,
                erasure_clock_margin,
            )
            .await?;
            writeln!(
                out,
                "erased: {} data row(s), {} unsent e-mail(s); a tombstone remains",
                erased.rows, erased.emails
            )
            .map_err(|error| SubjectError::Output(error.to_string()))?;
        }
    }
    Ok(())
}
