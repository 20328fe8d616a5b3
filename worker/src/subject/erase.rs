//! Erasing a person on request or by retention.

use common::db::DbPool;
use common::subject::SubjectHasher;

use super::{Subject, SubjectError};
use crate::email::{Mailer, outbox};
use crate::subject_state;

/// What an erasure removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    /// Rows of personal data deleted (application or employee).
    pub rows: u64,
    /// Unsent e-mails deleted.
    pub emails: usize,
}

/// Erases every piece of `subject`'s personal data in one transaction and
/// leaves a tombstone with an erasure record (`cause`: `request`,
/// `retention`, …). Erasing someone we never had still leaves a tombstone.
pub async fn erase(
    pool: &DbPool,
    hasher: &SubjectHasher,
    mailer: &Mailer,
    subject: &Subject,
    cause: &str,
) -> Result<Erased, SubjectError> {
    let key = subject.key(hasher);
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    subject_state::lock(&transaction, &[(key, subject.source())]).await?;
    let rows = match subject {
        Subject::Lt { user_id } => {
            transaction
                .execute(
                    "DELETE FROM lt_application WHERE mydatashare_user_id = $1",
                    &[user_id],
                )
                .await?
        }
        Subject::Lina { webhook, user } => {
            transaction
                .execute(
                    "DELETE FROM lina_employee WHERE webhook = $1 AND user_uuid = $2",
                    &[webhook, user],
                )
                .await?
        }
    };
    let outbox_ids = outbox::erase_for(&transaction, &key).await?;
    let mut state = subject_state::load(&transaction, &key).await?;
    state.erased = true;
    subject_state::save(&transaction, &key, &state).await?;
    subject_state::log_erasure(&transaction, &key, subject.source(), cause).await?;
    transaction.commit().await?;
    mailer.remove_copies(&outbox_ids);
    tracing::info!(message = "Subject erased.", subject = %key, cause, rows);
    Ok(Erased {
        rows,
        emails: outbox_ids.len(),
    })
}
