//! The event envelope: what the gateway publishes and the worker consumes.
//!
//! The body is the sender's request body, byte for byte (the gateway validates
//! but never reshapes it); everything else travels as AMQP properties and
//! headers so that ops tools can read an event's identity without parsing
//! (or revealing) its personal content.

use chrono::{DateTime, TimeZone, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use uuid::Uuid;

/// Bumped when the envelope's shape changes, so that a rolling upgrade can
/// tell old messages from new ones.
pub const SCHEMA_VERSION: i32 = 1;

/// Header names. Plain words, because ops read them in the management UI.
pub mod header {
    pub const SOURCE: &str = "source";
    pub const KIND: &str = "kind";
    pub const ATTEMPT: &str = "attempt";
    pub const TENANT: &str = "tenant";
    pub const RECEIVED_AT_US: &str = "received_at_us";
    pub const SCHEMA: &str = "schema";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Lt,
    Lina,
    Intake,
}

impl Source {
    /// The two outside senders (`Intake` is the worker's own e-mail jobs).
    pub const SENDERS: [Source; 2] = [Source::Lt, Source::Lina];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Lt => "lt",
            Source::Lina => "lina",
            Source::Intake => "intake",
        }
    }
}

/// Every kind of message that travels through the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    LtApplication,
    LtRevocation,
    LinaConsent,
    LinaWithdrawal,
    EmailAcknowledgement,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::LtApplication,
        EventKind::LtRevocation,
        EventKind::LinaConsent,
        EventKind::LinaWithdrawal,
        EventKind::EmailAcknowledgement,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LtApplication => "lt.application",
            EventKind::LtRevocation => "lt.revocation",
            EventKind::LinaConsent => "lina.consent",
            EventKind::LinaWithdrawal => "lina.withdrawal",
            EventKind::EmailAcknowledgement => "email.acknowledgement",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    pub fn source(self) -> Source {
        match self {
            EventKind::LtApplication | EventKind::LtRevocation => Source::Lt,
            EventKind::LinaConsent | EventKind::LinaWithdrawal => Source::Lina,
            EventKind::EmailAcknowledgement => Source::Intake,
        }
    }

    /// The work queue this kind is consumed from.
    pub fn work_queue(self) -> crate::amqp::WorkQueue {
        use crate::amqp::WorkQueue;
        match self.source() {
            Source::Lt => WorkQueue::Lt,
            Source::Lina => WorkQueue::Lina,
            Source::Intake => WorkQueue::Email,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// UUIDv7: unique, and sortable by creation time.
    pub id: Uuid,
    pub kind: EventKind,
    /// LINA's webhook uuid (the store); none for LT.
    pub tenant: Option<Uuid>,
    pub received_at: DateTime<Utc>,
    pub schema_version: i32,
    /// 0 on first delivery; raised by each retry, reset by a dead-letter replay.
    pub attempt: u32,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnvelopeError {
    #[error("message has no valid message_id")]
    MissingId,
    #[error("message header `{0}` is missing or malformed")]
    BadHeader(&'static str),
}

impl Envelope {
    /// A new event, received now.
    pub fn new(kind: EventKind, tenant: Option<Uuid>, body: Vec<u8>) -> Self {
        Envelope {
            id: Uuid::now_v7(),
            kind,
            tenant,
            received_at: truncate_to_micros(Utc::now()),
            schema_version: SCHEMA_VERSION,
            attempt: 0,
            body,
        }
    }

    /// Persistent (delivery mode 2), JSON, with the identity in properties and headers.
    pub fn amqp_properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        insert_str(&mut headers, header::SOURCE, self.kind.source().as_str());
        insert_str(&mut headers, header::KIND, self.kind.as_str());
        headers.insert(
            header::ATTEMPT.into(),
            AMQPValue::LongLongInt(i64::from(self.attempt)),
        );
        if let Some(tenant) = self.tenant {
            insert_str(&mut headers, header::TENANT, &tenant.to_string());
        }
        headers.insert(
            header::RECEIVED_AT_US.into(),
            AMQPValue::LongLongInt(self.received_at.timestamp_micros()),
        );
        headers.insert(
            header::SCHEMA.into(),
            AMQPValue::LongInt(self.schema_version),
        );
        BasicProperties::default()
            .with_message_id(self.id.to_string().into())
            .with_timestamp(self.received_at.timestamp().max(0) as u64)
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(headers)
    }

    /// Reads an envelope back from a delivery's properties and body.
    pub fn from_amqp(properties: &BasicProperties, body: &[u8]) -> Result<Self, EnvelopeError> {
        let id = properties
            .message_id()
            .as_ref()
            .and_then(|id| Uuid::parse_str(id.as_str()).ok())
            .ok_or(EnvelopeError::MissingId)?;
        let empty = FieldTable::default();
        let headers = properties.headers().as_ref().unwrap_or(&empty);
        let kind = header_str(headers, header::KIND)
            .and_then(|kind| EventKind::parse(&kind))
            .ok_or(EnvelopeError::BadHeader(header::KIND))?;
        let tenant = match header_str(headers, header::TENANT) {
            Some(text) => {
                Some(Uuid::parse_str(&text).map_err(|_| EnvelopeError::BadHeader(header::TENANT))?)
            }
            None => None,
        };
        let received_at = header_int(headers, header::RECEIVED_AT_US)
            .and_then(|micros| Utc.timestamp_micros(micros).single())
            .ok_or(EnvelopeError::BadHeader(header::RECEIVED_AT_US))?;
        let attempt = header_int(headers, header::ATTEMPT).unwrap_or(0);
        let schema_version = header_int(headers, header::SCHEMA).unwrap_or(1);
        Ok(Envelope {
            id,
            kind,
            tenant,
            received_at,
            schema_version: i32::try_from(schema_version)
                .map_err(|_| EnvelopeError::BadHeader(header::SCHEMA))?,
            attempt: u32::try_from(attempt)
                .map_err(|_| EnvelopeError::BadHeader(header::ATTEMPT))?,
            body: body.to_vec(),
        })
    }
}

/// PostgreSQL keeps microseconds; truncating here makes the in-memory order
/// key equal to the stored one.
pub fn truncate_to_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_micros(time.timestamp_micros())
        .single()
        .unwrap_or(time)
}

fn insert_str(headers: &mut FieldTable, key: &str, value: &str) {
    headers.insert(
        ShortString::from(key),
        AMQPValue::LongString(LongString::from(value)),
    );
}

/// A header as text, whichever string type the broker or a tool used.
pub fn header_str(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

/// A header as a whole number, whichever integer type the broker or a tool used.
pub fn header_int(headers: &FieldTable, key: &str) -> Option<i64> {
    match headers.inner().get(key)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_survives_a_trip_through_amqp_properties() {
        let mut envelope = Envelope::new(
            EventKind::LinaConsent,
            Some(Uuid::new_v4()),
            br#"{"a":1}"#.to_vec(),
        );
        envelope.attempt = 3;
        let back = Envelope::from_amqp(&envelope.amqp_properties(), &envelope.body)
            .expect("envelope parses");
        assert_eq!(back, envelope);
    }

    #[test]
    fn a_message_without_id_is_refused() {
        let properties = BasicProperties::default();
        assert_eq!(
            Envelope::from_amqp(&properties, b"{}"),
            Err(EnvelopeError::MissingId)
        );
    }

    #[test]
    fn every_kind_parses_from_its_name() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("lt.unknown"), None);
    }
}
