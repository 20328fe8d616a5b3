//! Publishing an envelope to its work queue, within the in-flight bound.

use common::Envelope;

use crate::error::GatewayError;
use crate::state::AppState;

/// Publishes `envelope` and returns once the broker confirmed it.
pub async fn publish_envelope(state: &AppState, envelope: &Envelope) -> Result<(), GatewayError> {
    let _permit = state
        .in_flight
        .try_acquire()
        .map_err(|_| GatewayError::Overloaded)?;
    let queue = state.topology.work_queue(envelope.kind.work_queue());
    state
        .publisher
        .publish("", &queue, &envelope.body, envelope.amqp_properties())
        .await
        .map_err(|error| {
            tracing::warn!(
                message = "Publish failed.",
                event_id = %envelope.id,
                kind = %envelope.kind,
                reason = error.code(),
            );
            GatewayError::Unavailable(error)
        })
}
