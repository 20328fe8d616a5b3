//! The consume path: from a queue's deliveries to their acks.
//! Here: the consumers and their health, batch collection, holding a batch
//! the environment refused, settling (ack, retry tier, dead letter), the
//! retry policy and the e-mail queue's jobs; not here: what an event does
//! to the database (`apply/`).

pub mod collect;
pub mod consumer;
pub mod email;
pub mod health;
pub mod hold;
pub mod retry;
pub mod settle;
