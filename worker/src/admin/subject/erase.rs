//! Erasing a person on request (`worker subject erase`): the one erasure
//! (`crate::apply::erasure`), with cause `request`, in a transaction of its own.

use std::time::Duration;

use common::db::DbPool;
use common::subject::SubjectHasher;

use super::{Subject, SubjectError};
use crate::apply::erasure::{self, Cause, Erased};
use crate::email::Mailer;

/// Erases every piece of `subject`'s personal data in one transaction and
/// leaves a tombstone with an erasure record; `margin` is
/// `INTAKE_ERASURE_CLOCK_MARGIN`. Erasing someone we never had still
/// leaves a tombstone, so nothing received before it applies later.
pub async fn erase(
    pool: &DbPool,
    hasher: &SubjectHasher,
    mailer: &Mailer,
    subject: &Subject,
    cause: Cause,
    margin: Duration,
) -> Result<Erased, SubjectError> {
    let key = subject.key(hasher);
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    let (erased, _) = erasure::erase_now(
        &transaction,
        &[(subject.clone(), key)],
        cause,
        margin,
        mailer,
    )
    .await?;
    transaction.commit().await?;
    tracing::info!(
        message = "Subject erased.",
        subject = %key,
        cause = cause.as_str(),
        rows = erased.rows
    );
    Ok(erased)
}
