//! Which parked messages a command acts on.

use std::time::Duration;

use chrono::Utc;
use common::EventKind;
use common::amqp::{Topology, WorkQueue};

use super::ParkedMessage;

/// A queue where messages wait for a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ParkingQueue {
    Lt,
    Lina,
    Email,
    Quarantine,
}

impl ParkingQueue {
    pub const ALL: [ParkingQueue; 4] = [
        ParkingQueue::Lt,
        ParkingQueue::Lina,
        ParkingQueue::Email,
        ParkingQueue::Quarantine,
    ];

    pub fn name(self, topology: &Topology) -> String {
        match self {
            ParkingQueue::Quarantine => topology.quarantine_queue(),
            queue => topology.dead_letter_queue(queue.work_queue()),
        }
    }

    /// Where a replay sends the message: its work queue. Quarantined LINA
    /// calls go to the LINA queue, where the worker validates them again.
    pub fn work_queue(self) -> WorkQueue {
        match self {
            ParkingQueue::Lt => WorkQueue::Lt,
            ParkingQueue::Lina | ParkingQueue::Quarantine => WorkQueue::Lina,
            ParkingQueue::Email => WorkQueue::Email,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Empty: every parking queue.
    pub queues: Vec<ParkingQueue>,
    pub kind: Option<EventKind>,
    pub reason: Option<String>,
    pub older_than: Option<Duration>,
    /// Act on at most this many matching messages.
    pub limit: Option<usize>,
}

impl Filter {
    pub fn queues(&self) -> Vec<ParkingQueue> {
        if self.queues.is_empty() {
            ParkingQueue::ALL.to_vec()
        } else {
            self.queues.clone()
        }
    }

    pub fn matches(&self, message: &ParkedMessage) -> bool {
        let kind_matches = self
            .kind
            .is_none_or(|kind| message.kind.as_deref() == Some(kind.as_str()));
        let reason_matches = self
            .reason
            .as_deref()
            .is_none_or(|reason| message.reason.as_deref() == Some(reason));
        let old_enough = self.older_than.is_none_or(|age| {
            message.parked_at.is_some_and(|parked_at| {
                (Utc::now() - parked_at).to_std().unwrap_or_default() >= age
            })
        });
        kind_matches && reason_matches && old_enough
    }
}
