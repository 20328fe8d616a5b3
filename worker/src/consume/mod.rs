//! The consume path: from a queue's deliveries to their acks.
//! Here: the consumers, batch collection, settling (ack, retry tier, dead letter), the retry policy
//! and the e-mail queue's jobs; not here: what an event does to the database (`apply/`).

pub mod collect;
pub mod consumer;
pub mod email;
pub mod retry;
pub mod settle;
