//! Loops every worker runs beside its consumers, on timers.
//! Here: retention (expired data, old dead letters) and the outbox sweeper; not here: anything
//! a person starts from the command line (`admin/`).

pub mod outbox_sweeper;
pub mod retention;
