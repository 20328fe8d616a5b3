//! Everything stored about a person, as JSON (a GDPR access request).

use common::db::DbPool;
use common::subject::SubjectHasher;
use serde_json::{Value, json};

use super::{Subject, SubjectError};

pub async fn export(
    pool: &DbPool,
    hasher: &SubjectHasher,
    subject: &Subject,
) -> Result<Value, SubjectError> {
    let key = subject.key(hasher);
    let client = pool.get().await?;
    let data = match subject {
        Subject::Lt { user_id } => client
            .query_opt(
                "SELECT json_build_object(
                     'mydatashare_user_id', mydatashare_user_id, 'email', email, 'status', status,
                     'profile', profile, 'first_received_at', first_received_at,
                     'last_received_at', last_received_at, 'updated_at', updated_at)
                 FROM lt_application WHERE mydatashare_user_id = $1",
                &[user_id],
            )
            .await?
            .map(|row| row.get::<_, Value>(0)),
        Subject::Lina { webhook, user } => client
            .query_opt(
                "SELECT json_build_object(
                     'webhook', e.webhook, 'store', w.label, 'user_uuid', e.user_uuid,
                     'first_name', e.first_name, 'last_name', e.last_name, 'email', e.email,
                     'bereich', e.bereich, 'data', e.data, 'consented_at', e.consented_at,
                     'updated_at', e.updated_at)
                 FROM lina_employee e JOIN lina_webhook w ON w.uuid = e.webhook
                 WHERE e.webhook = $1 AND e.user_uuid = $2",
                &[webhook, user],
            )
            .await?
            .map(|row| row.get::<_, Value>(0)),
    };
    let emails: Vec<Value> = client
        .query(
            "SELECT json_build_object(
                 'id', id, 'template', template, 'language', language, 'recipient', recipient,
                 'status', status, 'created_at', created_at, 'sent_at', sent_at)
             FROM email_outbox WHERE subject_key = $1 ORDER BY created_at",
            &[&key.as_bytes()],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let state = client
        .query_opt(
            "SELECT json_build_object(
                 'newest_event_at', newest_event_at, 'erased_at', erased_at, 'updated_at', updated_at)
             FROM subject_state WHERE subject_key = $1",
            &[&key.as_bytes()],
        )
        .await?
        .map(|row| row.get::<_, Value>(0));
    let erasures: Vec<Value> = client
        .query(
            "SELECT json_build_object('cause', cause, 'erased_at', erased_at)
             FROM erasure_log WHERE subject_key = $1 ORDER BY erased_at",
            &[&key.as_bytes()],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    Ok(json!({
        "source": subject.source().as_str(),
        "data": data,
        "emails": emails,
        "processing_state": state,
        "erasures": erasures,
    }))
}
