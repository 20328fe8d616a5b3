//! The stores table (`lina_webhook`) and what removing a store erases.

use chrono::{DateTime, Utc};
use common::Source;
use common::db::DbPool;
use common::subject::SubjectHasher;
use uuid::Uuid;

use super::LinaError;
use crate::subject_state;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    pub uuid: Uuid,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub employees: i64,
}

pub async fn add_webhook(pool: &DbPool, uuid: Uuid, label: &str) -> Result<(), LinaError> {
    let client = pool.get().await?;
    let inserted = client
        .execute(
            "INSERT INTO lina_webhook (uuid, label) VALUES ($1, $2) ON CONFLICT (uuid) DO NOTHING",
            &[&uuid, &label],
        )
        .await?;
    if inserted == 0 {
        return Err(LinaError::AlreadyRegistered(uuid));
    }
    Ok(())
}

pub async fn list_webhooks(pool: &DbPool) -> Result<Vec<Store>, LinaError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT w.uuid, w.label, w.created_at, count(e.user_uuid)
             FROM lina_webhook w LEFT JOIN lina_employee e ON e.webhook = w.uuid
             GROUP BY w.uuid ORDER BY w.created_at, w.uuid",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Store {
            uuid: row.get(0),
            label: row.get(1),
            created_at: row.get(2),
            employees: row.get(3),
        })
        .collect())
}

/// How many employees a store has (for the confirmation question).
pub async fn employee_count(pool: &DbPool, uuid: Uuid) -> Result<i64, LinaError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT (SELECT count(*) FROM lina_employee WHERE webhook = $1) FROM lina_webhook WHERE uuid = $1",
            &[&uuid],
        )
        .await?
        .ok_or(LinaError::UnknownStore(uuid))?;
    Ok(row.get(0))
}

/// Removes the store and erases every employee's personal data with it, in
/// one transaction: each employee's state row becomes a tombstone with an
/// erasure record (cause `store_removed`), exactly as a withdrawal would.
/// Returns how many employees were erased.
pub async fn remove_webhook(
    pool: &DbPool,
    hasher: &SubjectHasher,
    uuid: Uuid,
) -> Result<usize, LinaError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    let store = transaction
        .query_opt(
            "SELECT 1 FROM lina_webhook WHERE uuid = $1 FOR UPDATE",
            &[&uuid],
        )
        .await?;
    if store.is_none() {
        return Err(LinaError::UnknownStore(uuid));
    }
    let users: Vec<Uuid> = transaction
        .query(
            "SELECT user_uuid FROM lina_employee WHERE webhook = $1",
            &[&uuid],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let subjects: Vec<_> = users
        .iter()
        .map(|user| {
            (
                hasher.lina(&uuid.to_string(), &user.to_string()),
                Source::Lina,
            )
        })
        .collect();
    subject_state::lock(&transaction, &subjects).await?;
    for (subject, _) in &subjects {
        let mut state = subject_state::load(&transaction, subject).await?;
        state.erased = true;
        subject_state::save(&transaction, subject, &state).await?;
        subject_state::log_erasure(&transaction, subject, Source::Lina, "store_removed").await?;
    }
    transaction
        .execute("DELETE FROM lina_employee WHERE webhook = $1", &[&uuid])
        .await?;
    transaction
        .execute("DELETE FROM lina_webhook WHERE uuid = $1", &[&uuid])
        .await?;
    transaction.commit().await?;
    Ok(users.len())
}
