//! The headers a parked message carries, written when the worker moves a
//! failed message on and read by `worker dlq`. None holds personal data.

use crate::envelope::header;
use chrono::Utc;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};

/// A short code: why the message is parked (`missing_email`, `retries_exhausted`, …).
pub const REASON: &str = "reason";
/// The last error, as bounded text without payload values.
pub const LAST_ERROR: &str = "last_error";
/// When the message first failed (Unix milliseconds).
pub const FIRST_FAILED_AT: &str = "first_failed_at";
/// When the message was parked (Unix milliseconds).
pub const DEAD_LETTERED_AT: &str = "dead_lettered_at";
/// The work queue it came from.
pub const ORIGINAL_QUEUE: &str = "original_queue";
/// How many times it was tried.
pub const ATTEMPTS: &str = "attempts";

/// Every header this module writes (a replay removes them).
pub const ALL: [&str; 6] = [
    REASON,
    LAST_ERROR,
    FIRST_FAILED_AT,
    DEAD_LETTERED_AT,
    ORIGINAL_QUEUE,
    ATTEMPTS,
];

/// Longest `last_error` kept, so a header never grows without bound.
const LAST_ERROR_MAX: usize = 300;

/// `properties` for the next try: attempt raised, failure noted.
pub fn for_retry(properties: &BasicProperties, attempt: u32, error: &str) -> BasicProperties {
    let mut headers = failure_headers(properties, error);
    headers.insert(
        header::ATTEMPT.into(),
        AMQPValue::LongLongInt(i64::from(attempt)),
    );
    properties.clone().with_headers(headers)
}

/// `properties` for the dead-letter queue: why, when, from where, how often.
pub fn for_dead_letter(
    properties: &BasicProperties,
    reason: &str,
    error: &str,
    original_queue: &str,
    attempts: u32,
) -> BasicProperties {
    let mut headers = failure_headers(properties, error);
    headers.insert(REASON.into(), long_string(reason));
    headers.insert(ORIGINAL_QUEUE.into(), long_string(original_queue));
    headers.insert(ATTEMPTS.into(), AMQPValue::LongLongInt(i64::from(attempts)));
    headers.insert(
        DEAD_LETTERED_AT.into(),
        AMQPValue::LongLongInt(Utc::now().timestamp_millis()),
    );
    properties.clone().with_headers(headers)
}

/// `properties` for a replay: the failure headers and the broker's own
/// dead-letter history removed, the attempt count reset; id, kind and
/// receive time kept.
pub fn for_replay(properties: &BasicProperties) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(existing) = properties.headers() {
        for (key, value) in existing {
            let name = key.as_str();
            if !ALL.contains(&name) && !broker_owned(name) && name != header::ATTEMPT {
                headers.insert(key.clone(), value.clone());
            }
        }
    }
    headers.insert(header::ATTEMPT.into(), AMQPValue::LongLongInt(0));
    properties.clone().with_headers(headers)
}

/// `properties` for a batch put back at the end of its queue (held too
/// long): everything ours kept, attempt included; the broker's own headers
/// (delivery count, dead-letter history) removed, as for a new message.
pub fn for_requeue(properties: &BasicProperties) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(existing) = properties.headers() {
        for (key, value) in existing {
            if !broker_owned(key.as_str()) {
                headers.insert(key.clone(), value.clone());
            }
        }
    }
    properties.clone().with_headers(headers)
}

/// Headers RabbitMQ sets itself (`x-delivery-count`, `x-death`, …).
fn broker_owned(name: &str) -> bool {
    name.starts_with("x-")
}

fn failure_headers(properties: &BasicProperties, error: &str) -> FieldTable {
    let mut headers = properties.headers().clone().unwrap_or_default();
    if !headers.contains_key(FIRST_FAILED_AT) {
        headers.insert(
            FIRST_FAILED_AT.into(),
            AMQPValue::LongLongInt(Utc::now().timestamp_millis()),
        );
    }
    headers.insert(LAST_ERROR.into(), long_string(truncate(error)));
    headers
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(LAST_ERROR_MAX) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

fn long_string(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{header_int, header_str};
    use crate::{Envelope, EventKind};

    #[test]
    fn a_replay_keeps_the_identity_and_forgets_the_failure() {
        let envelope = Envelope::new(EventKind::LtApplication, None, b"{}".to_vec());
        let retried = for_retry(&envelope.amqp_properties(), 3, "database unavailable");
        let parked = for_dead_letter(&retried, "retries_exhausted", "timeout", "intake.lt", 4);
        let headers = parked.headers().clone().unwrap_or_default();
        assert_eq!(
            header_str(&headers, REASON).as_deref(),
            Some("retries_exhausted")
        );
        assert_eq!(header_int(&headers, ATTEMPTS), Some(4));
        assert!(header_int(&headers, FIRST_FAILED_AT).is_some());

        let replayed = for_replay(&parked);
        let back = Envelope::from_amqp(&replayed, &envelope.body).expect("parses");
        assert_eq!(back.id, envelope.id);
        assert_eq!(back.attempt, 0);
        let headers = replayed.headers().clone().unwrap_or_default();
        assert!(ALL.iter().all(|name| !headers.contains_key(name)));
    }

    #[test]
    fn a_long_error_is_cut() {
        let long = "é".repeat(1000);
        assert_eq!(truncate(&long).chars().count(), LAST_ERROR_MAX);
    }
}
