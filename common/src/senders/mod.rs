//! The senders' payload rules, shared by the gateway (which validates) and the
//! worker (which applies).

pub mod json;
pub mod lina;
pub mod lt;
