//! Publishing e-mail jobs: each carries only its outbox row's id.

use common::Envelope;
use uuid::Uuid;

use crate::context::WorkerContext;

/// The job's body: the outbox row's id, nothing personal.
pub fn job_body(outbox_id: Uuid) -> Vec<u8> {
    serde_json::json!({ "outbox_id": outbox_id })
        .to_string()
        .into_bytes()
}

/// The outbox row a job names (`None`: not a job of ours).
pub fn outbox_id_of_job(body: &[u8]) -> Option<Uuid> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    Uuid::parse_str(body.get("outbox_id")?.as_str()?).ok()
}

/// Publishes the jobs of these outbox rows; returns the ids published.
pub async fn publish_jobs(context: &WorkerContext, ids: &[Uuid]) -> Vec<Uuid> {
    // Confirmed concurrently: a batch of new applications should not wait
    // for one confirm after another before it is acked.
    let jobs: Vec<_> = ids.iter().map(|id| publish_job(context, *id)).collect();
    futures_util::future::join_all(jobs)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Publishes one outbox row's job; `None` when the broker did not confirm it.
async fn publish_job(context: &WorkerContext, id: Uuid) -> Option<Uuid> {
    let queue = context.topology.work_queue(common::amqp::WorkQueue::Email);
    let envelope = Envelope::new(common::EventKind::EmailAcknowledgement, None, job_body(id));
    match context
        .publisher
        .publish("", &queue, &envelope.body, envelope.amqp_properties())
        .await
    {
        Ok(()) => Some(id),
        Err(error) => {
            tracing::warn!(
                message = "E-mail job not published; the sweeper will.",
                outbox_id = %id,
                reason = error.code()
            );
            None
        }
    }
}
