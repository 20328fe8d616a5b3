//! Parked messages (the dead-letter queues and the LINA quarantine): browsing, replaying, purging.
//! Here: the broker operations `worker dlq` and retention share; not here: the command line
//! (`admin/dlq.rs`).
//!
//! Browsing takes each message with `basic.get` and holds it unacknowledged
//! until the scan ends, when closing the channel returns the kept ones: a
//! message is never requeued mid-scan (so never seen twice) and never lost.
//! A scan visits at most as many messages as the queue held when it began,
//! so a replayed message that fails again and comes back is not replayed
//! twice in one run.

mod filter;
mod parked;
mod scan;

pub use filter::{Filter, ParkingQueue};
pub use parked::ParkedMessage;
pub use scan::{Listing, Summary, list, purge, replay, show, total_depth};

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error(transparent)]
    Broker(#[from] common::amqp::AmqpError),
    #[error("broker operation failed: {0}")]
    Lapin(#[from] lapin::Error),
    #[error("could not republish a message: {0}")]
    Publish(#[from] common::amqp::PublishError),
    #[error("refusing to purge {0} message(s) without --yes (add --dry-run to see them first)")]
    PurgeNeedsYes(usize),
    #[error("no parked message has the id {0}")]
    NotFound(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}
