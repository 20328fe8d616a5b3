//! The stores table (`lina_webhook`) and what removing a store erases.

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::db::DbPool;
use common::subject::{SubjectHasher, SubjectKey};
use uuid::Uuid;

use super::LinaError;
use crate::apply::erasure::{self, Cause, Person};
use crate::email::Mailer;

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
/// one transaction, through the one erasure (cause `store_removed`): each
/// employee's state row becomes a tombstone with an erasure record, exactly
/// as a withdrawal would. The store keeps a removal key (the erasure's
/// "now"), so any event for it received before the removal is stale when
/// it comes back, also after the store is added again and also for
/// employees who had no row yet. Returns how many employees were erased.
pub async fn remove_webhook(
    pool: &DbPool,
    hasher: &SubjectHasher,
    mailer: &Mailer,
    uuid: Uuid,
    erasure_clock_margin: Duration,
) -> Result<usize, LinaError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    // The store first, then its subjects: the order a batch locks them in.
    let store = transaction
        .query_opt(
            "SELECT 1 FROM lina_webhook WHERE uuid = $1 FOR UPDATE",
            &[&uuid],
        )
        .await?;
    if store.is_none() {
        return Err(LinaError::UnknownStore(uuid));
    }
    let employees: Vec<(Person, SubjectKey)> = transaction
        .query(
            "SELECT user_uuid FROM lina_employee WHERE webhook = $1",
            &[&uuid],
        )
        .await?
        .iter()
        .map(|row| {
            let person = Person::Lina {
                webhook: uuid,
                user: row.get(0),
            };
            let key = person.key(hasher);
            (person, key)
        })
        .collect();
    let (_, removal) = erasure::erase_now(
        &transaction,
        &employees,
        Cause::StoreRemoved,
        erasure_clock_margin,
        mailer,
    )
    .await?;
    transaction
        .execute(
            "INSERT INTO lina_store_removal (webhook, removed_event_at, removed_event_id)
             VALUES ($1, $2, $3)
             ON CONFLICT (webhook) DO UPDATE SET
                 removed_event_at = EXCLUDED.removed_event_at,
                 removed_event_id = EXCLUDED.removed_event_id,
                 removed_at = now()",
            &[&uuid, &removal.at, &removal.id],
        )
        .await?;
    transaction
        .execute("DELETE FROM lina_webhook WHERE uuid = $1", &[&uuid])
        .await?;
    transaction.commit().await?;
    Ok(employees.len())
}
