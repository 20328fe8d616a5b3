//! What every request handler shares.

use std::sync::Arc;
use std::time::Duration;

use common::amqp::{ConfirmedPublisher, Topology};
use secrecy::SecretString;
use tokio::sync::Semaphore;

use crate::body::BodyLimits;
use crate::metrics::GatewayMetrics;
use crate::source::SourceRules;
use crate::spool::Spool;

pub struct AppState {
    pub publisher: Arc<ConfirmedPublisher>,
    pub topology: Topology,
    pub lt_tokens: Vec<SecretString>,
    pub lt_email_pointer: String,
    pub body: BodyLimits,
    pub sources: SourceRules,
    /// Bounds publishes waiting for a confirm, so a slow broker cannot make
    /// the gateway hold unbounded request bodies in memory.
    pub in_flight: Arc<Semaphore>,
    /// Present when the LINA endpoint is on.
    pub lina: Option<LinaState>,
    pub metrics: Arc<GatewayMetrics>,
}

pub struct LinaState {
    pub path_secrets: Vec<SecretString>,
    /// Where LINA calls go when the broker cannot confirm them.
    pub spool: Arc<Spool>,
    /// How long a LINA call waits for the broker's confirm before it is
    /// spooled instead.
    pub spool_after: Duration,
}
