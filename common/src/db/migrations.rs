//! Embedded SQL migrations (refinery), run under a PostgreSQL advisory lock
//! because many workers may start at once.

use deadpool_postgres::Pool;

use super::DbError;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Arbitrary, fixed: the key of the advisory lock that serialises migrations.
const MIGRATION_LOCK_KEY: i64 = 0x696e_7461_6b65; // "intake"

/// Applies every pending migration; returns how many were applied.
pub async fn run_migrations(pool: &Pool) -> Result<usize, DbError> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let report = embedded::migrations::runner()
        .run_async(&mut **client)
        .await;
    // Unlock whatever happened; the session ending would also release it.
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let report = report.map_err(|error| DbError::Migration(error.to_string()))?;
    Ok(report.applied_migrations().len())
}
