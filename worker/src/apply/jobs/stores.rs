//! The LINA stores a batch's events name: which are registered, and the
//! removal key of any that was removed (`lina_store_removal`). An event
//! ordered before its store's removal is stale — also after the store was
//! added again, and also for an employee who had no row yet — and that is
//! checked before `unknown_webhook`, so such events are dropped and counted
//! instead of parked in the dead-letter queue.

use std::collections::{HashMap, HashSet};

use common::db::Transaction;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::apply::subject_state::OrderKey;
use crate::error::JobError;

#[derive(Clone, Debug, Default)]
pub struct Stores {
    registered: HashSet<Uuid>,
    removed: HashMap<Uuid, OrderKey>,
}

impl Stores {
    /// What the batch knows of `stores` (sorted, deduplicated). The
    /// registered ones are locked `FOR KEY SHARE` until the commit, so a
    /// store's removal (which locks its row `FOR UPDATE`) waits for the
    /// batch, or the batch for the removal and then sees its key. Run before
    /// the subjects are locked: a removal locks the store, then its
    /// subjects, in the same order.
    pub async fn lookup(
        transaction: &Transaction<'_>,
        stores: &[Uuid],
    ) -> Result<Stores, JobError> {
        if stores.is_empty() {
            return Ok(Stores::default());
        }
        // Planned at each execution, like `pipeline::Statement::planned_each_time`.
        let (registered, removed) = futures_util::future::try_join(
            transaction.query_typed(
                "SELECT uuid FROM lina_webhook WHERE uuid = ANY($1) ORDER BY uuid FOR KEY SHARE",
                &[(&stores, Type::UUID_ARRAY)],
            ),
            transaction.query_typed(
                "SELECT webhook, removed_event_at, removed_event_id FROM lina_store_removal
                 WHERE webhook = ANY($1)",
                &[(&stores, Type::UUID_ARRAY)],
            ),
        )
        .await?;
        let mut known = Stores::default();
        for row in registered {
            known.registered.insert(row.try_get(0)?);
        }
        for row in removed {
            let key = OrderKey {
                at: row.try_get(1)?,
                id: row.try_get(2)?,
            };
            known.removed.insert(row.try_get(0)?, key);
        }
        Ok(known)
    }

    pub fn is_registered(&self, store: &Uuid) -> bool {
        self.registered.contains(store)
    }

    /// Whether an event ordered at `order` came before `store` was removed.
    pub fn removed_after(&self, store: &Uuid, order: &OrderKey) -> bool {
        self.removed
            .get(store)
            .is_some_and(|removal| order <= removal)
    }

    #[cfg(test)]
    pub fn with(registered: &[Uuid], removed: &[(Uuid, OrderKey)]) -> Stores {
        Stores {
            registered: registered.iter().copied().collect(),
            removed: removed.iter().copied().collect(),
        }
    }
}
