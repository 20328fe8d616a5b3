//! `INTAKE_SUBJECT_HASH_KEY` checked against the database, before anything
//! is applied or administered. Every subject is known only by a keyed hash
//! of its id: a worker with another key (a typo, a secret rotated in one
//! place) would take every person for someone new, forget their order and
//! their tombstones, and let erased people come back with the next resend.
//!
//! The database keeps the key's fingerprint (`intake_setting`). On a
//! database from before the fingerprint, the key is checked against the
//! people it still holds: their keyed hashes must have state rows. A
//! database holding only tombstones cannot be checked that way; the first
//! key to start records its fingerprint. Re-keying is impossible: a
//! tombstone is a keyed hash of an id that is no longer stored, so it
//! cannot be hashed again with a new key — keep the key.

use common::db::Client;
use common::subject::{SubjectHasher, SubjectKey};
use uuid::Uuid;

const FINGERPRINT: &str = "subject_hash_key_fingerprint";

/// How many stored people are rehashed to check a database without a
/// fingerprint.
const SAMPLE: i64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum HashKeyError {
    #[error(
        "INTAKE_SUBJECT_HASH_KEY is not the key this database's subjects were hashed with \
         ({0}); with it every person would be taken for someone new and erased people could \
         come back. Use the key the database was set up with (re-keying is impossible: \
         tombstones are keyed hashes of ids that are no longer stored)"
    )]
    Mismatch(&'static str),
    #[error("cannot check INTAKE_SUBJECT_HASH_KEY against the database: {}", common::db::describe(.0))]
    Database(#[from] tokio_postgres::Error),
}

/// Refuses a key that does not match the database's; records the
/// fingerprint where none is recorded yet.
pub async fn check(client: &Client, hasher: &SubjectHasher) -> Result<(), HashKeyError> {
    let fingerprint = hasher.fingerprint();
    if let Some(stored) = stored_fingerprint(client).await? {
        return match stored == fingerprint {
            true => Ok(()),
            false => Err(HashKeyError::Mismatch("its fingerprint differs")),
        };
    }
    if !stored_people_match(client, hasher).await? {
        return Err(HashKeyError::Mismatch(
            "the people it holds have no state rows under this key",
        ));
    }
    client
        .execute(
            "INSERT INTO intake_setting (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING",
            &[&FINGERPRINT, &fingerprint.as_slice()],
        )
        .await?;
    // Another process with another key may have recorded its own first.
    match stored_fingerprint(client).await? == Some(fingerprint) {
        true => Ok(()),
        false => Err(HashKeyError::Mismatch("its fingerprint differs")),
    }
}

async fn stored_fingerprint(client: &Client) -> Result<Option<[u8; 32]>, HashKeyError> {
    let row = client
        .query_opt(
            "SELECT value FROM intake_setting WHERE name = $1",
            &[&FINGERPRINT],
        )
        .await?;
    Ok(match row {
        Some(row) => Some(row.try_get::<_, &[u8]>(0)?.try_into().unwrap_or([0; 32])),
        None => None,
    })
}

/// Whether the keyed hashes of a few stored people have state rows (true
/// when no one is stored: nothing to check against).
async fn stored_people_match(
    client: &Client,
    hasher: &SubjectHasher,
) -> Result<bool, HashKeyError> {
    let mut keys: Vec<SubjectKey> = Vec::new();
    for row in client
        .query(
            "SELECT mydatashare_user_id FROM lt_application LIMIT $1",
            &[&SAMPLE],
        )
        .await?
    {
        keys.push(hasher.lt(row.try_get(0)?));
    }
    for row in client
        .query(
            "SELECT webhook, user_uuid FROM lina_employee LIMIT $1",
            &[&SAMPLE],
        )
        .await?
    {
        let (webhook, user): (Uuid, Uuid) = (row.try_get(0)?, row.try_get(1)?);
        keys.push(hasher.lina(&webhook.to_string(), &user.to_string()));
    }
    if keys.is_empty() {
        return Ok(true);
    }
    let keys: Vec<&[u8]> = keys.iter().map(SubjectKey::as_bytes).collect();
    let found: i64 = client
        .query_one(
            "SELECT count(*) FROM subject_state WHERE subject_key = ANY($1)",
            &[&keys],
        )
        .await?
        .try_get(0)?;
    Ok(found > 0)
}
