//! Publishing an envelope, within the in-flight bound: for LT a failure is a
//! 503 (LT resends); for LINA, which never resends, a failure of any kind
//! puts the event in the spool instead.

use common::Envelope;

use crate::error::GatewayError;
use crate::spool::{SpoolError, SpoolRecord};
use crate::state::{AppState, LinaState};

/// Publishes `envelope` and returns once the broker confirmed it.
pub async fn publish_envelope(state: &AppState, envelope: &Envelope) -> Result<(), GatewayError> {
    let _permit = state
        .in_flight
        .try_acquire()
        .map_err(|_| GatewayError::Overloaded)?;
    let queue = state.topology.work_queue(envelope.kind.work_queue());
    let started = std::time::Instant::now();
    state
        .publisher
        .publish("", &queue, &envelope.body, envelope.amqp_properties())
        .await
        .map(|()| {
            state.metrics.confirmed(started.elapsed());
            state.metrics.stored(envelope.kind.as_str(), "published");
        })
        .map_err(|error| {
            state.metrics.publish_failed(error.code());
            tracing::warn!(
                message = "Publish failed.",
                event_id = %envelope.id,
                kind = %envelope.kind,
                reason = error.code(),
            );
            GatewayError::Unavailable(error)
        })
}

/// Where a LINA event ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Published,
    Spooled,
}

/// Publishes `record`, confirmed within `INTAKE_LINA_SPOOL_AFTER`; on any
/// other outcome (no connection, timeout, nack, return, the in-flight bound
/// full) appends it to the spool. `Err` only when the spool cannot take it
/// either. A publish confirmed after its deadline means the event is also in
/// the spool: the worker drops the second copy as a duplicate (same id).
pub async fn publish_or_spool(
    state: &AppState,
    lina: &LinaState,
    record: SpoolRecord,
) -> Result<Stored, GatewayError> {
    let spool = &lina.spool;
    let failure = match state.in_flight.try_acquire() {
        Ok(_permit) => {
            let started = std::time::Instant::now();
            match record
                .publish(&state.publisher, &state.topology, lina.spool_after)
                .await
            {
                Ok(()) => {
                    state.metrics.confirmed(started.elapsed());
                    state
                        .metrics
                        .stored(record.envelope.kind.as_str(), stored_label(&record, false));
                    return Ok(Stored::Published);
                }
                Err(error) => {
                    state.metrics.publish_failed(error.code());
                    error.code()
                }
            }
        }
        Err(_) => "overloaded",
    };
    let envelope_id = record.envelope.id;
    let kind = record.envelope.kind;
    let label = stored_label(&record, true);
    let appender = spool.clone();
    let appended = tokio::task::spawn_blocking(move || appender.append(&record))
        .await
        .map_err(|_| GatewayError::SpoolUnavailable)?;
    match appended {
        Ok(depth) => {
            state.metrics.stored(kind.as_str(), label);
            tracing::warn!(
                message = "Event spooled.",
                event_id = %envelope_id,
                kind = %kind,
                reason = failure,
                spool_events = depth.events,
                spool_bytes = depth.bytes,
            );
            Ok(Stored::Spooled)
        }
        Err(error) => {
            let full = matches!(error, SpoolError::Full(_));
            tracing::error!(
                message = "LINA event refused: the broker and the spool cannot take it.",
                event_id = %envelope_id,
                kind = %kind,
                reason = if full { "spool_full" } else { "spool_unavailable" },
                refused_total = spool.refused(),
                write_failures_total = spool.write_failures(),
                %error,
            );
            Err(if full {
                GatewayError::SpoolFull
            } else {
                GatewayError::SpoolUnavailable
            })
        }
    }
}

/// How a LINA record was kept, for `intake_gateway_events_total`.
fn stored_label(record: &SpoolRecord, spooled: bool) -> &'static str {
    match (record.target, spooled) {
        (crate::spool::Target::Quarantine, false) => "quarantined",
        (crate::spool::Target::Quarantine, true) => "quarantine_spooled",
        (crate::spool::Target::Work, false) => "published",
        (crate::spool::Target::Work, true) => "spooled",
    }
}
