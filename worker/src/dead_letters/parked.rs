//! A parked message as ops see it: identity and failure, never the payload
//! unless asked to reveal it.

use chrono::{DateTime, TimeZone, Utc};
use common::envelope::{header, header_int, header_str};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

use common::dead_letter;

#[derive(Clone, Debug)]
pub struct ParkedMessage {
    pub queue: String,
    pub id: Option<String>,
    pub kind: Option<String>,
    pub reason: Option<String>,
    pub last_error: Option<String>,
    pub attempts: Option<i64>,
    pub parked_at: Option<DateTime<Utc>>,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

impl ParkedMessage {
    pub fn new(queue: &str, properties: BasicProperties, body: Vec<u8>) -> Self {
        let headers = properties.headers().clone().unwrap_or_default();
        // Messages the broker dead-lettered itself (delivery limit) carry
        // its `x-death` history instead of our headers.
        let death = first_death(&headers);
        ParkedMessage {
            queue: queue.to_owned(),
            id: properties.message_id().as_ref().map(|id| id.to_string()),
            kind: header_str(&headers, header::KIND),
            reason: header_str(&headers, dead_letter::REASON)
                .or_else(|| death.as_ref().and_then(|death| header_str(death, "reason"))),
            last_error: header_str(&headers, dead_letter::LAST_ERROR),
            attempts: header_int(&headers, dead_letter::ATTEMPTS)
                .or_else(|| death.as_ref().and_then(|death| header_int(death, "count"))),
            parked_at: header_int(&headers, dead_letter::DEAD_LETTERED_AT)
                .and_then(|millis| Utc.timestamp_millis_opt(millis).single())
                .or_else(|| {
                    let seconds = death.as_ref().and_then(|death| header_int(death, "time"))?;
                    Utc.timestamp_opt(seconds, 0).single()
                }),
            properties,
            body,
        }
    }

    /// How long it has been parked, as `3m 20s`.
    pub fn age(&self) -> String {
        match self.parked_at {
            Some(parked_at) => {
                let seconds = (Utc::now() - parked_at).num_seconds().max(0) as u64;
                humantime::format_duration(std::time::Duration::from_secs(seconds)).to_string()
            }
            None => "-".into(),
        }
    }
}

fn first_death(headers: &FieldTable) -> Option<FieldTable> {
    match headers.inner().get("x-death")? {
        AMQPValue::FieldArray(deaths) => match deaths.as_slice().first()? {
            AMQPValue::FieldTable(death) => Some(death.clone()),
            _ => None,
        },
        _ => None,
    }
}
