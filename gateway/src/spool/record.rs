//! One spooled event, and how it is framed on disk:
//! `[u32 length][u32 crc32][u32 meta length][meta JSON][body]`, little-endian.
//! The checksum makes a torn write (a crash before the fsync, so before the
//! 200) recognisable instead of replaying garbage.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::amqp::{ConfirmedPublisher, PublishError, Topology};
use common::dead_letter;
use common::{Envelope, EventKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a spooled event goes once the broker is back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The kind's work queue.
    Work,
    /// The LINA quarantine (a call that failed validation).
    Quarantine,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SpoolRecord {
    pub envelope: Envelope,
    pub target: Target,
    /// Why a quarantined call was refused.
    pub reason: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    id: Uuid,
    kind: String,
    tenant: Option<Uuid>,
    received_at_us: i64,
    schema: i32,
    target: Target,
    reason: Option<String>,
}

const HEADER: usize = 8;

impl SpoolRecord {
    /// Publishes the record where it is meant to go, confirmed: its work
    /// queue, or the quarantine with the refusal's reason. The same path
    /// serves a live call and a drained one.
    pub async fn publish(
        &self,
        publisher: &ConfirmedPublisher,
        topology: &Topology,
        deadline: Duration,
    ) -> Result<(), PublishError> {
        let envelope = &self.envelope;
        let work_queue = topology.work_queue(envelope.kind.work_queue());
        let (queue, properties) = match self.target {
            Target::Work => (work_queue, envelope.amqp_properties()),
            Target::Quarantine => {
                let reason = self.reason.as_deref().unwrap_or("invalid");
                let properties = dead_letter::for_dead_letter(
                    &envelope.amqp_properties(),
                    reason,
                    "refused by the gateway's validation",
                    &work_queue,
                    0,
                );
                (topology.quarantine_queue(), properties)
            }
        };
        publisher
            .publish_within(deadline, "", &queue, &envelope.body, properties)
            .await
    }

    pub fn encode(&self) -> Vec<u8> {
        let envelope = &self.envelope;
        let meta = Meta {
            id: envelope.id,
            kind: envelope.kind.as_str().to_owned(),
            tenant: envelope.tenant,
            received_at_us: envelope.received_at.timestamp_micros(),
            schema: envelope.schema_version,
            target: self.target,
            reason: self.reason.clone(),
        };
        let meta = serde_json::to_vec(&meta).unwrap_or_default();
        let mut payload = Vec::with_capacity(4 + meta.len() + envelope.body.len());
        payload.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        payload.extend_from_slice(&meta);
        payload.extend_from_slice(&envelope.body);
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        frame
    }

    /// Every whole, intact record in `bytes`, in order; and whether the
    /// data ended in a torn or corrupt record (everything after it is ignored).
    pub fn decode_all(bytes: &[u8]) -> (Vec<SpoolRecord>, bool) {
        let mut records = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            match decode_one(rest) {
                Some((record, used)) => {
                    records.push(record);
                    rest = &rest[used..];
                }
                None => return (records, true),
            }
        }
        (records, false)
    }
}

fn decode_one(bytes: &[u8]) -> Option<(SpoolRecord, usize)> {
    let length = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let payload = bytes.get(HEADER..HEADER + length)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let meta_length = u32::from_le_bytes(payload.get(0..4)?.try_into().ok()?) as usize;
    let meta: Meta = serde_json::from_slice(payload.get(4..4 + meta_length)?).ok()?;
    let body = payload.get(4 + meta_length..)?.to_vec();
    let envelope = Envelope {
        id: meta.id,
        kind: EventKind::parse(&meta.kind)?,
        tenant: meta.tenant,
        received_at: Utc.timestamp_micros(meta.received_at_us).single()?,
        schema_version: meta.schema,
        attempt: 0,
        body,
    };
    let record = SpoolRecord {
        envelope,
        target: meta.target,
        reason: meta.reason,
    };
    Some((record, HEADER + length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &[u8], target: Target) -> SpoolRecord {
        SpoolRecord {
            envelope: Envelope::new(EventKind::LinaConsent, Some(Uuid::new_v4()), body.to_vec()),
            target,
            reason: (target == Target::Quarantine).then(|| "invalid_json".to_owned()),
        }
    }

    #[test]
    fn records_come_back_as_they_went_in_and_in_order() {
        let one = record("{\"name\":\"Jürgen\"}".as_bytes(), Target::Work);
        let two = record(b"\xff not even utf-8", Target::Quarantine);
        let mut bytes = one.encode();
        bytes.extend(two.encode());
        assert_eq!(SpoolRecord::decode_all(&bytes), (vec![one, two], false));
    }

    #[test]
    fn a_torn_last_record_is_recognised_and_the_rest_kept() {
        let one = record(b"{}", Target::Work);
        let mut bytes = one.encode();
        let two = record(b"{\"a\":1}", Target::Work).encode();
        bytes.extend(&two[..two.len() - 3]);
        assert_eq!(SpoolRecord::decode_all(&bytes), (vec![one], true));
    }

    #[test]
    fn a_flipped_bit_is_recognised() {
        let mut bytes = record(b"{}", Target::Work).encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(SpoolRecord::decode_all(&bytes), (vec![], true));
    }
}
