//! One broker connection per process, replaced by a new one whenever it dies.
//!
//! Reconnecting by hand (rather than lapin's auto-recovery) keeps one rule in
//! one place: every new connection declares the topology before it is used,
//! so a broker that lost its definitions is repaired on the way.
//!
//! `INTAKE_AMQP_URL` may name several nodes of a cluster, comma-separated:
//! a connection stays on the node it reached; when it dies, the next attempt
//! starts with the next node (the one it was on is likely the one that
//! went), and each attempt tries every node once, in turn.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::{Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};

use super::{AmqpError, AmqpTls, Topology};

/// After a failed attempt, callers fail fast for this long instead of each
/// hammering a broker that is down.
const RECONNECT_COOL_DOWN: Duration = Duration::from_millis(500);

pub struct AmqpConnector {
    /// The nodes, in the order given.
    urls: Vec<SecretString>,
    /// The node to try first.
    next: Mutex<usize>,
    name: String,
    topology: Topology,
    tls: AmqpTls,
    connect_timeout: Duration,
    current: tokio::sync::Mutex<Option<Arc<Connection>>>,
    /// The connection as last seen, readable without waiting (health checks).
    snapshot: Mutex<Option<Arc<Connection>>>,
    last_failure: Mutex<Option<Instant>>,
}

impl AmqpConnector {
    pub fn new(
        url: SecretString,
        name: impl Into<String>,
        topology: Topology,
        tls: AmqpTls,
        connect_timeout: Duration,
    ) -> Self {
        let urls = super::nodes(url.expose_secret())
            .map(|url| SecretString::from(url.to_owned()))
            .collect();
        AmqpConnector {
            urls,
            next: Mutex::new(0),
            name: name.into(),
            topology,
            tls,
            connect_timeout,
            current: tokio::sync::Mutex::new(None),
            snapshot: Mutex::new(None),
            last_failure: Mutex::new(None),
        }
    }

    /// A live connection with the topology declared, reconnecting if needed.
    pub async fn connection(&self) -> Result<Arc<Connection>, AmqpError> {
        let mut current = self.current.lock().await;
        if let Some(connection) = current.as_ref() {
            if connection.status().connected() {
                return Ok(connection.clone());
            }
            // The node it was on went away: start with the next one.
            self.move_on(1);
            *current = None;
        }
        if self.cooling_down() {
            return Err(AmqpError::CoolingDown);
        }
        let mut last_error = AmqpError::Timeout(self.connect_timeout);
        for _ in 0..self.urls.len().max(1) {
            let node = *lock(&self.next);
            match tokio::time::timeout(self.connect_timeout, self.connect(node)).await {
                Ok(Ok(connection)) => {
                    let connection = Arc::new(connection);
                    *current = Some(connection.clone());
                    *lock(&self.snapshot) = Some(connection.clone());
                    tracing::info!(
                        message = "Connected to the broker.",
                        connection = %self.name,
                        node = node + 1,
                        nodes = self.urls.len(),
                    );
                    return Ok(connection);
                }
                Ok(Err(error)) => last_error = error,
                Err(_) => last_error = AmqpError::Timeout(self.connect_timeout),
            }
            tracing::warn!(
                message = "Broker node not reachable; trying the next.",
                connection = %self.name,
                node = node + 1,
                nodes = self.urls.len(),
                error = %last_error,
            );
            self.move_on(1);
        }
        self.note_failure();
        Err(last_error)
    }

    /// The node `steps` after the one to try first becomes the first.
    fn move_on(&self, steps: usize) {
        let mut next = lock(&self.next);
        *next = (*next + steps) % self.urls.len().max(1);
    }

    async fn connect(&self, node: usize) -> Result<Connection, AmqpError> {
        let url = self.urls.get(node).ok_or(AmqpError::NoAddress)?;
        let properties =
            ConnectionProperties::default().with_connection_name(self.name.as_str().into());
        let runtime = lapin::runtime::default_runtime().map_err(AmqpError::Connect)?;
        let connection = Connection::connect_with_config(
            url.expose_secret(),
            properties,
            self.tls.config(),
            runtime,
        )
        .await
        .map_err(AmqpError::Connect)?;
        self.topology.declare(&connection).await?;
        Ok(connection)
    }

    fn cooling_down(&self) -> bool {
        lock(&self.last_failure).is_some_and(|at| at.elapsed() < RECONNECT_COOL_DOWN)
    }

    fn note_failure(&self) {
        *lock(&self.last_failure) = Some(Instant::now());
    }

    /// Whether the last connection is up (no I/O).
    pub fn is_connected(&self) -> bool {
        lock(&self.snapshot)
            .as_ref()
            .is_some_and(|connection| connection.status().connected())
    }

    /// Whether the broker has blocked publishing (a memory or disk alarm).
    pub fn is_blocked(&self) -> bool {
        lock(&self.snapshot)
            .as_ref()
            .is_some_and(|connection| connection.status().blocked())
    }

    /// Closes the connection politely (shutdown).
    pub async fn close(&self) {
        let connection = self.current.lock().await.take();
        lock(&self.snapshot).take();
        let Some(connection) = connection.filter(|connection| connection.status().connected())
        else {
            return;
        };
        // A broker that stopped answering must not hold a shutdown forever:
        // the connection is dropped with the process either way.
        let closing = connection.close(200, "shutting down".into());
        match tokio::time::timeout(self.connect_timeout, closing).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(message = "Failed to close the broker connection.", %error);
            }
            Err(_) => tracing::warn!(
                message = "The broker did not confirm the connection's close in time.",
                timeout_ms = self.connect_timeout.as_millis() as u64,
            ),
        }
    }
}

/// A poisoned lock only means another thread panicked while holding plain
/// data; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
